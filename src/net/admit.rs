//! Admission: how many connections a listener kind holds, overall and per
//! client address (an IPv6 client per /64, which one host usually holds
//! whole). Each kind of listener has counters of its own, so idle
//! connections on one protocol's port cannot take the places of another's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::login::client_key;

/// Which limit turned a connection away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener kind holds its most connections.
    Total,
    /// This client address (or /64) holds its most.
    PerAddress,
}

/// The open connections of one listener kind.
#[derive(Debug, Default)]
pub struct Connections {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place; given back when dropped, a panicking connection
/// task's too.
#[derive(Debug)]
pub struct Slot {
    conns: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.total.fetch_sub(1, Ordering::SeqCst);
        // A task that panicked while holding the lock must not leave every
        // place taken for good.
        let mut map = self.conns.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    /// Takes a place for a client at `ip`, or says which limit is reached.
    /// `max_per_ip` is `usize::MAX` for clients exempt from it (the trusted
    /// networks, as Postfix exempts `$mynetworks`).
    ///
    /// # Errors
    /// [`Refused`] when a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max: usize, max_per_ip: usize) -> Result<Slot, Refused> {
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::SeqCst) >= max {
            return Err(Refused::Total);
        }
        let ip = client_key(ip);
        let n = map.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            if *n == 0 {
                map.remove(&ip);
            }
            return Err(Refused::PerAddress);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(Slot { conns: Arc::clone(self), ip })
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_total_and_each_address_are_capped_and_places_come_back() {
        let c = Arc::new(Connections::default());
        let a = c.admit(ip("192.0.2.1"), 3, 2).unwrap();
        let _b = c.admit(ip("192.0.2.1"), 3, 2).unwrap();
        assert_eq!(c.admit(ip("192.0.2.1"), 3, 2).unwrap_err(), Refused::PerAddress);
        let _other = c.admit(ip("192.0.2.2"), 3, 2).unwrap();
        assert_eq!(c.admit(ip("192.0.2.3"), 3, 2).unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 3);
        drop(a);
        assert_eq!(c.open(), 2);
        let _again = c.admit(ip("192.0.2.1"), 3, 2).unwrap();
    }

    #[test]
    fn an_ipv6_64_counts_as_one_client_and_exempt_clients_share_only_the_total() {
        let c = Arc::new(Connections::default());
        let _a = c.admit(ip("2001:db8:1:2::1"), 10, 1).unwrap();
        assert_eq!(c.admit(ip("2001:db8:1:2:ffff::9"), 10, 1).unwrap_err(), Refused::PerAddress);
        let _other64 = c.admit(ip("2001:db8:1:3::1"), 10, 1).unwrap();
        let held: Vec<Slot> = (0..8).map(|_| c.admit(ip("192.168.1.5"), 10, usize::MAX).unwrap()).collect();
        assert_eq!(c.admit(ip("192.168.1.5"), 10, usize::MAX).unwrap_err(), Refused::Total);
        drop(held);
        assert_eq!(c.open(), 2);
        // Nothing is left behind for addresses with no connection.
        assert_eq!(c.per_ip.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_task_that_panics_gives_its_place_back() {
        let c = Arc::new(Connections::default());
        let held = Arc::clone(&c);
        let r = std::thread::spawn(move || {
            let _slot = held.admit(ip("192.0.2.1"), 1, 1).unwrap();
            panic!("the connection task fails");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(c.open(), 0);
        c.admit(ip("192.0.2.1"), 1, 1).unwrap();
    }

    #[test]
    fn the_per_address_cap_counts_an_ipv6_64_as_one_client() {
        // Two places per client: each address in turn, and whether it gets in.
        let cases: &[(&str, bool)] = &[
            ("2001:db8:1:2::1", true),
            ("2001:db8:1:2::2", true),
            ("2001:db8:1:2:ffff:ffff:ffff:ffff", false),
            ("2001:db8:1:3::1", true),
            ("2001:db8:1:3:8000::1", true),
            ("2001:db8:1:3::9", false),
            ("192.0.2.7", true),
            ("::ffff:192.0.2.7", true),
            ("192.0.2.7", false),
            ("192.0.2.8", true),
        ];
        let conns = Arc::new(Connections::default());
        let mut held = Vec::new();
        for &(ip, admitted) in cases {
            let got = conns.admit(ip.parse().unwrap(), 100, 2);
            assert_eq!(got.is_ok(), admitted, "{ip}");
            held.extend(got.ok());
        }
        assert_eq!(conns.open(), 7);
        // Leaving frees the /64's place for any address in it.
        held.remove(0);
        assert!(conns.admit("2001:db8:1:2::abcd".parse().unwrap(), 100, 2).is_ok());
        drop(held);
        assert!(conns.per_ip.lock().unwrap().is_empty());
    }
}
