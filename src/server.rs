//! SMTP's driver: moves bytes between a client connection (`net`) and the
//! pure `smtp` session, runs the password checks the session asks for with
//! the login service, and hands finished messages to the queue. Owns no
//! policy of its own: what to answer is the session's, what to admit and how
//! long to wait is the connection layer's and the config's.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_net::{TcpListener, TcpStream};
use rustls::ServerConfig;
use smol::Executor;
use smol::future::FutureExt as _;
use smol::io::AsyncWriteExt as _;

use crate::Settings;
use crate::login::{Logins, Outcome};
use crate::logtext::{quoted, word};
use crate::message::{HeaderScan, Trace, prefix};
use crate::net::admit::{Connections, Refused};
use crate::net::link::{self, Link};
use crate::net::{Stop, listen};
use crate::queue::store::{Message, QueueId, Recipient, Status, StoreError, Write, unix_now};
use crate::queue::{Queue, SharedSettings};
use crate::smtp::data::DataDecoder;
use crate::smtp::framing::{Line, MAX_AUTH_LINE, MAX_COMMAND_LINE, next_line};
use crate::smtp::reply::{self, Reply};
use crate::smtp::session::{Action, Port, Session};
use crate::stream::timeout;

/// Message bytes are stored in pieces of this size as they arrive, so a large
/// message never sits in memory whole.
const CHUNK: usize = 128 * 1024;

/// How much is read from a socket at once during DATA.
const READ_SIZE: usize = 16 * 1024;

/// How much is read at once between commands: an idle session holds no more.
const COMMAND_READ: usize = 1024;

/// The running server's shared parts.
pub struct Server {
    settings: SharedSettings,
    queue: Arc<Queue>,
    stop: Stop,
    /// Port 25's connections, apart from the submission ports', so that idle
    /// connections on one cannot take the places of the other.
    mx: Arc<Connections>,
    /// The connections of ports 587 and 465.
    submission: Arc<Connections>,
    /// IMAP's connections, apart from both.
    imap: Arc<Connections>,
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
        Arc::new(Server {
            settings,
            queue,
            stop: Stop::default(),
            mx: Arc::default(),
            submission: Arc::default(),
            imap: Arc::default(),
            tls: RwLock::new(tls),
            logins: Logins::new(),
        })
    }

    /// Stops accepting connections; sessions end after their current
    /// transaction with `421`.
    pub fn shutdown(&self) {
        self.stop.trigger();
    }

    /// True once [`Server::shutdown`] was called.
    pub fn stopping(&self) -> bool {
        self.stop.is_stopped()
    }

    /// How many client connections are open, on every port.
    pub fn open_connections(&self) -> usize {
        self.mx.open() + self.submission.open() + self.imap.open()
    }

    /// How many IMAP connections are open.
    pub fn imap_sessions(&self) -> usize {
        self.imap.open()
    }

    /// IMAP's connection counters.
    pub(crate) fn imap_connections(&self) -> &Arc<Connections> {
        &self.imap
    }

    /// The login service every protocol shares.
    pub(crate) fn logins(&self) -> &Logins {
        &self.logins
    }

    /// The stop every connection watches.
    pub(crate) fn stop(&self) -> &Stop {
        &self.stop
    }

    /// Uses `tls` for handshakes from now on; connections already open keep theirs.
    pub fn set_tls(&self, tls: Arc<ServerConfig>) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = tls;
    }

    pub(crate) fn tls_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.tls.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The connection counters of a port's kind.
    fn connections(&self, port: Port) -> &Arc<Connections> {
        match port {
            Port::Mx => &self.mx,
            Port::Submission | Port::Submissions => &self.submission,
        }
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
            let l = listen::open(*addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {addr} ({}): {e}", port.name()))
            })?;
            log::info!("listening on {} ({})", l.local_addr()?, port.name());
            out.push((l, port));
        }
        Ok(out)
    }

    /// Accepts connections on `listener` until the stop, one task each.
    pub async fn serve(self: Arc<Self>, ex: Arc<Executor<'static>>, listener: TcpListener, port: Port) {
        listen::accept_loop(listener, &self.stop, |stream, peer| {
            listen::spawn_session(&ex, "SMTP", peer, Arc::clone(&self).connection(stream, peer, port));
        })
        .await;
    }

    async fn connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, port: Port) {
        let settings = self.settings();
        let limits = &settings.config.limits;
        let ip = peer.ip();
        // As Postfix exempts $mynetworks from its per-client limits: the LAN's
        // own machines (a busy relay, a batch of cron mail) share one address.
        let per_ip =
            if settings.accounts.is_trusted(ip) { usize::MAX } else { limits.max_connections_per_ip };
        let _slot = match self.connections(port).admit(ip, limits.max_connections, per_ip) {
            Ok(slot) => slot,
            Err(refused) => {
                if port != Port::Submissions {
                    let refusal = match refused {
                        Refused::Total => reply::too_many_connections,
                        Refused::PerAddress => reply::too_many_from_ip,
                    };
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
            match link::handshake(self.tls_config(), stream).await {
                Ok((io, info)) => (io, Some(info)),
                Err(e) => {
                    log::info!("TLS handshake with {peer} ({}) failed: {e}", port.name());
                    return;
                }
            }
        } else {
            (crate::stream::Stream::Plain(stream), None)
        };
        let mut conn = Conn {
            link: Link::new(io),
            command_timeout: limits.command_timeout,
            data_timeout: limits.data_timeout,
        };
        let session = Session::new(Arc::clone(&settings), ip, port, true, tls);
        match conn.run(session, &settings, &self).await {
            Ok(()) => log::debug!("connection from {peer} closed"),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let mut out = Vec::new();
                reply::timeout(&settings.config.hostname).write_to(&mut out);
                let _ = conn.link.io.write_all(&out).or(timeout(Duration::from_secs(10))).await;
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

/// One SMTP session's connection and its deadlines.
struct Conn {
    link: Link,
    command_timeout: Duration,
    data_timeout: Duration,
}

impl Conn {
    async fn read_more(&mut self, limit: Duration, size: usize) -> io::Result<()> {
        self.link.read_more(limit, size).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.link.flush(self.command_timeout).await
    }

    /// The session loop: commands until QUIT, an error, or the client leaves.
    async fn run(&mut self, mut session: Session, settings: &Settings, server: &Server) -> io::Result<()> {
        let queue: &Queue = &server.queue;
        session.greeting().write_to(&mut self.link.out);
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
            let action = match next_line(self.link.inbuf.unread(), max) {
                Line::Partial => {
                    // Pipelined replies go out when no further command is waiting.
                    self.flush().await?;
                    if server.stopping() && !session.in_transaction() {
                        return self.close_for_shutdown(settings).await;
                    }
                    let wait = deadline.saturating_duration_since(Instant::now());
                    // In a transaction after the stop, the client may finish it.
                    let stop = if server.stopping() { None } else { Some(&server.stop) };
                    self.link.read_or_stop(wait, stop, COMMAND_READ).await?;
                    continue;
                }
                Line::TooLong { used, ended: false } => {
                    self.link.inbuf.consume(used);
                    discarding = true;
                    self.flush().await?;
                    self.read_more(deadline.saturating_duration_since(Instant::now()), COMMAND_READ).await?;
                    continue;
                }
                Line::TooLong { used, ended: true } | Line::Complete { used, .. } if discarding => {
                    self.link.inbuf.consume(used);
                    discarding = false;
                    session.line_too_long()
                }
                Line::TooLong { used, ended: true } => {
                    self.link.inbuf.consume(used);
                    session.line_too_long()
                }
                Line::Complete { len, used } => {
                    let action = session.command(&self.link.inbuf.unread()[..len]);
                    self.link.inbuf.consume(used);
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
                    r.write_to(&mut self.link.out)
                }
                Action::Close(r) => {
                    r.write_to(&mut self.link.out);
                    return self.flush().await;
                }
                Action::StartData(r) => {
                    r.write_to(&mut self.link.out);
                    self.flush().await?;
                    let reply = self.data(&mut session, settings, queue).await?;
                    // Back to command-sized reads: an idle session stays small.
                    self.link.inbuf.shrink_to(COMMAND_READ);
                    reply.write_to(&mut self.link.out);
                    deadline = Instant::now() + self.command_timeout;
                }
                Action::StartTls(r) => {
                    r.write_to(&mut self.link.out);
                    self.flush().await?;
                    // What the client sent after STARTTLS is dropped unread
                    // (see `Link::start_tls`).
                    let info = self.link.start_tls(server.tls_config()).await?;
                    log::debug!(
                        "TLS started with [{}]: {} {}",
                        session.client_ip(),
                        info.version,
                        info.cipher
                    );
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
                            r.write_to(&mut self.link.out);
                            return self.flush().await;
                        }
                        Action::Reply(r) => r.write_to(&mut self.link.out),
                        _ => {}
                    }
                    deadline = Instant::now() + self.command_timeout;
                }
            }
        }
    }

    /// Says `421` and ends the session because the server stops.
    async fn close_for_shutdown(&mut self, settings: &Settings) -> io::Result<()> {
        reply::shutting_down(&settings.config.hostname).write_to(&mut self.link.out);
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
            let need = before + self.link.inbuf.unread().len() + HELD_BACK;
            if need > body.capacity() {
                body.reserve_exact((CHUNK + READ_SIZE + HELD_BACK).max(need) - before);
            }
            let (used, done) = decoder.decode(self.link.inbuf.unread(), &mut body);
            self.link.inbuf.consume(used);
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
        if headers.looped() {
            discard(stored).await;
            let _ = session.take_envelope();
            log::info!(target: "mail", "id={id} client=[{}] status=rejected reply=\"mail loop: {} Received headers\"", session.client_ip(), headers.received);
            return Ok(reply::mail_loop());
        }
        // Before the transaction ends: the protocol name depends on it.
        let trace = Trace {
            helo: session.helo(),
            ip: session.client_ip(),
            hostname: &config.hostname,
            protocol: &session.protocol(),
            id: &id.to_string(),
            when: arrived,
            tls: session.tls(),
            authenticated: session.login().is_some(),
        };
        let prefix = prefix(&trace, session.port().is_submission(), &headers);
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
