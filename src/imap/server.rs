//! IMAP's driver: moves bytes between a client connection (`net`) and the
//! IMAP session, with the framing deciding what the bytes are. It streams
//! APPEND's message into a spool file and message files out to the client
//! in pieces, runs the session's file work off the async threads, the
//! password checks through the login service SMTP uses, and IDLE. Owns no
//! policy: what to answer is the session's.

use std::fs::File;
use std::io::{self, Read as _, Seek as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_net::{TcpListener, TcpStream};
use smol::Executor;
use smol::future::FutureExt as _;
use smol::io::AsyncWriteExt as _;

use super::command;
use super::framing::{Assembler, Line, Step, next_line};
use super::response::{Output, Piece};
use super::session::{Action, Checked, Session};
use crate::login::Outcome;
use crate::mailbox::write::Spool;
use crate::net::admit::Refused;
use crate::net::link::{self, Link};
use crate::net::listen;
use crate::server::Server;
use crate::stream::{Stream, timeout};

/// How long a client may stay silent before it logs in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a logged-in client may stay silent (RFC 9051's autologout is
/// at least 30 minutes; IDLE clients renew every 29).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often an IDLE session looks for changes.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How much is read from the socket at once.
const READ: usize = 16 * 1024;
/// How much of a message file is sent at once.
const FILE_PIECE: usize = 64 * 1024;

/// Binds the IMAP listeners of the config: plaintext ones (`false`) and
/// implicit-TLS ones (`true`).
///
/// # Errors
/// When an address cannot be bound.
pub fn bind(server: &Server) -> io::Result<Vec<(TcpListener, bool)>> {
    let settings = server.settings();
    let listen = &settings.config.listen;
    let mut out = Vec::new();
    for (addr, tls) in listen.imap.iter().map(|a| (a, false)).chain(listen.imaps.iter().map(|a| (a, true))) {
        let name = if tls { "imaps" } else { "imap" };
        let l = listen::open(*addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} ({name}): {e}")))?;
        log::info!("listening on {} ({name})", l.local_addr()?);
        out.push((l, tls));
    }
    Ok(out)
}

/// Accepts connections on `listener` until the stop, one task each.
pub async fn serve(server: Arc<Server>, ex: Arc<Executor<'static>>, listener: TcpListener, tls: bool) {
    let each = Arc::clone(&server);
    listen::accept_loop(listener, server.stop(), |stream, peer| {
        listen::spawn_session(&ex, "IMAP", peer, connection(Arc::clone(&each), stream, peer, tls));
    })
    .await;
}

async fn connection(server: Arc<Server>, mut stream: TcpStream, peer: SocketAddr, implicit: bool) {
    let settings = server.settings();
    let limits = &settings.config.limits;
    let ip = peer.ip();
    let per_ip = if settings.accounts.is_trusted(ip) { usize::MAX } else { limits.max_connections_per_ip };
    let _slot = match server.imap_connections().admit(ip, limits.max_connections, per_ip) {
        Ok(slot) => slot,
        Err(refused) => {
            if !implicit {
                let why = match refused {
                    Refused::Total => "too many connections",
                    Refused::PerAddress => "too many connections from your address",
                };
                let line = format!("* BYE [UNAVAILABLE] {why}\r\n");
                let _ = stream.write_all(line.as_bytes()).or(timeout(Duration::from_secs(10))).await;
            }
            log::info!("refused IMAP connection from {ip}: too many connections");
            return;
        }
    };
    let name = if implicit { "imaps" } else { "imap" };
    let io = if implicit {
        match link::handshake(server.tls_config(), stream).await {
            Ok((io, _)) => io,
            Err(e) => {
                log::info!("TLS handshake with {peer} ({name}) failed: {e}");
                return;
            }
        }
    } else {
        Stream::Plain(stream)
    };
    let session = Session::new(Arc::clone(&settings), ip, implicit);
    let mut conn = Conn { link: Link::new(io), server: Arc::clone(&server), name };
    match conn.run(session).await {
        Ok(()) => log::debug!("IMAP connection from {peer} closed"),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            let _ = conn
                .link
                .io
                .write_all(b"* BYE autologout: idle too long\r\n")
                .or(timeout(Duration::from_secs(10)))
                .await;
            log::info!("IMAP connection from {peer} timed out");
        }
        Err(e) => log::debug!("IMAP connection from {peer} ended: {e}"),
    }
}

struct Conn {
    link: Link,
    server: Arc<Server>,
    name: &'static str,
}

impl Conn {
    /// Until when the client may stay silent: a client has LOGIN_TIMEOUT
    /// from its first byte to log in, however many commands it sends
    /// meanwhile; then IDLE_TIMEOUT after each command.
    fn deadline(session: &Session, login_by: Instant) -> Instant {
        if session.login().is_some() { Instant::now() + IDLE_TIMEOUT } else { login_by }
    }

    async fn run(&mut self, mut session: Session) -> io::Result<()> {
        let mut out = Output::default();
        session.greeting(&mut out);
        self.send(out).await?;
        let mut framing = Assembler::new(session.max_message());
        let mut spool: Option<Spool> = None;
        let mut spool_failed = false;
        let login_by = Instant::now() + LOGIN_TIMEOUT;
        let mut deadline = Conn::deadline(&session, login_by);
        loop {
            let (used, step) = framing.step(self.link.inbuf.unread());
            let step = match step {
                Step::Spool(bytes) => {
                    if let Some(s) = spool.as_mut() {
                        if s.write(bytes).is_err() {
                            spool_failed = true;
                        }
                    }
                    self.link.inbuf.consume(used);
                    continue;
                }
                Step::Command(parts) => Some(parts),
                Step::NeedMore => {
                    self.link.inbuf.consume(used);
                    if used > 0 {
                        continue;
                    }
                    self.link.flush(IDLE_TIMEOUT).await?;
                    if self.server.stopping() && framing.idle() {
                        let mut out = Output::default();
                        out.line("* BYE the server is shutting down");
                        return self.send(out).await;
                    }
                    let wait = deadline.saturating_duration_since(Instant::now());
                    let stop = if framing.idle() { Some(self.server.stop()) } else { None };
                    self.link.read_or_stop(wait, stop, READ).await?;
                    continue;
                }
                Step::Literal { sync, spooled, .. } => {
                    self.link.inbuf.consume(used);
                    if spooled {
                        spool = session.spool();
                        spool_failed = false;
                    }
                    if sync {
                        self.link.out.extend_from_slice(b"+ go ahead\r\n");
                        self.link.flush(IDLE_TIMEOUT).await?;
                    }
                    continue;
                }
                Step::Refused { tag, too_big, reason } => {
                    if let Some(s) = spool.take() {
                        s.discard();
                    }
                    let tag = tag.unwrap_or_else(|| "*".into());
                    let line = if too_big {
                        format!("{tag} NO [TOOBIG] {reason}\r\n")
                    } else {
                        format!("{tag} BAD {reason}\r\n")
                    };
                    self.link.out.extend_from_slice(line.as_bytes());
                    None
                }
                Step::Fail(why) => {
                    self.link.out.extend_from_slice(format!("* BAD {why}\r\n").as_bytes());
                    return self.link.flush(IDLE_TIMEOUT).await;
                }
            };
            self.link.inbuf.consume(used);
            deadline = Conn::deadline(&session, login_by);
            let Some(parts) = step else { continue };
            let parsed = command::parse(&parts);
            let mut taken = spool.take();
            if spool_failed {
                if let Some(s) = taken.take() {
                    s.discard();
                }
            }
            let (back, action, out) = smol::unblock(move || {
                let mut out = Output::default();
                let action = match parsed {
                    Ok(t) => session.handle(t, taken, &mut out),
                    Err(e) => {
                        if let Some(s) = taken {
                            s.discard();
                        }
                        session.parse_error(&e, &mut out);
                        Action::Next
                    }
                };
                (session, action, out)
            })
            .await;
            self.send(out).await?;
            let (back, go_on) = self.act(back, action, &mut framing).await?;
            session = back;
            if !go_on {
                return Ok(());
            }
            deadline = Conn::deadline(&session, login_by);
        }
    }

    /// Does what the session asked; false when the connection is to close.
    async fn act(
        &mut self,
        mut session: Session,
        mut action: Action,
        framing: &mut Assembler,
    ) -> io::Result<(Session, bool)> {
        loop {
            action = match action {
                Action::Next => return Ok((session, true)),
                Action::Close => {
                    self.link.flush(IDLE_TIMEOUT).await?;
                    return Ok((session, false));
                }
                Action::StartTls => {
                    self.link.flush(IDLE_TIMEOUT).await?;
                    // What was pipelined after STARTTLS is dropped (see
                    // `Link::start_tls`), and so is any half-read command.
                    self.link.start_tls(self.server.tls_config()).await?;
                    *framing = Assembler::new(session.max_message());
                    session.tls_started();
                    return Ok((session, true));
                }
                Action::Check { tag, user, password } => {
                    self.link.flush(IDLE_TIMEOUT).await?;
                    let settings = self.server.settings();
                    let outcome = self
                        .server
                        .logins()
                        .check(&settings.accounts, session.client_ip(), self.name, &user, password)
                        .await;
                    let checked = match outcome {
                        Outcome::Ok(who) => Checked::Ok(who),
                        Outcome::Wrong => Checked::Wrong,
                        Outcome::Busy | Outcome::AccountLocked => Checked::Later,
                        Outcome::Blocked => Checked::Blocked,
                    };
                    let (back, next, out) =
                        run_blocking(session, move |s, out| s.logged_in(&tag, checked, out)).await;
                    session = back;
                    self.send(out).await?;
                    next
                }
                Action::Continue { tag } => {
                    self.link.out.extend_from_slice(b"+ \r\n");
                    self.link.flush(IDLE_TIMEOUT).await?;
                    let line = self.read_line(LOGIN_TIMEOUT, crate::smtp::framing::MAX_AUTH_LINE).await?;
                    let mut out = Output::default();
                    let next = session.auth_response(&tag, &line, &mut out);
                    self.send(out).await?;
                    next
                }
                Action::Idle { tag } => {
                    self.link.out.extend_from_slice(b"+ idling\r\n");
                    self.link.flush(IDLE_TIMEOUT).await?;
                    let session = self.idle(session, &tag).await?;
                    return Ok((session, true));
                }
            };
        }
    }

    /// IDLE: changes told as they come, until DONE.
    async fn idle(&mut self, mut session: Session, tag: &str) -> io::Result<Session> {
        let until = Instant::now() + IDLE_TIMEOUT;
        loop {
            let line = next_line(self.link.inbuf.unread(), 64);
            if line == Line::TooLong {
                // Nothing but DONE belongs here; a client that sends more
                // is not heard further.
                let mut out = Output::default();
                out.line("* BAD expected DONE");
                self.send(out).await?;
                self.link.flush(IDLE_TIMEOUT).await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a long line in IDLE"));
            }
            if let Line::Complete { text, used } = line {
                let done = text.eq_ignore_ascii_case(b"DONE");
                self.link.inbuf.consume(used);
                let mut out = Output::default();
                if done {
                    let tag = tag.to_string();
                    let (back, (), o) = run_blocking(session, move |s, out| s.idle_done(&tag, out)).await;
                    session = back;
                    out = o;
                } else {
                    out.line(&format!("{tag} BAD expected DONE"));
                }
                self.send(out).await?;
                return Ok(session);
            }
            if Instant::now() >= until {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "IDLE too long"));
            }
            if self.server.stopping() {
                let mut out = Output::default();
                out.line("* BYE the server is shutting down");
                self.send(out).await?;
                return Err(io::Error::other("stopping"));
            }
            match self.link.read_more(IDLE_POLL, 64).await {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
            }
            let (back, (), out) = run_blocking(session, |s, out| s.poll(out)).await;
            session = back;
            self.send(out).await?;
            self.link.flush(IDLE_TIMEOUT).await?;
        }
    }

    async fn read_line(&mut self, limit: Duration, max: usize) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + limit;
        loop {
            match next_line(self.link.inbuf.unread(), max) {
                Line::Complete { text, used } => {
                    let line = text.to_vec();
                    self.link.inbuf.consume(used);
                    return Ok(line);
                }
                Line::TooLong => return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long")),
                Line::Partial => {
                    self.link.read_more(deadline.saturating_duration_since(Instant::now()), 1024).await?
                }
            }
        }
    }

    /// Sends an output, message files read piece by piece.
    async fn send(&mut self, out: Output) -> io::Result<()> {
        for piece in out.pieces {
            match piece {
                Piece::Bytes(b) => {
                    self.link.out.extend_from_slice(&b);
                    if self.link.out.len() >= FILE_PIECE {
                        self.link.flush(IDLE_TIMEOUT).await?;
                    }
                }
                Piece::File { path, skip, len, start } => {
                    let mut reader = smol::unblock(move || CrlfReader::open(&path, start, skip, len)).await?;
                    loop {
                        let (back, chunk) = smol::unblock(move || {
                            let c = reader.next_piece();
                            (reader, c)
                        })
                        .await;
                        reader = back;
                        let chunk = chunk?;
                        if chunk.is_empty() {
                            break;
                        }
                        self.link.out.extend_from_slice(&chunk);
                        self.link.flush(IDLE_TIMEOUT).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `f` on the session off the async threads.
async fn run_blocking<T: Send + 'static>(
    mut session: Session,
    f: impl FnOnce(&mut Session, &mut Output) -> T + Send + 'static,
) -> (Session, T, Output) {
    smol::unblock(move || {
        let mut out = Output::default();
        let t = f(&mut session, &mut out);
        (session, t, out)
    })
    .await
}

/// A message file read as IMAP sends it: every bare LF as CRLF, from the
/// `skip`th byte of that form, `len` bytes.
struct CrlfReader {
    /// `None` when the message is gone: spaces are sent.
    file: Option<File>,
    skip: u64,
    left: u64,
    prev_cr: bool,
    /// A CRLF's LF held back when a piece ended between the two.
    pending_lf: bool,
    /// The file is at its end but the length said more: the rest is
    /// padding, so the literal's count stays true.
    ended: bool,
}

impl CrlfReader {
    /// Opens the message at `path`; one renamed meanwhile (a flag change in
    /// another session) is found again by its unique part. Its literal's
    /// count was sent already, so a message gone since is sent as spaces
    /// rather than end the connection out of step.
    fn open(path: &std::path::Path, start: u64, skip: u64, len: u64) -> io::Result<CrlfReader> {
        let file = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let unique = crate::mailbox::names::split_info(name).0;
                let folder = path.parent().and_then(std::path::Path::parent);
                let found = folder.and_then(|f| {
                    crate::mailbox::folder::find(f, unique)
                        .ok()
                        .flatten()
                        .map(|e| f.join(e.sub_dir()).join(e.name))
                });
                match found {
                    Some(p) => Some(File::open(p)?),
                    None => None,
                }
            }
            Err(e) => return Err(e),
        };
        let mut file = file;
        if let Some(f) = file.as_mut() {
            f.seek(io::SeekFrom::Start(start))?;
        }
        let ended = file.is_none();
        Ok(CrlfReader { file, skip, left: len, prev_cr: false, pending_lf: false, ended })
    }

    /// The next piece; empty at the end.
    fn next_piece(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(FILE_PIECE + FILE_PIECE / 8);
        let mut buf = vec![0u8; FILE_PIECE];
        while self.left > 0 && out.len() < FILE_PIECE {
            if self.pending_lf {
                self.pending_lf = false;
                self.emit(b'\n', &mut out);
                continue;
            }
            let n = match (&mut self.file, self.ended) {
                (Some(f), false) => f.read(&mut buf)?,
                _ => 0,
            };
            if n == 0 {
                // The file shrank under us (it never should: contents are
                // never changed). Pad with spaces so the count holds.
                self.ended = true;
                self.emit(b' ', &mut out);
                continue;
            }
            for &b in &buf[..n] {
                if self.left == 0 {
                    break;
                }
                if b == b'\n' && !self.prev_cr {
                    self.emit(b'\r', &mut out);
                    if self.left == 0 {
                        break;
                    }
                }
                self.emit(b, &mut out);
                self.prev_cr = b == b'\r';
            }
        }
        Ok(out)
    }

    fn emit(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.skip > 0 {
            self.skip -= 1;
        } else if self.left > 0 {
            out.push(b);
            self.left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &[u8], start: u64, skip: u64, len: u64) -> Vec<u8> {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(&p, text).unwrap();
        let mut r = CrlfReader::open(&p, start, skip, len).unwrap();
        let mut all = Vec::new();
        loop {
            let c = r.next_piece().unwrap();
            if c.is_empty() {
                return all;
            }
            all.extend_from_slice(&c);
        }
    }

    #[test]
    fn files_are_sent_with_crlf_from_any_offset() {
        assert_eq!(read_all(b"a\nb\r\nc\n", 0, 0, 9), b"a\r\nb\r\nc\r\n");
        assert_eq!(read_all(b"a\nb\r\nc\n", 0, 2, 4), b"\nb\r\n");
        assert_eq!(read_all(b"a\nb\r\nc\n", 2, 0, 6), b"b\r\nc\r\n");
        // A count past the file's end is padded, never short.
        assert_eq!(read_all(b"ab", 0, 0, 4), b"ab  ");
        let big: Vec<u8> = (0..200_000).map(|i| if i % 50 == 49 { b'\n' } else { b'x' }).collect();
        let sent = read_all(&big, 0, 0, 204_000);
        assert_eq!(sent.len(), 204_000);
        assert_eq!(sent.windows(2).filter(|w| w == b"\r\n").count(), 4000);
    }
}
