//! `postern sendmail` (and the binary run as `sendmail`): what cron, smartd,
//! mdadm, unattended-upgrades, PHP's mail() and git send-email call. Reads the
//! message on standard input and hands it to the running server over SMTP on
//! loopback, where the server's usual checks apply and the message is on disk
//! before this exits 0. Exit codes follow sysexits.h.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::envelope::{Path, parse_path};
use crate::logtext::quoted;
use crate::smtp::client::{DotStuffer, ReplyReader};

/// sysexits.h
pub const EX_OK: u8 = 0;
/// Bad arguments.
pub const EX_USAGE: u8 = 64;
/// The message is unusable (too big, no recipients).
pub const EX_DATAERR: u8 = 65;
/// A recipient was refused.
pub const EX_NOUSER: u8 = 67;
/// The server is not running.
pub const EX_UNAVAILABLE: u8 = 69;
/// Reading standard input failed.
pub const EX_IOERR: u8 = 74;
/// The server said to try later.
pub const EX_TEMPFAIL: u8 = 75;
/// The server broke the protocol.
pub const EX_PROTOCOL: u8 = 76;

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Recipients given as arguments.
    pub recipients: Vec<String>,
    /// `-f`/`-r`: the envelope sender.
    pub from: Option<String>,
    /// `-F`: the sender's full name, for a From header we add.
    pub full_name: Option<String>,
    /// `-t`: take recipients from To, Cc and Bcc (and remove Bcc).
    pub extract: bool,
    /// `-i`/`-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-bp`: list the queue instead.
    pub list_queue: bool,
    /// `-bs`: speak SMTP on standard input and output.
    pub smtp: bool,
    /// `--config PATH` (ours): where to find the server's settings.
    pub config: Option<String>,
}

/// Parses sendmail's command line (without the program name).
///
/// # Errors
/// A usage message for options that need a value and have none, and for
/// any argument that holds a control character: a CR or LF in `-f`, `-F` or
/// a recipient would otherwise reach the SMTP dialog or the header section
/// as a line of its own.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    for a in args {
        if let Some(c) = a.chars().find(|c| c.is_control()) {
            return Err(format!(
                "the argument {} holds a control character ({}); arguments may not hold any",
                quoted(a),
                c.escape_default()
            ));
        }
    }
    let mut o = Options::default();
    let mut it = args.iter();
    let mut only_recipients = false;
    while let Some(a) = it.next() {
        if only_recipients || !a.starts_with('-') || a == "-" {
            o.recipients.push(a.clone());
            continue;
        }
        let mut value = |flag: &str| -> Result<String, String> {
            match a.strip_prefix(flag).filter(|v| !v.is_empty()) {
                Some(v) => Ok(v.to_string()),
                None => it.next().cloned().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match a.as_str() {
            "--" => only_recipients = true,
            "--config" => o.config = Some(value("--config")?),
            "-t" => o.extract = true,
            "-i" | "-oi" => o.ignore_dots = true,
            "-bp" => o.list_queue = true,
            "-bs" => o.smtp = true,
            "-bm" | "-v" | "-odi" | "-odb" | "-odq" | "-oem" | "-oee" | "-oep" | "-oeq" | "-oew" | "-Am"
            | "-Ac" => {}
            s if s.starts_with("-f") => o.from = Some(value("-f")?),
            s if s.starts_with("-r") => o.from = Some(value("-r")?),
            s if s.starts_with("-F") => o.full_name = Some(value("-F")?),
            // Options that carry a value we have no use for.
            s if s.starts_with("-N") => {
                value("-N")?;
            }
            s if s.starts_with("-B") => {
                value("-B")?;
            }
            s if s.starts_with("-O") || s.starts_with("-o") || s.starts_with("-X") || s.starts_with("-C") => {
            }
            other => return Err(format!("unsupported option {other}")),
        }
    }
    Ok(o)
}

/// Where to reach the server and what to call the local sender.
#[derive(Clone, Debug)]
pub struct Target {
    /// A loopback address of the server's MX listener.
    pub addr: SocketAddr,
    /// The domain of a local user's default sender address.
    pub domain: String,
    /// The largest message the server takes.
    pub max_size: u64,
}

impl Target {
    /// From the config: the first MX listener, on loopback.
    pub fn from_config(config: &Config) -> Target {
        let addr = config.listen.mx.first().copied().map_or(SocketAddr::from(([127, 0, 0, 1], 25)), |a| {
            match a.ip() {
                ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], a.port())),
                ip if ip.is_unspecified() => SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), a.port()),
                _ => a,
            }
        });
        // Port 0 in the config: the server wrote down what it really bound.
        let addr = if addr.port() == 0 {
            std::fs::read_to_string(config.data_dir.join(crate::daemon::LISTENING_FILE))
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_suffix(" mx").and_then(|a| a.parse::<SocketAddr>().ok()))
                })
                .unwrap_or(addr)
        } else {
            addr
        };
        Target { addr, domain: config.primary_domain.to_string(), max_size: config.limits.max_message_size }
    }

    /// When the config cannot be read (an unprivileged user): port 25 on
    /// loopback, and the system's host name.
    pub fn fallback() -> Target {
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        Target { addr: SocketAddr::from(([127, 0, 0, 1], 25)), domain: host, max_size: 25 << 20 }
    }
}

/// A failure with its sysexits code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to tell the user.
    pub message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

/// The login name of the user running us.
fn user_name() -> String {
    std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .ok()
        .filter(|u| !u.is_empty() && !u.contains(['@', ' ', '<', '>']))
        .filter(|u| matches!(parse_path(&format!("<{u}>")), Ok(Path::Bare(_))))
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()))
}

/// Reads the message from `input`: CRLF line ends, stopping at a lone dot
/// unless `ignore_dots`, refusing more than `max` bytes.
///
/// # Errors
/// EX_DATAERR when too big, EX_IOERR when reading fails.
pub fn read_message(input: impl Read, ignore_dots: bool, max: u64) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| fail(EX_IOERR, format!("reading the message: {e}")))?;
        if n == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !ignore_dots && body == b"." {
            break;
        }
        // A stray CR inside a line would be refused by the server: make it a line end.
        for piece in body.split(|&b| b == b'\r') {
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        if out.len() as u64 > max {
            return Err(fail(
                EX_DATAERR,
                format!("the message is larger than the server's limit of {max} bytes"),
            ));
        }
    }
    Ok(out)
}

/// Splits a message into its header section (with its final CRLF) and body.
fn split_headers(message: &[u8]) -> (&[u8], &[u8]) {
    if message.starts_with(b"\r\n") {
        return (&[], &message[2..]);
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// The header fields as (name lowercased, whole field with folding).
fn fields(headers: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(headers);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
                continue;
            }
        }
        let name = line.split(':').next().unwrap_or("").trim().to_lowercase();
        out.push((name, line.to_string()));
    }
    out
}

/// The addresses in an address-list header value: `<a@b>` forms, or bare
/// words with an `@`, or bare local names.
fn addresses(value: &str) -> Vec<String> {
    // Split at commas outside quotes, comments and angle brackets.
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '<' if !quoted => depth += 1,
            ')' | '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    let mut out = Vec::new();
    for part in parts {
        let part = part.trim();
        let addr = match (part.rfind('<'), part.rfind('>')) {
            (Some(a), Some(b)) if a < b => &part[a + 1..b],
            _ => part.split_whitespace().find(|w| w.contains('@')).unwrap_or(part),
        };
        let addr = addr.trim().trim_matches(|c| c == '"' || c == '(' || c == ')');
        if !addr.is_empty() && !addr.contains(char::is_whitespace) {
            out.push(addr.to_string());
        }
    }
    out
}

/// Builds what goes over the wire: the recipients, and the message with Bcc
/// removed (for `-t`) and From, Date and Message-ID added when missing.
pub fn prepare(message: &[u8], opts: &Options, sender: &str, host: &str) -> (Vec<String>, Vec<u8>) {
    let (headers, body) = split_headers(message);
    let fields = fields(headers);
    let mut recipients = opts.recipients.clone();
    if opts.extract {
        for (name, field) in &fields {
            if matches!(name.as_str(), "to" | "cc" | "bcc") {
                let value = field.split_once(':').map_or("", |(_, v)| v);
                recipients.extend(addresses(&value.replace("\r\n", " ")));
            }
        }
    }
    let has = |n: &str| fields.iter().any(|(name, _)| name == n);
    let mut out = Vec::with_capacity(message.len() + 256);
    if !has("from") {
        match &opts.full_name {
            Some(name) => out.extend_from_slice(
                format!("From: \"{}\" <{sender}>\r\n", name.replace(['"', '\\'], "")).as_bytes(),
            ),
            None => out.extend_from_slice(format!("From: <{sender}>\r\n").as_bytes()),
        }
    }
    if !has("date") {
        out.extend_from_slice(
            format!("Date: {}\r\n", crate::date::rfc5322_date(SystemTime::now())).as_bytes(),
        );
    }
    if !has("message-id") {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let id = format!("{}.{}.{}", now.as_secs(), now.subsec_nanos(), std::process::id());
        out.extend_from_slice(format!("Message-ID: <{id}.sendmail@{host}>\r\n").as_bytes());
    }
    for (name, field) in &fields {
        if opts.extract && name == "bcc" {
            continue;
        }
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    recipients.retain(|r| !r.is_empty());
    recipients.dedup();
    (recipients, out)
}

/// Sends one message; see the module docs.
///
/// # Errors
/// A [`Failure`] with its exit code and message.
pub fn send(opts: &Options, target: &Target, input: impl Read) -> Result<(), Failure> {
    // Addresses from the command line are checked as the server checks them,
    // before anything is read or sent.
    let sender = match &opts.from {
        Some(f) if f.is_empty() || f == "<>" => String::new(),
        Some(f) => {
            let f = f.trim_matches(|c| c == '<' || c == '>');
            check_address(f).map_err(|why| fail(EX_USAGE, format!("-f {}: {why}", quoted(f))))?;
            f.to_string()
        }
        None => format!("{}@{}", user_name(), target.domain),
    };
    for r in opts.recipients.iter().filter(|r| !r.is_empty()) {
        check_address(r).map_err(|why| fail(EX_USAGE, format!("recipient {}: {why}", quoted(r))))?;
    }
    let message = read_message(input, opts.ignore_dots, target.max_size)?;
    let (recipients, message) = prepare(&message, opts, &sender, &target.domain);
    // Those taken from the header section with -t are refused here, as the
    // server would refuse them, and never sent.
    let mut refused = Vec::new();
    let all = recipients.len();
    let recipients: Vec<String> = recipients
        .into_iter()
        .filter(|r| match check_address(r) {
            Ok(()) => true,
            Err(why) => {
                refused.push(format!("{}: {why}", quoted(r)));
                false
            }
        })
        .collect();
    if all == 0 {
        return Err(fail(EX_DATAERR, "no recipients: name them as arguments, or use -t with To/Cc/Bcc"));
    }
    if recipients.is_empty() {
        return Err(fail(EX_NOUSER, refused.join("\n")));
    }
    let mut conn = Smtp::connect(target.addr)?;
    conn.expect(220, EX_UNAVAILABLE)?;
    conn.command("EHLO localhost", 250, EX_PROTOCOL)?;
    let utf8 = !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
    let mail = format!("MAIL FROM:<{sender}>{}", if utf8 { " SMTPUTF8" } else { "" });
    conn.command(&mail, 250, EX_DATAERR)?;
    for r in &recipients {
        let (code, text) = conn.command_reply(&format!("RCPT TO:<{r}>"))?;
        match code {
            250 | 251 => {}
            400..=499 => return Err(fail(EX_TEMPFAIL, format!("<{r}>: {text}"))),
            _ => refused.push(format!("<{r}>: {text}")),
        }
    }
    if refused.len() == all {
        let _ = conn.command_reply("QUIT");
        return Err(fail(EX_NOUSER, refused.join("\n")));
    }
    conn.command("DATA", 354, EX_PROTOCOL)?;
    conn.send_body(&message)?;
    conn.expect(250, EX_TEMPFAIL)?;
    let _ = conn.command_reply("QUIT");
    if !refused.is_empty() {
        return Err(fail(
            EX_NOUSER,
            format!("sent, but these recipients were refused:\n{}", refused.join("\n")),
        ));
    }
    Ok(())
}

/// Checks an address (`user@domain`, or a bare local name the server
/// completes) with the parser the server uses.
fn check_address(text: &str) -> Result<(), &'static str> {
    match parse_path(&format!("<{text}>"))? {
        Path::Mailbox(_) | Path::Bare(_) => Ok(()),
        Path::Null => Err("empty address"),
    }
}

/// `-bs`: the caller speaks SMTP itself; we pass bytes both ways.
///
/// # Errors
/// When the server cannot be reached.
pub fn relay_smtp(target: &Target) -> Result<(), Failure> {
    let stream = TcpStream::connect_timeout(&target.addr, Duration::from_secs(10))
        .map_err(|e| fail(EX_UNAVAILABLE, format!("cannot reach the mail server at {}: {e}", target.addr)))?;
    let mut from_server = stream.try_clone().map_err(|e| fail(EX_IOERR, e.to_string()))?;
    let mut to_server = stream;
    let out = std::thread::spawn(move || {
        let _ = io::copy(&mut from_server, &mut io::stdout());
    });
    let _ = io::copy(&mut io::stdin(), &mut to_server);
    let _ = to_server.shutdown(std::net::Shutdown::Write);
    let _ = out.join();
    Ok(())
}

/// The conversation with the local server.
struct Smtp {
    stream: TcpStream,
    replies: ReplyReader,
}

impl Smtp {
    fn connect(addr: SocketAddr) -> Result<Smtp, Failure> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(|e| {
            fail(EX_UNAVAILABLE, format!("cannot reach the mail server at {addr}: {e}; is postern running?"))
        })?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
        Ok(Smtp { stream, replies: ReplyReader::default() })
    }

    /// The next reply: its code and its lines on one line.
    fn reply(&mut self) -> Result<(u16, String), Failure> {
        loop {
            match self.replies.next_reply() {
                Ok(Some(r)) => return Ok((r.code, r.text())),
                Ok(None) => {}
                Err(e) => return Err(fail(EX_PROTOCOL, format!("the server: {e}"))),
            }
            let mut chunk = [0u8; 4096];
            let n =
                self.stream.read(&mut chunk).map_err(|e| fail(EX_TEMPFAIL, format!("the server: {e}")))?;
            if n == 0 {
                return Err(fail(EX_TEMPFAIL, "the server closed the connection"));
            }
            self.replies.push(&chunk[..n]);
        }
    }

    fn expect(&mut self, want: u16, code_if_5xx: u8) -> Result<(), Failure> {
        let (code, text) = self.reply()?;
        match code {
            c if c == want => Ok(()),
            400..=499 => Err(fail(EX_TEMPFAIL, text)),
            _ => Err(fail(code_if_5xx, text)),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream.write_all(bytes).map_err(|e| fail(EX_TEMPFAIL, e.to_string()))
    }

    fn command_reply(&mut self, line: &str) -> Result<(u16, String), Failure> {
        self.write(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    fn command(&mut self, line: &str, want: u16, code_if_5xx: u8) -> Result<(), Failure> {
        self.write(format!("{line}\r\n").as_bytes())?;
        self.expect(want, code_if_5xx)
    }

    /// The message, dot-stuffed, then the final dot.
    fn send_body(&mut self, message: &[u8]) -> Result<(), Failure> {
        self.write(&DotStuffer::stuff(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn sendmail_options_parse_as_cron_and_mail_programs_give_them() {
        let o = parse_args(&args("-t -oi -f root@example.com -F Cron_Daemon")).unwrap();
        assert!(o.extract && o.ignore_dots);
        assert_eq!(o.from.as_deref(), Some("root@example.com"));
        assert_eq!(o.full_name.as_deref(), Some("Cron_Daemon"));
        let o = parse_args(&args("-i -froot -odi -oem alice bob@example.org")).unwrap();
        assert_eq!(o.from.as_deref(), Some("root"));
        assert_eq!(o.recipients, ["alice", "bob@example.org"]);
        assert!(parse_args(&args("-bp")).unwrap().list_queue);
        assert!(parse_args(&args("-bs")).unwrap().smtp);
        assert_eq!(parse_args(&args("-- -notanoption")).unwrap().recipients, ["-notanoption"]);
        assert!(parse_args(&args("-f")).is_err());
        assert!(parse_args(&args("-q")).is_err());
    }

    #[test]
    fn control_characters_in_any_argument_are_refused() {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[&[&str]] = &[
            &["-f", "a@b.example\r\nRCPT TO:<x@remote.test>", "bob"],
            &["-fa@b.example\n", "bob"],
            &["-F", "Cron\r\nBcc: x@remote.test", "bob"],
            &["-F", "tab\there", "bob"],
            &["bob\r\nDATA"],
            &["--", "bob\0"],
            &["--config", "/etc/postern/postern.toml\n", "bob"],
            &["-o\u{1b}[31m", "bob"],
            &["bob\u{85}"],
        ];
        for args in cases {
            let err = parse_args(&owned(args)).unwrap_err();
            assert!(err.contains("control character"), "{args:?}: {err}");
            assert!(!err.contains(|c: char| c.is_control()), "{args:?}: {err:?}");
        }
        assert!(parse_args(&owned(&["-F", "Grüße, Cron", "bob"])).is_ok());
    }

    #[test]
    fn addresses_are_checked_as_the_server_checks_them() {
        let cases = [
            ("alice@example.com", Ok(())),
            ("alice", Ok(())),
            ("\"john doe\"@example.com", Ok(())),
            ("root@example.org>\r\nRCPT TO:<x@remote.test", Err("bad local part")),
            ("a b@example.com", Err("bad local part")),
            ("a@b.example>,<c@d.example", Err("bad local part")),
            ("a@-b.example", Err("domain label starts or ends with '-'")),
            ("\u{1b}[31m@example.com", Err("bad local part")),
            ("", Err("empty address")),
        ];
        for (text, want) in cases {
            assert_eq!(check_address(text), want, "{text:?}");
        }
    }

    #[test]
    fn reading_stops_at_a_lone_dot_unless_told_not_to() {
        let input = b"Subject: x\n\nline\n.\nafter\n";
        assert_eq!(read_message(&input[..], false, 1000).unwrap(), b"Subject: x\r\n\r\nline\r\n");
        assert_eq!(
            read_message(&input[..], true, 1000).unwrap(),
            b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n"
        );
        assert_eq!(read_message(&b"a\rb\r\n"[..], true, 1000).unwrap(), b"a\r\nb\r\n");
        assert!(read_message(&b"0123456789\n"[..], true, 5).is_err());
    }

    #[test]
    fn prepare_extracts_recipients_hides_bcc_and_adds_missing_fields() {
        let msg = b"To: Alice <alice@example.com>, bob\r\nCc: \"Carol, C\" <carol@example.org>\r\nBcc: secret@example.net\r\nSubject: hi\r\n\r\nbody\r\n";
        let opts = Options { extract: true, full_name: Some("Cron \"Daemon\"".into()), ..Options::default() };
        let (rcpts, out) = prepare(msg, &opts, "root@example.com", "example.com");
        assert_eq!(rcpts, ["alice@example.com", "bob", "carol@example.org", "secret@example.net"]);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("Bcc"), "{text}");
        assert!(text.starts_with("From: \"Cron Daemon\" <root@example.com>\r\nDate: "), "{text}");
        assert!(
            text.contains("\r\nMessage-ID: <") && text.ends_with("\r\nSubject: hi\r\n\r\nbody\r\n"),
            "{text}"
        );
        // Fields already there are kept as they are.
        let msg = b"From: me@example.com\r\nDate: Sun, 22 Nov 2026 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nb\r\n";
        let (_, out) = prepare(msg, &Options::default(), "root@example.com", "example.com");
        assert_eq!(out, msg);
    }
}
