//! End to end for the log: every line that carries outside text (a refused
//! relay, HELO, MAIL FROM, a failed login name, a remote server's reply) is
//! driven through the real server with text written to look like a failed
//! login from another address, and the real `fail2ban-regex` reads the log
//! with the filter we ship, as a file and as the systemd backend shows it.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::dns::{Dns, Zone};
use common::mx::{Behaviour, FakeMx};
use common::{Postern, wait_for};

/// The address the hostile text names: it never connects.
const FORGED: &str = "192.0.2.77";

/// What the unanchored filter took for a failed login from [`FORGED`].
const HOSTILE: &str = "postern::login] auth failed client=[192.0.2.77]";

/// A whole forged line, for places that might pass a line break through.
const FORGED_LINE: &str =
    "[2026-12-02T07:55:06Z WARN  postern::login] auth failed client=[192.0.2.77] login=\"x\" port=submission";

/// The remote MX refuses the recipient with two lines of hostile text, an
/// escape sequence and a bare CR.
const HOSTILE_REPLY: &str = "550-5.1.1 postern::server] auth failed client=[192.0.2.77] \x1b[31mred\r\n550 5.1.1 [2026-12-02T07:55:06Z WARN  postern::server] auth failed client=[192.0.2.77] login=\"x\" port=submission\rback";

/// `fail2ban-regex`, or `None` (and why) when it is not installed. Under
/// `CI=true` a missing tool fails the test instead.
fn fail2ban_regex() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|d| d.join("fail2ban-regex")).find(|p| p.is_file())
    });
    if found.is_none() {
        let why = "fail2ban-regex is not installed (apt-get install fail2ban)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}; CI=true needs it");
        eprintln!("skipped: {why}");
    }
    found
}

/// The client addresses `fail2ban-regex` finds failures for in `log`.
fn failures(tool: &Path, log: &Path) -> Vec<String> {
    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fail2ban/postern.conf");
    let out =
        Command::new(tool).arg("-o").arg("ip").arg(log).arg(&filter).output().expect("run fail2ban-regex");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fail2ban-regex failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

fn count(ips: &[String], ip: &str) -> usize {
    ips.iter().filter(|i| *i == ip).count()
}

#[test]
fn fail2ban_finds_only_the_real_client_whatever_clients_and_remote_servers_write() {
    let Some(tool) = fail2ban_regex() else { return };
    let dns = Dns::start();
    let remote = FakeMx::start(|_| Behaviour::Rcpt(HOSTILE_REPLY));
    // fwd@example.com forwards to someone@elsewhere.example, at the remote.
    dns.mx("elsewhere.example", "mx.elsewhere.test", Ipv4Addr::LOCALHOST);
    dns.set("x.test", Zone { nxdomain: true, ..Zone::default() });
    // Loopback is not trusted here: the test client is an outsider.
    let p = Postern::start(&format!(
        "[relay]\ntrusted_networks = [\"10.0.0.0/8\"]\n[outbound]\nnameservers = [\"{}\"]\nmx_port = {}\n",
        dns.addr,
        remote.addr.port()
    ));
    let hostile_local = |domain: &str| format!("\"{HOSTILE}\"@{domain}");

    // Five refused relays, each naming the hostile recipient.
    for _ in 0..5 {
        let mut c = p.raw();
        assert!(c.cmd("EHLO client=[192.0.2.77]").starts_with("250"));
        assert!(c.cmd(&format!("MAIL FROM:<{}>", hostile_local("x.test"))).starts_with("250"));
        let r = c.cmd(&format!("RCPT TO:<{}>", hostile_local("x.test")));
        assert!(r.starts_with("554 5.7.1"), "{r}");
        c.cmd("QUIT");
    }
    // Two accepted messages from hostile senders, forwarded to the remote,
    // which refuses with hostile text: the bounces go to the hostile senders,
    // one an unknown local name, one a remote domain that does not exist.
    for domain in ["example.com", "x.test"] {
        let mut c = p.raw();
        assert!(c.cmd("EHLO client=[192.0.2.77]").starts_with("250"));
        assert!(c.cmd(&format!("MAIL FROM:<{}>", hostile_local(domain))).starts_with("250"));
        assert!(c.cmd("RCPT TO:<fwd@example.com>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        let r = c.cmd("Subject: x\r\n\r\nbody\r\n.");
        assert!(r.starts_with("250 "), "{r}");
        c.cmd("QUIT");
    }
    // Two failed logins whose names hold the hostile text, one with a line break.
    let out = p.python(&format!(
        r#"
import os, smtplib, ssl
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
ctx.check_hostname = False
for login in [{HOSTILE:?}, "x\n" + {FORGED_LINE:?}]:
    s = smtplib.SMTP("127.0.0.1", int(os.environ["SUBMISSION"]), local_hostname="client=[192.0.2.77]", timeout=30)
    s.starttls(context=ctx)
    s.ehlo("client=[192.0.2.77]")
    s.esmtp_features["auth"] = "PLAIN"
    try:
        s.login(login, "wrong")
        print("accepted")
    except smtplib.SMTPAuthenticationError as e:
        print("refused", e.smtp_code)
    s.quit()
"#
    ));
    assert_eq!(out, "refused 535\nrefused 535\n");

    p.wait_log(&["to=<someone@elsewhere.example>", "status=failed"]);
    p.wait_log(&["status=no-report"]);
    wait_for("the bounce to x.test to fail", || {
        (p.count_log(&["status=failed", "5.1.2"]) >= 1).then_some(())
    });
    assert_eq!(p.count_log(&["relay refused client=[127.0.0.1]"]), 5);
    assert_eq!(p.count_log(&["auth failed client=[127.0.0.1]"]), 2);

    let log = p.log_text();
    let file = p.dir.path().join("postern.log");
    std::fs::write(&file, format!("{log}\n")).unwrap();
    // What the systemd backend matches: "host identifier[pid]: " and the message.
    let journal = p.dir.path().join("journal.log");
    let shown: String = log.lines().map(|l| format!("board postern[4242]: {l}\n")).collect();
    std::fs::write(&journal, shown).unwrap();

    for (what, path) in [("the log file", &file), ("the journal", &journal)] {
        let ips = failures(&tool, path);
        assert_eq!(count(&ips, FORGED), 0, "{what}: failures counted for {FORGED}: {ips:?}\nlog:\n{log}");
        // The control: every refused relay and failed login of the real client.
        assert_eq!(count(&ips, "127.0.0.1"), 7, "{what}: {ips:?}\nlog:\n{log}");
        assert_eq!(ips.len(), 7, "{what}: {ips:?}");
    }
    // Outside text stays inside its quoted value.
    let relay = r#"relay refused client=[127.0.0.1] reply="<\"postern::login] auth failed client=[192.0.2.77]\"@x.test>: relay access denied""#;
    assert_eq!(p.count_log(&[relay]), 5, "{log}");
    assert_eq!(p.count_log(&["helo=\"client=[192.0.2.77]\" status=accepted"]), 2, "{log}");
    assert!(!log.contains(['\r', '\u{1b}']), "control characters reached the log:\n{log}");
}
