//! The SMTP session state machine: command lines in, replies and actions out.
//! Pure: the driver in `server` owns the socket, the clock and the queue.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::command::{self, Command, CommandError, MailParams};
use super::data::DataError;
use super::reply::{self, Reply};
use crate::Settings;
use crate::accounts::{Login, MAX_EXPANDED_RECIPIENTS, Resolution};
use crate::auth::{self, SaslError};
use crate::envelope::{Address, Envelope, Path, Route};
use crate::tls::TlsInfo;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Port 25: mail from the internet and the LAN; STARTTLS offered, no AUTH.
    Mx,
    /// Port 587: submission (RFC 6409), STARTTLS then AUTH.
    Submission,
    /// Port 465: submission with implicit TLS (RFC 8314).
    Submissions,
}

impl Port {
    /// The name used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Port::Mx => "mx",
            Port::Submission => "submission",
            Port::Submissions => "submissions",
        }
    }

    /// True for 587 and 465, where senders must log in.
    pub fn is_submission(self) -> bool {
        self != Port::Mx
    }
}

/// Where an AUTH exchange stands between `334` and the client's answer.
#[derive(Debug)]
enum AuthStep {
    /// AUTH PLAIN without an initial response.
    Plain,
    /// AUTH LOGIN, waiting for the user name.
    LoginUser,
    /// AUTH LOGIN, waiting for the password.
    LoginPassword(String),
}

/// What the driver must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the reply and read the next command.
    Reply(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the `354` reply and read the message with a DATA decoder.
    StartData(Reply),
    /// Send the `220` reply, drop any bytes the client sent after STARTTLS,
    /// and do the TLS handshake; then call [`Session::tls_started`].
    StartTls(Reply),
    /// Check these credentials (slowly, off the executor) and call
    /// [`Session::auth_result`].
    Authenticate {
        /// The login as the client gave it.
        login: String,
        /// The password; never logged.
        password: String,
    },
}

/// One mail transaction, from MAIL to the final dot.
#[derive(Debug)]
struct Transaction {
    sender: Option<Address>,
    params: MailParams,
    recipients: Vec<Route>,
    /// The same routes, to find repeats at once.
    seen: HashSet<Route>,
    accepted: usize,
}

#[derive(Debug)]
enum State {
    /// No EHLO/HELO yet.
    Fresh,
    /// Greeted, no transaction.
    Ready,
    /// MAIL accepted; RCPTs being collected.
    Mail(Transaction),
    /// After `354`: the message body is being read.
    Data(Transaction),
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Session {
    settings: Arc<Settings>,
    client_ip: IpAddr,
    trusted: bool,
    helo: Option<String>,
    esmtp: bool,
    errors: u32,
    state: State,
    port: Port,
    tls_available: bool,
    tls: Option<TlsInfo>,
    login: Option<Login>,
    auth_step: Option<AuthStep>,
}

impl Session {
    /// A new session for a client at `client_ip` on `port`. `tls` is set when
    /// the connection is TLS from the start (port 465); `tls_available` says
    /// whether STARTTLS can be offered.
    pub fn new(
        settings: Arc<Settings>,
        client_ip: IpAddr,
        port: Port,
        tls_available: bool,
        tls: Option<TlsInfo>,
    ) -> Session {
        let trusted = settings.accounts.is_trusted(client_ip);
        Session {
            settings,
            client_ip,
            trusted,
            helo: None,
            esmtp: false,
            errors: 0,
            state: State::Fresh,
            port,
            tls_available,
            tls,
            login: None,
            auth_step: None,
        }
    }

    /// True between MAIL and the reply to the final dot (or RSET).
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Mail(_) | State::Data(_))
    }

    /// The port this session came in on.
    pub fn port(&self) -> Port {
        self.port
    }

    /// What TLS the session uses, if any.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The logged-in user, if any.
    pub fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }

    /// The handshake after STARTTLS succeeded: the session starts over
    /// (RFC 3207 4.2), and STARTTLS is no longer offered.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.login = None;
        self.auth_step = None;
        self.state = State::Fresh;
    }

    /// The outcome of [`Action::Authenticate`]: the user it proved, or `None`.
    pub fn auth_result(&mut self, login: Option<Login>) -> Action {
        match login {
            Some(l) => {
                self.login = Some(l);
                Action::Reply(reply::auth_ok())
            }
            None => self.error(reply::auth_failed()),
        }
    }

    /// The `220` banner.
    pub fn greeting(&self) -> Reply {
        reply::greeting(&self.settings.config.hostname)
    }

    /// The name the client gave in EHLO/HELO.
    pub fn helo(&self) -> &str {
        self.helo.as_deref().unwrap_or("unknown")
    }

    /// The client's IP address.
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// The Received-header protocol keyword (RFC 3848, RFC 6531): `SMTP`,
    /// `ESMTP`, `UTF8SMTP`, with `S` for TLS and `A` for an authenticated client.
    pub fn protocol(&self) -> String {
        let utf8 = matches!(&self.state, State::Data(t) | State::Mail(t) if t.params.smtputf8);
        let base = match (self.esmtp, utf8) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "UTF8SMTP",
        };
        let s = if self.tls.is_some() && self.esmtp { "S" } else { "" };
        let a = if self.login.is_some() && self.esmtp { "A" } else { "" };
        format!("{base}{s}{a}")
    }

    /// Handles one line from the client (without its line ending): a command,
    /// or the answer to an AUTH challenge.
    pub fn command(&mut self, line: &[u8]) -> Action {
        if let Some(step) = self.auth_step.take() {
            return self.auth_response(step, line);
        }
        let reply = match command::parse(line) {
            Ok(cmd) => return self.dispatch(cmd),
            Err(CommandError::Unknown) => reply::unknown_command(),
            Err(CommandError::Syntax(what)) => reply::syntax(what),
            Err(CommandError::Address { sender: true, why }) => reply::bad_sender_address(why),
            Err(CommandError::Address { sender: false, why }) => reply::bad_address(why),
            Err(CommandError::Parameter(p)) => reply::bad_parameter(&p),
        };
        self.error(reply)
    }

    /// A command line over the length limit, already discarded by the driver.
    pub fn line_too_long(&mut self) -> Action {
        // An over-long answer to a 334 ends the AUTH exchange too.
        self.auth_step = None;
        self.error(reply::line_too_long())
    }

    /// Counts a failed command; past the limit the session ends with `421`.
    fn error(&mut self, reply: Reply) -> Action {
        self.errors += 1;
        if self.errors >= self.settings.config.limits.max_errors {
            Action::Close(reply::too_many_errors(&self.settings.config.hostname))
        } else {
            Action::Reply(reply)
        }
    }

    fn reply(&mut self, reply: Reply) -> Action {
        if reply.is_error() { self.error(reply) } else { Action::Reply(reply) }
    }

    fn dispatch(&mut self, cmd: Command) -> Action {
        let hostname = &self.settings.config.hostname;
        let r = match cmd {
            Command::Ehlo(name) => {
                self.helo = Some(name);
                self.esmtp = true;
                self.state = State::Ready;
                let starttls = self.tls.is_none() && self.tls_available && self.port != Port::Submissions;
                let auth = self.tls.is_some() && self.port.is_submission() && self.login.is_none();
                reply::ehlo(
                    hostname,
                    self.helo(),
                    self.settings.config.limits.max_message_size,
                    starttls,
                    auth,
                )
            }
            Command::Helo(name) => {
                self.helo = Some(name);
                self.esmtp = false;
                self.state = State::Ready;
                reply::helo(hostname, self.helo())
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => return self.data(),
            Command::Rset => {
                if !matches!(self.state, State::Fresh) {
                    self.state = State::Ready;
                }
                reply::reset()
            }
            Command::Noop => reply::ok(),
            Command::Quit => return Action::Close(reply::closing(hostname)),
            Command::Help => reply::help(),
            Command::Vrfy => reply::vrfy(),
            Command::Expn => reply::not_implemented("EXPN"),
            Command::StartTls => match self.starttls() {
                Ok(r) => return Action::StartTls(r),
                Err(r) => r,
            },
            Command::Auth(args) => return self.auth(&args),
            Command::NotImplemented(what) => reply::not_implemented(what),
        };
        self.reply(r)
    }

    fn starttls(&self) -> Result<Reply, Reply> {
        if self.tls.is_some() {
            return Err(reply::tls_active());
        }
        if !self.tls_available {
            return Err(reply::tls_unavailable());
        }
        if matches!(self.state, State::Fresh) {
            return Err(reply::need_helo());
        }
        Ok(reply::start_tls())
    }

    fn auth(&mut self, args: &str) -> Action {
        let refusal = if !self.port.is_submission() {
            Some(reply::auth_not_here())
        } else if self.tls.is_none() {
            Some(reply::encryption_required())
        } else if self.login.is_some() {
            Some(reply::already_authenticated())
        } else if matches!(self.state, State::Fresh) {
            Some(reply::need_helo())
        } else if matches!(self.state, State::Mail(_) | State::Data(_)) {
            Some(reply::auth_in_transaction())
        } else {
            None
        };
        if let Some(r) = refusal {
            return self.error(r);
        }
        let mut words = args.split_whitespace();
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next();
        if words.next().is_some() {
            return self.error(reply::syntax("AUTH takes a mechanism and at most one initial response"));
        }
        match (mechanism.as_str(), initial) {
            (_, Some("*")) => self.error(reply::auth_cancelled()),
            ("PLAIN", None) => {
                self.auth_step = Some(AuthStep::Plain);
                Action::Reply(reply::auth_challenge(""))
            }
            ("PLAIN", Some(ir)) => self.auth_response(AuthStep::Plain, ir.as_bytes()),
            ("LOGIN", None) => {
                self.auth_step = Some(AuthStep::LoginUser);
                Action::Reply(reply::auth_challenge(&auth::base64_encode(b"Username:")))
            }
            ("LOGIN", Some(ir)) => self.auth_response(AuthStep::LoginUser, ir.as_bytes()),
            _ => self.error(reply::unknown_mechanism()),
        }
    }

    /// The client's answer to a `334` challenge.
    fn auth_response(&mut self, step: AuthStep, line: &[u8]) -> Action {
        let Ok(text) = std::str::from_utf8(line) else {
            return self.error(reply::bad_base64());
        };
        let text = if text == "=" { "" } else { text };
        if text == "*" {
            return self.error(reply::auth_cancelled());
        }
        let bad = |e: SaslError| match e {
            SaslError::Base64 => reply::bad_base64(),
            SaslError::Malformed => reply::bad_sasl(),
        };
        match step {
            AuthStep::Plain => match auth::parse_plain(text) {
                Ok((login, password)) => Action::Authenticate { login, password },
                Err(e) => self.error(bad(e)),
            },
            AuthStep::LoginUser => match auth::parse_login_step(text) {
                Ok(user) => {
                    self.auth_step = Some(AuthStep::LoginPassword(user));
                    Action::Reply(reply::auth_challenge(&auth::base64_encode(b"Password:")))
                }
                Err(e) => self.error(bad(e)),
            },
            AuthStep::LoginPassword(login) => match auth::parse_login_step(text) {
                Ok(password) => Action::Authenticate { login, password },
                Err(e) => self.error(bad(e)),
            },
        }
    }

    fn mail(&mut self, from: Path, params: MailParams) -> Reply {
        match self.state {
            State::Fresh => return reply::need_helo(),
            State::Mail(_) | State::Data(_) => return reply::nested_mail(),
            State::Ready => {}
        }
        let max = self.settings.config.limits.max_message_size;
        if params.size.is_some_and(|s| s > max) {
            return reply::message_too_big_declared(max);
        }
        if self.port.is_submission() && self.login.is_none() {
            return reply::auth_required();
        }
        let sender = match from {
            Path::Null => None,
            Path::Mailbox(a) => Some(a),
            Path::Bare(_) => return reply::bad_sender_address("sender needs a domain"),
        };
        if let Some(login) = &self.login {
            let own = sender.as_ref().is_some_and(|a| self.settings.accounts.may_send_as(login, a));
            if !own {
                let shown = sender.as_ref().map(ToString::to_string).unwrap_or_default();
                return reply::not_your_address(&shown, &format!("{}@{}", login.user, login.domain));
            }
        }
        if !params.smtputf8 && sender.as_ref().is_some_and(|a| !a.to_string().is_ascii()) {
            return reply::smtputf8_required();
        }
        self.state = State::Mail(Transaction {
            sender,
            params,
            recipients: Vec::new(),
            seen: HashSet::new(),
            accepted: 0,
        });
        reply::sender_ok()
    }

    fn rcpt(&mut self, to: Path) -> Reply {
        let settings = Arc::clone(&self.settings);
        let accounts = &settings.accounts;
        // A logged-in user may send anywhere, as may a trusted network.
        let trusted = self.trusted || self.login.is_some();
        let login_domain = self.login.as_ref().map(|l| l.domain.clone());
        let State::Mail(t) = &mut self.state else {
            return reply::need_mail();
        };
        if t.accepted >= settings.config.limits.max_recipients {
            return reply::too_many_recipients();
        }
        let addr = match to {
            Path::Mailbox(a) => a,
            Path::Bare(local) if local.eq_ignore_ascii_case("postmaster") => {
                Address::new(local, accounts.primary_domain().clone())
            }
            Path::Bare(local) if trusted => {
                // A trusted device wrote `<bob>`: complete it with the sender's
                // domain when that is ours, else with the primary domain.
                // A logged-in user's `<bob>` gets the user's own domain.
                let domain = match (&login_domain, &t.sender) {
                    (Some(d), _) => d.clone(),
                    (None, Some(s)) if accounts.is_local(s.domain()) => s.domain().clone(),
                    _ => accounts.primary_domain().clone(),
                };
                Address::new(local, domain)
            }
            Path::Bare(_) => return reply::bad_address("recipient needs a domain"),
            Path::Null => return reply::bad_address("empty recipient"),
        };
        if !t.params.smtputf8 && !addr.to_string().is_ascii() {
            return reply::smtputf8_required();
        }
        let routes = match accounts.resolve(&addr) {
            Resolution::Deliver(routes) => routes,
            Resolution::UnknownUser => return reply::no_such_user(&addr.to_string()),
            Resolution::NotLocal if trusted => vec![Route::Remote(addr)],
            Resolution::NotLocal => return reply::relay_denied(&addr.to_string()),
            Resolution::TooMany => return reply::alias_too_big(MAX_EXPANDED_RECIPIENTS),
        };
        // The transaction's cap counts delivery recipients, aliases expanded:
        // one RCPT takes all of its routes or none.
        let new = routes.iter().filter(|r| !t.seen.contains(r)).count();
        if t.recipients.len() + new > MAX_EXPANDED_RECIPIENTS {
            return reply::too_many_recipients();
        }
        for r in routes {
            if t.seen.insert(r.clone()) {
                t.recipients.push(r);
            }
        }
        t.accepted += 1;
        reply::recipient_ok()
    }

    fn data(&mut self) -> Action {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Mail(t) if t.accepted > 0 => {
                self.state = State::Data(t);
                Action::StartData(reply::start_data())
            }
            State::Mail(t) => {
                self.state = State::Mail(t);
                self.error(reply::need_rcpt())
            }
            State::Fresh => {
                self.state = State::Fresh;
                self.error(reply::need_helo())
            }
            other => {
                self.state = other;
                self.error(reply::need_mail())
            }
        }
    }

    /// The message after `354` failed; the transaction is over.
    pub fn data_failed(&mut self, e: DataError) -> Reply {
        self.state = State::Ready;
        match e {
            DataError::TooBig => reply::message_too_big(),
            DataError::BareLineEnding => reply::bare_line_ending(),
            DataError::LineTooLong => reply::data_line_too_long(),
            DataError::Nul => reply::nul_in_message(),
        }
    }

    /// The message after `354` arrived whole: the envelope to queue. The
    /// transaction is over whatever the queue answers.
    pub fn take_envelope(&mut self) -> Option<Envelope> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Data(t) => Some(Envelope { sender: t.sender, recipients: t.recipients }),
            other => {
                self.state = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::envelope::Domain;

    const CONFIG: &str = r#"
hostname = "mx.example.com"
data_dir = "/tmp/x"
[relay]
trusted_networks = ["192.168.1.0/24"]
[domains."example.com"]
users = { alice = "", bob = "" }
aliases = { team = ["alice", "bob"] }
[limits]
max_recipients = 3
max_errors = 10
max_message_size = "1K"
"#;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings::new(Config::parse(CONFIG, "test").expect("test config parses")))
    }

    /// Runs a dialog: each line is a command and the reply code expected.
    fn dialog(ip: &str, steps: &[(&str, u16)]) -> Session {
        let mut s = Session::new(settings(), ip.parse().unwrap(), Port::Mx, false, None);
        for (line, code) in steps {
            let got = code_of(s.command(line.as_bytes()));
            assert_eq!(got, *code, "{line:?} from {ip}");
        }
        s
    }

    /// The reply code of an action; 1 stands for "check these credentials".
    fn code_of(a: Action) -> u16 {
        match a {
            Action::Reply(r) | Action::Close(r) | Action::StartData(r) | Action::StartTls(r) => r.code,
            Action::Authenticate { .. } => 1,
        }
    }

    fn submission(tls: bool) -> Session {
        let info = TlsInfo { version: "TLSv1.3".into(), cipher: "X".into() };
        Session::new(settings(), "203.0.113.9".parse().unwrap(), Port::Submission, true, tls.then_some(info))
    }

    fn alice() -> Login {
        Login { user: "alice".into(), domain: Domain::parse("example.com").unwrap() }
    }

    #[test]
    fn submission_without_tls_offers_starttls_and_refuses_auth_and_mail() {
        let mut s = submission(false);
        let Action::Reply(ehlo) = s.command(b"EHLO laptop") else { panic!() };
        assert!(ehlo.lines.contains(&"STARTTLS".to_string()));
        assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")));
        assert_eq!(code_of(s.command(b"AUTH PLAIN AGFsaWNlAHB3")), 538);
        assert_eq!(code_of(s.command(b"MAIL FROM:<alice@example.com>")), 530);
        assert_eq!(code_of(s.command(b"STARTTLS")), 220);
    }

    #[test]
    fn auth_inside_tls_takes_plain_and_login_and_refuses_bad_exchanges() {
        let mut s = submission(true);
        let Action::Reply(ehlo) = s.command(b"EHLO laptop") else { panic!() };
        assert!(ehlo.lines.contains(&"AUTH PLAIN LOGIN".to_string()));
        assert!(!ehlo.lines.contains(&"STARTTLS".to_string()));
        assert_eq!(code_of(s.command(b"STARTTLS")), 503);
        assert_eq!(code_of(s.command(b"AUTH CRAM-MD5")), 504);
        assert_eq!(code_of(s.command(b"AUTH PLAIN not-base64!")), 501);
        assert_eq!(code_of(s.command(b"AUTH PLAIN *")), 501);
        assert_eq!(code_of(s.command(b"AUTH PLAIN")), 334);
        assert_eq!(code_of(s.command(b"*")), 501);
        assert_eq!(code_of(s.command(b"AUTH LOGIN")), 334);
        assert_eq!(code_of(s.command(b"YWxpY2U=")), 334);
        assert_eq!(s.command(b"cHc="), Action::Authenticate { login: "alice".into(), password: "pw".into() });
        assert_eq!(code_of(s.auth_result(None)), 535);
        assert_eq!(
            s.command(b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHB3"),
            Action::Authenticate { login: "alice@example.com".into(), password: "pw".into() }
        );
        assert_eq!(code_of(s.auth_result(Some(alice()))), 235);
        assert_eq!(code_of(s.command(b"AUTH PLAIN AGFsaWNlAHB3")), 503);
    }

    #[test]
    fn an_over_long_answer_ends_the_auth_exchange() {
        let mut s = submission(true);
        s.command(b"EHLO laptop");
        assert_eq!(code_of(s.command(b"AUTH LOGIN")), 334);
        assert_eq!(code_of(s.line_too_long()), 500);
        assert_eq!(code_of(s.command(b"EHLO laptop")), 250, "the next line is a command again");
    }

    #[test]
    fn logged_in_users_send_as_themselves_and_relay() {
        let mut s = submission(true);
        s.command(b"EHLO laptop");
        s.auth_result(Some(alice()));
        assert_eq!(code_of(s.command(b"MAIL FROM:<bob@example.com>")), 553);
        assert_eq!(code_of(s.command(b"MAIL FROM:<>")), 553);
        assert_eq!(code_of(s.command(b"MAIL FROM:<someone@elsewhere.example>")), 553);
        assert_eq!(code_of(s.command(b"MAIL FROM:<team@example.com>")), 250);
        s.command(b"RSET");
        assert_eq!(code_of(s.command(b"MAIL FROM:<Alice+lists@example.com>")), 250);
        assert_eq!(code_of(s.command(b"RCPT TO:<friend@elsewhere.example>")), 250);
        assert_eq!(code_of(s.command(b"RCPT TO:<bob>")), 250);
        assert_eq!(code_of(s.command(b"DATA")), 354);
        let env = s.take_envelope().unwrap();
        assert_eq!(env.recipients[1].address(), "bob@example.com");
        assert_eq!(s.protocol(), "ESMTPSA");
    }

    #[test]
    fn auth_is_not_offered_on_the_mx_port() {
        let info = TlsInfo { version: "TLSv1.3".into(), cipher: "X".into() };
        let mut s = Session::new(settings(), "203.0.113.9".parse().unwrap(), Port::Mx, true, Some(info));
        let Action::Reply(ehlo) = s.command(b"EHLO mx.other.example") else { panic!() };
        assert!(!ehlo.lines.iter().any(|l| l.starts_with("AUTH")));
        assert_eq!(code_of(s.command(b"AUTH PLAIN AGFsaWNlAHB3")), 503);
        assert_eq!(code_of(s.command(b"MAIL FROM:<x@other.example>")), 250);
    }

    #[test]
    fn commands_out_of_order_get_503() {
        dialog(
            "203.0.113.5",
            &[
                ("MAIL FROM:<a@b.example>", 503),
                ("DATA", 503),
                ("EHLO c", 250),
                ("RCPT TO:<alice@example.com>", 503),
                ("DATA", 503),
                ("MAIL FROM:<a@b.example>", 250),
                ("MAIL FROM:<a@b.example>", 503),
            ],
        );
    }

    #[test]
    fn local_delivery_from_anyone_relay_only_from_trusted() {
        let mut s = dialog(
            "203.0.113.5",
            &[
                ("EHLO c", 250),
                ("MAIL FROM:<a@b.example>", 250),
                ("RCPT TO:<nobody@example.com>", 550),
                ("RCPT TO:<x@elsewhere.example>", 554),
                ("RCPT TO:<x%elsewhere.example@example.com>", 550),
                ("RCPT TO:<@example.com:x@elsewhere.example>", 554),
                ("RCPT TO:<bob>", 501),
                ("RSET", 250),
                ("MAIL FROM:<a@b.example>", 250),
                ("RCPT TO:<\"x@elsewhere.example\"@example.com>", 550),
                ("RCPT TO:<alice@example.com>", 250),
                ("RCPT TO:<ALICE+tag@Example.com>", 250),
                ("RCPT TO:<team@example.com>", 250),
                ("DATA", 354),
            ],
        );
        let env = s.take_envelope().expect("in DATA");
        let names: Vec<String> = env.recipients.iter().map(Route::address).collect();
        assert_eq!(names, ["alice@example.com", "bob@example.com"]);
        dialog(
            "192.168.1.20",
            &[
                ("HELO printer", 250),
                ("MAIL FROM:<scanner@lan.example>", 250),
                ("RCPT TO:<x@elsewhere.example>", 250),
                ("RCPT TO:<bob>", 250),
                ("RCPT TO:<postmaster>", 250),
            ],
        );
    }

    #[test]
    fn bare_recipient_takes_the_senders_local_domain() {
        let mut s = dialog(
            "192.168.1.20",
            &[("EHLO c", 250), ("MAIL FROM:<alice@example.com>", 250), ("RCPT TO:<bob>", 250), ("DATA", 354)],
        );
        let env = s.take_envelope().expect("in DATA");
        assert_eq!(env.recipients[0].address(), "bob@example.com");
    }

    #[test]
    fn recipient_limit_then_452() {
        dialog(
            "203.0.113.5",
            &[
                ("EHLO c", 250),
                ("MAIL FROM:<>", 250),
                ("RCPT TO:<alice@example.com>", 250),
                ("RCPT TO:<bob@example.com>", 250),
                ("RCPT TO:<team@example.com>", 250),
                ("RCPT TO:<alice@example.com>", 452),
            ],
        );
    }

    #[test]
    fn declared_size_and_utf8() {
        dialog(
            "203.0.113.5",
            &[
                ("EHLO c", 250),
                ("MAIL FROM:<a@b.example> SIZE=2048", 552),
                ("MAIL FROM:<ü@b.example>", 553),
                ("MAIL FROM:<ü@b.example> SMTPUTF8", 250),
                ("RSET", 250),
                ("MAIL FROM:<a@b.example>", 250),
                ("RCPT TO:<ü@example.com>", 553),
            ],
        );
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut s = Session::new(settings(), "203.0.113.5".parse().unwrap(), Port::Mx, false, None);
        for _ in 0..9 {
            assert!(matches!(s.command(b"BOGUS"), Action::Reply(r) if r.code == 500));
        }
        assert!(matches!(s.command(b"BOGUS"), Action::Close(r) if r.code == 421));
    }

    #[test]
    fn data_failure_ends_the_transaction() {
        let mut s = dialog(
            "203.0.113.5",
            &[("EHLO c", 250), ("MAIL FROM:<>", 250), ("RCPT TO:<alice@example.com>", 250), ("DATA", 354)],
        );
        assert_eq!(s.data_failed(DataError::BareLineEnding).code, 550);
        assert!(s.take_envelope().is_none());
        assert!(matches!(s.command(b"RCPT TO:<alice@example.com>"), Action::Reply(r) if r.code == 503));
    }
}
