//! Mail that would come back to this server: an MX host or smarthost that is
//! one of our own listeners, or is named like our `hostname`. Delivering
//! there would accept the message again from a trusted address (loopback, or
//! the board's own LAN address) and send it round until the hop count
//! refuses it, fifty copies later. Pure, but for [`is_local`].

use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::dns::MxHost;

/// Whether a connection to `addr` would reach one of `listeners` (the
/// addresses our SMTP listeners bound). A listener on `0.0.0.0` or `[::]`
/// takes every address of this host of its family at its port (our IPv6
/// listeners are IPv6 only); `is_local` says which those are.
pub fn reaches_listener(
    addr: SocketAddr,
    listeners: &[SocketAddr],
    is_local: &dyn Fn(IpAddr) -> bool,
) -> bool {
    let ip = addr.ip().to_canonical();
    listeners.iter().any(|l| {
        let own = l.ip().to_canonical();
        l.port() == addr.port()
            && own.is_ipv4() == ip.is_ipv4()
            // Connecting to 0.0.0.0 or :: reaches this host too.
            && (own == ip || ip.is_unspecified() || (own.is_unspecified() && is_local(ip)))
    })
}

/// Whether `name` is our `hostname`, whatever the case or a trailing dot.
pub fn is_our_name(name: &str, hostname: &str) -> bool {
    name.trim_end_matches('.').eq_ignore_ascii_case(hostname.trim_end_matches('.'))
}

/// The MX hosts worth trying, and whether one of them was this server.
///
/// As Postfix does: when this server is one of the hosts (we are a backup
/// MX, say), only hosts more preferred than it are tried; mail for a domain
/// whose best host is this server loops, and the list comes back empty.
pub fn before_us(hosts: Vec<MxHost>, is_us: impl Fn(&MxHost) -> bool) -> (Vec<MxHost>, Option<MxHost>) {
    let Some(us) = hosts.iter().find(|h| is_us(h)).cloned() else {
        return (hosts, None);
    };
    let better: Vec<MxHost> = hosts.into_iter().filter(|h| h.preference < us.preference).collect();
    (better, Some(us))
}

/// Whether `ip` is an address of this host: loopback, unspecified, or one
/// its interfaces have. The last is asked of the kernel without sending
/// anything: a UDP socket connected to one of our own addresses gets that
/// same address as its source.
pub fn is_local(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let any: IpAddr = if ip.is_ipv4() { [0u8; 4].into() } else { [0u16; 8].into() };
    let Ok(socket) = UdpSocket::bind((any, 0)) else { return false };
    socket.connect((ip, 9)).is_ok() && socket.local_addr().is_ok_and(|a| a.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn which_addresses_reach_our_listeners() {
        // 192.168.1.5 stands for the board's LAN address.
        let local = |ip: IpAddr| ip.is_loopback() || ip == "192.168.1.5".parse::<IpAddr>().unwrap();
        let cases = [
            (&["127.0.0.1:25"][..], "127.0.0.1:25", true, "the listener itself"),
            (&["127.0.0.1:25"], "127.0.0.1:2525", false, "another port"),
            (&["127.0.0.1:25"], "192.168.1.5:25", false, "a loopback listener is not on the LAN"),
            (&["0.0.0.0:25"], "192.168.1.5:25", true, "0.0.0.0 takes the LAN address"),
            (&["0.0.0.0:25"], "127.0.0.2:25", true, "and all of 127/8"),
            (&["0.0.0.0:25"], "192.168.1.6:25", false, "a neighbour"),
            (&["0.0.0.0:25"], "[::ffff:192.168.1.5]:25", true, "an IPv4-mapped address is IPv4"),
            (&["0.0.0.0:25"], "[::1]:25", false, "IPv6 is another listener's"),
            (&["[::]:25"], "[::1]:25", true, "[::] takes ::1"),
            (&["[::]:25"], "127.0.0.1:25", false, "our [::] listeners are IPv6 only"),
            (&["127.0.0.1:25"], "0.0.0.0:25", true, "connecting to 0.0.0.0 reaches this host"),
            (&["192.168.1.5:587", "127.0.0.1:25"], "192.168.1.5:587", true, "any listener"),
        ];
        for (listeners, addr, want, why) in cases {
            let listeners: Vec<SocketAddr> = listeners.iter().map(|l| sa(l)).collect();
            assert_eq!(reaches_listener(sa(addr), &listeners, &local), want, "{why}");
        }
    }

    #[test]
    fn our_name_matches_without_case_or_final_dot() {
        assert!(is_our_name("mx.example.com", "mx.example.com"));
        assert!(is_our_name("MX.Example.com.", "mx.example.com"));
        assert!(!is_our_name("mx2.example.com", "mx.example.com"));
    }

    #[test]
    fn only_hosts_better_than_us_are_tried() {
        let host = |name: &str, preference| MxHost {
            name: name.into(),
            preference,
            addrs: vec!["192.0.2.1".parse().unwrap()],
        };
        let names = |hosts: &[MxHost]| hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>().join(" ");
        let is_us = |h: &MxHost| h.name == "us";
        let cases = [
            (vec![host("a", 10), host("us", 20), host("b", 30)], "a", true),
            (vec![host("us", 10), host("a", 20)], "", true),
            (vec![host("a", 10), host("us", 10), host("b", 20)], "", true),
            (vec![host("a", 10), host("b", 20)], "a b", false),
        ];
        for (hosts, want, found) in cases {
            let (left, us) = before_us(hosts, is_us);
            assert_eq!((names(&left).as_str(), us.is_some()), (want, found));
        }
    }

    #[test]
    fn local_addresses_are_known() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("127.3.2.1".parse().unwrap()));
        assert!(is_local("0.0.0.0".parse().unwrap()));
        // TEST-NET-1 is never any host's address.
        assert!(!is_local("192.0.2.1".parse().unwrap()));
        // This host's address on its default route, if it has one.
        let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
        if probe.connect("192.0.2.1:9").is_ok() {
            let own = probe.local_addr().unwrap().ip();
            assert!(is_local(own), "{own}");
        }
    }
}
