//! The end-to-end harness: starts the real `postern` binary on 127.0.0.1:0 with
//! a config in a temp dir, reads its log, and talks to it with real clients.
#![allow(dead_code)]

pub mod dns;
pub mod mx;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running server and its temp dir.
pub struct Postern {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addr: SocketAddr,
    /// Port 587's stand-in.
    pub submission: SocketAddr,
    /// Port 465's stand-in.
    pub submissions: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Extra environment for the server process, kept for restarts.
    env: Vec<(String, String)>,
}

/// The config every test starts from; `extra` is appended (tables only).
pub fn config_text(dir: &Path, top: &str, extra: &str) -> String {
    format!(
        r#"hostname = "mx.test.example"
data_dir = "{data}"
mail_root = "{mail}"
{top}
[listen]
mx = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]
imap = ["127.0.0.1:0"]
imaps = ["127.0.0.1:0"]

[domains."example.com"]
users = {{ alice = "{alice}", bob = "" }}
aliases = {{ team = ["alice", "bob"], fwd = "someone@elsewhere.example" }}

[domains."example.org"]
users = {{ carol = "" }}
{extra}
{outbound}
"#,
        data = dir.join("data").display(),
        mail = dir.join("mail").display(),
        alice = alice_hash(),
        // Tests never ask the system's DNS: nothing listens on 127.0.0.1:9,
        // so lookups fail at once, unless a test brings its own [outbound].
        outbound =
            if extra.contains("[outbound]") { "" } else { "[outbound]\nnameservers = [\"127.0.0.1:9\"]\n" },
    )
}

/// alice's password in every test config.
pub const ALICE_PASSWORD: &str = "alice-secret";

/// The argon2id hash of [`ALICE_PASSWORD`], made once per test binary.
pub fn alice_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| postern::auth::hash_password(ALICE_PASSWORD).expect("hash"))
}

impl Postern {
    /// Starts a server with the default test config plus `extra` tables.
    pub fn start(extra: &str) -> Postern {
        Postern::start_with("", extra)
    }

    /// Starts a server; `top` adds top-level keys, `extra` adds tables.
    pub fn start_with(top: &str, extra: &str) -> Postern {
        Postern::start_in(tempfile::tempdir().expect("temp dir"), top, extra)
    }

    /// Starts a server in a temp dir the test has prepared (say, with a small
    /// file system mounted where `data` or `mail` will be).
    pub fn start_in(dir: tempfile::TempDir, top: &str, extra: &str) -> Postern {
        Postern::start_in_env(dir, top, extra, &[])
    }

    /// As [`Postern::start_in`], with extra environment for the server
    /// (say, `LD_PRELOAD` of a library that fakes its clock).
    pub fn start_in_env(dir: tempfile::TempDir, top: &str, extra: &str, env: &[(&str, &str)]) -> Postern {
        let config = dir.path().join("postern.toml");
        std::fs::write(&config, config_text(dir.path(), top, extra)).expect("write config");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, log, [addr, submission, submissions]) = spawn(&config, &env);
        Postern { dir, config, addr, submission, submissions, child, log, env }
    }

    /// Kills the server with SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server with SIGTERM, as systemd does, and waits for it to
    /// exit (a stop may take a while: sessions, then deliveries, have a grace
    /// period).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < 2 * DEADLINE,
                "postern did not stop after SIGTERM:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and starts it again on the same config and data.
    pub fn restart(&mut self) {
        self.kill();
        let (child, log, [addr, submission, submissions]) = spawn(&self.config, &self.env);
        self.child = child;
        self.log = log;
        self.addr = addr;
        self.submission = submission;
        self.submissions = submissions;
    }

    /// The exit status, once the server has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits until a log line contains every one of `parts`, and returns it.
    pub fn wait_log(&self, parts: &[&str]) -> String {
        wait_for(&format!("a log line with {parts:?}\nlog so far:\n{}", self.log_text()), || {
            let log = self.log.lock().ok()?;
            log.iter().find(|l| parts.iter().all(|p| l.contains(p))).cloned()
        })
    }

    /// How many log lines contain every one of `parts`.
    pub fn count_log(&self, parts: &[&str]) -> usize {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        log.iter().filter(|l| parts.iter().all(|p| l.contains(p))).count()
    }

    pub fn mail_root(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The files in a user's `new/`.
    pub fn inbox(&self, domain: &str, user: &str) -> Vec<PathBuf> {
        let dir = self.mail_root().join(domain).join(user).join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Waits until a user's `new/` holds `n` files, and returns them.
    pub fn wait_inbox(&self, domain: &str, user: &str, n: usize) -> Vec<PathBuf> {
        wait_for(&format!("{n} messages for {user}@{domain}\nlog:\n{}", self.log_text()), || {
            let files = self.inbox(domain, user);
            (files.len() >= n).then_some(files)
        })
    }

    /// A raw client connection, past the greeting.
    pub fn raw(&self) -> Raw {
        let mut r = Raw::connect(self.addr);
        let greeting = r.reply();
        assert!(greeting.starts_with("220 "), "greeting {greeting:?}");
        r
    }

    /// The address the listener `name` (`imap`, `imaps`...) was bound to.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let l = self.log.lock().expect("log");
        l.iter()
            .find_map(|line| {
                let rest = line.split("listening on ").nth(1)?;
                rest.strip_suffix(&format!(" ({name})"))?.parse::<SocketAddr>().ok()
            })
            .unwrap_or_else(|| panic!("no {name} listener in the log"))
    }

    /// Runs a Python script with `PORT`, `SUBMISSION`, `SUBMISSIONS`, `IMAP`,
    /// `IMAPS`, `MAILROOT`, `CAFILE` (the server's certificate) and
    /// `ALICE_PW` set; returns stdout.
    pub fn python(&self, script: &str) -> String {
        python(
            script,
            &[
                ("IMAP", &self.listener("imap").port().to_string()),
                ("IMAPS", &self.listener("imaps").port().to_string()),
                ("PORT", &self.port().to_string()),
                ("SUBMISSION", &self.submission.port().to_string()),
                ("SUBMISSIONS", &self.submissions.port().to_string()),
                ("MAILROOT", &self.mail_root().display().to_string()),
                ("CAFILE", &self.dir.path().join("data/tls/cert.pem").display().to_string()),
                ("ALICE_PW", ALICE_PASSWORD),
            ],
        )
    }
}

impl Drop for Postern {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command that runs `program` (the postern binary, or a link to it named
/// `sendmail` or `mailq`), through the emulator named in
/// `POSTERN_TEST_RUNNER` (like `qemu-aarch64 -L /usr/aarch64-linux-gnu`) when
/// the tests run for another architecture.
pub fn command_for(program: &Path) -> Command {
    match runner() {
        Some(mut words) => {
            let mut cmd = Command::new(words.remove(0));
            cmd.args(words).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The emulator command, if the tests run under one.
pub fn runner() -> Option<Vec<String>> {
    let r = std::env::var("POSTERN_TEST_RUNNER").ok()?;
    let words: Vec<String> = r.split_whitespace().map(String::from).collect();
    (!words.is_empty()).then_some(words)
}

/// A command running the postern binary.
pub fn postern() -> Command {
    command_for(Path::new(env!("CARGO_BIN_EXE_postern")))
}

fn spawn(config: &Path, env: &[(String, String)]) -> (Child, Arc<Mutex<Vec<String>>>, [SocketAddr; 3]) {
    let mut command = postern();
    command.envs(env.iter().map(|(k, v)| (k, v)));
    spawn_with(command, config)
}

/// Starts `command` (the postern binary, perhaps behind a wrapper such as
/// strace) with `serve --config CONFIG`, and waits until it is ready: the
/// child, its log, and its mx, submission and submissions addresses.
pub fn spawn_with(mut command: Command, config: &Path) -> (Child, Arc<Mutex<Vec<String>>>, [SocketAddr; 3]) {
    let mut child = command
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", std::env::var("POSTERN_TEST_RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start postern");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("POSTERN_TEST_LOG").is_some() {
                eprintln!("{line}");
            }
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    let addrs = wait_for("the server to log its addresses", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "postern exited early with {status}: {}",
                log.lock().map(|l| l.join("\n")).unwrap_or_default()
            );
        }
        let l = log.lock().ok()?;
        // The "ready" line comes after every listener is bound.
        if !l.iter().any(|line| line.contains(" ready")) {
            return None;
        }
        let find = |port: &str| {
            l.iter().find_map(|line| {
                let rest = line.split("listening on ").nth(1)?;
                rest.strip_suffix(&format!(" ({port})"))?.parse::<SocketAddr>().ok()
            })
        };
        Some([find("mx")?, find("submission")?, find("submissions")?])
    });
    (child, log, addrs)
}

/// Runs `python3 -c script` with extra environment; panics with its stderr on failure.
pub fn python(script: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plain TCP client for byte-exact and malformed input.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Raw { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one whole reply (all its lines), without the final CRLF.
    pub fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// The reply's code.
    pub fn code(&mut self) -> u16 {
        let r = self.reply();
        r.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("not a reply: {r:?}"))
    }

    /// Sends a command line (CRLF added) and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(n > 0, "connection closed; unread: {:?}", String::from_utf8_lossy(&self.buf));
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// True when the server has closed the connection (after any unread replies).
    pub fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// `[outbound]` pointing at the test DNS and the remote's port, with short timers.
pub fn outbound(dns: &dns::Dns, mx_port: u16, queue: &str) -> String {
    format!(
        "[outbound]\nnameservers = [\"{}\"]\nmx_port = {mx_port}\nconnect_timeout = \"2s\"\ncommand_timeout = \"5s\"\ndata_timeout = \"5s\"\n[queue]\n{queue}",
        dns.addr
    )
}

/// Sends one message through `p`'s MX port from a trusted client.
pub fn send(p: &Postern, from: &str, to: &[&str], body: &str) -> String {
    let mut c = p.raw();
    c.cmd("EHLO laptop.lan");
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    for rcpt in to {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "{rcpt}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd(&format!("{body}\r\n."));
    assert!(r.starts_with("250 2.0.0 OK queued as "), "{r}");
    r.rsplit(' ').next().unwrap().to_string()
}
