//! The limits on failed logins: per client address (an IPv6 /64 as one) in a
//! sliding window, and per account for addresses that never logged in to it.
//! Pure except for the clock passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Counts failed logins per client in a sliding window; past the limit the
/// client is refused until its failures age out. Logins still being checked
/// count too, so parallel connections cannot get more guesses in. IPv6
/// clients are counted per /64, since one host usually holds a whole /64.
#[derive(Debug)]
pub struct FailureLimiter {
    limit: usize,
    window: Duration,
    clients: HashMap<IpAddr, Client>,
}

#[derive(Debug, Default)]
struct Client {
    failures: Vec<Instant>,
    pending: usize,
}

/// The address a client is counted under, by the login limiter and the
/// per-address connection cap: an IPv4 address (IPv4-mapped IPv6 included)
/// as it is, an IPv6 address by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

impl FailureLimiter {
    /// At most `limit` failures per `window` for one client.
    pub fn new(limit: usize, window: Duration) -> FailureLimiter {
        FailureLimiter { limit, window, clients: HashMap::new() }
    }

    /// Starts a login check for `ip`; false when the client has used up its
    /// tries. Every `true` must be followed by one [`FailureLimiter::end`].
    pub fn begin(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.prune(now);
        let c = self.clients.entry(client_key(ip)).or_default();
        if c.failures.len() + c.pending >= self.limit {
            return false;
        }
        c.pending += 1;
        true
    }

    /// Ends a login check; returns true when the client has now reached the limit.
    pub fn end(&mut self, ip: IpAddr, now: Instant, failed: bool) -> bool {
        let c = self.clients.entry(client_key(ip)).or_default();
        c.pending = c.pending.saturating_sub(1);
        if failed {
            c.failures.push(now);
        }
        c.failures.len() >= self.limit
    }

    fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.clients.retain(|_, c| {
            c.failures.retain(|t| now.duration_since(*t) < window);
            !c.failures.is_empty() || c.pending > 0
        });
    }
}

/// How many addresses an account remembers it logged in from.
const KNOWN_PER_ACCOUNT: usize = 32;

/// How many login names the guard keeps at most. Names that are not
/// accounts have budgets too (else a spent budget would tell which names
/// exist), so a guesser could make up names without end; past this many,
/// the name with the fullest budget and no known address is forgotten
/// (forgetting it gives it a full budget, which it nearly had).
const MAX_NAMES: usize = 4096;

/// A budget of password checks per login name for addresses that never
/// logged in with it: a bucket of `limit` checks that refills at `limit`
/// per `window`. A wrong password spends a check, a right one gives it
/// back. Once the bucket is empty such an address is refused before any
/// check, until the bucket has refilled by one (a `window / limit` later:
/// 36 s for 100 an hour): many addresses guessing one name get the budget
/// between them, a burst of it and then one check at a time, while the
/// owner on a new address still gets a turn now and then. An address that
/// logged in with the name before (within `remember`) is never held to it.
/// Checks still running have spent their check, as in [`FailureLimiter`],
/// so parallel guesses cannot overshoot it. Every name is counted the same
/// way, account or not, so the budget says nothing about which names exist.
#[derive(Debug)]
pub struct AccountGuard {
    limit: f64,
    window: Duration,
    remember: Duration,
    names: HashMap<String, Account>,
}

#[derive(Debug)]
struct Account {
    /// Checks left, as of `at`.
    tokens: f64,
    at: Instant,
    /// Client keys (see [`client_key`]) that logged in, with when they last did.
    known: Vec<(IpAddr, Instant)>,
}

/// A password check let through by [`AccountGuard::begin`]; hand it back to
/// [`AccountGuard::end`].
#[derive(Debug)]
#[must_use]
pub struct AccountCheck {
    /// Spent from the budget (the address was not known).
    counted: bool,
}

impl AccountGuard {
    /// At most `limit` checks per `window` for one name from unknown
    /// addresses; a login from an address is remembered for `remember`.
    pub fn new(limit: usize, window: Duration, remember: Duration) -> AccountGuard {
        AccountGuard { limit: limit.max(1) as f64, window, remember, names: HashMap::new() }
    }

    /// True when `name` logged in from `ip` (or its /64) before.
    pub fn known(&self, name: &str, ip: IpAddr, now: Instant) -> bool {
        let key = client_key(ip);
        self.names
            .get(name)
            .is_some_and(|a| a.known.iter().any(|&(k, t)| k == key && now.duration_since(t) < self.remember))
    }

    /// The checks `a` has left at `now`.
    fn tokens(&self, a: &Account, now: Instant) -> f64 {
        let refill =
            now.saturating_duration_since(a.at).as_secs_f64() / self.window.as_secs_f64() * self.limit;
        (a.tokens + refill).min(self.limit)
    }

    /// True when a password for `name` from `ip` may be checked now.
    pub fn allows(&self, name: &str, ip: IpAddr, now: Instant) -> bool {
        self.known(name, ip, now) || self.names.get(name).is_none_or(|a| self.tokens(a, now) >= 1.0)
    }

    /// Starts a password check for `name` from `ip`, or `None` when the
    /// budget is spent for this address.
    pub fn begin(&mut self, name: &str, ip: IpAddr, now: Instant) -> Option<AccountCheck> {
        if self.known(name, ip, now) {
            return Some(AccountCheck { counted: false });
        }
        if !self.allows(name, ip, now) {
            return None;
        }
        let a = self.entry(name, now);
        a.tokens -= 1.0;
        Some(AccountCheck { counted: true })
    }

    /// Ends a check begun with [`AccountGuard::begin`]: a right password
    /// gives its check back and makes `ip` one of the name's own addresses.
    pub fn end(&mut self, name: &str, ip: IpAddr, check: AccountCheck, right: bool, now: Instant) {
        if !right {
            return;
        }
        let limit = self.limit;
        let a = self.entry(name, now);
        if check.counted {
            a.tokens = (a.tokens + 1.0).min(limit);
        }
        let key = client_key(ip);
        a.known.retain(|&(k, _)| k != key);
        if a.known.len() >= KNOWN_PER_ACCOUNT {
            // The least recently used goes.
            let oldest = a.known.iter().enumerate().min_by_key(|(_, (_, t))| *t).map(|(i, _)| i);
            if let Some(oldest) = oldest {
                a.known.swap_remove(oldest);
            }
        }
        a.known.push((key, now));
    }

    /// `name`'s entry with its bucket brought up to `now`, made if missing
    /// (forgetting another name when the table is full).
    fn entry(&mut self, name: &str, now: Instant) -> &mut Account {
        if !self.names.contains_key(name) && self.names.len() >= MAX_NAMES {
            let fullest = self
                .names
                .iter()
                .filter(|(_, a)| a.known.is_empty())
                .max_by(|(_, x), (_, y)| self.tokens(x, now).total_cmp(&self.tokens(y, now)))
                .map(|(n, _)| n.clone());
            if let Some(n) = fullest {
                self.names.remove(&n);
            }
        }
        let tokens = self.names.get(name).map_or(self.limit, |a| self.tokens(a, now));
        let a = self.names.entry(name.to_string()).or_insert_with(|| Account {
            tokens,
            at: now,
            known: Vec::new(),
        });
        a.tokens = tokens;
        a.at = now;
        a
    }

    /// How many names are kept (for tests).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is kept.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn limiter_blocks_after_the_limit_and_forgets_with_time() {
        let mut l = FailureLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(l.begin(ip, t0));
            assert!(!l.end(ip, t0, true));
        }
        assert!(l.begin(ip, t0));
        assert!(l.end(ip, t0, true));
        assert!(!l.begin(ip, t0 + Duration::from_secs(1)));
        assert!(l.begin(other, t0));
        assert!(l.begin(ip, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn checks_in_flight_count_against_the_limit() {
        let mut l = FailureLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.begin(ip, t0) && l.begin(ip, t0) && l.begin(ip, t0));
        assert!(!l.begin(ip, t0), "a fourth parallel guess is refused");
        assert!(!l.end(ip, t0, false), "a success does not count");
        assert!(l.begin(ip, t0));
    }

    #[test]
    fn an_account_budget_stops_strangers_but_not_its_own_addresses() {
        let hour = Duration::from_secs(3600);
        let mut g = AccountGuard::new(3, hour, 30 * 24 * hour);
        let t0 = Instant::now();
        let owner: IpAddr = "192.0.2.1".parse().unwrap();
        let phone: IpAddr = "2001:db8:5:6::1".parse().unwrap();
        let login = |g: &mut AccountGuard, account: &str, ip: IpAddr, right: bool, t: Instant| {
            let check = g.begin(account, ip, t).expect("a check");
            g.end(account, ip, check, right, t);
        };
        login(&mut g, "alice@example.com", owner, true, t0);
        login(&mut g, "alice@example.com", phone, true, t0);
        // Three strangers guess, two of them at once: the checks still
        // running count, so a fourth is refused before the two end. Then the
        // budget is spent for every stranger, and for no other account.
        let first: IpAddr = "203.0.113.1".parse().unwrap();
        let second: IpAddr = "203.0.113.2".parse().unwrap();
        let a = g.begin("alice@example.com", first, t0).expect("guess 1");
        let b = g.begin("alice@example.com", second, t0).expect("guess 2");
        login(&mut g, "alice@example.com", "203.0.113.3".parse().unwrap(), false, t0);
        assert!(g.begin("alice@example.com", "203.0.113.4".parse().unwrap(), t0).is_none());
        // The owner is never held to it, even while checks are running.
        login(&mut g, "alice@example.com", owner, false, t0);
        assert!(g.allows("alice@example.com", owner, t0));
        g.end("alice@example.com", first, a, false, t0);
        g.end("alice@example.com", second, b, false, t0);
        let cases: &[(&str, &str, u64, bool)] = &[
            ("alice@example.com", "203.0.113.9", 1, false),
            ("alice@example.com", "203.0.113.1", 1, false),
            ("alice@example.com", "192.0.2.1", 1, true),
            // The same /64 as the phone.
            ("alice@example.com", "2001:db8:5:6::99", 1, true),
            ("alice@example.com", "2001:db8:5:7::1", 1, false),
            ("bob@example.com", "203.0.113.9", 1, true),
            // The bucket refills at three an hour: one check back after
            // twenty minutes, all three after an hour.
            ("alice@example.com", "203.0.113.9", 1199, false),
            ("alice@example.com", "203.0.113.9", 1200, true),
            ("alice@example.com", "203.0.113.9", 3600, true),
        ];
        for &(account, ip, after, want) in cases {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                g.allows(account, ip, t0 + Duration::from_secs(after)),
                want,
                "{account} {ip} +{after}s"
            );
        }
        // A known address is forgotten after a month without a login.
        assert!(g.known("alice@example.com", owner, t0 + 29 * 24 * hour));
        assert!(!g.known("alice@example.com", owner, t0 + 31 * 24 * hour));
        // An account remembers only its most recent addresses.
        for n in 0..40u64 {
            let ip: IpAddr = format!("198.51.100.{n}").parse().unwrap();
            login(&mut g, "bob@example.com", ip, true, t0 + Duration::from_secs(n));
        }
        let t = t0 + Duration::from_secs(60);
        assert!(!g.known("bob@example.com", "198.51.100.0".parse().unwrap(), t));
        assert!(g.known("bob@example.com", "198.51.100.39".parse().unwrap(), t));
    }

    #[test]
    fn a_spent_budget_lets_one_check_through_per_refill_and_a_right_password_gives_it_back() {
        let hour = Duration::from_secs(3600);
        let mut g = AccountGuard::new(100, hour, 30 * 24 * hour);
        let t0 = Instant::now();
        let stranger: IpAddr = "203.0.113.1".parse().unwrap();
        for n in 0..100 {
            let c = g.begin("alice@example.com", stranger, t0).unwrap_or_else(|| panic!("guess {n}"));
            g.end("alice@example.com", stranger, c, false, t0);
        }
        assert!(g.begin("alice@example.com", stranger, t0).is_none());
        // 36 s later one check is back: the owner from a new address gets
        // in with it, and the right password returns the check.
        let later = t0 + Duration::from_secs(36);
        let phone: IpAddr = "198.51.100.7".parse().unwrap();
        let c = g.begin("alice@example.com", phone, later).expect("a check after the refill");
        g.end("alice@example.com", phone, c, true, later);
        let c = g.begin("alice@example.com", stranger, later).expect("the returned check");
        g.end("alice@example.com", stranger, c, false, later);
        assert!(g.begin("alice@example.com", stranger, later).is_none());
        // The phone is known from now on.
        assert!(g.begin("alice@example.com", phone, later).is_some());
    }

    #[test]
    fn names_that_are_no_account_have_budgets_too_and_the_table_stays_bounded() {
        let hour = Duration::from_secs(3600);
        let mut g = AccountGuard::new(2, hour, 30 * 24 * hour);
        let t0 = Instant::now();
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let owner: IpAddr = "192.0.2.1".parse().unwrap();
        let c = g.begin("alice@example.com", owner, t0).unwrap();
        g.end("alice@example.com", owner, c, true, t0);
        for name in ["alice@example.com", "nobody@example.com"] {
            for _ in 0..2 {
                let c = g.begin(name, ip, t0).unwrap();
                g.end(name, ip, c, false, t0);
            }
            assert!(g.begin(name, ip, t0).is_none(), "{name}: spent the same way");
        }
        // Made-up names without end: the table keeps at most MAX_NAMES, and
        // the name with a known address stays.
        for n in 0..MAX_NAMES + 100 {
            let name = format!("made-up-{n}@example.com");
            let c = g.begin(&name, ip, t0).unwrap();
            g.end(&name, ip, c, false, t0);
        }
        assert!(g.len() <= MAX_NAMES, "{} names kept", g.len());
        assert!(g.known("alice@example.com", owner, t0));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let mut l = FailureLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(l.begin("2001:db8:1:2::1".parse().unwrap(), t0));
        l.end("2001:db8:1:2::1".parse().unwrap(), t0, true);
        assert!(!l.begin("2001:db8:1:2:ffff::9".parse().unwrap(), t0));
        assert!(l.begin("2001:db8:1:3::1".parse().unwrap(), t0));
        assert_eq!(client_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
