//! FETCH's ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 7.5.2), from a
//! message's header and its MIME structure; and the part a section number
//! names. Header text goes out as it is stored (encoded words and all), as
//! IMAP asks.

use super::message::{fields, value};
use super::mime::Part;
use super::response::{nstring, string};

/// One address of a header's list, as the envelope holds it.
#[derive(Debug, PartialEq, Eq)]
enum Addr {
    /// A mailbox: display name, source route, local part, domain.
    Mailbox(Option<String>, Option<String>, String, String),
    /// A group's start, by its name.
    GroupStart(String),
    /// A group's end.
    GroupEnd,
}

/// The most addresses read from one header.
const MAX_ADDRESSES: usize = 1000;

/// Reads an address list leniently: what does not read as an address is
/// left out rather than refused.
fn addresses(v: &str) -> Vec<Addr> {
    let mut out = Vec::new();
    let mut phrase = String::new();
    let mut comment = String::new();
    let mut angle: Option<String> = None;
    let mut in_group = false;
    let mut chars = v.chars().peekable();
    let finish = |phrase: &mut String,
                  comment: &mut String,
                  angle: &mut Option<String>,
                  out: &mut Vec<Addr>| {
        let (name, spec) = match angle.take() {
            Some(a) => (Some(phrase.trim().to_string()).filter(|s| !s.is_empty()), a),
            None => (Some(comment.trim().to_string()).filter(|s| !s.is_empty()), phrase.trim().to_string()),
        };
        phrase.clear();
        comment.clear();
        // A source route (`@a,@b:`) before the address is the envelope's adl.
        let (route, spec) = match spec.rsplit_once(':') {
            Some((r, s)) if r.starts_with('@') => (Some(r.trim().to_string()), s.trim().to_string()),
            _ => (None, spec.trim().to_string()),
        };
        if spec.is_empty() || out.len() >= MAX_ADDRESSES {
            return;
        }
        let (local, domain) = match spec.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), d.to_string()),
            None => (spec, String::new()),
        };
        out.push(Addr::Mailbox(name, route, local, domain));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut q = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                q.push(n);
                            }
                        }
                        '"' => break,
                        _ => q.push(c),
                    }
                }
                match angle.as_mut() {
                    Some(a) => a.push_str(&q),
                    None => {
                        if !phrase.is_empty() && !phrase.ends_with(' ') {
                            phrase.push(' ');
                        }
                        phrase.push_str(&q);
                    }
                }
            }
            '(' => {
                let mut depth = 1;
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                text.push(n);
                            }
                        }
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => text.push(c),
                    }
                }
                comment = text;
            }
            '<' => {
                let mut a = String::new();
                let mut depth = 0;
                for c in chars.by_ref() {
                    match c {
                        '>' if depth == 0 => break,
                        '(' => depth += 1,
                        ')' if depth > 0 => depth -= 1,
                        _ if depth > 0 || c.is_whitespace() => {}
                        _ => a.push(c),
                    }
                }
                angle = Some(a);
            }
            ',' => finish(&mut phrase, &mut comment, &mut angle, &mut out),
            ':' if angle.is_none() && !in_group && !phrase.contains('@') => {
                out.push(Addr::GroupStart(phrase.trim().to_string()));
                phrase.clear();
                in_group = true;
            }
            ';' if in_group => {
                finish(&mut phrase, &mut comment, &mut angle, &mut out);
                out.push(Addr::GroupEnd);
                in_group = false;
            }
            c if angle.is_some() => {
                if let Some(a) = angle.as_mut() {
                    if !c.is_whitespace() {
                        a.push(c);
                    }
                }
            }
            c => phrase.push(if c.is_whitespace() { ' ' } else { c }),
        }
    }
    finish(&mut phrase, &mut comment, &mut angle, &mut out);
    if in_group {
        out.push(Addr::GroupEnd);
    }
    out
}

/// The addresses of a header value as `name <local@domain>` texts, what
/// SEARCH FROM and its kin look in besides the raw value.
pub fn address_texts(v: &[u8]) -> Vec<String> {
    addresses(&String::from_utf8_lossy(v))
        .into_iter()
        .filter_map(|a| match a {
            Addr::Mailbox(name, _, local, domain) => {
                Some(format!("{} <{local}@{domain}>", name.unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

fn address_list(v: Option<Vec<u8>>) -> String {
    let Some(v) = v else { return "NIL".into() };
    let list = addresses(&String::from_utf8_lossy(&v));
    if list.is_empty() {
        return "NIL".into();
    }
    let mut s = String::from("(");
    for a in list {
        match a {
            Addr::Mailbox(name, route, local, domain) => s.push_str(&format!(
                "({} {} {} {})",
                nstring(name.as_deref().map(str::as_bytes)),
                nstring(route.as_deref().map(str::as_bytes)),
                string(local.as_bytes()),
                string(domain.as_bytes())
            )),
            Addr::GroupStart(name) => s.push_str(&format!("(NIL NIL {} NIL)", string(name.as_bytes()))),
            Addr::GroupEnd => s.push_str("(NIL NIL NIL NIL)"),
        }
    }
    s.push(')');
    s
}

/// The ENVELOPE of a message with this header.
pub fn envelope(header: &[u8]) -> String {
    let f = fields(header);
    let raw = |name: &str| nstring(value(&f, name).as_deref());
    let present = |name: &str| value(&f, name).filter(|v| v.iter().any(|b| !b.is_ascii_whitespace()));
    let from = present("from");
    let sender = present("sender").or_else(|| from.clone());
    let reply_to = present("reply-to").or_else(|| from.clone());
    format!(
        "({} {} {} {} {} {} {} {} {} {})",
        raw("date"),
        raw("subject"),
        address_list(from),
        address_list(sender),
        address_list(reply_to),
        address_list(value(&f, "to")),
        address_list(value(&f, "cc")),
        address_list(value(&f, "bcc")),
        raw("in-reply-to"),
        raw("message-id"),
    )
}

fn params(p: &[(String, String)]) -> String {
    if p.is_empty() {
        return "NIL".into();
    }
    let items: Vec<String> =
        p.iter().map(|(k, v)| format!("{} {}", string(k.as_bytes()), string(v.as_bytes()))).collect();
    format!("({})", items.join(" "))
}

fn extension(p: &Part, multipart: bool) -> String {
    let disposition = match &p.disposition {
        Some((d, ps)) => format!("({} {})", string(d.as_bytes()), params(ps)),
        None => "NIL".into(),
    };
    let first = if multipart { params(&p.params) } else { nstring(p.md5.as_deref()) };
    format!(" {first} {disposition} {} {}", nstring(p.language.as_deref()), nstring(p.location.as_deref()))
}

/// BODYSTRUCTURE (`extended`) or BODY of a part.
pub fn structure(p: &Part, extended: bool) -> String {
    if p.media.0 == "multipart" && !p.children.is_empty() {
        let mut s = String::from("(");
        for c in &p.children {
            s.push_str(&structure(c, extended));
        }
        s.push(' ');
        s.push_str(&string(p.media.1.as_bytes()));
        if extended {
            s.push_str(&extension(p, true));
        }
        s.push(')');
        return s;
    }
    // A multipart without parts is described as what it claims, with none.
    let encoding = p.encoding.clone().unwrap_or_else(|| b"7bit".to_vec());
    let mut s = format!(
        "({} {} {} {} {} {} {}",
        string(p.media.0.as_bytes()),
        string(p.media.1.as_bytes()),
        params(&p.params),
        nstring(p.id.as_deref()),
        nstring(p.description.as_deref()),
        string(&encoding),
        p.body_sent()
    );
    if let Some(m) = &p.message {
        let (header, inner) = m.as_ref();
        s.push_str(&format!(" {} {} {}", envelope(header), structure(inner, extended), p.body_lines()));
    } else if p.media.0 == "text" {
        s.push_str(&format!(" {}", p.body_lines()));
    }
    if extended {
        s.push_str(&extension(p, false));
    }
    s.push(')');
    s
}

/// The part a section's numbers name, from the message's root.
pub fn find<'a>(root: &'a Part, numbers: &[u32]) -> Option<&'a Part> {
    let mut cur = root;
    for (i, &n) in numbers.iter().enumerate() {
        // Below the root, a message part's numbers go into its message.
        let container = match (&cur.message, i) {
            (Some(m), 1..) => &m.1,
            _ => cur,
        };
        cur = if container.media.0 == "multipart" && !container.children.is_empty() {
            container.children.get(usize::try_from(n).ok()?.checked_sub(1)?)?
        } else if n == 1 {
            container
        } else {
            return None;
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_names_groups_comments_and_routes() {
        assert_eq!(
            address_list(Some(b"\"Doe, John\" <john@example.com>, jane@example.org (Jane)".to_vec())),
            "((\"Doe, John\" NIL \"john\" \"example.com\")(\"Jane\" NIL \"jane\" \"example.org\"))"
        );
        assert_eq!(
            address_list(Some(b"undisclosed-recipients:;".to_vec())),
            "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"
        );
        assert_eq!(
            address_list(Some(b"team: a@x.example, B <b@y.example>;".to_vec())),
            "((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"x.example\")(\"B\" NIL \"b\" \"y.example\")(NIL NIL NIL NIL))"
        );
        assert_eq!(
            address_list(Some(b"<@relay.example:c@z.example>".to_vec())),
            "((NIL \"@relay.example\" \"c\" \"z.example\"))"
        );
        assert_eq!(address_list(Some(b"<a (x)@ (y) b.example>".to_vec())), "((NIL NIL \"a\" \"b.example\"))");
        assert_eq!(address_list(Some(b"".to_vec())), "NIL");
        assert_eq!(address_list(None), "NIL");
    }

    #[test]
    fn envelopes_default_sender_and_reply_to_to_from() {
        let e = envelope(b"Date: Mon, 7 Feb 1994 21:52:25 -0800\nFrom: Fred <fred@example.com>\nSubject: hi\nTo: a@b.example\nMessage-ID: <1@x>\n\n");
        assert_eq!(
            e,
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"hi\" ((\"Fred\" NIL \"fred\" \"example.com\")) ((\"Fred\" NIL \"fred\" \"example.com\")) ((\"Fred\" NIL \"fred\" \"example.com\")) ((NIL NIL \"a\" \"b.example\")) NIL NIL NIL \"<1@x>\")"
        );
    }

    #[test]
    fn structures_and_sections() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(
            &p,
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nhi\n--b\nContent-Type: message/rfc822\n\nSubject: in\n\nx\n--b--\n",
        )
        .unwrap();
        let root = super::super::mime::parse(&p).unwrap();
        assert_eq!(
            structure(&root, false),
            "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 2 1)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 16 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 1) 3) \"mixed\")"
        );
        assert!(structure(&root, true).ends_with(" \"mixed\" (\"boundary\" \"b\") NIL NIL NIL)"));
        assert_eq!(find(&root, &[1]).unwrap().body_sent(), 2);
        assert_eq!(find(&root, &[2]).unwrap().media.1, "rfc822");
        assert_eq!(find(&root, &[2, 1]).unwrap().body_sent(), 1);
        assert!(find(&root, &[3]).is_none());
        assert!(find(&root, &[0]).is_none());
        assert!(find(&root, &[1, 1]).is_some(), "a leaf's part 1 is itself");
    }
}
