//! IMAP (RFC 9051 and RFC 3501): reading mail from the same Maildirs that
//! delivery writes, as Dovecot would serve them.
//!
//! - `framing`: lines and literals, how a command arrives;
//! - `command`: the commands, parsed from what the framing gathered;
//! - `session`: one session's state and what each command does;
//! - `view`: a selected mailbox and the changes told to the client;
//! - `message`: sizes, headers and fields of a stored message;
//! - `mime`: a stored message's MIME structure, found in one read;
//! - `structure`: ENVELOPE, BODYSTRUCTURE and the part a section names;
//! - `search`: SEARCH's keys against a message;
//! - `server`: the driver between the connection and the session;
//! - `response`: the server's syntax, and output that streams files.

pub mod command;
pub mod framing;
pub mod message;
pub mod mime;
pub mod response;
pub mod search;
pub mod server;
pub mod session;
pub mod structure;
pub mod view;
