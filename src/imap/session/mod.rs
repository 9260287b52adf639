//! One IMAP session: its state (not logged in, logged in, a mailbox
//! selected), what each command does to the user's Maildir and what is said
//! back. No sockets here: the driver hands in parsed commands, runs the
//! password checks and the TLS handshake the session asks for, and streams
//! what the session writes to its [`Output`], message files included. The
//! file work is synchronous; the driver runs it off the async threads.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::command::{
    Command, FetchItem, Flag, ListOptions, ParseError, SearchKey, SearchReturn, SectionText, SeqSet,
    StatusItem, StoreMode, Tagged,
};
use super::message;
use super::mime;
use super::response::{Output, Piece, flag_list, folder_flags, internal_date, mailbox, string};
use super::search::{Candidate, matches};
use super::structure;
use super::view::View;
use crate::Settings;
use crate::accounts::Login;
use crate::mailbox::folder::{self, Entry};
use crate::mailbox::keywords;
use crate::mailbox::names::{self, Flags};
use crate::mailbox::uidlist::{self, Lock};
use crate::mailbox::write::{self, Spool};
use crate::mailbox::{mutf7, subscriptions};

mod change;
mod fetch;
mod list;
mod select;

use fetch::not_offered;
pub use list::wildcard;

/// The special-use folders made at the first login, and their attributes.
pub const SPECIAL: [(&str, &str); 5] = [
    ("Archive", "\\Archive"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
];

/// The most bytes a response may make in memory (message bodies, which are
/// streamed from their files, do not count).
const MAX_RESPONSE: usize = 8 << 20;
/// The most keys one SEARCH may hold, and of them the ones that read
/// message files (headers, bodies, dates sent, sizes): each may read every
/// message.
const MAX_SEARCH_KEYS: usize = 256;
const MAX_SEARCH_READS: usize = 16;

/// A search's keys, and how many of them read message files.
fn search_cost(k: &SearchKey) -> (usize, usize) {
    match k {
        SearchKey::And(keys) => keys.iter().map(search_cost).fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        SearchKey::Or(a, b) => {
            let (a, b) = (search_cost(a), search_cost(b));
            (1 + a.0 + b.0, a.1 + b.1)
        }
        SearchKey::Not(a) => {
            let a = search_cost(a);
            (1 + a.0, a.1)
        }
        SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Larger(_)
        | SearchKey::Smaller(_) => (1, 1),
        _ => (1, 0),
    }
}

/// The most items one FETCH may name.
const MAX_FETCH_ITEMS: usize = 32;

/// What the driver is to do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the output and read the next command.
    Next,
    /// Send the output, then the TLS handshake.
    StartTls,
    /// Check this name and password with the login service, then call
    /// [`Session::logged_in`].
    Check {
        /// The command's tag.
        tag: String,
        /// The name given.
        user: String,
        /// The password given.
        password: String,
    },
    /// Send `+ ` and hand the client's next line to
    /// [`Session::auth_response`] (AUTHENTICATE PLAIN without SASL-IR).
    Continue {
        /// The command's tag.
        tag: String,
    },
    /// Send `+ idling`, then call [`Session::poll`] now and then until
    /// the client says DONE, then [`Session::idle_done`].
    Idle {
        /// The command's tag.
        tag: String,
    },
    /// Send the output and close.
    Close,
}

/// How a password check came out, as the driver tells it.
#[derive(Debug)]
pub enum Checked {
    /// Right.
    Ok(Login),
    /// Wrong name or password.
    Wrong,
    /// Too many checks now, or the account's budget spent: try later.
    Later,
    /// The client failed too often: it is disconnected.
    Blocked,
}

/// One session.
pub struct Session {
    settings: Arc<Settings>,
    ip: IpAddr,
    tls: bool,
    login: Option<Login>,
    maildir: PathBuf,
    view: Option<View>,
}

fn no(out: &mut Output, tag: &str, text: &str) {
    out.line(&format!("{tag} NO {text}"));
}

fn ok(out: &mut Output, tag: &str, text: &str) {
    out.line(&format!("{tag} OK {text}"));
}

fn bad(out: &mut Output, tag: &str, text: &str) {
    out.line(&format!("{tag} BAD {text}"));
}

/// The maildir flags an IMAP flag stands for; `None` for a keyword.
fn letter(f: &Flag) -> Option<names::Flag> {
    Some(match f {
        Flag::Seen => names::Flag::Seen,
        Flag::Answered => names::Flag::Replied,
        Flag::Flagged => names::Flag::Flagged,
        Flag::Deleted => names::Flag::Trashed,
        Flag::Draft => names::Flag::Draft,
        _ => return None,
    })
}

impl Session {
    /// A session for a client at `ip`, over TLS from the start or not.
    pub fn new(settings: Arc<Settings>, ip: IpAddr, tls: bool) -> Session {
        Session { settings, ip, tls, login: None, maildir: PathBuf::new(), view: None }
    }

    /// The client's address.
    pub fn client_ip(&self) -> IpAddr {
        self.ip
    }

    /// Who is logged in.
    pub fn login(&self) -> Option<&Login> {
        self.login.as_ref()
    }

    /// The capabilities offered now.
    pub fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE");
        if !self.tls {
            c.push_str(" STARTTLS LOGINDISABLED");
        } else if self.login.is_none() {
            c.push_str(" AUTH=PLAIN");
        }
        if self.login.is_some() {
            c.push_str(" NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH STATUS=SIZE");
        }
        c
    }

    /// The greeting.
    pub fn greeting(&self, out: &mut Output) {
        out.line(&format!(
            "* OK [CAPABILITY {}] {} IMAP ready",
            self.capabilities(),
            self.settings.config.hostname
        ));
    }

    /// Answers a command that did not parse.
    pub fn parse_error(&mut self, e: &ParseError, out: &mut Output) {
        let reason = e.reason.replace(['\r', '\n'], " ");
        match &e.tag {
            Some(tag) => bad(out, tag, &reason),
            None => out.line(&format!("* BAD {reason}")),
        }
    }

    /// The TLS handshake after STARTTLS is done.
    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// A spool for APPEND's message, in the user's Maildir; `None` before
    /// a login.
    pub fn spool(&self) -> Option<Spool> {
        self.login.as_ref()?;
        Spool::create(&self.maildir, &self.settings.config.hostname).ok()
    }

    /// The most a message may weigh.
    pub fn max_message(&self) -> u64 {
        self.settings.config.limits.max_message_size
    }

    /// Runs a command. `spool` holds APPEND's message.
    pub fn handle(&mut self, t: Tagged, spool: Option<Spool>, out: &mut Output) -> Action {
        let tag = t.tag.as_str();
        match t.command {
            Command::Capability => {
                out.line(&format!("* CAPABILITY {}", self.capabilities()));
                ok(out, tag, "CAPABILITY completed");
            }
            Command::Noop | Command::Check => {
                self.refresh(out, true);
                ok(out, tag, "NOOP completed");
            }
            Command::Logout => {
                out.line("* BYE logging out");
                ok(out, tag, "LOGOUT completed");
                return Action::Close;
            }
            Command::Id(_) => {
                out.line("* ID (\"name\" \"Postern\")");
                ok(out, tag, "ID completed");
            }
            Command::Enable(_) => {
                if self.login.is_none() {
                    bad(out, tag, "log in first");
                } else {
                    out.line("* ENABLED");
                    ok(out, tag, "ENABLE completed");
                }
            }
            Command::StartTls => {
                if self.tls {
                    bad(out, tag, "TLS is already on");
                } else {
                    ok(out, tag, "begin TLS now");
                    return Action::StartTls;
                }
            }
            Command::Login { user, password } => {
                if self.login.is_some() {
                    bad(out, tag, "already logged in");
                } else if !self.tls {
                    no(out, tag, "[PRIVACYREQUIRED] use STARTTLS first");
                } else {
                    return Action::Check {
                        tag: t.tag,
                        user: String::from_utf8_lossy(&user).into_owned(),
                        password: String::from_utf8_lossy(&password).into_owned(),
                    };
                }
            }
            Command::Authenticate { mechanism, initial } => {
                if self.login.is_some() {
                    bad(out, tag, "already logged in");
                } else if !self.tls {
                    no(out, tag, "[PRIVACYREQUIRED] use STARTTLS first");
                } else if mechanism != "PLAIN" {
                    no(out, tag, "only AUTHENTICATE PLAIN is offered");
                } else {
                    match initial {
                        Some(i) => return self.auth_response(&t.tag, &i, out),
                        None => return Action::Continue { tag: t.tag },
                    }
                }
            }
            other => {
                if self.login.is_none() {
                    if let Some(s) = spool {
                        s.discard();
                    }
                    bad(out, tag, "log in first");
                    return Action::Next;
                }
                return self.authenticated(t.tag, other, spool, out);
            }
        }
        if let Some(s) = spool {
            s.discard();
        }
        Action::Next
    }

    /// The client's answer to `+` after AUTHENTICATE PLAIN.
    pub fn auth_response(&mut self, tag: &str, line: &[u8], out: &mut Output) -> Action {
        if line == b"*" {
            bad(out, tag, "AUTHENTICATE cancelled");
            return Action::Next;
        }
        let text = String::from_utf8_lossy(line);
        match crate::auth::parse_plain(&text) {
            Ok((user, password)) => Action::Check { tag: tag.to_string(), user, password },
            Err(_) => {
                bad(out, tag, "not a PLAIN response");
                Action::Next
            }
        }
    }

    /// The password check came out as `checked`.
    pub fn logged_in(&mut self, tag: &str, checked: Checked, out: &mut Output) -> Action {
        match checked {
            Checked::Ok(login) => {
                let c = &self.settings.config;
                self.maildir = crate::mailbox::path(&c.mail_root, &login.domain.to_string(), &login.user);
                self.login = Some(login);
                if let Err(e) = self.first_login() {
                    log::error!("imap: cannot prepare the Maildir of [{}]: {e}", self.ip);
                    self.login = None;
                    no(out, tag, "[SERVERBUG] the mailbox cannot be opened");
                    return Action::Next;
                }
                ok(out, tag, &format!("[CAPABILITY {}] logged in", self.capabilities()));
                Action::Next
            }
            Checked::Wrong => {
                no(out, tag, "[AUTHENTICATIONFAILED] wrong name or password");
                Action::Next
            }
            Checked::Later => {
                no(out, tag, "[UNAVAILABLE] try again later");
                Action::Next
            }
            Checked::Blocked => {
                out.line("* BYE too many failed logins");
                Action::Close
            }
        }
    }

    /// The Maildir and its special-use folders, made and subscribed the
    /// first time.
    fn first_login(&self) -> std::io::Result<()> {
        if self.maildir.join("cur").is_dir() && self.maildir.join(subscriptions::FILE).exists() {
            // Writes a crash cut off, long ago, go (APPEND spools here).
            let _ = folder::clean_tmp(&self.maildir, std::time::SystemTime::now());
            return Ok(());
        }
        folder::create(&self.maildir, "INBOX")?;
        let mut subscribed = subscriptions::read(&self.maildir)?;
        for (name, _) in SPECIAL {
            folder::create(&self.maildir, name)?;
            if !subscribed.iter().any(|s| s == name) {
                subscribed.push(name.to_string());
            }
        }
        subscriptions::write(&self.maildir, &subscribed)
    }

    /// Called while IDLE: tells the client what changed.
    pub fn poll(&mut self, out: &mut Output) {
        self.refresh(out, true);
    }

    /// IDLE ended with DONE.
    pub fn idle_done(&mut self, tag: &str, out: &mut Output) {
        self.refresh(out, true);
        ok(out, tag, "IDLE completed");
    }

    fn refresh(&mut self, out: &mut Output, expunges: bool) {
        if let Some(v) = self.view.as_mut() {
            if let Err(e) = v.refresh(out, expunges) {
                log::warn!(
                    "imap: cannot read folder {} of [{}]: {e}",
                    crate::logtext::quoted(&v.name),
                    self.ip
                );
            }
        }
    }

    /// A mailbox name from the wire (modified UTF-7) as text.
    fn name(raw: &[u8]) -> Result<String, &'static str> {
        let s = std::str::from_utf8(raw).map_err(|_| "a mailbox name is not UTF-8")?;
        let s = mutf7::decode(s).map_err(|_| "a mailbox name is not modified UTF-7")?;
        if s.chars().any(char::is_control) {
            return Err("a mailbox name holds a control character");
        }
        // INBOX in any case, also as the first level of a deeper name.
        match s.split_once(folder::DELIMITER) {
            Some((first, rest)) if first.eq_ignore_ascii_case("INBOX") => Ok(format!("INBOX/{rest}")),
            None if s.eq_ignore_ascii_case("INBOX") => Ok("INBOX".to_string()),
            _ => Ok(s),
        }
    }

    fn folder_dir(&self, raw: &[u8]) -> Result<(String, PathBuf), String> {
        let name = Session::name(raw)?;
        let dir = folder::dir(&self.maildir, &name).map_err(|e| e.to_string())?;
        Ok((name, dir))
    }

    fn authenticated(&mut self, tag: String, c: Command, spool: Option<Spool>, out: &mut Output) -> Action {
        let tag = tag.as_str();
        match c {
            Command::Namespace => {
                out.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                ok(out, tag, "NAMESPACE completed");
            }
            Command::Select { mailbox, read_only, .. } => self.select(tag, &mailbox, read_only, out),
            Command::Create { mailbox, .. } => match self
                .folder_dir(mailbox.strip_suffix(b"/").unwrap_or(&mailbox))
            {
                Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                Ok((_, dir)) if dir.join("cur").is_dir() => no(out, tag, "[ALREADYEXISTS] the folder exists"),
                Ok((name, _)) => match folder::create(&self.maildir, &name) {
                    Ok(_) => ok(out, tag, "CREATE completed"),
                    Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                },
            },
            Command::Delete(m) => match self.folder_dir(&m) {
                Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                Ok((name, _)) => {
                    if self.view.as_ref().is_some_and(|v| v.name == name) {
                        self.view = None;
                    }
                    match write::delete_folder(&self.maildir, &name) {
                        Ok(()) => ok(out, tag, "DELETE completed"),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            no(out, tag, "[NONEXISTENT] no such folder")
                        }
                        Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                    }
                }
            },
            Command::Rename { from, to } => match (Session::name(&from), Session::name(&to)) {
                (Ok(a), Ok(b)) => {
                    match write::rename_folder(&self.maildir, &a, &b, &self.settings.config.hostname) {
                        Ok(()) => ok(out, tag, "RENAME completed"),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            no(out, tag, "[NONEXISTENT] no such folder")
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            no(out, tag, "[ALREADYEXISTS] the new name exists")
                        }
                        Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                    }
                }
                (Err(e), _) | (_, Err(e)) => no(out, tag, &format!("[CANNOT] {e}")),
            },
            Command::Subscribe(ref m) | Command::Unsubscribe(ref m) => {
                let on = matches!(c, Command::Subscribe(_));
                match Session::name(m) {
                    Ok(name) => match subscriptions::set(&self.maildir, &name, on) {
                        Ok(()) => ok(out, tag, "done"),
                        Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                    },
                    Err(e) => no(out, tag, &format!("[CANNOT] {e}")),
                }
            }
            Command::List { reference, patterns, options, lsub } => {
                self.list(tag, &reference, &patterns, &options, lsub, out)
            }
            Command::Status { mailbox, items } => match self.status_line(&mailbox, &items) {
                Ok(line) => {
                    out.line(&line);
                    ok(out, tag, "STATUS completed");
                }
                Err(e) => no(out, tag, &e),
            },
            Command::Append { mailbox, flags, date, .. } => {
                let Some(spool) = spool else {
                    no(out, tag, "[SERVERBUG] the message could not be stored");
                    return Action::Next;
                };
                self.append(tag, &mailbox, &flags, date, spool, out);
            }
            Command::Idle => {
                if self.view.is_some() {
                    self.refresh(out, true);
                }
                return Action::Idle { tag: tag.to_string() };
            }
            other => {
                if let Some(s) = spool {
                    s.discard();
                }
                if self.view.is_none() {
                    bad(out, tag, "select a mailbox first");
                    return Action::Next;
                }
                self.selected(tag, other, out);
            }
        }
        Action::Next
    }

    fn selected(&mut self, tag: &str, c: Command, out: &mut Output) {
        match c {
            Command::Close | Command::Unselect => {
                let close = matches!(c, Command::Close);
                if close && self.view.as_ref().is_some_and(|v| !v.read_only) {
                    let _ = self.expunge(None, out, false);
                }
                self.view = None;
                ok(out, tag, if close { "CLOSE completed" } else { "UNSELECT completed" });
            }
            Command::Expunge(uids) => {
                if self.view.as_ref().is_some_and(|v| v.read_only) {
                    return no(out, tag, "[READ-ONLY] the mailbox is read-only");
                }
                match self.expunge(uids.as_ref(), out, true) {
                    Ok(()) => ok(out, tag, "EXPUNGE completed"),
                    Err(e) => no(out, tag, &format!("[SERVERBUG] {e}")),
                }
            }
            Command::Search { uid, ret, key } => {
                let (keys, reading) = search_cost(&key);
                if keys > MAX_SEARCH_KEYS || reading > MAX_SEARCH_READS {
                    return no(out, tag, "[LIMIT] too many search keys");
                }
                self.refresh(out, uid);
                self.search(tag, uid, ret, &key, out);
            }
            Command::Fetch { uid, set, items, .. } => {
                // Without UID, expunges wait (the client holds the numbers),
                // but renames and new mail are read now.
                self.refresh(out, uid);
                if !uid && !self.view.as_ref().is_some_and(|v| v.seq_in_range(&set)) {
                    return bad(out, tag, "no such message number");
                }
                if let Some(missing) = items.iter().find_map(not_offered) {
                    return bad(out, tag, &format!("{missing} is not offered by this server yet"));
                }
                if items.len() > MAX_FETCH_ITEMS {
                    return bad(out, tag, "too many FETCH items");
                }
                if self.fetch(uid, &set, &items, out) {
                    ok(out, tag, "FETCH completed");
                } else {
                    no(out, tag, "[LIMIT] the answer grew too large: fetch fewer messages or items at once");
                }
            }
            Command::Store { uid, set, mode, silent, flags, .. } => {
                self.refresh(out, uid);
                if !uid && !self.view.as_ref().is_some_and(|v| v.seq_in_range(&set)) {
                    return bad(out, tag, "no such message number");
                }
                if self.view.as_ref().is_some_and(|v| v.read_only) {
                    return no(out, tag, "[READ-ONLY] the mailbox is read-only");
                }
                match self.store(uid, &set, mode, silent, &flags, out) {
                    Ok(()) => ok(out, tag, "STORE completed"),
                    Err(e) => no(out, tag, &e),
                }
            }
            Command::Copy { uid, remove, set, mailbox } => {
                self.refresh(out, uid);
                if !uid && !self.view.as_ref().is_some_and(|v| v.seq_in_range(&set)) {
                    return bad(out, tag, "no such message number");
                }
                if remove && self.view.as_ref().is_some_and(|v| v.read_only) {
                    return no(out, tag, "[READ-ONLY] the mailbox is read-only");
                }
                match self.copy(uid, remove, &set, &mailbox, out) {
                    Ok(code) => {
                        ok(out, tag, &format!("{code}{} completed", if remove { "MOVE" } else { "COPY" }))
                    }
                    Err(e) => no(out, tag, &e),
                }
            }
            _ => bad(out, tag, "not in this state"),
        }
    }
}
