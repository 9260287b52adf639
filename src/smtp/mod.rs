//! The SMTP protocol, pure: bytes and lines in, replies and actions out. No
//! sockets, no clock, no storage; `server` drives it.

pub mod command;
pub mod data;
pub mod reply;
pub mod session;
