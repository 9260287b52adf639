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

    fn select(&mut self, tag: &str, raw: &[u8], read_only: bool, out: &mut Output) {
        self.view = None;
        let (name, dir) = match self.folder_dir(raw) {
            Ok(x) => x,
            Err(e) => return no(out, tag, &format!("[CANNOT] {e}")),
        };
        if !dir.join("cur").is_dir() {
            return no(out, tag, "[NONEXISTENT] no such folder");
        }
        let view = match View::open(name, dir, read_only) {
            Ok(v) => v,
            Err(e) => return no(out, tag, &format!("[SERVERBUG] {e}")),
        };
        out.line(&format!("* FLAGS {}", folder_flags(&view.keywords)));
        let mut perm = folder_flags(&view.keywords);
        perm.insert_str(perm.len() - 1, " \\*");
        out.line(&format!(
            "* OK [PERMANENTFLAGS {}] flags that stay",
            if read_only { "()".into() } else { perm }
        ));
        out.line(&format!("* {} EXISTS", view.msgs.len()));
        out.line(&format!("* {} RECENT", view.recent()));
        if let Some(i) = view.msgs.iter().position(|m| !m.entry.flags.contains(names::Flag::Seen)) {
            out.line(&format!("* OK [UNSEEN {}] first unseen", i + 1));
        }
        out.line(&format!("* OK [UIDVALIDITY {}] UIDs valid", view.validity));
        out.line(&format!("* OK [UIDNEXT {}] next UID", view.next_uid));
        ok(
            out,
            tag,
            if read_only { "[READ-ONLY] EXAMINE completed" } else { "[READ-WRITE] SELECT completed" },
        );
        self.view = Some(view);
    }

    fn status_line(&mut self, raw: &[u8], items: &[StatusItem]) -> Result<String, String> {
        let (name, dir) = self.folder_dir(raw).map_err(|e| format!("[CANNOT] {e}"))?;
        if !dir.join("cur").is_dir() {
            return Err("[NONEXISTENT] no such folder".into());
        }
        let synced = uidlist::sync(&dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
        let m = &synced.messages;
        let mut parts = Vec::new();
        for item in items {
            let (k, v) = match item {
                StatusItem::Messages => ("MESSAGES", m.len() as u64),
                StatusItem::Recent => {
                    let first = super::view::first_recent(&dir, &synced);
                    ("RECENT", m.iter().filter(|x| x.uid >= first).count() as u64)
                }
                StatusItem::UidNext => ("UIDNEXT", u64::from(synced.next_uid)),
                StatusItem::UidValidity => ("UIDVALIDITY", u64::from(synced.validity)),
                StatusItem::Unseen => {
                    ("UNSEEN", m.iter().filter(|x| !x.entry.flags.contains(names::Flag::Seen)).count() as u64)
                }
                StatusItem::Deleted => (
                    "DELETED",
                    m.iter().filter(|x| x.entry.flags.contains(names::Flag::Trashed)).count() as u64,
                ),
                StatusItem::Size => (
                    "SIZE",
                    m.iter().map(|x| message::size_in_name(&x.entry.name).unwrap_or(x.entry.size)).sum(),
                ),
                StatusItem::HighestModSeq => continue,
            };
            parts.push(format!("{k} {v}"));
        }
        Ok(format!("* STATUS {} ({})", mailbox(&mutf7::encode(&name)), parts.join(" ")))
    }

    fn list(
        &mut self,
        tag: &str,
        reference: &[u8],
        patterns: &[Vec<u8>],
        o: &ListOptions,
        lsub: bool,
        out: &mut Output,
    ) {
        let verb = if lsub { "LSUB" } else { "LIST" };
        if patterns.len() == 1 && patterns[0].is_empty() {
            out.line(&format!("* {verb} (\\Noselect) \"/\" \"\""));
            return ok(out, tag, &format!("{verb} completed"));
        }
        let names = match folder::list(&self.maildir) {
            Ok(n) => n,
            Err(e) => return no(out, tag, &format!("[SERVERBUG] {e}")),
        };
        let subscribed = subscriptions::read(&self.maildir).unwrap_or_default();
        let only_subscribed = lsub || o.subscribed;
        // LSUB lists subscriptions, folders or not; LIST the folders. Both
        // show the parents a deeper name implies, which have no directory.
        let base: Vec<&String> =
            if only_subscribed { subscribed.iter().collect() } else { names.iter().collect() };
        let mut all: Vec<(String, bool)> = base.iter().map(|n| (n.to_string(), names.contains(n))).collect();
        for n in base {
            let mut at = 0;
            while let Some(i) = n[at..].find('/') {
                let parent = &n[..at + i];
                if !all.iter().any(|(a, _)| a == parent) {
                    all.push((parent.to_string(), names.iter().any(|x| x == parent)));
                }
                at += i + 1;
            }
        }
        all.sort();
        let reference = String::from_utf8_lossy(reference).into_owned();
        let wanted: Vec<String> = patterns
            .iter()
            .map(|p| {
                let p = String::from_utf8_lossy(p);
                let p = mutf7::decode(&p).unwrap_or_else(|_| p.into_owned());
                format!("{reference}{p}")
            })
            .collect();
        let below = |name: &str, n: &str| {
            n.len() > name.len() && n.starts_with(name) && n.as_bytes()[name.len()] == b'/'
        };
        for (name, exists) in &all {
            if !wanted.iter().any(|p| wildcard(p, name)) {
                continue;
            }
            let is_subscribed = subscribed.iter().any(|s| s == name);
            // Only a subscription the patterns do not reach themselves.
            let subscribed_below =
                subscribed.iter().any(|n| below(name, n) && !wanted.iter().any(|p| wildcard(p, n)));
            // A parent of a subscription is shown by LSUB only where `%`
            // stopped short of the subscription (RFC 3501 6.3.9), and by
            // LIST (SUBSCRIBED RECURSIVEMATCH) with CHILDINFO (RFC 5258).
            let implied_parent = lsub && !is_subscribed && wanted.iter().any(|p| p.contains('%'));
            let childinfo = o.subscribed && o.recursive && subscribed_below;
            if only_subscribed && !is_subscribed && !implied_parent && !childinfo {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if implied_parent || (!exists && !lsub && !o.subscribed) {
                attrs.push("\\Noselect");
            }
            if !exists && o.subscribed && is_subscribed {
                attrs.push("\\NonExistent");
            }
            let children = names.iter().any(|n| below(name, n));
            if !lsub && (!o.subscribed || o.return_children) {
                attrs.push(if children { "\\HasChildren" } else { "\\HasNoChildren" });
            }
            let special = SPECIAL.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
            if o.special_use_only && special.is_none() {
                continue;
            }
            if let Some(a) = special {
                if !lsub {
                    attrs.push(a);
                }
            }
            if is_subscribed && (o.subscribed || o.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            let shown = mailbox(&mutf7::encode(name));
            let info = if childinfo { " (CHILDINFO (\"SUBSCRIBED\"))" } else { "" };
            out.line(&format!("* {verb} ({}) \"/\" {shown}{info}", attrs.join(" ")));
            if !o.status.is_empty() && *exists {
                if let Ok(line) = self.status_line(mutf7::encode(name).as_bytes(), &o.status) {
                    out.line(&line);
                }
            }
        }
        ok(out, tag, &format!("{verb} completed"));
    }

    fn append(
        &mut self,
        tag: &str,
        raw: &[u8],
        flags: &[Flag],
        date: Option<i64>,
        spool: Spool,
        out: &mut Output,
    ) {
        let (name, dir) = match self.folder_dir(raw) {
            Ok(x) => x,
            Err(e) => {
                spool.discard();
                return no(out, tag, &format!("[CANNOT] {e}"));
            }
        };
        if !dir.join("cur").is_dir() {
            spool.discard();
            return no(out, tag, "[TRYCREATE] no such folder");
        }
        let set = match self.flags_of(&dir, flags) {
            Ok(f) => f,
            Err(e) => {
                spool.discard();
                return no(out, tag, &e);
            }
        };
        let date = date.map(|d| {
            if d >= 0 {
                UNIX_EPOCH + Duration::from_secs(d as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(d.unsigned_abs())
            }
        });
        let entry = match spool.finish(&dir, set, date) {
            Ok(e) => e,
            Err(e) => return no(out, tag, &format!("[SERVERBUG] {e}")),
        };
        match uidlist::sync(&dir) {
            Ok(s) => {
                super::view::first_recent(&dir, &s);
                let uid = s.messages.iter().find(|m| m.entry.unique() == entry.unique()).map_or(0, |m| m.uid);
                if self.view.as_ref().is_some_and(|v| v.name == name) {
                    self.refresh(out, false);
                }
                ok(out, tag, &format!("[APPENDUID {} {uid}] APPEND completed", s.validity));
            }
            Err(e) => no(out, tag, &format!("[SERVERBUG] {e}")),
        }
    }

    /// The maildir letters for IMAP flags, new keywords given letters (and
    /// written to `dovecot-keywords` under the folder's lock).
    fn flags_of(&self, dir: &std::path::Path, flags: &[Flag]) -> Result<Flags, String> {
        let mut out = Flags::EMPTY;
        let mut kw = keywords::read(dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
        let mut added = false;
        for f in flags {
            match (letter(f), f) {
                (Some(l), _) => out = out.with(l),
                (None, Flag::Keyword(k)) => {
                    let had = kw.index(k).is_some();
                    let Some(i) = kw.index_or_add(k) else {
                        return Err("[LIMIT] no more keywords fit this folder".into());
                    };
                    added |= !had;
                    out = out.with_keyword(i).unwrap_or(out);
                }
                (None, _) => {}
            }
        }
        if added {
            let lock = Lock::take(dir).map_err(|e| format!("[INUSE] {e}"))?;
            // Another writer may have added names meanwhile: merge with theirs.
            let mut theirs = keywords::read(dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
            let mut merged = Flags::EMPTY;
            for f in flags {
                if let Some(l) = letter(f) {
                    merged = merged.with(l);
                } else if let Flag::Keyword(k) = f {
                    match theirs.index_or_add(k) {
                        Some(i) => merged = merged.with_keyword(i).unwrap_or(merged),
                        None => return Err("[LIMIT] no more keywords fit this folder".into()),
                    }
                }
            }
            keywords::write(dir, &lock, &theirs).map_err(|e| format!("[SERVERBUG] {e}"))?;
            drop(lock);
            out = merged;
        }
        Ok(out)
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

    fn expunge(&mut self, uids: Option<&SeqSet>, out: &mut Output, tell: bool) -> std::io::Result<()> {
        let Some(v) = self.view.as_mut() else { return Ok(()) };
        let chosen: Vec<usize> = match uids {
            Some(set) => v.select(set, true),
            None => (0..v.msgs.len()).collect(),
        };
        let mut touched = false;
        for i in chosen {
            let m = &v.msgs[i];
            if m.entry.flags.contains(names::Flag::Trashed) {
                folder::expunge(&v.dir, &m.entry)?;
                touched = true;
            }
        }
        if touched {
            for sub in ["cur", "new"] {
                std::fs::File::open(v.dir.join(sub))?.sync_all()?;
            }
        }
        v.touch();
        let mut sink = Output::default();
        let target = if tell { out } else { &mut sink };
        v.refresh(target, true).map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn search(&mut self, tag: &str, uid: bool, ret: Option<SearchReturn>, key: &SearchKey, out: &mut Output) {
        let Some(v) = self.view.as_ref() else { return };
        let mut found: Vec<u32> = Vec::new();
        for i in 0..v.msgs.len() {
            let mut c = Candidate::new(v, i);
            if matches(key, &mut c, v) {
                found.push(if uid { v.msgs[i].uid } else { i as u32 + 1 });
            }
        }
        match ret {
            None => {
                let list: Vec<String> = found.iter().map(u32::to_string).collect();
                out.line(&format!("* SEARCH{}{}", if list.is_empty() { "" } else { " " }, list.join(" ")));
            }
            Some(r) => {
                let mut line =
                    format!("* ESEARCH (TAG {}){}", string(tag.as_bytes()), if uid { " UID" } else { "" });
                if !found.is_empty() {
                    if r.min {
                        line.push_str(&format!(" MIN {}", found[0]));
                    }
                    if r.max {
                        line.push_str(&format!(" MAX {}", found[found.len() - 1]));
                    }
                    if r.all {
                        line.push_str(&format!(" ALL {}", ranges(&found)));
                    }
                }
                if r.count {
                    line.push_str(&format!(" COUNT {}", found.len()));
                }
                out.line(&line);
            }
        }
        ok(out, tag, "SEARCH completed");
    }

    /// The FETCH answers; false when the response reached
    /// [`MAX_RESPONSE`] before every message was told.
    fn fetch(&mut self, uid: bool, set: &SeqSet, items: &[FetchItem], out: &mut Output) -> bool {
        let Some(v) = self.view.as_mut() else { return true };

        let chosen = v.select(set, uid);
        let sets_seen =
            !v.read_only && items.iter().any(|i| matches!(i, FetchItem::Body { peek: false, .. }));
        let mut lock = None;
        for i in chosen {
            // A file renamed by another session since the view was read is
            // found again by its unique part.
            let here = v.dir.join(v.msgs[i].entry.sub_dir()).join(&v.msgs[i].entry.name);
            if !here.exists() {
                if let Ok(Some(e)) = folder::find(&v.dir, v.msgs[i].entry.unique()) {
                    v.msgs[i].entry = e;
                }
            }
            if sets_seen && !v.msgs[i].entry.flags.contains(names::Flag::Seen) {
                if lock.is_none() {
                    lock = Lock::take(&v.dir).ok();
                }
                let m = &v.msgs[i];
                let mut r = folder::set_flags(&v.dir, &m.entry, m.entry.flags.with(names::Flag::Seen));
                if matches!(r, Err(folder::ChangeError::Gone)) {
                    if let Ok(Some(e)) = folder::find(&v.dir, m.entry.unique()) {
                        r = folder::set_flags(&v.dir, &e, e.flags.with(names::Flag::Seen));
                    }
                }
                if let Ok(e) = r {
                    v.msgs[i].entry = e;
                    let _ = std::fs::File::open(v.dir.join("cur")).and_then(|d| d.sync_all());
                }
            }
            let m = &v.msgs[i];
            let path = v.dir.join(m.entry.sub_dir()).join(&m.entry.name);
            let mut shape: Option<message::Shape> = None;
            let mut mime: Option<Option<mime::Part>> = None;
            let shape_of = |shape: &mut Option<message::Shape>| -> Option<message::Shape> {
                if shape.is_none() {
                    *shape = message::shape(&path).ok();
                }
                shape.clone()
            };
            out.text(&format!("* {} FETCH (", i + 1));
            let mut first = true;
            let mut sep = |out: &mut Output| {
                if !first {
                    out.text(" ");
                }
                first = false;
            };
            let mut flags_said = false;
            for item in items {
                match item {
                    FetchItem::Uid => {
                        sep(out);
                        out.text(&format!("UID {}", m.uid));
                    }
                    FetchItem::Flags => {
                        sep(out);
                        flags_said = true;
                        out.text(&format!("FLAGS {}", flag_list(m.entry.flags, &v.keywords, m.recent)));
                    }
                    FetchItem::InternalDate => {
                        sep(out);
                        out.text(&format!("INTERNALDATE {}", internal_date(m.entry.arrived)));
                    }
                    FetchItem::Size => {
                        let size = message::size_in_name(&m.entry.name)
                            .or_else(|| shape_of(&mut shape).map(|s| s.sent))
                            .unwrap_or(m.entry.size);
                        sep(out);
                        out.text(&format!("RFC822.SIZE {size}"));
                    }
                    FetchItem::Body { section, partial, legacy, .. } => {
                        let name = match legacy {
                            Some(l) => (*l).to_string(),
                            None => section_name(section, *partial),
                        };
                        sep(out);
                        let found = if section.part.is_empty() {
                            shape_of(&mut shape).map(|s| whole_section(&path, &section.text, &s))
                        } else {
                            mime_of(&mut mime, &path)
                                .and_then(|root| part_section(root, &section.part, &section.text))
                        };
                        let Some((start, len, memory)) = found else {
                            out.text(&format!("{name} NIL"));
                            continue;
                        };
                        // What is made in memory counts against the response's
                        // limit; past it, NIL (and the command ends NO below).
                        if memory.as_ref().is_some_and(|m| out.held() + m.len() > MAX_RESPONSE) {
                            out.text(&format!("{name} NIL"));
                            continue;
                        }
                        let total = memory.as_ref().map_or(len, |m| m.len() as u64);
                        let (skip, take) = match partial {
                            Some((o, n)) => ((*o).min(total), (*n).min(total.saturating_sub(*o))),
                            None => (0, total),
                        };
                        out.text(&format!("{name} {{{take}}}\r\n"));
                        match memory {
                            Some(bytes) => out.bytes(&bytes[skip as usize..(skip + take) as usize]),
                            None => out.file(Piece::File { path: path.clone(), skip, len: take, start }),
                        }
                    }
                    FetchItem::Envelope => {
                        sep(out);
                        let h = message::header(&path).unwrap_or_default();
                        if out.held() + h.len() > MAX_RESPONSE {
                            out.text("ENVELOPE NIL");
                            continue;
                        }
                        out.text(&format!("ENVELOPE {}", structure::envelope(&h)));
                    }
                    FetchItem::Structure { extended } => {
                        let Some(root) = mime_of(&mut mime, &path) else { continue };
                        sep(out);
                        let word = if *extended { "BODYSTRUCTURE" } else { "BODY" };
                        if out.held() > MAX_RESPONSE {
                            out.text(&format!("{word} NIL"));
                            continue;
                        }
                        out.text(&format!("{word} {}", structure::structure(root, *extended)));
                    }
                    // Refused before any message was read: see `not_offered`.
                    FetchItem::BinarySize(_) | FetchItem::ModSeq => {}
                }
            }
            if sets_seen && !flags_said {
                sep(out);
                out.text(&format!("FLAGS {}", flag_list(m.entry.flags, &v.keywords, m.recent)));
            }
            out.line(")");
            if out.held() > MAX_RESPONSE {
                return false;
            }
        }
        true
    }

    fn store(
        &mut self,
        uid: bool,
        set: &SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: &[Flag],
        out: &mut Output,
    ) -> Result<(), String> {
        let Some(dir) = self.view.as_ref().map(|v| v.dir.clone()) else { return Ok(()) };
        let letters = self.flags_of(&dir, flags)?;
        let Some(v) = self.view.as_mut() else { return Ok(()) };
        let known = keywords::read(&v.dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
        v.keywords_now(known, out);
        let chosen = v.select(set, uid);
        let mut changed = false;
        // Renames happen under the folder's lock, as Dovecot makes them: a
        // sync reading the directories meanwhile would miss a file being
        // renamed and give it a new UID, and two writers would lose each
        // other's flags.
        let _lock = Lock::take(&v.dir).map_err(|e| format!("[INUSE] {e}"))?;
        for i in chosen {
            // Another session or program may have renamed the file since we
            // looked: then its flags are read again and the change made on
            // them, so neither change is lost.
            for _ in 0..5 {
                let m = &v.msgs[i];
                let now = m.entry.flags;
                let want = match mode {
                    StoreMode::Replace => {
                        // Letters we do not show (P, unknown ones) stay.
                        let kept = now.letters().filter(|c| c.is_ascii_uppercase() && !"DFRST".contains(*c));
                        kept.fold(letters, |f, c| f.with_letter(c).unwrap_or(f))
                    }
                    StoreMode::Add => letters.letters().fold(now, |f, c| f.with_letter(c).unwrap_or(f)),
                    StoreMode::Remove => letters.letters().fold(now, |f, c| f.without_letter(c)),
                };
                if want == now {
                    break;
                }
                match folder::set_flags(&v.dir, &m.entry, want) {
                    Ok(e) => {
                        v.msgs[i].entry = e;
                        changed = true;
                        break;
                    }
                    Err(folder::ChangeError::Gone) => match folder::find(&v.dir, m.entry.unique()) {
                        Ok(Some(e)) => v.msgs[i].entry = e,
                        Ok(None) => break,
                        Err(e) => return Err(format!("[SERVERBUG] {e}")),
                    },
                    Err(folder::ChangeError::Io(e)) => return Err(format!("[SERVERBUG] {e}")),
                }
            }
            if !silent {
                let m = &v.msgs[i];
                let uid_part = if uid { format!("UID {} ", m.uid) } else { String::new() };
                out.line(&format!(
                    "* {} FETCH ({uid_part}FLAGS {})",
                    i + 1,
                    flag_list(m.entry.flags, &v.keywords, m.recent)
                ));
            }
        }
        if changed {
            for sub in ["cur", "new"] {
                std::fs::File::open(v.dir.join(sub))
                    .and_then(|d| d.sync_all())
                    .map_err(|e| format!("[SERVERBUG] {e}"))?;
            }
        }
        Ok(())
    }

    fn copy(
        &mut self,
        uid: bool,
        remove: bool,
        set: &SeqSet,
        raw: &[u8],
        out: &mut Output,
    ) -> Result<String, String> {
        let (_, target) = self.folder_dir(raw).map_err(|e| format!("[CANNOT] {e}"))?;
        if !target.join("cur").is_dir() {
            return Err("[TRYCREATE] no such folder".into());
        }
        let hostname = self.settings.config.hostname.clone();
        let Some(v) = self.view.as_mut() else { return Ok(String::new()) };
        let chosen = v.select(set, uid);
        if chosen.is_empty() {
            return Ok(String::new());
        }
        let same = target == v.dir;
        let mut made: Vec<(u32, Entry)> = Vec::new();
        for i in chosen {
            let m = &v.msgs[i];
            let act = |e: &Entry| {
                if remove && !same {
                    write::move_to(&v.dir, e, &target, &hostname)
                } else {
                    write::copy(&v.dir, e, &target, e.flags, &hostname)
                }
            };
            let mut result = act(&m.entry);
            // Renamed meanwhile by a flag change elsewhere: found again.
            if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
                if let Ok(Some(e)) = folder::find(&v.dir, m.entry.unique()) {
                    result = act(&e);
                }
            }
            match result {
                Ok(e) => made.push((m.uid, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("[SERVERBUG] {e}")),
            }
        }
        let synced = uidlist::sync(&target).map_err(|e| format!("[SERVERBUG] {e}"))?;
        super::view::first_recent(&target, &synced);
        let mut from = Vec::new();
        let mut to = Vec::new();
        for (u, e) in &made {
            if let Some(m) = synced.messages.iter().find(|m| m.entry.unique() == e.unique()) {
                from.push(*u);
                to.push(m.uid);
            }
        }
        // None copied (all gone meanwhile): no COPYUID, whose sets may not be empty.
        let code = if from.is_empty() {
            String::new()
        } else {
            format!("[COPYUID {} {} {}] ", synced.validity, ranges_in_order(&from), ranges_in_order(&to))
        };
        if remove {
            if same {
                // A move within one folder: the copies are there, the
                // originals go.
                let Some(v) = self.view.as_mut() else { return Ok(code) };
                for (u, _) in &made {
                    if let Some(m) = v.msgs.iter().find(|m| m.uid == *u) {
                        folder::expunge(&v.dir, &m.entry).map_err(|e| format!("[SERVERBUG] {e}"))?;
                    }
                }
            }
            out.line(&format!("* OK {code}moved"));
            if let Some(v) = self.view.as_mut() {
                v.touch();
            }
            self.refresh(out, true);
            return Ok(String::new());
        }
        Ok(code)
    }
}

/// The message's MIME structure, read once per message and FETCH.
fn mime_of<'a>(cache: &'a mut Option<Option<mime::Part>>, path: &std::path::Path) -> Option<&'a mime::Part> {
    cache.get_or_insert_with(|| mime::parse(path).ok()).as_ref()
}

/// A section of the whole message: where it starts in the file and its
/// size as sent, or its bytes when they are made here.
type Found = (u64, u64, Option<Vec<u8>>);

fn whole_section(path: &std::path::Path, text: &SectionText, s: &message::Shape) -> Found {
    match text {
        SectionText::Whole => (0, s.sent, None),
        SectionText::Header => (0, s.header_sent, None),
        SectionText::Text | SectionText::Mime => (s.header_raw, s.sent - s.header_sent, None),
        SectionText::Fields { not, names } => {
            let h = message::header(path).unwrap_or_default();
            (0, 0, Some(message::select_fields(&h, names, *not)))
        }
    }
}

/// A section below the root: a part's body or MIME header, or the header
/// and text of the message a message/rfc822 part holds.
fn part_section(root: &mime::Part, numbers: &[u32], text: &SectionText) -> Option<Found> {
    let p = structure::find(root, numbers)?;
    let range = |a: mime::Mark, b: mime::Mark| (a.pos, b.sent.saturating_sub(a.sent), None);
    Some(match text {
        SectionText::Whole => range(p.body_start, p.body_end),
        SectionText::Mime => range(p.header_start, p.body_start),
        _ => match &p.message {
            Some(m) => {
                let (header, inner) = m.as_ref();
                match text {
                    SectionText::Header => range(inner.header_start, inner.body_start),
                    SectionText::Text => range(inner.body_start, inner.body_end),
                    SectionText::Fields { not, names } => {
                        (0, 0, Some(message::select_fields(header, names, *not)))
                    }
                    _ => (0, 0, Some(Vec::new())),
                }
            }
            None => (0, 0, Some(Vec::new())),
        },
    })
}

/// The name of a FETCH item this server does not answer yet.
fn not_offered(item: &FetchItem) -> Option<&'static str> {
    match item {
        FetchItem::BinarySize(_) => Some("BINARY.SIZE"),
        FetchItem::ModSeq => Some("MODSEQ"),
        FetchItem::Body { binary: true, .. } => Some("BINARY"),
        _ => None,
    }
}

/// A section's name in a FETCH answer.
fn section_name(s: &super::command::Section, partial: Option<(u64, u64)>) -> String {
    let mut n = String::from("BODY[");
    let parts: Vec<String> = s.part.iter().map(u32::to_string).collect();
    n.push_str(&parts.join("."));
    let text = match &s.text {
        SectionText::Whole => String::new(),
        SectionText::Header => "HEADER".into(),
        SectionText::Text => "TEXT".into(),
        SectionText::Mime => "MIME".into(),
        SectionText::Fields { not, names } => {
            let list: Vec<String> = names.iter().map(|x| string(x.as_bytes())).collect();
            format!("HEADER.FIELDS{} ({})", if *not { ".NOT" } else { "" }, list.join(" "))
        }
    };
    if !text.is_empty() && !s.part.is_empty() {
        n.push('.');
    }
    n.push_str(&text);
    n.push(']');
    if let Some((o, _)) = partial {
        n.push_str(&format!("<{o}>"));
    }
    n
}

/// Ascending numbers as a sequence set: `1:3,7`.
fn ranges(sorted: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}:{end}") });
        i += 1;
    }
    out.join(",")
}

/// Numbers in the order given, as COPYUID pairs them.
fn ranges_in_order(list: &[u32]) -> String {
    list.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The longest LIST pattern matched; longer ones match nothing (no folder
/// name is that long, and the match costs its length times the name's).
const MAX_PATTERN: usize = 1024;

/// Whether an IMAP pattern matches `name`: `*` anything, `%` anything but
/// the delimiter; `INBOX` without regard to case. A table walk, linear in
/// the pattern times the name, whatever the wildcards.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let mut p: Vec<char> = pattern.chars().collect();
    if p.len() > MAX_PATTERN {
        return false;
    }
    if name == "INBOX" && p.len() >= 5 && p[..5].iter().collect::<String>().eq_ignore_ascii_case("INBOX") {
        for c in &mut p[..5] {
            *c = c.to_ascii_uppercase();
        }
    }
    let n: Vec<char> = name.chars().collect();
    // row[j]: the pattern so far matches the first j characters of the name.
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &c in &p {
        let mut next = vec![false; n.len() + 1];
        for j in 0..=n.len() {
            next[j] = match c {
                '*' => row[j] || (j > 0 && next[j - 1]),
                '%' => row[j] || (j > 0 && next[j - 1] && n[j - 1] != '/'),
                _ => j > 0 && row[j - 1] && n[j - 1] == c,
            };
        }
        row = next;
    }
    row[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_list_says() {
        assert!(wildcard("*", "a/b"));
        assert!(wildcard("%", "a"));
        assert!(!wildcard("%", "a/b"));
        assert!(wildcard("a/%", "a/b"));
        assert!(wildcard("inbox", "INBOX"));
        assert!(!wildcard("a", "ab"));
        assert!(wildcard("S*t", "Sent"));
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
    }
}
