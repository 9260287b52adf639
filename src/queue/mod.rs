//! The queue: the commit point of every message, and the runner that delivers
//! what is due.
//!
//! - The committer thread owns all LMDB writes and commits whatever is waiting
//!   in one transaction (group commit), so twenty sessions finishing DATA at
//!   once cost one fsync'd commit, not twenty.
//! - The runner task looks for due messages and hands each to a fixed pool of
//!   delivery threads; file writes and fsyncs never run on the executor.
//! - Each delivery thread writes Maildir files and then asks the committer to
//!   record the outcome. A crash between the two causes a duplicate, never a loss.

pub mod schedule;
pub mod store;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smol::channel::{self, Receiver, Sender};
use smol::{Timer, future::FutureExt as _};

use crate::Settings;
use crate::deliver::{DeliveryError, maildir};
use crate::envelope::Route;
use crate::message::delivery_headers;
use schedule::Schedule;
use store::{Message, QueueId, Status, Store, StoreError, Write, unix_now};

/// The largest batch of bytes the committer puts into one transaction; bounds
/// the memory LMDB holds for dirty pages.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// How many due messages the runner reads per scan.
const SCAN_WINDOW: usize = 256;

/// The longest the runner sleeps without looking at the queue.
const MAX_IDLE: Duration = Duration::from_secs(60);

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Event {
    /// Something was queued, or a retry was asked for.
    Wake,
    /// A delivery attempt's outcome is on disk.
    Finished(QueueId),
}

/// The configuration in force, replaceable while running.
pub type SharedSettings = Arc<RwLock<Arc<Settings>>>;

/// The handle sessions and the runner use; cheap to share in an `Arc`.
pub struct Queue {
    store: Arc<Store>,
    writes: Sender<(Write, Done)>,
    events: Sender<Event>,
    events_rx: Receiver<Event>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("store", &self.store).finish()
    }
}

impl Queue {
    /// Opens the store and starts the committer thread.
    ///
    /// # Errors
    /// When the store cannot be opened.
    pub fn open(settings: &Settings) -> Result<Queue, StoreError> {
        let config = &settings.config;
        let store = Arc::new(Store::open(
            &config.data_dir.join("queue"),
            config.limits.store_size,
        )?);
        let (writes, rx) = channel::unbounded::<(Write, Done)>();
        let committer_store = Arc::clone(&store);
        thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer(&committer_store, &rx))
            .map_err(|e| StoreError::Other(format!("cannot start the committer thread: {e}")))?;
        let (events, events_rx) = channel::unbounded();
        Ok(Queue {
            store,
            writes,
            events,
            events_rx,
        })
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh queue id.
    pub fn new_id(&self) -> QueueId {
        self.store.new_id()
    }

    /// Runs `w` in the next group commit and waits until it is durable.
    ///
    /// # Errors
    /// [`StoreError::Full`] when there is no room; other store failures.
    pub async fn write(&self, w: Write) -> Result<(), StoreError> {
        let wakes = matches!(w, Write::Commit { .. });
        let (tx, rx) = channel::bounded(1);
        let done: Done = Box::new(move |r| {
            let _ = tx.try_send(r);
        });
        self.writes
            .send((w, done))
            .await
            .map_err(|_| StoreError::Other("the committer has stopped".into()))?;
        let r = rx
            .recv()
            .await
            .unwrap_or_else(|_| Err(StoreError::Other("the committer has stopped".into())));
        if wakes && r.is_ok() {
            let _ = self.events.try_send(Event::Wake);
        }
        r
    }

    /// Runs the delivery loop until the process ends: looks for due messages
    /// and hands them to `workers` delivery threads.
    pub async fn run(self: Arc<Queue>, settings: SharedSettings) {
        let workers = settings
            .read()
            .map(|s| s.config.limits.delivery_workers)
            .unwrap_or(2)
            .max(1);
        let (jobs, jobs_rx) = channel::bounded::<QueueId>(workers);
        for n in 0..workers {
            let queue = Arc::clone(&self);
            let settings = Arc::clone(&settings);
            let jobs_rx = jobs_rx.clone();
            let spawned = thread::Builder::new()
                .name(format!("deliver-{n}"))
                .spawn(move || {
                    let mut rng = Jitter::new(n as u64);
                    while let Ok(id) = jobs_rx.recv_blocking() {
                        let current = settings.read().map(|s| Arc::clone(&*s)).ok();
                        match current {
                            Some(s) => queue.attempt(id, &s, &mut rng),
                            None => queue.finished(id),
                        }
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start a delivery thread: {e}");
            }
        }
        let mut busy: HashSet<QueueId> = HashSet::new();
        loop {
            let scan = self
                .store
                .due(unix_now(), SCAN_WINDOW.min(workers * 4), |id| {
                    busy.contains(&id)
                });
            let next_due = match scan {
                Ok((ids, next)) => {
                    let mut next = next;
                    for id in ids {
                        if busy.len() >= workers * 2 {
                            next = Some(0);
                            break;
                        }
                        busy.insert(id);
                        if jobs.send(id).await.is_err() {
                            return;
                        }
                    }
                    next
                }
                Err(e) => {
                    log::error!("cannot read the queue: {e}");
                    None
                }
            };
            let wait = match next_due {
                Some(0) => MAX_IDLE,
                Some(at) => Duration::from_secs(at.saturating_sub(unix_now())).min(MAX_IDLE),
                None => MAX_IDLE,
            };
            let event = async { self.events_rx.recv().await.ok() }
                .or(async {
                    Timer::after(wait).await;
                    None
                })
                .await;
            if let Some(Event::Finished(id)) = event {
                busy.remove(&id);
            }
            // Take every other event that is already waiting before scanning.
            while let Ok(e) = self.events_rx.try_recv() {
                if let Event::Finished(id) = e {
                    busy.remove(&id);
                }
            }
        }
    }

    fn finished(&self, id: QueueId) {
        let _ = self.events.try_send(Event::Finished(id));
    }

    /// One delivery attempt for every pending recipient of message `id`; runs
    /// on a delivery thread.
    fn attempt(self: &Arc<Queue>, id: QueueId, settings: &Settings, rng: &mut Jitter) {
        let mut message = match self.store.message(id) {
            Ok(Some(m)) => m,
            Ok(None) => return self.finished(id),
            Err(e) => {
                log::error!(target: "mail", "id={id} status=error error=\"{e}\"");
                return self.finished(id);
            }
        };
        let config = &settings.config;
        let schedule = Schedule::new(&config.queue);
        let now = unix_now();
        let sender = message.sender.as_ref().map(ToString::to_string);
        for i in 0..message.recipients.len() {
            if message.recipients[i].status != Status::Pending {
                continue;
            }
            let route = message.recipients[i].route.clone();
            let result = match &route {
                Route::Local { user, domain } if !settings.accounts.is_user(user, domain) => Err(
                    DeliveryError::Permanent(format!("mailbox {user}@{domain} no longer exists")),
                ),
                Route::Local { user, domain } => {
                    let dir = maildir::path(&config.mail_root, domain.as_str(), user);
                    let headers = delivery_headers(sender.as_deref(), &route.address());
                    maildir::deliver(&dir, &config.hostname, &headers, message.size, |w| {
                        self.store
                            .read_body(id, |piece| w.write_all(piece))
                            .map_err(|e| match e {
                                store::ReadError::Io(io) => io,
                                store::ReadError::Store(s) => std::io::Error::other(s.to_string()),
                            })
                    })
                    .map(|path| path.display().to_string())
                }
                Route::Remote(_) => Err(DeliveryError::Transient(
                    "outbound delivery to other domains is not available yet".into(),
                )),
            };
            let r = &mut message.recipients[i];
            r.attempts += 1;
            let to = route.address();
            match result {
                Ok(path) => {
                    r.status = Status::Delivered;
                    r.last_error.clear();
                    log::info!(target: "mail", "id={id} to=<{to}> status=delivered attempts={} path={path}", r.attempts);
                }
                Err(DeliveryError::Permanent(e)) => {
                    r.status = Status::Failed;
                    log::info!(target: "mail", "id={id} to=<{to}> status=failed error=\"{e}\"");
                    r.last_error = e;
                }
                Err(DeliveryError::Transient(e)) if schedule.expired(message.arrived, now) => {
                    r.status = Status::Failed;
                    log::info!(target: "mail", "id={id} to=<{to}> status=expired error=\"{e}\"");
                    r.last_error = e;
                }
                Err(DeliveryError::Transient(e)) => {
                    log::info!(target: "mail", "id={id} to=<{to}> status=deferred attempts={} error=\"{e}\"", r.attempts);
                    r.last_error = e;
                }
            }
        }
        let attempts = pending_attempts(&message);
        message.next_attempt = now + schedule.delay(attempts.max(1), rng.next()).as_secs().max(1);
        let queue = Arc::clone(self);
        let done: Done = Box::new(move |r| {
            if let Err(e) = r {
                log::error!(target: "mail", "id={id} status=error error=\"cannot record delivery: {e}\"");
            }
            queue.finished(id);
        });
        if self
            .writes
            .send_blocking((Write::Update { message }, done))
            .is_err()
        {
            log::error!("the committer has stopped");
        }
    }
}

/// The most attempts among recipients still pending.
fn pending_attempts(m: &Message) -> u32 {
    m.recipients
        .iter()
        .filter(|r| r.status == Status::Pending)
        .map(|r| r.attempts)
        .max()
        .unwrap_or(0)
}

/// The committer: takes every write waiting, commits them together, then
/// tells each writer. A failed batch is retried one write at a time, so one
/// message too big for the store does not fail the others with it.
fn committer(store: &Store, rx: &Receiver<(Write, Done)>) {
    while let Ok(first) = rx.recv_blocking() {
        let mut weight = first.0.weight();
        let mut batch = vec![first];
        while weight < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    weight += next.0.weight();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (writes, dones): (Vec<Write>, Vec<Done>) = batch.into_iter().unzip();
        match store.apply(&writes) {
            Ok(()) => dones.into_iter().for_each(|d| d(Ok(()))),
            Err(_) if writes.len() > 1 => {
                for (w, d) in writes.iter().zip(dones) {
                    d(store.apply(std::slice::from_ref(w)));
                }
            }
            Err(e) => dones
                .into_iter()
                .for_each(|d| d(Err(StoreError::from_ref(&e)))),
        }
    }
}

impl StoreError {
    fn from_ref(e: &StoreError) -> StoreError {
        match e {
            StoreError::Full => StoreError::Full,
            StoreError::Other(s) => StoreError::Other(s.clone()),
        }
    }
}

/// A small xorshift generator for retry jitter; no need for a crypto RNG.
struct Jitter(u64);

impl Jitter {
    fn new(salt: u64) -> Jitter {
        static SEED: AtomicU64 = AtomicU64::new(0);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let s =
            t ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Jitter((s ^ SEED.fetch_add(1, Ordering::Relaxed)) | 1)
    }

    /// A number in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
