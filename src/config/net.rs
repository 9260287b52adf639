//! [`IpNet`], the network of `[relay] trusted_networks`: its spelling and the
//! membership test. Pure.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network such as `192.168.1.0/24` or `::1/128`; host bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The loopback networks, `127.0.0.0/8` and `::1/128`: the trusted default.
    pub(super) fn loopback() -> [IpNet; 2] {
        [
            IpNet { addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 },
            IpNet { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 },
        ]
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network. A client seen as an IPv4-mapped IPv6
    /// address (`::ffff:a.b.c.d`, from a dual-stack socket) is treated as the IPv4
    /// address it is, so it matches IPv4 networks and never IPv6 ones.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask_v4(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask_v6(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = String;

    /// Parses `192.168.1.0/24`, `::1/128`, or a bare address (a host route).
    /// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes the IPv4 one.
    fn from_str(s: &str) -> Result<IpNet, String> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!("`{s}` is not a network: `{addr_text}` is not an IP address (write networks like 192.168.1.0/24 or ::1/128)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!("`{s}`: the prefix length after / must be a number from 0 to {max}"));
                }
            },
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix))),
        };
        let net = IpNet { addr: network, prefix };
        if network != addr {
            return Err(format!("`{s}` has host bits set, did you mean {net}?"));
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_refuse_host_bits() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("192.168.1.0/24", Ok("192.168.1.0/24")),
            ("10.0.0.1", Ok("10.0.0.1/32")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("::1/128", Ok("::1/128")),
            ("::1", Ok("::1/128")),
            ("::/0", Ok("::/0")),
            ("fd00::/8", Ok("fd00::/8")),
            ("::ffff:10.0.0.0/104", Ok("10.0.0.0/8")),
            ("192.168.1.1/24", Err("host bits set, did you mean 192.168.1.0/24?")),
            ("fe80::1/10", Err("host bits set, did you mean fe80::/10?")),
            ("10.0.0.0/33", Err("a number from 0 to 32")),
            ("::/129", Err("a number from 0 to 128")),
            ("10.0.0.0/", Err("prefix length")),
            ("10.0.0.0/+8", Err("prefix length")),
            ("lan/24", Err("`lan` is not an IP address")),
            ("", Err("not an IP address")),
        ];
        for (input, want) in cases {
            match (input.parse::<IpNet>(), want) {
                (Ok(net), Ok(text)) => assert_eq!(net.to_string(), *text, "{input}"),
                (Err(err), Err(fragment)) => assert!(err.contains(fragment), "{input}: {err}"),
                (got, _) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn networks_contain_addresses_including_v4_mapped_clients() {
        let cases: &[(&str, &str, bool)] = &[
            ("127.0.0.0/8", "127.0.0.1", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("192.168.1.0/24", "192.168.1.255", true),
            ("192.168.1.0/24", "192.168.2.1", false),
            ("192.168.1.0/24", "::ffff:192.168.1.7", true),
            ("192.168.1.0/24", "::ffff:192.168.2.7", false),
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::1/128", "::1", true),
            ("::1/128", "127.0.0.1", false),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            // A v4-mapped client is an IPv4 client: IPv6 networks do not cover it.
            ("::/0", "::ffff:10.0.0.1", false),
            ("::/0", "10.0.0.1", false),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ];
        for (net, ip, want) in cases {
            let net: IpNet = net.parse().expect("test network");
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(net.contains(ip), *want, "{net} contains {ip}");
        }
    }
}
