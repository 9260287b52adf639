//! The committer: the one thread that writes to the store. It takes every
//! write that is waiting, runs them in one transaction and commits it once
//! (group commit), then tells each writer; it decides how long a commit may
//! wait for company.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use smol::channel::{self, Receiver, Sender};
use smol::{Timer, future::FutureExt as _};

use super::store::{Status, Store, StoreError, Write};

/// What a writer is told once its write is on disk, or why it is not.
pub(super) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The largest batch of bytes the committer puts into one transaction; bounds
/// the memory LMDB holds for dirty pages.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Starts the committer thread on `store`; writes sent to the returned
/// channel are committed in the order they arrive. The thread ends when
/// every sender is gone.
///
/// # Errors
/// When the thread cannot be started.
pub(super) fn start(store: Arc<Store>) -> Result<Sender<(Write, Done)>, StoreError> {
    let (writes, rx) = channel::unbounded::<(Write, Done)>();
    thread::Builder::new()
        .name("committer".into())
        .spawn(move || committer(&store, &rx))
        .map_err(|e| StoreError::Other(format!("cannot start the committer thread: {e}")))?;
    Ok(writes)
}

impl Write {
    /// Whether the write may wait a little for company: the outcome of a
    /// delivery to every recipient, which only removes the message. Until it
    /// is on disk the message stays in the queue, so a crash meanwhile means
    /// another attempt, never a loss (which finds the local copies already
    /// written, and may send a remote one again). Everything else has a client, an
    /// operator or a new attempt waiting on it. The progress of an attempt
    /// may wait too: its attempt goes on, and the Maildir files it records
    /// are recognised by the next attempt should a crash come first.
    pub(super) fn can_wait(&self) -> bool {
        match self {
            Write::Update { message, report: None } => {
                !message.recipients.iter().any(|r| r.status == Status::Pending)
            }
            Write::Progress { .. } => true,
            _ => false,
        }
    }
}

/// How long the outcome of a delivery may wait to be committed with other
/// writes (see [`Write::can_wait`]), and how many may wait.
const OUTCOME_WAIT: Duration = Duration::from_millis(50);
const OUTCOMES_WAITING: usize = 64;

/// The longest a commit waits for company once it must go (see
/// [`company_wait`]).
const COMPANY_WAIT_MAX: Duration = Duration::from_millis(50);

/// Whether `w` is a message a client is waiting to hear `250` for: the
/// writes whose company a commit waits for. The server's own writes
/// (deferrals, admin commands, syncs) are not counted.
fn from_client(w: &Write) -> bool {
    matches!(w, Write::Commit { .. })
}

/// How long a commit that must go waits for more writes: only when the last
/// one carried more than one message a client was waiting on (clients send
/// together), and then a share of what the last commit took, so a slow disk
/// (an SD card) gathers more and a fast one next to nothing; the wait ends
/// as soon as as many such messages are in as last time. Clients that heard
/// their `250` in one commit come back with their next message some
/// milliseconds apart (tens of them on a busy board); without the wait the
/// first of them goes alone and the rest wait for a whole commit. One
/// client alone never waits.
fn company_wait(last_urgent: usize, last_took: Duration) -> Duration {
    if last_urgent > 1 { (last_took / 2).min(COMPANY_WAIT_MAX) } else { Duration::ZERO }
}

/// The committer: takes every write waiting, commits them together, then
/// tells each writer. Outcomes of deliveries wait up to [`OUTCOME_WAIT`] for
/// a write that cannot wait, and go into its transaction: one trip to the
/// disk instead of two. A failed batch is retried one write at a time, so
/// one message too big for the store does not fail the others with it.
fn committer(store: &Store, rx: &Receiver<(Write, Done)>) {
    let mut waiting: Vec<(Write, Done)> = Vec::new();
    let mut since = Instant::now();
    let (mut last_urgent, mut last_took) = (0, Duration::ZERO);
    loop {
        let first = if waiting.is_empty() {
            match rx.recv_blocking() {
                Ok(w) => Some(w),
                Err(_) => return,
            }
        } else {
            let left = OUTCOME_WAIT.saturating_sub(since.elapsed());
            smol::block_on(async { rx.recv().await.ok() }.or(async {
                Timer::after(left).await;
                None
            }))
        };
        // None: the wait is over, or the channel is closed; commit what waits.
        let mut must_commit = first.is_none();
        let mut batch: Vec<(Write, Done)> = first.into_iter().collect();
        let mut weight: usize = batch.iter().chain(&waiting).map(|(w, _)| w.weight()).sum();
        while weight < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    weight += next.0.weight();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        must_commit |= weight >= MAX_BATCH_BYTES
            || waiting.len() + batch.len() >= OUTCOMES_WAITING
            || batch.iter().any(|(w, _)| !w.can_wait());
        if !must_commit {
            if waiting.is_empty() {
                since = Instant::now();
            }
            waiting.append(&mut batch);
            continue;
        }
        waiting.append(&mut batch);
        let until = Instant::now() + company_wait(last_urgent, last_took);
        let mut urgent = waiting.iter().filter(|(w, _)| from_client(w)).count();
        // The wait ends early once as many clients as last time are in.
        while weight < MAX_BATCH_BYTES && urgent < last_urgent {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let next = smol::block_on(async { rx.recv().await.ok() }.or(async {
                Timer::after(left).await;
                None
            }));
            match next {
                Some(next) => {
                    weight += next.0.weight();
                    urgent += usize::from(from_client(&next.0));
                    waiting.push(next);
                }
                None => break,
            }
        }
        let (writes, dones): (Vec<Write>, Vec<Done>) = std::mem::take(&mut waiting).into_iter().unzip();
        last_urgent = writes.iter().filter(|w| from_client(w)).count();
        let started = Instant::now();
        let applied = store.apply(&writes);
        last_took = started.elapsed();
        log::debug!("commit: {} writes, {last_urgent} waited on, {last_took:?}", writes.len());
        match applied {
            Ok(()) => dones.into_iter().for_each(|d| d(Ok(()))),
            Err(_) if writes.len() > 1 => {
                for (w, d) in writes.iter().zip(dones) {
                    d(store.apply(std::slice::from_ref(w)));
                }
            }
            Err(e) => dones.into_iter().for_each(|d| d(Err(StoreError::from_ref(&e)))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Route;
    use crate::queue::store::{Kind, Message, Recipient};

    #[test]
    fn commits_wait_for_company_only_after_company_came() {
        let ms = Duration::from_millis;
        let cases = [
            // (writes waited on in the last commit, its time, the wait)
            (0, ms(200), ms(0)),
            (1, ms(200), ms(0)),
            (2, ms(2), ms(1)),
            (20, ms(8), ms(4)),
            (20, ms(60), ms(30)),
            (20, ms(200), ms(50)),
        ];
        for (urgent, took, want) in cases {
            assert_eq!(company_wait(urgent, took), want, "{urgent} writes in {took:?}");
        }
    }

    fn message(store: &Store, status: Status) -> Message {
        let domain = crate::envelope::Domain::parse("a.example").unwrap();
        Message {
            id: store.new_id(),
            arrived: 1000,
            queued: 1000,
            sender: None,
            size: 5,
            chunks: 1,
            next_attempt: 1000,
            kind: Kind::Normal,
            delay_notified: false,
            recipients: vec![Recipient {
                route: Route::Local { user: "alice".into(), domain },
                status,
                attempts: 1,
                last_error: String::new(),
            }],
        }
    }

    #[test]
    fn only_finished_outcomes_and_progress_wait_for_company() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let (done, pending) = (message(&store, Status::Delivered), message(&store, Status::Pending));
        let failed = message(&store, Status::Failed);
        let report = Some(Box::new((pending.clone(), b"report".to_vec())));
        let id = done.id;
        let cases = [
            (Write::Update { message: done.clone(), report: None }, true),
            (Write::Update { message: failed, report: None }, true),
            (Write::Update { message: pending.clone(), report: None }, false),
            (Write::Update { message: done.clone(), report }, false),
            (Write::Progress { message: pending.clone() }, true),
            (Write::Commit { pieces: vec![], message: done }, false),
            (Write::Chunk { id, n: 0, bytes: vec![] }, false),
            (Write::Discard { id }, false),
            (Write::Delete { id }, false),
            (Write::Reschedule { id, at: 0 }, false),
            (Write::Sync, false),
        ];
        for (w, want) in cases {
            assert_eq!(w.can_wait(), want, "{w:?}");
        }
    }

    #[test]
    fn a_write_too_big_for_the_store_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let (small, big) = (message(&store, Status::Pending), message(&store, Status::Pending));
        let (small_id, big_id) = (small.id, big.id);
        let (tx, rx) = channel::unbounded::<(Write, Done)>();
        let (answers, heard) = std::sync::mpsc::channel();
        for (w, id) in [
            (Write::Commit { pieces: vec![(0, b"small".to_vec())], message: small }, small_id),
            (Write::Commit { pieces: vec![(0, vec![0; 2 << 20])], message: big }, big_id),
        ] {
            let answers = answers.clone();
            let done: Done = Box::new(move |r| answers.send((id, r)).unwrap());
            tx.try_send((w, done)).unwrap();
        }
        // Both are waiting when the committer looks: they go in one batch,
        // which is too big for the map. With the channel closed the
        // committer returns once it has answered them.
        drop(tx);
        committer(&store, &rx);
        let heard: Vec<_> = heard.try_iter().collect();
        assert_eq!(heard.len(), 2);
        assert!(matches!(heard[0], (id, Ok(()))if id == small_id), "{heard:?}");
        assert!(matches!(heard[1], (id, Err(StoreError::Full)) if id == big_id), "{heard:?}");
        assert!(store.message(small_id).unwrap().is_some());
        assert_eq!(store.message(big_id).unwrap(), None);
    }
}
