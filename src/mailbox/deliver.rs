//! Writing a message into a Maildir safely: a unique name in `tmp/`, write,
//! make it durable, move it into `new/` under a name that never replaces
//! another, fsync `new/`. Only then may the queue forget the recipient.
//! Messages that are ready together are written together, and share the
//! waits for the disk. The layout is Dovecot's:
//! `<mail_root>/<domain>/<user>/{tmp,new,cur}`.
//!
//! Each copy's name in `new/` is the same at every attempt (see [`Job::key`]),
//! so an attempt that follows a crash finds the copy an earlier one left, in
//! `new/` or, once a reader has seen it, in `cur/`, and writes no second one.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use smol::future::FutureExt as _;

use super::create;
use super::durable::{move_new, syncfs_is_trusted};
use super::names::{key_part, name_safe, unique_name};
use crate::deliver::DeliveryError;
use crate::smtp::client::EnhancedCode;

/// One message to write into a Maildir.
pub struct Job {
    /// The Maildir ([`super::path`]); created when missing.
    pub dir: PathBuf,
    /// This host's name, for the unique file name.
    pub hostname: String,
    /// Header lines (LF line ends) to put first.
    pub headers: String,
    /// The stored message's size with CRLF line ends, for `W=` in the name.
    pub crlf_size: u64,
    /// Writes the stored message (CRLF line ends) into the writer it is
    /// given, which turns CRLF into LF as Maildir files use it.
    pub body: Body,
    /// What names this copy; the same at every attempt.
    pub key: Key,
}

/// What names one copy of one message for one recipient, at every attempt:
/// the file in `new/` is `<secs>.<unique>.<hostname>,S=<size>,W=<vsize>`,
/// the form Dovecot writes, and a reader that moves it to `cur/` keeps that
/// base and appends `:2,` and flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The seconds part: when the message was accepted.
    pub secs: u64,
    /// The unique part: names this copy and no other, ever. ASCII letters
    /// and digits only.
    pub unique: String,
    /// Whether an earlier attempt may have written this copy without its
    /// outcome being recorded (it began before this process started, or
    /// failed after writing): then `new/` and `cur/` are looked through for
    /// it first. A copy already in `new/` under the same name is always
    /// recognised, as the move into `new/` never replaces a file.
    pub look: bool,
}

/// A copy that is durable in the Maildir.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Where it is.
    pub path: PathBuf,
    /// True when an earlier attempt wrote it, and this one only made sure
    /// of it.
    pub earlier: bool,
}

/// The source of a message's bytes; see [`Job::body`].
pub type Body = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

type Answer = Result<Delivered, DeliveryError>;
type Reply = smol::channel::Sender<Answer>;

/// The most messages, and about the most bytes, one batch writes.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// How long a batch waits for company after its first message. Delivery
/// takes that much longer; acceptance does not wait for it. A message every
/// couple of milliseconds, as from one busy client, then shares its trip to
/// the disk with several others.
const GATHER: Duration = Duration::from_millis(50);

/// The longest a batch waits for company (see [`gather_for`]).
const GATHER_MAX: Duration = Duration::from_secs(1);

/// How long a batch waits for company: [`GATHER`], or as long as the last
/// batch took to become durable when that was longer, up to [`GATHER_MAX`].
/// A batch's two journal commits cost the same for one message as for
/// sixty, so on a slow disk (an SD card, which does about a hundred writes a
/// second) bigger batches are what lets delivery keep up.
fn gather_for(last_took: Duration) -> Duration {
    GATHER.max(last_took.min(GATHER_MAX))
}

/// Writes Maildir files in batches, on threads of its own. A batch gathers
/// the messages ready within [`gather_for`], writes every file into `tmp/`,
/// makes them all durable with one `syncfs` per filesystem, renames them
/// into `new/`, and fsyncs each `new/` directory once. Only then is a
/// delivery reported done. A steady stream of mail costs two journal commits
/// per batch, where a file-by-file fsync would cost two per message.
pub struct Writer {
    jobs: smol::channel::Sender<(Job, Reply)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts `threads` writer threads, each with batches of its own.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(threads: usize) -> io::Result<Writer> {
        let (jobs, rx) = smol::channel::unbounded::<(Job, Reply)>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("maildir-{i}")).spawn(move || writer(&rx))?;
        }
        Ok(Writer { jobs })
    }

    /// Writes one message with the next batch; answers once it is durable
    /// in `new/`.
    ///
    /// # Errors
    /// As [`deliver`].
    pub async fn deliver(&self, job: Job) -> Answer {
        self.submit(job).await.wait().await
    }

    /// Hands one message to the writer; [`Pending::wait`] gives the answer.
    /// Several submitted before waiting go into one batch.
    pub async fn submit(&self, job: Job) -> Pending {
        let (tx, rx) = smol::channel::bounded(1);
        Pending(self.jobs.send((job, tx)).await.ok().map(|()| rx))
    }
}

/// A message handed to the [`Writer`], not yet answered.
pub struct Pending(Option<smol::channel::Receiver<Answer>>);

impl Pending {
    /// The answer: where the copy is, once it is durable.
    ///
    /// # Errors
    /// As [`deliver`].
    pub async fn wait(self) -> Answer {
        let stopped = || DeliveryError::system("the Maildir writer has stopped");
        self.0.ok_or_else(stopped)?.recv().await.map_err(|_| stopped())?
    }
}

/// One writer thread: gathers a batch, writes it, makes it durable, answers.
fn writer(rx: &smol::channel::Receiver<(Job, Reply)>) {
    let mut last_took = Duration::ZERO;
    while let Ok(first) = rx.recv_blocking() {
        // Company for the first job: whatever comes within the gather.
        let mut bytes = first.0.crlf_size;
        let mut batch = vec![first];
        let until = Instant::now() + gather_for(last_took);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let next = match rx.try_recv() {
                Ok(next) => Some(next),
                Err(_) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    smol::block_on(async { rx.recv().await.ok() }.or(async {
                        smol::Timer::after(left).await;
                        None
                    }))
                }
            };
            match next {
                Some(next) => {
                    bytes += next.0.crlf_size;
                    batch.push(next);
                }
                None => break,
            }
        }
        let (jobs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let started = Instant::now();
        let n = jobs.len();
        let answers = deliver_batch(jobs);
        last_took = started.elapsed();
        log::debug!("maildir batch: {n} messages, {last_took:?}");
        for (answer, reply) in answers.into_iter().zip(replies) {
            let _ = reply.try_send(answer);
        }
    }
}

/// Looks for the copies an earlier attempt left, writes every other job into
/// `tmp/`, makes the files durable together, moves them into `new/` and
/// makes the new names durable: the answers are in the jobs' order.
fn deliver_batch(jobs: Vec<Job>) -> Vec<Answer> {
    let earlier = find_earlier(&jobs);
    let mut answers: Vec<Option<Answer>> = vec![None; jobs.len()];
    let mut placed: Vec<(usize, Placed)> = Vec::new();
    let mut staged = Vec::new();
    for ((slot, job), found) in jobs.into_iter().enumerate().zip(earlier) {
        match found {
            Ok(Some(path)) => placed.push((slot, Placed::earlier(path))),
            Ok(None) => staged.push((slot, stage_guarded(job))),
            Err(e) => answers[slot] = Some(Err(e)),
        }
    }
    let (slots, staged): (Vec<usize>, Vec<_>) = staged.into_iter().unzip();
    for (slot, s) in slots.into_iter().zip(sync(staged)) {
        match s.and_then(Staged::place) {
            Ok(p) => placed.push((slot, p)),
            Err(e) => answers[slot] = Some(Err(e)),
        }
    }
    let (slots, items): (Vec<usize>, Vec<Placed>) = placed.into_iter().unzip();
    for (slot, answer) in slots.into_iter().zip(sync_new_dirs(items)) {
        answers[slot] = Some(answer);
    }
    answers.into_iter().map(|a| a.unwrap_or_else(|| Err(DeliveryError::system("not written")))).collect()
}

/// For each job that asks for it ([`Key::look`]), the copy an earlier
/// attempt left in its `new/` or `cur/`, if any. Each directory is read once
/// per batch, however many jobs look there.
fn find_earlier(jobs: &[Job]) -> Vec<Result<Option<PathBuf>, DeliveryError>> {
    let mut wanted: HashMap<&Path, Vec<&str>> = HashMap::new();
    for job in jobs.iter().filter(|j| j.key.look) {
        wanted.entry(job.dir.as_path()).or_default().push(&job.key.unique);
    }
    let mut found: HashMap<(&Path, &str), PathBuf> = HashMap::new();
    let mut failed: HashMap<&Path, String> = HashMap::new();
    for (dir, uniques) in &wanted {
        for sub in ["new", "cur"] {
            let d = dir.join(sub);
            let entries = match fs::read_dir(&d) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    failed.insert(dir, format!("{}: {e}", d.display()));
                    continue;
                }
            };
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let name = entry.file_name();
                let Some(unique) = name.to_str().and_then(key_part) else { continue };
                if let Some(&u) = uniques.iter().find(|&&u| u == unique) {
                    found.entry((dir, u)).or_insert_with(|| entry.path());
                }
            }
        }
    }
    jobs.iter()
        .map(|j| {
            if !j.key.look {
                return Ok(None);
            }
            let dir = j.dir.as_path();
            if let Some(path) = found.get(&(dir, j.key.unique.as_str())) {
                return Ok(Some(path.clone()));
            }
            match failed.get(dir) {
                Some(e) => Err(DeliveryError::system(format!("cannot look for an earlier copy: {e}"))),
                None => Ok(None),
            }
        })
        .collect()
}

/// Delivers one message into the Maildir at `dir`, creating it if needed;
/// see [`Job`] for the other arguments.
///
/// # Errors
/// A permanent [`DeliveryError`] (`5.2.2`) when over quota, else a transient
/// one (`4.3.0`); a partly written file is removed.
pub fn deliver(
    dir: &Path,
    hostname: &str,
    headers: &str,
    crlf_size: u64,
    key: Key,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
) -> Answer {
    let job = Job {
        dir: dir.to_path_buf(),
        hostname: hostname.to_string(),
        headers: headers.to_string(),
        crlf_size,
        body: Box::new(body),
        key,
    };
    deliver_batch(vec![job]).pop().unwrap_or_else(|| Err(DeliveryError::system("not written")))
}

/// A file written into `tmp/`, not yet durable nor in `new/`.
struct Staged {
    file: File,
    dev: u64,
    tmp: PathBuf,
    new_dir: PathBuf,
    final_path: PathBuf,
}

/// A durable copy in `new/` (or `cur/`), whose name may not be on disk yet.
struct Placed {
    /// The directory holding it, to fsync.
    dir: PathBuf,
    path: PathBuf,
    /// An earlier attempt's copy: kept when the fsync fails, as it is not
    /// this attempt's to take back.
    earlier: bool,
}

impl Placed {
    fn earlier(path: PathBuf) -> Placed {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Placed { dir, path, earlier: true }
    }
}

impl Staged {
    fn discard(&self, e: io::Error, path: &Path) -> DeliveryError {
        let _ = fs::remove_file(&self.tmp);
        classify(&path.display().to_string(), e)
    }

    /// Moves the file into `new/`. A file already there under its name is
    /// an earlier attempt's copy of the same message for the same
    /// recipient: this one is dropped and that one kept.
    fn place(self) -> Result<Placed, DeliveryError> {
        match move_new(&self.tmp, &self.final_path) {
            Ok(()) => Ok(Placed { dir: self.new_dir, path: self.final_path, earlier: false }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&self.tmp);
                Ok(Placed { dir: self.new_dir, path: self.final_path, earlier: true })
            }
            Err(e) => Err(self.discard(e, &self.final_path)),
        }
    }
}

/// Makes the staged files' data and metadata durable: one syncfs per
/// filesystem, on the first file opened there, so every later write error is
/// reported to it. Where syncfs fails, each file is fsynced on its own
/// instead, and only a file that fails that is given up.
fn sync(staged: Vec<Result<Staged, DeliveryError>>) -> Vec<Result<Staged, DeliveryError>> {
    let mut tried: Vec<(u64, bool)> = Vec::new();
    staged
        .into_iter()
        .map(|s| {
            let s = s?;
            let whole_fs = match tried.iter().find(|(d, _)| *d == s.dev) {
                Some(&(_, ok)) => ok,
                None => {
                    let ok = syncfs_is_trusted(&s.file) && rustix::fs::syncfs(&s.file).is_ok();
                    tried.push((s.dev, ok));
                    ok
                }
            };
            if !whole_fs && let Err(e) = s.file.sync_all() {
                return Err(s.discard(e, &s.tmp));
            }
            Ok(s)
        })
        .collect()
}

/// Makes the new names durable with one fsync per directory; a file this
/// attempt moved there is taken back when its directory fails that, and the
/// queue tries again.
fn sync_new_dirs(placed: Vec<Placed>) -> Vec<Answer> {
    let mut dirs: Vec<(PathBuf, Result<(), String>)> = Vec::new();
    placed
        .into_iter()
        .map(|p| {
            let done = match dirs.iter().find(|(d, _)| *d == p.dir) {
                Some((_, done)) => done.clone(),
                None => {
                    let done = File::open(&p.dir).and_then(|d| d.sync_all()).map_err(|e| e.to_string());
                    dirs.push((p.dir.clone(), done.clone()));
                    done
                }
            };
            match done {
                Ok(()) => Ok(Delivered { path: p.path, earlier: p.earlier }),
                Err(e) => {
                    if !p.earlier {
                        let _ = fs::remove_file(&p.path);
                    }
                    Err(DeliveryError::system(format!("{}: {e}", p.dir.display())))
                }
            }
        })
        .collect()
}

/// [`stage`], with a panic (in the body's source, say) failing this job only
/// rather than the writer thread and every delivery after it.
fn stage_guarded(job: Job) -> Result<Staged, DeliveryError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage(job)))
        .unwrap_or_else(|_| Err(DeliveryError::system("writing the Maildir file panicked")))
}

/// Writes one job's file into `tmp/`, without waiting for the disk.
fn stage(job: Job) -> Result<Staged, DeliveryError> {
    let Job { dir, hostname, headers, crlf_size, body, key } = job;
    debug_assert!(key.unique.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", key.unique);
    let tmp = dir.join("tmp");
    let new_dir = dir.join("new");
    if !new_dir.is_dir() {
        create(&dir).map_err(|e| classify(&dir.display().to_string(), e))?;
    }
    let base = unique_name(&hostname);
    let tmp_path = tmp.join(&base);
    let (file, size) = match write_file(&tmp_path, &headers, body) {
        Ok(done) => done,
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            return Err(classify(&tmp_path.display().to_string(), e));
        }
    };
    let virtual_size = headers.len() as u64 + headers.matches('\n').count() as u64 + crlf_size;
    let final_path = new_dir.join(format!(
        "{}.{}.{},S={size},W={virtual_size}",
        key.secs,
        key.unique,
        name_safe(&hostname)
    ));
    let dev = match file.metadata() {
        Ok(m) => m.dev(),
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            return Err(classify(&tmp_path.display().to_string(), e));
        }
    };
    Ok(Staged { file, dev, tmp: tmp_path, new_dir, final_path })
}

fn write_file(path: &Path, headers: &str, body: Body) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let mut out = LfWriter { inner: BufWriter::with_capacity(64 * 1024, file), cr: false, written: 0 };
    out.inner.write_all(headers.as_bytes())?;
    out.written += headers.len() as u64;
    body(&mut out)?;
    if out.cr {
        out.inner.write_all(b"\r")?;
        out.written += 1;
    }
    let written = out.written;
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    Ok((file, written))
}

fn classify(what: &str, e: io::Error) -> DeliveryError {
    let text = format!("{what}: {e}");
    if e.kind() == io::ErrorKind::QuotaExceeded {
        // Over quota is permanent here: a full mailbox (5.2.2).
        DeliveryError::new(EnhancedCode::new(5, 2, 2), format!("mailbox over quota: {text}"))
    } else {
        DeliveryError::system(text)
    }
}

/// Turns CRLF into LF on the way through; a CR split from its LF across two
/// writes is held back until the next byte shows what it is.
struct LfWriter<W: Write> {
    inner: W,
    cr: bool,
    written: u64,
}

impl<W: Write> Write for LfWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        if self.cr && !rest.is_empty() {
            self.cr = false;
            if rest[0] != b'\n' {
                self.inner.write_all(b"\r")?;
                self.written += 1;
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\r') {
            self.inner.write_all(&rest[..i])?;
            self.written += i as u64;
            match rest.get(i + 1) {
                Some(b'\n') => rest = &rest[i + 1..],
                Some(_) => {
                    self.inner.write_all(b"\r")?;
                    self.written += 1;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.cr = true;
                    rest = &[];
                }
            }
        }
        self.inner.write_all(rest)?;
        self.written += rest.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::path;
    use std::sync::atomic::Ordering;

    /// A key for test copy `n`.
    fn key(n: u32, look: bool) -> Key {
        Key { secs: 1_700_000_000, unique: format!("T{n}"), look }
    }

    fn lf(pieces: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut w = LfWriter { inner: Vec::new(), cr: false, written: 0 };
        for p in pieces {
            w.write_all(p).unwrap();
        }
        if w.cr {
            w.inner.push(b'\r');
            w.written += 1;
        }
        (w.inner, w.written)
    }

    #[test]
    fn a_slow_disk_gathers_bigger_batches_up_to_a_second() {
        let ms = Duration::from_millis;
        for (took, want) in [(0, 50), (20, 50), (50, 50), (300, 300), (999, 999), (5000, 1000)] {
            assert_eq!(gather_for(ms(took)), ms(want), "after a batch of {took} ms");
        }
    }

    #[test]
    fn crlf_becomes_lf_across_pieces() {
        assert_eq!(lf(&[b"a\r\nb\r\n"]).0, b"a\nb\n");
        assert_eq!(lf(&[b"a\r", b"\nb\r", b"\n"]).0, b"a\nb\n");
        assert_eq!(lf(&[b"a\r", b"x"]).0, b"a\rx");
        assert_eq!(lf(&[b"a\r"]), (b"a\r".to_vec(), 2));
        assert_eq!(lf(&[b"\r\n\r\n"]), (b"\n\n".to_vec(), 2));
    }

    #[test]
    fn delivers_into_new_with_sizes_in_the_name() {
        let root = tempfile::tempdir().unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let headers = "Return-Path: <a@b.example>\nDelivered-To: alice@example.com\n";
        let stored = b"Subject: hi\r\n\r\nbody\r\n";
        let p = deliver(&dir, "mx/1:2", headers, stored.len() as u64, key(1, false), |w| w.write_all(stored))
            .unwrap()
            .path;
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{headers}Subject: hi\n\nbody\n"));
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.contains(".mx\\0571\\0722,"), "{name}");
        assert!(
            name.ends_with(&format!(",S={},W={}", text.len(), text.len() + text.matches('\n').count())),
            "{name}"
        );
        assert_eq!(p.parent().unwrap(), dir.join("new"));
        assert!(dir.join("cur").is_dir());
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn the_writer_delivers_messages_sent_together_and_alone() {
        let root = tempfile::tempdir().unwrap();
        let writer = Writer::start(1).unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        let job = |user: &str, text: &'static [u8]| Job {
            dir: path(root.path(), "example.com", user),
            hostname: "mx".into(),
            headers: String::new(),
            crlf_size: text.len() as u64,
            body: Box::new(move |w| w.write_all(text)),
            key: key(n.fetch_add(1, Ordering::Relaxed), false),
        };
        // Twelve at once, over two Maildirs: one batch, then the gather timer.
        let together: Vec<Answer> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..12)
                .map(|i| {
                    let job = job(if i % 2 == 0 { "alice" } else { "bob" }, b"a\r\n");
                    let writer = &writer;
                    scope.spawn(move || smol::block_on(writer.deliver(job)))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(together.iter().all(Result::is_ok), "{together:?}");
        // Then one alone, after the others are answered.
        let alone = smol::block_on(writer.deliver(job("alice", b"b\r\n"))).unwrap().path;
        assert_eq!(fs::read(&alone).unwrap(), b"b\n");
        for (user, n) in [("alice", 7), ("bob", 6)] {
            let dir = path(root.path(), "example.com", user);
            assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), n, "{user}");
            assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0, "{user}");
        }
        // A failure among them is answered on its own.
        fs::write(root.path().join("example.org"), b"in the way").unwrap();
        let bad = Job { dir: path(root.path(), "example.org", "carol"), ..job("x", b"c\r\n") };
        assert!(matches!(smol::block_on(writer.deliver(bad)), Err(ref e) if e.is_transient()));
    }

    #[test]
    fn a_copy_is_written_once_and_found_again_in_new_or_cur() {
        let root = tempfile::tempdir().unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let count = |sub: &str| fs::read_dir(dir.join(sub)).unwrap().count();
        let first = deliver(&dir, "mx", "", 3, key(1, false), |w| w.write_all(b"a\r\n")).unwrap();
        assert!(!first.earlier);
        // The same copy again, not looked for: the move into new/ finds it.
        let again = deliver(&dir, "mx", "", 3, key(1, false), |w| w.write_all(b"a\r\n")).unwrap();
        assert_eq!(again, Delivered { path: first.path.clone(), earlier: true });
        assert_eq!((count("new"), count("tmp")), (1, 0));
        // A reader moved it to cur/ and flagged it: looking finds it there,
        // and the message's bytes are not even read.
        let name = first.path.file_name().unwrap().to_str().unwrap();
        let seen = dir.join("cur").join(format!("{name}:2,S"));
        fs::rename(&first.path, &seen).unwrap();
        let found = deliver(&dir, "mx", "", 3, key(1, true), |_| panic!("read again")).unwrap();
        assert_eq!(found, Delivered { path: seen.clone(), earlier: true });
        assert_eq!((count("new"), count("cur"), count("tmp")), (0, 1, 0));
        // Looked for in new/ too.
        fs::rename(&seen, &first.path).unwrap();
        let found = deliver(&dir, "mx", "", 3, key(1, true), |_| panic!("read again")).unwrap();
        assert_eq!(found, Delivered { path: first.path.clone(), earlier: true });
        // Another copy is another name.
        let other = deliver(&dir, "mx", "", 3, key(2, true), |w| w.write_all(b"b\r\n")).unwrap();
        assert!(!other.earlier);
        assert_eq!(fs::read(&other.path).unwrap(), b"b\n");
        assert_eq!((count("new"), count("tmp")), (2, 0));
        // Looking in a Maildir that does not exist yet finds nothing.
        let bob = path(root.path(), "example.com", "bob");
        assert!(!deliver(&bob, "mx", "", 3, key(1, true), |w| w.write_all(b"c\r\n")).unwrap().earlier);
    }

    #[test]
    fn names_are_dovecots_and_the_same_at_every_attempt() {
        let root = tempfile::tempdir().unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let p = deliver(&dir, "mx.example", "", 3, key(7, false), |w| w.write_all(b"a\r\n")).unwrap().path;
        assert_eq!(p, dir.join("new").join("1700000000.T7.mx.example,S=2,W=3"));
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind_and_is_transient() {
        let root = tempfile::tempdir().unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let err = deliver(&dir, "mx", "", 4, key(1, false), |_| Err(io::Error::other("store read failed")))
            .unwrap_err();
        assert!(err.is_transient() && err.text().contains("store read failed"), "{err:?}");
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 0);
    }

    #[test]
    fn a_file_in_the_way_is_transient() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("example.com"), b"not a directory").unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let err = deliver(&dir, "mx", "", 0, key(1, false), |_| Ok(())).unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    }
}
