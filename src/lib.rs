//! Postern: a single-process mail server for small boards. SMTP in, a durable
//! LMDB queue, Maildir out. `run` wires the parts together; each module owns one
//! thing (see the README's architecture section).
#![deny(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod accounts;
pub mod auth;
pub mod config;
pub mod control;
pub mod daemon;
pub mod date;
pub mod deliver;
pub mod dns;
pub mod domain_name;
pub mod envelope;
pub mod identity;
pub mod imap;
pub mod login;
pub mod logtext;
pub mod mailbox;
pub mod message;
pub mod net;
pub mod queue;
pub mod sendmail;
pub mod server;
pub mod smtp;
pub mod stream;
pub mod tls;

use accounts::Accounts;
use config::Config;

/// The configuration in force and what is derived from it. Sessions hold an
/// `Arc` of the snapshot they started with.
#[derive(Debug)]
pub struct Settings {
    /// The validated config.
    pub config: Config,
    /// Lookups built from `config`.
    pub accounts: Accounts,
}

impl Settings {
    /// Derives the lookups from a validated config.
    pub fn new(config: Config) -> Settings {
        let accounts = Accounts::new(&config);
        Settings { config, accounts }
    }
}

pub use daemon::run;
