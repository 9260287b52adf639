//! The queue on disk: the only module that touches LMDB.
//!
//! Four tables in one environment:
//! - `messages`: queue id -> [`Message`] (sender, recipients and their states);
//! - `chunks`: (queue id, n) -> the n-th piece of the message's bytes;
//! - `due`: (queue-clock time, queue id) -> nothing: when each message is next
//!   tried;
//! - `meta`: the floor of queue ids and the queue clock's checkpoint.
//!
//! Writes go through one thread, the committer, which gathers every write that
//! is waiting into one transaction and commits it once (group commit). LMDB
//! commits are durable (fsync'd) by default, and we never turn that off: a
//! caller hears "done" only after its write is on disk.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};

use super::clock::{self, CHECKPOINT_EVERY, Checkpoint, Clock};
use super::record::{decode, encode};
use super::release::Mapping;
use super::reserve::{RESERVE, reserve};
// The records the store keeps, where the rest of the crate has always found them.
pub use super::record::{Kind, Message, QueueId, Recipient, Status};

/// Why a store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// The LMDB map or the disk is full: answer `452 4.3.1`.
    Full,
    /// Anything else: an I/O error, a corrupt record, a bug.
    Other(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full => f.write_str("queue store is full"),
            StoreError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<heed::Error> for StoreError {
    fn from(e: heed::Error) -> StoreError {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::Full,
            heed::Error::Io(io) if io.raw_os_error() == Some(28) => StoreError::Full, // ENOSPC
            heed::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => StoreError::Full,
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// Slack on top of a batch's own bytes for the page overhead, branch pages
/// and free list LMDB writes with them.
const COMMIT_SLACK: u64 = 1 << 20;

/// Whether a failed commit means the disk is full. LMDB reports a write the
/// file system cut short as `EIO` ("short write, filesystem full?"), not
/// `ENOSPC`: an `EIO` with less room left than the batch needed is a full disk.
fn disk_full(e: &heed::Error, available: Option<u64>, needed: u64) -> bool {
    matches!(e, heed::Error::Io(io) if io.raw_os_error() == Some(5)) // EIO
        && available.is_some_and(|left| left < needed.saturating_add(COMMIT_SLACK))
}

/// One write, run by the committer inside a shared transaction.
#[derive(Debug)]
pub enum Write {
    /// Store a piece of a message that is still arriving.
    Chunk { id: QueueId, n: u32, bytes: Vec<u8> },
    /// Queue a message: its remaining pieces and its record, due now.
    Commit { pieces: Vec<(u32, Vec<u8>)>, message: Message },
    /// Drop the pieces of a message that was not accepted.
    Discard { id: QueueId },
    /// Save a message's new state after a delivery attempt; removes it when no
    /// recipient is pending. A report about it (a bounce or delay notice) is
    /// queued in the same transaction.
    Update { message: Message, report: Option<Box<(Message, Vec<u8>)>> },
    /// Save the states of a message's recipients while its attempt goes on
    /// with the others (local copies written, remote ones still talking).
    /// Leaves when it is next due alone; nothing when it is gone.
    Progress { message: Message },
    /// Remove a message whatever its state (`postern queue delete`).
    Delete { id: QueueId },
    /// Move a message's next attempt to `at`, leaving the rest as it is now.
    Reschedule { id: QueueId, at: u64 },
    /// Nothing: commits the writes that are waiting, now.
    Sync,
}

impl Write {
    /// Bytes this write adds, to bound one transaction's size.
    pub fn weight(&self) -> usize {
        match self {
            Write::Chunk { bytes, .. } => bytes.len(),
            Write::Commit { pieces, .. } => pieces.iter().map(|(_, b)| b.len()).sum::<usize>() + 256,
            Write::Update { report: Some(r), .. } => r.1.len() + 512,
            Write::Discard { .. }
            | Write::Update { .. }
            | Write::Progress { .. }
            | Write::Delete { .. }
            | Write::Reschedule { .. } => 256,
            Write::Sync => 0,
        }
    }
}

/// The LMDB environment and its tables. Cheap to share by reference; all
/// writes must go through [`Store::apply`] on the committer thread.
pub struct Store {
    env: &'static Env<WithoutTls>,
    messages: Database<'static, Bytes, Bytes>,
    chunks: Database<'static, Bytes, Bytes>,
    due: Database<'static, Bytes, Bytes>,
    meta: Database<'static, Bytes, Bytes>,
    /// LMDB's mapping of the data file, to read large values beside it and
    /// give its pages back.
    mapping: Mapping,
    next_id: AtomicU64,
    /// This store's own random number, made when it was first opened.
    tag: AtomicU64,
    /// The queue clock.
    clock: Clock,
    /// The queue-clock reading last saved as the checkpoint.
    checkpointed: AtomicU64,
    /// Held open for the life of the store: the exclusive lock on the data dir.
    _lock: std::fs::File,
}

/// The `meta` key of the lowest queue id the next start may use.
const ID_FLOOR: &[u8] = b"id_floor";

/// The `meta` key of the store's tag; see [`Store::tag`].
const TAG: &[u8] = b"tag";

/// A random number for a new store's tag: from the kernel, or failing that
/// from the time and the process id.
fn random_tag() -> u64 {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let tag = match random {
        Ok(()) => u64::from_be_bytes(bytes),
        Err(_) => {
            let nanos =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
            nanos.rotate_left(17) ^ (u64::from(std::process::id()) << 20)
        }
    };
    tag.max(1)
}

/// The `meta` key of the queue clock's [`Checkpoint`].
const CLOCK: &[u8] = b"clock";

/// Takes an exclusive lock on `dir`, so only one process at a time uses the
/// store: a second server would otherwise sweep away the pieces of messages
/// the first is still receiving.
fn lock_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    use rustix::fs::{FlockOperation, flock};
    let path = dir.join("postern.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
    flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        StoreError::Other(format!("{}: {e}: another postern process is using this data dir", path.display()))
    })?;
    Ok(file)
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.env.path()).finish()
    }
}

/// Unix time now, in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn due_key(at: u64, id: QueueId) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&at.to_be_bytes());
    k[8..].copy_from_slice(&id.0.to_be_bytes());
    k
}

fn chunk_key(id: QueueId, n: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&id.0.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with a map of `map_size` bytes.
    ///
    /// # Errors
    /// When the directory cannot be created or LMDB refuses to open it.
    pub fn open(dir: &Path, map_size: u64) -> Result<Store, StoreError> {
        let fail = |e: &dyn fmt::Display| StoreError::Other(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        let lock = lock_dir(dir)?;
        let map_size =
            usize::try_from(map_size).map_err(|_| StoreError::Other("store size too large".into()))?;
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_dbs(4).max_readers(126);
        // SAFETY: LMDB requires that the environment is not opened twice in one
        // process and that no other process modifies it unsafely. Only this
        // module opens it, once per data dir, under the exclusive lock taken
        // above, so a second server or CLI cannot open it at the same time.
        #[allow(unsafe_code)]
        let env = unsafe { options.open(dir) }.map_err(|e| fail(&e))?;
        let env: &'static Env<WithoutTls> = Box::leak(Box::new(env));
        let wtxn = env.write_txn()?;
        let (messages, chunks, due, meta) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, heed::Error> {
                let m = opener.create_database::<Bytes, Bytes>(wtxn, Some("messages"))?;
                let c = opener.create_database::<Bytes, Bytes>(wtxn, Some("chunks"))?;
                let d = opener.create_database::<Bytes, Bytes>(wtxn, Some("due"))?;
                let x = opener.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
                Ok(CommitOrAbort::<_, ()>::Commit((m, c, d, x)))
            })?
            .unwrap_commit();
        let data_file = std::fs::canonicalize(dir.join("data.mdb")).ok();
        if let Some(path) = &data_file
            && let Err(e) = reserve(path, RESERVE.min(map_size as u64))
        {
            log::warn!("cannot reserve disk space for the queue in {}: {e}", path.display());
        }
        let mapping = Mapping::find(data_file.as_deref());
        let store = Store {
            env,
            messages,
            chunks,
            due,
            meta,
            next_id: AtomicU64::new(0),
            tag: AtomicU64::new(0),
            clock: Clock::new(0),
            checkpointed: AtomicU64::new(0),
            mapping,
            _lock: lock,
        };
        store.sweep()?;
        Ok(store)
    }

    /// A fresh queue id.
    pub fn new_id(&self) -> QueueId {
        QueueId(self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    /// A random number made when the store was created and kept with it.
    /// Queue ids are unique within one store only; with the tag, a name made
    /// from a queue id is unique across stores too (a data dir made again
    /// while its Maildirs stay, a clock set back).
    pub fn tag(&self) -> u64 {
        self.tag.load(Ordering::SeqCst)
    }

    /// The queue clock now, in seconds: what ages and due times are measured
    /// on. Not the wall clock; see [`super::clock`].
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Run once at open: removes the pieces of messages that were still
    /// arriving when the process died and due entries without a message,
    /// sets where queue ids start, and starts the queue clock.
    ///
    /// Ids start at the current time in microseconds, but never below the
    /// floor saved by the previous start, which lies 2^32 ids past where that
    /// run started: ids stay unique even when the clock goes back (a board
    /// without a clock battery boots in 1970 until NTP answers).
    fn sweep(&self) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        let mut orphans = Vec::new();
        for item in self.chunks.iter(&wtxn)? {
            let id = key_u64(item?.0);
            if orphans.last() != Some(&id) && self.messages.get(&wtxn, &id.to_be_bytes())?.is_none() {
                orphans.push(id);
            }
        }
        for id in &orphans {
            self.delete_chunks(&mut wtxn, QueueId(*id))?;
        }
        let mut stale = Vec::new();
        for item in self.due.iter(&wtxn)? {
            let (k, _) = item?;
            if self.messages.get(&wtxn, &k[8..])?.is_none() {
                stale.push(k.to_vec());
            }
        }
        for k in &stale {
            self.due.delete(&mut wtxn, k)?;
        }
        let last = self.messages.last(&wtxn)?.map(|(k, _)| key_u64(k)).unwrap_or(0);
        let floor = self.meta.get(&wtxn, ID_FLOOR)?.map(key_u64).unwrap_or(0);
        let now_micros =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0);
        let start = now_micros.max(last + 1).max(floor);
        self.meta.put(&mut wtxn, ID_FLOOR, &start.saturating_add(1 << 32).to_be_bytes())?;
        let tag = match self.meta.get(&wtxn, TAG)? {
            Some(t) => key_u64(t),
            None => {
                let t = random_tag();
                self.meta.put(&mut wtxn, TAG, &t.to_be_bytes())?;
                t
            }
        };
        let saved = self.meta.get(&wtxn, CLOCK)?.and_then(Checkpoint::decode);
        // A store without a checkpoint holds wall-clock times: the clock
        // starts no earlier than its latest arrival.
        let mut latest = 0;
        if saved.is_none() {
            for item in self.messages.iter(&wtxn)? {
                if let Ok(m) = decode(item?.1) {
                    latest = latest.max(m.arrived);
                }
            }
        }
        let wall = unix_now();
        let queue_now = clock::start(saved, wall, latest);
        self.meta.put(&mut wtxn, CLOCK, &Checkpoint { queue: queue_now, wall }.encode())?;
        wtxn.commit()?;
        self.next_id.store(start, Ordering::SeqCst);
        self.tag.store(tag, Ordering::SeqCst);
        self.clock.set(queue_now);
        self.checkpointed.store(queue_now, Ordering::SeqCst);
        if !orphans.is_empty() {
            log::info!(target: "mail", "removed pieces of {} message(s) that were not accepted", orphans.len());
        }
        Ok(())
    }

    /// Runs a batch of writes in one transaction and commits it durably.
    ///
    /// # Errors
    /// The first failure; nothing of the batch is kept then.
    pub fn apply(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut wtxn = self.env.write_txn()?;
        // The clock's checkpoint rides on a commit that writes anyway, at
        // most once a minute: never a write of its own.
        let now = self.clock.now();
        let checkpoint = now >= self.checkpointed.load(Ordering::SeqCst).saturating_add(CHECKPOINT_EVERY)
            && writes.iter().any(|w| !matches!(w, Write::Sync));
        if checkpoint {
            self.meta.put(&mut wtxn, CLOCK, &Checkpoint { queue: now, wall: unix_now() }.encode())?;
        }
        for w in writes {
            let churn = self.apply_one(&mut wtxn, w)?;
            // Even inside a transaction: one batch of large messages would
            // otherwise leave much of each of them mapped.
            self.mapping.churned(churn);
        }
        wtxn.commit().map_err(|e| {
            let needed = writes.iter().map(|w| w.weight() as u64).sum();
            if disk_full(&e, self.space_left(), needed) { StoreError::Full } else { e.into() }
        })?;
        if checkpoint {
            self.checkpointed.store(now, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Bytes left for us on the store's file system, if it can be asked.
    fn space_left(&self) -> Option<u64> {
        let st = rustix::fs::statvfs(self.env.path()).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Applies one write; returns about how many body bytes it wrote or deleted.
    fn apply_one(&self, wtxn: &mut RwTxn<'_>, w: &Write) -> Result<u64, StoreError> {
        let mut freed = 0;
        match w {
            Write::Sync => {}
            Write::Chunk { id, n, bytes } => {
                freed = bytes.len() as u64;
                self.chunks.put(wtxn, &chunk_key(*id, *n), bytes)?;
            }
            Write::Commit { pieces, message } => {
                for (n, bytes) in pieces {
                    freed += bytes.len() as u64;
                    self.chunks.put(wtxn, &chunk_key(message.id, *n), bytes)?;
                }
                self.messages.put(wtxn, &message.id.0.to_be_bytes(), &encode(message))?;
                self.due.put(wtxn, &due_key(message.next_attempt, message.id), &[])?;
            }
            Write::Discard { id } => {
                // The size is not known here; a discarded message is at
                // least one piece.
                freed = 256 * 1024;
                self.delete_chunks(wtxn, *id)?;
            }
            Write::Delete { id } => {
                let key = id.0.to_be_bytes();
                if let Some(old) = self.messages.get(wtxn, &key)? {
                    let old = decode(old)?;
                    freed = old.size;
                    self.due.delete(wtxn, &due_key(old.next_attempt, old.id))?;
                    self.messages.delete(wtxn, &key)?;
                }
                self.delete_chunks(wtxn, *id)?;
            }
            Write::Reschedule { id, at } => {
                let key = id.0.to_be_bytes();
                let Some(old) = self.messages.get(wtxn, &key)? else {
                    return Ok(0);
                };
                let mut m = decode(old)?;
                self.due.delete(wtxn, &due_key(m.next_attempt, m.id))?;
                m.next_attempt = *at;
                self.messages.put(wtxn, &key, &encode(&m))?;
                self.due.put(wtxn, &due_key(m.next_attempt, m.id), &[])?;
            }
            Write::Progress { message } => {
                let key = message.id.0.to_be_bytes();
                // Only the recipients change: an admin retry may have moved
                // the next attempt meanwhile.
                if let Some(old) = self.messages.get(wtxn, &key)? {
                    let mut m = decode(old)?;
                    if m.recipients.len() == message.recipients.len() {
                        m.recipients.clone_from(&message.recipients);
                        self.messages.put(wtxn, &key, &encode(&m))?;
                    }
                }
            }
            Write::Update { message, report } => {
                let key = message.id.0.to_be_bytes();
                let Some(old) = self.messages.get(wtxn, &key)? else {
                    // Deleted meanwhile: nothing to record, nobody to tell.
                    return Ok(0);
                };
                let old = decode(old)?;
                if let Some(r) = report {
                    let (m, body) = r.as_ref();
                    self.chunks.put(wtxn, &chunk_key(m.id, 0), body)?;
                    self.messages.put(wtxn, &m.id.0.to_be_bytes(), &encode(m))?;
                    self.due.put(wtxn, &due_key(m.next_attempt, m.id), &[])?;
                }
                self.due.delete(wtxn, &due_key(old.next_attempt, old.id))?;
                if message.recipients.iter().any(|r| r.status == Status::Pending) {
                    self.messages.put(wtxn, &key, &encode(message))?;
                    self.due.put(wtxn, &due_key(message.next_attempt, message.id), &[])?;
                } else {
                    freed = message.size;
                    self.messages.delete(wtxn, &key)?;
                    self.delete_chunks(wtxn, message.id)?;
                }
            }
        }
        Ok(freed)
    }

    fn delete_chunks(&self, wtxn: &mut RwTxn<'_>, id: QueueId) -> Result<(), StoreError> {
        let start = chunk_key(id, 0);
        let end = chunk_key(id, u32::MAX);
        use std::ops::Bound;
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(&start), Bound::Included(&end));
        self.chunks.delete_range(wtxn, &range)?;
        Ok(())
    }

    /// Up to `limit` messages due at or before `now`, skipping those `skip`
    /// says are busy, and the time the first later one is due.
    ///
    /// # Errors
    /// On LMDB failure.
    pub fn due(
        &self,
        now: u64,
        limit: usize,
        skip: impl Fn(QueueId) -> bool,
    ) -> Result<(Vec<QueueId>, Option<u64>), StoreError> {
        let rtxn = self.env.read_txn()?;
        let mut ids = Vec::new();
        for item in self.due.iter(&rtxn)? {
            let (k, _) = item?;
            let at = key_u64(k);
            if at > now {
                return Ok((ids, Some(at)));
            }
            let id = QueueId(u64::from_be_bytes(k[8..16].try_into().unwrap_or_default()));
            if !skip(id) {
                ids.push(id);
                if ids.len() >= limit {
                    break;
                }
            }
        }
        Ok((ids, None))
    }

    /// The record of message `id`, if it is queued.
    ///
    /// # Errors
    /// On LMDB failure or a corrupt record.
    pub fn message(&self, id: QueueId) -> Result<Option<Message>, StoreError> {
        let rtxn = self.env.read_txn()?;
        self.messages.get(&rtxn, &id.0.to_be_bytes())?.map(decode).transpose()
    }

    /// Every queued message's record, oldest first.
    ///
    /// # Errors
    /// On LMDB failure or a corrupt record.
    pub fn messages(&self) -> Result<Vec<Message>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.messages.iter(&rtxn)? {
            out.push(decode(item?.1)?);
        }
        Ok(out)
    }

    /// Passes the bytes of message `m` to `f`, piece by piece, in order.
    ///
    /// # Errors
    /// On LMDB failure, when the stored pieces do not add up to the message
    /// the record describes, or the first error `f` returns.
    pub fn read_body(
        &self,
        m: &Message,
        mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ReadError> {
        let store_err = |e: heed::Error| ReadError::Store(e.into());
        let rtxn: RoTxn<'_, WithoutTls> = self.env.read_txn().map_err(store_err)?;
        let (mut count, mut size) = (0u32, 0u64);
        let mut buf = Vec::new();
        for item in self.chunks.prefix_iter(&rtxn, &m.id.0.to_be_bytes()).map_err(store_err)? {
            let (_, bytes) = item.map_err(store_err)?;
            count += 1;
            size += bytes.len() as u64;
            f(self.mapping.read(bytes, &mut buf).map_err(ReadError::Io)?).map_err(ReadError::Io)?;
        }
        if count != m.chunks || size != m.size {
            return Err(ReadError::Store(StoreError::Other(format!(
                "stored message {} is incomplete: {count} of {} pieces, {size} of {} bytes",
                m.id, m.chunks, m.size
            ))));
        }
        Ok(())
    }

    /// Piece `n` of message `id`, copied out; `None` past the last one.
    ///
    /// # Errors
    /// On LMDB failure.
    pub fn chunk(&self, id: QueueId, n: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let rtxn = self.env.read_txn()?;
        let Some(bytes) = self.chunks.get(&rtxn, &chunk_key(id, n))? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        let copy = self.mapping.read(bytes, &mut buf).map_err(|e| StoreError::Other(e.to_string()))?.to_vec();
        Ok(Some(copy))
    }
}

/// Why reading a message body failed.
#[derive(Debug)]
pub enum ReadError {
    /// The store failed.
    Store(StoreError),
    /// The consumer of the bytes failed.
    Io(std::io::Error),
}

fn key_u64(k: &[u8]) -> u64 {
    k.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of every state, under a new id of `store`'s.
    fn sample(store: &Store) -> Message {
        Message { id: store.new_id(), ..crate::queue::record::tests::sample() }
    }

    /// The stored pieces of `id`, joined, read straight from the table.
    fn body(store: &Store, id: QueueId) -> Vec<u8> {
        let rtxn = store.env.read_txn().unwrap();
        let mut out = Vec::new();
        for item in store.chunks.prefix_iter(&rtxn, &id.0.to_be_bytes()).unwrap() {
            out.extend_from_slice(item.unwrap().1);
        }
        out
    }

    #[test]
    fn read_body_checks_the_pieces_against_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let m = sample(&store);
        store.apply(&[Write::Chunk { id: m.id, n: 0, bytes: b"hello ".to_vec() }]).unwrap();
        store.apply(&[Write::Commit { pieces: vec![(1, b"world".to_vec())], message: m.clone() }]).unwrap();
        let mut out = Vec::new();
        store
            .read_body(&m, |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(out, b"hello world");
        let mut short = m.clone();
        short.size = 12;
        assert!(matches!(store.read_body(&short, |_| Ok(())), Err(ReadError::Store(_))));
        short.size = 11;
        short.chunks = 3;
        assert!(matches!(store.read_body(&short, |_| Ok(())), Err(ReadError::Store(_))));
    }

    #[test]
    fn the_data_file_mapping_is_found_and_can_be_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let (_, len) = store.mapping.range().expect("data.mdb is in /proc/self/maps");
        assert_eq!(len, 1 << 24);
        let m = sample(&store);
        let big = vec![b'x'; 1 << 20];
        store.apply(&[Write::Commit { pieces: vec![(0, big.clone())], message: m.clone() }]).unwrap();
        store.mapping.release();
        // Reads after the release see the same bytes.
        assert_eq!(store.chunk(m.id, 0).unwrap().unwrap(), big);
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path(), 1 << 24).unwrap();
        let err = lock_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("another postern process"), "{err}");
    }

    #[test]
    fn ids_never_go_below_the_saved_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let first = store.new_id();
        // As if the clock had gone back a day before the next start.
        let mut wtxn = store.env.write_txn().unwrap();
        store.meta.put(&mut wtxn, ID_FLOOR, &(first.0 + (1 << 32)).to_be_bytes()).unwrap();
        wtxn.commit().unwrap();
        store.sweep().unwrap();
        assert!(store.new_id().0 >= first.0 + (1 << 32));
    }

    /// The record of `m` as the release before the queue clock wrote it
    /// (version 2: no `queued`).
    fn encode_v2(m: &Message) -> Vec<u8> {
        let v3 = encode(m);
        // version, id, arrived, size, chunks, next_attempt, kind, delay_notified
        let fixed = 1 + 8 + 8 + 8 + 4 + 8 + 1 + 1;
        let mut out = vec![2];
        out.extend_from_slice(&v3[1..fixed]);
        out.extend_from_slice(&v3[fixed + 8..]);
        out
    }

    fn checkpoint(store: &Store) -> Option<Checkpoint> {
        let rtxn = store.env.read_txn().unwrap();
        store.meta.get(&rtxn, CLOCK).unwrap().and_then(Checkpoint::decode)
    }

    fn set_checkpoint(store: &Store, c: Option<Checkpoint>) {
        let mut wtxn = store.env.write_txn().unwrap();
        match c {
            Some(c) => store.meta.put(&mut wtxn, CLOCK, &c.encode()).unwrap(),
            None => drop(store.meta.delete(&mut wtxn, CLOCK).unwrap()),
        }
        wtxn.commit().unwrap();
    }

    #[test]
    fn a_store_from_before_the_queue_clock_keeps_its_ages_and_due_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let wall = unix_now();
        let mut m = sample(&store);
        (m.arrived, m.queued, m.next_attempt) = (wall - 3600, wall - 3600, wall + 600);
        let mut wtxn = store.env.write_txn().unwrap();
        store.messages.put(&mut wtxn, &m.id.0.to_be_bytes(), &encode_v2(&m)).unwrap();
        store.due.put(&mut wtxn, &due_key(m.next_attempt, m.id), &[]).unwrap();
        wtxn.commit().unwrap();
        // As the old release left it: no checkpoint. A restart sweeps again.
        set_checkpoint(&store, None);
        store.sweep().unwrap();
        let now = store.now();
        assert!((wall..wall + 2).contains(&now), "the clock starts at the wall clock: {now} {wall}");
        let old = store.message(m.id).unwrap().unwrap();
        assert_eq!(old, m, "queued is the arrival");
        assert!((3600..3603).contains(&(now - old.queued)), "an hour old, as before");
        assert_eq!(store.due(now, 10, |_| false).unwrap(), (vec![], Some(wall + 600)));
        assert!(checkpoint(&store).is_some_and(|c| c.queue == now), "the next start goes on from here");
        // A board whose clock is behind the store's arrivals does not wait
        // for the wall clock to catch up.
        m.arrived = wall + 86_400;
        store.apply(&[Write::Update { message: m.clone(), report: None }]).unwrap();
        set_checkpoint(&store, None);
        store.sweep().unwrap();
        assert!(store.now() >= wall + 86_400);
    }

    #[test]
    fn the_clock_goes_on_from_its_checkpoint_whatever_the_wall_clock_did() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let wall = unix_now();
        let cases = [
            (wall - 7 * 86_400, 5060, "off for a week, or a jump forward: a minute counts"),
            (wall + 86_400, 5000, "the wall clock went back: nothing counts"),
            (wall - 20, 5020, "a quick restart counts its downtime"),
        ];
        for (saved_wall, want, why) in cases {
            set_checkpoint(&store, Some(Checkpoint { queue: 5000, wall: saved_wall }));
            store.sweep().unwrap();
            assert!((want..want + 2).contains(&store.now()), "{why}: {}", store.now());
        }
    }

    #[test]
    fn the_checkpoint_rides_on_writes_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let at_open = checkpoint(&store).unwrap();
        let chunk = |n| Write::Chunk { id: QueueId(1), n, bytes: b"x".to_vec() };
        store.apply(&[chunk(0)]).unwrap();
        assert_eq!(checkpoint(&store), Some(at_open), "less than a minute since the last one");
        store.clock.set(at_open.queue + CHECKPOINT_EVERY);
        store.apply(&[Write::Sync]).unwrap();
        assert_eq!(checkpoint(&store), Some(at_open), "never a commit of its own");
        store.apply(&[chunk(1)]).unwrap();
        let renewed = checkpoint(&store).unwrap();
        assert!(renewed.queue >= at_open.queue + CHECKPOINT_EVERY, "{renewed:?}");
    }

    #[test]
    fn the_tag_is_kept_and_differs_between_stores() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let tag = store.tag();
        assert_ne!(tag, 0);
        store.sweep().unwrap();
        assert_eq!(store.tag(), tag);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Store::open(other.path(), 1 << 24).unwrap().tag(), tag);
    }

    #[test]
    fn progress_saves_recipients_and_keeps_the_due_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let mut m = sample(&store);
        store.apply(&[Write::Commit { pieces: vec![(0, b"x".to_vec())], message: m.clone() }]).unwrap();
        store.apply(&[Write::Reschedule { id: m.id, at: 500 }]).unwrap();
        m.recipients[0].status = Status::Delivered;
        assert!(Write::Progress { message: m.clone() }.can_wait());
        store.apply(&[Write::Progress { message: m.clone() }]).unwrap();
        let saved = store.message(m.id).unwrap().unwrap();
        assert_eq!(saved.recipients, m.recipients);
        assert_eq!(saved.next_attempt, 500);
        assert_eq!(store.due(500, 10, |_| false).unwrap(), (vec![m.id], None));
        // Gone meanwhile: nothing comes back.
        store.apply(&[Write::Delete { id: m.id }]).unwrap();
        store.apply(&[Write::Progress { message: m.clone() }]).unwrap();
        assert_eq!(store.message(m.id).unwrap(), None);
    }

    #[test]
    fn the_data_file_is_written_out_ahead_of_lmdb() {
        let size = |dir: &Path| std::fs::metadata(dir.join("data.mdb")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let m = sample(&store);
        store.apply(&[Write::Commit { pieces: vec![(0, b"kept".to_vec())], message: m.clone() }]).unwrap();
        assert_eq!(body(&store, m.id), b"kept");
        let meta = size(dir.path());
        let free = rustix::fs::statvfs(dir.path()).map(|s| s.f_bavail * s.f_frsize).unwrap();
        if free < 8 * RESERVE {
            // The reserve takes at most a quarter of what is free.
            eprintln!("the reserve's size not checked: only {free} bytes free here");
            return;
        }
        assert_eq!(meta.len(), RESERVE);
        // Written, not a hole: every block is allocated.
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= RESERVE);
        // A store smaller than the reserve gets its own size at most. (The
        // environment cannot be opened twice in one process: reopening is
        // what the crash and power-cut tests do.)
        let small = tempfile::tempdir().unwrap();
        let _small = Store::open(small.path(), 1 << 20).unwrap();
        assert_eq!(size(small.path()).len(), 1 << 20);
    }

    #[test]
    fn commit_read_update_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let mut m = sample(&store);
        store.apply(&[Write::Chunk { id: m.id, n: 0, bytes: b"hello ".to_vec() }]).unwrap();
        store.apply(&[Write::Commit { pieces: vec![(1, b"world".to_vec())], message: m.clone() }]).unwrap();
        assert_eq!(body(&store, m.id), b"hello world");
        assert_eq!(store.due(999, 10, |_| false).unwrap(), (vec![], Some(1000)));
        assert_eq!(store.due(1000, 10, |_| false).unwrap(), (vec![m.id], None));
        assert_eq!(store.due(1000, 10, |id| id == m.id).unwrap(), (vec![], None));

        m.recipients[0].status = Status::Delivered;
        m.next_attempt = 2000;
        store.apply(&[Write::Update { message: m.clone(), report: None }]).unwrap();
        assert_eq!(store.message(m.id).unwrap(), Some(m.clone()));
        assert_eq!(store.due(1500, 10, |_| false).unwrap(), (vec![], Some(2000)));

        m.recipients[1].status = Status::Failed;
        store.apply(&[Write::Update { message: m.clone(), report: None }]).unwrap();
        assert_eq!(store.message(m.id).unwrap(), None);
        assert!(body(&store, m.id).is_empty());
        assert_eq!(store.due(u64::MAX, 10, |_| false).unwrap(), (vec![], None));
    }

    #[test]
    fn orphan_pieces_are_removed_and_queued_messages_kept() {
        // A restart runs the same sweep; a second open of one environment in
        // one process is refused by heed, so the sweep is called directly.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 24).unwrap();
        let kept = sample(&store);
        let orphan = store.new_id();
        store.apply(&[Write::Commit { pieces: vec![(0, b"kept".to_vec())], message: kept.clone() }]).unwrap();
        store.apply(&[Write::Chunk { id: orphan, n: 0, bytes: b"lost".to_vec() }]).unwrap();
        store.sweep().unwrap();
        assert_eq!(store.message(kept.id).unwrap(), Some(kept.clone()));
        assert_eq!(body(&store, kept.id), b"kept");
        assert!(body(&store, orphan).is_empty());
    }

    #[test]
    fn a_full_disk_is_reported_as_full_however_lmdb_words_it() {
        // heed turns LMDB's errno results into `Error::Io`.
        let errno = |code| heed::Error::from(heed::MdbError::Other(code));
        assert!(matches!(StoreError::from(errno(28)), StoreError::Full), "ENOSPC");
        assert!(matches!(StoreError::from(errno(5)), StoreError::Other(_)), "EIO alone");
        // A write cut short by a full disk comes back as EIO.
        assert!(disk_full(&errno(5), Some(4096), 300_000));
        assert!(!disk_full(&errno(5), Some(1 << 30), 300_000), "plenty of room: a real I/O error");
        assert!(!disk_full(&errno(5), None, 300_000));
        assert!(!disk_full(&errno(13), Some(0), 300_000), "EACCES");
    }

    #[test]
    fn full_map_is_reported_as_full_and_keeps_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let m = sample(&store);
        store.apply(&[Write::Commit { pieces: vec![(0, b"small".to_vec())], message: m.clone() }]).unwrap();
        let big = sample(&store);
        let err =
            store.apply(&[Write::Commit { pieces: vec![(0, vec![0; 2 << 20])], message: big }]).unwrap_err();
        assert!(matches!(err, StoreError::Full), "{err:?}");
        assert_eq!(body(&store, m.id), b"small");
    }
}
