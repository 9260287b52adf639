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
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The most messages one batch writes.
const MAX_BATCH: usize = 64;

/// Writes Maildir files in batches, on threads of its own. A batch writes
/// every file into `tmp/`, makes them all durable with one `syncfs` per
/// filesystem, renames them into `new/`, and fsyncs each `new/` directory
/// once: twenty messages arriving together cost a few device flushes, where
/// a file-by-file fsync would cost forty or more.
pub struct Writer {
    jobs: smol::channel::Sender<(Job, smol::channel::Sender<Answer>)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts `threads` writer threads; while one waits for the disk, the
    /// next gathers its batch.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn start(threads: usize) -> io::Result<Writer> {
        let (jobs, rx) = smol::channel::unbounded::<(Job, smol::channel::Sender<Answer>)>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("maildir-{i}")).spawn(move || {
                while let Ok(first) = rx.recv_blocking() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let (jobs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    for (answer, reply) in deliver_batch(jobs).into_iter().zip(replies) {
                        let _ = reply.try_send(answer);
                    }
                }
            })?;
        }
        Ok(Writer { jobs })
    }

    /// Writes one message with the next batch; answers once it is durable
    /// in `new/`.
    ///
    /// # Errors
    /// As [`deliver`].
    pub async fn deliver(&self, job: Job) -> Answer {
        let (tx, rx) = smol::channel::bounded(1);
        let stopped = || DeliveryError::Transient("the Maildir writer has stopped".into());
        self.jobs.send((job, tx)).await.map_err(|_| stopped())?;
        rx.recv().await.map_err(|_| stopped())?
    }
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
    deliver_batch(vec![job]).pop().unwrap_or_else(|| Err(DeliveryError::Transient("nothing written".into())))
}

/// A file written into `tmp/`, not yet durable nor in `new/`.
struct Staged {
    file: File,
    tmp: PathBuf,
    new_dir: PathBuf,
    final_path: PathBuf,
}

impl Staged {
    fn discard(&self, e: io::Error, path: &Path) -> DeliveryError {
        let _ = fs::remove_file(&self.tmp);
        classify(&path.display().to_string(), e)
    }
}

/// Writes every job, then makes them durable together: the answers are in
/// the jobs' order.
fn deliver_batch(jobs: Vec<Job>) -> Vec<Answer> {
    let staged: Vec<Result<Staged, DeliveryError>> = jobs.into_iter().map(stage).collect();
    // 1. The files' data and metadata: one syncfs per filesystem, on the
    //    first file opened there, so every later write error is reported to
    //    it. Where syncfs fails, each file is fsynced on its own instead and
    //    only a file that fails that is given up.
    let mut synced: Vec<(u64, bool)> = Vec::new();
    let staged: Vec<Result<Staged, DeliveryError>> = staged
        .into_iter()
        .map(|s| {
            let s = s?;
            let dev = s.file.metadata().map(|m| m.dev()).unwrap_or(0);
            let whole_fs = match synced.iter().find(|(d, _)| *d == dev) {
                Some(&(_, ok)) => ok,
                None => {
                    let ok = rustix::fs::syncfs(&s.file).is_ok();
                    synced.push((dev, ok));
                    ok
                }
            };
            if !whole_fs && let Err(e) = s.file.sync_all() {
                return Err(s.discard(e, &s.tmp));
            }
            Ok(s)
        })
        .collect();
    // 2. Into new/, then the new names: one fsync per directory.
    let moved: Vec<Result<Staged, DeliveryError>> = staged
        .into_iter()
        .map(|s| {
            let s = s?;
            fs::rename(&s.tmp, &s.final_path).map_err(|e| s.discard(e, &s.final_path))?;
            Ok(s)
        })
        .collect();
    let mut dirs: Vec<(PathBuf, Result<(), String>)> = Vec::new();
    moved
        .into_iter()
        .map(|s| {
            let s = s?;
            let done = match dirs.iter().find(|(d, _)| *d == s.new_dir) {
                Some((_, r)) => r.clone(),
                None => {
                    let r = File::open(&s.new_dir).and_then(|d| d.sync_all()).map_err(|e| e.to_string());
                    dirs.push((s.new_dir.clone(), r.clone()));
                    r
                }
            };
            match done {
                Ok(()) => Ok(s.final_path),
                Err(e) => {
                    // Not known to be on disk: take it back, the queue retries.
                    let _ = fs::remove_file(&s.final_path);
                    Err(DeliveryError::Transient(format!("{}: {e}", s.new_dir.display())))
                }
            }
        })
        .collect()
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
    Ok(Staged { file, tmp: tmp_path, new_dir, final_path })
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
