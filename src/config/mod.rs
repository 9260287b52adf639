//! The config file: TOML in, typed and validated [`Config`] out.
//! This is the only parser of the config; it reads that one file and touches nothing else.
//!
//! The file is parsed into `toml`'s spanned document tree and walked by hand, so that
//! every error can name the file, the line, the key's dotted path and the bad value.
//! Each value is typed where it is read; a value outside its grammar is an error,
//! never a silent default.
//!
//! The parts: `reader` (the span-keeping walk), the value grammars (`units`:
//! sizes and durations; `net`: [`IpNet`]; `names`: domain, local and sender
//! names), one reader per section (`listen`, `domains`, `limits`, `outbound`),
//! and the types they fill (`sections`, and [`Config`] and [`ConfigError`] here).

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

mod domains;
mod limits;
mod listen;
mod names;
mod net;
mod outbound;
mod reader;
mod sections;
mod units;

pub use net::IpNet;
pub use sections::{
    DomainConfig, Limits, Listen, Outbound, QueueConfig, Relay, Smarthost, SmarthostTls, Tls,
};
pub use units::{parse_duration, parse_size};

use crate::envelope::Domain;
use reader::{Reader, Section};

const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
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
    pub primary_domain: Domain,
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
        let r = Reader::new(text, source);
        let doc = DeTable::parse(text).map_err(|e| r.error(e.span(), "", e.message()))?;
        let root = Section::root(doc.get_ref());
        r.check_keys(&root, TOP_KEYS)?;

        let hostname = match root.get("hostname") {
            Some(item) => r.parsed(&item, |s| names::dns_name(s).map(|name| name.to_string()))?,
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
        let listen = listen::read_listen(&r, &root)?;
        let tls = listen::read_tls(&r, &root)?;
        let relay = listen::read_relay(&r, &root)?;
        let domains = domains::read_domains(&r, &root)?;
        let primary_domain = domains::read_primary_domain(&r, &root, &domains)?;
        let queue = limits::read_queue(&r, &root)?;
        let limits = limits::read_limits(&r, &root)?;
        let outbound = outbound::read_outbound(&r, &root)?;
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
        self.domains.iter().find(|d| d.name.as_str().eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests;
