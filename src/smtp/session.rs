//! The SMTP session state machine: command lines in, replies and actions out.
//! Pure: the driver in `server` owns the socket, the clock and the queue.

use std::net::IpAddr;
use std::sync::Arc;

use super::command::{self, Command, CommandError, MailParams};
use super::data::DataError;
use super::reply::{self, Reply};
use crate::Settings;
use crate::accounts::Resolution;
use crate::envelope::{Address, Envelope, Path, Route};

/// What the driver must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the reply and read the next command.
    Reply(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the `354` reply and read the message with a DATA decoder.
    StartData(Reply),
}

/// One mail transaction, from MAIL to the final dot.
#[derive(Debug)]
struct Transaction {
    sender: Option<Address>,
    params: MailParams,
    recipients: Vec<Route>,
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
}

impl Session {
    /// A new session for a client at `client_ip`.
    pub fn new(settings: Arc<Settings>, client_ip: IpAddr) -> Session {
        let trusted = settings.accounts.is_trusted(client_ip);
        Session { settings, client_ip, trusted, helo: None, esmtp: false, errors: 0, state: State::Fresh }
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

    /// The Received-header protocol keyword (RFC 3848, RFC 6531).
    pub fn protocol(&self) -> &'static str {
        let utf8 = matches!(&self.state, State::Data(t) | State::Mail(t) if t.params.smtputf8);
        match (self.esmtp, utf8) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "UTF8SMTP",
        }
    }

    /// Handles one command line (without its line ending).
    pub fn command(&mut self, line: &[u8]) -> Action {
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
                reply::ehlo(hostname, self.helo(), self.settings.config.limits.max_message_size)
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
            Command::StartTls => reply::not_implemented("STARTTLS"),
            Command::Auth(_) => reply::not_implemented("AUTH"),
            Command::NotImplemented(what) => reply::not_implemented(what),
        };
        self.reply(r)
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
        let sender = match from {
            Path::Null => None,
            Path::Mailbox(a) => Some(a),
            Path::Bare(_) => return reply::bad_sender_address("sender needs a domain"),
        };
        if !params.smtputf8 && sender.as_ref().is_some_and(|a| !a.to_string().is_ascii()) {
            return reply::smtputf8_required();
        }
        self.state = State::Mail(Transaction { sender, params, recipients: Vec::new(), accepted: 0 });
        reply::sender_ok()
    }

    fn rcpt(&mut self, to: Path) -> Reply {
        let settings = Arc::clone(&self.settings);
        let accounts = &settings.accounts;
        let trusted = self.trusted;
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
                let domain = match &t.sender {
                    Some(s) if accounts.is_local(s.domain()) => s.domain().clone(),
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
        };
        for r in routes {
            if !t.recipients.contains(&r) {
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
        let mut s = Session::new(settings(), ip.parse().unwrap());
        for (line, code) in steps {
            let got = match s.command(line.as_bytes()) {
                Action::Reply(r) | Action::Close(r) | Action::StartData(r) => r,
            };
            assert_eq!(got.code, *code, "{line:?} from {ip}: got {got:?}");
        }
        s
    }

    #[test]
    fn sequence_errors() {
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
        let mut s = Session::new(settings(), "203.0.113.5".parse().unwrap());
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
