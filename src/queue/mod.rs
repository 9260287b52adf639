//! The queue: the commit point of every message, and the runner that delivers
//! what is due.
//!
//! - The committer thread owns all LMDB writes and commits whatever is waiting
//!   in one transaction (group commit), so twenty sessions finishing DATA at
//!   once cost one fsync'd commit, not twenty.
//! - The runner task looks for due messages and starts an attempt for each,
//!   up to a cap. Maildir writes and fsyncs run on the blocking pool, a few at
//!   a time; remote deliveries are async SMTP conversations.
//! - An attempt delivers, then asks the committer to record the outcome, with
//!   any bounce or delay notice in the same transaction. Local copies are
//!   recorded as soon as they are durable, before any remote conversation of
//!   the same message ends. A crash between a delivery and its record loses
//!   nothing: a local copy is found again by its name and not written twice;
//!   a remote one may be sent again.

pub mod admin;
mod attempt;
pub mod bounce;
pub mod clock;
mod committer;
pub mod record;
mod release;
pub mod schedule;
pub mod settle;
pub mod stats;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smol::channel::{self, Receiver, Sender};
use smol::{Executor, Timer, future::FutureExt as _};

use crate::Settings;
use crate::deliver::maildir;
use crate::deliver::remote::Client;
use crate::envelope::Route;
use committer::Done;
use store::{Message, QueueId, Store, StoreError, Write};

/// How many due messages the runner reads per scan, and the most attempts
/// under way at once. Remote attempts are capped lower, by `[outbound]
/// max_concurrent`; local ones wait only for the Maildir writers, and the
/// more of them wait together, the fewer trips to the disk they take.
const SCAN_WINDOW: usize = 256;

/// The longest the runner sleeps without looking at the queue.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// A delivery report to queue with an outcome: its record and its bytes.
type Report = Option<Box<(Message, Vec<u8>)>>;

/// An admin change waiting for its message, and where its answer goes.
type AdminRequest = (QueueId, admin::Command, Sender<Result<String, String>>);

/// How long a message whose record cannot be read is left alone.
const HOLD_BROKEN: u64 = 3600;

/// How soon a failed outcome write is tried again.
const REWRITE_DELAY: Duration = Duration::from_secs(5);

enum Event {
    /// Something was queued, or a retry was asked for.
    Wake,
    /// A delivery attempt has stopped talking to other servers; its outcome
    /// is yet to be written.
    Delivered(QueueId),
    /// A delivery attempt is over and its outcome is on disk; with `hold`,
    /// leave the message alone until that queue-clock time whatever the
    /// store says.
    Finished { id: QueueId, hold: Option<u64> },
    /// The outcome of an attempt could not be written. The deliveries it
    /// records have happened: write it again rather than deliver again.
    Unrecorded(Message, Report),
    /// `postern queue delete` or `bounce`, run when no attempt is under way.
    Admin(QueueId, admin::Command, Sender<Result<String, String>>),
}

/// Where a data dir keeps the store: LMDB's `data.mdb` and `lock.mdb`, and
/// the lock file that lets one process at a time open them.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("queue")
}

/// The configuration in force, replaceable while running.
pub type SharedSettings = Arc<RwLock<Arc<Settings>>>;

/// The outbound client in force, replaced when the config is reloaded.
pub type SharedClient = Arc<RwLock<Arc<Client>>>;

/// The handle sessions and the runner use; cheap to share in an `Arc`.
pub struct Queue {
    store: Arc<Store>,
    /// Outcomes of the last hour, for `postern status`.
    pub stats: stats::Stats,
    /// Writes local deliveries in batches.
    maildir: maildir::Writer,
    writes: Sender<(Write, Done)>,
    events: Sender<Event>,
    events_rx: Receiver<Event>,
    /// Set when the server stops: no new attempts.
    stopping: AtomicBool,
    /// Attempts and admin changes under way, as the runner last saw them.
    under_way: AtomicUsize,
    /// The first queue id this process made: every message below it was
    /// queued by an earlier one (the store's id floor sees to that).
    first_id: QueueId,
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
        let store = Arc::new(Store::open(&dir(&config.data_dir), config.limits.store_size)?);
        let writes = committer::start(Arc::clone(&store))?;
        let (events, events_rx) = channel::unbounded();
        let maildir = maildir::Writer::start(config.limits.delivery_workers)
            .map_err(|e| StoreError::Other(format!("cannot start the Maildir writers: {e}")))?;
        let first_id = store.new_id();
        Ok(Queue {
            first_id,
            store,
            stats: stats::Stats::default(),
            maildir,
            writes,
            events,
            events_rx,
            stopping: AtomicBool::new(false),
            under_way: AtomicUsize::new(0),
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
        let r =
            rx.recv().await.unwrap_or_else(|_| Err(StoreError::Other("the committer has stopped".into())));
        if wakes && r.is_ok() {
            let _ = self.events.try_send(Event::Wake);
        }
        r
    }

    /// Starts no more attempts, waits (up to `grace`) for those under way to
    /// finish and their outcomes to be written, then commits whatever waits.
    /// Deliveries cut off by `grace` are tried again at the next start.
    pub async fn stop(&self, grace: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake();
        let deadline = Instant::now() + grace;
        while self.under_way.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(20)).await;
        }
        if let Err(e) = self.sync().await {
            log::error!("cannot record the last delivery outcomes: {e}");
        }
    }

    /// Commits every write that is waiting, and returns once it is on disk.
    ///
    /// # Errors
    /// As [`Queue::write`].
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.write(Write::Sync).await
    }

    /// Runs the delivery loop until the process ends: looks for due messages
    /// and runs an attempt for each as a task on `ex`, at most
    /// `[outbound] max_concurrent` at once.
    pub async fn run(
        self: Arc<Queue>,
        settings: SharedSettings,
        clients: SharedClient,
        ex: Arc<Executor<'static>>,
    ) {
        let current = |s: &SharedSettings| Arc::clone(&*s.read().unwrap_or_else(|p| p.into_inner()));
        // Messages with an attempt or admin change under way; true for those
        // with remote recipients.
        let mut busy: HashMap<QueueId, bool> = HashMap::new();
        let mut remote_waiting: HashSet<QueueId> = HashSet::new();
        let mut held: HashMap<QueueId, u64> = HashMap::new();
        let mut unrecorded: Vec<(Message, Report)> = Vec::new();
        let mut admin_waiting: Vec<AdminRequest> = Vec::new();
        let mut jitter = Jitter::new(0);
        loop {
            let settings_now = current(&settings);
            let remote_cap = settings_now.config.outbound.max_concurrent.max(1);
            let client = Arc::clone(&*clients.read().unwrap_or_else(|p| p.into_inner()));
            client.close_idle().await;
            let now = self.store.now();
            held.retain(|_, until| *until > now);
            for (message, report) in unrecorded.drain(..) {
                self.record(message, report);
            }
            // Admin changes wait for the message's attempt to end, then keep
            // attempts away while they run.
            let mut still_waiting = Vec::new();
            for (id, cmd, reply) in admin_waiting.drain(..) {
                if busy.contains_key(&id) {
                    still_waiting.push((id, cmd, reply));
                    continue;
                }
                busy.insert(id, false);
                let queue = Arc::clone(&self);
                let settings = Arc::clone(&settings_now);
                ex.spawn(async move {
                    let result = admin::run(&queue, &settings, &cmd).await;
                    let _ = reply.try_send(result);
                    queue.finished(id, None);
                })
                .detach();
            }
            admin_waiting = still_waiting;
            // While the remote places are all taken, the remote messages seen
            // waiting are passed over, so local mail behind a remote backlog
            // is still found.
            let remote_full = busy.values().filter(|&&r| r).count() >= remote_cap;
            if !remote_full {
                remote_waiting.clear();
            }
            let skip = |id: QueueId| {
                busy.contains_key(&id) || held.contains_key(&id) || remote_waiting.contains(&id)
            };
            let mut wait = MAX_IDLE;
            let scan = if self.stopping.load(Ordering::SeqCst) {
                Ok((Vec::new(), None))
            } else {
                self.store.due(now, SCAN_WINDOW, skip)
            };
            match scan {
                Ok((ids, next)) => {
                    if let Some(at) = next {
                        wait = Duration::from_secs(at.saturating_sub(now)).min(MAX_IDLE);
                    }
                    let mut remote_busy = busy.values().filter(|&&r| r).count();
                    for id in ids {
                        // Finished events free places; they wake the loop.
                        if busy.len() >= SCAN_WINDOW {
                            break;
                        }
                        let remote = self.store.message(id).ok().flatten().is_some_and(|m| has_remote(&m));
                        if remote && remote_busy >= remote_cap {
                            remote_waiting.insert(id);
                            continue;
                        }
                        remote_busy += usize::from(remote);
                        busy.insert(id, remote);
                        log::debug!("runner: attempt {id} ({} busy, {remote_busy} remote)", busy.len());
                        let task = Arc::clone(&self).attempt_guarded(
                            id,
                            Arc::clone(&settings_now),
                            Arc::clone(&client),
                            jitter.next(),
                        );
                        ex.spawn(task).detach();
                    }
                }
                Err(e) => log::error!("cannot read the queue: {e}"),
            }
            if let Some(&until) = held.values().min() {
                wait = wait.min(Duration::from_secs(until.saturating_sub(now)));
            }
            self.under_way.store(busy.len(), Ordering::SeqCst);
            let first = async { self.events_rx.recv().await.ok() }
                .or(async {
                    Timer::after(wait).await;
                    None
                })
                .await;
            // Take every other event that is already waiting before scanning.
            for event in first.into_iter().chain(std::iter::from_fn(|| self.events_rx.try_recv().ok())) {
                match event {
                    Event::Wake => {}
                    Event::Delivered(id) => {
                        if let Some(remote) = busy.get_mut(&id) {
                            *remote = false;
                        }
                    }
                    Event::Finished { id, hold } => {
                        busy.remove(&id);
                        if let Some(until) = hold {
                            held.insert(id, until);
                        }
                    }
                    Event::Unrecorded(message, report) => unrecorded.push((message, report)),
                    Event::Admin(id, cmd, reply) => admin_waiting.push((id, cmd, reply)),
                }
            }
            if !unrecorded.is_empty() {
                Timer::after(REWRITE_DELAY).await;
            }
        }
    }

    /// Runs one attempt; a panic in it ends the attempt, not the runner, and
    /// the message is left alone for an hour.
    async fn attempt_guarded(
        self: Arc<Queue>,
        id: QueueId,
        settings: Arc<Settings>,
        client: Arc<Client>,
        jitter: f64,
    ) {
        let attempt = std::panic::AssertUnwindSafe(self.attempt(id, &settings, &client, jitter));
        if attempt.catch_unwind().await.is_err() {
            log::error!(target: "mail", "id={id} status=error error=\"delivery panicked; held for an hour\"");
            self.finished(id, Some(self.store.now() + HOLD_BROKEN));
        }
    }

    fn finished(&self, id: QueueId, hold: Option<u64>) {
        let _ = self.events.try_send(Event::Finished { id, hold });
    }

    /// Runs `postern queue delete` or `bounce` for a running server: after any
    /// attempt on the message has ended, and with no attempt starting meanwhile.
    ///
    /// # Errors
    /// As [`admin::run`].
    pub async fn admin(&self, id: QueueId, cmd: admin::Command) -> Result<String, String> {
        let (tx, rx) = channel::bounded(1);
        self.events
            .send(Event::Admin(id, cmd, tx))
            .await
            .map_err(|_| "the queue runner has stopped".to_string())?;
        rx.recv().await.map_err(|_| "the queue runner has stopped".to_string())?
    }

    /// Asks for every due message to be looked at now.
    pub fn wake(&self) {
        let _ = self.events.try_send(Event::Wake);
    }

    /// Has the committer commit what waits now, without waiting for the
    /// answer.
    fn commit_now(&self) {
        let done: Done = Box::new(|_| {});
        if self.writes.try_send((Write::Sync, done)).is_err() {
            log::error!("the committer has stopped");
        }
    }

    /// Writes the state of a message's recipients while its attempt goes on.
    /// Nothing waits for it; should it fail, the attempt's outcome records
    /// the same again.
    fn progress(&self, message: Message) {
        let id = message.id;
        let done: Done = Box::new(move |r| {
            if let Err(e) = r {
                log::warn!(target: "mail", "id={id} status=error error=\"cannot record local deliveries yet: {e}\"");
            }
        });
        if self.writes.try_send((Write::Progress { message }, done)).is_err() {
            log::error!("the committer has stopped");
        }
    }

    /// Writes the outcome of an attempt, with the report it caused; the
    /// message stays busy until the write is on disk, and a failed write is
    /// tried again without delivering again.
    fn record(self: &Arc<Queue>, message: Message, report: Option<Box<(Message, Vec<u8>)>>) {
        let queue = Arc::clone(self);
        let copy = message.clone();
        let report_copy = report.clone();
        let id = message.id;
        let wakes = report.is_some();
        let done: Done = Box::new(move |r| match r {
            Ok(()) => {
                queue.finished(id, None);
                if wakes {
                    queue.wake();
                }
            }
            Err(e) => {
                log::error!(target: "mail", "id={id} status=error error=\"cannot record delivery, will retry: {e}\"");
                let _ = queue.events.try_send(Event::Unrecorded(copy, report_copy));
            }
        });
        if self.writes.try_send((Write::Update { message, report }, done)).is_err() {
            log::error!("the committer has stopped");
        }
    }
}

/// Whether an attempt on `m` would speak SMTP to another server.
fn has_remote(m: &Message) -> bool {
    m.recipients.iter().any(|r| r.status == store::Status::Pending && matches!(r.route, Route::Remote(_)))
}

/// A small xorshift generator for retry jitter; no need for a crypto RNG.
struct Jitter(u64);

impl Jitter {
    fn new(salt: u64) -> Jitter {
        static SEED: AtomicU64 = AtomicU64::new(0);
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let s = t ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
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
