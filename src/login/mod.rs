//! The login service every protocol uses: it checks a name and password
//! against the accounts, off the executor and only a few at once, never
//! answers a wrong password sooner than [`FAILURE_DELAY`], costs an unknown
//! name the same hash check as a known one, holds each client address and
//! each account to its failure limits, and writes the log lines fail2ban
//! reads. SMTP AUTH uses it; the listener's name in the log lines says
//! which protocol and port a login came through.

mod limits;
mod slots;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::Timer;
use smol::future::FutureExt as _;

pub use limits::{AccountCheck, AccountGuard, FailureLimiter, client_key};
pub use slots::{CheckSlots, SlotPermit};

use crate::accounts::{Accounts, Login};
use crate::auth::{hash_password, verify_password};
use crate::logtext::quoted;

/// A failed login is answered no sooner than this after the check began, so
/// guessing is slow and a wrong user cannot be told from a wrong password.
pub const FAILURE_DELAY: Duration = Duration::from_secs(1);

/// Failed logins allowed from one address per minute; then the client is
/// refused until they age out.
const FAILURES_PER_MINUTE: usize = 10;

/// Password checks running at once: argon2id takes 19 MiB and a core each.
const MAX_CONCURRENT_CHECKS: usize = 2;

/// Password checks per login name and hour for addresses that never logged
/// in with it: a burst of this many, then one each `3600 / this` seconds;
/// others are refused before any check.
const ACCOUNT_FAILURES_PER_HOUR: usize = 100;

/// How long an address that logged in is remembered as the account's own.
const KNOWN_ADDRESS_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a login waits for a free password check before it is deferred.
const CHECK_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a login check came to; each protocol words its own reply.
#[derive(Debug)]
pub enum Outcome {
    /// The password is right.
    Ok(Login),
    /// Wrong user or password (SMTP `535`).
    Wrong,
    /// Too many logins are being checked right now; try again (SMTP `454`).
    Busy,
    /// The name's budget is spent for this address; try again later (SMTP `454`).
    AccountLocked,
    /// The client has failed too often: refuse and close (SMTP `421`).
    Blocked,
}

/// The state every login check shares: the limits and the check places.
#[derive(Debug)]
pub struct Logins {
    failures: Mutex<FailureLimiter>,
    accounts: Mutex<AccountGuard>,
    slots: Arc<CheckSlots>,
}

impl Default for Logins {
    fn default() -> Logins {
        Logins::new()
    }
}

impl Logins {
    /// The service with the server's limits.
    pub fn new() -> Logins {
        Logins {
            failures: Mutex::new(FailureLimiter::new(FAILURES_PER_MINUTE, Duration::from_secs(60))),
            accounts: Mutex::new(AccountGuard::new(
                ACCOUNT_FAILURES_PER_HOUR,
                Duration::from_secs(3600),
                KNOWN_ADDRESS_FOR,
            )),
            slots: CheckSlots::new(MAX_CONCURRENT_CHECKS),
        }
    }

    /// Checks `login` and `password` from client `ip` against `accounts`;
    /// `port` (the listener's name) goes into the log lines.
    pub async fn check(
        &self,
        accounts: &Accounts,
        ip: IpAddr,
        port: &str,
        login: &str,
        password: String,
    ) -> Outcome {
        let shown = quoted(login);
        let limiter = || self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if !limiter().begin(ip, Instant::now()) {
            log::warn!("auth refused: too many failures client=[{ip}] login={shown} port={port}");
            return Outcome::Blocked;
        }
        let start = Instant::now();
        let found = accounts.login(login).map(|(l, h)| (l, h.to_string()));
        // Every name has a budget, an account or not, so a spent one says
        // nothing about which names exist: an account by its own name, any
        // other by what was typed.
        let name = match &found {
            Some((l, _)) => format!("{}@{}", l.user, l.domain),
            None => login.to_lowercase(),
        };
        let guard = || self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let known = guard().known(&name, ip, start);
        // A spent budget refuses at once; it is asked again once a place is
        // free, since others may have spent it meanwhile.
        let spent = !guard().allows(&name, ip, start);
        let slot = async {
            if spent {
                return Err(());
            }
            Ok(self.slots.acquire(known).await)
        }
        .or(async {
            Timer::after(CHECK_QUEUE_TIMEOUT).await;
            Ok(None)
        });
        let begun = match slot.await {
            Ok(Some(permit)) => guard().begin(&name, ip, Instant::now()).map(|c| (permit, c)).ok_or(()),
            Ok(None) => {
                limiter().end(ip, Instant::now(), false);
                log::warn!("auth deferred: too many logins being checked client=[{ip}] port={port}");
                return Outcome::Busy;
            }
            Err(()) => Err(()),
        };
        // Refused before any check: not a failure of this client's (the
        // owner on a new address may be one of those refused), so neither
        // its limit nor fail2ban counts it; the guessers' checks were counted.
        let Ok((permit, check)) = begun else {
            limiter().end(ip, Instant::now(), false);
            if let Some(rest) = FAILURE_DELAY.checked_sub(start.elapsed()) {
                Timer::after(rest).await;
            }
            log::info!(
                "auth deferred: too many failures for this login client=[{ip}] login={shown} port={port}"
            );
            return Outcome::AccountLocked;
        };
        let verified = smol::unblock(move || match found {
            Some((who, hash)) => verify_password(&password, &hash).then_some(who),
            None => {
                verify_password(&password, dummy_hash());
                None
            }
        })
        .await;
        // The place is for the check itself, not for the delay after a failure.
        drop(permit);
        guard().end(&name, ip, check, verified.is_some(), Instant::now());
        if let Some(who) = verified {
            limiter().end(ip, Instant::now(), false);
            log::info!("auth ok client=[{ip}] login={}@{} port={port}", who.user, who.domain);
            return Outcome::Ok(who);
        }
        let limit_reached = limiter().end(ip, Instant::now(), true);
        if let Some(rest) = FAILURE_DELAY.checked_sub(start.elapsed()) {
            Timer::after(rest).await;
        }
        log::warn!("auth failed client=[{ip}] login={shown} port={port}");
        if limit_reached {
            log::warn!("auth refused: too many failures client=[{ip}] login={shown} port={port}");
            return Outcome::Blocked;
        }
        Outcome::Wrong
    }
}

/// An argon2id hash of a random password, checked for unknown users.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let noise = format!("{:?}{:?}", Instant::now(), std::thread::current().id());
        hash_password(&noise).unwrap_or_default()
    })
}
