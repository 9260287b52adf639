//! Delivery counts for the last hour, in per-minute buckets: fixed memory
//! however much mail flows.
#![forbid(unsafe_code)]

use std::sync::Mutex;

/// What happened to one recipient in one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Delivered = 0,
    /// Will be tried again.
    Deferred = 1,
    /// Given up (a permanent error or the lifetime ran out).
    Failed = 2,
}

/// Counts per minute over the last 60 minutes.
#[derive(Debug, Default)]
pub struct Stats {
    buckets: Mutex<Vec<(u64, [u64; 3])>>,
}

impl Stats {
    /// Counts one outcome at unix time `now`.
    pub fn count(&self, outcome: Outcome, now: u64) {
        let minute = now / 60;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() < 60 {
            b.resize(60, (u64::MAX, [0; 3]));
        }
        let slot = &mut b[(minute % 60) as usize];
        if slot.0 != minute {
            *slot = (minute, [0; 3]);
        }
        slot.1[outcome as usize] += 1;
    }

    /// Delivered, deferred and failed counts of the 60 minutes up to `now`.
    pub fn last_hour(&self, now: u64) -> [u64; 3] {
        let minute = now / 60;
        let b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut sum = [0; 3];
        for (_, counts) in b.iter().filter(|(m, _)| *m != u64::MAX && minute.saturating_sub(*m) < 60) {
            for (s, c) in sum.iter_mut().zip(counts) {
                *s += c;
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_age_out_after_an_hour() {
        let s = Stats::default();
        s.count(Outcome::Delivered, 1000);
        s.count(Outcome::Delivered, 1030);
        s.count(Outcome::Deferred, 2000);
        s.count(Outcome::Failed, 4000);
        assert_eq!(s.last_hour(4000), [2, 1, 1]);
        // Minute 77: the two deliveries of minutes 16 and 17 are over an hour old.
        assert_eq!(s.last_hour(4620), [0, 1, 1]);
        // A bucket reused an hour later starts from zero.
        s.count(Outcome::Delivered, 4620);
        assert_eq!(s.last_hour(4620), [1, 1, 1]);
    }
}
