//! Listeners and connection tasks: reads bytes from clients, feeds them to the
//! pure `smtp` session, writes its replies, enforces timeouts and connection
//! caps, and hands finished messages to the queue. Owns no policy of its own.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_net::{TcpListener, TcpStream};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::{Executor, Timer};

use crate::Settings;
use crate::message::{Trace, received};
use crate::queue::store::{Message, Recipient, Status, StoreError, Write, unix_now};
use crate::queue::{Queue, SharedSettings};
use crate::smtp::data::DataDecoder;
use crate::smtp::reply::{self, Reply};
use crate::smtp::session::{Action, Session};

/// The longest command line, CRLF included (RFC 5321 4.5.3.1.4).
const MAX_COMMAND_LINE: usize = 512;

/// Message bytes are stored in pieces of this size as they arrive, so a large
/// message never sits in memory whole.
const CHUNK: usize = 256 * 1024;

/// How much is read from a socket at once.
const READ_SIZE: usize = 16 * 1024;

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Port 25: mail from the internet and the LAN.
    Mx,
}

/// Counts open connections, overall and per client address.
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
#[derive(Debug)]
pub struct Server {
    settings: SharedSettings,
    queue: Arc<Queue>,
    conns: Arc<Connections>,
}

impl Server {
    /// A server over an open queue.
    pub fn new(settings: SharedSettings, queue: Arc<Queue>) -> Arc<Server> {
        Arc::new(Server { settings, queue, conns: Arc::default() })
    }

    fn settings(&self) -> Arc<Settings> {
        match self.settings.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
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
        for addr in &listen.mx {
            let l = open_listener(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} (mx): {e}")))?;
            log::info!("listening on {} (mx)", l.local_addr()?);
            out.push((l, Port::Mx));
        }
        for addr in listen.submission.iter().chain(&listen.submissions) {
            log::warn!(
                "not listening on {addr}: submission needs TLS and AUTH, which this build does not have yet"
            );
        }
        Ok(out)
    }

    /// Accepts connections on `listener` forever, one task each.
    pub async fn serve(self: Arc<Self>, ex: Arc<Executor<'static>>, listener: TcpListener, port: Port) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
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

    async fn connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, _port: Port) {
        let settings = self.settings();
        let limits = &settings.config.limits;
        let ip = peer.ip();
        let _slot = match self.conns.admit(ip, limits.max_connections, limits.max_connections_per_ip) {
            Ok(slot) => slot,
            Err(refusal) => {
                let mut out = Vec::new();
                refusal(&settings.config.hostname).write_to(&mut out);
                let _ = stream.write_all(&out).or(timeout(Duration::from_secs(10))).await;
                log::info!("refused connection from {ip}: too many connections");
                return;
            }
        };
        log::debug!("connection from {peer}");
        let mut conn = Conn {
            stream,
            inbuf: InBuf::default(),
            out: Vec::new(),
            command_timeout: limits.command_timeout,
            data_timeout: limits.data_timeout,
        };
        match conn.run(Session::new(Arc::clone(&settings), ip), &settings, &self.queue).await {
            Ok(()) => log::debug!("connection from {peer} closed"),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                let mut out = Vec::new();
                reply::timeout(&settings.config.hostname).write_to(&mut out);
                let _ = conn.stream.write_all(&out).or(timeout(Duration::from_secs(10))).await;
                log::info!("connection from {peer} timed out");
            }
            Err(e) => log::debug!("connection from {peer} ended: {e}"),
        }
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

async fn timeout<T>(d: Duration) -> io::Result<T> {
    Timer::after(d).await;
    Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
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
    stream: TcpStream,
    inbuf: InBuf,
    out: Vec<u8>,
    command_timeout: Duration,
    data_timeout: Duration,
}

impl Conn {
    async fn read_more(&mut self, limit: Duration) -> io::Result<()> {
        if self.inbuf.pos > 0 {
            self.inbuf.data.drain(..self.inbuf.pos);
            self.inbuf.pos = 0;
        }
        let start = self.inbuf.data.len();
        self.inbuf.data.resize(start + READ_SIZE, 0);
        let n = self.stream.read(&mut self.inbuf.data[start..]).or(timeout(limit)).await;
        self.inbuf.data.truncate(start + *n.as_ref().unwrap_or(&0));
        match n? {
            0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client closed the connection")),
            _ => Ok(()),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let limit = self.command_timeout;
            self.stream.write_all(&self.out).or(timeout(limit)).await?;
            self.out.clear();
        }
        Ok(())
    }

    fn next_line(&self) -> Line {
        let buf = self.inbuf.unread();
        match buf.iter().position(|&b| b == b'\n') {
            Some(lf) if lf < MAX_COMMAND_LINE => {
                let len = if lf > 0 && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
                Line::Complete { len, used: lf + 1 }
            }
            Some(lf) => Line::TooLong { used: lf + 1, ended: true },
            None if buf.len() >= MAX_COMMAND_LINE => Line::TooLong { used: buf.len(), ended: false },
            None => Line::Partial,
        }
    }

    /// The session loop: commands until QUIT, an error, or the client leaves.
    async fn run(&mut self, mut session: Session, settings: &Settings, queue: &Queue) -> io::Result<()> {
        session.greeting().write_to(&mut self.out);
        self.flush().await?;
        let mut discarding = false;
        // Each command line must be complete within the timeout, however
        // slowly its bytes trickle in.
        let mut deadline = Instant::now() + self.command_timeout;
        loop {
            let action = match self.next_line() {
                Line::Partial => {
                    // Pipelined replies go out when no further command is waiting.
                    self.flush().await?;
                    self.read_more(deadline.saturating_duration_since(Instant::now())).await?;
                    continue;
                }
                Line::TooLong { used, ended: false } => {
                    self.inbuf.consume(used);
                    discarding = true;
                    self.flush().await?;
                    self.read_more(deadline.saturating_duration_since(Instant::now())).await?;
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
                Action::Reply(r) => r.write_to(&mut self.out),
                Action::Close(r) => {
                    r.write_to(&mut self.out);
                    return self.flush().await;
                }
                Action::StartData(r) => {
                    r.write_to(&mut self.out);
                    self.flush().await?;
                    let reply = self.data(&mut session, settings, queue).await?;
                    reply.write_to(&mut self.out);
                    deadline = Instant::now() + self.command_timeout;
                }
            }
        }
    }

    /// Reads one message after `354`, storing it piece by piece, and returns
    /// the reply to its final dot.
    async fn data(&mut self, session: &mut Session, settings: &Settings, queue: &Queue) -> io::Result<Reply> {
        let config = &settings.config;
        let id = queue.new_id();
        let arrived = SystemTime::now();
        let mut body = Vec::with_capacity(CHUNK.min(64 * 1024));
        body.extend_from_slice(
            received(&Trace {
                helo: session.helo(),
                ip: session.client_ip(),
                hostname: &config.hostname,
                protocol: session.protocol(),
                id: &id.to_string(),
                when: arrived,
            })
            .as_bytes(),
        );
        let header_len = body.len() as u64;
        let mut decoder = DataDecoder::new(config.limits.max_message_size);
        let mut stored = 0u32;
        let mut store_error: Option<StoreError> = None;
        let result = loop {
            let (used, done) = decoder.decode(self.inbuf.unread(), &mut body);
            self.inbuf.consume(used);
            if store_error.is_some() || decoder.failed() {
                body.clear();
            } else if body.len() >= CHUNK {
                let piece = std::mem::replace(&mut body, Vec::with_capacity(CHUNK));
                match queue.write(Write::Chunk { id, n: stored, bytes: piece }).await {
                    Ok(()) => stored += 1,
                    Err(e) => store_error = Some(e),
                }
            }
            if done {
                break Ok(());
            }
            if let Err(e) = self.read_more(self.data_timeout).await {
                break Err(e);
            }
        };
        let discard = |stored: u32| async move {
            if stored > 0 {
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
                log::info!(target: "mail", "id={id} client=[{}] status=rejected reply=\"{}\"", session.client_ip(), r.lines[0]);
                return Ok(r);
            }
        };
        let Some(envelope) = session.take_envelope() else {
            discard(stored).await;
            return Ok(reply::local_error());
        };
        if let Some(e) = store_error {
            discard(stored).await;
            return Ok(store_reply(id, e));
        }
        let now = unix_now();
        let message = Message {
            id,
            arrived: now,
            sender: envelope.sender.clone(),
            size: size + header_len,
            chunks: stored + 1,
            next_attempt: now,
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
        match queue.write(Write::Commit { last: Some((stored, body)), message }).await {
            Ok(()) => {
                let to: Vec<String> =
                    envelope.recipients.iter().map(|r| format!("<{}>", r.address())).collect();
                log::info!(
                    target: "mail",
                    "id={id} from=<{}> to={} size={} client=[{}] helo={} status=accepted",
                    envelope.sender.as_ref().map(ToString::to_string).unwrap_or_default(),
                    to.join(","),
                    size + header_len,
                    session.client_ip(),
                    session.helo(),
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

fn store_reply(id: crate::queue::store::QueueId, e: StoreError) -> Reply {
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
