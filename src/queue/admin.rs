//! `postern queue ...`: list, show, retry, delete and bounce queued messages.
//! The same code answers on the control socket of a running server and runs
//! directly on the store when no server is running.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::Arc;

use super::store::{Message, QueueId, Status, Write};
use super::{Queue, bounce};
use crate::Settings;
use crate::logtext::printable;

/// One admin command, parsed from the words after `postern queue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Every queued message, one line each.
    List,
    /// One message in detail.
    Show(QueueId),
    /// Try one message (or all) now.
    Retry(Option<QueueId>),
    /// Remove a message without telling anyone.
    Delete(QueueId),
    /// Give up on a message's pending recipients and tell the sender.
    Bounce(QueueId),
}

impl Command {
    /// Parses `list`, `show ID`, `retry ID|--all`, `delete ID`, `bounce ID`.
    ///
    /// # Errors
    /// A usage message.
    pub fn parse(words: &[&str]) -> Result<Command, String> {
        let id = |w: Option<&&str>| -> Result<QueueId, String> {
            let w = w.ok_or("a queue id is needed (see `postern queue list`)")?;
            w.parse().map_err(|_| format!("`{w}` is not a queue id"))
        };
        match words {
            [] | ["list"] => Ok(Command::List),
            ["show", rest @ ..] if rest.len() == 1 => Ok(Command::Show(id(rest.first())?)),
            ["retry", "--all"] => Ok(Command::Retry(None)),
            ["retry", rest @ ..] if rest.len() == 1 => Ok(Command::Retry(Some(id(rest.first())?))),
            ["delete", rest @ ..] if rest.len() == 1 => Ok(Command::Delete(id(rest.first())?)),
            ["bounce", rest @ ..] if rest.len() == 1 => Ok(Command::Bounce(id(rest.first())?)),
            _ => Err("usage: postern queue list | show ID | retry ID|--all | delete ID | bounce ID".into()),
        }
    }

    /// The command as sent over the control socket.
    pub fn to_line(&self) -> String {
        match self {
            Command::List => "list".into(),
            Command::Show(id) => format!("show {id}"),
            Command::Retry(None) => "retry --all".into(),
            Command::Retry(Some(id)) => format!("retry {id}"),
            Command::Delete(id) => format!("delete {id}"),
            Command::Bounce(id) => format!("bounce {id}"),
        }
    }
}

/// Runs `cmd` and returns its output, or an error message.
///
/// # Errors
/// Unknown ids and store failures, in words.
pub async fn run(queue: &Arc<Queue>, settings: &Settings, cmd: &Command) -> Result<String, String> {
    let store = queue.store();
    let find = |id: QueueId| -> Result<Message, String> {
        store.message(id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no message {id} in the queue"))
    };
    match cmd {
        Command::List => {
            let messages = store.messages().map_err(|e| e.to_string())?;
            Ok(list(&messages, store.now()))
        }
        Command::Show(id) => {
            let m = find(*id)?;
            let mut out = list(std::slice::from_ref(&m), store.now());
            let mut head = store.chunk(*id, 0).ok().flatten().unwrap_or_default();
            head.extend(store.chunk(*id, 1).ok().flatten().unwrap_or_default());
            out.push('\n');
            // The header is the sender's text, shown on root's terminal: a
            // control character in it (an escape sequence that retitles the
            // window or rewrites the screen) is shown as an escape, one
            // header line to a line.
            let header = String::from_utf8_lossy(bounce::header_section(&head, 16 * 1024));
            for line in header.split_inclusive('\n') {
                let line = line.strip_suffix('\n').unwrap_or(line);
                out.push_str(&printable(line.strip_suffix('\r').unwrap_or(line)));
                out.push('\n');
            }
            Ok(out)
        }
        Command::Retry(which) => {
            let ids = match which {
                Some(id) => vec![find(*id)?.id],
                None => store.messages().map_err(|e| e.to_string())?.iter().map(|m| m.id).collect(),
            };
            for id in &ids {
                queue
                    .write(Write::Reschedule { id: *id, at: store.now() })
                    .await
                    .map_err(|e| e.to_string())?;
            }
            queue.wake();
            Ok(format!("{} message(s) will be tried now\n", ids.len()))
        }
        Command::Delete(id) => {
            find(*id)?;
            queue.write(Write::Delete { id: *id }).await.map_err(|e| e.to_string())?;
            log::info!(target: "mail", "id={id} status=deleted by=admin");
            Ok(format!("{id} deleted\n"))
        }
        Command::Bounce(id) => {
            let m = find(*id)?;
            let results = m
                .recipients
                .iter()
                .map(|r| {
                    (r.status == Status::Pending).then(|| {
                        Err(crate::deliver::DeliveryError::ours(
                            crate::smtp::client::EnhancedCode::new(5, 0, 0),
                            "returned to the sender by the postmaster",
                        ))
                    })
                })
                .collect();
            let (m, report) = queue.conclude(m, results, settings, 0.5);
            queue.write(Write::Update { message: m, report }).await.map_err(|e| e.to_string())?;
            queue.wake();
            Ok(format!("{id} bounced\n"))
        }
    }
}

/// The queue as a table: id, age, sender, attempts, next try, and each
/// pending recipient with its last error. `now` is the queue clock's: ages
/// are the ones the lifetime counts.
fn list(messages: &[Message], now: u64) -> String {
    if messages.is_empty() {
        return "the queue is empty\n".into();
    }
    let mut out = String::new();
    for m in messages {
        let sender = m.sender.as_ref().map(ToString::to_string).unwrap_or_default();
        let attempts = m.recipients.iter().map(|r| r.attempts).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "{}  age {}  size {}  from <{}>  attempts {}  next try {}",
            m.id,
            span(now.saturating_sub(m.queued)),
            m.size,
            sender,
            attempts,
            if m.next_attempt <= now {
                "now".to_string()
            } else {
                format!("in {}", span(m.next_attempt - now))
            },
        );
        for r in m.recipients.iter().filter(|r| r.status == Status::Pending) {
            let _ = write!(out, "    <{}>", r.route.address());
            if !r.last_error.is_empty() {
                // Kept clean since it is stored so; older records may not be.
                let _ = write!(out, "  last error: {}", crate::logtext::printable(&r.last_error));
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{} message(s)", messages.len());
    out
}

/// `90` -> `1m30s`, `7200` -> `2h0m`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_commands_parse_or_say_how_to_use_them() {
        let id = QueueId(0xabc);
        let cases: &[(&[&str], Result<Command, ()>)] = &[
            (&[], Ok(Command::List)),
            (&["list"], Ok(Command::List)),
            (&["show", "0000000000000abc"], Ok(Command::Show(id))),
            (&["retry", "abc"], Ok(Command::Retry(Some(id)))),
            (&["retry", "--all"], Ok(Command::Retry(None))),
            (&["delete", "abc"], Ok(Command::Delete(id))),
            (&["bounce", "abc"], Ok(Command::Bounce(id))),
            (&["show"], Err(())),
            (&["delete", "xyz"], Err(())),
            (&["frobnicate"], Err(())),
        ];
        for (words, want) in cases {
            let got = Command::parse(words);
            assert_eq!(got.clone().map_err(|_| ()), *want, "{words:?}");
            if let Ok(cmd) = got {
                let line = cmd.to_line();
                let again: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(Command::parse(&again), Ok(cmd));
            }
        }
    }

    #[test]
    fn ages_are_shown_in_their_two_largest_units() {
        assert_eq!(span(5), "5s");
        assert_eq!(span(90), "1m30s");
        assert_eq!(span(7260), "2h1m");
        assert_eq!(span(200_000), "2d7h");
    }
}
