//! Delivery of one queued message to its recipients: how a failure is told
//! (`DeliveryError`), `remote` speaks SMTP to other servers, `loops` tells
//! whether a host is ourselves. Local mail is written by `crate::mailbox`.

pub mod loops;
pub mod remote;

use std::fmt;

use crate::smtp::client::{EnhancedCode, Response};

/// Whether trying again can help: the class of an enhanced status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Try again later: a full disk, an I/O error, a remote 4xx (`4.x.y`).
    Transient,
    /// Give up: over quota, the mailbox is gone, a remote 5xx (`5.x.y`).
    Permanent,
}

/// Why a delivery did not happen, decided once where it happened (a remote
/// reply read, a Maildir write failed, a lookup came back empty): whether
/// trying again can help, the enhanced status code, the text for logs and
/// bounces, and the remote MTA that said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    /// Class 4 or 5, which says the [`Class`].
    status: EnhancedCode,
    text: String,
    remote_mta: Option<String>,
}

impl DeliveryError {
    /// A failure with `status` (class 4 is transient, any other permanent)
    /// and `text` as it is.
    pub fn new(status: EnhancedCode, text: impl Into<String>) -> DeliveryError {
        let status = if status.class() == 4 { status } else { status.with_class(5) };
        DeliveryError { status, text: text.into(), remote_mta: None }
    }

    /// A failure this server decided, its text led by its status as logs
    /// and `queue list` show it: `5.1.2 example.org: no such domain`.
    pub fn ours(status: EnhancedCode, what: impl fmt::Display) -> DeliveryError {
        DeliveryError::new(status, format!("{status} {what}"))
    }

    /// A local failure that may pass (a full disk, an I/O error): `4.3.0`.
    pub fn system(text: impl Into<String>) -> DeliveryError {
        DeliveryError::new(EnhancedCode::new(4, 3, 0), text)
    }

    /// What `remote_mta` answered with a refusal: a 4xx is transient, a 5xx
    /// (or a 3xx nobody asked for) permanent, a 2xx where none would do
    /// transient; the status as [`Response::status`] decides it.
    pub fn from_reply(reply: &Response, remote_mta: &str) -> DeliveryError {
        let status = reply.status();
        let status = if status.class() == 2 { status.with_class(4) } else { status };
        DeliveryError::new(status, reply.text()).at(remote_mta)
    }

    /// The same failure, said by `remote_mta`.
    pub fn at(self, remote_mta: &str) -> DeliveryError {
        DeliveryError { remote_mta: Some(remote_mta.to_string()), ..self }
    }

    /// The same failure as a transient one (class 4).
    pub fn transient(self) -> DeliveryError {
        DeliveryError { status: self.status.with_class(4), ..self }
    }

    /// The same failure, its text led by `context` and a colon.
    pub fn context(self, context: impl fmt::Display) -> DeliveryError {
        DeliveryError { text: format!("{context}: {}", self.text), ..self }
    }

    /// Whether trying again can help.
    pub fn class(&self) -> Class {
        if self.status.class() == 4 { Class::Transient } else { Class::Permanent }
    }

    /// True for a [`Class::Transient`] failure.
    pub fn is_transient(&self) -> bool {
        self.class() == Class::Transient
    }

    /// The enhanced status code, of class 4 or 5.
    pub fn status(&self) -> EnhancedCode {
        self.status
    }

    /// The remote reply (`550 5.1.1 ...`, lines joined by ` / `) or our own words.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The host whose reply this is, as we looked it up or were configured
    /// with it; `None` when no remote server said it.
    pub fn remote_mta(&self) -> Option<&str> {
        self.remote_mta.as_deref()
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::client::ReplyReader;

    fn reply(wire: &str) -> Response {
        let mut reader = ReplyReader::default();
        reader.push(wire.as_bytes());
        reader.next_reply().unwrap().unwrap()
    }

    #[test]
    fn a_refusal_is_typed_where_it_is_read() {
        let e = DeliveryError::from_reply(
            &reply("550-first line\r\n550 5.2.2 mailbox full\r\n"),
            "mx.example.org",
        );
        assert_eq!(e.class(), Class::Permanent);
        assert_eq!(e.status().to_string(), "5.2.2");
        assert_eq!(e.text(), "550 first line / 550 5.2.2 mailbox full");
        assert_eq!(e.remote_mta(), Some("mx.example.org"));
        let e = DeliveryError::from_reply(&reply("451 4.7.1 greylisted\r\n"), "mx");
        assert_eq!((e.class(), e.status().to_string()), (Class::Transient, "4.7.1".into()));
        let e = DeliveryError::from_reply(&reply("554 4.2.2 disagrees\r\n"), "mx");
        assert_eq!((e.class(), e.status().to_string()), (Class::Permanent, "5.2.2".into()));
        let e = DeliveryError::from_reply(&reply("250 2.0.0 but no\r\n"), "mx");
        assert_eq!((e.class(), e.status().to_string()), (Class::Transient, "4.0.0".into()));
        let e = DeliveryError::from_reply(&reply("354 go on\r\n"), "mx");
        assert_eq!((e.class(), e.status().to_string()), (Class::Permanent, "5.0.0".into()));
    }

    #[test]
    fn our_own_and_local_failures() {
        let e = DeliveryError::ours(EnhancedCode::new(5, 1, 10), "example.org accepts no mail (null MX)");
        assert_eq!(e.text(), "5.1.10 example.org accepts no mail (null MX)");
        assert_eq!((e.class(), e.remote_mta()), (Class::Permanent, None));
        let e = DeliveryError::system("/srv/mail: No space left on device");
        assert_eq!((e.class(), e.status().to_string()), (Class::Transient, "4.3.0".into()));
        assert_eq!(e.to_string(), "/srv/mail: No space left on device");
        let e = e.context("mx [192.0.2.1]").at("mx").transient();
        assert_eq!(e.text(), "mx [192.0.2.1]: /srv/mail: No space left on device");
        assert_eq!(e.remote_mta(), Some("mx"));
        let e = DeliveryError::from_reply(&reply("554 5.7.1 go away\r\n"), "mx").transient();
        assert_eq!((e.class(), e.status().to_string()), (Class::Transient, "4.7.1".into()));
    }
}
