//! When to try again, when to tell the sender a message is delayed, and when
//! to give up. Pure.
#![forbid(unsafe_code)]

use std::time::Duration;

use crate::config::QueueConfig;

/// The queue's timing. Retries: `first`, then doubling up to `max`, each delay spread by
/// up to 15% either way so a restart does not send everything at once.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    first: Duration,
    max: Duration,
    lifetime: Duration,
    delay_notice: Duration,
}

impl Schedule {
    /// The schedule the `[queue]` table describes.
    pub fn new(q: &QueueConfig) -> Schedule {
        Schedule {
            first: q.retry_first,
            max: q.retry_max,
            lifetime: q.lifetime,
            delay_notice: q.delay_notice,
        }
    }

    /// The delay after the `attempts`-th failed attempt (1 for the first).
    /// `jitter` is a number in [0, 1).
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let base = self.first.saturating_mul(1u32 << doublings).min(self.max);
        base.mul_f64(0.85 + 0.3 * jitter.clamp(0.0, 1.0))
    }

    /// True when a message queued at `queued` has been queued longer than
    /// the lifetime at `now`, both on the queue clock.
    pub fn expired(&self, queued: u64, now: u64) -> bool {
        now.saturating_sub(queued) >= self.lifetime.as_secs()
    }

    /// True when a message queued at `queued` is old enough at `now` for
    /// its sender to hear that it is delayed, both on the queue clock.
    pub fn delay_notice_due(&self, queued: u64, now: u64) -> bool {
        now.saturating_sub(queued) >= self.delay_notice.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        let m = |n: u64| Duration::from_secs(60 * n);
        Schedule { first: m(5), max: m(60), lifetime: m(5 * 24 * 60), delay_notice: m(4 * 60) }
    }

    #[test]
    fn backs_off_then_hourly() {
        let s = schedule();
        let mins: Vec<u64> = (1..=7).map(|a| s.delay(a, 0.5).as_secs() / 60).collect();
        assert_eq!(mins, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(s.delay(u32::MAX, 0.5).as_secs(), 3600);
    }

    #[test]
    fn jitter_stays_within_fifteen_percent() {
        let s = schedule();
        assert_eq!(s.delay(1, 0.0).as_secs(), 255);
        assert!(s.delay(1, 0.999).as_secs() <= 345);
    }

    #[test]
    fn messages_expire_at_their_lifetime_and_not_a_second_before() {
        let s = schedule();
        assert!(!s.expired(1000, 1000 + 5 * 86400 - 1));
        assert!(s.expired(1000, 1000 + 5 * 86400));
    }

    #[test]
    fn delay_notice_after_its_age() {
        let s = schedule();
        assert!(!s.delay_notice_due(1000, 1000 + 4 * 3600 - 1));
        assert!(s.delay_notice_due(1000, 1000 + 4 * 3600));
        assert!(!s.delay_notice_due(1000, 0), "a clock behind the arrival");
    }
}
