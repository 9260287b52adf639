//! Addresses, domains and the envelope of one message. Pure: no I/O, no config.
//!
//! Everything from the network is parsed here once, into types that cannot hold
//! an invalid value; the rest of the program never looks at raw address text.

use std::fmt;

use crate::domain_name::{self, Kind, NameError};

/// A domain name, stored lowercased without a trailing dot, or an address literal
/// such as `[192.0.2.1]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Domain(String);

impl Domain {
    /// Parses a domain (letters, digits, `-`, dots; UTF-8 labels allowed) or an
    /// address literal in brackets. Names are checked by `domain_name::check`
    /// as `Kind::Mail`.
    ///
    /// # Errors
    /// Returns a short description of what is wrong.
    pub fn parse(s: &str) -> Result<Domain, &'static str> {
        let bare = s.strip_suffix('.').unwrap_or(s);
        if bare.starts_with('[') {
            return Domain::literal(&bare.to_lowercase());
        }
        domain_name::check(s, Kind::Mail).map(Domain).map_err(|e| match e {
            NameError::Empty => "empty domain",
            NameError::TooLong => "domain too long",
            NameError::BadLabel => "bad domain label",
            NameError::Hyphen => "domain label starts or ends with '-'",
            NameError::BadChar(_) => "bad character in domain",
            // Not a problem for a mail domain; worded for completeness.
            NameError::IpAddress => "domain is an IP address",
        })
    }

    /// An address literal, lowercased: `[192.0.2.1]` or `[ipv6:2001:db8::1]`.
    fn literal(s: &str) -> Result<Domain, &'static str> {
        if s.len() > 255 {
            return Err("domain too long");
        }
        let inner = s.strip_prefix('[').unwrap_or(s);
        let inner = inner.strip_suffix(']').ok_or("unterminated address literal")?;
        let ok = if inner.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("IPv6:")) {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            inner.parse::<std::net::Ipv4Addr>().is_ok()
        };
        if ok { Ok(Domain(s.to_ascii_lowercase())) } else { Err("bad address literal") }
    }

    /// The domain as text, lowercased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox `local@domain`. The local part keeps its case (RFC 5321 2.4) but is
/// compared case-insensitively for local users; quoted local parts are stored
/// unquoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: Domain,
}

impl Address {
    /// Builds an address from parts already known to be valid.
    pub fn new(local: impl Into<String>, domain: Domain) -> Address {
        Address { local: local.into(), domain }
    }

    /// Parses `local@domain` (no angle brackets).
    ///
    /// # Errors
    /// Returns a short description of what is wrong.
    pub fn parse(s: &str) -> Result<Address, &'static str> {
        match parse_mailbox(s)? {
            (local, Some(domain)) => Ok(Address { local, domain }),
            (_, None) => Err("address without a domain"),
        }
    }

    /// The local part, unquoted.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// True when the local part would need quoting on the wire.
    fn needs_quotes(&self) -> bool {
        !is_dot_string(&self.local)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.needs_quotes() {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, "\"@{}", self.domain)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// What a MAIL FROM or RCPT TO path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// `<>`: the null reverse-path of bounces.
    Null,
    /// A full mailbox; any source route has been dropped (RFC 5321 4.1.1.3).
    Mailbox(Address),
    /// A local part with no domain, such as `<bob>` or `<postmaster>`.
    Bare(String),
}

/// Parses the path of MAIL FROM / RCPT TO, with its angle brackets.
///
/// # Errors
/// Returns a short description of what is wrong.
pub fn parse_path(s: &str) -> Result<Path, &'static str> {
    let inner =
        s.strip_prefix('<').and_then(|r| r.strip_suffix('>')).ok_or("address must be enclosed in <>")?;
    if inner.is_empty() {
        return Ok(Path::Null);
    }
    // A source route `@a,@b:user@c`: accepted and ignored, as RFC 5321 C says.
    let mailbox = if inner.starts_with('@') {
        let colon = inner.find(':').ok_or("bad source route")?;
        let route = &inner[..colon];
        for hop in route.split(',') {
            let hop = hop.strip_prefix('@').ok_or("bad source route")?;
            Domain::parse(hop)?;
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    match parse_mailbox(mailbox)? {
        (local, Some(domain)) => Ok(Path::Mailbox(Address { local, domain })),
        (local, None) => Ok(Path::Bare(local)),
    }
}

/// Splits `local[@domain]`, unquoting a quoted local part.
fn parse_mailbox(s: &str) -> Result<(String, Option<Domain>), &'static str> {
    let (local, rest) = if let Some(q) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) if is_qtext_or_space(e) || e == '"' || e == '\\' => local.push(e),
                    _ => return Err("bad quoted local part"),
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c if is_qtext_or_space(c) => local.push(c),
                _ => return Err("bad character in quoted local part"),
            }
        }
        let end = end.ok_or("unterminated quoted local part")?;
        (local, &q[end..])
    } else {
        let at = s.rfind('@');
        let local = match at {
            Some(i) => &s[..i],
            None => s,
        };
        if !is_dot_string(local) {
            return Err("bad local part");
        }
        (local.to_string(), at.map_or("", |i| &s[i..]))
    };
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.len() > 64 {
        return Err("local part too long");
    }
    if rest.is_empty() {
        return Ok((local, None));
    }
    let domain = rest.strip_prefix('@').ok_or("junk after local part")?;
    Ok((local, Some(Domain::parse(domain)?)))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn is_qtext_or_space(c: char) -> bool {
    c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') || (!c.is_ascii() && !c.is_control())
}

/// Where one accepted recipient goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Into the Maildir of a local user: `<mail_root>/<domain>/<user>`.
    Local {
        /// The user's name, lowercased, as the config spells it.
        user: String,
        /// The local domain.
        domain: Domain,
    },
    /// To another mail server.
    Remote(Address),
}

impl Route {
    /// The address this route delivers to, as written in Delivered-To and logs.
    pub fn address(&self) -> String {
        match self {
            Route::Local { user, domain } => format!("{user}@{domain}"),
            Route::Remote(a) => a.to_string(),
        }
    }
}

/// What the queue keeps about one accepted message besides its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path; `None` is the null sender `<>` of bounces.
    pub sender: Option<Address>,
    /// Where the message goes, each route once.
    pub recipients: Vec<Route>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_null_mailbox_or_bare_and_bad_ones_are_refused() {
        let mb = |l: &str, d: &str| Ok(Path::Mailbox(Address::new(l, Domain::parse(d).unwrap())));
        let cases: &[(&str, Result<Path, &str>)] = &[
            ("<>", Ok(Path::Null)),
            ("<a@b.example>", mb("a", "b.example")),
            ("<A.B@Example.COM.>", mb("A.B", "example.com")),
            ("<@relay.example,@x.example:u@d.example>", mb("u", "d.example")),
            ("<\"john doe\"@d.example>", mb("john doe", "d.example")),
            ("<\"a@evil.example\"@d.example>", mb("a@evil.example", "d.example")),
            ("<user%evil.example@d.example>", mb("user%evil.example", "d.example")),
            ("<evil.example!user@d.example>", mb("evil.example!user", "d.example")),
            ("<u@[192.0.2.1]>", mb("u", "[192.0.2.1]")),
            ("<u@[IPv6:::1]>", mb("u", "[ipv6:::1]")),
            ("<用户@例子.example>", mb("用户", "例子.example")),
            ("<postmaster>", Ok(Path::Bare("postmaster".into()))),
            ("<bob>", Ok(Path::Bare("bob".into()))),
            ("a@b.example", Err("address must be enclosed in <>")),
            ("<a@b.example", Err("address must be enclosed in <>")),
            ("<a@@b.example>", Err("bad local part")),
            ("<a..b@c.example>", Err("bad local part")),
            ("<.a@c.example>", Err("bad local part")),
            ("<a@-c.example>", Err("domain label starts or ends with '-'")),
            ("<a@c..example>", Err("bad domain label")),
            ("<a b@c.example>", Err("bad local part")),
            ("<a@c_d.example>", Err("bad character in domain")),
            ("<a@[300.1.1.1]>", Err("bad address literal")),
            ("<\"unterminated@c.example>", Err("unterminated quoted local part")),
            ("<\"\"@c.example>", Err("empty local part")),
            ("<@relay.example:>", Err("bad local part")),
            ("<@:u@d.example>", Err("empty domain")),
            ("<a@>", Err("empty domain")),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_path(input), want, "input {input}");
        }
    }

    #[test]
    fn display_quotes_when_needed() {
        let d = Domain::parse("d.example").unwrap();
        assert_eq!(Address::new("plain.user", d.clone()).to_string(), "plain.user@d.example");
        assert_eq!(Address::new("john doe", d.clone()).to_string(), "\"john doe\"@d.example");
        assert_eq!(Address::new("a\"b", d).to_string(), "\"a\\\"b\"@d.example");
    }

    #[test]
    fn every_accepted_path_survives_print_then_parse() {
        let inputs = [
            "<a@İ.example>",
            "<a@ȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺȺ.example>",
            "<\"a b\\\"c\"@Example.COM>",
            "<a..b@x.example>",
            "<用户@例子.example>",
            "<\"a@b\"@[IPv6:::1]>",
            "<ß@STRASSE.example>",
        ];
        for input in inputs {
            if let Ok(Path::Mailbox(a)) = parse_path(input) {
                let printed = a.to_string();
                assert_eq!(Address::parse(&printed), Ok(a.clone()), "{input} printed as {printed}");
            }
        }
    }

    #[test]
    fn long_local_part_refused() {
        let long = format!("<{}@d.example>", "a".repeat(65));
        assert_eq!(parse_path(&long), Err("local part too long"));
    }
}
