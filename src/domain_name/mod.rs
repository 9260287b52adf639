//! The text of a domain name: the one check of its labels, lengths and
//! characters, for the domains of mail addresses, the host names in the config
//! and the names asked of DNS, and (in `punycode`) how a U-label is written as
//! an A-label. Pure: no I/O, no DNS, no config; callers word their own errors.
//!
//! The three kinds of name differ only where the RFCs make them differ: mail
//! may carry U-labels (RFC 6531) and allows 255 octets (RFC 5321 4.5.3.1.2);
//! DNS allows 253 in text form (RFC 1035 2.3.4) and knows underscored labels
//! such as `_dmarc` (RFC 8552) that no host name has.

pub mod punycode;

use std::fmt;
use std::net::IpAddr;

/// Which names a check accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The domain of a mail address or an EHLO name (RFC 5321 4.1.2 `Domain`):
    /// labels of letters, digits and inner hyphens, letters from any script
    /// (RFC 6531 U-labels), at most 255 octets. A name that reads as an IP
    /// address is a domain here, as the RFC's grammar has it.
    Mail,
    /// A host or domain name in the config: ASCII labels of letters, digits and
    /// inner hyphens, at most 253 octets, never an IP address (RFC 1123 2.1).
    Host,
    /// A name to ask DNS about, checked in the form sent: each label that is not
    /// ASCII is written as its A-label first (IDNA, RFC 5891 5), and the result
    /// holds host-name labels or underscored ones (`_dmarc`, `_domainkey`), at
    /// most 253 octets, never an IP address.
    Lookup,
}

impl Kind {
    fn max_len(self) -> usize {
        match self {
            Kind::Mail => 255,
            Kind::Host | Kind::Lookup => 253,
        }
    }

    /// Whether `c` may stand in a label; `ascii` says whether the whole label is.
    fn allows(self, c: char, ascii: bool) -> bool {
        match self {
            Kind::Mail => c.is_alphanumeric() || c == '-',
            Kind::Host => c.is_ascii_alphanumeric() || c == '-',
            // A U-label becomes an A-label: letters and digits of any script.
            Kind::Lookup if !ascii => c.is_alphanumeric() || c == '-',
            Kind::Lookup => c.is_ascii_alphanumeric() || c == '-' || c == '_',
        }
    }
}

/// The first thing found wrong with a name, in the order checked: empty, an IP
/// address, too long, then label by label (its length, its hyphens, its
/// characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// Nothing but perhaps the final dot.
    Empty,
    /// The name reads as an IP address (never for `Kind::Mail`).
    IpAddress,
    /// Longer than the kind allows (255 or 253 octets).
    TooLong,
    /// A label is empty (two dots in a row, a leading dot) or longer than 63 octets.
    BadLabel,
    /// A label starts or ends with `-`.
    Hyphen,
    /// A character the kind does not allow in a label.
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the name is empty"),
            NameError::IpAddress => f.write_str("the name is an IP address"),
            NameError::TooLong => f.write_str("the name is too long"),
            NameError::BadLabel => f.write_str("a label is empty or longer than 63 octets"),
            NameError::Hyphen => f.write_str("a label starts or ends with '-'"),
            NameError::BadChar(c) => write!(f, "{c:?} is not allowed in a label"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks `name` as a name of `kind` and returns it as it is to be stored or
/// sent: lowercase, without one final dot, and for `Kind::Lookup` in A-labels.
/// Address literals (`[192.0.2.1]`) are not names: the envelope reads those.
///
/// # Errors
/// The first problem found; see `NameError` for the order.
pub fn check(name: &str, kind: Kind) -> Result<String, NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    // Lowercase first and check what will be stored: lowercasing can change
    // the length and even the kind of characters (U+0130).
    // Host names are ASCII: lowercasing only that keeps any other character
    // as written for the error.
    let lower = if kind == Kind::Host { name.to_ascii_lowercase() } else { name.to_lowercase() };
    if lower.is_empty() {
        return Err(NameError::Empty);
    }
    if kind != Kind::Mail && lower.parse::<IpAddr>().is_ok() {
        return Err(NameError::IpAddress);
    }
    // Each label as given, and as written in the result.
    let labels: Vec<(&str, String)> = lower
        .split('.')
        .map(|label| match kind {
            Kind::Lookup if !label.is_ascii() => {
                punycode::encode(label).map(|p| (label, format!("xn--{p}"))).ok_or(NameError::TooLong)
            }
            _ => Ok((label, label.to_string())),
        })
        .collect::<Result<_, _>>()?;
    let out = labels.iter().map(|(_, written)| written.as_str()).collect::<Vec<_>>().join(".");
    if out.len() > kind.max_len() {
        return Err(NameError::TooLong);
    }
    for (label, written) in &labels {
        if written.is_empty() || written.len() > 63 {
            return Err(NameError::BadLabel);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::Hyphen);
        }
        let ascii = label.is_ascii();
        if let Some(c) = label.chars().find(|&c| !kind.allows(c, ascii)) {
            return Err(NameError::BadChar(c));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::NameError::*;
    use super::*;

    #[test]
    fn each_kind_accepts_its_names() {
        let label63 = "a".repeat(63);
        let three = format!("{label63}.{label63}.{label63}");
        let (at253, at255, at256) = (
            format!("{three}.{}", "b".repeat(61)),
            format!("{three}.{}", "b".repeat(63)),
            format!("{three}.{}", "b".repeat(64)),
        );
        type Want<'a> = Result<&'a str, NameError>;
        // (input, as Mail, as Host, as Lookup)
        let cases: &[(&str, Want<'_>, Want<'_>, Want<'_>)] = &[
            ("Example.COM.", Ok("example.com"), Ok("example.com"), Ok("example.com")),
            ("mail.example", Ok("mail.example"), Ok("mail.example"), Ok("mail.example")),
            ("_dmarc.example", Err(BadChar('_')), Err(BadChar('_')), Ok("_dmarc.example")),
            (
                "xn--bcher-kva.example",
                Ok("xn--bcher-kva.example"),
                Ok("xn--bcher-kva.example"),
                Ok("xn--bcher-kva.example"),
            ),
            (&label63, Ok(&label63), Ok(&label63), Ok(&label63)),
            (&format!("{label63}a"), Err(BadLabel), Err(BadLabel), Err(BadLabel)),
            (&at253, Ok(&at253), Ok(&at253), Ok(&at253)),
            (&at255, Ok(&at255), Err(TooLong), Err(TooLong)),
            // The whole name's length is checked before its labels'.
            (&at256, Err(TooLong), Err(TooLong), Err(TooLong)),
            ("Bücher.example", Ok("bücher.example"), Err(BadChar('ü')), Ok("xn--bcher-kva.example")),
            ("bücher.example", Ok("bücher.example"), Err(BadChar('ü')), Ok("xn--bcher-kva.example")),
            ("BÜCHER.example", Ok("bücher.example"), Err(BadChar('Ü')), Ok("xn--bcher-kva.example")),
            ("192.0.2.1", Ok("192.0.2.1"), Err(IpAddress), Err(IpAddress)),
            ("2001:db8::1", Err(BadChar(':')), Err(IpAddress), Err(IpAddress)),
            (
                "1.2.0.192.in-addr.arpa",
                Ok("1.2.0.192.in-addr.arpa"),
                Ok("1.2.0.192.in-addr.arpa"),
                Ok("1.2.0.192.in-addr.arpa"),
            ),
            ("a..b", Err(BadLabel), Err(BadLabel), Err(BadLabel)),
            ("a.b..", Err(BadLabel), Err(BadLabel), Err(BadLabel)),
            ("bü.test..", Err(BadLabel), Err(BadChar('ü')), Err(BadLabel)),
            (".a", Err(BadLabel), Err(BadLabel), Err(BadLabel)),
            ("", Err(Empty), Err(Empty), Err(Empty)),
            (".", Err(Empty), Err(Empty), Err(Empty)),
            ("-a.example", Err(Hyphen), Err(Hyphen), Err(Hyphen)),
            ("a-.example", Err(Hyphen), Err(Hyphen), Err(Hyphen)),
            ("-bü.example", Err(Hyphen), Err(Hyphen), Err(Hyphen)),
            ("a-b.example", Ok("a-b.example"), Ok("a-b.example"), Ok("a-b.example")),
            ("ex ample.com", Err(BadChar(' ')), Err(BadChar(' ')), Err(BadChar(' '))),
            ("a\\046b", Err(BadChar('\\')), Err(BadChar('\\')), Err(BadChar('\\'))),
            ("bü_cher.test", Err(BadChar('_')), Err(BadChar('ü')), Err(BadChar('_'))),
            ("bü☃.test", Err(BadChar('☃')), Err(BadChar('ü')), Err(BadChar('☃'))),
            // U+0130 lowercases to "i" and a combining dot, which is no letter.
            ("İ.example", Err(BadChar('\u{307}')), Err(BadChar('İ')), Err(BadChar('\u{307}'))),
        ];
        for (input, mail, host, lookup) in cases {
            for (kind, want) in [(Kind::Mail, mail), (Kind::Host, host), (Kind::Lookup, lookup)] {
                assert_eq!(check(input, kind), want.map(String::from), "{input:?} as {kind:?}");
            }
        }
    }

    #[test]
    fn label_lengths_count_what_is_sent() {
        // 62 octets as a U-label, 68 as the A-label "xn--aaa...-3hg".
        let name = format!("{}ü.example", "a".repeat(60));
        assert_eq!(check(&name, Kind::Mail), Ok(name.clone()));
        assert_eq!(check(&name, Kind::Lookup), Err(BadLabel));
        // 63 octets as a U-label, 27 as the A-label.
        let name = format!("{}.example", "例".repeat(21));
        let want = format!("xn--fsq{}.example", "a".repeat(20));
        assert_eq!(check(&name, Kind::Lookup), Ok(want));
    }
}
