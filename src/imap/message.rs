//! What IMAP reads of a stored message: its size as sent (every bare LF as
//! CRLF), where its header ends, its header fields. A message is read from
//! its file as far as needed; only a header, and never more than
//! [`MAX_HEADER`] of it, is ever held in memory.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _};
use std::path::Path;

/// The most header bytes read into memory.
pub const MAX_HEADER: usize = 1 << 20;

/// A message's shape as its file shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Header bytes in the file, its blank line included.
    pub header_raw: u64,
    /// The header's size as sent.
    pub header_sent: u64,
    /// The whole message's size as sent.
    pub sent: u64,
}

/// The `,W=` size a file name holds (Dovecot's and ours).
pub fn size_in_name(name: &str) -> Option<u64> {
    let unique = crate::mailbox::names::split_info(name).0;
    unique.split(',').find_map(|f| f.strip_prefix("W=")).and_then(|v| v.parse().ok())
}

/// Counts, in `bytes` read after a byte that was CR or not (`prev_cr`),
/// the bare LFs; returns them and whether the last byte is CR.
fn bare_lfs(bytes: &[u8], mut prev_cr: bool) -> (u64, bool) {
    let mut n = 0;
    for &b in bytes {
        if b == b'\n' && !prev_cr {
            n += 1;
        }
        prev_cr = b == b'\r';
    }
    (n, prev_cr)
}

/// Reads the file for its shape.
///
/// # Errors
/// The file system's.
pub fn shape(path: &Path) -> io::Result<Shape> {
    let mut r = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut line = Vec::new();
    let (mut header_raw, mut header_sent) = (0u64, 0u64);
    let mut in_header = true;
    let mut total_raw = 0u64;
    let mut total_sent = 0u64;
    let mut prev_cr = false;
    loop {
        line.clear();
        let n = r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let (extra, cr) = bare_lfs(&line, prev_cr);
        prev_cr = cr;
        total_raw += n as u64;
        total_sent += n as u64 + extra;
        if in_header {
            header_raw = total_raw;
            header_sent = total_sent;
            if line == b"\n" || line == b"\r\n" {
                in_header = false;
            }
        }
        if !in_header {
            // The body needs only counting.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                let (extra, cr) = bare_lfs(&buf[..n], prev_cr);
                prev_cr = cr;
                total_sent += n as u64 + extra;
            }
            break;
        }
    }
    Ok(Shape { header_raw, header_sent, sent: total_sent })
}

/// The header's bytes as stored, its blank line included, up to
/// [`MAX_HEADER`].
///
/// # Errors
/// The file system's.
pub fn header(path: &Path) -> io::Result<Vec<u8>> {
    let mut r = BufReader::new(File::open(path)?.take(MAX_HEADER as u64));
    let mut out = Vec::new();
    loop {
        let start = out.len();
        if r.read_until(b'\n', &mut out)? == 0 {
            break;
        }
        let line = &out[start..];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
    }
    Ok(out)
}

/// The header's fields: name and whole field (the name, the colon, the
/// value and its folded lines, each line ended by CRLF).
pub fn fields(header: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut out: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in header.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            break;
        }
        if matches!(text.first(), Some(b' ' | b'\t')) {
            if let Some((_, field)) = out.last_mut() {
                field.extend_from_slice(text);
                field.extend_from_slice(b"\r\n");
            }
            continue;
        }
        let Some(colon) = text.iter().position(|&b| b == b':') else { continue };
        let name = &line[..colon];
        let mut field = text.to_vec();
        field.extend_from_slice(b"\r\n");
        out.push((name.strip_suffix(b" ").unwrap_or(name), field));
    }
    out
}

/// The fields named in `names` (or with `not`, all others), as
/// `HEADER.FIELDS` sends them, with the blank line that ends a header.
pub fn select_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, field) in fields(header) {
        let named = names.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if named != not {
            out.extend_from_slice(&field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The unfolded value of the first field `name`, without leading blanks.
pub fn value(fields: &[(&[u8], Vec<u8>)], name: &str) -> Option<Vec<u8>> {
    let (n, field) = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))?;
    let mut v: Vec<u8> = field[n.len()..].iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    if v.first() == Some(&b':') {
        v.remove(0);
    } else if let Some(i) = v.iter().position(|&b| b == b':') {
        v.drain(..=i);
    }
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    Some(v[start..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_count_bare_lfs_as_crlf() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(&p, "Subject: a\nX: b\r\n\nbody\nend\r\n").unwrap();
        let s = shape(&p).unwrap();
        assert_eq!(s, Shape { header_raw: 18, header_sent: 20, sent: 20 + 6 + 5 });
        std::fs::write(&p, "Subject: no body").unwrap();
        assert_eq!(shape(&p).unwrap(), Shape { header_raw: 16, header_sent: 16, sent: 16 });
        assert_eq!(size_in_name("1.M1.h,S=10,W=12:2,S"), Some(12));
        assert_eq!(size_in_name("1.M1.h:2,S"), None);
    }

    #[test]
    fn header_fields_are_picked_folded_and_all() {
        let h = b"Subject: hi\n there\nFrom : a@b\nTo: c@d\n\nbody";
        assert_eq!(select_fields(h, &["subject".into()], false), b"Subject: hi\r\n there\r\n\r\n");
        assert_eq!(select_fields(h, &["subject".into(), "to".into()], true), b"From : a@b\r\n\r\n");
        let f = fields(h);
        assert_eq!(value(&f, "subject").unwrap(), b"hi there");
        assert_eq!(value(&f, "from").unwrap(), b"a@b");
        assert_eq!(value(&f, "cc"), None);
    }
}
