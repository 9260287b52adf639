//! The running server as a whole: starts every part, then answers signals:
//! SIGHUP reloads the config and certificates, SIGTERM and SIGINT stop it
//! cleanly. Also writes `postern status`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use smol::Timer;
use smol::stream::StreamExt as _;

use crate::config::Config;
use crate::deliver::remote::Client;
use crate::queue::admin::span;
use crate::queue::store::unix_now;
use crate::queue::{Queue, SharedClient, SharedSettings};
use crate::server::Server;
use crate::{Settings, control, tls};

/// How long sessions may take to finish their transaction after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a stop waits for deliveries under way once the sessions are over.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);

/// The parts of a running server that signals and `status` reach.
pub struct Daemon {
    settings: SharedSettings,
    clients: SharedClient,
    queue: Arc<Queue>,
    server: Arc<Server>,
    started: Instant,
    /// Every listener bound, by address and name (`mx`, `imaps`...).
    listeners: Vec<(SocketAddr, &'static str)>,
    certificate: Mutex<(PathBuf, Option<u64>)>,
}

/// Runs the server until SIGTERM or SIGINT.
///
/// # Errors
/// When the queue cannot be opened, the certificate cannot be loaded or a
/// listener cannot be bound.
pub fn run(config: Config) -> io::Result<()> {
    let settings = Settings::new(config);
    std::fs::create_dir_all(&settings.config.data_dir).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot create {}: {e}", settings.config.data_dir.display()))
    })?;
    let queue = Arc::new(Queue::open(&settings).map_err(io::Error::other)?);
    let loaded = tls::load(&settings.config).map_err(io::Error::other)?;
    let client =
        Client::new(&settings.config.hostname, &settings.config.outbound).map_err(io::Error::other)?;
    let data_dir = settings.config.data_dir.clone();
    let settings: SharedSettings = Arc::new(RwLock::new(Arc::new(settings)));
    let server = Server::new(Arc::clone(&settings), Arc::clone(&queue), Arc::clone(&loaded.config));
    let control = control::listen(&data_dir)?;
    // Signals are watched from the start, so none is missed while starting.
    let mut signals = Signals::new([Signal::Hup, Signal::Term, Signal::Int])?;

    let ex = Arc::new(smol::Executor::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    for n in 1..threads {
        let ex = Arc::clone(&ex);
        std::thread::Builder::new()
            .name(format!("executor-{n}"))
            .spawn(move || smol::block_on(ex.run(smol::future::pending::<()>())))?;
    }
    smol::block_on(ex.run(async {
        let bound = server.bind().await?;
        let mut listeners = Vec::new();
        for (listener, port) in bound {
            listeners.push((listener.local_addr()?, port.name()));
            ex.spawn(Arc::clone(&server).serve(Arc::clone(&ex), listener, port)).detach();
        }
        for (listener, tls) in crate::imap::server::bind(&server)? {
            listeners.push((listener.local_addr()?, if tls { "imaps" } else { "imap" }));
            ex.spawn(crate::imap::server::serve(Arc::clone(&server), Arc::clone(&ex), listener, tls))
                .detach();
        }
        write_listening(&data_dir, &listeners);
        // The outbound client never delivers to these.
        let client = client.with_listeners(listeners.iter().map(|(a, _)| *a).collect());
        let clients: SharedClient = Arc::new(RwLock::new(Arc::new(client)));
        let daemon = Arc::new(Daemon {
            settings: Arc::clone(&settings),
            clients: Arc::clone(&clients),
            queue: Arc::clone(&queue),
            server: Arc::clone(&server),
            started: Instant::now(),
            listeners,
            certificate: Mutex::new((loaded.path, loaded.expires)),
        });
        ex.spawn(Arc::clone(&queue).run(Arc::clone(&settings), Arc::clone(&clients), Arc::clone(&ex)))
            .detach();
        let status_of = Arc::clone(&daemon);
        let status = Arc::new(move || status_of.status());
        ex.spawn(control::serve(Arc::clone(&ex), control, Arc::clone(&queue), Arc::clone(&settings), status))
            .detach();
        log::info!("postern {} ready", env!("CARGO_PKG_VERSION"));
        while let Some(signal) = signals.next().await {
            match signal {
                Ok(Signal::Hup) => daemon.reload(),
                Ok(Signal::Term | Signal::Int) => break,
                Ok(_) => {}
                Err(e) => log::warn!("signal: {e}"),
            }
        }
        daemon.shut_down().await;
        Ok(())
    }))
}

impl Daemon {
    /// SIGHUP: reads the config file again and, if it is valid, puts it in
    /// force for new sessions and deliveries, with a fresh certificate and
    /// outbound client. Anything wrong is logged and the old config kept.
    fn reload(&self) {
        let current = Arc::clone(&*self.settings.read().unwrap_or_else(|p| p.into_inner()));
        let fresh = if current.config.source.starts_with('<') {
            // The built-in config has no file to re-read; certificates only.
            Ok(current.config.clone())
        } else {
            Config::load(std::path::Path::new(&current.config.source)).map_err(|e| e.to_string())
        };
        let checked = fresh.and_then(|config| {
            let loaded = tls::load(&config).map_err(|e| e.to_string())?;
            let listeners = self.listeners.iter().map(|(a, _)| *a).collect();
            let client = Client::new(&config.hostname, &config.outbound)?.with_listeners(listeners);
            Ok((config, loaded, client))
        });
        let (config, loaded, client) = match checked {
            Ok(all) => all,
            Err(e) => {
                log::error!("SIGHUP: keeping the old config: {e}");
                return;
            }
        };
        if config.listen != current.config.listen || config.data_dir != current.config.data_dir {
            log::warn!("SIGHUP: changes to [listen] and data_dir take effect at the next restart");
        }
        self.server.set_tls(Arc::clone(&loaded.config));
        *self.certificate.lock().unwrap_or_else(|p| p.into_inner()) = (loaded.path, loaded.expires);
        *self.clients.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(client);
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Settings::new(config));
        log::info!("SIGHUP: config and TLS certificate reloaded from {}", current.config.source);
    }

    /// SIGTERM: stop accepting, let sessions finish their transaction for a
    /// while, then return. Deliveries still running are left queued; they
    /// are tried again at the next start (perhaps a second time, never lost).
    async fn shut_down(&self) {
        log::info!("stopping: no new connections; open sessions may finish their mail");
        self.server.shutdown();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.server.open_connections() > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(50)).await;
        }
        // Let deliveries under way finish and their outcomes be written, so
        // a clean stop delivers nothing twice at the next start.
        self.queue.stop(DELIVERY_GRACE).await;
        match self.server.open_connections() {
            0 => log::info!("stopped"),
            n => log::warn!("stopped with {n} session(s) still open after {}s", SHUTDOWN_GRACE.as_secs()),
        }
    }

    /// What `postern status` prints.
    fn status(&self) -> String {
        let now = unix_now();
        let queue_now = self.queue.store().now();
        let mut out = format!(
            "postern {} pid {} up {}\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            span(self.started.elapsed().as_secs())
        );
        for (addr, name) in &self.listeners {
            out.push_str(&format!("listening on {addr} ({name})\n"));
        }
        out.push_str(&format!("connections open: {}\n", self.server.open_connections()));
        out.push_str(&format!("IMAP sessions: {}\n", self.server.imap_sessions()));
        match self.queue.store().messages() {
            Ok(messages) => {
                let oldest = messages.iter().min_by_key(|m| m.queued);
                out.push_str(&format!("queue: {} message(s)", messages.len()));
                if let Some(m) = oldest {
                    let age = span(queue_now.saturating_sub(m.queued));
                    out.push_str(&format!(", oldest {} ({age} old)", m.id));
                }
                out.push('\n');
            }
            Err(e) => out.push_str(&format!("queue: cannot read it: {e}\n")),
        }
        let [delivered, deferred, failed] = self.queue.stats.last_hour(queue_now);
        out.push_str(&format!(
            "last hour: {delivered} delivered, {deferred} deferred, {failed} failed (per recipient)\n"
        ));
        let (path, expires) = self.certificate.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match expires {
            Some(at) if at > now => out.push_str(&format!(
                "TLS certificate {} expires in {} ({})\n",
                path.display(),
                span(at - now),
                crate::date::rfc5322_date(std::time::UNIX_EPOCH + Duration::from_secs(at))
            )),
            Some(_) => out.push_str(&format!("TLS certificate {} HAS EXPIRED\n", path.display())),
            None => out.push_str(&format!("TLS certificate {} (expiry unreadable)\n", path.display())),
        }
        out
    }
}

/// The file in the data dir naming the addresses the server bound, one
/// `address listener` per line: how `postern sendmail` finds a server whose
/// config says port 0.
pub const LISTENING_FILE: &str = "listening";

fn write_listening(data_dir: &std::path::Path, listeners: &[(SocketAddr, &'static str)]) {
    let text: String = listeners.iter().map(|(a, name)| format!("{a} {name}\n")).collect();
    let path = data_dir.join(LISTENING_FILE);
    let tmp = data_dir.join(format!("{LISTENING_FILE}.tmp"));
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
        log::warn!("cannot write {}: {e}", path.display());
    }
}
