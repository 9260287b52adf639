//! Modified UTF-7 (RFC 3501 5.1.3), the form folder names take on disk in a
//! Maildir++ tree as Dovecot writes it: printable ASCII stands for itself,
//! `&` is `&-`, and anything else is UTF-16 in a base64 with `,` for `/`
//! between `&` and `-`. Pure.
//!
//! The decoder reads names that Dovecot or a client wrote, so it takes only
//! the one spelling the encoder gives: base64 may not stand for printable
//! ASCII, two encoded runs may not touch, the unused bits must be zero, and
//! surrogates must pair. A name decodes to one string and that string
//! encodes back to the same name.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Whether `c` stands for itself in modified UTF-7 (`&` does not).
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c) && c != '&'
}

/// `name` in modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut units: Vec<u16> = Vec::new();
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '&' {
            out.push_str("&-");
        } else if is_direct(c) {
            out.push(c);
        } else {
            units.clear();
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
            while let Some(&next) = chars.peek() {
                if next == '&' || is_direct(next) {
                    break;
                }
                units.extend_from_slice(next.encode_utf16(&mut buf));
                chars.next();
            }
            out.push('&');
            base64(&units, &mut out);
            out.push('-');
        }
    }
    out
}

/// Appends the big-endian bytes of `units` in modified base64, without
/// padding.
fn base64(units: &[u16], out: &mut String) {
    let (mut acc, mut bits) = (0u32, 0u32);
    for &u in units {
        acc = (acc << 16) | u32::from(u);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[(acc >> bits) as usize & 63]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[(acc << (6 - bits)) as usize & 63]));
    }
}

fn base64_value(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == b).map(|i| i as u32)
}

/// The text `name` spells in modified UTF-7.
///
/// # Errors
/// A [`Mutf7Error`] at the first byte that is not the encoder's spelling.
pub fn decode(name: &str) -> Result<String, Mutf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    // Where the last encoded run ended, to refuse one that starts right there.
    let mut run_end = None;
    while i < bytes.len() {
        let b = bytes[i];
        if !(0x20..=0x7e).contains(&b) {
            let found = name[i..].chars().next().unwrap_or('\0');
            return Err(Mutf7Error::at(i, Problem::NotPrintable(found)));
        }
        if b != b'&' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'-') {
            out.push('&');
            i += 2;
            continue;
        }
        if run_end == Some(i) {
            return Err(Mutf7Error::at(i, Problem::Adjacent));
        }
        i = decode_run(bytes, i, &mut out)?;
        run_end = Some(i);
    }
    Ok(out)
}

/// Decodes the run that starts with the `&` at `start` into `out`; returns
/// the offset after its `-`.
fn decode_run(bytes: &[u8], start: usize, out: &mut String) -> Result<usize, Mutf7Error> {
    let (mut acc, mut bits) = (0u32, 0u32);
    // A high surrogate waiting for its low half, and where it began.
    let mut high: Option<(u16, usize)> = None;
    // Where the unit being filled began.
    let mut unit_at = start + 1;
    let mut i = start + 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(Mutf7Error::at(start, Problem::Unterminated));
        };
        if b == b'-' {
            break;
        }
        let Some(v) = base64_value(b) else {
            let found = std::str::from_utf8(&bytes[i..]).ok().and_then(|s| s.chars().next()).unwrap_or('\0');
            return Err(Mutf7Error::at(i, Problem::NotBase64(found)));
        };
        if bits == 0 {
            unit_at = i;
        }
        acc = (acc << 6) | v;
        bits += 6;
        i += 1;
        if bits < 16 {
            continue;
        }
        bits -= 16;
        let unit = (acc >> bits) as u16;
        acc &= (1 << bits) - 1;
        let at = unit_at;
        unit_at = i - usize::from(bits > 0);
        match (high.take(), unit) {
            (None, 0xD800..=0xDBFF) => high = Some((unit, at)),
            (Some((h, _)), 0xDC00..=0xDFFF) => {
                let c = 0x10000 + ((u32::from(h) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                out.push(char::from_u32(c).ok_or(Mutf7Error::at(at, Problem::LoneSurrogate))?);
            }
            (Some((_, h_at)), _) => return Err(Mutf7Error::at(h_at, Problem::LoneSurrogate)),
            (None, 0xDC00..=0xDFFF) => return Err(Mutf7Error::at(at, Problem::LoneSurrogate)),
            (None, 0) => return Err(Mutf7Error::at(at, Problem::Nul)),
            (None, u) => {
                let c = char::from_u32(u32::from(u)).ok_or(Mutf7Error::at(at, Problem::LoneSurrogate))?;
                if c == '&' || is_direct(c) {
                    return Err(Mutf7Error::at(at, Problem::Direct(c)));
                }
                out.push(c);
            }
        }
    }
    if let Some((_, at)) = high {
        return Err(Mutf7Error::at(at, Problem::LoneSurrogate));
    }
    if i == start + 1 {
        // `&-` is handled by the caller; an empty run cannot reach here.
        return Err(Mutf7Error::at(start, Problem::Unterminated));
    }
    if bits >= 6 {
        return Err(Mutf7Error::at(unit_at, Problem::Partial));
    }
    if acc != 0 {
        return Err(Mutf7Error::at(i - 1, Problem::Padding));
    }
    Ok(i + 1)
}

/// Why a name is not modified UTF-7, and the byte offset where that shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mutf7Error {
    /// Byte offset in the name.
    pub at: usize,
    /// What is wrong there.
    pub problem: Problem,
}

impl Mutf7Error {
    fn at(at: usize, problem: Problem) -> Mutf7Error {
        Mutf7Error { at, problem }
    }
}

/// What is wrong in a modified UTF-7 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A character outside printable ASCII, which must be encoded.
    NotPrintable(char),
    /// An `&` with no `-` to end its run.
    Unterminated,
    /// A character in a run that is not modified base64.
    NotBase64(char),
    /// A run that starts where the last one ended: the two must be one.
    Adjacent,
    /// Base64 for a printable ASCII character, which stands for itself.
    Direct(char),
    /// An encoded NUL.
    Nul,
    /// Half of a surrogate pair.
    LoneSurrogate,
    /// A run ends inside a UTF-16 unit.
    Partial,
    /// The bits after the last unit are not zero.
    Padding,
}

impl fmt::Display for Mutf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.problem {
            Problem::NotPrintable(c) => format!("{c:?} is not printable ASCII and must be encoded"),
            Problem::Unterminated => "`&` starts a run that no `-` ends".to_string(),
            Problem::NotBase64(c) => format!("{c:?} is not modified base64"),
            Problem::Adjacent => "an encoded run follows another; they must be one".to_string(),
            Problem::Direct(c) => format!("{c:?} is encoded but must stand for itself"),
            Problem::Nul => "NUL is encoded".to_string(),
            Problem::LoneSurrogate => "half of a UTF-16 surrogate pair".to_string(),
            Problem::Partial => "the run ends inside a UTF-16 unit".to_string(),
            Problem::Padding => "the unused bits at the end of the run are not zero".to_string(),
        };
        write!(f, "modified UTF-7, byte {}: {what}", self.at)
    }
}

impl std::error::Error for Mutf7Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names as RFC 3501, Dovecot and common clients spell them.
    const PAIRS: &[(&str, &str)] = &[
        ("INBOX", "INBOX"),
        ("Sent Items", "Sent Items"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("&&", "&-&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
        ("日本語", "&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Корзина", "&BBoEPgRABDcEOAQ9BDA-"),
        ("😀", "&2D3eAA-"),
        ("a😀b", "a&2D3eAA-b"),
        ("tab\there", "tab&AAk-here"),
        ("del\u{7f}", "del&AH8-"),
        ("ü&ü", "&APw-&-&APw-"),
        ("", ""),
    ];

    #[test]
    fn names_encode_and_decode_as_rfc_3501_writes_them() {
        for &(text, wire) in PAIRS {
            assert_eq!(encode(text), wire, "{text:?}");
            assert_eq!(decode(wire).as_deref(), Ok(text), "{wire:?}");
        }
    }

    #[test]
    fn round_trips() {
        for text in ["a&b&-c", "üüü", "\u{10FFFF}", "x\u{FFFF}y", "ab&cd ü-ö &x", "\u{80}\u{800}\u{10000}"]
        {
            let wire = encode(text);
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire:?}");
            assert_eq!(decode(&wire).as_deref(), Ok(text), "{text:?} as {wire:?}");
            assert_eq!(encode(&decode(&wire).unwrap()), wire);
        }
    }

    #[test]
    fn other_spellings_are_refused_precisely() {
        use Problem::*;
        for (wire, at, problem) in [
            ("Entwürfe", 4, NotPrintable('ü')),
            ("a\tb", 1, NotPrintable('\t')),
            ("a&APw", 1, Unterminated),
            ("&", 0, Unterminated),
            ("a&AP.w-", 4, NotBase64('.')),
            ("&AP/w-", 3, NotBase64('/')),
            ("&APw-&APw-", 5, Adjacent),
            ("&AGE-", 1, Direct('a')),
            ("&ACY-", 1, Direct('&')),
            ("&AAA-", 1, Nul),
            ("&2D0-", 1, LoneSurrogate),
            ("&3gA-", 1, LoneSurrogate),
            ("&2D0AYQ-", 1, LoneSurrogate),
            ("&APw", 0, Unterminated),
            ("&AP-", 1, Partial),
            ("&APx-", 3, Padding),
            ("&A-", 1, Partial),
        ] {
            assert_eq!(decode(wire), Err(Mutf7Error { at, problem }), "{wire:?}");
        }
        assert_eq!(
            decode("&APx-").unwrap_err().to_string(),
            "modified UTF-7, byte 3: the unused bits at the end of the run are not zero"
        );
    }
}
