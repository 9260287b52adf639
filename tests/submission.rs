//! End to end on the submission ports: STARTTLS on 587, implicit TLS on 465,
//! AUTH, and the submission rules, with Python's smtplib and ssl as the client
//! and the server's own generated certificate as the trust anchor.

mod common;

use common::{Postern, wait_for};

/// Python prelude: a verifying TLS context that trusts the server's
/// certificate for the name mx.test.example.
const PRELUDE: &str = r#"
import os, smtplib, ssl, socket, time, base64
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
HOST = "mx.test.example"
def sub():
    s = smtplib.SMTP("127.0.0.1", int(os.environ["SUBMISSION"]), local_hostname="laptop.lan", timeout=30)
    s._host = HOST  # the name the certificate is checked against
    return s
class SSL(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        return self.context.wrap_socket(socket.create_connection((host, port), timeout), server_hostname=HOST)
def plain_only(s):
    # smtplib tries every offered mechanism in turn; one failure per login here.
    s.esmtp_features["auth"] = "PLAIN"
"#;

fn run(p: &Postern, body: &str) -> String {
    p.python(&format!("{PRELUDE}\n{body}"))
}

#[test]
fn starttls_login_on_587_delivers_locally_and_queues_remote_mail() {
    let p = Postern::start("");
    let out = run(
        &p,
        r#"
s = sub()
s.ehlo()
assert s.has_extn("starttls"), s.esmtp_features
assert not s.has_extn("auth"), "AUTH must not be offered before TLS"
s.starttls(context=ctx)
s.ehlo()
assert s.has_extn("auth") and not s.has_extn("starttls"), s.esmtp_features
print("auth", s.esmtp_features["auth"])
s.login("alice@example.com", os.environ["ALICE_PW"])
refused = s.sendmail("alice@example.com", ["bob@example.com", "friend@elsewhere.example"],
    "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: from the laptop\r\n\r\nhi bob\r\n")
print("refused", refused)
s.quit()
"#,
    );
    assert!(out.contains("PLAIN LOGIN"), "{out}");
    assert!(out.contains("refused {}"), "{out}");
    let files = p.wait_inbox("example.com", "bob", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("with ESMTPSA id "), "{text}");
    assert!(text.contains("\n\t(using TLSv1.3 with cipher TLS13_"), "{text}");
    assert!(text.contains("\n\t(authenticated)\n"), "{text}");
    assert!(!text.contains("alice-secret"));
    // smtplib wrote neither Date nor Message-ID: submission adds both.
    assert!(text.contains("\nDate: "), "{text}");
    assert!(text.contains("\nMessage-ID: <"), "{text}");
    p.wait_log(&["to=<friend@elsewhere.example>", "status=deferred"]);
}

#[test]
fn implicit_tls_login_on_465_delivers_and_keeps_the_clients_headers() {
    let p = Postern::start("");
    let out = run(
        &p,
        r#"
s = SSL("127.0.0.1", int(os.environ["SUBMISSIONS"]), context=ctx, timeout=30)
s.ehlo("phone")
assert not s.has_extn("starttls")
s.login("alice", os.environ["ALICE_PW"])
s.sendmail("alice+phone@example.com", ["bob@example.com"],
    "From: alice@example.com\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <mine@phone>\r\nSubject: 465\r\n\r\nfrom the phone\r\n")
print("cipher", s.sock.version())
s.quit()
"#,
    );
    assert!(out.contains("cipher TLSv1.3"), "{out}");
    let files = p.wait_inbox("example.com", "bob", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(text.matches("\nDate: ").count(), 1, "{text}");
    assert_eq!(text.matches("Message-ID: ").count(), 1, "{text}");
    assert!(text.contains("Message-ID: <mine@phone>"), "{text}");
}

#[test]
fn bytes_pipelined_after_starttls_are_discarded() {
    let p = Postern::start("");
    let out = run(
        &p,
        r#"
raw = socket.create_connection(("127.0.0.1", int(os.environ["SUBMISSION"])), timeout=30)
f = raw.makefile("rb")
def reply(f):
    lines = []
    while True:
        line = f.readline().decode()
        lines.append(line.rstrip("\r\n"))
        if line[3:4] != "-":
            return lines
print("greeting", reply(f))
raw.sendall(b"EHLO x\r\n"); reply(f)
# The injection: a command after STARTTLS in the same packet.
raw.sendall(b"STARTTLS\r\nNOOP\r\n")
print("starttls", reply(f))
t = ctx.wrap_socket(raw, server_hostname=HOST)
tf = t.makefile("rb")
t.sendall(b"EHLO y\r\n")
first = reply(tf)
print("first reply inside TLS", first[0])
t.sendall(b"QUIT\r\n")
print("quit", reply(tf))
"#,
    );
    assert!(out.contains("starttls ['220 2.0.0 ready to start TLS']"), "{out}");
    assert!(out.contains("first reply inside TLS 250-mx.test.example hello y"), "{out}");
}

#[test]
fn auth_and_mail_before_tls_are_refused() {
    let p = Postern::start("");
    let mut c = common::Raw::connect(p.submission);
    assert!(c.reply().starts_with("220 "));
    let ehlo = c.cmd("EHLO laptop");
    assert!(ehlo.contains("250-STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    assert!(c.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==").starts_with("538 5.7.11"));
    assert!(c.cmd("MAIL FROM:<alice@example.com>").starts_with("530 5.7.0"));
    // Port 25 never offers AUTH, with or without TLS.
    let mut mx = p.raw();
    assert!(!mx.cmd("EHLO c").contains("AUTH"));
    assert!(mx.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==").starts_with("503 5.5.1"));
}

#[test]
fn mail_without_login_on_587_is_refused_even_inside_tls() {
    let p = Postern::start("");
    let out = run(
        &p,
        r#"
s = sub()
s.starttls(context=ctx)
s.ehlo()
code, msg = s.mail("alice@example.com")
print("mail", code, msg.decode())
code, msg = s.docmd("AUTH", "CRAM-MD5")
print("cram", code)
code, msg = s.docmd("AUTH", "PLAIN not-base64!")
print("junk", code)
code, msg = s.docmd("AUTH", "PLAIN *")
print("star", code)
"#,
    );
    assert!(out.contains("mail 530 5.7.0 authentication required"), "{out}");
    assert!(out.contains("cram 504"), "{out}");
    assert!(out.contains("junk 501"), "{out}");
    assert!(out.contains("star 501"), "{out}");
}

#[test]
fn a_wrong_password_gets_535_after_a_delay_and_the_sender_must_be_the_users() {
    let p = Postern::start("");
    let out = run(
        &p,
        r#"
s = sub()
s.starttls(context=ctx)
s.ehlo()
plain_only(s)
start = time.monotonic()
try:
    s.login("alice@example.com", "wrong")
    print("logged in?!")
except smtplib.SMTPAuthenticationError as e:
    print("refused", e.smtp_code, e.smtp_error.decode(), "after %.2f" % (time.monotonic() - start))
start = time.monotonic()
try:
    s.login("nobody@example.com", "x")
except smtplib.SMTPAuthenticationError as e:
    print("unknown", e.smtp_code, "slow" if time.monotonic() - start >= 0.95 else "fast")
s.login("alice@example.com", os.environ["ALICE_PW"])
code, msg = s.mail("bob@example.com")
print("not hers", code, msg.decode())
s.rset()
code, msg = s.mail("someone@elsewhere.example")
print("foreign", code)
s.rset()
print("alias", s.mail("team@example.com")[0])
"#,
    );
    assert!(out.contains("refused 535 5.7.8 authentication credentials invalid after 1."), "{out}");
    assert!(out.contains("unknown 535 slow"), "{out}");
    assert!(
        out.contains(
            "not hers 553 5.7.1 <bob@example.com>: sender address not owned by user alice@example.com"
        ),
        "{out}"
    );
    assert!(out.contains("foreign 553"), "{out}");
    assert!(out.contains("alias 250"), "{out}");
    let line = p.wait_log(&["auth failed", "login=\"alice@example.com\""]);
    assert!(!line.contains("wrong"), "the password is never logged: {line}");
}

#[test]
fn failed_logins_are_limited_per_client_address() {
    let p = Postern::start("");
    let out = run(
        &p,
        r#"
import threading
codes = []
def fail():
    s = sub()
    s.starttls(context=ctx)
    s.ehlo()
    plain_only(s)
    try:
        s.login("mallory@example.com", "guess")
    except smtplib.SMTPAuthenticationError as e:
        codes.append(e.smtp_code)
    except smtplib.SMTPServerDisconnected:
        codes.append("closed")
threads = [threading.Thread(target=fail) for _ in range(10)]
for t in threads: t.start()
for t in threads: t.join()
print("first ten", sorted(map(str, codes)))
s = sub()
s.starttls(context=ctx)
s.ehlo()
code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.com\0" + os.environ["ALICE_PW"].encode()).decode())
print("eleventh", code, msg.decode())
"#,
    );
    // The tenth failure reaches the limit: that client gets 421 instead of 535.
    assert!(
        out.contains("first ten ['421', '535', '535', '535', '535', '535', '535', '535', '535', '535']"),
        "{out}"
    );
    assert!(out.contains("eleventh 421 4.7.0"), "{out}");
    p.wait_log(&["auth refused: too many failures client=[127.0.0.1]"]);
}

#[test]
fn the_self_signed_certificate_is_made_once_and_its_fingerprint_logged() {
    let mut p = Postern::start("");
    let first = p.wait_log(&["sha256 fingerprint"]);
    assert_eq!(p.count_log(&["generated a self-signed certificate for mx.test.example"]), 1);
    let cert = p.dir.path().join("data/tls/cert.pem");
    let key = p.dir.path().join("data/tls/key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read(&cert).unwrap();
    p.restart();
    let second = p.wait_log(&["sha256 fingerprint"]);
    assert_eq!(p.count_log(&["generated a self-signed"]), 0);
    let fp = |l: &str| l.split("fingerprint ").nth(1).unwrap().to_string();
    assert_eq!(fp(&first), fp(&second));
    assert_eq!(std::fs::read(&cert).unwrap(), pem);
    assert_eq!(fp(&first).len(), 32 * 3 - 1);
}

#[test]
fn check_config_refuses_an_unreadable_or_mismatched_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.example".to_string()]).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cert_a = write("a.crt", a.cert.pem());
    let key_a = write("a.key", a.signing_key.serialize_pem());
    let key_b = write("b.key", b.signing_key.serialize_pem());
    let garbage = write("garbage.pem", "not a certificate\n".into());
    let check = |cert: &std::path::Path, key: &std::path::Path| {
        let config = dir.path().join("postern.toml");
        std::fs::write(
            &config,
            format!(
                "hostname = \"mx.example\"\ndata_dir = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[domains.\"example.com\"]\n",
                dir.path().join("data").display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let out = common::postern().args(["check-config", "--config"]).arg(&config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(check(&cert_a, &key_a).0, Some(0));
    let (code, err) = check(&cert_a, &key_b);
    assert_eq!(code, Some(78));
    assert!(
        err.contains("a.crt and ") && err.contains("b.key") && err.to_lowercase().contains("key"),
        "{err}"
    );
    let (code, err) = check(&dir.path().join("missing.crt"), &key_a);
    assert_eq!(code, Some(78));
    assert!(err.contains("tls.cert") && err.contains("missing.crt"), "{err}");
    let (code, err) = check(&garbage, &key_a);
    assert_eq!(code, Some(78));
    assert!(err.contains("garbage.pem") && err.contains("no certificate"), "{err}");
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let p = Postern::start("");
    let before = p.wait_log(&["sha256 fingerprint"]);
    let mut open = p.raw();
    assert!(open.cmd("EHLO c").starts_with("250"));
    // Replace the generated pair, as a renewal would, and signal.
    std::fs::remove_file(p.dir.path().join("data/tls/cert.pem")).unwrap();
    let pid = p.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    p.wait_log(&["SIGHUP: config and TLS certificate reloaded"]);
    let fps: Vec<String> = wait_for("a second fingerprint line", || {
        let log = p.log_text();
        let fps: Vec<String> =
            log.lines().filter(|l| l.contains("sha256 fingerprint")).map(|l| l.to_string()).collect();
        (fps.len() == 2).then_some(fps)
    });
    assert_eq!(fps[0], before);
    assert_ne!(fps[0].split("fingerprint ").nth(1), fps[1].split("fingerprint ").nth(1));
    assert!(open.cmd("NOOP").starts_with("250"), "the open session survives the reload");
}

#[test]
// qemu-user 7.2 has no TCGETS2 ioctl (ENOSYS), which every terminal call
// needs; the native run of this test covers it.
#[cfg_attr(emulated, ignore = "qemu-user has no TCGETS2")]
fn passwd_asks_twice_on_a_terminal_without_echo_and_prints_a_hash_that_verifies() {
    let script = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:] + ["passwd", "alice@example.com"])
out = b""
def read_until(token):
    global out
    deadline = time.monotonic() + 20
    while token not in out and time.monotonic() < deadline:
        try:
            out += os.read(fd, 1024)
        except OSError:
            break
read_until(b"Password for alice@example.com: ")
os.write(fd, b"tty-secret\n")
read_until(b"Again: ")
os.write(fd, b"tty-secret\n")
read_until(b"$argon2id$")
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
sys.stdout.write(out.decode())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(env!("CARGO_BIN_EXE_postern"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("tty-secret"), "the password was echoed: {text}");
    let hash = text
        .split_whitespace()
        .find(|w| w.starts_with("$argon2id$"))
        .unwrap_or_else(|| panic!("no hash in {text}"));
    assert!(postern::auth::verify_password("tty-secret", hash));
    // Two different answers are refused.
    let mismatch = script.replace(
        "os.write(fd, b\"tty-secret\\n\")\nread_until(b\"$argon2id$\")",
        "os.write(fd, b\"other\\n\")\nread_until(b\"differ\")",
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &mismatch])
        .arg(env!("CARGO_BIN_EXE_postern"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("the passwords differ"));
}
