//! The connection layer every protocol shares, knowing nothing of any of
//! them: listening sockets and the accept loop (`listen`), the admission caps
//! (`admit`), the buffered connection with its per-read deadlines, the TLS
//! handshake and the STARTTLS upgrade (`link`), and the signal that tells
//! listeners and sessions the server stops (`Stop`). A protocol brings a
//! sans-IO session and a thin driver that moves bytes between the two.

pub mod admit;
pub mod link;
pub mod listen;

/// Tells every listener and session that the server stops: dropped once,
/// seen by all.
#[derive(Debug)]
pub struct Stop {
    tx: std::sync::Mutex<Option<smol::channel::Sender<()>>>,
    rx: smol::channel::Receiver<()>,
}

impl Default for Stop {
    fn default() -> Stop {
        let (tx, rx) = smol::channel::bounded(1);
        Stop { tx: std::sync::Mutex::new(Some(tx)), rx }
    }
}

impl Stop {
    /// Tells everyone waiting, now and later, that the server stops.
    pub fn trigger(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// True once [`Stop::trigger`] was called.
    pub fn is_stopped(&self) -> bool {
        self.rx.is_closed()
    }

    /// Resolves when the server is told to stop.
    pub async fn wait(&self) {
        let _ = self.rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_seen_by_every_waiter_before_and_after_it() {
        let stop = Stop::default();
        assert!(!stop.is_stopped());
        let early = smol::future::block_on(async {
            smol::future::or(
                async {
                    stop.wait().await;
                    false
                },
                async {
                    smol::Timer::after(std::time::Duration::from_millis(20)).await;
                    true
                },
            )
            .await
        });
        assert!(early, "a wait ended before the stop");
        stop.trigger();
        stop.trigger();
        assert!(stop.is_stopped());
        smol::future::block_on(stop.wait());
        smol::future::block_on(stop.wait());
    }
}
