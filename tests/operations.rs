//! End to end for living with the server: sendmail for local programs, SIGHUP
//! reload, `postern status`, a clean stop on SIGTERM, and `postern queue` run
//! by root on a stopped server.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Postern, config_text, wait_for};

/// Runs `postern sendmail --config CFG ARGS` (or `sendmail` through a link)
/// with `input` on stdin; returns (exit code, stderr).
fn sendmail(p: &Postern, program: &std::path::Path, args: &[&str], input: &str) -> (i32, String) {
    let mut cmd = common::command_for(program);
    if program.ends_with("postern") {
        cmd.arg("sendmail");
    }
    let mut child = cmd
        .arg("--config")
        .arg(&p.config)
        .args(args)
        .env("LOGNAME", "cron")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A sendmail that refuses its arguments exits before reading: no pipe then.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn postern_bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_postern").into()
}

fn kill(p: &Postern, signal: &str) {
    assert!(Command::new("kill").args([signal, &p.pid().to_string()]).status().unwrap().success());
}

#[test]
fn cron_style_sendmail_t_reaches_a_local_maildir_and_the_queue() {
    let p = Postern::start("");
    let message = "To: alice@example.com, someone@elsewhere.example\nBcc: bob\nSubject: cron output\n\nbackup done\n.\nnot the end with -oi\n";
    let (code, err) = sendmail(&p, &postern_bin(), &["-t", "-oi", "-F", "Cron Daemon"], message);
    assert_eq!(code, 0, "{err}");
    let alice = p.wait_inbox("example.com", "alice", 1);
    let text = std::fs::read_to_string(&alice[0]).unwrap();
    assert!(text.contains("From: \"Cron Daemon\" <cron@example.com>\n"), "{text}");
    assert!(text.contains("\nDate: ") && text.contains("\nMessage-ID: <"), "{text}");
    assert!(text.ends_with("\nbackup done\n.\nnot the end with -oi\n"), "{text}");
    assert!(!text.contains("Bcc"), "{text}");
    let bob = p.wait_inbox("example.com", "bob", 1);
    assert!(!std::fs::read_to_string(&bob[0]).unwrap().contains("Bcc"));
    p.wait_log(&["to=<someone@elsewhere.example>", "status=deferred"]);
    p.wait_log(&["from=<cron@example.com>", "status=accepted"]);
}

#[test]
fn sendmail_by_its_own_name_with_recipients_and_a_dot_ending() {
    let p = Postern::start("");
    let link = p.dir.path().join("sendmail");
    std::os::unix::fs::symlink(postern_bin(), &link).unwrap();
    let (code, err) =
        sendmail(&p, &link, &["-f", "root@example.org", "carol"], "Subject: smartd\n\ndisk ok\n.\nignored\n");
    assert_eq!(code, 0, "{err}");
    let files = p.wait_inbox("example.org", "carol", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with("Return-Path: <root@example.org>\n"), "{text}");
    assert!(text.ends_with("\ndisk ok\n"), "a lone dot ends the message without -i: {text}");
    // Failures come back as sysexits codes with a clear message.
    let (code, err) = sendmail(&p, &link, &["nobody@example.com"], "Subject: x\n\ny\n");
    assert_eq!(code, 67, "{err}");
    assert!(err.contains("<nobody@example.com>: 550 5.1.1"), "{err}");
    let (code, err) = sendmail(&p, &link, &[], "Subject: x\n\ny\n");
    assert_eq!(code, 65, "{err}");
    let (code, _) = sendmail(&p, &link, &["-q"], "");
    assert_eq!(code, 64);
}

#[test]
fn sendmail_says_so_when_the_server_is_not_running() {
    let mut p = Postern::start("");
    p.kill();
    let (code, err) = sendmail(&p, &postern_bin(), &["alice"], "Subject: x\n\ny\n");
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("is postern running?"), "{err}");
}

#[test]
fn sendmail_refuses_control_characters_and_bad_addresses_in_its_arguments() {
    let p = Postern::start("");
    let second =
        "RCPT TO:<someone@elsewhere.example>\r\nDATA\r\nSubject: injected\r\n\r\nsecond message\r\n.\r\n";
    let attempts: [(&[&str], &str); 6] = [
        (
            &["-f", &format!("root@example.org>\r\n{second}MAIL FROM:<root@example.org"), "alice"],
            "control character",
        ),
        (&["-F", "Cron\r\nBcc: someone@elsewhere.example", "alice"], "control character"),
        (&["-F", "Cron\nX-Injected: yes", "alice"], "control character"),
        (&[&format!("alice@example.com>\r\n{second}RCPT TO:<bob@example.com"), "carol"], "control character"),
        (&["-f", "not an address", "alice"], "bad local part"),
        (&["alice", "bob@example.com>,<someone@elsewhere.example"], "bad"),
    ];
    for (args, why) in attempts {
        let (code, err) = sendmail(&p, &postern_bin(), args, "Subject: x\n\nbody\n");
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        // One line, with the argument escaped.
        assert!(!err.trim_end().contains(['\r', '\n']), "{args:?}: {err:?}");
    }
    // A plain one still goes through, and it is the only message accepted.
    let (code, err) = sendmail(
        &p,
        &postern_bin(),
        &["-f", "root@example.org", "-F", "Cron Daemon", "alice@example.com"],
        "Subject: fine\n\nbody\n",
    );
    assert_eq!(code, 0, "{err}");
    let files = p.wait_inbox("example.com", "alice", 1);
    assert!(std::fs::read_to_string(&files[0]).unwrap().contains("Subject: fine"));
    assert_eq!(p.count_log(&["status=accepted"]), 1, "{}", p.log_text());
    assert_eq!(p.inbox("example.com", "alice").len(), 1);
    assert!(p.inbox("example.com", "bob").is_empty() && p.inbox("example.org", "carol").is_empty());
    assert_eq!(p.count_log(&["someone@elsewhere.example"]), 0, "{}", p.log_text());
    // With -t, a recipient in the header section that the server's parser
    // refuses is refused here, shown escaped, and never sent.
    let (code, err) = sendmail(
        &p,
        &postern_bin(),
        &["-t"],
        "To: bad\x1b[31m@example.com, bob@example.com\nSubject: t\n\nbody\n",
    );
    assert_eq!(code, 67, "{err}");
    assert!(err.contains(r#""bad\u{1b}[31m@example.com": bad local part"#), "{err:?}");
    assert!(!err.contains(|c: char| c.is_control() && c != '\n'), "{err:?}");
    p.wait_inbox("example.com", "bob", 1);
}

#[test]
fn a_broken_config_on_sighup_is_reported_and_the_old_one_kept() {
    // The running config trusts no network, so 127.0.0.1 may not relay;
    // the broken one, had any of it been taken, would trust loopback by
    // default. The relay reply tells the two apart.
    let p = Postern::start("[relay]\ntrusted_networks = []\n");
    let replies = |p: &Postern| {
        let mut c = p.raw();
        c.cmd("EHLO c");
        c.cmd("MAIL FROM:<x@remote.example>");
        (c.cmd("RCPT TO:<alice@example.com>"), c.cmd("RCPT TO:<someone@elsewhere.example>"))
    };
    let (local, relay) = replies(&p);
    assert!(local.starts_with("250") && relay.starts_with("554 5.7.1"), "before: {local} / {relay}");
    std::fs::write(&p.config, "hostname = \"mx.test.example\"\n[limits]\nmax_recipients = \"lots\"\n")
        .unwrap();
    kill(&p, "-HUP");
    p.wait_log(&["SIGHUP: keeping the old config", "postern.toml"]);
    let (local, relay) = replies(&p);
    assert!(local.starts_with("250"), "still serving example.com: {local}");
    assert!(relay.starts_with("554 5.7.1"), "still the old relay rule: {relay}");
}

#[test]
fn a_user_added_on_sighup_can_log_in_at_once_and_open_sessions_survive() {
    let p = Postern::start("");
    let mut open = p.raw();
    assert!(open.cmd("EHLO early").starts_with("250"));
    let dave = postern::auth::hash_password("dave-pw").unwrap();
    let extra = format!("[domains.\"example.net\"]\nusers = {{ dave = \"{dave}\" }}\n");
    std::fs::write(&p.config, config_text(p.dir.path(), "", &extra)).unwrap();
    kill(&p, "-HUP");
    p.wait_log(&["SIGHUP: config and TLS certificate reloaded"]);
    let out = p.python(
        r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
s = smtplib.SMTP("127.0.0.1", int(os.environ["SUBMISSION"]), timeout=30)
s._host = "mx.test.example"
s.starttls(context=ctx)
s.ehlo()
s.esmtp_features["auth"] = "PLAIN"
print(s.login("dave@example.net", "dave-pw"))
s.sendmail("dave@example.net", ["alice@example.com"], "Subject: hello from dave\r\n\r\nhi\r\n")
s.quit()
"#,
    );
    assert!(out.contains("235"), "{out}");
    p.wait_inbox("example.com", "alice", 1);
    assert!(open.cmd("NOOP").starts_with("250"), "a session from before the reload goes on");
}

#[test]
fn status_reports_listeners_queue_deliveries_and_certificate() {
    let p = Postern::start("");
    let mut c = p.raw();
    c.cmd("EHLO c");
    c.cmd("MAIL FROM:<x@remote.example>");
    c.cmd("RCPT TO:<alice@example.com>");
    c.cmd("DATA");
    assert!(c.cmd("Subject: s\r\n\r\nb\r\n.").starts_with("250"));
    p.wait_inbox("example.com", "alice", 1);
    // The file shows in new/ a little before its name is known to be on disk
    // and the outcome is recorded.
    let text = wait_for("the delivery to be recorded", || {
        let out = common::postern().args(["status", "--config"]).arg(&p.config).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("queue: 0 message(s)").then_some(text)
    });
    assert!(text.contains(&format!("listening on {} (mx)", p.addr)), "{text}");
    assert!(text.contains(&format!("listening on {} (submissions)", p.submissions)), "{text}");
    assert!(text.contains(&format!("listening on {} (imaps)", p.listener("imaps"))), "{text}");
    assert!(text.contains("IMAP sessions: 0"), "{text}");
    assert!(text.contains("connections open: 1"), "{text}");
    assert!(text.contains("queue: 0 message(s)"), "{text}");
    assert!(text.contains("last hour: 1 delivered, 0 deferred, 0 failed"), "{text}");
    assert!(text.contains("data/tls/cert.pem expires in "), "{text}");
}

#[test]
fn sigterm_during_twenty_open_transactions_loses_nothing() {
    let mut p = Postern::start("[limits]\nmax_connections_per_ip = 30\n");
    let mut clients: Vec<common::Raw> = (0..20)
        .map(|i| {
            let mut c = p.raw();
            c.cmd("EHLO c");
            c.cmd("MAIL FROM:<x@remote.example>");
            assert!(c.cmd("RCPT TO:<alice@example.com>").starts_with("250"));
            assert!(c.cmd("DATA").starts_with("354"));
            c.send(format!("Subject: in flight {i}\r\n\r\nfirst half\r\n").as_bytes());
            c
        })
        .collect();
    let mut idle = p.raw();
    idle.cmd("EHLO idle");
    kill(&p, "-TERM");
    p.wait_log(&["stopping: no new connections"]);
    // A session between transactions is told to go.
    assert!(idle.reply().starts_with("421 4.3.2"));
    // Sessions inside DATA may finish, and what gets 250 is on disk.
    let mut queued = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let r = c.cmd(&format!("second half {i}\r\n."));
        assert!(r.starts_with("250 2.0.0 OK queued as "), "{r}");
        queued.push(r);
        // After its transaction the session is closed too.
        assert!(c.reply().starts_with("421 4.3.2"));
    }
    let status = wait_for("the server to exit", || p.try_wait());
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
    p.restart();
    wait_for("twenty messages", || (p.inbox("example.com", "alice").len() >= 20).then_some(()));
    let mut subjects: Vec<String> = p
        .inbox("example.com", "alice")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter_map(|t| t.lines().find(|l| l.starts_with("Subject: ")).map(String::from))
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 20, "every acknowledged message, each once: {subjects:?}");
    assert_eq!(queued.len(), 20);
}

/// The uid and gid that own the queue in the ownership tests: `nobody`'s,
/// standing in for the package's `postern` user.
const OWNER: u32 = 65534;

/// Whether this run may chown files and start processes as [`OWNER`]: only
/// as root. Without root the test is skipped, or fails under CI=true.
fn runs_as_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root: it chowns the queue to uid {OWNER} and runs postern as root"
    );
    eprintln!("{test} not checked: it needs root");
    false
}

/// A temp dir laid out as the package leaves a fresh install: `data` and an
/// empty `data/queue` and `mail`, owned by [`OWNER`], and a config it may read.
/// Returns the dir and the config's path.
fn packaged_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    // The owner must be able to reach the data and read the config.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("postern.toml");
    std::fs::write(&config, config_text(dir.path(), "", "")).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    for d in ["data", "data/queue", "mail"] {
        let path = dir.path().join(d);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(OWNER), Some(OWNER)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    (dir, config)
}

/// Every file and directory under `dir`, itself included, that is not owned
/// by `uid`, with its owner.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.uid() != uid {
            found.push((path.clone(), meta.uid()));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

/// `postern queue --config CONFIG list`, run as whoever runs the test.
fn queue_list(config: &Path) -> std::process::Output {
    common::postern().args(["queue", "--config"]).arg(config).arg("list").output().unwrap()
}

/// Starts the server as [`OWNER`] (std clears the supplementary groups when
/// root sets the uid) and waits until it is ready.
fn serve_as_owner(
    config: &Path,
) -> (Child, std::sync::Arc<std::sync::Mutex<Vec<String>>>, std::net::SocketAddr) {
    use std::os::unix::process::CommandExt as _;
    let mut command = common::postern();
    command.uid(OWNER).gid(OWNER);
    let (child, log, [addr, _, _]) = common::spawn_with(command, config);
    (child, log, addr)
}

/// Stops a server with SIGTERM and waits until it has exited 0.
fn stop(mut child: Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = wait_for("the server to exit", || child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
}

#[test]
fn root_does_not_follow_a_queue_link_into_another_users_directory() {
    if !runs_as_root("root_does_not_follow_a_queue_link_into_another_users_directory") {
        return;
    }
    let (dir, config) = packaged_dir();
    // What a compromised server could plant in its own data dir: the queue
    // as a link to a directory of another user's.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(12345), Some(12345)).unwrap();
    let queue = dir.path().join("data/queue");
    std::fs::remove_dir(&queue).unwrap();
    std::os::unix::fs::symlink(&theirs, &queue).unwrap();
    let out = queue_list(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(err.contains("belongs to uid 12345, not to uid 65534"), "{err}");
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0, "nothing made in the other user's directory");
}

#[test]
fn queue_commands_run_by_root_leave_every_file_to_the_queue_owner() {
    if !runs_as_root("queue_commands_run_by_root_leave_every_file_to_the_queue_owner") {
        return;
    }
    let (dir, config) = packaged_dir();
    let data = dir.path().join("data");
    // mailq before the server ever ran: the store is made, as the owner's.
    let out = queue_list(&config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the queue is empty"));
    for file in ["data.mdb", "lock.mdb", "postern.lock"] {
        assert!(data.join("queue").join(file).exists(), "{file} was not made");
    }
    assert_eq!(not_owned_by(&data, OWNER), [], "files root made in the queue");

    // So the server, as the owner, can start on it; it queues a message.
    let (child, log, addr) = serve_as_owner(&config);
    let mut c = common::Raw::connect(addr);
    assert!(c.reply().starts_with("220 "));
    c.cmd("EHLO c");
    c.cmd("MAIL FROM:<x@remote.example>");
    assert!(c.cmd("RCPT TO:<someone@elsewhere.example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("Subject: waits\r\n\r\nfor a stopped server\r\n.");
    assert!(r.starts_with("250 2.0.0 OK queued as "), "{r}");
    let id = r.rsplit(' ').next().unwrap().to_string();
    wait_for("the first attempt to be deferred", || {
        log.lock()
            .ok()?
            .iter()
            .any(|l| l.contains(&format!("id={id}")) && l.contains("status=deferred"))
            .then_some(())
    });
    drop(c);
    stop(child);

    // Root lists the real store with no server running, and leaves no file
    // of its own anywhere the server writes.
    let out = queue_list(&config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(not_owned_by(&data, OWNER), [], "files root made in the data dir");
    assert_eq!(not_owned_by(&dir.path().join("mail"), OWNER), [], "files root made in the mail root");

    // And the server starts again as the owner.
    let (child, _, _) = serve_as_owner(&config);
    stop(child);
}

/// Kills the process with this id when dropped, unless it was taken out.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

#[test]
fn root_does_not_start_the_server_on_directories_the_service_user_owns() {
    if !runs_as_root("root_does_not_start_the_server_on_directories_the_service_user_owns") {
        return;
    }
    let (dir, config) = packaged_dir();
    // A server that does start is killed when the wait runs out, so the test
    // fails rather than hangs.
    let serve_as_root = || {
        let mut child = common::postern()
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut killer = KillOnDrop(Some(child.id()));
        let status = wait_for("the server to refuse to start", || child.try_wait().ok().flatten());
        killer.0 = None;
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    };
    // What `sudo postern serve` did before: it ran, and left the lock and the
    // store root's, so the service could not start again.
    let (status, err) = serve_as_root();
    assert_eq!(status.code(), Some(77), "{err}");
    assert!(err.contains(&format!("{} belongs to uid {OWNER}", dir.path().join("data").display())), "{err}");
    assert_eq!(not_owned_by(&dir.path().join("data"), OWNER), [], "files root made in the data dir");
    assert_eq!(std::fs::read_dir(dir.path().join("data/queue")).unwrap().count(), 0, "the store was opened");

    // The mail root is checked too: a data dir of root's own is not enough.
    std::os::unix::fs::chown(dir.path().join("data"), Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(dir.path().join("data/queue"), Some(0), Some(0)).unwrap();
    let (status, err) = serve_as_root();
    assert_eq!(status.code(), Some(77), "{err}");
    assert!(err.contains(&format!("{} belongs to uid {OWNER}", dir.path().join("mail").display())), "{err}");
    assert_eq!(std::fs::read_dir(dir.path().join("data/queue")).unwrap().count(), 0, "the store was opened");

    // A layout made by hand: the roots root's, the queue or a user's
    // Maildir the service user's.
    std::os::unix::fs::chown(dir.path().join("mail"), Some(0), Some(0)).unwrap();
    let alice = dir.path().join("mail/example.com/alice");
    std::fs::create_dir_all(&alice).unwrap();
    std::os::unix::fs::chown(&alice, Some(OWNER), Some(OWNER)).unwrap();
    let (status, err) = serve_as_root();
    assert_eq!(status.code(), Some(77), "{err}");
    assert!(err.contains(&format!("{} belongs to uid {OWNER}", alice.display())), "{err}");
    std::os::unix::fs::chown(&alice, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(dir.path().join("data/queue"), Some(OWNER), Some(OWNER)).unwrap();
    let (status, err) = serve_as_root();
    assert_eq!(status.code(), Some(77), "{err}");
    assert!(
        err.contains(&format!("{} belongs to uid {OWNER}", dir.path().join("data/queue").display())),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path().join("data/queue")).unwrap().count(), 0, "the store was opened");
}

#[test]
fn queue_commands_refuse_a_data_dir_without_a_queue_and_create_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("postern.toml");
    std::fs::write(&config, config_text(dir.path(), "", "")).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let queue = data.join("queue");
    let expected =
        format!("postern: no queue at {}: the server creates it when it first starts\n", queue.display());
    let out = queue_list(&config);
    assert_eq!(out.status.code(), Some(69), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);
    // sendmail -bp is the same listing.
    let (code, err) = sendmail_bp(&config);
    assert_eq!(code, 69, "{err}");
    assert_eq!(err, expected);
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "the CLI made files in the data dir");
    assert!(!dir.path().join("mail").exists());
}

/// `postern sendmail --config CONFIG -bp`: (exit code, stderr).
fn sendmail_bp(config: &Path) -> (i32, String) {
    let out = common::postern().args(["sendmail", "--config"]).arg(config).arg("-bp").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}
