//! The places for password checks: argon2id takes its memory and a core for
//! each, so only a few run at once; waiting logins get a free place in turn,
//! those from an account's own addresses first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The places for password checks (argon2id takes its memory and a core for
/// each). Waiting logins get a free place in turn, those from addresses that
/// logged in before ahead of all others, so guessers from many addresses
/// cannot keep the owner out.
#[derive(Debug)]
pub struct CheckSlots {
    state: Mutex<SlotState>,
}

#[derive(Debug)]
struct SlotState {
    free: usize,
    known: VecDeque<smol::channel::Sender<SlotPermit>>,
    others: VecDeque<smol::channel::Sender<SlotPermit>>,
}

/// A place for one password check; given back when dropped.
#[derive(Debug)]
pub struct SlotPermit {
    slots: Option<Arc<CheckSlots>>,
}

impl CheckSlots {
    /// `n` places.
    pub fn new(n: usize) -> Arc<CheckSlots> {
        Arc::new(CheckSlots {
            state: Mutex::new(SlotState { free: n, known: VecDeque::new(), others: VecDeque::new() }),
        })
    }

    /// Waits for a place; `known` logins go ahead of the others. Dropping the
    /// future gives up the turn.
    pub async fn acquire(self: &Arc<Self>, known: bool) -> Option<SlotPermit> {
        let rx = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.free > 0 {
                s.free -= 1;
                return Some(SlotPermit { slots: Some(Arc::clone(self)) });
            }
            let (tx, rx) = smol::channel::bounded(1);
            let queue = if known { &mut s.known } else { &mut s.others };
            // Waiters that gave up leave a closed channel behind.
            queue.retain(|tx| !tx.is_closed());
            queue.push_back(tx);
            rx
        };
        rx.recv().await.ok()
    }

    /// Hands a place to the next live waiter, or frees it.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match s.known.pop_front().or_else(|| s.others.pop_front()) {
                    Some(tx) => tx,
                    None => {
                        s.free += 1;
                        return;
                    }
                }
            };
            match next.try_send(SlotPermit { slots: Some(Arc::clone(self)) }) {
                Ok(()) => return,
                // That waiter gave up: the place goes on to the next.
                Err(e) => e.into_inner().slots = None,
            }
        }
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn known_addresses_get_the_next_free_check_place_first() {
        use smol::future::poll_once;
        smol::block_on(async {
            let slots = CheckSlots::new(2);
            let a = slots.acquire(false).await.unwrap();
            let b = slots.acquire(false).await.unwrap();
            let mut stranger = Box::pin(slots.acquire(false));
            let mut gave_up = Box::pin(slots.acquire(true));
            let mut owner = Box::pin(slots.acquire(true));
            // Both places are taken: everyone waits.
            assert!(poll_once(&mut stranger).await.is_none());
            assert!(poll_once(&mut gave_up).await.is_none());
            assert!(poll_once(&mut owner).await.is_none());
            // A known login that stopped waiting loses its turn; the next
            // known one goes ahead of the stranger who came first.
            drop(gave_up);
            drop(a);
            let owner_permit = poll_once(&mut owner).await.expect("the owner's turn").unwrap();
            assert!(poll_once(&mut stranger).await.is_none());
            drop(b);
            let stranger_permit = poll_once(&mut stranger).await.expect("then the stranger's").unwrap();
            // A place handed to a waiter that then gives up is not lost.
            let mut late = Box::pin(slots.acquire(false));
            assert!(poll_once(&mut late).await.is_none());
            drop(owner_permit);
            drop(late);
            drop(stranger_permit);
            let x = slots.acquire(false).await;
            let y = slots.acquire(false).await;
            assert!(x.is_some() && y.is_some());
            assert!(poll_once(&mut Box::pin(slots.acquire(true))).await.is_none(), "only two places");
        });
    }
}
