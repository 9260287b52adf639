//! The queue clock: the time a message's age and its retries are measured
//! on. Pure; the store persists it.
//!
//! A board without a real-time clock boots at the time it last shut down and
//! jumps when NTP answers, perhaps by days, either way. Measured by the wall
//! clock, such a jump would expire mail accepted a minute earlier, or stall
//! every retry for as long as the clock went back. The queue clock counts
//! seconds with the monotonic clock while the server runs, so no jump of the
//! wall clock reaches it. A checkpoint of it is saved with a queue write at
//! most once a [`CHECKPOINT_EVERY`] (never as a write of its own), and the
//! next start goes on from there: the time the server was down counts for
//! at most [`CHECKPOINT_EVERY`], however far the wall clock moved meanwhile.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How often the checkpoint is renewed, at most, and how much of the time
/// between a checkpoint and the next start is counted.
pub const CHECKPOINT_EVERY: u64 = 60;

/// A saved reading: the queue clock, and the wall clock at the same moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Queue-clock seconds.
    pub queue: u64,
    /// Unix seconds by the wall clock.
    pub wall: u64,
}

impl Checkpoint {
    /// The 16 bytes it is stored as.
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.queue.to_be_bytes());
        out[8..].copy_from_slice(&self.wall.to_be_bytes());
        out
    }

    /// Reads what [`Checkpoint::encode`] wrote; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let queue = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let wall = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(Checkpoint { queue, wall })
    }
}

/// Where the queue clock starts when the store opens at unix time `wall`.
///
/// After a checkpoint: from it, plus the wall-clock time since it was taken,
/// but never less than nothing nor more than [`CHECKPOINT_EVERY`]. Every
/// value written with that checkpoint is less than a [`CHECKPOINT_EVERY`]
/// past it, so an honest wall clock never sets the queue clock back; a jump
/// costs at most that much.
///
/// Without one (a new store, or one from a release that measured by the wall
/// clock): the wall clock, and no earlier than the latest arrival of a queued
/// message (`latest`), so the unix times such a store holds read as they
/// always did, even on a board that booted in 1970.
pub fn start(saved: Option<Checkpoint>, wall: u64, latest: u64) -> u64 {
    match saved {
        Some(c) => c.queue.saturating_add(wall.saturating_sub(c.wall).min(CHECKPOINT_EVERY)),
        None => wall.max(latest),
    }
}

/// The running queue clock: a reading, advanced by the monotonic clock.
#[derive(Debug)]
pub struct Clock {
    /// What the clock read at `since`, modulo 2^64 (see [`Clock::set`]).
    base: AtomicU64,
    since: Instant,
}

impl Clock {
    /// A clock reading `now` now.
    pub fn new(now: u64) -> Clock {
        Clock { base: AtomicU64::new(now), since: Instant::now() }
    }

    /// Queue-clock seconds now.
    pub fn now(&self) -> u64 {
        self.base.load(Ordering::Relaxed).wrapping_add(self.since.elapsed().as_secs())
    }

    /// Sets the clock to read `now` now.
    pub fn set(&self, now: u64) {
        // Wrapping: the base may lie before zero; the reading never does.
        self.base.store(now.wrapping_sub(self.since.elapsed().as_secs()), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_the_clock_starts() {
        let saved = Some(Checkpoint { queue: 5000, wall: 1_800_000_000 });
        let cases = [
            // (checkpoint, wall now, latest arrival, start, why)
            (saved, 1_800_000_010, 0, 5010, "a quick restart counts its downtime"),
            (saved, 1_800_000_000 + 7 * 86_400, 0, 5060, "a week forward counts a minute"),
            (saved, 1_800_000_000 - 86_400, 0, 5000, "a day back counts nothing"),
            (saved, 1_800_000_000, u64::MAX, 5000, "queued arrivals do not matter"),
            (None, 1_800_000_000, 1_700_000_000, 1_800_000_000, "an old store: the wall clock"),
            (None, 100, 1_700_000_000, 1_700_000_000, "an old store on a board in 1970"),
            (None, 1_800_000_000, 0, 1_800_000_000, "a new store"),
        ];
        for (checkpoint, wall, latest, want, why) in cases {
            assert_eq!(start(checkpoint, wall, latest), want, "{why}");
        }
    }

    #[test]
    fn checkpoints_round_trip() {
        let c = Checkpoint { queue: 1, wall: u64::MAX };
        assert_eq!(Checkpoint::decode(&c.encode()), Some(c));
        assert_eq!(Checkpoint::decode(&c.encode()[..15]), None);
        assert_eq!(Checkpoint::decode(&[0; 17]), None);
    }

    #[test]
    fn the_clock_reads_what_it_was_set_to() {
        let c = Clock::new(1000);
        assert!((1000..1002).contains(&c.now()));
        c.set(5);
        assert!((5..7).contains(&c.now()));
    }
}
