//! The names the config holds: host and domain names, local names (users and
//! aliases), alias targets and `send_as` sender patterns. Pure text in, checked
//! and normalised text out.

use crate::envelope::{Address, Domain};

/// A host or domain name: letters, digits, '-' and dots; lowercased, trailing dot removed.
/// Stricter than [`Domain::parse`] (ASCII only, no address literals), so what passes
/// here is always a `Domain`.
pub(super) fn dns_name(s: &str) -> Result<Domain, String> {
    use crate::domain_name::{self, Kind, NameError};
    let name = domain_name::check(s, Kind::Host).map_err(|e| match e {
        NameError::Empty => "the name is empty".to_string(),
        NameError::IpAddress => format!("`{s}` is an IP address; a DNS name like mail.example.com is needed here"),
        NameError::TooLong => format!("`{s}` is longer than the 253 characters a DNS name may have"),
        NameError::BadChar(c) => {
            format!("`{s}` is not a valid DNS name: {c:?} is not allowed (use letters, digits, '-' and dots)")
        }
        NameError::BadLabel | NameError::Hyphen => format!(
            "`{s}` is not a valid DNS name: each dot-separated part must be 1 to 63 characters and not start or end with '-'"
        ),
    })?;
    Domain::parse(&name).map_err(|problem| format!("`{s}` is not a valid DNS name: {problem}"))
}

/// A local name (user or alias), lowercased. It also names a Maildir directory, so
/// path characters are refused along with the address tricks ('+', '%', '!').
pub(super) fn local_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a local name must not be empty".to_string());
    }
    if s.contains('@') {
        return Err(format!(
            "`{s}` must be a local name without '@' and domain; the domain comes from the table"
        ));
    }
    if s.starts_with('.') {
        return Err(format!("`{s}` must not start with a dot"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control() || "+%!\"'/\\".contains(*c)) {
        let why = if c == '+' { " ('+' separates a tag, as in alice+news)" } else { "" };
        return Err(format!("`{s}` contains {c:?}, which is not allowed in a local name{why}"));
    }
    Ok(s.to_lowercase())
}

/// An alias or catch-all target: a local name that `is_local` knows, or a full
/// address `local@domain` with exactly one '@' outside quotes.
pub(super) fn target(s: &str, domain: &str, is_local: impl Fn(&str) -> bool) -> Result<String, String> {
    if !s.contains('@') && !s.contains('"') {
        let local = local_name(s)?;
        if is_local(&local) {
            return Ok(local);
        }
        return Err(format!(
            "`{s}` is not a user or alias of {domain} (for another domain write the full address, like {s}@example.org)"
        ));
    }
    let mut quoted = false;
    let mut escaped = false;
    let mut ats = Vec::new();
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '@' {
            ats.push(i);
        } else if !quoted && (c.is_whitespace() || c.is_control()) {
            return Err(format!("`{s}` contains a space or control character"));
        }
    }
    if quoted {
        return Err(format!("`{s}` has an unclosed quote"));
    }
    match ats.as_slice() {
        [at] if *at > 0 && at + 1 < s.len() => {
            let domain = dns_name(&s[at + 1..]).map_err(|problem| format!("in `{s}`: {problem}"))?;
            let target = format!("{}@{domain}", &s[..*at]);
            // Routing reads the target as an envelope address; one it cannot read
            // would be dropped there without a word.
            match Address::parse(&target) {
                Ok(_) => Ok(target),
                Err(problem) => Err(format!("`{s}` is not an address mail can be sent to: {problem}")),
            }
        }
        _ => Err(format!(
            "`{s}` is neither a local name nor an address like someone@example.org (an address needs exactly one '@' with text on both sides)"
        )),
    }
}

/// A `send_as` pattern: `*`, `*@domain` or `local@domain`, lowercased.
pub(super) fn sender_pattern(s: &str) -> Result<String, String> {
    let lower = s.trim().to_lowercase();
    if lower == "*" {
        return Ok(lower);
    }
    match lower.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.contains('@') => match dns_name(domain) {
            Ok(_) => Ok(lower),
            Err(e) => Err(format!("`{s}` is not a sender pattern: {e}")),
        },
        _ => Err(format!("`{s}` is not a sender pattern: use an address, \"*@domain\" or \"*\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `read` over (input, the normalised text or a fragment of the error).
    fn check(read: impl Fn(&str) -> Result<String, String>, cases: &[(&str, Result<&str, &str>)]) {
        for (input, want) in cases {
            match (read(input), want) {
                (Ok(name), Ok(text)) => assert_eq!(name, *text, "{input:?}"),
                (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{input:?}: {err}"),
                (got, _) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn dns_names_are_lowercased_and_checked() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("Mail.Example.COM.", Ok("mail.example.com")),
            ("localhost", Ok("localhost")),
            ("a-b.example", Ok("a-b.example")),
            ("", Err("the name is empty")),
            (".", Err("the name is empty")),
            ("192.168.1.10", Err("is an IP address")),
            ("::1", Err("is an IP address")),
            ("exa mple.com", Err("' ' is not allowed")),
            ("[192.0.2.1]", Err("'[' is not allowed")),
            ("b\u{fc}cher.example", Err("is not allowed")),
            ("-a.example", Err("not start or end with '-'")),
            ("a..example", Err("1 to 63 characters")),
        ];
        check(|s| dns_name(s).map(|name| name.to_string()), cases);
        let long = format!("{}.example", "a".repeat(250));
        assert!(dns_name(&long).is_err_and(|e| e.contains("253 characters")));
        let label = format!("{}.example", "a".repeat(64));
        assert!(dns_name(&label).is_err_and(|e| e.contains("1 to 63 characters")));
    }

    #[test]
    fn local_names_refuse_address_tricks_and_paths() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("Alice", Ok("alice")),
            ("first.last", Ok("first.last")),
            ("", Err("must not be empty")),
            ("a@b", Err("without '@'")),
            (".hidden", Err("must not start with a dot")),
            ("al+ice", Err("'+' separates a tag")),
            ("a%b", Err("'%'")),
            ("a!b", Err("'!'")),
            ("a/b", Err("'/'")),
            ("a b", Err("' '")),
        ];
        check(local_name, cases);
    }

    #[test]
    fn targets_are_local_names_or_full_addresses() {
        let is_local = |name: &str| name == "alice";
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("ALICE", Ok("alice")),
            ("Someone+tag@Elsewhere.Example", Ok("Someone+tag@elsewhere.example")),
            ("\"a@b\"@example.org", Ok("\"a@b\"@example.org")),
            ("carol", Err("`carol` is not a user or alias of example.com")),
            ("a@b@example.org", Err("exactly one '@'")),
            ("@example.org", Err("exactly one '@'")),
            ("a@", Err("exactly one '@'")),
            ("\"a@example.org", Err("unclosed quote")),
            ("a b@example.org", Err("space or control character")),
            ("a@exa_mple.org", Err("in `a@exa_mple.org`: ")),
            (
                "a(b@example.org",
                Err("`a(b@example.org` is not an address mail can be sent to: bad local part"),
            ),
            (".a@example.org", Err("is not an address mail can be sent to")),
            ("\"a b\"@example.org", Ok("\"a b\"@example.org")),
        ];
        check(|s| target(s, "example.com", is_local), cases);
    }

    #[test]
    fn sender_patterns_are_addresses_domain_wildcards_or_anything() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("*", Ok("*")),
            (" *@Example.ORG ", Ok("*@example.org")),
            ("Bob@Example.org", Ok("bob@example.org")),
            ("*@", Err("`*@` is not a sender pattern")),
            ("bob", Err("use an address, \"*@domain\" or \"*\"")),
            ("@example.org", Err("is not a sender pattern")),
            ("a@b@example.org", Err("is not a sender pattern")),
        ];
        check(sender_pattern, cases);
    }
}
