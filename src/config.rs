//! The config file: TOML in, typed and validated [`Config`] out.
//! This is the only parser of the config; it reads that one file and touches nothing else.
//!
//! The file is parsed into `toml`'s spanned document tree and walked by hand, so that
//! every error can name the file, the line, the key's dotted path and the bad value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The largest LMDB map we agree to reserve in a 32-bit address space.
const MAX_STORE_32BIT: u64 = 1536 * MIB;

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const DEFAULT_SOURCE: &str = "<embedded default>";

const TOP_KEYS: &[&str] = &[
    "hostname",
    "primary_domain",
    "data_dir",
    "mail_root",
    "listen",
    "tls",
    "relay",
    "domains",
    "queue",
    "limits",
    "outbound",
];
const LISTEN_KEYS: &[&str] = &["mx", "submission", "submissions"];
const TLS_KEYS: &[&str] = &["cert", "key"];
const RELAY_KEYS: &[&str] = &["trusted_networks"];
const DOMAIN_KEYS: &[&str] = &["users", "aliases", "catch_all", "send_as"];
const QUEUE_KEYS: &[&str] = &["retry_first", "retry_max", "lifetime", "delay_notice"];
const OUTBOUND_KEYS: &[&str] = &[
    "relay",
    "tls",
    "username",
    "password_file",
    "domains",
    "nameservers",
    "prefer",
    "mx_port",
    "ca_file",
    "max_concurrent",
    "connect_timeout",
    "command_timeout",
    "data_timeout",
];
const SMARTHOST_KEYS: &[&str] = &["relay", "tls", "username", "password_file"];
const LIMIT_KEYS: &[&str] = &[
    "max_message_size",
    "max_recipients",
    "max_connections",
    "max_connections_per_ip",
    "max_errors",
    "command_timeout",
    "data_timeout",
    "store_size",
    "delivery_workers",
];

/// The whole validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file path as given, or `"<embedded default>"`.
    pub source: String,
    /// The server's DNS name, lowercased; used in greetings and Received headers.
    pub hostname: String,
    /// Where the queue store and generated TLS files live.
    pub data_dir: PathBuf,
    /// Root of the Maildirs: `<mail_root>/<domain>/<user>/{cur,new,tmp}`.
    pub mail_root: PathBuf,
    /// The domain used for bounces and postmaster; always one of `domains`.
    pub primary_domain: String,
    /// `[listen]`: the three SMTP listeners.
    pub listen: Listen,
    /// `[tls]`: certificate files, or none for a self-signed certificate.
    pub tls: Tls,
    /// `[relay]`: who may send to other domains without logging in.
    pub relay: Relay,
    /// The local domains, in file order.
    pub domains: Vec<DomainConfig>,
    /// `[queue]`: retry and expiry schedule.
    pub queue: QueueConfig,
    /// `[limits]`: sizes, counts and timeouts.
    pub limits: Limits,
    /// `[outbound]`: MX delivery or a smarthost.
    pub outbound: Outbound,
}

/// Addresses to listen on. An empty list turns that listener off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// Port 25: mail from the internet and the LAN, no AUTH needed.
    pub mx: Vec<SocketAddr>,
    /// Port 587: submission with STARTTLS and AUTH.
    pub submission: Vec<SocketAddr>,
    /// Port 465: submission over implicit TLS.
    pub submissions: Vec<SocketAddr>,
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

/// An IP network such as `192.168.1.0/24` or `::1/128`; host bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// One local domain with its users and aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// Lowercased, without a trailing dot.
    pub name: String,
    /// (local name lowercased, argon2id hash or "" for a receive-only user), in file order.
    pub users: Vec<(String, String)>,
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
    /// The smarthost for every other domain; `None`: deliver to the MX.
    pub relay: Option<Smarthost>,
    /// Smarthosts for particular destination domains, which win over `relay`.
    pub domains: Vec<(String, Smarthost)>,
    /// DNS servers for MX lookups; empty: those of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Which address family to try first: "ipv4", "ipv6" or "any".
    pub prefer: String,
    /// The port MX hosts are reached on (25; another only for tests and odd networks).
    pub mx_port: u16,
    /// More certificates to trust for smarthosts, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Outbound connections at once.
    pub max_concurrent: usize,
    /// Time to connect and get the greeting.
    pub connect_timeout: Duration,
    /// Time for each command's reply (RFC 5321 4.5.3.2: 5 minutes).
    pub command_timeout: Duration,
    /// Time for the reply to the final dot (RFC 5321 4.5.3.2.6: 10 minutes).
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
    /// Simultaneous connections in total (default 100).
    pub max_connections: usize,
    /// Simultaneous connections from one IP address (default 20).
    pub max_connections_per_ip: usize,
    /// Bad commands in one session before `421` (default 10).
    pub max_errors: u32,
    /// Wait for each command line (default 5m).
    pub command_timeout: Duration,
    /// Wait for the whole DATA body (default 10m).
    pub data_timeout: Duration,
    /// LMDB map size in bytes (default 1G on 64-bit, 256M on 32-bit).
    pub store_size: u64,
    /// Threads for blocking disk work (default 2).
    pub delivery_workers: usize,
}

/// What is wrong with a config file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file's path as given, or `"<embedded default>"`.
    pub file: String,
    /// 1-based; `None` when the problem has no place in the file (a missing key, an unreadable file).
    pub line: Option<usize>,
    /// Dotted path such as `limits.max_message_size`; empty for syntax and read errors.
    pub key: String,
    /// What is wrong, in plain words, quoting the bad value.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            mx: vec![SocketAddr::from(([0, 0, 0, 0], 25))],
            submission: vec![SocketAddr::from(([0, 0, 0, 0], 587))],
            submissions: vec![SocketAddr::from(([0, 0, 0, 0], 465))],
        }
    }
}

impl Default for Relay {
    /// Loopback only: a LAN range is opt-in.
    fn default() -> Self {
        Relay {
            trusted_networks: vec![
                IpNet { addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 },
                IpNet { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 },
            ],
        }
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            relay: None,
            domains: Vec::new(),
            nameservers: Vec::new(),
            prefer: "ipv4".to_string(),
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

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file, line, key and problem. A file that cannot be
    /// read gives `line: None`, an empty key and the I/O error text.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &file),
            Err(err) => Err(ConfigError {
                file,
                line: None,
                key: String::new(),
                problem: format!("cannot read the config file: {err}"),
            }),
        }
    }

    /// Parses and validates config text; `source` names it in errors.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`ConfigError`].
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let r = Reader { text, source };
        let doc = DeTable::parse(text).map_err(|e| r.error(e.span(), "", e.message()))?;
        let root = Section { path: String::new(), table: doc.get_ref() };
        r.check_keys(&root, TOP_KEYS)?;

        let hostname = match root.get("hostname") {
            Some(item) => r.parsed(&item, dns_name)?,
            None => return Err(r.missing("hostname", "hostname = \"mail.example.com\"")),
        };
        let data_dir = match root.get("data_dir") {
            Some(item) => r.path(&item)?,
            None => return Err(r.missing("data_dir", "data_dir = \"/var/lib/postern\"")),
        };
        let mail_root = match root.get("mail_root") {
            Some(item) => r.path(&item)?,
            None => data_dir.join("mail"),
        };
        let listen = read_listen(&r, &root)?;
        let tls = read_tls(&r, &root)?;
        let relay = read_relay(&r, &root)?;
        let domains = read_domains(&r, &root)?;
        let primary_domain = read_primary_domain(&r, &root, &domains)?;
        let queue = read_queue(&r, &root)?;
        let limits = read_limits(&r, &root)?;
        let outbound = read_outbound(&r, &root)?;
        Ok(Config {
            source: source.to_string(),
            hostname,
            data_dir,
            mail_root,
            primary_domain,
            listen,
            tls,
            relay,
            domains,
            queue,
            limits,
            outbound,
        })
    }

    /// The development default compiled in from `config/default.toml`.
    ///
    /// # Panics
    ///
    /// Only if that file is broken, which a unit test rules out.
    pub fn embedded_default() -> Config {
        match Config::parse(DEFAULT_TOML, DEFAULT_SOURCE) {
            Ok(config) => config,
            Err(err) => panic!("config/default.toml is broken: {err}"),
        }
    }

    /// The local domain called `name`, ignoring case and a trailing dot.
    pub fn domain(&self, name: &str) -> Option<&DomainConfig> {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.domains.iter().find(|d| d.name.eq_ignore_ascii_case(name))
    }
}

impl IpNet {
    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network. A client seen as an IPv4-mapped IPv6
    /// address (`::ffff:a.b.c.d`, from a dual-stack socket) is treated as the IPv4
    /// address it is, so it matches IPv4 networks and never IPv6 ones.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask_v4(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask_v6(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    /// Parses `192.168.1.0/24`, `::1/128`, or a bare address (a host route).
    /// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes the IPv4 one.
    fn from_str(s: &str) -> Result<IpNet, String> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!("`{s}` is not a network: `{addr_text}` is not an IP address (write networks like 192.168.1.0/24 or ::1/128)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!("`{s}`: the prefix length after / must be a number from 0 to {max}"));
                }
            },
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix))),
        };
        let net = IpNet { addr: network, prefix };
        if network != addr {
            return Err(format!("`{s}` has host bits set, did you mean {net}?"));
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a size: `"1024"` (bytes), `"512K"`, `"25M"`, `"1G"`. Units are powers of
/// 1024, case-insensitive, optionally followed by `B` or `iB` (`"25MiB"`).
///
/// # Errors
///
/// A plain-words message that quotes `s`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!("\"{s}\" is not a size: write a whole number with K, M or G, like \"25M\""));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ if unit.starts_with('.') => {
            return Err(format!(
                "\"{s}\" is not a size: use a whole number, like \"1536M\" instead of \"1.5G\""
            ));
        }
        _ => {
            return Err(format!(
                "\"{s}\" is not a size: unknown unit `{unit}` (use K, M or G, like \"25M\")"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// Parses a duration: `"30s"`, `"5m"`, `"4h"`, `"5d"`, or a sum like `"1h30m"`.
///
/// # Errors
///
/// A plain-words message that quotes `s`; a bare number is refused because its unit
/// would be a guess.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("the duration is empty; write one like \"5m\"".to_string());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" has no unit; add a unit: s, m, h or d (like \"{text}s\")"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "\"{s}\" is not a duration: expected a number at `{rest}` (write it like \"90s\", \"5m\" or \"1h30m\")"
            ));
        }
        let unit = rest[digits..].chars().next();
        let seconds = match unit {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 60 * 60,
            Some('d') => 24 * 60 * 60,
            Some(other) => {
                return Err(format!("\"{s}\" is not a duration: unknown unit `{other}` (use s, m, h or d)"));
            }
            None => {
                return Err(format!(
                    "\"{s}\" is not a duration: the last number has no unit; add a unit: s, m, h or d"
                ));
            }
        };
        total = rest[..digits]
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| format!("\"{s}\" is too long"))?;
        rest = &rest[digits + 1..];
    }
    Ok(Duration::from_secs(total))
}

/// Writes a duration in the config's spelling, in its largest exact unit: `2h`, `90s`.
fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (unit, size) = [('d', 86400), ('h', 3600), ('m', 60)]
        .into_iter()
        .find(|(_, size)| secs >= *size && secs % size == 0)
        .unwrap_or(('s', 1));
    format!("{}{unit}", secs / size)
}

/// Writes a size in the config's spelling, in its largest exact unit: `25M`, `1000`.
fn show_size(n: u64) -> String {
    let (unit, size) = [("G", GIB), ("M", MIB), ("K", KIB)]
        .into_iter()
        .find(|(_, size)| n >= *size && n % size == 0)
        .unwrap_or(("", 1));
    format!("{}{unit}", n / size)
}

/// Turns spans into line numbers and builds errors that name the file.
struct Reader<'a> {
    text: &'a str,
    source: &'a str,
}

/// A table from the file, with the dotted path that names it.
struct Section<'d> {
    path: String,
    table: &'d DeTable<'d>,
}

/// One value from the file, with the dotted path that names it in errors and,
/// when it came from a table, where its key was written.
#[derive(Clone)]
struct Item<'d> {
    path: String,
    key: Option<Range<usize>>,
    value: &'d Spanned<DeValue<'d>>,
}

impl<'d> Section<'d> {
    fn get(&self, key: &str) -> Option<Item<'d>> {
        self.entries().find(|(name, _)| *name == key).map(|(_, item)| item)
    }

    /// Every entry in file order, with its key.
    fn entries(&self) -> impl Iterator<Item = (&'d str, Item<'d>)> + '_ {
        self.table.iter().map(|(key, value)| {
            let name: &'d str = key.get_ref();
            let path = join(&self.path, name);
            (name, Item { path, key: Some(key.span()), value })
        })
    }
}

/// `parent.key`, quoting the key when it is not a bare TOML key.
fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() { key } else { format!("{parent}.{key}") }
}

impl Reader<'_> {
    fn error(&self, span: Option<Range<usize>>, key: &str, problem: impl Into<String>) -> ConfigError {
        let line = span.map(|span| {
            let end = span.start.min(self.text.len());
            self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
        });
        ConfigError { file: self.source.to_string(), line, key: key.to_string(), problem: problem.into() }
    }

    /// An error about an item's value.
    fn at(&self, item: &Item<'_>, problem: impl Into<String>) -> ConfigError {
        self.error(Some(item.value.span()), &item.path, problem)
    }

    /// An error about an item's key (an unknown key, a bad user name).
    fn at_key(&self, item: &Item<'_>, problem: impl Into<String>) -> ConfigError {
        let span = item.key.clone().unwrap_or(item.value.span());
        self.error(Some(span), &item.path, problem)
    }

    fn missing(&self, key: &str, example: &str) -> ConfigError {
        self.error(None, key, format!("this key is required; add a line like: {example}"))
    }

    fn wrong_type(&self, item: &Item<'_>, expected: &str) -> ConfigError {
        let found = describe(item.value.get_ref());
        self.at(item, format!("expected {expected}, found {found}"))
    }

    /// Refuses keys not in `allowed`, listing the known ones.
    fn check_keys(&self, section: &Section<'_>, allowed: &[&str]) -> Result<(), ConfigError> {
        for (name, item) in section.entries() {
            if allowed.contains(&name) {
                continue;
            }
            let what = if matches!(item.value.get_ref(), DeValue::Table(_)) {
                format!("unknown table [{}]", item.path)
            } else if section.path.is_empty() {
                format!("unknown key `{name}` at the top level")
            } else {
                format!("unknown key `{name}` in [{}]", section.path)
            };
            let known = format!(" (known keys here: {})", allowed.join(", "));
            return Err(self.at_key(&item, what + &known));
        }
        Ok(())
    }

    fn table<'d>(&self, item: &Item<'d>) -> Result<Section<'d>, ConfigError> {
        match item.value.get_ref() {
            DeValue::Table(table) => Ok(Section { path: item.path.clone(), table }),
            _ => Err(self.wrong_type(item, "a table")),
        }
    }

    /// A table whose keys must all be in `allowed`.
    fn section<'d>(&self, item: &Item<'d>, allowed: &[&str]) -> Result<Section<'d>, ConfigError> {
        let section = self.table(item)?;
        self.check_keys(&section, allowed)?;
        Ok(section)
    }

    fn array<'d>(&self, item: &Item<'d>) -> Result<Vec<Item<'d>>, ConfigError> {
        match item.value.get_ref() {
            DeValue::Array(values) => Ok(values
                .iter()
                .enumerate()
                .map(|(i, value)| Item { path: format!("{}[{i}]", item.path), key: None, value })
                .collect()),
            _ => Err(self.wrong_type(item, "an array")),
        }
    }

    fn string<'d>(&self, item: &Item<'d>) -> Result<&'d str, ConfigError> {
        match item.value.get_ref() {
            DeValue::String(s) => Ok(s),
            _ => Err(self.wrong_type(item, "a string")),
        }
    }

    /// Reads `key` of `section` into `slot` when present; returns its item for later checks.
    fn set<'d, T>(
        &self,
        section: &Section<'d>,
        key: &str,
        slot: &mut T,
        read: impl FnOnce(&Self, &Item<'d>) -> Result<T, ConfigError>,
    ) -> Result<Option<Item<'d>>, ConfigError> {
        let Some(item) = section.get(key) else {
            return Ok(None);
        };
        *slot = read(self, &item)?;
        Ok(Some(item))
    }

    /// A string run through `parse`, whose error message becomes the problem.
    fn parsed<T>(
        &self,
        item: &Item<'_>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = self.string(item)?;
        parse(text).map_err(|problem| self.at(item, problem))
    }

    fn path(&self, item: &Item<'_>) -> Result<PathBuf, ConfigError> {
        self.parsed(item, |s| match s {
            "" => Err("the path is empty".to_string()),
            _ => Ok(PathBuf::from(s)),
        })
    }

    /// A whole number of at least 1 that fits in `T`.
    fn count<T: TryFrom<u64>>(&self, item: &Item<'_>) -> Result<T, ConfigError> {
        let DeValue::Integer(n) = item.value.get_ref() else {
            return Err(self.wrong_type(item, "a whole number"));
        };
        match u64::from_str_radix(n.as_str(), n.radix()) {
            Ok(0) | Err(_) => Err(self.at(item, format!("must be a whole number of at least 1, found {n}"))),
            Ok(value) => T::try_from(value).map_err(|_| self.at(item, format!("{n} is too large"))),
        }
    }

    /// A size string like `"25M"`, or a plain number of bytes; never zero.
    fn size(&self, item: &Item<'_>) -> Result<u64, ConfigError> {
        let bytes = match item.value.get_ref() {
            DeValue::String(s) => parse_size(s).map_err(|problem| self.at(item, problem))?,
            DeValue::Integer(_) => self.count(item)?,
            _ => return Err(self.wrong_type(item, "a size like \"25M\"")),
        };
        if bytes == 0 {
            return Err(self.at(item, "must be larger than 0"));
        }
        Ok(bytes)
    }

    /// A duration string like `"5m"`; never zero.
    fn duration(&self, item: &Item<'_>) -> Result<Duration, ConfigError> {
        let duration = match item.value.get_ref() {
            DeValue::String(s) => parse_duration(s).map_err(|problem| self.at(item, problem))?,
            DeValue::Integer(n) => {
                return Err(self.at(item, format!("expected a duration like \"5m\", found the number {n}; add a unit: s, m, h or d (like \"{n}s\")")));
            }
            _ => return Err(self.wrong_type(item, "a duration like \"5m\"")),
        };
        if duration.is_zero() {
            return Err(self.at(item, "must be longer than 0s"));
        }
        Ok(duration)
    }
}

fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("the string {s:?}"),
        DeValue::Integer(n) => format!("the number {n}"),
        DeValue::Float(x) => format!("the number {x}"),
        DeValue::Boolean(b) => format!("`{b}`"),
        DeValue::Datetime(d) => format!("the date {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// A host or domain name: letters, digits, '-' and dots; lowercased, trailing dot removed.
fn dns_name(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if name.is_empty() {
        return Err("the name is empty".to_string());
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!("`{s}` is an IP address; a DNS name like mail.example.com is needed here"));
    }
    if name.len() > 253 {
        return Err(format!("`{s}` is longer than the 253 characters a DNS name may have"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return Err(format!(
            "`{s}` is not a valid DNS name: {c:?} is not allowed (use letters, digits, '-' and dots)"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "`{s}` is not a valid DNS name: each dot-separated part must be 1 to 63 characters and not start or end with '-'"
            ));
        }
    }
    Ok(name)
}

/// A local name (user or alias), lowercased. It also names a Maildir directory, so
/// path characters are refused along with the address tricks ('+', '%', '!').
fn local_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a local name must not be empty".to_string());
    }
    if s.contains('@') {
        return Err(format!(
            "`{s}` must be a local name without '@' and domain; the domain comes from the table"
        ));
    }
    if s.starts_with('.') {
        return Err(format!("`{s}` must not start with a dot"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control() || "+%!\"'/\\".contains(*c)) {
        let why = if c == '+' { " ('+' separates a tag, as in alice+news)" } else { "" };
        return Err(format!("`{s}` contains {c:?}, which is not allowed in a local name{why}"));
    }
    Ok(s.to_lowercase())
}

/// An alias or catch-all target: a local name that `is_local` knows, or a full
/// address `local@domain` with exactly one '@' outside quotes.
fn target(s: &str, domain: &str, is_local: impl Fn(&str) -> bool) -> Result<String, String> {
    if !s.contains('@') && !s.contains('"') {
        let local = local_name(s)?;
        if is_local(&local) {
            return Ok(local);
        }
        return Err(format!(
            "`{s}` is not a user or alias of {domain} (for another domain write the full address, like {s}@example.org)"
        ));
    }
    let mut quoted = false;
    let mut escaped = false;
    let mut ats = Vec::new();
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '@' {
            ats.push(i);
        } else if !quoted && (c.is_whitespace() || c.is_control()) {
            return Err(format!("`{s}` contains a space or control character"));
        }
    }
    if quoted {
        return Err(format!("`{s}` has an unclosed quote"));
    }
    match ats.as_slice() {
        [at] if *at > 0 && at + 1 < s.len() => {
            let domain = dns_name(&s[at + 1..]).map_err(|problem| format!("in `{s}`: {problem}"))?;
            Ok(format!("{}@{domain}", &s[..*at]))
        }
        _ => Err(format!(
            "`{s}` is neither a local name nor an address like someone@example.org (an address needs exactly one '@' with text on both sides)"
        )),
    }
}

/// A listener that was configured, or defaulted, for the overlap check.
struct Bound {
    addr: SocketAddr,
    path: String,
    span: Option<Range<usize>>,
}

fn read_listen(r: &Reader<'_>, root: &Section<'_>) -> Result<Listen, ConfigError> {
    let section = match root.get("listen") {
        Some(item) => Some(r.section(&item, LISTEN_KEYS)?),
        None => None,
    };
    let mut bound = Vec::new();
    let (s, d) = (section.as_ref(), Listen::default());
    let mx = listen_list(r, s, "mx", d.mx, &mut bound)?;
    let submission = listen_list(r, s, "submission", d.submission, &mut bound)?;
    let submissions = listen_list(r, s, "submissions", d.submissions, &mut bound)?;

    // Two listeners on one port would fail at bind time, far from the config line.
    // Port 0 asks the kernel for a fresh port each time, so it never clashes.
    for (i, b) in bound.iter().enumerate() {
        let Some(a) = bound[..i].iter().find(|a| listeners_overlap(a.addr, b.addr)) else {
            continue;
        };
        let problem = if a.addr == b.addr {
            format!("{} is listed twice: as {} and as {}", b.addr, a.path, b.path)
        } else {
            format!(
                "{} overlaps {} ({}): a wildcard address already takes that port on every address",
                b.addr, a.addr, a.path
            )
        };
        let (span, key) =
            if b.span.is_some() { (b.span.clone(), &b.path) } else { (a.span.clone(), &a.path) };
        return Err(r.error(span, key, problem));
    }
    Ok(Listen { mx, submission, submissions })
}

fn listen_list(
    r: &Reader<'_>,
    section: Option<&Section<'_>>,
    name: &str,
    default: Vec<SocketAddr>,
    bound: &mut Vec<Bound>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(item) = section.and_then(|s| s.get(name)) else {
        let path = format!("listen.{name} (default)");
        bound.extend(default.iter().map(|&addr| Bound { addr, path: path.clone(), span: None }));
        return Ok(default);
    };
    let mut addrs = Vec::new();
    for element in r.array(&item)? {
        let addr = r.parsed(&element, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("`{s}` is not an IP address and port like \"0.0.0.0:25\" or \"[::]:25\" (host names are not allowed here)"))
        })?;
        bound.push(Bound { addr, path: element.path.clone(), span: Some(element.value.span()) });
        addrs.push(addr);
    }
    Ok(addrs)
}

fn listeners_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn read_tls(r: &Reader<'_>, root: &Section<'_>) -> Result<Tls, ConfigError> {
    let Some(item) = root.get("tls") else {
        return Ok(Tls::default());
    };
    let section = r.section(&item, TLS_KEYS)?;
    let cert = section.get("cert");
    let key = section.get("key");
    match (&cert, &key) {
        (Some(cert), Some(key)) => Ok(Tls { cert: Some(r.path(cert)?), key: Some(r.path(key)?) }),
        (None, None) => Ok(Tls::default()),
        (Some(given), None) | (None, Some(given)) => {
            let (present, absent) = if cert.is_some() { ("cert", "key") } else { ("key", "cert") };
            Err(r.error(
                Some(given.value.span()),
                &format!("tls.{absent}"),
                format!("tls.{present} is set but tls.{absent} is missing; give both, or neither to use a self-signed certificate"),
            ))
        }
    }
}

fn read_relay(r: &Reader<'_>, root: &Section<'_>) -> Result<Relay, ConfigError> {
    let Some(item) = root.get("relay") else {
        return Ok(Relay::default());
    };
    let Some(list) = r.section(&item, RELAY_KEYS)?.get("trusted_networks") else {
        return Ok(Relay::default());
    };
    let mut trusted_networks = Vec::new();
    for element in r.array(&list)? {
        trusted_networks.push(r.parsed(&element, |s| s.parse::<IpNet>())?);
    }
    Ok(Relay { trusted_networks })
}

fn read_domains(r: &Reader<'_>, root: &Section<'_>) -> Result<Vec<DomainConfig>, ConfigError> {
    const NONE: &str = "no domains are configured; add at least one table like [domains.\"example.com\"]";
    let Some(item) = root.get("domains") else {
        return Err(r.error(None, "domains", NONE));
    };
    let mut domains: Vec<DomainConfig> = Vec::new();
    for (key, item) in r.table(&item)?.entries() {
        let name = dns_name(key).map_err(|problem| r.at_key(&item, problem))?;
        if domains.iter().any(|d| d.name == name) {
            let problem = format!("domain `{name}` is listed twice (domain names are not case-sensitive)");
            return Err(r.at_key(&item, problem));
        }
        let section = r.section(&item, DOMAIN_KEYS)?;
        domains.push(read_domain(r, name, &section)?);
    }
    if domains.is_empty() {
        return Err(r.at(&item, NONE));
    }
    Ok(domains)
}

fn read_domain(r: &Reader<'_>, name: String, section: &Section<'_>) -> Result<DomainConfig, ConfigError> {
    let mut users: Vec<(String, String)> = Vec::new();
    if let Some(item) = section.get("users") {
        for (key, item) in r.table(&item)?.entries() {
            let local = local_name(key).map_err(|problem| r.at_key(&item, problem))?;
            if users.iter().any(|(user, _)| *user == local) {
                let problem = format!("user `{local}` is listed twice (names are not case-sensitive)");
                return Err(r.at_key(&item, problem));
            }
            let hash = r.string(&item)?;
            if !hash.is_empty() && !hash.starts_with("$argon2id$") {
                // Never echo the value: people paste plain passwords here.
                return Err(r.at(
                    &item,
                    format!(
                        "not an argon2id password hash (it must start with \"$argon2id$\"; make one with `postern passwd {local}@{name}`), \
                         or \"\" for a user who only receives mail; the value is not shown in case it is a password"
                    ),
                ));
            }
            users.push((local, hash.to_string()));
        }
    }

    // First every alias name, so a target may name an alias defined further down.
    let mut pending: Vec<(String, Vec<Item<'_>>)> = Vec::new();
    if let Some(item) = section.get("aliases") {
        for (key, item) in r.table(&item)?.entries() {
            let alias = local_name(key).map_err(|problem| r.at_key(&item, problem))?;
            let clash = if users.iter().any(|(user, _)| *user == alias) {
                Some(format!("alias `{alias}` has the same name as a user; rename one of them"))
            } else if pending.iter().any(|(other, _)| *other == alias) {
                Some(format!("alias `{alias}` is listed twice (names are not case-sensitive)"))
            } else {
                None
            };
            if let Some(problem) = clash {
                return Err(r.at_key(&item, problem));
            }
            let targets = match item.value.get_ref() {
                DeValue::String(_) => vec![item.clone()],
                DeValue::Array(_) => r.array(&item)?,
                _ => return Err(r.wrong_type(&item, "a target string or an array of targets")),
            };
            if targets.is_empty() {
                return Err(r.at(&item, "an alias needs at least one target"));
            }
            pending.push((alias, targets));
        }
    }

    // "postmaster" is always accepted, so it is a valid target without an entry.
    let is_local = |local: &str| {
        local == "postmaster"
            || users.iter().any(|(user, _)| user == local)
            || pending.iter().any(|(alias, _)| alias == local)
    };
    let mut aliases = Vec::new();
    for (alias, items) in &pending {
        let mut targets = Vec::new();
        for item in items {
            targets.push(r.parsed(item, |s| target(s, &name, is_local))?);
        }
        aliases.push((alias.clone(), targets));
    }
    let catch_all = match section.get("catch_all") {
        Some(item) => Some(r.parsed(&item, |s| target(s, &name, is_local))?),
        None => None,
    };
    let mut send_as = Vec::new();
    if let Some(item) = section.get("send_as") {
        for (key, item) in r.table(&item)?.entries() {
            let user = local_name(key).map_err(|problem| r.at_key(&item, problem))?;
            if !users.iter().any(|(u, _)| *u == user) {
                return Err(r.at_key(&item, format!("`{user}` is not a user of {name}")));
            }
            let mut patterns = Vec::new();
            for element in r.array(&item)? {
                patterns.push(r.parsed(&element, sender_pattern)?);
            }
            send_as.push((user, patterns));
        }
    }
    Ok(DomainConfig { name, users, aliases, catch_all, send_as })
}

/// A `send_as` pattern: `*`, `*@domain` or `local@domain`, lowercased.
fn sender_pattern(s: &str) -> Result<String, String> {
    let lower = s.trim().to_lowercase();
    if lower == "*" {
        return Ok(lower);
    }
    match lower.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.contains('@') => match dns_name(domain) {
            Ok(_) => Ok(lower),
            Err(e) => Err(format!("`{s}` is not a sender pattern: {e}")),
        },
        _ => Err(format!("`{s}` is not a sender pattern: use an address, \"*@domain\" or \"*\"")),
    }
}

fn read_primary_domain(
    r: &Reader<'_>,
    root: &Section<'_>,
    domains: &[DomainConfig],
) -> Result<String, ConfigError> {
    let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
    let Some(item) = root.get("primary_domain") else {
        return names
            .first()
            .map(|name| name.to_string())
            .ok_or_else(|| r.error(None, "domains", "no domains are configured"));
    };
    let name = r.parsed(&item, dns_name)?;
    if !names.contains(&name.as_str()) {
        return Err(
            r.at(&item, format!("`{name}` is not one of the configured domains ({})", names.join(", ")))
        );
    }
    Ok(name)
}

fn read_queue(r: &Reader<'_>, root: &Section<'_>) -> Result<QueueConfig, ConfigError> {
    let mut queue = QueueConfig::default();
    let Some(item) = root.get("queue") else {
        return Ok(queue);
    };
    let s = r.section(&item, QUEUE_KEYS)?;
    let first = r.set(&s, "retry_first", &mut queue.retry_first, Reader::duration)?;
    let max = r.set(&s, "retry_max", &mut queue.retry_max, Reader::duration)?;
    r.set(&s, "lifetime", &mut queue.lifetime, Reader::duration)?;
    r.set(&s, "delay_notice", &mut queue.delay_notice, Reader::duration)?;
    if queue.retry_first > queue.retry_max {
        let culprit = first.as_ref().or(max.as_ref()).unwrap_or(&item);
        let problem = format!(
            "retry_first ({}) is longer than retry_max ({})",
            show_duration(queue.retry_first),
            show_duration(queue.retry_max)
        );
        return Err(r.at(culprit, problem));
    }
    Ok(queue)
}

fn read_outbound(r: &Reader<'_>, root: &Section<'_>) -> Result<Outbound, ConfigError> {
    let mut out = Outbound::default();
    let Some(item) = root.get("outbound") else {
        return Ok(out);
    };
    let s = r.section(&item, OUTBOUND_KEYS)?;
    out.relay = read_smarthost(r, &s)?;
    if out.relay.is_none() {
        for key in ["tls", "username", "password_file"] {
            if let Some(item) = s.get(key) {
                return Err(r.at_key(&item, format!("`{key}` needs `relay`, the smarthost it is for")));
            }
        }
    }
    if let Some(item) = s.get("domains") {
        for (domain, item) in r.table(&item)?.entries() {
            let name = dns_name(domain).map_err(|problem| r.at_key(&item, problem))?;
            let section = r.section(&item, SMARTHOST_KEYS)?;
            match read_smarthost(r, &section)? {
                Some(host) => out.domains.push((name, host)),
                None => return Err(r.at(&item, "needs `relay = \"host:port\"`")),
            }
        }
    }
    if let Some(item) = s.get("nameservers") {
        for element in r.array(&item)? {
            out.nameservers.push(r.parsed(&element, |s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("`{s}` is not an IP address (optionally with :port)"))
            })?);
        }
    }
    r.set(&s, "prefer", &mut out.prefer, |r, item| {
        r.parsed(item, |v| match v {
            "ipv4" | "ipv6" | "any" => Ok(v.to_string()),
            _ => Err(format!("`{v}` is not one of \"ipv4\", \"ipv6\", \"any\"")),
        })
    })?;
    r.set(&s, "mx_port", &mut out.mx_port, Reader::count)?;
    if let Some(item) = s.get("ca_file") {
        out.ca_file = Some(r.path(&item)?);
    }
    r.set(&s, "max_concurrent", &mut out.max_concurrent, Reader::count)?;
    r.set(&s, "connect_timeout", &mut out.connect_timeout, Reader::duration)?;
    r.set(&s, "command_timeout", &mut out.command_timeout, Reader::duration)?;
    r.set(&s, "data_timeout", &mut out.data_timeout, Reader::duration)?;
    Ok(out)
}

/// `relay`, `tls`, `username` and `password_file` of a section, if it has `relay`.
fn read_smarthost(r: &Reader<'_>, s: &Section<'_>) -> Result<Option<Smarthost>, ConfigError> {
    let Some(item) = s.get("relay") else {
        return Ok(None);
    };
    let (host, port) = r.parsed(&item, |v| {
        let (host, port) = v
            .rsplit_once(':')
            .ok_or_else(|| format!("`{v}` needs a port, like \"smtp.provider.net:465\""))?;
        let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_err() {
            dns_name(host)?;
        }
        Ok((host.to_lowercase(), port))
    })?;
    let tls = match s.get("tls") {
        Some(item) => r.parsed(&item, |v| match v {
            "implicit" => Ok(SmarthostTls::Implicit),
            "starttls" => Ok(SmarthostTls::StartTls),
            _ => Err(format!(
                "`{v}` is not \"implicit\" (port 465) or \"starttls\" (port 587); plaintext is not offered"
            )),
        })?,
        None if port == 465 => SmarthostTls::Implicit,
        None => SmarthostTls::StartTls,
    };
    let username = match s.get("username") {
        Some(item) => Some(r.string(&item)?.to_string()),
        None => None,
    };
    let password_file = match s.get("password_file") {
        Some(item) => Some(r.path(&item)?),
        None => None,
    };
    match (&username, &password_file) {
        (Some(_), None) => return Err(r.at(&item, "`username` is set but `password_file` is not")),
        (None, Some(_)) => return Err(r.at(&item, "`password_file` is set but `username` is not")),
        _ => {}
    }
    Ok(Some(Smarthost { host, port, tls, username, password_file }))
}

fn read_limits(r: &Reader<'_>, root: &Section<'_>) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let Some(item) = root.get("limits") else {
        return Ok(limits);
    };
    let s = r.section(&item, LIMIT_KEYS)?;
    let l = &mut limits;
    let size = r.set(&s, "max_message_size", &mut l.max_message_size, Reader::size)?;
    r.set(&s, "max_recipients", &mut l.max_recipients, Reader::count)?;
    r.set(&s, "max_connections", &mut l.max_connections, Reader::count)?;
    r.set(&s, "max_connections_per_ip", &mut l.max_connections_per_ip, Reader::count)?;
    r.set(&s, "max_errors", &mut l.max_errors, Reader::count)?;
    r.set(&s, "command_timeout", &mut l.command_timeout, Reader::duration)?;
    r.set(&s, "data_timeout", &mut l.data_timeout, Reader::duration)?;
    let store = r.set(&s, "store_size", &mut l.store_size, Reader::size)?;
    r.set(&s, "delivery_workers", &mut l.delivery_workers, Reader::count)?;
    if let Err(problem) = check_store_size(limits.store_size, limits.max_message_size, usize::BITS) {
        return Err(r.at(store.as_ref().or(size.as_ref()).unwrap_or(&item), problem));
    }
    Ok(limits)
}

/// LMDB maps the whole store into the address space, so a 32-bit process cannot
/// reserve much; and a store smaller than one message could never accept it.
fn check_store_size(store: u64, max_message: u64, pointer_bits: u32) -> Result<(), String> {
    if pointer_bits < 64 && store > MAX_STORE_32BIT {
        return Err(format!(
            "store_size {} is too big for this 32-bit system: the store is mapped into memory and at most {} fits",
            show_size(store),
            show_size(MAX_STORE_32BIT)
        ));
    }
    if store <= max_message {
        return Err(format!(
            "store_size ({}) must be larger than max_message_size ({})",
            show_size(store),
            show_size(max_message)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid config; broken cases below are built by hand so their line numbers are plain.
    const MINIMAL: &str = "hostname = \"Mail.Example.com.\"\n\
                           data_dir = \"data\"\n\
                           [domains.\"example.com\"]\n\
                           users = { alice = \"\" }\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    #[test]
    fn sizes_use_binary_units() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1024", Some(1024)),
            ("512K", Some(512 * KIB)),
            ("25M", Some(25 * MIB)),
            ("1G", Some(GIB)),
            ("25m", Some(25 * MIB)),
            ("25MB", Some(25 * MIB)),
            ("25MiB", Some(25 * MIB)),
            ("25 mib", Some(25 * MIB)),
            ("100B", Some(100)),
            ("0", Some(0)),
            ("", None),
            ("M", None),
            ("-1M", None),
            ("1.5G", None),
            ("25X", None),
            ("25T", None),
            ("99999999999999999999", None),
            ("17179869184G", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), *want, "parse_size({input:?})");
        }
    }

    #[test]
    fn durations_need_units() {
        let cases: &[(&str, Option<u64>)] = &[
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("4h", Some(4 * 3600)),
            ("5d", Some(5 * 86400)),
            ("1h30m", Some(5400)),
            ("1d2h3m4s", Some(86400 + 7200 + 180 + 4)),
            ("0s", Some(0)),
            ("300", None),
            ("", None),
            ("h", None),
            ("5x", None),
            ("5M", None),
            ("1h30", None),
            ("1.5h", None),
            ("99999999999999999999s", None),
            ("999999999999999999d", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok().map(|d| d.as_secs()), *want, "parse_duration({input:?})");
        }
        let bare = parse_duration("300").unwrap_err();
        assert!(bare.contains("add a unit: s, m, h or d"), "{bare}");
    }

    #[test]
    fn durations_and_sizes_print_back_in_config_spelling() {
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(show_duration(Duration::from_secs(61)), "61s");
        assert_eq!(show_duration(Duration::ZERO), "0s");
        assert_eq!(show_size(25 * MIB), "25M");
        assert_eq!(show_size(1000), "1000");
        assert_eq!(show_size(1536 * MIB), "1536M");
    }

    #[test]
    fn networks_parse_and_refuse_host_bits() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("192.168.1.0/24", Ok("192.168.1.0/24")),
            ("10.0.0.1", Ok("10.0.0.1/32")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("::1/128", Ok("::1/128")),
            ("::1", Ok("::1/128")),
            ("::/0", Ok("::/0")),
            ("fd00::/8", Ok("fd00::/8")),
            ("::ffff:10.0.0.0/104", Ok("10.0.0.0/8")),
            ("192.168.1.1/24", Err("host bits set, did you mean 192.168.1.0/24?")),
            ("fe80::1/10", Err("host bits set, did you mean fe80::/10?")),
            ("10.0.0.0/33", Err("a number from 0 to 32")),
            ("::/129", Err("a number from 0 to 128")),
            ("10.0.0.0/", Err("prefix length")),
            ("10.0.0.0/+8", Err("prefix length")),
            ("lan/24", Err("`lan` is not an IP address")),
            ("", Err("not an IP address")),
        ];
        for (input, want) in cases {
            match (input.parse::<IpNet>(), want) {
                (Ok(net), Ok(text)) => assert_eq!(net.to_string(), *text, "{input}"),
                (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{input}: {err}"),
                (got, _) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn networks_contain_addresses_including_v4_mapped_clients() {
        let cases: &[(&str, &str, bool)] = &[
            ("127.0.0.0/8", "127.0.0.1", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("192.168.1.0/24", "192.168.1.255", true),
            ("192.168.1.0/24", "192.168.2.1", false),
            ("192.168.1.0/24", "::ffff:192.168.1.7", true),
            ("192.168.1.0/24", "::ffff:192.168.2.7", false),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::1/128", "::1", true),
            ("::1/128", "127.0.0.1", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            // A v4-mapped client is an IPv4 client: IPv6 networks do not cover it.
            ("::/0", "::ffff:10.0.0.1", false),
            ("::/0", "10.0.0.1", false),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ];
        for (net, ip, want) in cases {
            let net: IpNet = net.parse().expect("test network");
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(net.contains(ip), *want, "{net} contains {ip}");
        }
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = parse(MINIMAL).expect("minimal config");
        assert_eq!(config.source, "test.toml");
        assert_eq!(config.hostname, "mail.example.com");
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.mail_root, PathBuf::from("data/mail"));
        assert_eq!(config.primary_domain, "example.com");
        assert_eq!(config.listen, Listen::default());
        assert_eq!(config.listen.mx, vec![SocketAddr::from(([0, 0, 0, 0], 25))]);
        assert_eq!(config.tls, Tls::default());
        let nets: Vec<String> = config.relay.trusted_networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
        assert_eq!(config.queue, QueueConfig::default());
        assert_eq!(config.queue.retry_first, Duration::from_secs(300));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.limits.max_message_size, 25 * 1024 * 1024);
        let store = if cfg!(target_pointer_width = "64") { GIB } else { 256 * MIB };
        assert_eq!(config.limits.store_size, store);
    }

    #[test]
    fn domains_keep_file_order_and_names_are_normalised() {
        let text = "hostname = \"mail.example.com\"\n\
                    data_dir = \"/d\"\n\
                    [domains.\"Zeta.Example.\"]\n\
                    users = { Alice = \"\", bob = \"$argon2id$v=19$x\" }\n\
                    aliases = { Info = [\"ALICE\", \"team\"], team = \"bob\", out = \"Someone+tag@Elsewhere.Example\" }\n\
                    catch_all = \"info\"\n\
                    [domains.\"alpha.example\"]\n";
        let config = parse(text).expect("valid config");
        let names: Vec<&str> = config.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["zeta.example", "alpha.example"]);
        assert_eq!(config.primary_domain, "zeta.example");
        let zeta = config.domain("ZETA.example.").expect("domain lookup ignores case");
        assert_eq!(
            zeta.users,
            [("alice".to_string(), String::new()), ("bob".to_string(), "$argon2id$v=19$x".to_string())]
        );
        let aliases: Vec<(&str, Vec<&str>)> =
            zeta.aliases.iter().map(|(a, t)| (a.as_str(), t.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            aliases,
            [
                ("info", vec!["alice", "team"]),
                ("team", vec!["bob"]),
                ("out", vec!["Someone+tag@elsewhere.example"])
            ]
        );
        assert_eq!(zeta.catch_all.as_deref(), Some("info"));
        assert!(config.domain("alpha.example").is_some_and(|d| d.users.is_empty()));
        assert!(config.domain("example.com").is_none());
    }

    #[test]
    fn explicit_settings_override_defaults() {
        let text = format!("{MINIMAL}primary_domain = \"x\"\n");
        // primary_domain after a table header belongs to that table, so it is refused there.
        assert!(parse(&text).is_err());
        let text = "hostname = \"h.example\"\ndata_dir = \"/d\"\nmail_root = \"/m\"\nprimary_domain = \"B.example\"\n\
                    [listen]\nmx = [\"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\nsubmissions = []\n\
                    [tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
                    [relay]\ntrusted_networks = []\n\
                    [domains.\"a.example\"]\n[domains.\"b.example\"]\n\
                    [queue]\nretry_first = \"1m\"\nretry_max = \"1m\"\nlifetime = \"1d\"\ndelay_notice = \"2h\"\n\
                    [limits]\nmax_message_size = 1048576\nmax_recipients = 5\nmax_connections = 6\n\
                    max_connections_per_ip = 2\nmax_errors = 3\ncommand_timeout = \"30s\"\ndata_timeout = \"1m\"\n\
                    store_size = \"64M\"\ndelivery_workers = 1\n";
        let config = parse(text).expect("valid config");
        assert_eq!(config.mail_root, PathBuf::from("/m"));
        assert_eq!(config.primary_domain, "b.example");
        // Port 0 means "any free port", so the same address may appear twice.
        assert_eq!(config.listen.submission, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
        assert!(config.listen.submissions.is_empty());
        assert_eq!(config.tls.cert, Some(PathBuf::from("c.pem")));
        assert!(config.relay.trusted_networks.is_empty());
        assert_eq!(config.queue.lifetime, Duration::from_secs(86400));
        assert_eq!(config.limits.max_message_size, MIB);
        assert_eq!(config.limits.store_size, 64 * MIB);
        assert_eq!(config.limits.max_errors, 3);
    }

    /// (what, config text, expected key, expected line, fragment of the problem)
    const BROKEN: &[(&str, &str, &str, Option<usize>, &str)] = &[
        (
            "unknown key",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nmax_mesage_size = \"1M\"\n",
            "limits.max_mesage_size",
            Some(5),
            "unknown key `max_mesage_size` in [limits] (known keys here: max_message_size, max_recipients,",
        ),
        (
            "unknown top-level key",
            "hostname = \"h.example\"\ndata_dir = \"d\"\nspool = \"x\"\n[domains.\"example.com\"]\n",
            "spool",
            Some(3),
            "unknown key `spool` at the top level (known keys here: hostname,",
        ),
        (
            "misspelled table",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limit]\n",
            "limit",
            Some(4),
            "unknown table [limit] (known keys here: hostname,",
        ),
        (
            "unknown key in a domain",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nuser = {}\n",
            "domains.\"example.com\".user",
            Some(4),
            "(known keys here: users, aliases, catch_all, send_as)",
        ),
        (
            "number where a string is expected",
            "hostname = 42\ndata_dir = \"d\"\n[domains.\"example.com\"]\n",
            "hostname",
            Some(1),
            "expected a string, found the number 42",
        ),
        (
            "string where a number is expected",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nmax_recipients = \"100\"\n",
            "limits.max_recipients",
            Some(5),
            "expected a whole number, found the string \"100\"",
        ),
        (
            "zero count",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\ndelivery_workers = 0\n",
            "limits.delivery_workers",
            Some(5),
            "at least 1, found 0",
        ),
        (
            "bad size",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nmax_message_size = \"25X\"\n",
            "limits.max_message_size",
            Some(5),
            "\"25X\" is not a size: unknown unit `x`",
        ),
        (
            "store smaller than a message",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[limits]\nstore_size = \"10M\"\n",
            "limits.store_size",
            Some(5),
            "store_size (10M) must be larger than max_message_size (25M)",
        ),
        (
            "bad network",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[relay]\ntrusted_networks = [\n  \"127.0.0.0/8\",\n  \"::1/128\",\n  \"192.168.1.1/24\",\n]\n[domains.\"example.com\"]\n",
            "relay.trusted_networks[2]",
            Some(7),
            "host bits set, did you mean 192.168.1.0/24?",
        ),
        (
            "alias to a missing user",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\n[domains.\"example.com\".aliases]\ninfo = [\"alice\", \"carol\"]\n",
            "domains.\"example.com\".aliases.info[1]",
            Some(6),
            "`carol` is not a user or alias of example.com",
        ),
        (
            "send_as for a name that is not a user",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\nsend_as = { bob = [\"*\"] }\n",
            "domains.\"example.com\".send_as.bob",
            Some(5),
            "`bob` is not a user of example.com",
        ),
        (
            "send_as with a bad pattern",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\nsend_as = { alice = [\"*@\"] }\n",
            "domains.\"example.com\".send_as.alice[0]",
            Some(5),
            "`*@` is not a sender pattern",
        ),
        (
            "catch-all to a missing user",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\ncatch_all = \"carol\"\n",
            "domains.\"example.com\".catch_all",
            Some(4),
            "`carol` is not a user or alias",
        ),
        (
            "target with two @",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\naliases = { fwd = \"a@b@example.org\" }\n",
            "domains.\"example.com\".aliases.fwd",
            Some(4),
            "exactly one '@'",
        ),
        (
            "tls cert without key",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[tls]\ncert = \"c.pem\"\n[domains.\"example.com\"]\n",
            "tls.key",
            Some(4),
            "tls.cert is set but tls.key is missing",
        ),
        (
            "tls key without cert",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[tls]\nkey = \"k.pem\"\n[domains.\"example.com\"]\n",
            "tls.cert",
            Some(4),
            "tls.key is set but tls.cert is missing",
        ),
        (
            "duplicate listener",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"0.0.0.0:25\"]\nsubmission = [\"0.0.0.0:25\"]\n[domains.\"example.com\"]\n",
            "listen.submission[0]",
            Some(5),
            "0.0.0.0:25 is listed twice: as listen.mx[0] and as listen.submission[0]",
        ),
        (
            "listener clashing with a default",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"0.0.0.0:587\"]\n[domains.\"example.com\"]\n",
            "listen.mx[0]",
            Some(4),
            "as listen.submission (default)",
        ),
        (
            "listener under a wildcard",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"0.0.0.0:25\", \"127.0.0.1:25\"]\n[domains.\"example.com\"]\n",
            "listen.mx[1]",
            Some(4),
            "127.0.0.1:25 overlaps 0.0.0.0:25",
        ),
        (
            "listener with a host name",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[listen]\nmx = [\"localhost:25\"]\n[domains.\"example.com\"]\n",
            "listen.mx[0]",
            Some(4),
            "`localhost:25` is not an IP address and port",
        ),
        (
            "primary domain not a domain",
            "hostname = \"h.example\"\ndata_dir = \"d\"\nprimary_domain = \"example.org\"\n[domains.\"example.com\"]\n",
            "primary_domain",
            Some(3),
            "`example.org` is not one of the configured domains (example.com)",
        ),
        (
            "alias name equal to a user name",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\" }\naliases = { Alice = \"bob@example.org\" }\n",
            "domains.\"example.com\".aliases.Alice",
            Some(5),
            "alias `alice` has the same name as a user",
        ),
        (
            "bad hash",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"$2y$10$abc\" }\n",
            "domains.\"example.com\".users.alice",
            Some(4),
            "not an argon2id password hash",
        ),
        (
            "user name with a plus",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { \"al+ice\" = \"\" }\n",
            "domains.\"example.com\".users.\"al+ice\"",
            Some(4),
            "'+' separates a tag",
        ),
        (
            "user name that is a path",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { \"../etc\" = \"\" }\n",
            "domains.\"example.com\".users.\"../etc\"",
            Some(4),
            "must not start with a dot",
        ),
        (
            "user listed twice in different case",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"\", ALICE = \"\" }\n",
            "domains.\"example.com\".users.ALICE",
            Some(4),
            "user `alice` is listed twice",
        ),
        (
            "bad domain name",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"exa mple.com\"]\n",
            "domains.\"exa mple.com\"",
            Some(3),
            "' ' is not allowed",
        ),
        (
            "hostname that is an IP address",
            "hostname = \"192.168.1.10\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n",
            "hostname",
            Some(1),
            "is an IP address",
        ),
        (
            "duration without a unit",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[queue]\nlifetime = 5\n",
            "queue.lifetime",
            Some(5),
            "add a unit: s, m, h or d",
        ),
        (
            "zero lifetime",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[queue]\nlifetime = \"0d\"\n",
            "queue.lifetime",
            Some(5),
            "must be longer than 0s",
        ),
        (
            "first retry after the longest",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\n[queue]\nretry_first = \"2h\"\n",
            "queue.retry_first",
            Some(5),
            "retry_first (2h) is longer than retry_max (1h)",
        ),
        (
            "missing hostname",
            "data_dir = \"d\"\n[domains.\"example.com\"]\n",
            "hostname",
            None,
            "this key is required",
        ),
        (
            "missing data_dir",
            "hostname = \"h.example\"\n[domains.\"example.com\"]\n",
            "data_dir",
            None,
            "this key is required",
        ),
        (
            "no domains",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n",
            "domains",
            None,
            "no domains are configured",
        ),
        (
            "empty domains table",
            "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains]\n",
            "domains",
            Some(3),
            "no domains",
        ),
        (
            "syntax error",
            "hostname = \"h.example\"\ndata_dir = d\n",
            "",
            Some(2),
            "string values must be quoted",
        ),
        ("duplicate key", "hostname = \"a\"\nhostname = \"b\"\n", "", Some(2), "duplicate key"),
    ];

    #[test]
    fn broken_configs_name_line_key_and_problem() {
        for (what, text, key, line, fragment) in BROKEN {
            let err = match parse(text) {
                Ok(_) => panic!("{what}: parsed, but should fail"),
                Err(err) => err,
            };
            assert_eq!(err.file, "test.toml", "{what}");
            assert_eq!((err.key.as_str(), err.line), (*key, *line), "{what}: {err}");
            assert!(err.problem.contains(fragment), "{what}: {err}");
        }
    }

    #[test]
    fn a_bad_hash_is_never_echoed() {
        let text = "hostname = \"h.example\"\ndata_dir = \"d\"\n[domains.\"example.com\"]\nusers = { alice = \"hunter2\" }\n";
        let err = parse(text).expect_err("plain password refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.problem.contains("postern passwd alice@example.com"), "{err}");
    }

    #[test]
    fn store_size_is_capped_on_32_bit() {
        assert!(check_store_size(GIB, 25 * MIB, 64).is_ok());
        assert!(check_store_size(2 * GIB, 25 * MIB, 64).is_ok());
        assert!(check_store_size(1536 * MIB, 25 * MIB, 32).is_ok());
        let err = check_store_size(2 * GIB, 25 * MIB, 32).expect_err("too big for 32-bit");
        assert!(
            err.contains("store_size 2G is too big for this 32-bit system") && err.contains("1536M"),
            "{err}"
        );
    }

    #[test]
    fn errors_display_as_file_line_key_problem() {
        let mut err = ConfigError {
            file: "/etc/postern/postern.toml".into(),
            line: Some(7),
            key: "limits.max_message_size".into(),
            problem: "\"25X\" is not a size".into(),
        };
        assert_eq!(
            err.to_string(),
            "/etc/postern/postern.toml:7: limits.max_message_size: \"25X\" is not a size"
        );
        err.line = None;
        err.key.clear();
        assert_eq!(err.to_string(), "/etc/postern/postern.toml: \"25X\" is not a size");
    }

    #[test]
    fn load_reports_an_unreadable_file() {
        let err = Config::load(Path::new("/nonexistent/postern.toml")).expect_err("no such file");
        assert_eq!((err.file.as_str(), err.line, err.key.as_str()), ("/nonexistent/postern.toml", None, ""));
        assert!(err.problem.starts_with("cannot read the config file: "), "{err}");
    }

    #[test]
    fn embedded_default_parses() {
        let config = Config::embedded_default();
        assert_eq!(config.source, "<embedded default>");
        assert_eq!(config.hostname, "localhost");
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.mail_root, PathBuf::from("data/mail"));
        assert_eq!(config.listen.mx, vec![SocketAddr::from(([127, 0, 0, 1], 2525))]);
        assert_eq!(config.listen.submission, vec![SocketAddr::from(([127, 0, 0, 1], 2587))]);
        assert_eq!(config.listen.submissions, vec![SocketAddr::from(([127, 0, 0, 1], 2465))]);
        assert_eq!(config.primary_domain, "example.test");
        let domain = config.domain("example.test").expect("example.test");
        assert_eq!(domain.users, [("alice".to_string(), String::new()), ("bob".to_string(), String::new())]);
        assert_eq!(domain.aliases, [("team".to_string(), vec!["alice".to_string(), "bob".to_string()])]);
    }

    #[test]
    fn shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/postern.toml");
        let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.hostname, "mail.example.com");
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/postern"));
        assert_eq!(config.listen, Listen::default());
        assert_eq!(config.tls, Tls::default());
        assert_eq!(config.queue, QueueConfig::default());
        let mut limits = Limits::default();
        limits.store_size = config.limits.store_size;
        assert_eq!(config.limits, limits);
        let domain = config.domain("example.com").expect("example.com");
        assert!(domain.users.iter().all(|(_, hash)| hash.is_empty() || hash.starts_with("$argon2id$")));
        assert!(domain.catch_all.is_none());
    }

    #[test]
    fn bad_config_files_fail_with_their_expected_text() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("tests/bad_configs") {
            let path = entry.expect("directory entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            let expect = text
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
            match Config::load(&path) {
                Ok(_) => panic!("{}: parsed, but should fail", path.display()),
                Err(err) => assert!(
                    err.to_string().contains(expect),
                    "{}:\n  got  {err}\n  want {expect}",
                    path.display()
                ),
            }
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} bad configs found");
    }
}
