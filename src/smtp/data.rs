//! The DATA decoder: finds the end of a message and undoes dot-stuffing. Pure.
//!
//! The message ends only at `<CRLF>.<CRLF>` (the CRLF before the dot may be the
//! one that ended the DATA command). A CR or LF that is not part of a CRLF pair
//! fails the message: different servers disagree on what such a sequence means,
//! and that disagreement is what SMTP smuggling exploits. After any failure the
//! decoder keeps reading up to the real end, so the client and the server stay
//! in step and nothing the client sent inside the message is taken for a command.
//!
//! A NUL byte fails the message too (RFC 5321 4.1.1.4: text is US-ASCII or
//! UTF-8, never NUL). Relayed, it reaches servers and mail readers that end a
//! string at it, so one line would be read two ways; and a line that begins with
//! a NUL hides a dot from a dot-stuffer that stops at it.

/// Why a message was refused after its final dot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataError {
    /// More than the size limit.
    TooBig,
    /// A CR or LF that is not part of a CRLF pair.
    BareLineEnding,
    /// A text line over 1000 octets including its CRLF (RFC 5321 4.5.3.1.6).
    LineTooLong,
    /// A NUL byte.
    Nul,
}

/// The longest text line, CRLF included.
const MAX_LINE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// A dot at the start of a line.
    Dot,
    /// `.` CR at the start of a line: one LF more ends the message.
    DotCr,
    /// Inside a line.
    Mid,
    /// A CR inside a line (or after a stuffed dot).
    Cr,
}

/// Streams the lines after `354` into message bytes; see the module docs.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    line_len: usize,
    size: u64,
    max_size: u64,
    failure: Option<DataError>,
}

impl DataDecoder {
    /// A decoder that refuses messages over `max_size` bytes.
    pub fn new(max_size: u64) -> DataDecoder {
        DataDecoder { state: State::LineStart, line_len: 0, size: 0, max_size, failure: None }
    }

    /// Decodes `input`, appending message bytes (with CRLF line ends, dots
    /// unstuffed) to `out` while the message is still acceptable.
    ///
    /// Returns how many bytes of `input` were used and whether the final dot was
    /// seen; bytes after the final dot are left for the command reader.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Fast path: copy up to the next CR, LF or NUL in one go.
                let run = input[i..].iter().position(|&b| b == b'\r' || b == b'\n' || b == 0);
                let n = run.unwrap_or(input.len() - i);
                // The part of the run within the line limit goes out first, as
                // it would byte by byte, so a size limit reached in it wins.
                let within = n.min((MAX_LINE - 2).saturating_sub(self.line_len));
                self.emit(&input[i..i + within], out);
                self.line_len += n;
                if self.line_len > MAX_LINE - 2 {
                    self.fail(DataError::LineTooLong);
                }
                i += n;
                if i == input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            match (self.state, b) {
                (State::LineStart, b'.') => {
                    self.line_len = 1;
                    self.state = State::Dot;
                }
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return (i, true);
                }
                (State::Cr, b'\n') => {
                    self.emit(b"\r\n", out);
                    self.line_len = 0;
                    self.state = State::LineStart;
                }
                (State::Dot, b'\r') => self.state = State::DotCr,
                (State::Cr | State::DotCr, b'\r') => {
                    self.fail(DataError::BareLineEnding);
                    self.state = State::Cr;
                }
                (_, b'\r') => self.state = State::Cr,
                (_, b'\n') => {
                    self.fail(DataError::BareLineEnding);
                    self.state = State::Mid;
                }
                (state, 0) => {
                    if matches!(state, State::Cr | State::DotCr) {
                        self.fail(DataError::BareLineEnding);
                    }
                    self.fail(DataError::Nul);
                    self.line_len += 1;
                    self.state = State::Mid;
                }
                (state, other) => {
                    if matches!(state, State::Cr | State::DotCr) {
                        self.fail(DataError::BareLineEnding);
                    }
                    self.line_len += 1;
                    self.emit(&[other], out);
                    self.state = State::Mid;
                }
            }
        }
        (input.len(), false)
    }

    /// The outcome once the final dot was seen: the message size, or why it fails.
    ///
    /// # Errors
    /// The first problem found in the message.
    pub fn finish(&self) -> Result<u64, DataError> {
        match self.failure {
            Some(e) => Err(e),
            None => Ok(self.size),
        }
    }

    /// True once the message is known to fail; its bytes are being drained.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    fn fail(&mut self, e: DataError) {
        self.failure.get_or_insert(e);
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.failure.is_some() || bytes.is_empty() {
            return;
        }
        // What fits is kept even when the rest does not, so that the output
        // is the same however the input was split into reads.
        let room = usize::try_from(self.max_size - self.size).unwrap_or(usize::MAX);
        let keep = bytes.len().min(room);
        self.size += keep as u64;
        out.extend_from_slice(&bytes[..keep]);
        if keep < bytes.len() {
            self.fail(DataError::TooBig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the decoder over `input` split into pieces of `step` bytes.
    fn run(input: &[u8], step: usize, max: u64) -> (Result<Vec<u8>, DataError>, Option<usize>) {
        let (out, end, verdict) = outcome(input, step, max);
        (verdict.map(|_| out), end)
    }

    #[test]
    fn messages_end_at_crlf_dot_crlf_unstuffed_and_bad_line_endings_fail() {
        type Case = (&'static [u8], Result<&'static [u8], DataError>, Option<usize>);
        let cases: &[Case] = &[
            (b".\r\n", Ok(b""), Some(3)),
            (b"a\r\n.\r\n", Ok(b"a\r\n"), Some(6)),
            (b"a\r\n.\r\nQUIT\r\n", Ok(b"a\r\n"), Some(6)),
            (b"..x\r\n.\r\n", Ok(b".x\r\n"), Some(8)),
            (b"..\r\n.\r\n", Ok(b".\r\n"), Some(7)),
            (b"a\r\n..\r\n.\r\n", Ok(b"a\r\n.\r\n"), Some(10)),
            (b"x.\r\n.\r\n", Ok(b"x.\r\n"), Some(7)),
            (b"a\r\n\r\n.\r\n", Ok(b"a\r\n\r\n"), Some(8)),
            // Smuggling: none of these end the message, and each fails it.
            (b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n", Err(DataError::BareLineEnding), Some(24)),
            (b"a\r.\r\nb\r\n.\r\n", Err(DataError::BareLineEnding), Some(11)),
            (b"a\n.\r\nb\r\n.\r\n", Err(DataError::BareLineEnding), Some(11)),
            (b"a\r\n.\rb\r\n.\r\n", Err(DataError::BareLineEnding), Some(11)),
            (b"a\r\n.\nb\r\n.\r\n", Err(DataError::BareLineEnding), Some(11)),
            (b"a\r\r\n.\r\n", Err(DataError::BareLineEnding), Some(7)),
            (b"a\nb\r\n.\r\n", Err(DataError::BareLineEnding), Some(8)),
            (b"\n.\r\n", Err(DataError::BareLineEnding), None),
            // Not finished yet.
            (b"a\r\n.\r", Ok(b"a\r\n"), None),
            (b"a\r\n.", Ok(b"a\r\n"), None),
        ];
        for &(input, ref want, want_end) in cases {
            for step in [1, 2, 3, 7, input.len()] {
                let (got, end) = run(input, step, 1000);
                let got = got.as_deref().map_err(|e| *e);
                assert_eq!(got, want.as_ref().map(|v| *v).map_err(|e| *e), "{input:?} step {step}");
                assert_eq!(end, want_end, "{input:?} step {step}");
            }
        }
    }

    #[test]
    fn oversize_is_drained_to_the_final_dot() {
        let mut msg = b"x".repeat(500);
        msg.extend_from_slice(b"\r\n");
        let mut input = msg.repeat(10);
        input.extend_from_slice(b".\r\nQUIT\r\n");
        let (got, end) = run(&input, 64, 1000);
        assert_eq!(got, Err(DataError::TooBig));
        assert_eq!(end, Some(input.len() - 6));
    }

    #[test]
    fn exact_size_limit_is_accepted() {
        let (got, _) = run(b"abc\r\n.\r\n", 3, 5);
        assert_eq!(got, Ok(b"abc\r\n".to_vec()));
        let (got, _) = run(b"abcd\r\n.\r\n", 3, 5);
        assert_eq!(got, Err(DataError::TooBig));
    }

    #[test]
    fn long_lines_are_refused() {
        let mut ok = b"y".repeat(998);
        ok.extend_from_slice(b"\r\n.\r\n");
        assert!(run(&ok, 100, 1 << 20).0.is_ok());
        let mut long = b"y".repeat(999);
        long.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&long, 100, 1 << 20).0, Err(DataError::LineTooLong));
        let mut stuffed = b".".repeat(999);
        stuffed.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&stuffed, 100, 1 << 20).0, Err(DataError::LineTooLong));
    }

    /// Decodes `input` in reads of `step` bytes: the output, where the final dot
    /// ended, and the verdict.
    fn outcome(input: &[u8], step: usize, max: u64) -> (Vec<u8>, Option<usize>, Result<u64, DataError>) {
        let mut d = DataDecoder::new(max);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let (used, done) = d.decode(&input[pos..end], &mut out);
            pos += used;
            if done {
                return (out, Some(pos), d.finish());
            }
        }
        (out, None, d.finish())
    }

    #[test]
    fn the_outcome_does_not_depend_on_the_reads() {
        let long_line = [b"y".repeat(1200), b"\r\n.\r\n".to_vec()].concat();
        let cases: &[(&[u8], u64)] = &[
            // Found by fuzzing: an over-size read kept nothing, byte-sized reads kept
            // what fit.
            (b"\x00\x00\x00\x00\x00\x00\x00\x00", 5),
            (b"abcdefgh\r\n.\r\n", 5),
            // Too long and too big at once: the first limit reached must win
            // however the line arrives.
            (&long_line, 500),
            (&long_line, 998),
            (&long_line, 999),
            (&long_line, 2000),
            (b"a\r\n.x\r\n..\r\n.\r\n", 7),
        ];
        for &(input, max) in cases {
            let whole = outcome(input, input.len(), max);
            for step in [1, 2, 3, 7, 64, 999] {
                assert_eq!(outcome(input, step, max), whole, "{input:?} max {max} step {step}");
            }
        }
        assert_eq!(outcome(&long_line, long_line.len(), 500).2, Err(DataError::TooBig));
        assert_eq!(outcome(&long_line, long_line.len(), 999).2, Err(DataError::LineTooLong));
    }

    #[test]
    fn eight_bit_bytes_pass_through() {
        let (got, _) = run(b"\x01\xff\xfe\x7f\r\n.\r\n", 1, 100);
        assert_eq!(got, Ok(b"\x01\xff\xfe\x7f\r\n".to_vec()));
    }

    #[test]
    fn nul_bytes_fail_the_message_after_its_final_dot() {
        let cases: &[(&[u8], Option<usize>)] = &[
            (b"a\0b\r\n.\r\n", Some(8)),
            (b"\0\r\n.\r\n", Some(6)),
            // A NUL at the start of a line hides neither the dot after it nor
            // the end of the message.
            (b"\0.\r\n.\r\nQUIT\r\n", Some(7)),
            (b"x\r\n\0\r\n.\r\nQUIT\r\n", Some(9)),
            (b".\0\r\n.\r\n", Some(7)),
            (b"\0\0\0\0", None),
        ];
        for &(input, want_end) in cases {
            for step in [1, 2, 3, input.len()] {
                let (got, end) = run(input, step, 1000);
                assert_eq!(got, Err(DataError::Nul), "{input:?} step {step}");
                assert_eq!(end, want_end, "{input:?} step {step}");
            }
        }
        // The first problem in the message is the one reported.
        assert_eq!(run(b"a\nb\0\r\n.\r\n", 1, 1000).0, Err(DataError::BareLineEnding));
        assert_eq!(run(b"abcdefgh\0\r\n.\r\n", 1, 5).0, Err(DataError::TooBig));
        let mut long = b"y".repeat(999);
        long.extend_from_slice(b"\0\r\n.\r\n");
        assert_eq!(run(&long, 100, 1 << 20).0, Err(DataError::LineTooLong));
        let mut edge = b"y".repeat(998);
        edge.extend_from_slice(b"\0\r\n.\r\n");
        assert_eq!(run(&edge, 100, 1 << 20).0, Err(DataError::Nul));
    }
}
