//! Writing a message into a Maildir safely: a unique name in `tmp/`, write,
//! make it durable, rename into `new/`, fsync `new/`. Only then may the queue
//! forget the recipient. Messages that are ready together are written
//! together, and share the waits for the disk. The layout is Dovecot's:
//! `<mail_root>/<domain>/<user>/{tmp,new,cur}`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smol::future::FutureExt as _;

use super::DeliveryError;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The Maildir of `user@domain` under `root`.
pub fn path(root: &Path, domain: &str, user: &str) -> PathBuf {
    root.join(domain).join(user)
}

/// One message to write into a Maildir.
pub struct Job {
    /// The Maildir (`path()`); created when missing.
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
}

/// The source of a message's bytes; see [`Job::body`].
pub type Body = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

type Answer = Result<PathBuf, DeliveryError>;
type Reply = smol::channel::Sender<Answer>;

/// The most messages, and about the most bytes, one batch writes.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// How long a batch waits for company after its first message. Delivery
/// takes that much longer; acceptance does not wait for it. A message every
/// couple of milliseconds, as from one busy client, then shares its trip to
/// the disk with several others.
const GATHER: Duration = Duration::from_millis(50);

/// Writes Maildir files in batches, on threads of its own. A batch gathers
/// the messages ready within [`GATHER`], writes every file into `tmp/`,
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
    /// The answer: the path of the new file once it is durable.
    ///
    /// # Errors
    /// As [`deliver`].
    pub async fn wait(self) -> Answer {
        let stopped = || DeliveryError::Transient("the Maildir writer has stopped".into());
        self.0.ok_or_else(stopped)?.recv().await.map_err(|_| stopped())?
    }
}

/// One writer thread: gathers a batch, writes it, makes it durable, answers.
fn writer(rx: &smol::channel::Receiver<(Job, Reply)>) {
    while let Ok(first) = rx.recv_blocking() {
        // Company for the first job: whatever comes within GATHER.
        let mut bytes = first.0.crlf_size;
        let mut batch = vec![first];
        let until = Instant::now() + GATHER;
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
        for (answer, reply) in deliver_batch(jobs).into_iter().zip(replies) {
            let _ = reply.try_send(answer);
        }
    }
}

/// Writes every job into `tmp/`, makes the files durable together, renames
/// them into `new/` and makes the new names durable: the answers are in the
/// jobs' order.
fn deliver_batch(jobs: Vec<Job>) -> Vec<Answer> {
    let staged = sync(jobs.into_iter().map(stage_guarded).collect());
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(staged.len());
    let mut renamed = Vec::new();
    for s in staged {
        match s.and_then(Staged::rename) {
            Ok(r) => {
                renamed.push((answers.len(), r));
                answers.push(None);
            }
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    let (slots, items): (Vec<usize>, Vec<Renamed>) = renamed.into_iter().unzip();
    for (slot, answer) in slots.into_iter().zip(settle(items)) {
        answers[slot] = Some(answer);
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(DeliveryError::Transient("not written".into()))))
        .collect()
}

/// Delivers one message into the Maildir at `dir`, creating it if needed;
/// see [`Job`] for the other arguments. Returns the path of the new file.
///
/// # Errors
/// [`DeliveryError::Permanent`] when over quota, else
/// [`DeliveryError::Transient`]; a partly written file is removed.
pub fn deliver(
    dir: &Path,
    hostname: &str,
    headers: &str,
    crlf_size: u64,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static,
) -> Answer {
    let job = Job {
        dir: dir.to_path_buf(),
        hostname: hostname.to_string(),
        headers: headers.to_string(),
        crlf_size,
        body: Box::new(body),
    };
    deliver_batch(vec![job]).pop().unwrap_or_else(|| Err(DeliveryError::Transient("not written".into())))
}

/// A file written into `tmp/`, not yet durable nor in `new/`.
struct Staged {
    file: File,
    dev: u64,
    tmp: PathBuf,
    new_dir: PathBuf,
    final_path: PathBuf,
}

/// A durable file renamed into `new/`; the new name may not be on disk yet.
struct Renamed {
    new_dir: PathBuf,
    final_path: PathBuf,
}

impl Staged {
    fn discard(&self, e: io::Error, path: &Path) -> DeliveryError {
        let _ = fs::remove_file(&self.tmp);
        classify(&path.display().to_string(), e)
    }

    fn rename(self) -> Result<Renamed, DeliveryError> {
        fs::rename(&self.tmp, &self.final_path).map_err(|e| self.discard(e, &self.final_path))?;
        Ok(Renamed { new_dir: self.new_dir, final_path: self.final_path })
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

/// Whether a successful `syncfs` on `file`'s filesystem means everything
/// written there is on disk. Before Linux 5.8 syncfs reported no write-back
/// errors, and before 5.17 it ignored a failed journal commit; FUSE and other
/// filesystems may answer success without flushing. So only ext4, XFS and
/// btrfs on Linux 5.17 or later are trusted; elsewhere each file and each
/// `new/` is fsynced on its own.
fn syncfs_is_trusted(file: &File) -> bool {
    const EXT4: u32 = 0xEF53;
    const XFS: u32 = 0x5846_5342;
    const BTRFS: u32 = 0x9123_683E;
    static KERNEL_OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let kernel_ok = *KERNEL_OK.get_or_init(|| {
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        kernel_at_least(&release, (5, 17))
    });
    // f_type is a signed or unsigned word depending on the architecture.
    #[allow(clippy::unnecessary_cast)]
    let fs_type = rustix::fs::fstatfs(file).map(|st| st.f_type as u32);
    kernel_ok && matches!(fs_type, Ok(EXT4 | XFS | BTRFS))
}

/// Whether a kernel release string such as "6.1.0-13-arm64" is at least
/// `(major, minor)`.
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// Makes the new names durable with one fsync per `new/` directory; a file
/// whose directory fails that is taken back, and the queue tries again.
fn settle(renamed: Vec<Renamed>) -> Vec<Answer> {
    let mut dirs: Vec<(PathBuf, Result<(), String>)> = Vec::new();
    renamed
        .into_iter()
        .map(|r| {
            let done = match dirs.iter().find(|(d, _)| *d == r.new_dir) {
                Some((_, done)) => done.clone(),
                None => {
                    let done = File::open(&r.new_dir).and_then(|d| d.sync_all()).map_err(|e| e.to_string());
                    dirs.push((r.new_dir.clone(), done.clone()));
                    done
                }
            };
            match done {
                Ok(()) => Ok(r.final_path),
                Err(e) => {
                    let _ = fs::remove_file(&r.final_path);
                    Err(DeliveryError::Transient(format!("{}: {e}", r.new_dir.display())))
                }
            }
        })
        .collect()
}

/// [`stage`], with a panic (in the body's source, say) failing this job only
/// rather than the writer thread and every delivery after it.
fn stage_guarded(job: Job) -> Result<Staged, DeliveryError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage(job)))
        .unwrap_or_else(|_| Err(DeliveryError::Transient("writing the Maildir file panicked".into())))
}

/// Writes one job's file into `tmp/`, without waiting for the disk.
fn stage(job: Job) -> Result<Staged, DeliveryError> {
    let Job { dir, hostname, headers, crlf_size, body } = job;
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
    let final_path = new_dir.join(format!("{base},S={size},W={virtual_size}"));
    let dev = match file.metadata() {
        Ok(m) => m.dev(),
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            return Err(classify(&tmp_path.display().to_string(), e));
        }
    };
    Ok(Staged { file, dev, tmp: tmp_path, new_dir, final_path })
}

/// Creates `dir/{tmp,new,cur}` and makes the new entries durable.
fn create(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["cur", "new", "tmp"] {
        builder.create(dir.join(sub))?;
    }
    // The new entries in the user's, the domain's and mail_root's directories
    // must be on disk too, or a power cut could take the file with them.
    for d in dir.ancestors().take(3) {
        File::open(d)?.sync_all()?;
    }
    Ok(())
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

/// A name no other delivery uses: time, microseconds, pid, a counter, host.
fn unique_name(hostname: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    // '/' and ':' may not appear in a Maildir name (':' starts the flags).
    let host = hostname.replace('/', "\\057").replace(':', "\\072");
    format!("{}.M{}P{}Q{}.{}", now.as_secs(), now.subsec_micros(), std::process::id(), seq, host)
}

fn classify(what: &str, e: io::Error) -> DeliveryError {
    let text = format!("{what}: {e}");
    if e.kind() == io::ErrorKind::QuotaExceeded {
        DeliveryError::Permanent(format!("mailbox over quota: {text}"))
    } else {
        DeliveryError::Transient(text)
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
    fn kernel_versions() {
        for (release, want) in [
            ("6.1.0-13-arm64", true),
            ("5.17.0", true),
            ("5.16.20-v8+", false),
            ("5.10.103-v7l+", false),
            ("4.19", false),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(kernel_at_least(release, (5, 17)), want, "{release}");
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
        let p = deliver(&dir, "mx/1:2", headers, stored.len() as u64, |w| w.write_all(stored)).unwrap();
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
        let job = |user: &str, text: &'static [u8]| Job {
            dir: path(root.path(), "example.com", user),
            hostname: "mx".into(),
            headers: String::new(),
            crlf_size: text.len() as u64,
            body: Box::new(move |w| w.write_all(text)),
        };
        // Twelve at once, over two Maildirs: one batch, then the settle timer.
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
        // Then one alone, after the others have settled.
        let alone = smol::block_on(writer.deliver(job("alice", b"b\r\n"))).unwrap();
        assert_eq!(fs::read(&alone).unwrap(), b"b\n");
        for (user, n) in [("alice", 7), ("bob", 6)] {
            let dir = path(root.path(), "example.com", user);
            assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), n, "{user}");
            assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0, "{user}");
        }
        // A failure among them is answered on its own.
        fs::write(root.path().join("example.org"), b"in the way").unwrap();
        let bad = Job { dir: path(root.path(), "example.org", "carol"), ..job("x", b"c\r\n") };
        assert!(matches!(smol::block_on(writer.deliver(bad)), Err(DeliveryError::Transient(_))));
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind_and_is_transient() {
        let root = tempfile::tempdir().unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let err = deliver(&dir, "mx", "", 4, |_| Err(io::Error::other("store read failed"))).unwrap_err();
        assert!(matches!(err, DeliveryError::Transient(ref s) if s.contains("store read failed")), "{err:?}");
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.join("new")).unwrap().count(), 0);
    }

    #[test]
    fn a_file_in_the_way_is_transient() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("example.com"), b"not a directory").unwrap();
        let dir = path(root.path(), "example.com", "alice");
        let err = deliver(&dir, "mx", "", 0, |_| Ok(())).unwrap_err();
        assert!(matches!(err, DeliveryError::Transient(_)), "{err:?}");
    }
}
