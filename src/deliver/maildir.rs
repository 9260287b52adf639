//! Writing a message into a Maildir safely: a unique name in `tmp/`, write,
//! fsync, rename into `new/`, fsync `new/`. Only then may the queue forget the
//! recipient. The layout is Dovecot's: `<mail_root>/<domain>/<user>/{tmp,new,cur}`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::DeliveryError;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The Maildir of `user@domain` under `root`.
pub fn path(root: &Path, domain: &str, user: &str) -> PathBuf {
    root.join(domain).join(user)
}

/// Delivers one message into the Maildir at `dir`, creating it if needed.
/// `headers` (LF line ends) go first; `body` then writes the stored message
/// (CRLF line ends) into the writer it is given, which turns CRLF into LF as
/// Maildir files use it. `crlf_size` is the stored message's size, for the
/// `W=` part of the name that Dovecot reads.
///
/// Returns the path of the new file.
///
/// # Errors
/// [`DeliveryError::Permanent`] when over quota, else
/// [`DeliveryError::Transient`]; a partly written file is removed.
pub fn deliver(
    dir: &Path,
    hostname: &str,
    headers: &str,
    crlf_size: u64,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<PathBuf, DeliveryError> {
    let tmp = dir.join("tmp");
    let new = dir.join("new");
    if !new.is_dir() {
        create(dir).map_err(|e| classify(&dir.display().to_string(), e))?;
    }
    let base = unique_name(hostname);
    let tmp_path = tmp.join(&base);
    let result = write_file(&tmp_path, headers, body);
    let size = match result {
        Ok(size) => size,
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            return Err(classify(&tmp_path.display().to_string(), e));
        }
    };
    let virtual_size = headers.len() as u64 + headers.matches('\n').count() as u64 + crlf_size;
    let final_path = new.join(format!("{base},S={size},W={virtual_size}"));
    let moved = fs::rename(&tmp_path, &final_path).and_then(|()| File::open(&new)?.sync_all());
    if let Err(e) = moved {
        let _ = fs::remove_file(&tmp_path);
        return Err(classify(&final_path.display().to_string(), e));
    }
    Ok(final_path)
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

fn write_file(
    path: &Path,
    headers: &str,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<u64> {
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
    file.sync_all()?;
    Ok(written)
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
