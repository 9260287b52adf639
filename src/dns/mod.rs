//! MX, address, TXT and PTR lookups for delivery and for checking mail: a small
//! stub resolver asking the configured nameservers. This file owns what is
//! asked and how answers become results (CNAMEs followed, MX hosts sorted,
//! addresses ordered); `transport` owns the sockets and timeouts, `wire` the
//! bytes. No cache, no DNSSEC, no search list.

mod transport;
pub mod wire;

#[cfg(test)]
mod fake;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use smol::future;

use crate::domain_name::{self, Kind};
use crate::logtext::{quoted, word};
use wire::{MAX_CNAME_HOPS, RData, Record, Reply, RrType, addresses, canonical_name};

/// MX hosts kept for one domain, best first; more would only cost lookups.
const MAX_MX_HOSTS: usize = 10;
/// Nameservers taken from resolv.conf, as glibc does (MAXNS).
const MAX_NAMESERVERS: usize = 3;

/// How to reach a DNS server and what to prefer.
#[derive(Clone, Debug)]
pub struct Resolver {
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
    attempts: u32,
    prefer: Prefer,
}

/// The order of the addresses returned for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// IPv4 addresses first, then IPv6.
    Ipv4,
    /// IPv6 addresses first, then IPv4.
    Ipv6,
    /// Both families interleaved, IPv6 first (as in RFC 8305).
    Any,
}

/// Why a lookup gave no usable answer. Each message names the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The domain does not exist (NXDOMAIN), or has no MX and no A/AAAA: permanent, 5.1.2.
    NoSuchDomain(String),
    /// Null MX (RFC 7505: one MX with preference 0 and exchange "."): permanent, 5.1.10.
    NullMx(String),
    /// Timeout, SERVFAIL, REFUSED, network error, malformed reply: transient, try later.
    Temporary(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NoSuchDomain(what) | DnsError::NullMx(what) | DnsError::Temporary(what) => {
                f.write_str(what)
            }
        }
    }
}

impl std::error::Error for DnsError {}

/// One host to try, in order, with its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// The exchange's name, lowercase, without a trailing dot.
    pub name: String,
    /// Its MX preference; lower is tried first.
    pub preference: u16,
    /// Its addresses, ordered by the resolver's `Prefer`; never empty.
    pub addrs: Vec<IpAddr>,
}

/// What a TXT or PTR lookup found when a server gave a definite answer. The
/// failures, SERVFAIL or REFUSED from every server or no reply in time, are
/// `DnsError::Temporary`, whose text says which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    /// The name's records of the type asked for, after any CNAMEs; never empty.
    Records(Vec<T>),
    /// The name exists but has no records of the type ("no data", RFC 2308 2.2).
    NoData,
    /// The name does not exist (NXDOMAIN, RFC 2308 2.1).
    NoSuchDomain,
}

impl Resolver {
    /// A resolver asking `nameservers` in turn, 5 s per query, 2 rounds over them.
    pub fn new(nameservers: Vec<SocketAddr>, prefer: Prefer) -> Resolver {
        Resolver { nameservers, timeout: Duration::from_secs(5), attempts: 2, prefer }
    }

    /// The same resolver with another timeout per query and number of rounds (at least 1).
    pub fn with_timeout(self, timeout: Duration, attempts: u32) -> Resolver {
        Resolver { timeout, attempts: attempts.max(1), ..self }
    }

    /// Nameservers from /etc/resolv.conf ("nameserver" lines, port 53), or 127.0.0.1:53
    /// when there are none. Reads the file once, here; `options` lines are ignored.
    pub fn system(prefer: Prefer) -> Resolver {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_else(|e| {
            log::warn!("cannot read /etc/resolv.conf ({e}); asking 127.0.0.1 for DNS");
            String::new()
        });
        let mut nameservers = Resolver::parse_resolv_conf(&text);
        if nameservers.is_empty() {
            nameservers.push(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
        }
        Resolver::new(nameservers, prefer)
    }

    /// The first three usable `nameserver` addresses in resolv.conf text, with port 53.
    /// Comments (`#`, `;`), other keywords and unparsable addresses (including IPv6
    /// addresses with a `%zone`) are skipped.
    pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
        text.lines()
            .filter_map(|line| {
                let line = line.split(['#', ';']).next().unwrap_or_default();
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                    _ => None,
                }
            })
            .map(|ip| SocketAddr::new(ip, 53))
            .take(MAX_NAMESERVERS)
            .collect()
    }

    /// The hosts to try for mail to `domain`, best first: MX records sorted by
    /// preference (equal preferences shuffled), each with its addresses. A domain
    /// without MX records is its own mail host (RFC 5321 5.1). CNAMEs are followed.
    /// Hosts without addresses are left out; at most ten hosts are returned.
    ///
    /// # Errors
    ///
    /// `NoSuchDomain` when the domain does not exist, is not a valid name, or none of
    /// its mail hosts has an address; `NullMx` when it publishes a null MX; `Temporary`
    /// when a server could not be asked or failed, and no host could be found.
    pub async fn mx(&self, domain: &str) -> Result<Vec<MxHost>, DnsError> {
        let domain = valid_name(domain)?;
        let found = self
            .lookup(&domain, RrType::Mx)
            .await
            .map_err(|e| DnsError::Temporary(format!("MX lookup for {domain} failed: {e}")))?;
        let Some((owner, reply)) = found else {
            return Err(DnsError::NoSuchDomain(format!("domain {domain} does not exist")));
        };
        let mut records: Vec<(u16, u64, String)> = reply
            .answers
            .iter()
            .filter(|r| r.name == owner)
            .filter_map(|r| match &r.data {
                RData::Mx { preference, exchange } => {
                    Some((*preference, transport::shuffle_key(), exchange.clone()))
                }
                _ => None,
            })
            .collect();

        if records.is_empty() {
            let addrs = self.host_addrs(&domain, &[]).await.map_err(|e| match e {
                DnsError::NoSuchDomain(_) => {
                    DnsError::NoSuchDomain(format!("domain {domain} has no MX, A or AAAA records"))
                }
                other => other,
            })?;
            return Ok(vec![MxHost { name: domain, preference: 0, addrs }]);
        }

        // RFC 7505: an exchange of "." says the domain takes no mail.
        records.retain(|(_, _, exchange)| !exchange.is_empty());
        if records.is_empty() {
            return Err(DnsError::NullMx(format!("domain {domain} accepts no mail (null MX)")));
        }
        // Preference first; the random key shuffles hosts of equal preference (RFC 5321 5.1).
        records.sort_unstable();
        let mut seen = HashSet::new();
        records.retain(|(_, _, exchange)| seen.insert(exchange.clone()));
        records.truncate(MAX_MX_HOSTS);

        let mut hosts = Vec::new();
        let mut temporary = None;
        for (preference, _, name) in records {
            if domain_name::check(&name, Kind::Lookup).is_err() {
                log::debug!("MX host {} of {} skipped: not a host name", word(&name), word(&domain));
                continue;
            }
            match self.host_addrs(&name, &reply.additional).await {
                Ok(addrs) => hosts.push(MxHost { name, preference, addrs }),
                Err(DnsError::Temporary(e)) => temporary = Some(e),
                Err(e) => log::debug!("MX host of {} skipped: {}", word(&domain), quoted(&e.to_string())),
            }
        }
        match (hosts.is_empty(), temporary) {
            (false, _) => Ok(hosts),
            (true, Some(e)) => {
                Err(DnsError::Temporary(format!("no MX host of {domain} could be resolved: {e}")))
            }
            (true, None) => Err(DnsError::NoSuchDomain(format!("no MX host of {domain} has an address"))),
        }
    }

    /// The A and AAAA addresses of `host`, ordered by `prefer`. An IP literal, bare or
    /// in brackets as in an SMTP address literal, is returned as it is.
    ///
    /// # Errors
    ///
    /// `NoSuchDomain` when the name does not exist or has no addresses; `Temporary`
    /// when no address was found and a lookup failed.
    pub async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let host = valid_name(host)?;
        self.host_addrs(&host, &[]).await
    }

    /// The TXT records of `name` (SPF, DKIM and DMARC publish there), each as its
    /// character-strings joined without separators (RFC 7208 3.3), in octets:
    /// nothing says they are UTF-8. CNAMEs are followed; a U-label name is asked
    /// as its A-label.
    ///
    /// # Errors
    ///
    /// `NoSuchDomain` when `name` is not a valid name to ask about (nothing is
    /// sent); `Temporary` when no server gave a definite answer: SERVFAIL,
    /// REFUSED, no reply within the timeout, a malformed reply, a network error.
    pub async fn txt(&self, name: &str) -> Result<Answer<Vec<u8>>, DnsError> {
        let name = valid_name(name)?;
        self.records(&name, RrType::Txt, |data| match data {
            RData::Txt(text) => Some(text.clone()),
            _ => None,
        })
        .await
    }

    /// The names `ip` points back to: the PTR records of its reverse name (an
    /// IPv4-mapped IPv6 address is asked as the IPv4 one). Each name is lowercase,
    /// without the final dot, and as read: octets other than letters, digits, `-`
    /// and `_` are written `\DDD`. Whether a name resolves back to `ip` is the
    /// caller's question (RFC 8601 iprev).
    ///
    /// # Errors
    ///
    /// `Temporary` when no server gave a definite answer, as for `txt`.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Answer<String>, DnsError> {
        self.records(&wire::reverse_name(ip), RrType::Ptr, |data| match data {
            RData::Ptr(name) => Some(name.clone()),
            _ => None,
        })
        .await
    }

    /// The records of type `ty` for a valid `name` that `pick` takes from their data.
    async fn records<T>(
        &self,
        name: &str,
        ty: RrType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, DnsError> {
        let found = self
            .lookup(name, ty)
            .await
            .map_err(|e| DnsError::Temporary(format!("{ty} lookup for {name} failed: {e}")))?;
        let Some((owner, reply)) = found else {
            return Ok(Answer::NoSuchDomain);
        };
        let records: Vec<T> =
            reply.answers.iter().filter(|r| r.name == owner).filter_map(|r| pick(&r.data)).collect();
        Ok(if records.is_empty() { Answer::NoData } else { Answer::Records(records) })
    }

    /// A and AAAA of a valid, lowercase `host`, both asked at once. Records for the
    /// host in `known` (an MX reply's additional section) stand in for a query.
    async fn host_addrs(&self, host: &str, known: &[Record]) -> Result<Vec<IpAddr>, DnsError> {
        let (v4, v6) =
            future::zip(self.family(host, RrType::A, known), self.family(host, RrType::Aaaa, known)).await;
        let list = |r: &Result<Option<Vec<IpAddr>>, String>| r.clone().ok().flatten().unwrap_or_default();
        let addrs = order(self.prefer, list(&v4), list(&v6));
        if !addrs.is_empty() {
            return Ok(addrs);
        }
        match (v4, v6) {
            (Err(e), _) | (_, Err(e)) => {
                Err(DnsError::Temporary(format!("address lookup for {host} failed: {e}")))
            }
            (Ok(None), Ok(None)) => Err(DnsError::NoSuchDomain(format!("host {host} does not exist"))),
            _ => Err(DnsError::NoSuchDomain(format!("host {host} has no A or AAAA records"))),
        }
    }

    /// The addresses of one family; `None` when the name does not exist.
    async fn family(&self, host: &str, ty: RrType, known: &[Record]) -> Result<Option<Vec<IpAddr>>, String> {
        let glue = addresses(known, host, ty);
        if !glue.is_empty() {
            return Ok(Some(glue));
        }
        let found = self.lookup(host, ty).await?;
        Ok(found.map(|(owner, reply)| addresses(&reply.answers, &owner, ty)))
    }

    /// Asks for `ty` records of `name`, following CNAMEs, and returns the name the
    /// records belong to with the reply holding them; `None` for NXDOMAIN.
    async fn lookup(&self, name: &str, ty: RrType) -> Result<Option<(String, Reply)>, String> {
        let mut current = name.to_string();
        for _ in 0..MAX_CNAME_HOPS {
            let Some(reply) = self.query(&current, ty).await? else {
                return Ok(None);
            };
            let owner = canonical_name(&reply.answers, &current)
                .ok_or_else(|| format!("{current}: CNAME chain too long or looping"))?;
            let has_records = reply.answers.iter().any(|r| r.name == owner && r.data.rr_type() == Some(ty));
            if has_records || owner == current {
                return Ok(Some((owner, reply)));
            }
            // The server gave the CNAME but not its target's records: ask for them.
            current = owner;
        }
        Err(format!("{name}: too many CNAME links"))
    }
}

/// A name to look up, in the form sent: lowercase, A-labels (RFC 5891 5).
fn valid_name(name: &str) -> Result<String, DnsError> {
    domain_name::check(name, Kind::Lookup)
        .map_err(|_| DnsError::NoSuchDomain(format!("{name:?} is not a valid domain name")))
}

/// An IP address written bare, or as an SMTP address literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
fn ip_literal(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let inner = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => inner.get(5..).unwrap_or_default(),
            _ => inner,
        };
        return inner.parse().ok();
    }
    host.parse().ok()
}

/// Orders two address lists by preference, without duplicates.
fn order(prefer: Prefer, v4: Vec<IpAddr>, v6: Vec<IpAddr>) -> Vec<IpAddr> {
    let all: Vec<IpAddr> = match prefer {
        Prefer::Ipv4 => v4.into_iter().chain(v6).collect(),
        Prefer::Ipv6 => v6.into_iter().chain(v4).collect(),
        Prefer::Any => {
            let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
            let mut all = Vec::new();
            loop {
                match (v6.next(), v4.next()) {
                    (None, None) => break all,
                    (a, b) => all.extend(a.into_iter().chain(b)),
                }
            }
        }
    };
    let mut seen = HashSet::new();
    all.into_iter().filter(|ip| seen.insert(*ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake::{FakeDns, ips};
    use std::time::Instant;

    // ---- Pure steps. ----

    #[test]
    fn unicode_names_are_looked_up_as_a_labels() {
        let cases = [
            ("bücher.test", Some("xn--bcher-kva.test")),
            ("Bücher.TEST.", Some("xn--bcher-kva.test")),
            ("mail.BÜCHER.example", Some("mail.xn--bcher-kva.example")),
            ("münchen.de", Some("xn--mnchen-3ya.de")),
            ("straße.de", Some("xn--strae-oqa.de")),
            ("例え.テスト", Some("xn--r8jz45g.xn--zckzah")),
            ("пример.испытание", Some("xn--e1afmkfd.xn--80akhbyknj4f")),
            ("ascii.example", Some("ascii.example")),
            ("xn--bcher-kva.test", Some("xn--bcher-kva.test")),
            ("_dmarc.bücher.test", Some("_dmarc.xn--bcher-kva.test")),
            ("bü cher.test", None),
            ("bü_cher.test", None),
            ("bü☃.test", None),
            ("bü..test", None),
            ("bücher.test..", None),
            ("192.0.2.1", None),
        ];
        for (name, want) in cases {
            assert_eq!(valid_name(name).ok().as_deref(), want, "{name:?}");
        }
        let err = valid_name("a..b").unwrap_err();
        assert_eq!(err, DnsError::NoSuchDomain("\"a..b\" is not a valid domain name".into()));
    }

    #[test]
    fn ip_literals_bare_and_bracketed() {
        let cases = [
            ("192.0.2.1", Some("192.0.2.1")),
            ("[192.0.2.1]", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[IPv6:2001:db8::1]", Some("2001:db8::1")),
            ("[ipv6:2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("mail.example.com", None),
            ("[mail.example.com]", None),
            ("[192.0.2.1", None),
        ];
        for (host, want) in cases {
            assert_eq!(ip_literal(host), want.map(|ip| ip.parse().unwrap()), "{host}");
        }
    }

    #[test]
    fn order_follows_preference_without_duplicates() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let v4 = vec![ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.1")];
        let v6 = vec![ip("2001:db8::1")];
        assert_eq!(
            order(Prefer::Ipv4, v4.clone(), v6.clone()),
            [ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1")]
        );
        assert_eq!(
            order(Prefer::Ipv6, v4.clone(), v6.clone()),
            [ip("2001:db8::1"), ip("192.0.2.1"), ip("192.0.2.2")]
        );
        assert_eq!(order(Prefer::Any, v4, v6), [ip("2001:db8::1"), ip("192.0.2.1"), ip("192.0.2.2")]);
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# a comment\n\
                    ; another\n\
                    search example.com\n\
                    options ndots:2 timeout:1 attempts:3\n\
                    nameserver 192.0.2.53\n\
                    nameserver\n\
                    nameserver not-an-address\n\
                    nameserver fe80::1%eth0\n\
                    \x20 nameserver   2001:db8::53   # trailing comment\n\
                    domain example.com\n\
                    nameserver 192.0.2.54\n\
                    nameserver 192.0.2.55\n";
        let want: Vec<SocketAddr> = ["192.0.2.53:53", "[2001:db8::53]:53", "192.0.2.54:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(Resolver::parse_resolv_conf(text), want);
        assert_eq!(Resolver::parse_resolv_conf(""), []);
        assert_eq!(Resolver::parse_resolv_conf("#nameserver 192.0.2.1"), []);
    }

    // ---- Lookups against the fake server. ----

    #[test]
    fn mx_hosts_sorted_by_preference_with_equal_ones_shuffled() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Ipv6);
        let mut orders = HashSet::new();
        for _ in 0..40 {
            let hosts = smol::block_on(resolver.mx("Example.COM.")).unwrap();
            let prefs: Vec<u16> = hosts.iter().map(|h| h.preference).collect();
            assert_eq!(prefs, [10, 10, 20]);
            assert_eq!(
                hosts[2],
                MxHost { name: "mx3.example.com".into(), preference: 20, addrs: ips(&["2001:db8::3"]) }
            );
            let mx1 = hosts.iter().find(|h| h.name == "mx1.example.com").unwrap();
            assert_eq!(mx1.addrs, ips(&["2001:db8::1", "192.0.2.1"]));
            orders.insert(hosts[0].name.clone());
            if orders.len() == 2 {
                break;
            }
        }
        assert_eq!(orders.len(), 2, "both hosts of preference 10 come first sometimes");
    }

    #[test]
    fn addrs_are_ordered_by_prefer() {
        let fake = FakeDns::start();
        let (v4a, v4b, v6a, v6b) = ("192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8::11");
        let cases = [
            (Prefer::Ipv4, [v4a, v4b, v6a, v6b]),
            (Prefer::Ipv6, [v6a, v6b, v4a, v4b]),
            (Prefer::Any, [v6a, v4a, v6b, v4b]),
        ];
        for (prefer, want) in cases {
            assert_eq!(
                smol::block_on(fake.resolver(prefer).addrs("dual.example")),
                Ok(ips(&want)),
                "{prefer:?}"
            );
        }
    }

    #[test]
    fn mx_uses_addresses_from_the_additional_section() {
        let fake = FakeDns::start();
        let hosts = smol::block_on(fake.resolver(Prefer::Ipv4).mx("glue.example")).unwrap();
        assert_eq!(
            hosts,
            [MxHost { name: "mx.glue.example".into(), preference: 10, addrs: ips(&["192.0.2.99"]) }]
        );
    }

    #[test]
    fn mx_host_that_is_not_a_host_name_is_skipped() {
        let fake = FakeDns::start();
        let err = smol::block_on(fake.resolver(Prefer::Ipv4).mx("badmx.example")).unwrap_err();
        assert!(matches!(err, DnsError::NoSuchDomain(_)), "{err}");
    }

    #[test]
    fn domain_without_mx_is_its_own_mail_host() {
        let fake = FakeDns::start();
        let hosts = smol::block_on(fake.resolver(Prefer::Ipv4).mx("implicit.example")).unwrap();
        assert_eq!(
            hosts,
            [MxHost { name: "implicit.example".into(), preference: 0, addrs: ips(&["192.0.2.20"]) }]
        );
    }

    #[test]
    fn null_mx_and_missing_domains_are_permanent_failures() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Any);
        let mx = |domain| smol::block_on(resolver.mx(domain));
        assert!(matches!(mx("nullmx.example"), Err(DnsError::NullMx(_))));
        assert!(matches!(mx("nomail.example"), Err(DnsError::NoSuchDomain(_))));
        assert!(matches!(mx("a..example"), Err(DnsError::NoSuchDomain(_))));
        let err = mx("nxdomain.example").unwrap_err();
        assert!(matches!(err, DnsError::NoSuchDomain(_)));
        assert!(err.to_string().contains("nxdomain.example"), "{err}");
        let addrs = smol::block_on(resolver.addrs("nxdomain.example"));
        assert!(matches!(addrs, Err(DnsError::NoSuchDomain(_))));
    }

    #[test]
    fn servfail_and_cname_loops_are_temporary() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Any);
        let err = smol::block_on(resolver.mx("servfail.example")).unwrap_err();
        assert!(matches!(err, DnsError::Temporary(_)));
        assert!(err.to_string().contains("SERVFAIL"), "{err}");
        assert!(matches!(smol::block_on(resolver.addrs("servfail.example")), Err(DnsError::Temporary(_))));
        assert!(matches!(smol::block_on(resolver.addrs("loop.example")), Err(DnsError::Temporary(_))));
    }

    #[test]
    fn silent_server_is_temporary_after_the_timeout() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_millis(200);
        let resolver =
            Resolver::new(vec![silent.local_addr().unwrap()], Prefer::Any).with_timeout(timeout, 1);
        let started = Instant::now();
        let err = smol::block_on(resolver.mx("example.com")).unwrap_err();
        assert!(matches!(err, DnsError::Temporary(_)), "{err}");
        assert!(started.elapsed() >= timeout);
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    }

    #[test]
    fn next_nameserver_is_asked_when_one_is_silent() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fake = FakeDns::start();
        let resolver = Resolver::new(vec![silent.local_addr().unwrap(), fake.addr], Prefer::Ipv4)
            .with_timeout(Duration::from_millis(200), 1);
        assert_eq!(smol::block_on(resolver.addrs("implicit.example")), Ok(ips(&["192.0.2.20"])));
    }

    #[test]
    fn truncated_udp_reply_is_asked_again_over_tcp() {
        let fake = FakeDns::start();
        let hosts = smol::block_on(fake.resolver(Prefer::Ipv4).mx("tc.example")).unwrap();
        let want = MxHost {
            name: "mx1.example.com".into(),
            preference: 10,
            addrs: ips(&["192.0.2.1", "2001:db8::1"]),
        };
        assert_eq!(hosts, [want]);
    }

    #[test]
    fn cnames_are_followed() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Ipv4);
        let hosts = smol::block_on(resolver.mx("cname.example")).unwrap();
        let addrs = ips(&["192.0.2.30", "2001:db8::30"]);
        assert_eq!(hosts, [MxHost { name: "alias.cname.example".into(), preference: 10, addrs }]);
        let hosts = smol::block_on(resolver.mx("mxalias.example")).unwrap();
        assert_eq!(hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["mx1.example.com"]);
    }

    #[test]
    fn reply_with_a_wrong_id_is_ignored() {
        let fake = FakeDns::start();
        assert_eq!(
            smol::block_on(fake.resolver(Prefer::Ipv4).addrs("spoof.example")),
            Ok(ips(&["192.0.2.40"]))
        );
    }

    #[test]
    fn ip_literals_need_no_nameserver() {
        let resolver = Resolver::new(Vec::new(), Prefer::Any);
        assert_eq!(smol::block_on(resolver.addrs("[IPv6:2001:db8::1]")), Ok(ips(&["2001:db8::1"])));
        assert!(matches!(smol::block_on(resolver.addrs("host.example")), Err(DnsError::Temporary(_))));
    }

    #[test]
    fn reply_to_another_question_is_ignored() {
        // The server sends an answer with our id for other.example first.
        let fake = FakeDns::start();
        assert_eq!(
            smol::block_on(fake.resolver(Prefer::Ipv4).addrs("otherq.example")),
            Ok(ips(&["192.0.2.50"]))
        );
    }

    // ---- TXT and PTR. ----

    fn txt(strings: &[&[u8]]) -> Answer<Vec<u8>> {
        Answer::Records(strings.iter().map(|s| s.to_vec()).collect())
    }

    #[test]
    fn txt_records_come_joined_one_per_record() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Any);
        let lookup = |name| smol::block_on(resolver.txt(name));
        assert_eq!(lookup("Example.COM."), Ok(txt(&[b"v=spf1 ip4:192.0.2.0/24 -all", b"hello"])));
        assert_eq!(lookup("_dmarc.example.com"), Ok(txt(&[b"v=DMARC1; p=reject"])));
        assert_eq!(lookup("bytes.example"), Ok(txt(&[b"\xff\x00a", b""])));
        // The CNAME's target's TXT records, not its A record.
        assert_eq!(lookup("txtalias.example"), Ok(txt(&[b"v=DMARC1; p=none"])));
        // Truncated over UDP, asked again over TCP.
        assert_eq!(lookup("tc.example"), Ok(txt(&[b"over tcp"])));
    }

    #[test]
    fn txt_lookups_tell_nxdomain_no_data_and_failures_apart() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Any);
        let lookup = |name| smol::block_on(resolver.txt(name));
        assert_eq!(lookup("nxdomain.example"), Ok(Answer::NoSuchDomain));
        assert_eq!(lookup("mx1.example.com"), Ok(Answer::NoData));
        let err = lookup("servfail.example").unwrap_err();
        assert!(matches!(&err, DnsError::Temporary(e) if e.contains("SERVFAIL")), "{err}");
        assert!(err.to_string().contains("TXT lookup for servfail.example"), "{err}");
        assert!(matches!(lookup("loop.example"), Err(DnsError::Temporary(_))));
        assert!(matches!(lookup("a..example"), Err(DnsError::NoSuchDomain(_))));

        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let resolver = Resolver::new(vec![silent.local_addr().unwrap()], Prefer::Any)
            .with_timeout(Duration::from_millis(200), 1);
        let err = smol::block_on(resolver.txt("example.com")).unwrap_err();
        assert!(matches!(&err, DnsError::Temporary(e) if e.contains("no reply within 200 ms")), "{err}");
    }

    #[test]
    fn ptr_names_of_v4_and_v6_addresses() {
        let fake = FakeDns::start();
        let resolver = fake.resolver(Prefer::Any);
        let lookup = |ip: &str| smol::block_on(resolver.ptr(ip.parse().unwrap()));
        let names = |list: &[&str]| Ok(Answer::Records(list.iter().map(|s| s.to_string()).collect()));
        assert_eq!(lookup("192.0.2.1"), names(&["mx1.example.com"]));
        assert_eq!(lookup("::ffff:192.0.2.1"), names(&["mx1.example.com"]));
        assert_eq!(lookup("2001:db8::1"), names(&["mx1.example.com"]));
        assert_eq!(lookup("192.0.2.2"), names(&["mx2.example.com", "alias.example.com"]));
        assert_eq!(lookup("192.0.2.9"), Ok(Answer::NoSuchDomain));
        assert_eq!(lookup("192.0.2.7"), Ok(Answer::NoData));
        let err = lookup("192.0.2.8").unwrap_err();
        assert!(matches!(&err, DnsError::Temporary(e) if e.contains("SERVFAIL")), "{err}");
    }
}
