//! End to end over IMAP: Python's imaplib against the running server over
//! real TLS (implicit on the imaps listener, STARTTLS on the imap one), on
//! mail delivered through SMTP into the same Maildir.

mod common;

use common::Postern;

/// Python prelude: clients that verify the server's own certificate for the
/// name mx.test.example, and alice's login.
const PRELUDE: &str = r#"
import os, imaplib, ssl, socket, re, time
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
HOST = "mx.test.example"
class S(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=HOST)
def imaps():
    return S("127.0.0.1", int(os.environ["IMAPS"]), ssl_context=ctx, timeout=30)
def alice():
    m = imaps()
    m.login("alice@example.com", os.environ["ALICE_PW"])
    return m
def ok(r):
    assert r[0] == "OK", r
    return r[1]
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\n{body}")
}

#[test]
fn mail_delivered_by_smtp_is_read_flagged_copied_moved_and_expunged_over_imaps() {
    let p = Postern::start("");
    common::send(
        &p,
        "bob@remote.example",
        &["alice@example.com"],
        "Subject: first\r\n\r\nline one\r\nline two",
    );
    common::send(&p, "bob@remote.example", &["alice@example.com"], "Subject: second\r\n\r\nhello again");
    p.wait_inbox("example.com", "alice", 2);
    let out = p.python(&script(
        r#"
m = alice()
caps = ok(m.capability())[0].decode()
for c in ["IMAP4rev1", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "LITERAL+"]:
    assert c in caps.split(), caps
# The special-use folders were made and subscribed at the first login.
lists = [l.decode() for l in ok(m.list())]
for name, use in [("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")]:
    assert any(l.endswith(' "/" ' + name) and use in l for l in lists), lists
assert any(l.endswith(" INBOX") for l in lists), lists
subs = [l.decode() for l in ok(m.lsub())]
assert len(subs) == 5, subs
n = int(ok(m.select("INBOX"))[0])
assert n == 2, n
uv = int(m.untagged_responses["UIDVALIDITY"][0])
# Bodies as stored, sent with CRLF, and sizes that count them.
typ, data = m.fetch("1:2", "(UID FLAGS RFC822.SIZE BODY.PEEK[])")
assert typ == "OK", data
bodies = [d for d in data if isinstance(d, tuple)]
assert len(bodies) == 2, data
for head, body in bodies:
    size = int(re.search(rb"RFC822.SIZE (\d+)", head).group(1))
    assert size == len(body), (head, len(body))
    assert b"\r\n" in body and b"\n" not in body.replace(b"\r\n", b""), body
assert b"Subject: first" in bodies[0][1] and b"line one\r\nline two" in bodies[0][1]
assert b"\\Seen" not in bodies[0][0], bodies[0][0]
# A header field, a partial text; the non-peek fetch sets \Seen.
typ, data = m.fetch("2", "(BODY[HEADER.FIELDS (SUBJECT)] BODY[TEXT]<0.5>)")
text = b"".join(d[1] for d in data if isinstance(d, tuple))
assert text == b"Subject: second\r\n\r\nhello", text
flags = ok(m.fetch("2", "(FLAGS)"))[0]
assert b"\\Seen" in flags, flags
# UID SEARCH, STORE, and the flags in the file name.
assert ok(m.uid("SEARCH", "SUBJECT", "second"))[0].split() == [b"2"]
assert ok(m.search(None, "UNSEEN"))[0].split() == [b"1"]
ok(m.store("1", "+FLAGS", "(\\Flagged $Label1)"))
assert ok(m.search(None, "KEYWORD", "$Label1"))[0].split() == [b"1"]
# COPY with COPYUID, MOVE, APPEND with APPENDUID.
typ, data = m.copy("1", "Archive")
assert typ == "OK" and re.match(rb"\[COPYUID \d+ 1 1\]", data[0]), data
typ, data = m.uid("MOVE", "2", "Trash")
assert typ == "OK", data
assert int(ok(m.select("INBOX"))[0]) == 1
typ, data = m.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nunfinished\r\n")
assert re.match(rb"\[APPENDUID \d+ 1\]", data[0]), data
st = ok(m.status("Drafts", "(MESSAGES UIDNEXT UIDVALIDITY)"))[0].decode()
assert "MESSAGES 1" in st and "UIDNEXT 2" in st, st
st = ok(m.status("Trash", "(MESSAGES)"))[0].decode()
assert "MESSAGES 1" in st, st
# Delete what is in INBOX.
ok(m.store("1", "+FLAGS", "\\Deleted"))
typ, data = m.expunge()
assert typ == "OK" and data == [b"1"], data
assert int(ok(m.select("INBOX"))[0]) == 0
assert int(m.untagged_responses["UIDVALIDITY"][0]) == uv
# INBOX in any case, also as a parent: one folder, listed once.
ok(m.create("inbox/sub"))
names = [l.decode() for l in ok(m.list())]
assert sum(1 for l in names if l.endswith(" INBOX")) == 1, names
assert any(l.endswith(" INBOX/sub") for l in names), names
m.logout()
print("done")
"#,
    ));
    assert_eq!(out.trim(), "done");
    // On disk: the flags of the copy in the file name, keywords in
    // dovecot-keywords, UIDs in dovecot-uidlist, nothing left in INBOX.
    let md = p.mail_root().join("example.com/alice");
    let archive: Vec<String> = std::fs::read_dir(md.join(".Archive/cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(archive.len(), 1);
    assert!(archive[0].ends_with(":2,Fa"), "{archive:?}");
    assert_eq!(
        std::fs::read_to_string(md.join(".Archive/dovecot-keywords")).unwrap_or_default(),
        "",
        "copied into Archive with the letter only"
    );
    assert_eq!(std::fs::read_to_string(md.join("dovecot-keywords")).unwrap(), "0 $Label1\n");
    assert!(std::fs::read_to_string(md.join("dovecot-uidlist")).unwrap().starts_with("3 V"));
    assert_eq!(
        std::fs::read_dir(md.join("cur")).unwrap().count()
            + std::fs::read_dir(md.join("new")).unwrap().count(),
        0
    );
}

#[test]
fn the_plain_port_offers_no_login_before_starttls() {
    let p = Postern::start("");
    let out = p.python(&script(
        r#"
m = imaplib.IMAP4("127.0.0.1", int(os.environ["IMAP"]), timeout=30)
caps = m.capabilities
assert "LOGINDISABLED" in caps and "STARTTLS" in caps and not any(c.startswith("AUTH=") for c in caps), caps
try:
    m.login("alice@example.com", os.environ["ALICE_PW"])
    raise SystemExit("login before TLS worked")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.host = HOST
ok(m.starttls(ssl_context=ctx))
caps = ok(m.capability())[0].decode().split()
assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps, caps
ok(m.login("alice", os.environ["ALICE_PW"]))
ok(m.select("INBOX"))
m.logout()
print("done")
"#,
    ));
    assert_eq!(out.trim(), "done");
}

#[test]
fn a_wrong_password_is_refused_and_logged_for_fail2ban() {
    let p = Postern::start("");
    let out = p.python(&script(
        r#"
m = imaps()
try:
    m.login("alice@example.com", "wrong")
    raise SystemExit("a wrong password worked")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
m.logout()
print("done")
"#,
    ));
    assert_eq!(out.trim(), "done");
    p.wait_log(&["auth failed client=[127.0.0.1]", "login=\"alice@example.com\"", "port=imaps"]);
}

#[test]
fn envelopes_structures_and_parts_of_a_multipart_message() {
    let p = Postern::start("");
    common::send(
        &p,
        "bob@remote.example",
        &["alice@example.com"],
        "From: Bob <bob@remote.example>\r\nTo: alice@example.com, \"Team, All\" <team@example.com>\r\nSubject: parts\r\n\
         Message-ID: <m1@remote.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"XX\"\r\n\r\n\
         preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n--XX\r\nContent-Type: text/html\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>html</p>\r\n--XX--\r\n",
    );
    p.wait_inbox("example.com", "alice", 1);
    let out = p.python(&script(
        r#"
m = alice()
ok(m.select("INBOX", readonly=True))
typ, data = m.fetch("1", "(ENVELOPE BODYSTRUCTURE)")
line = data[0] if isinstance(data[0], bytes) else b"".join(x if isinstance(x, bytes) else b"".join(x) for x in data)
text = line.decode()
assert '"parts"' in text, text
assert '(("Bob" NIL "bob" "remote.example"))' in text, text
assert '("Team, All" NIL "team" "example.com")' in text, text
assert '"<m1@remote.example>"' in text, text
assert '("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1' in text, text
assert '("text" "html" ("charset" "us-ascii") NIL NIL "quoted-printable" 11 1' in text, text
assert '"alternative" ("boundary" "XX")' in text, text
typ, data = m.fetch("1", "(BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[2.MIME])")
parts = [d[1] for d in data if isinstance(d, tuple)]
assert parts == [b"plain text", b"<p>html</p>", b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"], parts
typ, data = m.fetch("1", "(BODY.PEEK[3])")
assert b"NIL" in data[0], data
# EXAMINE: nothing was marked seen.
assert b"\\Seen" not in ok(m.fetch("1", "FLAGS"))[0]
m.logout()
print("done")
"#,
    ));
    assert_eq!(out.trim(), "done");
}

/// Whether a Debian tool is installed; under CI a missing one fails the
/// test (`.ci/run` installs it).
fn have(tool: &str, package: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed (CI needs it: apt-get install {package})"
        );
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// The files of a Maildir folder's `cur/` and `new/`, names only.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            out.extend(rd.map(|e| e.unwrap().file_name().into_string().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn mbsync_syncs_a_mailbox_both_ways_with_flags_and_expunges() {
    if !have("mbsync", "isync") {
        return;
    }
    let p = Postern::start("");
    common::send(&p, "bob@remote.example", &["alice@example.com"], "Subject: keep\r\n\r\nto be read");
    common::send(&p, "bob@remote.example", &["alice@example.com"], "Subject: drop\r\n\r\nto be deleted");
    p.wait_inbox("example.com", "alice", 2);
    let t = tempfile::tempdir().unwrap();
    let local = t.path().join("local");
    std::fs::create_dir(&local).unwrap();
    let rc = t.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount postern\nHost 127.0.0.1\nPort {port}\nUser alice@example.com\nPass {pw}\nSSLType IMAPS\nCertificateFile {cert}\n\n\
             IMAPStore remote\nAccount postern\n\nMaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            port = p.listener("imaps").port(),
            pw = common::ALICE_PASSWORD,
            cert = p.mail_root().parent().unwrap().join("data/tls/cert.pem").display(),
            local = local.display(),
        ),
    )
    .unwrap();
    let sync = || {
        let out = std::process::Command::new("mbsync").arg("-c").arg(&rc).arg("-a").output().unwrap();
        assert!(
            out.status.success(),
            "mbsync: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sync();
    let inbox = local.join("INBOX");
    let got = files(&inbox);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(local.join("Sent").is_dir() && local.join("Trash").is_dir(), "the special folders came down");
    // Read one, delete the other, write a draft: all three go up.
    let text = |name: &str| {
        std::fs::read_to_string(inbox.join("cur").join(name))
            .or_else(|_| std::fs::read_to_string(inbox.join("new").join(name)))
            .unwrap()
    };
    let (mut keep, mut drop) = (None, None);
    for name in &got {
        if text(name).contains("Subject: keep") {
            keep = Some(name.clone())
        } else {
            drop = Some(name.clone())
        }
    }
    let (keep, drop) = (keep.unwrap(), drop.unwrap());
    let at = |name: &str| {
        if inbox.join("cur").join(name).exists() {
            inbox.join("cur").join(name)
        } else {
            inbox.join("new").join(name)
        }
    };
    let base = |name: &str| name.split(":2,").next().unwrap().to_string();
    std::fs::rename(at(&keep), inbox.join("cur").join(format!("{}:2,S", base(&keep)))).unwrap();
    std::fs::rename(at(&drop), inbox.join("cur").join(format!("{}:2,T", base(&drop)))).unwrap();
    std::fs::write(local.join("Drafts/new/1700000000.local.draft"), "Subject: draft\n\nfrom the laptop\n")
        .unwrap();
    sync();
    let server = p.mail_root().join("example.com/alice");
    let on_server = files(&server);
    assert_eq!(on_server.len(), 1, "the deleted one was expunged: {on_server:?}");
    assert!(on_server[0].ends_with(":2,S"), "{on_server:?}");
    let drafts = files(&server.join(".Drafts"));
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    // And down again: a message delivered now arrives, nothing doubles.
    common::send(&p, "bob@remote.example", &["alice@example.com"], "Subject: later\r\n\r\nthird");
    common::wait_for("the third message", || (files(&server).len() == 2).then_some(()));
    sync();
    assert_eq!(files(&inbox).len(), 2, "{:?}", files(&inbox));
    assert_eq!(files(&local.join("Drafts")).len(), 1);
    sync();
    assert_eq!(files(&inbox).len(), 2, "a second sync changes nothing");
}

#[test]
fn idle_sessions_hear_of_new_mail_within_a_second_and_others_see_changes() {
    let p = Postern::start("");
    common::send(&p, "bob@remote.example", &["alice@example.com"], "Subject: one\r\n\r\nfirst");
    p.wait_inbox("example.com", "alice", 1);
    let out = p.python(&script(
        r#"
import smtplib, select
md = os.path.join(os.environ["MAILROOT"], "example.com", "alice")
def count():
    return sum(len(os.listdir(os.path.join(md, d))) for d in ("new", "cur"))
# Session B selects and idles on a raw TLS socket.
raw = socket.create_connection(("127.0.0.1", int(os.environ["IMAPS"])), 30)
b = ctx.wrap_socket(raw, server_hostname=HOST)
buf = b""
def expect(word, limit=10):
    global buf
    end = time.time() + limit
    while word not in buf:
        left = end - time.time()
        assert left > 0, (word, buf)
        r, _, _ = select.select([b], [], [], left)
        if r:
            buf += b.recv(65536)
    at = buf.index(word) + len(word)
    line_end = buf.index(b"\r\n", at) if b"\r\n" in buf[at:] else len(buf)
    got, buf = buf[:line_end], buf[line_end:]
    return got
expect(b"IMAP ready")
b.sendall(b"b1 LOGIN alice@example.com " + os.environ["ALICE_PW"].encode() + b"\r\n")
expect(b"b1 OK")
b.sendall(b"b2 SELECT INBOX\r\n")
expect(b"b2 OK")
b.sendall(b"b3 IDLE\r\n")
expect(b"+ idling")
# New mail through SMTP: it is told to the idle session within a second of
# reaching the Maildir.
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), timeout=30)
s.sendmail("bob@remote.example", ["alice@example.com"], "Subject: two\r\n\r\nsecond")
s.quit()
while count() < 2:
    time.sleep(0.01)
landed = time.time()
expect(b"* 2 EXISTS", 5)
# Under an emulator (POSTERN_TEST_RUNNER) the server runs many times slower.
limit = 4.0 if os.environ.get("POSTERN_TEST_RUNNER") else 1.0
assert time.time() - landed < limit, time.time() - landed
# Session A changes a flag and expunges; B hears both while idle.
a = alice()
ok(a.select("INBOX"))
ok(a.store("1", "+FLAGS", "\\Flagged"))
expect(b"FETCH (UID 1 FLAGS (\\Flagged", 5)
ok(a.store("1", "+FLAGS", "\\Deleted"))
ok(a.expunge())
expect(b"* 1 EXPUNGE", 5)
b.sendall(b"DONE\r\n")
expect(b"b3 OK")
# A program moving a file by hand is noticed on the next command too.
name = os.listdir(os.path.join(md, "new")) + os.listdir(os.path.join(md, "cur"))
assert len(name) == 1, name
src = os.path.join(md, "new", name[0]) if os.path.exists(os.path.join(md, "new", name[0])) else os.path.join(md, "cur", name[0])
os.rename(src, os.path.join(md, "cur", name[0].split(":2,")[0] + ":2,S"))
b.sendall(b"b4 NOOP\r\n")
got = expect(b"b4 OK")
assert re.search(rb"\* 1 FETCH \(UID 2 FLAGS \(\\Seen( \\Recent)?\)\)", got), got
a.logout()
print("done")
"#,
    ));
    assert_eq!(out.trim(), "done");
}

#[test]
fn concurrent_flag_changes_keep_every_uid_and_every_flag() {
    let p = Postern::start("");
    let out = p.python(&script(
        r#"
import threading
m = alice()
# Under an emulator (POSTERN_TEST_RUNNER) a smaller folder: it runs slowly.
N = 80 if os.environ.get("POSTERN_TEST_RUNNER") else 300
for i in range(N):
    ok(m.append("INBOX", None, None, b"Subject: m%d\r\n\r\nbody\r\n" % i))
ok(m.select("INBOX"))
uids_before = ok(m.uid("SEARCH", "ALL"))[0].split()
flags = ["\\Flagged", "\\Answered", "\\Draft", "$a", "$b", "$c"]
def writer(flag):
    c = alice()
    ok(c.select("INBOX"))
    for _ in range(4):
        ok(c.store("1:*", "+FLAGS.SILENT", "(%s)" % flag))
        ok(c.store("1:*", "-FLAGS.SILENT", "(%s)" % flag))
    ok(c.store("1:*", "+FLAGS.SILENT", "(%s)" % flag))
    c.logout()
threads = [threading.Thread(target=writer, args=(f,)) for f in flags]
for t in threads:
    t.start()
# Meanwhile another session keeps reading the folder.
r = alice()
ok(r.select("INBOX"))
while any(t.is_alive() for t in threads):
    ok(r.noop())
    assert "EXPUNGE" not in r.untagged_responses, r.untagged_responses.get("EXPUNGE")
for t in threads:
    t.join()
ok(r.noop())
assert "EXPUNGE" not in r.untagged_responses, r.untagged_responses.get("EXPUNGE")
assert ok(r.uid("SEARCH", "ALL"))[0].split() == uids_before
# Every message has every flag, and a fetch by number after others renamed
# the files still reads each body.
typ, data = r.fetch("1:*", "(FLAGS BODY.PEEK[TEXT])")
bodies = [d for d in data if isinstance(d, tuple)]
assert len(bodies) == N, len(bodies)
for head, body in bodies:
    for f in flags:
        assert f.encode() in head, head
    assert body == b"body\r\n", (head, body)
print("done")
"#,
    ));
    assert_eq!(out.trim(), "done");
    let list = std::fs::read_to_string(p.mail_root().join("example.com/alice/dovecot-uidlist")).unwrap();
    let n = if common::runner().is_some() { 81 } else { 301 };
    assert!(
        list.starts_with("3 V") && list.contains(&format!(" N{n} ")),
        "UIDs were given again: {}",
        list.lines().next().unwrap()
    );
}
