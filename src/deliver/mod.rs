//! Delivery of one queued message to its recipients: `maildir` writes local
//! mail, `remote` speaks SMTP to other servers.

pub mod loops;
pub mod maildir;
pub mod remote;

use std::fmt;

/// Why a delivery did not happen, and whether trying again can help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// Try again later: a full disk, an I/O error, a remote 4xx.
    Transient(String),
    /// Give up: over quota, the mailbox is gone, a remote 5xx.
    Permanent(String),
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Transient(s) | DeliveryError::Permanent(s) => f.write_str(s),
        }
    }
}
