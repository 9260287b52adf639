//! Outside text (addresses, HELO names, login names, remote replies) as it
//! goes into a log line or a queue listing: escaped, so that it can never end
//! the line, start a new one, or pass for a field of its own. fail2ban reads
//! these lines (`config/fail2ban/postern.conf`), and so do people at a
//! terminal. Pure: no I/O, and nothing else in the line is its business.

use std::fmt::{self, Write as _};

/// Outside text for a log line. Printable ASCII stays as it is, except that
/// `"` and `\` get a backslash; tab, CR and LF become `\t`, `\r` and `\n`;
/// every other character (control characters, the ESC of a terminal escape
/// sequence, anything beyond ASCII) becomes `\u{..}`. Quoted text is in
/// double quotes; see [`quoted`] and [`word`].
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a> {
    text: &'a str,
    always_quote: bool,
}

/// `text` escaped and always in double quotes: for values that are free
/// text, such as `login="..."` or `error="..."`.
pub fn quoted(text: &str) -> Escaped<'_> {
    Escaped { text, always_quote: true }
}

/// `text` as it is when it is one plain word (an ordinary address or host
/// name) or empty (the null sender of `from=<>`), else escaped and in double
/// quotes: for values such as `to=<...>` or `helo=...`. A plain word is
/// printable ASCII without spaces, quotes, backslashes, `=`, `[`, `]`, `<` or
/// `>`, so it can hold no field and no bracket of its own.
pub fn word(text: &str) -> Escaped<'_> {
    Escaped { text, always_quote: false }
}

impl Escaped<'_> {
    fn is_plain_word(&self) -> bool {
        self.text
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '=' | '[' | ']' | '<' | '>'))
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.always_quote && self.is_plain_word() {
            return f.write_str(self.text);
        }
        f.write_char('"')?;
        for c in self.text.chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                _ => escape_char(f, c)?,
            }
        }
        f.write_char('"')
    }
}

/// Writes `c` as it is when it is printable ASCII, else as an escape.
fn escape_char(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        ' '..='~' => out.write_char(c),
        '\t' => out.write_str("\\t"),
        '\r' => out.write_str("\\r"),
        '\n' => out.write_str("\\n"),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    }
}

/// `text` with every control character (C0, DEL, C1) written as an escape
/// (`\r`, `\u{1b}`), the rest kept: for reply texts that are stored and shown
/// later, in `postern queue list` and in delivery reports.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = escape_char(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_in_a_log_line() {
        // (text, as a quoted value, as a word)
        let cases = [
            ("alice@example.com", r#""alice@example.com""#, "alice@example.com"),
            ("laptop.lan", r#""laptop.lan""#, "laptop.lan"),
            ("", r#""""#, ""),
            ("john doe", r#""john doe""#, r#""john doe""#),
            (r#""a b"@x.test"#, r#""\"a b\"@x.test""#, r#""\"a b\"@x.test""#),
            (r"back\slash", r#""back\\slash""#, r#""back\\slash""#),
            (
                "postern::server] auth failed client=[192.0.2.77]",
                r#""postern::server] auth failed client=[192.0.2.77]""#,
                r#""postern::server] auth failed client=[192.0.2.77]""#,
            ),
            ("client=[192.0.2.77]", r#""client=[192.0.2.77]""#, r#""client=[192.0.2.77]""#),
            ("[192.0.2.1]", r#""[192.0.2.1]""#, r#""[192.0.2.1]""#),
            ("a>b", r#""a>b""#, r#""a>b""#),
            ("line\nnext", r#""line\nnext""#, r#""line\nnext""#),
            ("cr\rlf\r\n", r#""cr\rlf\r\n""#, r#""cr\rlf\r\n""#),
            ("tab\there", r#""tab\there""#, r#""tab\there""#),
            ("\x1b[31mred\x1b[0m", r#""\u{1b}[31mred\u{1b}[0m""#, r#""\u{1b}[31mred\u{1b}[0m""#),
            ("nul\0del\x7f", r#""nul\u{0}del\u{7f}""#, r#""nul\u{0}del\u{7f}""#),
            ("c1\u{85}", r#""c1\u{85}""#, r#""c1\u{85}""#),
            (
                "用户@例子.example",
                r#""\u{7528}\u{6237}@\u{4f8b}\u{5b50}.example""#,
                r#""\u{7528}\u{6237}@\u{4f8b}\u{5b50}.example""#,
            ),
            ("rtl\u{202e}txt", r#""rtl\u{202e}txt""#, r#""rtl\u{202e}txt""#),
            ("lossy\u{fffd}", r#""lossy\u{fffd}""#, r#""lossy\u{fffd}""#),
        ];
        for (text, as_quoted, as_word) in cases {
            assert_eq!(quoted(text).to_string(), as_quoted, "quoted {text:?}");
            assert_eq!(word(text).to_string(), as_word, "word {text:?}");
        }
    }

    #[test]
    fn escaped_text_is_one_printable_field() {
        let hostile = [
            "x\n[2026-12-02T07:55:06Z WARN  postern::server] auth failed client=[192.0.2.77]",
            "\" client=[192.0.2.77] \"",
            "\\\" port=submission",
            "\u{1b}]0;title\u{7}",
        ];
        for text in hostile {
            for shown in [quoted(text).to_string(), word(text).to_string()] {
                assert!(shown.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{shown}");
                // One quoted string: the only unescaped quotes are the outer two.
                let inner = &shown[1..shown.len() - 1];
                let unescaped = inner.replace("\\\\", "").replace("\\\"", "");
                assert!(
                    shown.starts_with('"') && shown.ends_with('"') && !unescaped.contains('"'),
                    "{shown}"
                );
            }
        }
    }

    #[test]
    fn stored_text_keeps_all_but_control_characters() {
        let cases = [
            ("451 4.3.0 not now", "451 4.3.0 not now"),
            ("550 \x1b[31mred\r back", r"550 \u{1b}[31mred\r back"),
            ("a\tb\0c\u{9b}d", r"a\tb\u{0}c\u{9b}d"),
            ("quotes \" and \\ stay", "quotes \" and \\ stay"),
            ("Grüße 用户", "Grüße 用户"),
        ];
        for (text, want) in cases {
            assert_eq!(printable(text), want, "{text:?}");
        }
    }
}
