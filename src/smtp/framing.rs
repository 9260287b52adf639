//! Where one SMTP command line ends in the bytes a client sent. Pure.
//!
//! A command line ends at LF, with or without the CR before it. RFC 5321
//! asks for CRLF, but printers, scanners and shell scripts that send mail
//! end commands with a bare LF, and Postfix and Dovecot take them: a command
//! has no content to smuggle, and a CR left inside the line is refused by the
//! command parser. Message content is another matter: there the DATA decoder
//! (`smtp::data`) refuses any CR or LF that is not part of a CRLF pair,
//! because servers that read a bare line ending differently can be made to
//! see two messages in one.

/// The longest command line, CRLF included (RFC 5321 4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;

/// The longest line on a submission port inside TLS, where AUTH may carry a
/// long response (RFC 4954 4: 12288 octets).
pub const MAX_AUTH_LINE: usize = 12288;

/// What the next command line looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its ending) of `len` bytes, `used` with it.
    Complete {
        /// The line's length without CRLF or LF.
        len: usize,
        /// Bytes to consume, the ending included.
        used: usize,
    },
    /// A line over the limit; `used` bytes to drop, and whether its end is
    /// among them.
    TooLong {
        /// Bytes to drop.
        used: usize,
        /// Whether the line's LF is among them.
        ended: bool,
    },
    /// Not complete yet: read more.
    Partial,
}

/// The next command line in `buf`, the bytes read and not yet used, for a
/// limit of `max` bytes with the ending.
pub fn next_line(buf: &[u8], max: usize) -> Line {
    match buf.iter().position(|&b| b == b'\n') {
        Some(lf) if lf < max => {
            let len = if lf > 0 && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            Line::Complete { len, used: lf + 1 }
        }
        Some(lf) => Line::TooLong { used: lf + 1, ended: true },
        None if buf.len() >= max => Line::TooLong { used: buf.len(), ended: false },
        None => Line::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_crlf_or_a_bare_lf_and_wait_for_their_end() {
        assert_eq!(next_line(b"EHLO a\r\nMAIL", 512), Line::Complete { len: 6, used: 8 });
        assert_eq!(next_line(b"EHLO a\nMAIL", 512), Line::Complete { len: 6, used: 7 });
        assert_eq!(next_line(b"\r\n", 512), Line::Complete { len: 0, used: 2 });
        assert_eq!(next_line(b"\n", 512), Line::Complete { len: 0, used: 1 });
        // A CR alone ends nothing; the line waits for its LF.
        assert_eq!(next_line(b"EHLO a\r", 512), Line::Partial);
        assert_eq!(next_line(b"EHLO a\rRSET", 512), Line::Partial);
        assert_eq!(next_line(b"", 512), Line::Partial);
    }

    #[test]
    fn a_line_split_across_reads_is_found_once_whole() {
        let whole = b"MAIL FROM:<a@b.example>\r\n";
        for cut in 0..whole.len() {
            assert_eq!(next_line(&whole[..cut], 512), Line::Partial, "cut at {cut}");
        }
        assert_eq!(next_line(whole, 512), Line::Complete { len: whole.len() - 2, used: whole.len() });
    }

    #[test]
    fn lines_over_the_limit_are_dropped_in_pieces_up_to_their_end() {
        // 511 bytes and CRLF is 513: one over.
        let mut long = vec![b'a'; 511];
        long.extend_from_slice(b"\r\nRSET\r\n");
        assert_eq!(next_line(&long, MAX_COMMAND_LINE), Line::TooLong { used: 513, ended: true });
        // 510 and CRLF is the limit itself.
        assert_eq!(next_line(&long[1..], MAX_COMMAND_LINE), Line::Complete { len: 510, used: 512 });
        // No end in sight: what is there is dropped, and the rest follows.
        let endless = vec![b'a'; 600];
        assert_eq!(next_line(&endless, MAX_COMMAND_LINE), Line::TooLong { used: 600, ended: false });
        assert_eq!(next_line(&endless[..511], MAX_COMMAND_LINE), Line::Partial);
        // The AUTH limit takes what the command limit refuses.
        assert!(matches!(next_line(&long, MAX_AUTH_LINE), Line::Complete { len: 511, used: 513 }));
    }
}
