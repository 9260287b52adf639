//! Every SMTP reply the server sends, in one place, plain and greppable.

use std::fmt::Write as _;

/// One SMTP reply: a code, an enhanced status code (RFC 3463) and text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code, such as `"5.1.1"`; empty for the greeting and EHLO.
    pub status: &'static str,
    /// The text, one entry per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply { code, status, lines: vec![text.into()] }
    }

    /// True for 4xx and 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply to `out` in wire form, CRLF-terminated.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut s = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            if self.status.is_empty() {
                let _ = write!(s, "{}{}{}\r\n", self.code, sep, line);
            } else {
                let _ = write!(s, "{}{}{} {}\r\n", self.code, sep, self.status, line);
            }
        }
        out.extend_from_slice(s.as_bytes());
    }
}

// Connection level.

pub fn greeting(hostname: &str) -> Reply {
    Reply::new(220, "", format!("{hostname} ESMTP Postern"))
}
pub fn closing(hostname: &str) -> Reply {
    Reply::new(221, "2.0.0", format!("{hostname} closing connection"))
}
pub fn too_many_connections(hostname: &str) -> Reply {
    Reply::new(421, "4.7.0", format!("{hostname} too many connections, try again later"))
}
pub fn too_many_from_ip(hostname: &str) -> Reply {
    Reply::new(421, "4.7.0", format!("{hostname} too many connections from your address"))
}
pub fn too_many_errors(hostname: &str) -> Reply {
    Reply::new(421, "4.7.0", format!("{hostname} too many errors, closing connection"))
}
pub fn timeout(hostname: &str) -> Reply {
    Reply::new(421, "4.4.2", format!("{hostname} timeout, closing connection"))
}
pub fn shutting_down(hostname: &str) -> Reply {
    Reply::new(421, "4.3.2", format!("{hostname} service shutting down"))
}

// Greetings and simple commands.

pub fn helo(hostname: &str, client: &str) -> Reply {
    Reply::new(250, "", format!("{hostname} hello {client}"))
}
pub fn ehlo(hostname: &str, client: &str, max_size: u64, starttls: bool, auth: bool) -> Reply {
    let mut lines = vec![
        format!("{hostname} hello {client}"),
        "PIPELINING".into(),
        format!("SIZE {max_size}"),
        "8BITMIME".into(),
        "ENHANCEDSTATUSCODES".into(),
        "SMTPUTF8".into(),
    ];
    if starttls {
        lines.push("STARTTLS".into());
    }
    if auth {
        lines.push("AUTH PLAIN LOGIN".into());
    }
    lines.push("HELP".into());
    Reply { code: 250, status: "", lines }
}
pub fn ok() -> Reply {
    Reply::new(250, "2.0.0", "OK")
}
pub fn reset() -> Reply {
    Reply::new(250, "2.0.0", "reset")
}
pub fn sender_ok() -> Reply {
    Reply::new(250, "2.1.0", "sender OK")
}
pub fn recipient_ok() -> Reply {
    Reply::new(250, "2.1.5", "recipient OK")
}
pub fn start_data() -> Reply {
    Reply::new(354, "", "end data with <CR><LF>.<CR><LF>")
}
pub fn queued(id: &str) -> Reply {
    Reply::new(250, "2.0.0", format!("OK queued as {id}"))
}
pub fn vrfy() -> Reply {
    Reply::new(252, "2.5.0", "cannot verify the user, but will accept mail and attempt delivery")
}
pub fn help() -> Reply {
    Reply {
        code: 214,
        status: "2.0.0",
        lines: vec![
            "commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY".into(),
            "see RFC 5321".into(),
        ],
    }
}

// TLS and AUTH.

pub fn start_tls() -> Reply {
    Reply::new(220, "2.0.0", "ready to start TLS")
}
pub fn tls_active() -> Reply {
    Reply::new(503, "5.5.1", "TLS is already active")
}
pub fn tls_unavailable() -> Reply {
    Reply::new(454, "4.7.0", "TLS not available")
}
pub fn auth_challenge(text: &str) -> Reply {
    Reply::new(334, "", text)
}
pub fn auth_ok() -> Reply {
    Reply::new(235, "2.7.0", "authentication succeeded")
}
pub fn auth_failed() -> Reply {
    Reply::new(535, "5.7.8", "authentication credentials invalid")
}
pub fn auth_cancelled() -> Reply {
    Reply::new(501, "5.0.0", "authentication cancelled")
}
pub fn bad_base64() -> Reply {
    Reply::new(501, "5.5.2", "cannot decode the response: not base64")
}
pub fn bad_sasl() -> Reply {
    Reply::new(501, "5.5.4", "malformed authentication response")
}
pub fn unknown_mechanism() -> Reply {
    Reply::new(504, "5.5.4", "unrecognized authentication mechanism; use PLAIN or LOGIN")
}
pub fn auth_not_here() -> Reply {
    Reply::new(503, "5.5.1", "AUTH is offered on the submission ports (587, 465) only")
}
pub fn encryption_required() -> Reply {
    Reply::new(538, "5.7.11", "encryption required: send STARTTLS first")
}
pub fn already_authenticated() -> Reply {
    Reply::new(503, "5.5.1", "already authenticated")
}
pub fn auth_in_transaction() -> Reply {
    Reply::new(503, "5.5.1", "AUTH is not allowed during a mail transaction")
}
pub fn auth_required() -> Reply {
    Reply::new(530, "5.7.0", "authentication required")
}
pub fn not_your_address(sender: &str, login: &str) -> Reply {
    Reply::new(553, "5.7.1", format!("<{sender}>: sender address not owned by user {login}"))
}
pub fn auth_busy() -> Reply {
    Reply::new(454, "4.7.0", "too many logins being checked, try again shortly")
}
pub fn auth_account_locked() -> Reply {
    Reply::new(454, "4.7.0", "too many failed logins for this account, try again later")
}
pub fn too_many_auth_failures(hostname: &str) -> Reply {
    Reply::new(421, "4.7.0", format!("{hostname} too many failed logins, try again later"))
}

// Syntax (the peer sent garbage): 500/501.

pub fn unknown_command() -> Reply {
    Reply::new(500, "5.5.2", "command not recognized")
}
pub fn line_too_long() -> Reply {
    Reply::new(500, "5.5.2", "line too long")
}
pub fn syntax(what: &str) -> Reply {
    Reply::new(501, "5.5.4", format!("syntax error: {what}"))
}
pub fn bad_address(why: &str) -> Reply {
    Reply::new(501, "5.1.3", format!("bad address syntax: {why}"))
}
pub fn bad_sender_address(why: &str) -> Reply {
    Reply::new(501, "5.1.7", format!("bad sender address syntax: {why}"))
}
pub fn bad_parameter(param: &str) -> Reply {
    Reply::new(555, "5.5.4", format!("unsupported parameter {param}"))
}
pub fn smtputf8_required() -> Reply {
    Reply::new(553, "5.6.7", "non-ASCII address needs the SMTPUTF8 parameter")
}

// Sequence (the peer broke the protocol): 503.

pub fn need_helo() -> Reply {
    Reply::new(503, "5.5.1", "send EHLO or HELO first")
}
pub fn need_mail() -> Reply {
    Reply::new(503, "5.5.1", "send MAIL FROM first")
}
pub fn need_rcpt() -> Reply {
    Reply::new(503, "5.5.1", "send RCPT TO first")
}
pub fn nested_mail() -> Reply {
    Reply::new(503, "5.5.1", "sender already given")
}
pub fn not_implemented(what: &str) -> Reply {
    Reply::new(502, "5.5.1", format!("{what} not implemented"))
}

// Policy.

pub fn no_such_user(addr: &str) -> Reply {
    Reply::new(550, "5.1.1", format!("<{addr}>: no such user here"))
}
pub fn relay_denied(addr: &str) -> Reply {
    Reply::new(554, "5.7.1", format!("<{addr}>: relay access denied"))
}
pub fn too_many_recipients() -> Reply {
    Reply::new(452, "4.5.3", "too many recipients")
}
/// A local alias over the expansion cap: the owner's to fix, so a temporary
/// failure, as Postfix defers such mail.
pub fn alias_too_big(max: usize) -> Reply {
    Reply::new(452, "4.5.3", format!("alias expands to more than {max} recipients"))
}
pub fn message_too_big_declared(max: u64) -> Reply {
    Reply::new(552, "5.3.4", format!("message size exceeds the limit of {max} bytes"))
}
pub fn message_too_big() -> Reply {
    Reply::new(552, "5.3.4", "message too big")
}
pub fn bare_line_ending() -> Reply {
    Reply::new(550, "5.6.11", "bare CR or LF in message: lines must end with CR LF (see SMTP smuggling)")
}
pub fn nul_in_message() -> Reply {
    Reply::new(554, "5.6.0", "NUL byte in message: not allowed in SMTP text")
}
pub fn mail_loop() -> Reply {
    Reply::new(554, "5.4.6", "too many Received headers: mail loop")
}
pub fn data_line_too_long() -> Reply {
    Reply::new(550, "5.6.0", "message has a line longer than 998 characters")
}

// Our own trouble: 4xx.

pub fn store_full() -> Reply {
    Reply::new(452, "4.3.1", "insufficient system storage, try again later")
}
pub fn local_error() -> Reply {
    Reply::new(451, "4.3.0", "local error in processing, try again later")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_written_as_one_or_more_crlf_lines() {
        let mut out = Vec::new();
        Reply::new(550, "5.1.1", "<x@y>: no such user here").write_to(&mut out);
        assert_eq!(out, b"550 5.1.1 <x@y>: no such user here\r\n");
        out.clear();
        ehlo("mx.example", "client.example", 100, true, false).write_to(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("250-mx.example hello client.example\r\n250-PIPELINING\r\n"));
        assert!(s.ends_with("250 HELP\r\n"));
        out = Vec::new();
        greeting("mx.example").write_to(&mut out);
        assert_eq!(out, b"220 mx.example ESMTP Postern\r\n");
    }
}
