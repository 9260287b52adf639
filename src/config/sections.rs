//! The section types of [`Config`](super::Config), one per table of the file,
//! with the defaults a missing key or table gets. Plain data: reading them is
//! the section readers' work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::net::IpNet;
use super::units::{GIB, MIB};
use crate::dns::Prefer;
use crate::envelope::Domain;

/// Addresses to listen on. An empty list turns that listener off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Port 25: mail from the internet and the LAN, no AUTH needed.
    pub mx: Vec<SocketAddr>,
    /// Port 587: submission with STARTTLS and AUTH.
    pub submission: Vec<SocketAddr>,
    /// Port 465: submission over implicit TLS.
    pub submissions: Vec<SocketAddr>,
    /// Port 143: IMAP, STARTTLS before a login. Off unless configured.
    pub imap: Vec<SocketAddr>,
    /// Port 993: IMAP over implicit TLS. Off unless configured.
    pub imaps: Vec<SocketAddr>,
}

/// Certificate and key PEM files. When both are absent the TLS module makes a
/// self-signed certificate in the data dir.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    pub key: Option<PathBuf>,
}

/// Who may relay without logging in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relay {
    /// Clients in these networks may relay without AUTH.
    pub trusted_networks: Vec<IpNet>,
}

/// One local domain with its users and aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// Lowercased, without a trailing dot.
    pub name: Domain,
    /// (local name lowercased, argon2id hash), in file order. `None`: a user who
    /// only receives mail (`""` in the file) and cannot log in.
    pub users: Vec<(String, Option<String>)>,
    /// (alias name lowercased, targets), in file order. A target is a local user or
    /// alias name of this domain, or a full address `local@domain`.
    pub aliases: Vec<(String, Vec<String>)>,
    /// Where mail for unknown local names goes; same form as an alias target.
    pub catch_all: Option<String>,
    /// (user, sender patterns): addresses a user may send as besides their
    /// own and the aliases that reach them. A pattern is a full address,
    /// `*@domain`, or `*` for any sender.
    pub send_as: Vec<(String, Vec<String>)>,
}

/// How mail for other domains leaves: straight to the recipient's MX, or
/// through a smarthost (a provider's submission server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The smarthost for every other domain; `None` (the default): deliver to the MX.
    pub relay: Option<Smarthost>,
    /// Smarthosts for particular destination domains, which win over `relay`.
    pub domains: Vec<(Domain, Smarthost)>,
    /// DNS servers for MX lookups; empty (the default): those of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Which address family to try first: `"ipv4"` (the default), `"ipv6"` or `"any"`.
    pub prefer: Prefer,
    /// The port MX hosts are reached on (default 25; another only for tests and odd networks).
    pub mx_port: u16,
    /// More certificates to trust for smarthosts, besides the system's (default none).
    pub ca_file: Option<PathBuf>,
    /// Delivery attempts to other servers under way at once (default 10); local
    /// deliveries do not count.
    pub max_concurrent: usize,
    /// Time to connect and get the greeting (default 1m).
    pub connect_timeout: Duration,
    /// Time for each command's reply (default 5m, as RFC 5321 4.5.3.2 asks).
    pub command_timeout: Duration,
    /// Time for the reply to the final dot (default 10m, as RFC 5321 4.5.3.2.6 asks).
    pub data_timeout: Duration,
}

/// A smarthost: where to hand mail, how to protect it, and who we are there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smarthost {
    /// Host name or address.
    pub host: String,
    /// Port: 465 or 587 usually.
    pub port: u16,
    /// TLS from the first byte, or STARTTLS; never plaintext.
    pub tls: SmarthostTls,
    /// Login name, when the smarthost wants AUTH.
    pub username: Option<String>,
    /// File holding the password (first line); must not be world-readable.
    pub password_file: Option<PathBuf>,
}

/// How TLS starts on a smarthost connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmarthostTls {
    /// Port 465 style (RFC 8314).
    Implicit,
    /// Port 587 style (RFC 3207); refused if the server does not offer it.
    StartTls,
}

/// Retry and expiry schedule of the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Delay before the first retry (default 5m); later delays grow from it.
    pub retry_first: Duration,
    /// Longest delay between retries (default 1h).
    pub retry_max: Duration,
    /// Age at which a message is bounced (default 5d).
    pub lifetime: Duration,
    /// Age at which the sender is told, once, that a message is delayed (default 4h).
    pub delay_notice: Duration,
}

/// Resource limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message in bytes, advertised in SIZE (default 25M).
    pub max_message_size: u64,
    /// Recipients per transaction (default 100).
    pub max_recipients: usize,
    /// Simultaneous connections in total, for each kind of listener: port 25
    /// has this many places, and the submission ports (587 and 465
    /// together) as many again, so idle clients on one cannot keep anyone
    /// out of the other (default 500).
    pub max_connections: usize,
    /// Simultaneous connections from one IP address (an IPv6 /64), for each
    /// kind of listener (default 20).
    pub max_connections_per_ip: usize,
    /// Bad commands in one session before `421` (default 10).
    pub max_errors: u32,
    /// Wait for each command line (default 5m).
    pub command_timeout: Duration,
    /// Wait for each read of the DATA body, not for the whole of it (default 10m).
    pub data_timeout: Duration,
    /// LMDB map size in bytes (default 1G on 64-bit, 256M on 32-bit).
    pub store_size: u64,
    /// Maildir writer threads, each writing groups of messages (default 1).
    pub delivery_workers: usize,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            mx: vec![SocketAddr::from(([0, 0, 0, 0], 25))],
            submission: vec![SocketAddr::from(([0, 0, 0, 0], 587))],
            submissions: vec![SocketAddr::from(([0, 0, 0, 0], 465))],
            imap: Vec::new(),
            imaps: Vec::new(),
        }
    }
}

impl Default for Relay {
    /// Loopback only: a LAN range is opt-in.
    fn default() -> Self {
        Relay { trusted_networks: IpNet::loopback().to_vec() }
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            relay: None,
            domains: Vec::new(),
            nameservers: Vec::new(),
            prefer: Prefer::Ipv4,
            mx_port: 25,
            ca_file: None,
            max_concurrent: 10,
            connect_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry_first: Duration::from_secs(5 * 60),
            retry_max: Duration::from_secs(60 * 60),
            lifetime: Duration::from_secs(5 * 24 * 60 * 60),
            delay_notice: Duration::from_secs(4 * 60 * 60),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * MIB,
            max_recipients: 100,
            max_connections: 500,
            max_connections_per_ip: 20,
            max_errors: 10,
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            store_size: if cfg!(target_pointer_width = "64") { GIB } else { 256 * MIB },
            delivery_workers: 1,
        }
    }
}
