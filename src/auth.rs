//! SMTP AUTH (RFC 4954) pieces: base64, the PLAIN and LOGIN exchanges, argon2id
//! password hashes, the per-address and per-account limits on failed logins,
//! and the places for password checks. Pure except for the clock passed in.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};

/// Decodes standard base64 (with padding). `None` for anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let s = s.trim().as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (i, quad) in s.chunks(4).enumerate() {
        let last = i == s.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Encodes standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a SASL response was not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// Not base64: 501.
    Base64,
    /// Base64, but not the shape the mechanism wants: 501.
    Malformed,
}

/// Splits a decoded PLAIN response `authzid NUL authcid NUL password` into
/// (login, password). An authorization identity other than the login is refused.
///
/// # Errors
/// [`SaslError`] when the response is not of that shape.
pub fn parse_plain(response: &str) -> Result<(String, String), SaslError> {
    let bytes = base64_decode(response).ok_or(SaslError::Base64)?;
    let text = String::from_utf8(bytes).map_err(|_| SaslError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authz), Some(login), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if login.is_empty() || (!authz.is_empty() && authz != login) {
        return Err(SaslError::Malformed);
    }
    Ok((login.to_string(), password.to_string()))
}

/// Decodes one LOGIN step (a user name or a password).
///
/// # Errors
/// [`SaslError`] when it is not base64 of UTF-8 text.
pub fn parse_login_step(response: &str) -> Result<String, SaslError> {
    let bytes = base64_decode(response).ok_or(SaslError::Base64)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed)
}

/// Hashes a password into an argon2id PHC string for the config.
///
/// # Errors
/// When the system cannot provide a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks `password` against an argon2id PHC string. Slow on purpose: run it
/// off the executor.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else { return false };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&phc), Algorithm::try_from(phc.algorithm.as_str()))
    else {
        return false;
    };
    let Ok(version) = phc.version.map(Version::try_from).transpose() else { return false };
    let blocks = params.block_count();
    let mut memory = WorkMemory::take(blocks);
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version.unwrap_or_default(), params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory.0[..blocks],
    );
    // `Output`'s comparison takes the same time wherever the bytes differ.
    hashed.is_ok() && Output::new(&out).is_ok_and(|o| o == *expected)
}

/// argon2's working memory (`m` KiB a check, 19 MiB by default), kept for
/// the next check instead of handed back to the allocator: glibc's malloc
/// keeps blocks this size once they were freed, and after a burst of wrong
/// passwords the server held hundreds of MiB. There are never more buffers
/// than checks that ran at once, and the server runs at most a few.
struct WorkMemory(Vec<Block>);

static SPARE_MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

impl WorkMemory {
    /// A spare buffer of at least `blocks` blocks, or a new one.
    fn take(blocks: usize) -> WorkMemory {
        let mut spare = SPARE_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
        match spare.iter().position(|b| b.len() >= blocks) {
            Some(i) => WorkMemory(spare.swap_remove(i)),
            None => WorkMemory(vec![Block::default(); blocks]),
        }
    }
}

impl Drop for WorkMemory {
    fn drop(&mut self) {
        let mut spare = SPARE_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
        spare.push(std::mem::take(&mut self.0));
    }
}

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
    fn base64_round_trips_and_refuses_junk() {
        for (plain, enc) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("\0alice\0pw", "AGFsaWNlAHB3")]
        {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).as_deref(), Some(plain.as_bytes()));
        }
        for junk in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!", "****"] {
            assert_eq!(base64_decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn plain_responses() {
        let enc = |s: &str| base64_encode(s.as_bytes());
        assert_eq!(
            parse_plain(&enc("\0alice@example.com\0pw")),
            Ok(("alice@example.com".into(), "pw".into()))
        );
        assert_eq!(parse_plain(&enc("alice\0alice\0pw")), Ok(("alice".into(), "pw".into())));
        assert_eq!(parse_plain(&enc("bob\0alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(parse_plain(&enc("alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(parse_plain(&enc("\0\0pw")), Err(SaslError::Malformed));
        assert_eq!(parse_plain("not base64!"), Err(SaslError::Base64));
    }

    #[test]
    fn hashes_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("correct horse", &h.replace("$argon2id$", "$argon2x$")));
        // The digest agrees with the argon2 crate's own check.
        use argon2::PasswordVerifier;
        assert!(Argon2::default().verify_password(b"correct horse", h.as_str()).is_ok());
    }

    #[test]
    fn password_checks_reuse_their_working_memory() {
        let h = hash_password("pw").unwrap();
        for _ in 0..3 {
            assert!(verify_password("pw", &h));
            assert!(!verify_password("wrong", &h));
        }
        // Other tests may check passwords at the same time, each with a buffer.
        let spare = SPARE_MEMORY.lock().unwrap();
        assert!(!spare.is_empty() && spare.len() <= 4, "{} spare buffers", spare.len());
        assert!(spare.iter().all(|b| b.len() >= Params::DEFAULT_M_COST as usize));
    }

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
