//! The SMTP protocol, pure: bytes and lines in, replies and actions out. No
//! sockets, no clock, no storage; `server` drives the server's side, and
//! `deliver::remote` and `sendmail` the client's.

pub mod client;
pub mod command;
pub mod data;
pub mod framing;
pub mod reply;
pub mod session;
