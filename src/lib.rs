//! Postern: a single-process mail server for small boards. SMTP in, a durable
//! LMDB queue, Maildir out. `run` wires the parts together; each module owns one
//! thing (see the README's architecture section).
#![deny(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod accounts;
pub mod auth;
pub mod config;
pub mod control;
pub mod deliver;
pub mod dns;
pub mod envelope;
pub mod message;
pub mod queue;
pub mod server;
pub mod smtp;
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

/// Runs the server until the process is stopped.
///
/// # Errors
/// When the queue cannot be opened or a listener cannot be bound.
pub fn run(config: Config) -> std::io::Result<()> {
    use std::sync::{Arc, RwLock};
    let settings = Settings::new(config);
    std::fs::create_dir_all(&settings.config.data_dir).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot create {}: {e}", settings.config.data_dir.display()))
    })?;
    let queue = Arc::new(queue::Queue::open(&settings).map_err(std::io::Error::other)?);
    let tls = tls::load(&settings.config).map_err(std::io::Error::other)?;
    let client = Arc::new(
        deliver::remote::Client::new(&settings.config.hostname, &settings.config.outbound)
            .map_err(std::io::Error::other)?,
    );
    let shared: queue::SharedSettings = Arc::new(RwLock::new(Arc::new(settings)));
    let ex = Arc::new(smol::Executor::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    for n in 1..threads {
        let ex = Arc::clone(&ex);
        std::thread::Builder::new()
            .name(format!("executor-{n}"))
            .spawn(move || smol::block_on(ex.run(smol::future::pending::<()>())))?;
    }
    let server = server::Server::new(Arc::clone(&shared), Arc::clone(&queue), tls);
    let control = control::listen(&shared.read().unwrap_or_else(|p| p.into_inner()).config.data_dir)?;
    smol::block_on(ex.run(async {
        let listeners = server.bind().await?;
        for (listener, port) in listeners {
            ex.spawn(Arc::clone(&server).serve(Arc::clone(&ex), listener, port)).detach();
        }
        ex.spawn(Arc::clone(&queue).run(Arc::clone(&shared), client, Arc::clone(&ex))).detach();
        ex.spawn(control::serve(control, Arc::clone(&queue), Arc::clone(&shared))).detach();
        ex.spawn(reload_on_sighup(Arc::clone(&server), shared)).detach();
        log::info!("postern {} ready", env!("CARGO_PKG_VERSION"));
        smol::future::pending::<std::io::Result<()>>().await
    }))
}

/// Re-reads the TLS certificate and key on SIGHUP (a Let's Encrypt renewal)
/// without dropping connections; a bad pair is logged and the old one kept.
async fn reload_on_sighup(server: std::sync::Arc<server::Server>, settings: queue::SharedSettings) {
    use smol::stream::StreamExt as _;
    let mut signals = match async_signal::Signals::new([async_signal::Signal::Hup]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot watch for SIGHUP: {e}");
            return;
        }
    };
    while signals.next().await.is_some() {
        let current = std::sync::Arc::clone(&*settings.read().unwrap_or_else(|p| p.into_inner()));
        match tls::load(&current.config) {
            Ok(tls) => {
                server.set_tls(tls);
                log::info!("SIGHUP: TLS certificate reloaded");
            }
            Err(e) => log::error!("SIGHUP: keeping the old TLS certificate: {e}"),
        }
    }
}
