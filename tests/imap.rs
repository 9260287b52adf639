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
