//! The outbound SMTP client: hands a queued message to the recipients' MX, or
//! to a smarthost, and says what happened to each recipient.
//!
//! - To an MX: hosts in preference order, each address in turn; STARTTLS when
//!   offered (opportunistic: the certificate is not checked, as no MX can be
//!   expected to have one that matches), and anything the server sent before
//!   the handshake is thrown away.
//! - To a smarthost: TLS always (implicit or STARTTLS, never plaintext), the
//!   certificate verified against the system's roots for the host name, then
//!   AUTH PLAIN or LOGIN with the configured credentials.
//! - A 4xx is transient for the recipients it concerns, a 5xx permanent.
//!   Connection and TLS failures move on to the next host.
//! - Never to ourselves: an MX host or smarthost that is one of our own
//!   listeners, or an MX host named like our `hostname`, fails the
//!   recipients at once with `5.4.6` (see [`super::loops`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_net::TcpStream;
use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{DeliveryError, loops};
use crate::auth::base64_encode;
use crate::config::{Outbound, Smarthost, SmarthostTls};
use crate::dns::{DnsError, Resolver};
use crate::envelope::Address;
use crate::logtext::{quoted, word};
use crate::stream::{Stream, timeout};

/// Where the system keeps its trusted roots (Debian and Raspberry Pi OS).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a failed handshake is reported, and recognised for the fallback.
const TLS_FAILED: &str = "TLS handshake failed";

/// The longest reply we read: more is a broken or hostile server.
const MAX_REPLY: usize = 64 * 1024;

/// How long a connection is kept open after a transaction for the next
/// message to the same destination.
const KEEP_IDLE: Duration = Duration::from_secs(5);

/// What happened to one recipient: the server's reply, or why it failed.
pub type RecipientResult = Result<String, DeliveryError>;

/// The message to send: envelope, size, and a way to read its stored pieces.
pub struct Outgoing<'a> {
    /// MAIL FROM; `None` is `<>`.
    pub sender: Option<&'a Address>,
    /// RCPT TO, all at the same destination.
    pub recipients: &'a [Address],
    /// Size in bytes, for SIZE.
    pub size: u64,
    /// How many stored pieces make the message.
    pub pieces: u32,
    /// The stored pieces, in order; each call returns piece `n` or `None` past the end.
    pub piece: &'a (dyn Fn(u32) -> io::Result<Option<Vec<u8>>> + Sync),
}

/// Connections and TLS settings for outbound mail; one per server, shared.
pub struct Client {
    hostname: String,
    outbound: Outbound,
    resolver: Resolver,
    opportunistic: Arc<ClientConfig>,
    verified: Arc<ClientConfig>,
    /// Open connections after a transaction, by destination, for reuse.
    idle: std::sync::Mutex<std::collections::HashMap<String, Vec<Idle>>>,
    /// The addresses our SMTP listeners bound: never delivered to.
    listeners: Vec<SocketAddr>,
}

/// A connection waiting for the next message to the same destination.
struct Idle {
    conn: Conn,
    ehlo: Reply,
    since: std::time::Instant,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("hostname", &self.hostname).finish()
    }
}

impl Client {
    /// Builds the client from the `[outbound]` config.
    ///
    /// # Errors
    /// When `ca_file` cannot be read or holds no certificate.
    pub fn new(hostname: &str, outbound: &Outbound) -> Result<Client, String> {
        let resolver = if outbound.nameservers.is_empty() {
            Resolver::system(outbound.prefer)
        } else {
            Resolver::new(outbound.nameservers.clone(), outbound.prefer)
        };
        let provider = Arc::new(default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let mut sources = vec![std::path::PathBuf::from(SYSTEM_ROOTS)];
        sources.extend(outbound.ca_file.clone());
        for path in &sources {
            let certs = match CertificateDer::pem_file_iter(path) {
                Ok(iter) => iter.filter_map(Result::ok).collect::<Vec<_>>(),
                Err(e) if Some(path) == outbound.ca_file.as_ref() => {
                    return Err(format!("outbound.ca_file {}: {e}", path.display()));
                }
                Err(e) => {
                    log::warn!("cannot read the system's trusted certificates {}: {e}", path.display());
                    continue;
                }
            };
            if certs.is_empty() && Some(path) == outbound.ca_file.as_ref() {
                return Err(format!("outbound.ca_file {}: no certificate in the file", path.display()));
            }
            roots.add_parsable_certificates(certs);
        }
        let verified = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let opportunistic = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Client {
            hostname: hostname.to_string(),
            outbound: outbound.clone(),
            resolver,
            opportunistic: Arc::new(opportunistic),
            verified: Arc::new(verified),
            idle: std::sync::Mutex::default(),
            listeners: Vec::new(),
        })
    }

    /// The same client, knowing the addresses our SMTP listeners bound, so
    /// that it never delivers to them.
    pub fn with_listeners(self, listeners: Vec<SocketAddr>) -> Client {
        Client { listeners, ..self }
    }

    /// Whether connecting to any of `addrs` at `port` would reach one of
    /// our own listeners.
    fn reaches_us(&self, addrs: &[IpAddr], port: u16) -> bool {
        addrs
            .iter()
            .any(|ip| loops::reaches_listener(SocketAddr::new(*ip, port), &self.listeners, &loops::is_local))
    }

    /// The smarthost for mail to `domain`, if one is configured.
    fn smarthost(&self, domain: &str) -> Option<&Smarthost> {
        self.outbound
            .domains
            .iter()
            .find(|(d, _)| d.as_str() == domain)
            .map(|(_, h)| h)
            .or(self.outbound.relay.as_ref())
    }

    /// Delivers `msg` to its recipients, all at `domain`; one result per
    /// recipient, in order.
    pub async fn deliver(&self, domain: &str, msg: &Outgoing<'_>) -> Vec<RecipientResult> {
        let all = |e: DeliveryError| vec![Err(e); msg.recipients.len()];
        let smarthost = self.smarthost(domain);
        let key = match smarthost {
            Some(h) => format!("relay {}:{} {}", h.host, h.port, h.username.as_deref().unwrap_or("")),
            None => format!("mx {domain}"),
        };
        match self.reuse(&key, msg).await {
            Some(Ok(results)) => return results,
            Some(Err(e)) => return all(e),
            None => {}
        }
        let result = match smarthost {
            Some(host) => self.via_smarthost(&key, domain, host, msg).await,
            None => self.via_mx(&key, domain, msg).await,
        };
        result.unwrap_or_else(all)
    }

    /// Sends over a connection left open by an earlier message to the same
    /// destination, if one is still good; `None` when there is none.
    async fn reuse(
        &self,
        key: &str,
        msg: &Outgoing<'_>,
    ) -> Option<Result<Vec<RecipientResult>, DeliveryError>> {
        let o = &self.outbound;
        loop {
            let idle = {
                let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = map.get_mut(key)?;
                let idle = list.pop();
                if list.is_empty() {
                    map.remove(key);
                }
                idle?
            };
            let Idle { mut conn, ehlo, since } = idle;
            if since.elapsed() > KEEP_IDLE {
                continue;
            }
            match conn.command("RSET", o.command_timeout).await {
                Ok(r) if r.code == 250 => {}
                _ => continue,
            }
            match conn.transaction(&ehlo, msg, o.command_timeout, o.data_timeout).await {
                Ok(results) => {
                    self.keep(key, conn, ehlo);
                    return Some(Ok(results));
                }
                Err(Failure::All(e)) => return Some(Err(e)),
                Err(Failure::NextHost(e)) => {
                    log::debug!("outbound: a reused connection failed: {}", quoted(&e))
                }
            }
        }
    }

    /// Keeps a connection for the next message to `key`.
    fn keep(&self, key: &str, conn: Conn, ehlo: Reply) {
        // A connection that erred, or holds replies nobody asked for, is out
        // of step: never reuse it.
        if conn.broken || !conn.replies.is_empty() {
            return;
        }
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().push(Idle { conn, ehlo, since: std::time::Instant::now() });
    }

    /// Closes connections nobody used for a while (without waiting for a
    /// QUIT reply from a server that may be gone); the runner calls this
    /// whenever it wakes.
    pub async fn close_idle(&self) {
        let stale: Vec<Idle> = {
            let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut stale = Vec::new();
            for list in map.values_mut() {
                let (old, fresh): (Vec<Idle>, Vec<Idle>) =
                    list.drain(..).partition(|i| i.since.elapsed() > KEEP_IDLE);
                *list = fresh;
                stale.extend(old);
            }
            map.retain(|_, list| !list.is_empty());
            stale
        };
        for mut idle in stale {
            // Best effort: a QUIT if the socket takes it at once, then close.
            let _ = idle.conn.io.write_all(b"QUIT\r\n").or(timeout(Duration::from_millis(50))).await;
        }
    }

    async fn via_mx(
        &self,
        key: &str,
        domain: &str,
        msg: &Outgoing<'_>,
    ) -> Result<Vec<RecipientResult>, DeliveryError> {
        let hosts = self.resolver.mx(domain).await.map_err(|e| match e {
            DnsError::NoSuchDomain(s) => DeliveryError::Permanent(format!("5.1.2 {s}")),
            DnsError::NullMx(s) => DeliveryError::Permanent(format!("5.1.10 {s}")),
            DnsError::Temporary(s) => DeliveryError::Transient(format!("4.4.3 {s}")),
        })?;
        let port = self.outbound.mx_port;
        let (hosts, us) = loops::before_us(hosts, |h| {
            loops::is_our_name(&h.name, &self.hostname) || self.reaches_us(&h.addrs, port)
        });
        if let (true, Some(us)) = (hosts.is_empty(), us) {
            return Err(DeliveryError::Permanent(format!(
                "5.4.6 mail for {domain} loops back to myself: its MX host {} is this server",
                us.name
            )));
        }
        let mut last = format!("4.4.1 no MX host of {domain} could be reached");
        for host in &hosts {
            for ip in &host.addrs {
                let addr = SocketAddr::new(*ip, self.outbound.mx_port);
                // Opportunistic TLS may fall back to plaintext with the same
                // host when the handshake fails (RFC 7435); smarthosts never do.
                for starttls in [true, false] {
                    match self.session(key, addr, &host.name, None, msg, starttls).await {
                        Ok(results) => return Ok(results),
                        Err(Failure::NextHost(e)) => {
                            log::debug!("outbound: {} [{addr}]: {}", word(&host.name), quoted(&e));
                            let handshake = e.starts_with(TLS_FAILED);
                            last = format!("{} [{addr}]: {e}", host.name);
                            if !(starttls && handshake) {
                                break;
                            }
                        }
                        Err(Failure::All(e)) => return Err(e),
                    }
                }
            }
        }
        Err(DeliveryError::Transient(last))
    }

    async fn via_smarthost(
        &self,
        key: &str,
        domain: &str,
        host: &Smarthost,
        msg: &Outgoing<'_>,
    ) -> Result<Vec<RecipientResult>, DeliveryError> {
        let addrs: Vec<IpAddr> = if let Ok(ip) = host.host.parse::<IpAddr>() {
            vec![ip]
        } else if self.outbound.nameservers.is_empty() {
            // The system's way, /etc/hosts included.
            async_dns::lookup(&host.host).await.map(|iter| iter.map(|a| a.ip_address).collect()).map_err(
                |e| DeliveryError::Transient(format!("4.4.3 cannot look up smarthost {}: {e}", host.host)),
            )?
        } else {
            self.resolver.addrs(&host.host).await.map_err(|e| {
                DeliveryError::Transient(format!("4.4.3 cannot look up smarthost {}: {e}", host.host))
            })?
        };
        // Only the address counts: another server on this host, at another
        // port, may well be named like us.
        if self.reaches_us(&addrs, host.port) {
            return Err(DeliveryError::Permanent(format!(
                "5.4.6 mail for {domain} loops back to myself: smarthost {}:{} is this server",
                host.host, host.port
            )));
        }
        let mut last = format!("4.4.1 smarthost {} has no address", host.host);
        for ip in addrs {
            let addr = SocketAddr::new(ip, host.port);
            match self.session(key, addr, &host.host, Some(host), msg, true).await {
                Ok(results) => return Ok(results),
                Err(Failure::NextHost(e)) => {
                    log::warn!("outbound: smarthost {} [{addr}]: {}", host.host, quoted(&e));
                    last = format!("smarthost {} [{addr}]: {e}", host.host);
                }
                Err(Failure::All(e)) => return Err(e),
            }
        }
        Err(DeliveryError::Transient(last))
    }

    /// One SMTP conversation with one server address.
    async fn session(
        &self,
        key: &str,
        addr: SocketAddr,
        name: &str,
        smarthost: Option<&Smarthost>,
        msg: &Outgoing<'_>,
        starttls: bool,
    ) -> Result<Vec<RecipientResult>, Failure> {
        let o = &self.outbound;
        let tcp = TcpStream::connect(addr)
            .or(timeout(o.connect_timeout))
            .await
            .map_err(|e| Failure::NextHost(format!("cannot connect: {e}")))?;
        // Every write is a whole command, a pipelined group or a large block
        // of the message: nothing for Nagle's algorithm to gather, and its
        // wait for an ACK stalls each transaction by the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| Failure::NextHost(format!("`{name}` is not a valid TLS server name")))?;
        let mut conn = if smarthost.is_some_and(|h| h.tls == SmarthostTls::Implicit) {
            let tls = TlsConnector::from(Arc::clone(&self.verified))
                .connect(server_name.clone(), tcp)
                .or(timeout(o.connect_timeout))
                .await
                .map_err(|e| Failure::NextHost(format!("{TLS_FAILED}: {e}")))?;
            Conn::new(Stream::Tls(Box::new(tls)))
        } else {
            Conn::new(Stream::Plain(tcp))
        };
        // RFC 5321 4.5.3.2.1: up to 5 minutes for the greeting.
        let greeting = conn.reply(o.command_timeout).await.map_err(next)?;
        if greeting.code != 220 {
            return Err(Failure::NextHost(format!("greeting: {}", greeting.text())));
        }
        let mut ehlo = conn.ehlo(&self.hostname, o.command_timeout).await.map_err(next)?;
        let want_tls = matches!(smarthost, Some(h) if h.tls == SmarthostTls::StartTls);
        if matches!(conn.io, Stream::Plain(_)) && (want_tls || (starttls && ehlo.has("STARTTLS"))) {
            if !ehlo.has("STARTTLS") {
                return Err(Failure::NextHost(
                    "the smarthost does not offer STARTTLS; refusing to send in the clear".into(),
                ));
            }
            let r = conn.command("STARTTLS", o.command_timeout).await.map_err(next)?;
            if r.code != 220 {
                if want_tls {
                    return Err(Failure::NextHost(format!("STARTTLS refused: {}", r.text())));
                }
                // Opportunistic: go on without TLS, as the server asked.
            } else {
                // Anything the server sent after its 220 came before the
                // handshake, in the clear: dropped unread.
                conn.replies.clear();
                let Stream::Plain(tcp) = std::mem::replace(&mut conn.io, Stream::Gone) else {
                    return Err(Failure::NextHost("internal: STARTTLS on a TLS connection".into()));
                };
                let config = if want_tls { &self.verified } else { &self.opportunistic };
                let tls = TlsConnector::from(Arc::clone(config))
                    .connect(server_name, tcp)
                    .or(timeout(o.connect_timeout))
                    .await
                    .map_err(|e| Failure::NextHost(format!("{TLS_FAILED}: {e}")))?;
                conn.io = Stream::Tls(Box::new(tls));
                ehlo = conn.ehlo(&self.hostname, o.command_timeout).await.map_err(next)?;
            }
        }
        if let Some(h) = smarthost {
            if let (Some(user), Some(file)) = (&h.username, &h.password_file) {
                let password = read_password(file).map_err(Failure::NextHost)?;
                conn.login(&ehlo, user, &password, o.command_timeout).await?;
            }
        }
        let results = conn.transaction(&ehlo, msg, o.command_timeout, o.data_timeout).await?;
        // QUIT comes later: the next message to this destination may use it.
        self.keep(key, conn, ehlo);
        Ok(results)
    }
}

/// Why a conversation ended early.
enum Failure {
    /// This server cannot take the message now: try the next one.
    NextHost(String),
    /// The answer holds for every recipient (a 5xx to MAIL FROM, say).
    All(DeliveryError),
}

fn next(e: io::Error) -> Failure {
    Failure::NextHost(e.to_string())
}

/// The smarthost password: the first line of its file, which must not be
/// readable by everyone.
fn read_password(path: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("password file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!("password file {} is readable by everyone; chmod 600 it", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("password file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Checks what can be checked of `[outbound]` before starting: the
/// password files exist and are not world-readable, `ca_file` reads.
///
/// # Errors
/// The first problem, naming the file.
pub fn check(hostname: &str, outbound: &Outbound) -> Result<(), String> {
    let hosts = outbound.relay.iter().chain(outbound.domains.iter().map(|(_, h)| h));
    for h in hosts {
        if let Some(file) = &h.password_file {
            read_password(file)?;
        }
    }
    Client::new(hostname, outbound).map(|_| ())
}

/// One server reply. Public only for the fuzz targets.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code of the last line.
    pub code: u16,
    /// The text of each line after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// The whole reply on one line, as it goes into logs and bounces.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{} {l}", self.code)).collect::<Vec<_>>().join(" / ")
    }

    /// For EHLO replies: whether an extension keyword is listed.
    pub fn has(&self, keyword: &str) -> bool {
        self.lines
            .iter()
            .skip(1)
            .any(|l| l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
    }

    /// For EHLO replies: the parameters of an extension.
    pub fn params(&self, keyword: &str) -> Option<Vec<String>> {
        self.lines.iter().skip(1).find_map(|l| {
            let mut words = l.split_whitespace();
            words.next().filter(|k| k.eq_ignore_ascii_case(keyword))?;
            Some(words.map(|w| w.to_ascii_uppercase()).collect())
        })
    }

    fn result(&self) -> RecipientResult {
        match self.code {
            200..=299 => Ok(self.text()),
            400..=499 => Err(DeliveryError::Transient(self.text())),
            _ => Err(DeliveryError::Permanent(self.text())),
        }
    }
}

/// The connection, before or after TLS.
type Io = Stream<TlsStream<TcpStream>>;

struct Conn {
    io: Io,
    replies: ReplyReader,
    /// Set when an exchange failed midway; such a connection is not reused.
    broken: bool,
}

impl Conn {
    fn new(io: Io) -> Conn {
        Conn { io, replies: ReplyReader::default(), broken: false }
    }

    async fn send(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        let result = async {
            self.io.write_all(bytes).or(timeout(limit)).await?;
            self.io.flush().or(timeout(limit)).await
        }
        .await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// One whole reply, which must arrive within `limit` however slowly its
    /// bytes trickle in.
    async fn reply(&mut self, limit: Duration) -> io::Result<Reply> {
        let result = self.reply_within(Instant::now() + limit).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn reply_within(&mut self, deadline: Instant) -> io::Result<Reply> {
        loop {
            if let Some(reply) = self.replies.next_reply()? {
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = self.io.read(&mut chunk).or(timeout(left)).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server"));
            }
            self.replies.push(&chunk[..n]);
        }
    }

    async fn command(&mut self, line: &str, limit: Duration) -> io::Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes(), limit).await?;
        self.reply(limit).await
    }

    /// EHLO, or HELO when the server does not know EHLO.
    async fn ehlo(&mut self, hostname: &str, limit: Duration) -> io::Result<Reply> {
        let r = self.command(&format!("EHLO {hostname}"), limit).await?;
        if r.code == 250 {
            return Ok(r);
        }
        let r = self.command(&format!("HELO {hostname}"), limit).await?;
        if r.code == 250 {
            // No extensions: keep only the first line.
            return Ok(Reply { code: 250, lines: r.lines.into_iter().take(1).collect() });
        }
        Err(io::Error::other(format!("EHLO/HELO refused: {}", r.text())))
    }

    /// AUTH PLAIN, or LOGIN when only that is offered.
    async fn login(
        &mut self,
        ehlo: &Reply,
        user: &str,
        password: &str,
        limit: Duration,
    ) -> Result<(), Failure> {
        let mechanisms = ehlo.params("AUTH").unwrap_or_default();
        let r = if mechanisms.iter().any(|m| m == "PLAIN") {
            let token = base64_encode(format!("\0{user}\0{password}").as_bytes());
            self.command(&format!("AUTH PLAIN {token}"), limit).await.map_err(next)?
        } else if mechanisms.iter().any(|m| m == "LOGIN") {
            let r = self.command("AUTH LOGIN", limit).await.map_err(next)?;
            let r = if r.code == 334 {
                self.command(&base64_encode(user.as_bytes()), limit).await.map_err(next)?
            } else {
                r
            };
            if r.code == 334 {
                self.command(&base64_encode(password.as_bytes()), limit).await.map_err(next)?
            } else {
                r
            }
        } else {
            return Err(Failure::NextHost("the smarthost offers neither AUTH PLAIN nor AUTH LOGIN".into()));
        };
        if r.code == 235 {
            Ok(())
        } else {
            // A refused login is our configuration's fault: keep the mail queued.
            Err(Failure::All(DeliveryError::Transient(format!("smarthost login failed: {}", r.text()))))
        }
    }

    /// MAIL, RCPT for each recipient, DATA and the message; pipelined when
    /// the server offers it.
    async fn transaction(
        &mut self,
        ehlo: &Reply,
        msg: &Outgoing<'_>,
        limit: Duration,
        data_limit: Duration,
    ) -> Result<Vec<RecipientResult>, Failure> {
        if let Some(max) = ehlo.params("SIZE").and_then(|p| p.first().and_then(|v| v.parse::<u64>().ok())) {
            if max > 0 && msg.size > max {
                return Err(Failure::All(DeliveryError::Permanent(format!(
                    "552 5.3.4 message size {} exceeds the {max} bytes the server accepts",
                    msg.size
                ))));
            }
        }
        let utf8 = msg.sender.is_some_and(|a| !a.to_string().is_ascii())
            || msg.recipients.iter().any(|a| !a.to_string().is_ascii());
        if utf8 && !ehlo.has("SMTPUTF8") {
            return Err(Failure::All(DeliveryError::Permanent(
                "553 5.6.7 the receiving server does not support SMTPUTF8, which these addresses need".into(),
            )));
        }
        let mut mail = format!("MAIL FROM:<{}>", msg.sender.map(ToString::to_string).unwrap_or_default());
        if ehlo.has("SIZE") {
            mail.push_str(&format!(" SIZE={}", msg.size));
        }
        if ehlo.has("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let rcpts: Vec<String> = msg.recipients.iter().map(|a| format!("RCPT TO:<{a}>")).collect();
        let (mail_reply, rcpt_replies, data_reply) = if ehlo.has("PIPELINING") {
            let mut batch = format!("{mail}\r\n");
            for r in &rcpts {
                batch.push_str(r);
                batch.push_str("\r\n");
            }
            batch.push_str("DATA\r\n");
            self.send(batch.as_bytes(), limit).await.map_err(next)?;
            let m = self.reply(limit).await.map_err(next)?;
            let mut rs = Vec::new();
            for _ in &rcpts {
                rs.push(self.reply(limit).await.map_err(next)?);
            }
            let d = self.reply(limit).await.map_err(next)?;
            (m, rs, Some(d))
        } else {
            let m = self.command(&mail, limit).await.map_err(next)?;
            let mut rs = Vec::new();
            if m.code == 250 {
                for r in &rcpts {
                    rs.push(self.command(r, limit).await.map_err(next)?);
                }
            }
            (m, rs, None)
        };
        if mail_reply.code != 250 {
            self.abandon(data_reply.as_ref(), limit, data_limit).await;
            return Err(Failure::All(match mail_reply.result() {
                Err(e) => e,
                Ok(_) => DeliveryError::Transient(format!("unexpected reply to MAIL: {}", mail_reply.text())),
            }));
        }
        let mut results: Vec<RecipientResult> = rcpt_replies.iter().map(Reply::result).collect();
        if !results.iter().any(Result::is_ok) {
            self.abandon(data_reply.as_ref(), limit, data_limit).await;
            return Ok(results);
        }
        let data_reply = match data_reply {
            Some(d) => d,
            None => self.command("DATA", limit).await.map_err(next)?,
        };
        if data_reply.code != 354 {
            let e = data_reply.result().err().unwrap_or_else(|| DeliveryError::Transient(data_reply.text()));
            return Ok(results.into_iter().map(|r| r.and(Err(e.clone()))).collect());
        }
        self.send_body(msg, data_limit).await.map_err(next)?;
        let end = self.reply(data_limit).await.map_err(next)?;
        let outcome = end.result();
        for r in &mut results {
            if r.is_ok() {
                *r = outcome.clone();
            }
        }
        Ok(results)
    }

    /// Ends a transaction that will send no message: closes a DATA the server
    /// opened anyway (with no good recipient, it should not have), then RSET.
    /// A connection that does not come back to a clean state is not reused.
    async fn abandon(&mut self, data_reply: Option<&Reply>, limit: Duration, data_limit: Duration) {
        if data_reply.is_some_and(|d| d.code == 354) {
            let _ = self.send(b".\r\n", limit).await;
            let _ = self.reply(data_limit).await;
        }
        match self.command("RSET", limit).await {
            Ok(r) if r.code == 250 => {}
            _ => self.broken = true,
        }
    }

    /// Sends the stored message dot-stuffed, then the final dot.
    async fn send_body(&mut self, msg: &Outgoing<'_>, limit: Duration) -> io::Result<()> {
        let mut at_line_start = true;
        let mut last = b'\n';
        let mut out = Vec::with_capacity(64 * 1024);
        let mut n = 0;
        let mut sent = 0u64;
        while let Some(piece) = (msg.piece)(n)? {
            n += 1;
            sent += piece.len() as u64;
            for &b in &piece {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = b == b'\n';
                last = b;
            }
            // Small pieces (the first is only the Received line) go out with
            // the next one, or with the final dot.
            if out.len() >= 32 * 1024 {
                self.io.write_all(&out).or(timeout(limit)).await?;
                out.clear();
            }
        }
        if sent != msg.size || n != msg.pieces {
            // The message changed under us (deleted meanwhile): never end it
            // with a dot; drop the connection instead.
            self.broken = true;
            return Err(io::Error::other(format!(
                "the stored message is not whole: {n} of {} pieces, {sent} of {} bytes",
                msg.pieces, msg.size
            )));
        }
        if last != b'\n' {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.send(&out, limit).await
    }
}

/// Turns the bytes a server sends into replies, whatever sizes they arrive in.
/// Pure: the connection reads, this parses. Public only for the fuzz targets.
///
/// A line longer than 64 KiB, or a multiline reply whose text adds up to
/// more, is refused, as is a line that does not start with a code from 200
/// to 599. The code of a multiline reply is that of its last line.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct ReplyReader {
    /// Bytes not yet parsed: at most a partial line once `next_reply` is done.
    buf: Vec<u8>,
    /// How many bytes at the start of `buf` are known to hold no line end, so
    /// that a reply trickling in byte by byte is not searched over and over.
    scanned: usize,
    /// The lines of a reply whose last line has not arrived.
    lines: Vec<String>,
    /// The length of those lines so far.
    total: usize,
}

impl ReplyReader {
    /// Adds bytes read from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when nothing is buffered: no partial reply, no unread bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.lines.is_empty()
    }

    /// Forgets everything buffered.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.lines.clear();
        self.total = 0;
    }

    /// The next whole reply, or `None` until more bytes arrive.
    ///
    /// # Errors
    /// `InvalidData` for a line that is not a reply line and for replies over
    /// the size limit; the reader is then out of step with the server.
    pub fn next_reply(&mut self) -> io::Result<Option<Reply>> {
        loop {
            let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                // However the bytes are split, a line this long is refused.
                if self.buf.len() >= MAX_REPLY {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "reply line too long"));
                }
                return Ok(None);
            };
            let i = self.scanned + i;
            if i >= MAX_REPLY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "reply line too long"));
            }
            self.scanned = 0;
            let raw: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            self.total += line.len();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: {line:?}"),
                ));
            };
            let more = line.as_bytes().get(3) == Some(&b'-');
            self.lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                self.total = 0;
                return Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }));
            }
            if self.total > MAX_REPLY {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
            }
        }
    }
}

/// Opportunistic TLS to MX hosts: the handshake is checked, the certificate
/// is not (RFC 7435).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to a reader in pieces of `step` bytes; the replies read,
    /// then the error that stopped it, if any.
    fn read(input: &[u8], step: usize) -> (Vec<(u16, Vec<String>)>, Option<String>) {
        let mut reader = ReplyReader::default();
        let mut replies = Vec::new();
        for piece in input.chunks(step.max(1)) {
            reader.push(piece);
            loop {
                match reader.next_reply() {
                    Ok(Some(r)) => replies.push((r.code, r.lines)),
                    Ok(None) => break,
                    Err(e) => return (replies, Some(e.to_string())),
                }
            }
        }
        (replies, None)
    }

    #[test]
    fn replies_are_read_whatever_the_reads() {
        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY));
        let just_fits = format!("250 {}\r\n", "x".repeat(MAX_REPLY - 6));
        let many = "250-x\r\n".repeat(MAX_REPLY / 5 + 1) + "250 x\r\n";
        type Case<'a> = (&'a [u8], &'a [(u16, &'a [&'a str])], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (b"220 mx.example ESMTP\r\n", &[(220, &["mx.example ESMTP"])], None),
            (b"250-a\r\n250-SIZE 10\r\n250 PIPELINING\r\n", &[(250, &["a", "SIZE 10", "PIPELINING"])], None),
            (b"250 ok\r\n550 no\r\n354", &[(250, &["ok"]), (550, &["no"])], None),
            (b"250 ok\n251\r\n", &[(250, &["ok"]), (251, &[""])], None),
            (b"250-a\r\n451 b\r\n", &[(451, &["a", "b"])], None),
            (b"250-a\r\n", &[], None),
            (b"hello\r\n", &[], Some("not an SMTP reply: \"hello\"")),
            (b"199 x\r\n", &[], Some("not an SMTP reply: \"199 x\"")),
            (b"+25 x\r\n", &[], Some("not an SMTP reply: \"+25 x\"")),
            (b"250 ok\r\n600 x\r\n", &[(250, &["ok"])], Some("not an SMTP reply: \"600 x\"")),
            (long.as_bytes(), &[], Some("reply line too long")),
            (&long.as_bytes()[..MAX_REPLY], &[], Some("reply line too long")),
            (&long.as_bytes()[..MAX_REPLY - 1], &[], None),
            (many.as_bytes(), &[], Some("reply too long")),
        ];
        for &(input, want, err) in cases {
            let want: Vec<(u16, Vec<String>)> =
                want.iter().map(|(c, l)| (*c, l.iter().map(|s| s.to_string()).collect())).collect();
            for step in [1, 2, 3, 7, 4096, input.len()] {
                let (got, got_err) = read(input, step);
                assert_eq!(
                    got,
                    want,
                    "{:?} step {step}",
                    String::from_utf8_lossy(&input[..input.len().min(40)])
                );
                assert_eq!(got_err.as_deref(), err, "step {step}");
            }
        }
        let (got, err) = read(just_fits.as_bytes(), 1000);
        assert_eq!((got.len(), err), (1, None));
    }

    #[test]
    fn a_partial_reply_keeps_the_reader_busy() {
        let mut reader = ReplyReader::default();
        assert!(reader.is_empty());
        reader.push(b"250-a\r\n");
        assert_eq!(reader.next_reply().unwrap(), None);
        assert!(!reader.is_empty(), "half a reply is buffered");
        reader.push(b"250 b\r\n");
        assert_eq!(
            reader.next_reply().unwrap(),
            Some(Reply { code: 250, lines: vec!["a".into(), "b".into()] })
        );
        assert!(reader.is_empty());
        reader.push(b"250 late");
        reader.clear();
        assert!(reader.is_empty());
    }
}
