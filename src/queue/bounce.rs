//! Delivery status notifications: RFC 3464 reports in an RFC 6522 multipart/report, built from pure data.
//!
//! The rendered message has three parts: a plain-words explanation, the machine-readable
//! `message/delivery-status` part and the original header section as `text/rfc822-headers`.
//! Every line ends in CRLF and is at most 998 octets; header fields are folded at 78 columns
//! where there is whitespace to fold at. Text that comes from outside (remote replies, addresses)
//! has its control characters and line breaks turned into single spaces, so it cannot end a field
//! or a part early.
#![forbid(unsafe_code)]

use std::time::SystemTime;

use crate::date::rfc5322_date;

/// What happened to one recipient, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientReport {
    /// The address as queued, e.g. "bob@example.org" (no angle brackets).
    pub recipient: String,
    /// Enhanced status code, e.g. "5.1.1" or "4.4.1".
    pub status: String,
    /// The remote server's reply (its lines joined on one line), or our
    /// own words; `None` when there is nothing to say.
    pub diagnostic: Option<String>,
    /// The host whose reply the diagnostic is, e.g. "mx.example.org"; `None`
    /// when no remote server said it.
    pub remote_mta: Option<String>,
}

/// Which report this is: a failure notice (a bounce) or a delay notice,
/// as its recipients' `Action` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `Action: failed`: delivery has been given up.
    Failed,
    /// `Action: delayed`: delivery is still being retried.
    Delayed,
}

/// Everything needed to write a DSN.
pub struct Dsn<'a> {
    /// Failed or delayed; applies to every recipient listed.
    pub notice: Notice,
    /// Our hostname.
    pub reporting_mta: &'a str,
    /// The original message's queue id.
    pub queue_id: &'a str,
    /// The address the DSN goes to (never empty).
    pub original_sender: &'a str,
    /// When the original message was queued (`Arrival-Date`).
    pub arrival: SystemTime,
    /// The DSN's `Date` and each recipient's `Last-Attempt-Date`.
    pub now: SystemTime,
    /// The recipients the report is about, in order.
    pub recipients: &'a [RecipientReport],
    /// The header section of the original message (CRLF lines, without the blank line), possibly empty.
    pub original_headers: &'a [u8],
    /// The DSN's Message-ID, with angle brackets.
    pub message_id: &'a str,
    /// The MIME boundary; the caller makes it unique.
    pub boundary: &'a str,
}

/// Where header fields and text are folded when there is whitespace to fold at.
const SOFT: usize = 78;
/// The hard limit on a line, without its CRLF (RFC 5322 section 2.1.1).
const HARD: usize = 998;

/// The whole DSN message, CRLF line endings, every line at most 998 octets, ending in CRLF.
pub fn render(d: &Dsn<'_>) -> Vec<u8> {
    let boundary: String = d.boundary.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
    let now = rfc5322_date(d.now);
    let mut human = Vec::new();
    explain(&mut human, d);
    let mut report = Vec::new();
    delivery_status(&mut report, d, &now);
    let mut headers = Vec::new();
    for line in split_lines(d.original_headers).filter(|l| !l.is_empty()) {
        push_header_line(&mut headers, line, &boundary);
    }

    let mut out = Vec::with_capacity(human.len() + report.len() + headers.len() + 1024);
    let field =
        |out: &mut Vec<u8>, name: &str, value: &str| push_folded(out, &format!("{name}: "), value, " ");
    field(&mut out, "From", &format!("Mail Delivery System <MAILER-DAEMON@{}>", d.reporting_mta));
    field(&mut out, "To", &format!("<{}>", d.original_sender));
    let subject = match d.notice {
        Notice::Failed => "Undelivered Mail Returned to Sender",
        Notice::Delayed => "Delayed Mail (still being retried)",
    };
    field(&mut out, "Subject", subject);
    field(&mut out, "Date", &now);
    field(&mut out, "Message-ID", d.message_id);
    field(&mut out, "Auto-Submitted", "auto-replied");
    field(&mut out, "MIME-Version", "1.0");
    let ct = format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\"");
    field(&mut out, "Content-Type", &ct);
    let eight_bit = [&human, &report, &headers].iter().any(|p| !p.is_ascii());
    if eight_bit {
        field(&mut out, "Content-Transfer-Encoding", "8bit");
    }
    out.extend_from_slice(b"\r\nThis is a MIME-encapsulated message.\r\n");

    let parts: [(&str, &str, &[u8]); 3] = [
        ("Notification", "text/plain; charset=utf-8", &human),
        ("Delivery report", "message/delivery-status", &report),
        ("Undelivered Message Headers", "text/rfc822-headers", &headers),
    ];
    for (description, content_type, body) in parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        field(&mut out, "Content-Description", description);
        field(&mut out, "Content-Type", content_type);
        if !body.is_ascii() {
            field(&mut out, "Content-Transfer-Encoding", "8bit");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The first part: what happened, in plain words.
fn explain(out: &mut Vec<u8>, d: &Dsn<'_>) {
    let para = |out: &mut Vec<u8>, text: &str| {
        push_folded(out, "", text, "");
        out.extend_from_slice(b"\r\n");
    };
    para(out, &format!("This is the mail system at host {}.", d.reporting_mta));
    match d.notice {
        Notice::Failed => para(
            out,
            "Your message could not be delivered to the recipients listed below. The errors are \
             permanent, so the mail system has given up and will not try again. Check the addresses, \
             or contact the recipients another way.",
        ),
        Notice::Delayed => para(
            out,
            "Your message has not been delivered yet to the recipients listed below. This is only a \
             warning: the mail system will keep trying to deliver it, and you do not need to do \
             anything now. If delivery finally fails, you will get a separate notice.",
        ),
    }
    push_folded(out, "Queue ID: ", d.queue_id, "  ");
    push_folded(out, "Arrived: ", &rfc5322_date(d.arrival), "  ");
    out.extend_from_slice(b"\r\n");
    for r in d.recipients {
        let what = match (&r.remote_mta, &r.diagnostic, d.notice) {
            (Some(host), Some(diag), _) => format!("{host} said: {diag}"),
            (None, Some(diag), _) => diag.clone(),
            (Some(host), None, Notice::Failed) => format!("delivery to {host} failed"),
            (Some(host), None, Notice::Delayed) => format!("delivery to {host} has not succeeded yet"),
            (None, None, Notice::Failed) => "delivery failed".to_string(),
            (None, None, Notice::Delayed) => "not delivered yet".to_string(),
        };
        push_folded(out, "", &format!("<{}>: {what} (status {})", r.recipient, r.status), "    ");
    }
}

/// The second part: the `message/delivery-status` fields.
fn delivery_status(out: &mut Vec<u8>, d: &Dsn<'_>, now: &str) {
    let field = |out: &mut Vec<u8>, lead: &str, value: &str| push_folded(out, lead, value, " ");
    field(out, "Reporting-MTA: dns; ", d.reporting_mta);
    field(out, "X-Postern-Queue-ID: ", d.queue_id);
    field(out, "Arrival-Date: ", &rfc5322_date(d.arrival));
    let action = match d.notice {
        Notice::Failed => "failed",
        Notice::Delayed => "delayed",
    };
    for r in d.recipients {
        out.extend_from_slice(b"\r\n");
        field(out, "Final-Recipient: rfc822; ", &r.recipient);
        field(out, "Action: ", action);
        field(out, "Status: ", &r.status);
        if let Some(host) = &r.remote_mta {
            field(out, "Remote-MTA: dns; ", host);
        }
        if let Some(diag) = &r.diagnostic {
            field(out, "Diagnostic-Code: smtp; ", diag);
        }
        field(out, "Last-Attempt-Date: ", now);
    }
}

/// Writes `lead` and the words of `text` as lines of at most [`SOFT`] columns where possible
/// (continuation lines start with `cont`), never more than [`HARD`]. Any run of whitespace or
/// control characters in `text` becomes one space, so CR and LF never reach the output.
fn push_folded(out: &mut Vec<u8>, lead: &str, text: &str, cont: &str) {
    let mut line = String::from(lead);
    let mut fresh = true; // no word on this line yet
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if !fresh && line.len() + 1 + word.len() > SOFT {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            line = cont.to_string();
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        let mut rest = word;
        // A word too long for any line is cut, at a character boundary.
        while line.len() + rest.len() > HARD {
            let mut cut = HARD - line.len();
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            line.push_str(&rest[..cut]);
            rest = &rest[cut..];
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            line = cont.to_string();
        }
        line.push_str(rest);
        fresh = false;
    }
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Splits on CRLF, bare LF or bare CR; a final line ending does not start another line.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = if rest[end..].starts_with(b"\r\n") { 2 } else { usize::from(end < rest.len()) };
        rest = &rest[end + skip..];
        Some(line)
    })
}

/// Writes one line of the original header section, split into continuation lines if it is longer
/// than [`HARD`] (before whitespace when there is some, else with an added leading space). A line
/// that would look like one of our boundary lines gets a leading space.
fn push_header_line(out: &mut Vec<u8>, mut line: &[u8], boundary: &str) {
    let looks_like_boundary = line.starts_with(b"--") && line[2..].starts_with(boundary.as_bytes());
    let mut prefix: &[u8] = if looks_like_boundary { b" " } else { b"" };
    loop {
        let room = HARD - prefix.len();
        out.extend_from_slice(prefix);
        if line.len() <= room {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            return;
        }
        let cut = match line[1..=room].iter().rposition(|&b| b == b' ' || b == b'\t') {
            Some(i) => {
                prefix = b""; // the rest starts with whitespace: already a continuation line
                i + 1
            }
            None => {
                prefix = b" ";
                let mut c = room;
                while c > 1 && line[c] & 0xC0 == 0x80 {
                    c -= 1; // do not split a UTF-8 sequence
                }
                c
            }
        };
        out.extend_from_slice(&line[..cut]);
        out.extend_from_slice(b"\r\n");
        line = &line[cut..];
    }
}

/// The header section of a stored message: every byte up to (not including) the first empty line;
/// the whole input if there is none. `limit` caps how many bytes are returned (cut after the last
/// line end within the limit when there is one, else at exactly `limit` bytes).
pub fn header_section(message: &[u8], limit: usize) -> &[u8] {
    let mut end = message.len();
    let mut start = 0;
    while start < message.len() {
        let rest = &message[start..];
        if rest.starts_with(b"\r\n") || rest[0] == b'\n' {
            end = start;
            break;
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    let head = &message[..end];
    if head.len() <= limit {
        return head;
    }
    match head[..limit].iter().rposition(|&b| b == b'\n') {
        Some(i) => &head[..=i],
        None => &head[..limit],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const BOUNDARY: &str = "=_postern_0123abcd";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn long_reply() -> String {
        let mut reply = String::new();
        for i in 0..5 {
            reply.push_str(&format!(
                "550-5.1.1 line {i} of a long and chatty reply from the remote mail server\r\n"
            ));
        }
        reply.push_str("550 5.1.1 <bob@example.org>: no such user here");
        assert!(reply.len() >= 300);
        reply
    }

    /// The reply as it should read once unfolded: whitespace runs as single spaces.
    fn one_line(reply: &str) -> String {
        reply.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn recipients() -> Vec<RecipientReport> {
        vec![
            RecipientReport {
                recipient: "bob@example.org".into(),
                status: "5.1.1".into(),
                diagnostic: Some(long_reply()),
                remote_mta: Some("mx.example.org".into()),
            },
            RecipientReport {
                recipient: "carol@example.net".into(),
                status: "5.0.0".into(),
                diagnostic: None,
                remote_mta: None,
            },
        ]
    }

    fn dsn<'a>(notice: Notice, recipients: &'a [RecipientReport], headers: &'a [u8]) -> Dsn<'a> {
        Dsn {
            notice,
            reporting_mta: "mx.example.com",
            queue_id: "0123abcd",
            original_sender: "alice@example.com",
            arrival: at(1_700_000_000),
            now: at(1_700_003_600),
            recipients,
            original_headers: headers,
            message_id: "<0123abcd.dsn@mx.example.com>",
            boundary: BOUNDARY,
        }
    }

    const HEADERS: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n";

    /// Every line ends in CRLF, is at most 998 octets, and there is no bare CR or LF.
    fn assert_wire_clean(msg: &[u8]) {
        assert!(msg.ends_with(b"\r\n"));
        for (i, &b) in msg.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(msg.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
            if b == b'\n' {
                assert!(i > 0 && msg[i - 1] == b'\r', "bare LF at {i}");
            }
        }
        for line in msg.split(|&b| b == b'\n') {
            assert!(line.len() <= HARD + 1, "line of {} octets", line.len());
        }
    }

    #[test]
    fn failure_reports_are_multipart_reports_with_the_failed_recipients_and_the_header() {
        let rcpts = recipients();
        let msg = render(&dsn(Notice::Failed, &rcpts, HEADERS));
        assert_wire_clean(&msg);
        let s = String::from_utf8(msg).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        for want in [
            "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n",
            "To: <alice@example.com>\r\n",
            "Subject: Undelivered Mail Returned to Sender\r\n",
            "Date: Tue, 14 Nov 2023 23:13:20 +0000\r\n",
            "Message-ID: <0123abcd.dsn@mx.example.com>\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"=_postern_0123abcd\"",
        ] {
            assert!(head.contains(want.trim_end()), "missing {want:?} in\n{head}");
        }
        assert!(!head.contains("Content-Transfer-Encoding"));
        assert_eq!(body.matches("\r\n--=_postern_0123abcd\r\n").count(), 3);
        assert!(body.ends_with("\r\n--=_postern_0123abcd--\r\n"));
        assert!(body.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(body.contains("Content-Type: message/delivery-status\r\n"));
        assert!(body.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(body.contains("\r\nQueue ID: 0123abcd\r\n"));
        assert!(body.contains("<bob@example.org>: mx.example.org said: 550-5.1.1 line 0"));
        assert!(body.contains("<carol@example.net>: delivery failed (status 5.0.0)"));

        let per_message = "Reporting-MTA: dns; mx.example.com\r\nX-Postern-Queue-ID: 0123abcd\r\n\
                           Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n";
        assert!(body.contains(per_message));
        let bob = "Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                   Remote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 550-5.1.1 line 0";
        assert!(body.contains(bob));
        let carol = "\r\n\r\nFinal-Recipient: rfc822; carol@example.net\r\nAction: failed\r\n\
                     Status: 5.0.0\r\nLast-Attempt-Date: Tue, 14 Nov 2023 23:13:20 +0000\r\n";
        assert!(body.contains(carol));
        assert!(body.contains(&String::from_utf8(HEADERS.to_vec()).unwrap()));

        // The diagnostic is folded at 78 columns and unfolds to the reply with its breaks as spaces.
        let start = body.find("Diagnostic-Code: ").unwrap();
        let end = start + body[start..].find("\r\nLast-Attempt-Date").unwrap();
        let folded = &body[start..end];
        assert!(folded.lines().count() > 4);
        for line in folded.split("\r\n") {
            assert!(line.len() <= SOFT, "{line:?}");
        }
        let unfolded = folded.replace("\r\n", "");
        assert_eq!(unfolded, format!("Diagnostic-Code: smtp; {}", one_line(&long_reply())));
    }

    #[test]
    fn delay_notices_are_multipart_reports_with_the_delayed_recipients() {
        let rcpts = vec![RecipientReport {
            recipient: "bob@example.org".into(),
            status: "4.4.1".into(),
            diagnostic: Some("451 4.4.1 try again later".into()),
            remote_mta: Some("mx.example.org".into()),
        }];
        let msg = render(&dsn(Notice::Delayed, &rcpts, b""));
        assert_wire_clean(&msg);
        let s = String::from_utf8(msg).unwrap();
        assert!(s.contains("\r\nSubject: Delayed Mail (still being retried)\r\n"));
        let flat = s.replace("\r\n", " ");
        assert!(flat.contains("has not been delivered yet"));
        assert!(flat.contains("will keep trying"));
        assert!(flat.contains("you do not need to do anything now"));
        assert!(s.contains("\r\nQueue ID: 0123abcd\r\n"));
        let group = "\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\
                     Remote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 451 4.4.1 try again later\r\n\
                     Last-Attempt-Date: Tue, 14 Nov 2023 23:13:20 +0000\r\n";
        assert!(s.contains(group));
        assert!(!s.contains("Action: failed"));
        assert!(s.contains("Content-Type: text/rfc822-headers\r\n\r\n\r\n--=_postern_0123abcd--\r\n"));
    }

    #[test]
    fn hostile_input_stays_on_the_wire_rules() {
        let rcpts = vec![RecipientReport {
            recipient: "bob@example.org\r\nBcc: eve@example.net".into(),
            status: "5.1.1".into(),
            diagnostic: Some(format!("550 {}\r\n.\r\n--{BOUNDARY}--\n\rx", "y".repeat(3000))),
            remote_mta: Some("mx.example.org".into()),
        }];
        let mut headers = b"Subject: ".to_vec();
        headers.extend_from_slice("é".repeat(1200).as_bytes());
        headers.extend_from_slice(b"\nX-Long: ");
        headers.extend_from_slice(&[b'a'; 1500]);
        headers.extend_from_slice(b" tail\r\r\n--=_postern_0123abcd--\r\nX-Bare: cr\rX-Last: 1");
        let msg = render(&dsn(Notice::Failed, &rcpts, &headers));
        assert_wire_clean(&msg);
        let s = String::from_utf8(msg).unwrap(); // no UTF-8 sequence was split
        assert!(!s.contains("\r\nBcc:"));
        assert_eq!(s.matches(&format!("\r\n--{BOUNDARY}--\r\n")).count(), 1);
        assert!(s.contains("\r\n --=_postern_0123abcd--\r\n"));
        assert!(s.contains("\r\nX-Bare: cr\r\nX-Last: 1\r\n"));
        assert!(s.contains("\r\nContent-Transfer-Encoding: 8bit\r\n"));
        // Long header lines continue with whitespace.
        assert!(!s.contains("\r\naaaa"));
    }

    #[test]
    fn utf8_recipient_passes_through() {
        let rcpts = vec![RecipientReport {
            recipient: "jörg@exämple.org".into(),
            status: "5.1.1".into(),
            diagnostic: None,
            remote_mta: None,
        }];
        let msg = render(&dsn(Notice::Failed, &rcpts, HEADERS));
        assert_wire_clean(&msg);
        let s = String::from_utf8(msg).unwrap();
        assert!(s.contains("Final-Recipient: rfc822; jörg@exämple.org\r\n"));
        assert!(s.contains("Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n"));
    }

    #[test]
    fn header_section_cases() {
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n", 1000), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\n", 1000), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2", 1000), b"A: 1\r\nB: 2");
        assert_eq!(header_section(b"\r\nbody", 1000), b"");
        assert_eq!(header_section(b"", 1000), b"");
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody", 1000), b"A: 1\nB: 2\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 15), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody", 12), b"A: 1\r\nB: 2\r\n");
        assert_eq!(header_section(b"Subject: long\r\n\r\n", 5), b"Subje");
        assert_eq!(header_section(b"A: 1\r\n\r\n", 0), b"");
    }

    #[test]
    fn python_email_package_parses_it() {
        let mut rcpts = recipients();
        rcpts.push(RecipientReport {
            recipient: "dave@example.net".into(),
            status: "5.7.1".into(),
            diagnostic: Some("554 5.7.1 rejected".into()),
            remote_mta: Some("mx.example.net".into()),
        });
        let msg = render(&dsn(Notice::Failed, &rcpts, HEADERS));
        let path = std::env::temp_dir().join(format!("postern-dsn-{}.eml", std::process::id()));
        std::fs::write(&path, &msg).unwrap();
        let script = r#"
import email, email.policy, sys
msg = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
assert msg.get_content_type() == "multipart/report", msg.get_content_type()
assert msg.get_param("report-type") == "delivery-status", msg.get_param("report-type")
parts = msg.get_payload()
print(" ".join(p.get_content_type() for p in parts))
status = parts[1]
assert status.get_content_type() == "message/delivery-status"
blocks = status.get_payload()
print("per-message", blocks[0]["Reporting-MTA"], blocks[0]["X-Postern-Queue-ID"])
for b in blocks[1:]:
    print(b["Final-Recipient"], b["Action"], b["Status"], "|", b["Diagnostic-Code"])
for p in msg.walk():
    assert not p.defects, (p.get_content_type(), p.defects)
print("subject", parts[2].get_payload(decode=True).decode().split("\r\n")[2])
"#;
        let out = std::process::Command::new("python3").arg("-c").arg(script).arg(&path).output().unwrap();
        std::fs::remove_file(&path).unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
        let want = format!(
            "text/plain message/delivery-status text/rfc822-headers\n\
             per-message dns; mx.example.com 0123abcd\n\
             rfc822; bob@example.org failed 5.1.1 | smtp; {}\n\
             rfc822; carol@example.net failed 5.0.0 | None\n\
             rfc822; dave@example.net failed 5.7.1 | smtp; 554 5.7.1 rejected\n\
             subject Subject: hi\n",
            one_line(&long_reply())
        );
        assert_eq!(stdout, want);
    }
}
