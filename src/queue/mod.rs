//! The queue: the commit point of every message, and the runner that delivers
//! what is due. This module holds the [`Queue`] handle that sessions, the
//! runner and the control socket share; the parts live beside it:
//!
//! - `record`: the records and their codec; `store`: LMDB, the only user of
//!   heed; `release`: the data file's mapping and giving its pages back;
//!   `reserve`: room for the data file written out ahead of LMDB.
//! - `committer`: the thread that owns all LMDB writes and commits whatever is
//!   waiting in one transaction (group commit), so twenty sessions finishing
//!   DATA at once cost one fsync'd commit, not twenty.
//! - `runner`: the task that looks for due messages and starts an attempt for
//!   each, up to a cap. Maildir writes and fsyncs run on the blocking pool, a
//!   few at a time; remote deliveries are async SMTP conversations.
//! - `attempt`: one attempt delivers, then asks the committer to record the
//!   outcome `settle` decides, with any bounce or delay notice (`bounce`) in
//!   the same transaction. Local copies are recorded as soon as they are
//!   durable, before any remote conversation of the same message ends. A
//!   crash between a delivery and its record loses nothing: a local copy is
//!   found again by its name and not written twice; a remote one may be sent
//!   again.
//! - `schedule` and `clock`: when, on the queue clock; `stats`: the last
//!   hour's counts; `admin`: `postern queue`.

pub mod admin;
mod attempt;
pub mod bounce;
pub mod clock;
mod committer;
pub mod record;
mod release;
mod reserve;
mod runner;
pub mod schedule;
pub mod settle;
pub mod stats;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use smol::channel::{self, Receiver, Sender};
use smol::{Executor, Timer};

use crate::Settings;
use crate::deliver::remote::Client;
use crate::mailbox;
use committer::Done;
use store::{Message, QueueId, Store, StoreError, Write};

/// A delivery report to queue with an outcome: its record and its bytes.
type Report = Option<Box<(Message, Vec<u8>)>>;

/// How long a message whose record cannot be read is left alone.
const HOLD_BROKEN: u64 = 3600;

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
    maildir: mailbox::Writer,
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
        let maildir = mailbox::Writer::start(config.limits.delivery_workers)
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
        runner::Runner::new(self, settings, clients, ex).run().await;
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
