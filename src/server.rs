//! Listeners and connection tasks: reads bytes from clients, feeds them to the
//! pure `smtp` session, writes its replies, runs TLS handshakes and password
//! checks, enforces timeouts and connection caps, and hands finished messages
//! to the queue. Owns no policy of its own.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_net::{TcpListener, TcpStream};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use rustls::ServerConfig;
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::{Executor, Timer};

use crate::Settings;
use crate::login::{Logins, Outcome, client_key};
use crate::logtext::{quoted, word};
use crate::message::{HeaderScan, Trace, received, rfc5322_date};
use crate::queue::store::{Message, QueueId, Recipient, Status, StoreError, Write, unix_now};
use crate::queue::{Queue, SharedSettings};
use crate::smtp::data::DataDecoder;
use crate::smtp::reply::{self, Reply};
use crate::smtp::session::{Action, Port, Session};
use crate::stream::{Stream, timeout};
use crate::tls::TlsInfo;

/// The longest command line, CRLF included (RFC 5321 4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;

/// Message bytes are stored in pieces of this size as they arrive, so a large
/// message never sits in memory whole.
const CHUNK: usize = 128 * 1024;

/// How much is read from a socket at once during DATA.
const READ_SIZE: usize = 16 * 1024;

/// How much is read at once while waiting for commands: an idle connection
/// holds little more than this.
const COMMAND_READ: usize = 1024;

/// A message that already passed this many servers is in a loop (RFC 5321
/// 6.3); with ours it would have more than 50 Received headers.
const MAX_RECEIVED: usize = 50;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest line on a submission port inside TLS, where AUTH may carry a
/// long response (RFC 4954 4: 12288 octets).
const MAX_AUTH_LINE: usize = 12288;

/// The connection, before or after TLS.
type Io = Stream<TlsStream<TcpStream>>;

/// Counts open connections, overall and per client address (an IPv6 client
/// per /64, which one host usually holds whole).
#[derive(Debug, Default)]
struct Connections {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases a connection's place when the connection ends.
struct Slot {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.total.fetch_sub(1, Ordering::SeqCst);
        // A panicking connection task must not leave its place taken for good.
        let mut map = self.conns.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    /// Takes a place for a client, or says which limit is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize, max_per_ip: usize) -> Result<Slot, fn(&str) -> Reply> {
        let mut map = self.per_ip.lock().map_err(|_| reply::too_many_connections as fn(&str) -> Reply)?;
        if self.total.load(Ordering::SeqCst) >= max {
            return Err(reply::too_many_connections);
        }
        let ip = client_key(ip);
        let n = map.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(reply::too_many_from_ip);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(Slot { conns: Arc::clone(self), ip })
    }
}

/// The running server's shared parts.
pub struct Server {
    settings: SharedSettings,
    queue: Arc<Queue>,
    /// Dropped to tell every listener and session that the server stops.
    stop_tx: Mutex<Option<smol::channel::Sender<()>>>,
    stop_rx: smol::channel::Receiver<()>,
    conns: Arc<Connections>,
    tls: RwLock<Arc<ServerConfig>>,
    logins: Logins,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("queue", &self.queue).finish()
    }
}

impl Server {
    /// A server over an open queue with a TLS config.
    pub fn new(settings: SharedSettings, queue: Arc<Queue>, tls: Arc<ServerConfig>) -> Arc<Server> {
        let (stop_tx, stop_rx) = smol::channel::bounded(1);
        Arc::new(Server {
            settings,
            queue,
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            conns: Arc::default(),
            tls: RwLock::new(tls),
            logins: Logins::new(),
        })
    }

    /// Stops accepting connections; sessions end after their current
    /// transaction with `421`.
    pub fn shutdown(&self) {
        self.stop_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// True once [`Server::shutdown`] was called.
    pub fn stopping(&self) -> bool {
        self.stop_rx.is_closed()
    }

    /// Resolves when the server is told to stop.
    async fn stopped(&self) {
        let _ = self.stop_rx.recv().await;
    }

    /// How many client connections are open.
    pub fn open_connections(&self) -> usize {
        self.conns.total.load(Ordering::SeqCst)
    }

    /// Uses `tls` for handshakes from now on; connections already open keep theirs.
    pub fn set_tls(&self, tls: Arc<ServerConfig>) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.tls.read().unwrap_or_else(|p| p.into_inner())))
    }

    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Binds every listener in the config and logs each address it bound.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn bind(&self) -> io::Result<Vec<(TcpListener, Port)>> {
        let settings = self.settings();
        let listen = &settings.config.listen;
        let mut out = Vec::new();
        let all = listen.mx.iter().map(|a| (a, Port::Mx)).chain(
            listen
                .submission
                .iter()
                .map(|a| (a, Port::Submission))
                .chain(listen.submissions.iter().map(|a| (a, Port::Submissions))),
        );
        for (addr, port) in all {
            let l = open_listener(*addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {addr} ({}): {e}", port.name()))
            })?;
            log::info!("listening on {} ({})", l.local_addr()?, port.name());
            out.push((l, port));
        }
        Ok(out)
    }

    /// Accepts connections on `listener` forever, one task each.
    pub async fn serve(self: Arc<Self>, ex: Arc<Executor<'static>>, listener: TcpListener, port: Port) {
        loop {
            let accepted = listener.accept().or(async {
                self.stopped().await;
                Err(io::Error::other("stopping"))
            });
            let accepted = accepted.await;
            if self.stopping() {
                return;
            }
            let (stream, peer) = match accepted {
                Ok(c) => {
                    // Replies are written whole; do not hold one back waiting
                    // for the client's ACK of the previous.
                    let _ = c.0.set_nodelay(true);
                    c
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    log::warn!("accept failed: {e}");
                    Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let server = Arc::clone(&self);
            ex.spawn(async move { server.connection(stream, peer, port).await }).detach();
        }
    }

    async fn connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, port: Port) {
        let settings = self.settings();
        let limits = &settings.config.limits;
        let ip = peer.ip();
        // As Postfix exempts $mynetworks from its per-client limits: the LAN's
        // own machines (a busy relay, a batch of cron mail) share one address.
        let per_ip =
            if settings.accounts.is_trusted(ip) { usize::MAX } else { limits.max_connections_per_ip };
        let _slot = match self.conns.admit(ip, limits.max_connections, per_ip) {
            Ok(slot) => slot,
            Err(refusal) => {
                if port != Port::Submissions {
                    let mut out = Vec::new();
                    refusal(&settings.config.hostname).write_to(&mut out);
                    let _ = stream.write_all(&out).or(timeout(Duration::from_secs(10))).await;
                }
                log::info!("refused connection from {ip}: too many connections");
                return;
            }
        };
        log::debug!("connection from {peer} ({})", port.name());
        let (io, tls) = if port == Port::Submissions {
            match self.acceptor().accept(stream).or(timeout(HANDSHAKE_TIMEOUT)).await {
                Ok(s) => {
                    let info = TlsInfo::of(s.get_ref().1);
                    (Stream::Tls(Box::new(s)), Some(info))
                }
                Err(e) => {
                    log::info!("TLS handshake with {peer} ({}) failed: {e}", port.name());
                    return;
                }
            }
        } else {
            (Stream::Plain(stream), None)
        };
        let mut conn = Conn {
            io,
            inbuf: InBuf::default(),
            out: Vec::new(),
            command_timeout: limits.command_timeout,
            data_timeout: limits.data_timeout,
        };
        let session = Session::new(Arc::clone(&settings), ip, port, true, tls);
        match conn.run(session, &settings, &self).await {
            Ok(()) => log::debug!("connection from {peer} closed"),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let mut out = Vec::new();
                reply::timeout(&settings.config.hostname).write_to(&mut out);
                let _ = conn.io.write_all(&out).or(timeout(Duration::from_secs(10))).await;
                log::info!("connection from {peer} timed out");
            }
            Err(e) => log::debug!("connection from {peer} ended: {e}"),
        }
    }

    /// Checks credentials for `session`'s client with the login service.
    async fn authenticate(&self, session: &Session, login: &str, password: String) -> Outcome {
        let settings = self.settings();
        self.logins
            .check(&settings.accounts, session.client_ip(), session.port().name(), login, password)
            .await
    }
}

/// Opens a listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:25` and
/// `[::]:25` can both be listed; the backlog is long enough that a burst of
/// clients is queued by the kernel rather than dropped.
fn open_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if addr.is_ipv6() { AddressFamily::INET6 } else { AddressFamily::INET };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, rustix::net::SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if addr.is_ipv6() {
        sockopt::set_ipv6_v6only(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 1024)?;
    TcpListener::try_from(std::net::TcpListener::from(fd))
}

/// Bytes read from the client and not yet used.
#[derive(Default)]
struct InBuf {
    data: Vec<u8>,
    pos: usize,
}

impl InBuf {
    fn unread(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        }
    }
}

/// What the next command line looks like.
enum Line {
    /// A complete line (without CRLF) of `len` bytes, `used` with its ending.
    Complete { len: usize, used: usize },
    /// A line over the limit; `used` bytes to drop, and whether its end is
    /// among them.
    TooLong { used: usize, ended: bool },
    /// Not complete yet.
    Partial,
}

struct Conn {
    io: Io,
    inbuf: InBuf,
    out: Vec<u8>,
    command_timeout: Duration,
    data_timeout: Duration,
}

impl Conn {
    async fn read_more(&mut self, limit: Duration, size: usize) -> io::Result<()> {
        self.read_or_stop(limit, None, size).await.map(|_| ())
    }

    /// Reads more bytes from the client; with `stop`, gives up early (and
    /// returns true) when the server is told to stop. Never leaves the input
    /// buffer half-changed, whichever comes first.
    async fn read_or_stop(
        &mut self,
        limit: Duration,
        stop: Option<&Server>,
        size: usize,
    ) -> io::Result<bool> {
        if self.inbuf.pos > 0 {
            self.inbuf.data.drain(..self.inbuf.pos);
            self.inbuf.pos = 0;
        }
        let start = self.inbuf.data.len();
        self.inbuf.data.resize(start + size, 0);
        let read = async { Some(self.io.read(&mut self.inbuf.data[start..]).or(timeout(limit)).await) };
        let stopped = async {
            match stop {
                Some(server) => server.stopped().await,
                None => smol::future::pending::<()>().await,
            }
            None
        };
        let n = read.or(stopped).await;
        let got = match &n {
            Some(Ok(n)) => *n,
            _ => 0,
        };
        self.inbuf.data.truncate(start + got);
        match n {
            None => Ok(true),
            Some(Ok(0)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client closed the connection")),
            Some(Ok(_)) => Ok(false),
            Some(Err(e)) => Err(e),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let limit = self.command_timeout;
            self.io.write_all(&self.out).or(timeout(limit)).await?;
            self.io.flush().or(timeout(limit)).await?;
            self.out.clear();
        }
        Ok(())
    }

    fn next_line(&self, max: usize) -> Line {
        let buf = self.inbuf.unread();
        match buf.iter().position(|&b| b == b'\n') {
            Some(lf) if lf < max => {
                let len = if lf > 0 && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
                Line::Complete { len, used: lf + 1 }
            }
            Some(lf) => Line::TooLong { used: lf + 1, ended: true },
            None if buf.len() >= max => Line::TooLong { used: buf.len(), ended: false },
            None => Line::Partial,
        }
    }

    /// The session loop: commands until QUIT, an error, or the client leaves.
    async fn run(&mut self, mut session: Session, settings: &Settings, server: &Server) -> io::Result<()> {
        let queue: &Queue = &server.queue;
        session.greeting().write_to(&mut self.out);
        self.flush().await?;
        let mut discarding = false;
        // Each command line must be complete within the timeout, however
        // slowly its bytes trickle in.
        let mut deadline = Instant::now() + self.command_timeout;
        loop {
            let max = if session.port().is_submission() && session.tls().is_some() {
                MAX_AUTH_LINE
            } else {
                MAX_COMMAND_LINE
            };
            let action = match self.next_line(max) {
                Line::Partial => {
                    // Pipelined replies go out when no further command is waiting.
                    self.flush().await?;
                    if server.stopping() && !session.in_transaction() {
                        return self.close_for_shutdown(settings).await;
                    }
                    let wait = deadline.saturating_duration_since(Instant::now());
                    // In a transaction after the stop, the client may finish it.
                    let stop = if server.stopping() { None } else { Some(server) };
                    self.read_or_stop(wait, stop, COMMAND_READ).await?;
                    continue;
                }
                Line::TooLong { used, ended: false } => {
                    self.inbuf.consume(used);
                    discarding = true;
                    self.flush().await?;
                    self.read_more(deadline.saturating_duration_since(Instant::now()), COMMAND_READ).await?;
                    continue;
                }
                Line::TooLong { used, ended: true } | Line::Complete { used, .. } if discarding => {
                    self.inbuf.consume(used);
                    discarding = false;
                    session.line_too_long()
                }
                Line::TooLong { used, ended: true } => {
                    self.inbuf.consume(used);
                    session.line_too_long()
                }
                Line::Complete { len, used } => {
                    let action = session.command(&self.inbuf.unread()[..len]);
                    self.inbuf.consume(used);
                    action
                }
            };
            deadline = Instant::now() + self.command_timeout;
            match action {
                Action::Reply(r) => {
                    if r.code == 554 && r.status == "5.7.1" {
                        // For fail2ban: see config/fail2ban/postern.conf.
                        log::warn!(
                            "relay refused client=[{}] reply={}",
                            session.client_ip(),
                            quoted(&r.lines[0])
                        );
                    }
                    r.write_to(&mut self.out)
                }
                Action::Close(r) => {
                    r.write_to(&mut self.out);
                    return self.flush().await;
                }
                Action::StartData(r) => {
                    r.write_to(&mut self.out);
                    self.flush().await?;
                    let reply = self.data(&mut session, settings, queue).await?;
                    // Back to command-sized reads: an idle session stays small.
                    self.inbuf.data.shrink_to(COMMAND_READ);
                    reply.write_to(&mut self.out);
                    deadline = Instant::now() + self.command_timeout;
                }
                Action::StartTls(r) => {
                    r.write_to(&mut self.out);
                    self.flush().await?;
                    // Whatever the client sent after STARTTLS was sent in the
                    // clear and may be an attacker's: it is dropped unread.
                    self.inbuf = InBuf::default();
                    let Stream::Plain(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
                        return Err(io::Error::other("STARTTLS on a TLS connection"));
                    };
                    let tls = server.acceptor().accept(tcp).or(timeout(HANDSHAKE_TIMEOUT)).await?;
                    let info = TlsInfo::of(tls.get_ref().1);
                    log::debug!(
                        "TLS started with [{}]: {} {}",
                        session.client_ip(),
                        info.version,
                        info.cipher
                    );
                    self.io = Stream::Tls(Box::new(tls));
                    session.tls_started(info);
                    deadline = Instant::now() + self.command_timeout;
                }
                Action::Authenticate { login, password } => {
                    self.flush().await?;
                    let result = match server.authenticate(&session, &login, password).await {
                        Outcome::Ok(who) => session.auth_result(Some(who)),
                        Outcome::Wrong => session.auth_result(None),
                        Outcome::Busy => Action::Reply(reply::auth_busy()),
                        Outcome::AccountLocked => Action::Reply(reply::auth_account_locked()),
                        Outcome::Blocked => {
                            Action::Close(reply::too_many_auth_failures(&settings.config.hostname))
                        }
                    };
                    match result {
                        Action::Close(r) => {
                            r.write_to(&mut self.out);
                            return self.flush().await;
                        }
                        Action::Reply(r) => r.write_to(&mut self.out),
                        _ => {}
                    }
                    deadline = Instant::now() + self.command_timeout;
                }
            }
        }
    }

    /// Says `421` and ends the session because the server stops.
    async fn close_for_shutdown(&mut self, settings: &Settings) -> io::Result<()> {
        reply::shutting_down(&settings.config.hostname).write_to(&mut self.out);
        self.flush().await
    }

    /// Reads one message after `354`, storing it piece by piece, and returns
    /// the reply to its final dot.
    async fn data(&mut self, session: &mut Session, settings: &Settings, queue: &Queue) -> io::Result<Reply> {
        let config = &settings.config;
        let id = queue.new_id();
        let arrived = SystemTime::now();
        // Piece 0 is written last: the Received header and any fields added.
        let mut body = Vec::with_capacity(64 * 1024);
        let mut headers = HeaderScan::default();
        let mut decoder = DataDecoder::new(config.limits.max_message_size);
        let mut stored = 1u32;
        let mut store_error: Option<StoreError> = None;
        let result = loop {
            let before = body.len();
            // Decoding gives out at most what is buffered now and the few
            // bytes it held back from the last read: room for that is all it
            // can need. Growing straight to a piece and a read keeps the
            // vector from doubling past it.
            const HELD_BACK: usize = 2048;
            let need = before + self.inbuf.unread().len() + HELD_BACK;
            if need > body.capacity() {
                body.reserve_exact((CHUNK + READ_SIZE + HELD_BACK).max(need) - before);
            }
            let (used, done) = decoder.decode(self.inbuf.unread(), &mut body);
            self.inbuf.consume(used);
            headers.feed(&body[before..]);
            if store_error.is_some() || decoder.failed() {
                body.clear();
            } else if body.len() >= CHUNK {
                let piece = std::mem::take(&mut body);
                match queue.write(Write::Chunk { id, n: stored, bytes: piece }).await {
                    Ok(()) => stored += 1,
                    Err(e) => store_error = Some(e),
                }
            }
            if done {
                break Ok(());
            }
            if let Err(e) = self.read_more(self.data_timeout, READ_SIZE).await {
                break Err(e);
            }
        };
        let discard = |stored: u32| async move {
            if stored > 1 {
                let _ = queue.write(Write::Discard { id }).await;
            }
        };
        if let Err(e) = result {
            discard(stored).await;
            return Err(e);
        }
        let size = match decoder.finish() {
            Ok(size) => size,
            Err(e) => {
                discard(stored).await;
                let r = session.data_failed(e);
                log::info!(target: "mail", "id={id} client=[{}] status=rejected reply={}", session.client_ip(), quoted(&r.lines[0]));
                return Ok(r);
            }
        };
        if headers.received >= MAX_RECEIVED {
            discard(stored).await;
            let _ = session.take_envelope();
            log::info!(target: "mail", "id={id} client=[{}] status=rejected reply=\"mail loop: {} Received headers\"", session.client_ip(), headers.received);
            return Ok(reply::mail_loop());
        }
        // Before the transaction ends: the protocol name depends on it.
        let prefix = prefix(&id, session, config, &headers, arrived);
        let Some(envelope) = session.take_envelope() else {
            discard(stored).await;
            return Ok(reply::local_error());
        };
        if let Some(e) = store_error {
            discard(stored).await;
            return Ok(store_reply(id, e));
        }
        let header_len = prefix.len() as u64;
        let queued = queue.store().now();
        let message = Message {
            id,
            arrived: unix_now(),
            queued,
            sender: envelope.sender.clone(),
            size: size + header_len,
            chunks: stored + 1,
            next_attempt: queued,
            kind: crate::queue::store::Kind::Normal,
            delay_notified: false,
            recipients: envelope
                .recipients
                .iter()
                .map(|route| Recipient {
                    route: route.clone(),
                    status: Status::Pending,
                    attempts: 0,
                    last_error: String::new(),
                })
                .collect(),
        };
        match queue.write(Write::Commit { pieces: vec![(0, prefix), (stored, body)], message }).await {
            Ok(()) => {
                let to: Vec<String> =
                    envelope.recipients.iter().map(|r| format!("<{}>", word(&r.address()))).collect();
                log::info!(
                    target: "mail",
                    "id={id} from=<{}> to={} size={} client=[{}] helo={} status=accepted",
                    word(&envelope.sender.as_ref().map(ToString::to_string).unwrap_or_default()),
                    to.join(","),
                    size + header_len,
                    session.client_ip(),
                    word(session.helo()),
                );
                Ok(reply::queued(&id.to_string()))
            }
            Err(e) => {
                discard(stored).await;
                Ok(store_reply(id, e))
            }
        }
    }
}

/// What goes in front of the message: the Received header and, on the
/// submission ports, a Date and Message-ID when the client left them out
/// (RFC 6409 8).
fn prefix(
    id: &QueueId,
    session: &Session,
    config: &crate::config::Config,
    headers: &HeaderScan,
    when: SystemTime,
) -> Vec<u8> {
    let mut out = received(&Trace {
        helo: session.helo(),
        ip: session.client_ip(),
        hostname: &config.hostname,
        protocol: &session.protocol(),
        id: &id.to_string(),
        when,
        tls: session.tls(),
        authenticated: session.login().is_some(),
    });
    if session.port().is_submission() {
        if !headers.date {
            out.push_str(&format!("Date: {}\r\n", rfc5322_date(when)));
        }
        if !headers.message_id {
            out.push_str(&format!("Message-ID: <{id}@{}>\r\n", config.hostname));
        }
    }
    out.into_bytes()
}

fn store_reply(id: QueueId, e: StoreError) -> Reply {
    match e {
        StoreError::Full => {
            log::warn!(target: "mail", "id={id} status=refused error=\"queue store is full\"");
            reply::store_full()
        }
        StoreError::Other(s) => {
            log::error!(target: "mail", "id={id} status=refused error=\"{s}\"");
            reply::local_error()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_address_cap_counts_an_ipv6_64_as_one_client() {
        // Two places per client: each address in turn, and whether it gets in.
        let cases: &[(&str, bool)] = &[
            ("2001:db8:1:2::1", true),
            ("2001:db8:1:2::2", true),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", false),
            ("2001:db8:1:3::1", true),
            ("2001:db8:1:3:8000::1", true),
            ("2001:db8:1:3::9", false),
            ("192.0.2.7", true),
            ("::ffff:192.0.2.7", true),
            ("192.0.2.7", false),
            ("192.0.2.8", true),
        ];
        let conns = Arc::new(Connections::default());
        let mut held = Vec::new();
        for &(ip, admitted) in cases {
            let got = conns.admit(ip.parse().unwrap(), 100, 2);
            assert_eq!(got.is_ok(), admitted, "{ip}");
            held.extend(got.ok());
        }
        assert_eq!(conns.total.load(Ordering::SeqCst), 7);
        // Leaving frees the /64's place for any address in it.
        held.remove(0);
        assert!(conns.admit("2001:db8:1:2::abcd".parse().unwrap(), 100, 2).is_ok());
        drop(held);
        assert!(conns.per_ip.lock().unwrap().is_empty());
    }
}
