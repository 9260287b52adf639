//! Header fields Postern writes into messages (Received, Return-Path,
//! Delivered-To, and Date and Message-ID on the submission ports) and the
//! mail-loop count. Pure.

use std::time::SystemTime;

use crate::date::rfc5322_date;

/// What the Received header says about the client and the session.
#[derive(Clone, Debug)]
pub struct Trace<'a> {
    /// The name the client gave in EHLO/HELO.
    pub helo: &'a str,
    /// The client's IP address.
    pub ip: std::net::IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// The protocol keyword of RFC 3848: `SMTP`, `ESMTP`, `ESMTPSA`, ...
    pub protocol: &'a str,
    /// The TLS version and cipher, when the session used TLS.
    pub tls: Option<&'a crate::tls::TlsInfo>,
    /// True when the client logged in (who is never written).
    pub authenticated: bool,
    /// The queue id.
    pub id: &'a str,
    /// When the message arrived.
    pub when: SystemTime,
}

/// The Received header added at acceptance, CRLF-terminated. It never names
/// recipients: one copy of the message goes to all of them.
pub fn received(t: &Trace<'_>) -> String {
    let ip = match t.ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPv6:{v6}"),
        },
    };
    let mut comments = String::new();
    if let Some(tls) = t.tls {
        comments.push_str(&format!("\r\n\t(using {} with cipher {})", tls.version, tls.cipher));
    }
    if t.authenticated {
        comments.push_str("\r\n\t(authenticated)");
    }
    format!(
        "Received: from {} ([{}])\r\n\tby {} (Postern) with {} id {};\r\n\t{}{}\r\n",
        helo_for_header(t.helo),
        ip,
        t.hostname,
        t.protocol,
        t.id,
        rfc5322_date(t.when),
        comments
    )
}

/// What goes in front of a message at acceptance: the Received header and,
/// on the submission ports, a Date and a Message-ID when the client left
/// them out (RFC 6409 8). The Message-ID is `<queue id@hostname>`.
pub fn prefix(trace: &Trace<'_>, submission: bool, headers: &HeaderScan) -> Vec<u8> {
    let mut out = received(trace);
    if submission {
        if !headers.date {
            out.push_str(&format!("Date: {}\r\n", rfc5322_date(trace.when)));
        }
        if !headers.message_id {
            out.push_str(&format!("Message-ID: <{}@{}>\r\n", trace.id, trace.hostname));
        }
    }
    out.into_bytes()
}

/// More Received headers than this means a mail loop (RFC 5321 6.3).
pub const MAX_RECEIVED: usize = 50;

/// The EHLO name as written in a Received header: as given when it is a
/// domain or an address literal, else `unknown (helo=...)` with anything that
/// could unbalance a comment or is not plain ASCII escaped.
fn helo_for_header(helo: &str) -> String {
    if crate::envelope::Domain::parse(helo).is_ok() && helo.is_ascii() {
        return helo.to_string();
    }
    let escaped: String = helo
        .chars()
        .map(|c| match c {
            '(' | ')' | '\\' | '"' => format!("\\{c}"),
            c if c.is_ascii_graphic() => c.to_string(),
            c => format!("\\u{{{:x}}}", c as u32),
        })
        .collect();
    format!("unknown (helo={escaped})")
}

/// Watches the header section of a message as it streams past and notes the
/// fields Postern may have to add or count.
#[derive(Debug, Default)]
pub struct HeaderScan {
    done: bool,
    line: Vec<u8>,
    /// A `Date:` field was seen.
    pub date: bool,
    /// A `Message-ID:` field was seen.
    pub message_id: bool,
    /// How many `Received:` fields were seen.
    pub received: usize,
}

impl HeaderScan {
    /// Whether the message has been round a loop: more than
    /// [`MAX_RECEIVED`] Received fields.
    pub fn looped(&self) -> bool {
        self.received >= MAX_RECEIVED
    }

    /// Looks at the next bytes of the message (CRLF line ends).
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < 16 {
                self.line.push(b.to_ascii_lowercase());
            }
        }
    }

    fn end_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line.is_empty() || line.iter().all(|&c| c == b' ' || c == b'\t') {
            // The blank line, or one a parser may take for it.
            self.done = true;
        } else if line[0] != b' ' && line[0] != b'\t' {
            match line.iter().position(|&c| c == b':') {
                Some(colon) => match line[..colon].trim_ascii_end() {
                    b"date" => self.date = true,
                    b"message-id" => self.message_id = true,
                    b"received" => self.received += 1,
                    _ => {}
                },
                // Not a field (an mbox "From " line, say): the body has begun
                // for some parsers, so stop looking.
                None if self.line.len() < 16 => self.done = true,
                // A name longer than what is kept: a field we do not care about.
                None => {}
            }
        }
        self.line.clear();
    }
}

/// The headers prepended at local delivery, with LF line ends as Maildir
/// files use them.
pub fn delivery_headers(sender: Option<&str>, delivered_to: &str) -> String {
    format!("Return-Path: <{}>\nDelivered-To: {}\n", sender.unwrap_or(""), delivered_to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn received_records_tls_and_authentication() {
        let tls =
            crate::tls::TlsInfo { version: "TLSv1.3".into(), cipher: "TLS13_AES_128_GCM_SHA256".into() };
        let h = received(&Trace {
            helo: "laptop",
            ip: "192.0.2.7".parse().unwrap(),
            hostname: "mx.example.com",
            protocol: "ESMTPSA",
            id: "00000000000000ff",
            when: UNIX_EPOCH,
            tls: Some(&tls),
            authenticated: true,
        });
        assert!(h.contains("with ESMTPSA id 00000000000000ff;"), "{h}");
        assert!(
            h.contains("\r\n\t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\t(authenticated)\r\n"),
            "{h}"
        );
    }

    #[test]
    fn header_scan_sees_fields_only_in_the_header_section() {
        let mut s = HeaderScan::default();
        s.feed(b"Received: a\r\n\tb\r\nRECEIVED : c\r\nMessage-Id: <x@y>\r\nSubject: Date: no\r\n");
        s.feed(b"\r\nDate: in the body\r\n");
        assert_eq!((s.date, s.message_id, s.received), (false, true, 2));
        let mut s = HeaderScan::default();
        for b in b"Date: Sun, 22 Nov 2026\r\n\r\n" {
            s.feed(&[*b]);
        }
        assert!(s.date && !s.message_id);
    }

    #[test]
    fn odd_helo_names_are_escaped_in_received() {
        assert_eq!(helo_for_header("mail.example.org"), "mail.example.org");
        assert_eq!(helo_for_header("[192.0.2.1]"), "[192.0.2.1]");
        assert_eq!(helo_for_header("evil(by.fake;é"), "unknown (helo=evil\\(by.fake;\\u{e9})");
    }

    #[test]
    fn header_scan_stops_at_lines_a_parser_may_take_for_the_end() {
        let mut s = HeaderScan::default();
        s.feed(b"Subject: a\r\n \r\nDate: x\r\n\r\n");
        assert!(!s.date);
        let mut s = HeaderScan::default();
        s.feed(b"From someone\r\nMessage-ID: <x@y>\r\n\r\n");
        assert!(!s.message_id);
    }

    #[test]
    fn received_names_no_recipient() {
        let h = received(&Trace {
            helo: "printer.lan",
            ip: "::ffff:192.168.1.9".parse().unwrap(),
            hostname: "mx.example.com",
            protocol: "ESMTP",
            id: "0123456789abcdef",
            when: UNIX_EPOCH,
            tls: None,
            authenticated: false,
        });
        assert_eq!(
            h,
            "Received: from printer.lan ([192.168.1.9])\r\n\tby mx.example.com (Postern) with ESMTP id 0123456789abcdef;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }

    #[test]
    fn submissions_get_a_date_and_message_id_when_they_lack_them_and_relayed_mail_never() {
        let trace = Trace {
            helo: "laptop",
            ip: "192.0.2.7".parse().unwrap(),
            hostname: "mx.example.com",
            protocol: "ESMTPSA",
            id: "00000000000000ff",
            when: UNIX_EPOCH + Duration::from_secs(86_400),
            tls: None,
            authenticated: true,
        };
        let text = |submission, date, message_id| {
            let headers = HeaderScan { date, message_id, ..HeaderScan::default() };
            String::from_utf8(prefix(&trace, submission, &headers)).unwrap()
        };
        let received = received(&trace);
        let date = "Date: Fri, 02 Jan 1970 00:00:00 +0000\r\n";
        let id = "Message-ID: <00000000000000ff@mx.example.com>\r\n";
        assert_eq!(text(true, false, false), format!("{received}{date}{id}"));
        assert_eq!(text(true, true, false), format!("{received}{id}"));
        assert_eq!(text(true, false, true), format!("{received}{date}"));
        assert_eq!(text(true, true, true), received);
        // Port 25 adds only its trace: relayed mail is not ours to complete.
        assert_eq!(text(false, false, false), received);
    }

    #[test]
    fn fifty_received_fields_are_a_loop() {
        let mut scan = HeaderScan::default();
        scan.feed(&b"Received: x\r\n".repeat(MAX_RECEIVED - 1));
        assert!(!scan.looped());
        scan.feed(b"Received: x\r\n\r\nReceived: in the body\r\n");
        assert_eq!(scan.received, MAX_RECEIVED);
        assert!(scan.looped());
    }
}
