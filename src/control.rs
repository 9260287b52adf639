//! The control socket in the data dir: how `postern queue ...` talks to the
//! running server, which alone opens the store while it runs.

use std::io::{self, BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smol::future::FutureExt as _;

use async_net::unix::UnixListener;
use smol::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::queue::admin::{self, Command};
use crate::queue::{Queue, SharedSettings};

/// The socket's path for a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Answers admin commands on the socket until the process ends. The socket is
/// readable and writable by its owner only.
///
/// # Errors
/// When the socket cannot be created.
pub fn listen(data_dir: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = path(data_dir);
    // A socket left by a server that died; the store lock proves no other
    // server is running.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What `status` answers, made by the caller.
pub type Status = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves one command per connection: a line in, `ok` or `error: ...` and
/// the output back. Besides the queue commands, `status`.
pub async fn serve(
    ex: Arc<smol::Executor<'static>>,
    listener: UnixListener,
    queue: Arc<Queue>,
    settings: SharedSettings,
    status: Status,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log::warn!("control socket: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (queue, settings, status) = (Arc::clone(&queue), Arc::clone(&settings), Arc::clone(&status));
        ex.spawn(async move {
            let talk = answer(stream, &queue, &settings, &status);
            let limit = async {
                smol::Timer::after(REQUEST_TIMEOUT).await;
            };
            talk.or(limit).await;
        })
        .detach();
    }
}

/// How long one control request may take, reading and answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn answer(
    stream: async_net::unix::UnixStream,
    queue: &Arc<Queue>,
    settings: &SharedSettings,
    status: &Status,
) {
    let mut reader = BufReader::new(stream.clone().take(4096));
    let mut line = String::new();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let current = Arc::clone(&*settings.read().unwrap_or_else(|p| p.into_inner()));
    let result = match Command::parse(&words) {
        _ if words == ["status"] => Ok(status()),
        // These change a message: they wait for its delivery attempt to end.
        Ok(cmd @ (Command::Delete(id) | Command::Bounce(id))) => queue.admin(id, cmd).await,
        Ok(cmd) => admin::run(queue, &current, &cmd).await,
        Err(e) => Err(e),
    };
    let answer = match result {
        Ok(out) => format!("ok\n{out}"),
        Err(e) => format!("error: {e}\n"),
    };
    let mut stream = stream;
    let _ = stream.write_all(answer.as_bytes()).await;
}

/// Sends `cmd` to the server running on `data_dir`. `Ok(None)` when no server
/// is listening there.
///
/// # Errors
/// When the server answers with an error, or the exchange breaks.
pub fn request(data_dir: &Path, cmd: &Command) -> Result<Option<String>, String> {
    request_line(data_dir, &cmd.to_line())
}

/// Sends one raw command line; see [`request`].
///
/// # Errors
/// As [`request`].
pub fn request_line(data_dir: &Path, line: &str) -> Result<Option<String>, String> {
    let path = path(data_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => {
            let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT + Duration::from_secs(5)));
            s
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut talk = || -> io::Result<String> {
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut reader = io::BufReader::new(&stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let mut rest = String::new();
        reader.read_to_string(&mut rest)?;
        Ok(format!("{status}{rest}"))
    };
    let answer = talk().map_err(|e| format!("{}: {e}", path.display()))?;
    match answer.split_once('\n') {
        Some(("ok", out)) => Ok(Some(out.to_string())),
        Some((err, _)) => Err(err.strip_prefix("error: ").unwrap_or(err).to_string()),
        None => Err(format!("{}: no answer from the server", path.display())),
    }
}
