//! The limits on failed logins: per client address (an IPv6 /64 as one) in a
//! sliding window, and per account for addresses that never logged in to it.
//! Pure except for the clock passed in.

use std::collections::{HashMap, VecDeque};
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

/// Failed logins per account, from addresses that never logged in to it.
/// Past the budget such an address is refused before any password check, so
/// many addresses guessing one account get only the budget between them; an
/// address the account logged in from before (within `remember`) is never
/// held to it. Checks still running count against the budget, as in
/// [`FailureLimiter`], so parallel guesses cannot overshoot it. Only real
/// accounts are counted, so the tables stay as small as the user list.
#[derive(Debug)]
pub struct AccountGuard {
    limit: usize,
    window: Duration,
    remember: Duration,
    accounts: HashMap<String, Account>,
}

#[derive(Debug, Default)]
struct Account {
    failures: VecDeque<Instant>,
    /// Checks from unknown addresses begun and not yet ended.
    pending: usize,
    /// Client keys (see [`client_key`]) that logged in, with when they last did.
    known: Vec<(IpAddr, Instant)>,
}

/// A password check let through by [`AccountGuard::begin`]; hand it back to
/// [`AccountGuard::end`].
#[derive(Debug)]
#[must_use]
pub struct AccountCheck {
    /// Held against the budget (the address was not known).
    counted: bool,
}

impl AccountGuard {
    /// At most `limit` failures per `window` for one account from unknown
    /// addresses; a login from an address is remembered for `remember`.
    pub fn new(limit: usize, window: Duration, remember: Duration) -> AccountGuard {
        AccountGuard { limit, window, remember, accounts: HashMap::new() }
    }

    /// True when `account` logged in from `ip` (or its /64) before.
    pub fn known(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        let key = client_key(ip);
        self.accounts
            .get(account)
            .is_some_and(|a| a.known.iter().any(|&(k, t)| k == key && now.duration_since(t) < self.remember))
    }

    /// True when a password for `account` from `ip` may be checked now.
    pub fn allows(&mut self, account: &str, ip: IpAddr, now: Instant) -> bool {
        if self.known(account, ip, now) {
            return true;
        }
        let window = self.window;
        self.accounts.get_mut(account).is_none_or(|a| {
            while a.failures.front().is_some_and(|t| now.duration_since(*t) >= window) {
                a.failures.pop_front();
            }
            a.failures.len() + a.pending < self.limit
        })
    }

    /// Starts a password check for `account` from `ip`, or `None` when the
    /// budget is spent for this address.
    pub fn begin(&mut self, account: &str, ip: IpAddr, now: Instant) -> Option<AccountCheck> {
        if self.known(account, ip, now) {
            return Some(AccountCheck { counted: false });
        }
        if !self.allows(account, ip, now) {
            return None;
        }
        self.accounts.entry(account.to_string()).or_default().pending += 1;
        Some(AccountCheck { counted: true })
    }

    /// Ends a check begun with [`AccountGuard::begin`]: a right password
    /// makes `ip` one of the account's own addresses, a wrong one counts
    /// against the budget.
    pub fn end(&mut self, account: &str, ip: IpAddr, check: AccountCheck, right: bool, now: Instant) {
        let a = self.accounts.entry(account.to_string()).or_default();
        if check.counted {
            a.pending = a.pending.saturating_sub(1);
        }
        if right {
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
        } else {
            a.failures.push_back(now);
            // Older ones than the budget can never matter again.
            while a.failures.len() > self.limit {
                a.failures.pop_front();
            }
        }
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
            // An hour later the failures have aged out.
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
