//! IMAP (RFC 9051 and RFC 3501): reading mail from the same Maildirs that
//! delivery writes, as Dovecot would serve them.
//!
//! - `framing`: lines and literals, how a command arrives;
//! - `command`: the commands, parsed from what the framing gathered.

pub mod command;
pub mod framing;
