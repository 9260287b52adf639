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
//! - A 4xx is transient for the recipients it concerns, a 5xx permanent; each
//!   refusal carries its enhanced status code and the host that sent it.
//!   Connection and TLS failures move on to the next host.
//! - Never to ourselves: an MX host or smarthost that is one of our own
//!   listeners, or an MX host named like our `hostname`, fails the
//!   recipients at once with `5.4.6` (see [`super::loops`]).
//!
//! `route` chooses the hosts and the TLS and falls back from one host to the
//! next, `link` holds the conversation with one server, `pool` keeps
//! connections open for the next message; the replies are read and the
//! message stuffed by the pure [`crate::smtp::client`].

mod link;
mod pool;
mod route;

use std::io;
use std::net::SocketAddr;

use super::DeliveryError;
use crate::config::Outbound;
use crate::dns::Resolver;
use crate::envelope::Address;
use crate::logtext::quoted;
use crate::smtp::client::EnhancedCode;
use crate::tls::{ClientConfigs, client_configs};

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
    tls: ClientConfigs,
    /// Open connections after a transaction, by destination, for reuse.
    pool: pool::Pool,
    /// The addresses our SMTP listeners bound: never delivered to.
    listeners: Vec<SocketAddr>,
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
        let tls = client_configs(outbound.ca_file.as_deref()).map_err(|e| e.to_string())?;
        Ok(Client {
            hostname: hostname.to_string(),
            outbound: outbound.clone(),
            resolver,
            tls,
            pool: pool::Pool::default(),
            listeners: Vec::new(),
        })
    }

    /// The same client, knowing the addresses our SMTP listeners bound, so
    /// that it never delivers to them.
    pub fn with_listeners(self, listeners: Vec<SocketAddr>) -> Client {
        Client { listeners, ..self }
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
            let (mut link, ehlo) = self.pool.take(key)?;
            match link.command("RSET", o.command_timeout).await {
                Ok(r) if r.code == 250 => {}
                _ => continue,
            }
            match link.transaction(&ehlo, msg, o.command_timeout, o.data_timeout).await {
                Ok(results) => {
                    self.pool.keep(key, link, ehlo);
                    return Some(Ok(results));
                }
                Err(Abort::All(e)) => return Some(Err(e)),
                Err(Abort::NextHost(e)) => {
                    log::debug!("outbound: a reused connection failed: {}", quoted(e.text()))
                }
            }
        }
    }

    /// Closes connections nobody used for a while (without waiting for a
    /// QUIT reply from a server that may be gone); the runner calls this
    /// whenever it wakes.
    pub async fn close_idle(&self) {
        for mut link in self.pool.stale() {
            link.quit_now().await;
        }
    }
}

/// Why a conversation ended early.
enum Abort {
    /// This server cannot take the message now: try the next one. Always
    /// transient.
    NextHost(DeliveryError),
    /// The answer holds for every recipient (a 5xx to MAIL FROM, say).
    All(DeliveryError),
}

/// A host that could not take the message, and said nothing we could read
/// as a reply: the status says no more than that it may pass.
fn miss(text: impl Into<String>) -> Abort {
    Abort::NextHost(DeliveryError::new(EnhancedCode::new(4, 0, 0), text))
}

fn next(e: io::Error) -> Abort {
    miss(e.to_string())
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
