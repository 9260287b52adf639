//! Connections kept open after a transaction, by destination, for the next
//! message to the same place.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::link::Link;
use crate::smtp::client::Response;

/// How long a connection is kept open after a transaction for the next
/// message to the same destination.
const KEEP_IDLE: Duration = Duration::from_secs(5);

/// A connection waiting for the next message to the same destination.
struct Idle {
    link: Link,
    ehlo: Response,
    since: Instant,
}

/// The open connections, by destination (an MX domain, or a smarthost and
/// login).
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Pool {
    /// A connection to `key` that has not idled too long, and its EHLO
    /// reply; `None` when there is none. Stale ones on the way are dropped.
    pub(super) fn take(&self, key: &str) -> Option<(Link, Response)> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.get_mut(key)?;
        let mut found = None;
        while let Some(idle) = list.pop() {
            if idle.since.elapsed() <= KEEP_IDLE {
                found = Some((idle.link, idle.ehlo));
                break;
            }
        }
        if list.is_empty() {
            map.remove(key);
        }
        found
    }

    /// Keeps a connection for the next message to `key`.
    pub(super) fn keep(&self, key: &str, link: Link, ehlo: Response) {
        // A connection that erred, or holds replies nobody asked for, is out
        // of step: never reuse it.
        if !link.reusable() {
            return;
        }
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().push(Idle { link, ehlo, since: Instant::now() });
    }

    /// Takes out the connections nobody used for a while, for closing.
    pub(super) fn stale(&self) -> Vec<Link> {
        let mut map = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut stale = Vec::new();
        for list in map.values_mut() {
            let (old, fresh): (Vec<Idle>, Vec<Idle>) =
                list.drain(..).partition(|i| i.since.elapsed() > KEEP_IDLE);
            *list = fresh;
            stale.extend(old.into_iter().map(|i| i.link));
        }
        map.retain(|_, list| !list.is_empty());
        stale
    }
}
