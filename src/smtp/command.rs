//! SMTP command lines parsed into a closed enum. Pure.

use crate::envelope::{Path, parse_path};

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-literal`
    Ehlo(String),
    /// `HELO domain`
    Helo(String),
    /// `MAIL FROM:<path> params`
    Mail { from: Path, params: MailParams },
    /// `RCPT TO:<path> params`
    Rcpt { to: Path },
    /// `DATA`
    Data,
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `HELP [topic]`
    Help,
    /// `VRFY string`
    Vrfy,
    /// `EXPN string`
    Expn,
    /// `STARTTLS`
    StartTls,
    /// `AUTH mechanism [initial-response]`
    Auth(String),
    /// `BDAT`, `TURN`, `ETRN` and the like: known, but not offered.
    NotImplemented(&'static str),
}

/// The ESMTP parameters of MAIL FROM that Postern understands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`: the size the client announces.
    pub size: Option<u64>,
    /// `SMTPUTF8`: the addresses or headers may hold UTF-8.
    pub smtputf8: bool,
    /// `BODY=8BITMIME` (or `7BIT`).
    pub body_8bit: bool,
}

/// Why a line is not a command we can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Not a command verb we know: 500.
    Unknown,
    /// A known verb with bad arguments: 501, with what is wrong.
    Syntax(&'static str),
    /// A bad address: 501 5.1.3 / 5.1.7, with what is wrong.
    Address { sender: bool, why: &'static str },
    /// An ESMTP parameter we do not support: 555.
    Parameter(String),
}

/// Parses one command line, without its line ending.
///
/// # Errors
/// See [`CommandError`].
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax("line is not UTF-8"))?;
    if line.contains(|c: char| c.is_control() && c != '\t') {
        return Err(CommandError::Syntax("control character in command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let no_args = |cmd: Command| {
        if rest.trim().is_empty() { Ok(cmd) } else { Err(CommandError::Syntax("no arguments allowed")) }
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => Ok(Command::Ehlo(hello_arg(rest)?)),
        "HELO" => Ok(Command::Helo(hello_arg(rest)?)),
        "MAIL" => mail(rest),
        "RCPT" => rcpt(rest),
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" if !rest.trim().is_empty() => Ok(Command::Vrfy),
        "VRFY" => Err(CommandError::Syntax("VRFY needs an argument")),
        "EXPN" => Ok(Command::Expn),
        "AUTH" if !rest.trim().is_empty() => Ok(Command::Auth(rest.trim().to_string())),
        "AUTH" => Err(CommandError::Syntax("AUTH needs a mechanism")),
        "BDAT" => Ok(Command::NotImplemented("BDAT")),
        "TURN" => Ok(Command::NotImplemented("TURN")),
        "ETRN" => Ok(Command::NotImplemented("ETRN")),
        "SEND" | "SOML" | "SAML" => Ok(Command::NotImplemented("SEND/SOML/SAML")),
        _ => Err(CommandError::Unknown),
    }
}

fn hello_arg(rest: &str) -> Result<String, CommandError> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(CommandError::Syntax("EHLO and HELO need your host name"));
    }
    // Only the first word counts; some clients add more.
    let first = arg.split_whitespace().next().unwrap_or(arg);
    if first.len() > 255 {
        return Err(CommandError::Syntax("host name too long"));
    }
    Ok(first.to_string())
}

/// Splits `FROM:<path> params` after the verb; tolerates a space after the colon.
fn path_and_params<'a>(rest: &'a str, keyword: &str) -> Result<(&'a str, &'a str), CommandError> {
    let head =
        rest.get(..keyword.len()).ok_or(CommandError::Syntax("expected FROM:<address> or TO:<address>"))?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(CommandError::Syntax("expected FROM:<address> or TO:<address>"));
    }
    let rest = rest[keyword.len()..].trim_start();
    if !rest.starts_with('<') {
        return Err(CommandError::Syntax("address must be enclosed in <>"));
    }
    // The path ends at the first '>' outside quotes.
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Ok((&rest[..=i], rest[i + 1..].trim())),
            _ => {}
        }
    }
    Err(CommandError::Syntax("address must be enclosed in <>"))
}

fn mail(rest: &str) -> Result<Command, CommandError> {
    let (path, params) = path_and_params(rest, "FROM:")?;
    let from = parse_path(path).map_err(|why| CommandError::Address { sender: true, why })?;
    let mut p = MailParams::default();
    for param in params.split_whitespace() {
        let (key, value) = match param.find('=') {
            Some(i) => (&param[..i], Some(&param[i + 1..])),
            None => (param, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                p.size = Some(v.parse().map_err(|_| CommandError::Syntax("bad SIZE value"))?);
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => p.body_8bit = true,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => p.body_8bit = false,
            ("SMTPUTF8", None) => p.smtputf8 = true,
            _ => return Err(CommandError::Parameter(param.to_string())),
        }
    }
    Ok(Command::Mail { from, params: p })
}

fn rcpt(rest: &str) -> Result<Command, CommandError> {
    let (path, params) = path_and_params(rest, "TO:")?;
    if let Some(param) = params.split_whitespace().next() {
        return Err(CommandError::Parameter(param.to_string()));
    }
    let to = parse_path(path).map_err(|why| CommandError::Address { sender: false, why })?;
    if to == Path::Null {
        return Err(CommandError::Address { sender: false, why: "empty recipient" });
    }
    Ok(Command::Rcpt { to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Address, Domain};

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn command_lines_parse_to_commands_or_say_what_is_wrong() {
        use Command::*;
        let cases: Vec<(&str, Result<Command, CommandError>)> = vec![
            ("EHLO client.example", Ok(Ehlo("client.example".into()))),
            ("ehlo [192.0.2.1]", Ok(Ehlo("[192.0.2.1]".into()))),
            ("HELO x", Ok(Helo("x".into()))),
            ("EHLO", Err(CommandError::Syntax("EHLO and HELO need your host name"))),
            (
                "MAIL FROM:<a@b.example>",
                Ok(Mail { from: Path::Mailbox(addr("a@b.example")), params: MailParams::default() }),
            ),
            (
                "mail from: <a@b.example>",
                Ok(Mail { from: Path::Mailbox(addr("a@b.example")), params: MailParams::default() }),
            ),
            ("MAIL FROM:<>", Ok(Mail { from: Path::Null, params: MailParams::default() })),
            (
                "MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8",
                Ok(Mail {
                    from: Path::Mailbox(addr("a@b.example")),
                    params: MailParams { size: Some(1000), smtputf8: true, body_8bit: true },
                }),
            ),
            ("MAIL FROM:<a@b.example> SIZE=x", Err(CommandError::Syntax("bad SIZE value"))),
            ("MAIL FROM:<a@b.example> FOO=1", Err(CommandError::Parameter("FOO=1".into()))),
            ("MAIL FROM:a@b.example", Err(CommandError::Syntax("address must be enclosed in <>"))),
            ("MAIL TO:<a@b.example>", Err(CommandError::Syntax("expected FROM:<address> or TO:<address>"))),
            ("MAIL", Err(CommandError::Syntax("expected FROM:<address> or TO:<address>"))),
            ("MAIL FROM:<a@@b>", Err(CommandError::Address { sender: true, why: "bad local part" })),
            ("RCPT TO:<c@d.example>", Ok(Rcpt { to: Path::Mailbox(addr("c@d.example")) })),
            (
                "RCPT TO:<\"x>y\"@d.example>",
                Ok(Rcpt { to: Path::Mailbox(Address::new("x>y", Domain::parse("d.example").unwrap())) }),
            ),
            ("RCPT TO:<postmaster>", Ok(Rcpt { to: Path::Bare("postmaster".into()) })),
            ("RCPT TO:<>", Err(CommandError::Address { sender: false, why: "empty recipient" })),
            ("RCPT TO:<c@d.example> NOTIFY=NEVER", Err(CommandError::Parameter("NOTIFY=NEVER".into()))),
            ("DATA", Ok(Data)),
            ("data", Ok(Data)),
            ("DATA x", Err(CommandError::Syntax("no arguments allowed"))),
            ("RSET", Ok(Rset)),
            ("NOOP hello", Ok(Noop)),
            ("QUIT", Ok(Quit)),
            ("HELP", Ok(Help)),
            ("VRFY bob", Ok(Vrfy)),
            ("VRFY", Err(CommandError::Syntax("VRFY needs an argument"))),
            ("STARTTLS", Ok(StartTls)),
            ("AUTH PLAIN AGFsaWNlAHB3", Ok(Auth("PLAIN AGFsaWNlAHB3".into()))),
            ("BDAT 100 LAST", Ok(NotImplemented("BDAT"))),
            ("FOO", Err(CommandError::Unknown)),
            ("", Err(CommandError::Unknown)),
            ("MAIL FROM:<a@b>\0", Err(CommandError::Syntax("control character in command"))),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()), want, "line {line:?}");
        }
        assert_eq!(parse(b"\xff\xfe"), Err(CommandError::Syntax("line is not UTF-8")));
    }
}
