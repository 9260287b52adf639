//! The runner: the task that looks for due messages and starts an attempt
//! for each, up to the caps, and runs `postern queue delete` and `bounce`
//! between attempts. [`Runner`] holds its state; [`Places`], the pure part
//! of it, says which messages are busy, held or passed over.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smol::channel::Sender;
use smol::{Executor, Timer, future::FutureExt as _};

use super::store::{Message, QueueId, Status};
use super::{Event, HOLD_BROKEN, Queue, Report, SharedClient, SharedSettings, admin};
use crate::Settings;
use crate::deliver::remote::Client;
use crate::envelope::Route;

/// How many due messages the runner reads per scan, and the most attempts
/// under way at once. Remote attempts are capped lower, by `[outbound]
/// max_concurrent`; local ones wait only for the Maildir writers, and the
/// more of them wait together, the fewer trips to the disk they take.
const SCAN_WINDOW: usize = 256;

/// The longest the runner sleeps without looking at the queue.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// How soon a failed outcome write is tried again.
const REWRITE_DELAY: Duration = Duration::from_secs(5);

/// An admin change waiting for its message, and where its answer goes.
type AdminRequest = (QueueId, admin::Command, Sender<Result<String, String>>);

/// Which messages the runner must not start an attempt on now. Pure.
#[derive(Debug, Default)]
struct Places {
    /// Messages with an attempt or admin change under way; true for those
    /// whose attempt still talks to other servers.
    busy: HashMap<QueueId, bool>,
    /// Remote messages passed over while every remote place was taken.
    remote_waiting: HashSet<QueueId>,
    /// Messages left alone until a queue-clock time.
    held: HashMap<QueueId, u64>,
}

impl Places {
    /// Ends the holds that are over at `now`.
    fn expire_holds(&mut self, now: u64) {
        self.held.retain(|_, until| *until > now);
    }

    /// How many attempts talk to other servers.
    fn remote_busy(&self) -> usize {
        self.busy.values().filter(|&&r| r).count()
    }

    /// Readies a scan: while the remote places are all taken, the remote
    /// messages seen waiting are passed over, so local mail behind a remote
    /// backlog is still found; once a place is free they are looked at again.
    fn begin_scan(&mut self, remote_cap: usize) {
        if self.remote_busy() < remote_cap {
            self.remote_waiting.clear();
        }
    }

    /// Whether the scan skips `id`.
    fn skips(&self, id: QueueId) -> bool {
        self.busy.contains_key(&id) || self.held.contains_key(&id) || self.remote_waiting.contains(&id)
    }

    /// Whether the attempts under way fill the window.
    fn window_full(&self) -> bool {
        self.busy.len() >= SCAN_WINDOW
    }

    /// Takes a place for an attempt on `id`, `remote` when it would talk to
    /// other servers, with `remote_busy` of the `remote_cap` remote places
    /// taken; false, and `id` passed over, when no remote place is left.
    fn admit(&mut self, id: QueueId, remote: bool, remote_busy: &mut usize, remote_cap: usize) -> bool {
        if remote && *remote_busy >= remote_cap {
            self.remote_waiting.insert(id);
            return false;
        }
        *remote_busy += usize::from(remote);
        self.busy.insert(id, remote);
        true
    }

    /// Takes `id` for an admin change; false while an attempt on it is under
    /// way.
    fn admit_admin(&mut self, id: QueueId) -> bool {
        if self.busy.contains_key(&id) {
            return false;
        }
        self.busy.insert(id, false);
        true
    }

    /// The attempt on `id` stopped talking to other servers.
    fn delivered(&mut self, id: QueueId) {
        if let Some(remote) = self.busy.get_mut(&id) {
            *remote = false;
        }
    }

    /// The attempt or admin change on `id` is over; with `hold`, leave it
    /// alone until then.
    fn finished(&mut self, id: QueueId, hold: Option<u64>) {
        self.busy.remove(&id);
        if let Some(until) = hold {
            self.held.insert(id, until);
        }
    }

    /// When the first hold ends.
    fn next_release(&self) -> Option<u64> {
        self.held.values().min().copied()
    }
}

/// The runner's state between two looks at the queue.
pub(super) struct Runner {
    queue: Arc<Queue>,
    settings: SharedSettings,
    clients: SharedClient,
    ex: Arc<Executor<'static>>,
    places: Places,
    /// Outcomes whose write failed, to write again.
    unrecorded: Vec<(Message, Report)>,
    /// Admin changes waiting for their message's attempt to end.
    admin_waiting: Vec<AdminRequest>,
    jitter: Jitter,
}

impl Runner {
    /// A runner for `queue` that starts its attempts on `ex`.
    pub(super) fn new(
        queue: Arc<Queue>,
        settings: SharedSettings,
        clients: SharedClient,
        ex: Arc<Executor<'static>>,
    ) -> Runner {
        Runner {
            queue,
            settings,
            clients,
            ex,
            places: Places::default(),
            unrecorded: Vec::new(),
            admin_waiting: Vec::new(),
            jitter: Jitter::new(0),
        }
    }

    /// Looks at the queue, starts what is due, and waits for the next
    /// event or due time, until the process ends.
    pub(super) async fn run(mut self) {
        loop {
            self.turn().await;
        }
    }

    /// One look at the queue and one wait.
    async fn turn(&mut self) {
        let current = |s: &SharedSettings| Arc::clone(&*s.read().unwrap_or_else(|p| p.into_inner()));
        let settings = current(&self.settings);
        let remote_cap = settings.config.outbound.max_concurrent.max(1);
        let client = Arc::clone(&*self.clients.read().unwrap_or_else(|p| p.into_inner()));
        client.close_idle().await;
        let now = self.queue.store.now();
        self.places.expire_holds(now);
        for (message, report) in self.unrecorded.drain(..) {
            self.queue.record(message, report);
        }
        self.start_admin(&settings);
        let mut wait = self.start_due(now, remote_cap, &settings, &client);
        if let Some(until) = self.places.next_release() {
            wait = wait.min(Duration::from_secs(until.saturating_sub(now)));
        }
        self.queue.under_way.store(self.places.busy.len(), Ordering::SeqCst);
        let first = async { self.queue.events_rx.recv().await.ok() }
            .or(async {
                Timer::after(wait).await;
                None
            })
            .await;
        // Take every other event that is already waiting before scanning.
        let rx = &self.queue.events_rx;
        for event in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match event {
                Event::Wake => {}
                Event::Delivered(id) => self.places.delivered(id),
                Event::Finished { id, hold } => self.places.finished(id, hold),
                Event::Unrecorded(message, report) => self.unrecorded.push((message, report)),
                Event::Admin(id, cmd, reply) => self.admin_waiting.push((id, cmd, reply)),
            }
        }
        if !self.unrecorded.is_empty() {
            Timer::after(REWRITE_DELAY).await;
        }
    }

    /// Starts the admin changes whose message has no attempt under way; they
    /// keep attempts away while they run.
    fn start_admin(&mut self, settings: &Arc<Settings>) {
        let mut still_waiting = Vec::new();
        for (id, cmd, reply) in self.admin_waiting.drain(..) {
            if !self.places.admit_admin(id) {
                still_waiting.push((id, cmd, reply));
                continue;
            }
            let queue = Arc::clone(&self.queue);
            let settings = Arc::clone(settings);
            self.ex
                .spawn(async move {
                    let result = admin::run(&queue, &settings, &cmd).await;
                    let _ = reply.try_send(result);
                    queue.finished(id, None);
                })
                .detach();
        }
        self.admin_waiting = still_waiting;
    }

    /// Starts an attempt on each message due at `now` that has a place;
    /// returns how long to wait for the next one to come due.
    fn start_due(
        &mut self,
        now: u64,
        remote_cap: usize,
        settings: &Arc<Settings>,
        client: &Arc<Client>,
    ) -> Duration {
        let queue = &self.queue;
        self.places.begin_scan(remote_cap);
        let mut wait = MAX_IDLE;
        let scan = if queue.stopping.load(Ordering::SeqCst) {
            Ok((Vec::new(), None))
        } else {
            let places = &self.places;
            queue.store.due(now, SCAN_WINDOW, |id| places.skips(id))
        };
        let (ids, next) = match scan {
            Ok(due) => due,
            Err(e) => {
                log::error!("cannot read the queue: {e}");
                return wait;
            }
        };
        if let Some(at) = next {
            wait = Duration::from_secs(at.saturating_sub(now)).min(MAX_IDLE);
        }
        let mut remote_busy = self.places.remote_busy();
        for id in ids {
            // Finished events free places; they wake the loop.
            if self.places.window_full() {
                break;
            }
            let remote = queue.store.message(id).ok().flatten().is_some_and(|m| has_remote(&m));
            if !self.places.admit(id, remote, &mut remote_busy, remote_cap) {
                continue;
            }
            log::debug!("runner: attempt {id} ({} busy, {remote_busy} remote)", self.places.busy.len());
            let task = attempt_guarded(
                Arc::clone(queue),
                id,
                Arc::clone(settings),
                Arc::clone(client),
                self.jitter.next(),
            );
            self.ex.spawn(task).detach();
        }
        wait
    }
}

/// Runs one attempt; a panic in it ends the attempt, not the runner, and
/// the message is left alone for an hour.
async fn attempt_guarded(
    queue: Arc<Queue>,
    id: QueueId,
    settings: Arc<Settings>,
    client: Arc<Client>,
    jitter: f64,
) {
    let attempt = std::panic::AssertUnwindSafe(queue.attempt(id, &settings, &client, jitter));
    if attempt.catch_unwind().await.is_err() {
        log::error!(target: "mail", "id={id} status=error error=\"delivery panicked; held for an hour\"");
        queue.finished(id, Some(queue.store.now() + HOLD_BROKEN));
    }
}

/// Whether an attempt on `m` would speak SMTP to another server.
fn has_remote(m: &Message) -> bool {
    m.recipients.iter().any(|r| r.status == Status::Pending && matches!(r.route, Route::Remote(_)))
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

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 2;

    /// Takes places for `ids` as one scan does; returns those started.
    fn scan(places: &mut Places, ids: &[(u64, bool)]) -> Vec<u64> {
        places.begin_scan(CAP);
        let mut remote_busy = places.remote_busy();
        let mut started = Vec::new();
        for &(id, remote) in ids {
            let id = QueueId(id);
            if places.skips(id) {
                continue;
            }
            if places.window_full() {
                break;
            }
            if places.admit(id, remote, &mut remote_busy, CAP) {
                started.push(id.0);
            }
        }
        started
    }

    #[test]
    fn remote_messages_past_the_cap_are_passed_over_and_local_ones_still_start() {
        let mut places = Places::default();
        assert_eq!(scan(&mut places, &[(1, true), (2, true), (3, true), (4, false)]), [1, 2, 4]);
        assert!(places.skips(QueueId(3)), "passed over while the remote places are taken");
        assert_eq!(scan(&mut places, &[(3, true), (5, false)]), [5]);
        // The attempt on 1 stops talking: its remote place is free, 3 is
        // looked at again while 1 is still busy.
        places.delivered(QueueId(1));
        assert!(places.skips(QueueId(1)), "busy until its outcome is written");
        assert_eq!(scan(&mut places, &[(1, true), (3, true), (6, true)]), [3]);
        assert!(places.skips(QueueId(6)));
    }

    #[test]
    fn the_window_bounds_the_attempts_under_way() {
        let mut places = Places::default();
        let ids: Vec<(u64, bool)> = (0..SCAN_WINDOW as u64 + 10).map(|id| (id, false)).collect();
        assert_eq!(scan(&mut places, &ids).len(), SCAN_WINDOW);
        assert!(places.window_full());
        places.finished(QueueId(0), None);
        assert!(!places.window_full());
        assert_eq!(scan(&mut places, &ids[1..]), [SCAN_WINDOW as u64], "the freed place goes to the next");
    }

    #[test]
    fn a_finished_message_with_a_hold_is_left_alone_until_it_ends() {
        let mut places = Places::default();
        scan(&mut places, &[(1, false), (2, false)]);
        places.finished(QueueId(1), Some(500));
        places.finished(QueueId(2), Some(300));
        assert_eq!(places.next_release(), Some(300));
        places.expire_holds(299);
        assert!(places.skips(QueueId(1)) && places.skips(QueueId(2)));
        places.expire_holds(300);
        assert!(!places.skips(QueueId(2)), "a hold ends at its time");
        assert_eq!((places.skips(QueueId(1)), places.next_release()), (true, Some(500)));
        places.finished(QueueId(3), None);
        assert!(!places.skips(QueueId(3)));
    }

    #[test]
    fn an_admin_change_waits_for_the_attempt_and_keeps_attempts_away() {
        let mut places = Places::default();
        scan(&mut places, &[(1, true)]);
        assert!(!places.admit_admin(QueueId(1)), "an attempt is under way");
        places.finished(QueueId(1), None);
        assert!(places.admit_admin(QueueId(1)));
        assert_eq!(scan(&mut places, &[(1, true)]), Vec::<u64>::new());
        assert_eq!(places.remote_busy(), 0, "an admin change takes no remote place");
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        let mut j = Jitter::new(7);
        for _ in 0..10_000 {
            assert!((0.0..1.0).contains(&j.next()));
        }
    }
}
