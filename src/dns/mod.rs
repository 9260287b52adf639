//! MX and address lookups for outbound delivery: a small stub resolver that asks the
//! configured nameservers over UDP, and over TCP when a reply comes back truncated.
//! It owns the DNS wire decoding and nothing else: no cache, no DNSSEC, no search list.
//!
//! Replies are decoded here by small pure functions rather than by `dns-protocol`'s
//! reader, which indexes past the end of short labels, loops forever on a pointer
//! loop and rejects a whole reply for one record type it does not know. Queries are
//! still written with `dns-protocol`.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_net::{TcpStream, UdpSocket};
use dns_protocol::{Flags, Message, Question, ResourceType};
use smol::Timer;
use smol::future::{self, FutureExt};
use smol::io::{AsyncReadExt, AsyncWriteExt};

use crate::logtext::{quoted, word};

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const RCODE_NOERROR: u8 = 0;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_REFUSED: u8 = 5;

/// Compression pointers followed while reading one name; real names need a few.
const MAX_POINTER_JUMPS: usize = 32;
/// CNAME links followed within one reply, and queries made to follow them.
const MAX_CNAME_HOPS: usize = 8;
/// MX hosts kept for one domain, best first; more would only cost lookups.
const MAX_MX_HOSTS: usize = 10;
/// Nameservers taken from resolv.conf, as glibc does (MAXNS).
const MAX_NAMESERVERS: usize = 3;
/// Without EDNS a server sends at most 512 octets over UDP; read a little more.
const UDP_BUFFER: usize = 4096;

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
                RData::Mx { preference, exchange } => Some((*preference, random_u64(), exchange.clone())),
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
            if normalize(&name).is_none() {
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
            let owner = canonical_name(&reply.answers, &current)?;
            let has_records = reply.answers.iter().any(|r| r.name == owner && r.data.rr_type() == Some(ty));
            if has_records || owner == current {
                return Ok(Some((owner, reply)));
            }
            // The server gave the CNAME but not its target's records: ask for them.
            current = owner;
        }
        Err(format!("{name}: too many CNAME links"))
    }

    /// One question, asked of each nameserver in turn until one gives a definite
    /// answer: `Some` for NOERROR, `None` for NXDOMAIN.
    async fn query(&self, name: &str, ty: RrType) -> Result<Option<Reply>, String> {
        let mut last = String::from("no nameservers configured");
        for _ in 0..self.attempts.max(1) {
            for &server in &self.nameservers {
                let problem = match self.ask(server, name, ty).await {
                    Ok(reply) => match reply.rcode {
                        RCODE_NOERROR => return Ok(Some(reply)),
                        RCODE_NXDOMAIN => return Ok(None),
                        RCODE_SERVFAIL => "SERVFAIL".to_string(),
                        RCODE_REFUSED => "REFUSED".to_string(),
                        code => format!("response code {code}"),
                    },
                    Err(e) => e,
                };
                log::debug!("DNS {ty} {} at {server}: {}", word(name), quoted(&problem));
                last = format!("{server}: {problem}");
            }
        }
        Err(last)
    }

    /// One exchange with one server, UDP then TCP if truncated, within the timeout.
    async fn ask(&self, server: SocketAddr, name: &str, ty: RrType) -> Result<Reply, String> {
        let id = random_u64() as u16;
        let query = encode_query(id, name, ty)?;
        let matches = |reply: &Reply| reply_matches(reply, id, name, ty);
        let exchange = async {
            let reply = udp_exchange(server, &query, id, matches).await?;
            if !reply.truncated {
                return Ok(reply);
            }
            tcp_exchange(server, &query, matches).await
        };
        let timeout = self.timeout;
        exchange
            .or(async {
                Timer::after(timeout).await;
                Err(format!("no reply within {} ms", timeout.as_millis()))
            })
            .await
    }
}

/// Sends `query` over UDP and waits for its reply. Datagrams with another id are
/// ignored (late or forged answers); one with our id that cannot be decoded, or
/// asks another question, is an error.
async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    matches: impl Fn(&Reply) -> bool,
) -> Result<Reply, String> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    // Connecting makes the kernel drop datagrams from anyone but the server.
    socket.connect(server).await.map_err(|e| format!("UDP connect: {e}"))?;
    socket.send(query).await.map_err(|e| format!("UDP send: {e}"))?;
    let mut buf = vec![0; UDP_BUFFER];
    loop {
        let len = socket.recv(&mut buf).await.map_err(|e| format!("UDP receive: {e}"))?;
        let bytes = buf.get(..len).unwrap_or_default();
        if be16(bytes, 0) != Ok(id) {
            log::debug!("DNS reply from {server} with a wrong id ignored");
            continue;
        }
        let reply = parse_reply(bytes).map_err(|e| format!("malformed reply: {e}"))?;
        return if matches(&reply) { Ok(reply) } else { Err("reply does not match the question".into()) };
    }
}

/// Sends `query` over TCP with its 2-octet length and reads the one reply.
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    matches: impl Fn(&Reply) -> bool,
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(server).await.map_err(|e| format!("TCP connect: {e}"))?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| format!("TCP send: {e}"))?;
    let mut len = [0; 2];
    stream.read_exact(&mut len).await.map_err(|e| format!("TCP receive: {e}"))?;
    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(|e| format!("TCP receive: {e}"))?;
    let reply = parse_reply(&buf).map_err(|e| format!("malformed reply over TCP: {e}"))?;
    if !matches(&reply) || reply.truncated {
        return Err("TCP reply does not match the question".into());
    }
    Ok(reply)
}

/// Whether `reply` answers our query: our id, a standard response, our question. A
/// failure without the question (some servers send REFUSED that way) also counts.
fn reply_matches(reply: &Reply, id: u16, name: &str, ty: RrType) -> bool {
    let question = match reply.questions.as_slice() {
        [(qname, qtype, qclass)] => qname == name && *qtype == ty.code() && *qclass == CLASS_IN,
        [] => reply.truncated || !matches!(reply.rcode, RCODE_NOERROR | RCODE_NXDOMAIN),
        _ => false,
    };
    reply.id == id && reply.response && reply.opcode == 0 && question
}

/// The record types this module asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RrType {
    A,
    Aaaa,
    Mx,
}

impl RrType {
    fn code(self) -> u16 {
        match self {
            RrType::A => TYPE_A,
            RrType::Aaaa => TYPE_AAAA,
            RrType::Mx => TYPE_MX,
        }
    }
}

impl fmt::Display for RrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RrType::A => "A",
            RrType::Aaaa => "AAAA",
            RrType::Mx => "MX",
        })
    }
}

/// Writes a recursive query for `name` (already checked by `normalize`).
fn encode_query(id: u16, name: &str, ty: RrType) -> Result<Vec<u8>, String> {
    let rtype = match ty {
        RrType::A => ResourceType::A,
        RrType::Aaaa => ResourceType::AAAA,
        RrType::Mx => ResourceType::MX,
    };
    let mut questions = [Question::new(name, rtype, CLASS_IN)];
    let message = Message::new(id, Flags::standard_query(), &mut questions, &mut [], &mut [], &mut []);
    let mut buf = vec![0; message.space_needed()];
    let len = message.write(&mut buf).map_err(|e| format!("cannot encode a query for {name}: {e}"))?;
    buf.truncate(len);
    Ok(buf)
}

/// `name` lowercased, without one trailing dot, if it is a plausible ASCII host name:
/// labels of 1 to 63 letters, digits, `-` or `_`, 253 octets in all.
fn normalize(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

/// A name to look up: as it is when ASCII, else with each non-ASCII label as
/// its A-label (punycode), as IDNA asks for (RFC 5891 5, UTS #46).
fn valid_name(name: &str) -> Result<String, DnsError> {
    a_labels(name)
        .as_deref()
        .and_then(normalize)
        .ok_or_else(|| DnsError::NoSuchDomain(format!("{name:?} is not a valid domain name")))
}

/// `name` with every label that is not ASCII written as `xn--` and its
/// punycode; `None` when a label cannot be one.
///
/// SMTPUTF8 mail carries its domains as U-labels (RFC 6531 3.3), which are
/// already what the UTS #46 mapping produces: lowercase, NFC, no symbols. The
/// mapping done here is the part of it that can matter for a name an address
/// parser accepted, lowercasing; a label that is not a U-label yet (one with
/// compatibility forms, or not NFC) gets an A-label that names nothing, so the
/// mail bounces as for any unknown domain. Letters and digits only: a label
/// with punctuation or symbols is refused.
fn a_labels(name: &str) -> Option<String> {
    if name.is_ascii() {
        return Some(name.to_string());
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_lowercase();
    let labels: Option<Vec<String>> = name
        .split('.')
        .map(|label| {
            if label.is_ascii() {
                Some(label.to_string())
            } else if label.chars().all(|c| c.is_alphanumeric() || c == '-') {
                punycode(label).map(|p| format!("xn--{p}"))
            } else {
                None
            }
        })
        .collect();
    Some(labels?.join("."))
}

/// Punycode (RFC 3492 6.3) of one label; `None` on overflow, which no label of
/// a valid length can reach.
fn punycode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    const T_MIN: u32 = 1;
    const T_MAX: u32 = 26;
    fn digit(d: u32) -> char {
        // 0..=25 are a..z, 26..=35 are 0..9.
        char::from(if d < 26 { b'a' + d as u8 } else { b'0' + (d - 26) as u8 })
    }
    fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
        delta /= if first { 700 } else { 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - T_MIN) * T_MAX) / 2 {
            delta /= BASE - T_MIN;
            k += BASE;
        }
        k + (BASE - T_MIN + 1) * delta / (delta + 38)
    }
    let points: Vec<u32> = input.chars().map(u32::from).collect();
    let mut out: String = input.chars().filter(char::is_ascii).collect();
    let basic = out.len() as u32;
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias, mut handled) = (0x80u32, 0u32, 72u32, basic);
    while (handled as usize) < points.len() {
        let m = points.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &points {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        T_MIN
                    } else if k >= bias + T_MAX {
                        T_MAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta += 1;
        n += 1;
    }
    Some(out)
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

/// Follows the CNAME records in `answers` from `name` to the name the chain ends at.
fn canonical_name(answers: &[Record], name: &str) -> Result<String, String> {
    let mut current = name.to_string();
    for _ in 0..=MAX_CNAME_HOPS {
        let target = answers.iter().find_map(|r| match &r.data {
            RData::Cname(target) if r.name == current => Some(target),
            _ => None,
        });
        match target {
            Some(target) => current.clone_from(target),
            None => return Ok(current),
        }
    }
    Err(format!("{name}: CNAME chain too long or looping"))
}

/// The addresses of family `ty` that `records` give for `owner`.
fn addresses(records: &[Record], owner: &str, ty: RrType) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| r.name == owner && r.data.rr_type() == Some(ty))
        .filter_map(|r| match r.data {
            RData::Addr(ip) => Some(ip),
            _ => None,
        })
        .collect()
}

/// A cheap random number: SipHash of the clock under the random keys std gives each
/// `RandomState`. Good enough for query ids and shuffling, not for secrets.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

// ---- Wire decoding: pure functions over the reply bytes. ----

/// Why reply bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WireError {
    /// The data ends before the structure does.
    Truncated,
    /// A label length byte with the reserved top bits 01 or 10.
    BadLabel,
    /// More compression pointers in one name than any real name needs.
    PointerLoop,
    /// A name longer than 255 octets.
    NameTooLong,
    /// RDATA of the wrong length for its type.
    BadRdata,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "it ends too early",
            WireError::BadLabel => "a name has a reserved label type",
            WireError::PointerLoop => "a name's compression pointers loop",
            WireError::NameTooLong => "a name is longer than 255 octets",
            WireError::BadRdata => "a record's data does not fit its type",
        })
    }
}

/// A decoded reply: the header fields we use and the records of interest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reply {
    id: u16,
    response: bool,
    opcode: u16,
    truncated: bool,
    rcode: u8,
    questions: Vec<(String, u16, u16)>,
    answers: Vec<Record>,
    additional: Vec<Record>,
}

/// One resource record of class IN; the owner name is lowercase, without a dot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    name: String,
    data: RData,
}

/// Record data, decoded for the types we use.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RData {
    Addr(IpAddr),
    Cname(String),
    Mx { preference: u16, exchange: String },
    Other,
}

impl RData {
    fn rr_type(&self) -> Option<RrType> {
        match self {
            RData::Addr(IpAddr::V4(_)) => Some(RrType::A),
            RData::Addr(IpAddr::V6(_)) => Some(RrType::Aaaa),
            RData::Mx { .. } => Some(RrType::Mx),
            _ => None,
        }
    }
}

fn be16(msg: &[u8], pos: usize) -> Result<u16, WireError> {
    match msg.get(pos..pos.saturating_add(2)) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(WireError::Truncated),
    }
}

/// Decodes a whole reply. A truncated reply (TC) yields its header only: the caller
/// asks again over TCP. Authority records are skipped; bytes after the last record
/// are ignored.
fn parse_reply(msg: &[u8]) -> Result<Reply, WireError> {
    let flags = be16(msg, 2)?;
    let count = |i: usize| be16(msg, 4 + 2 * i);
    let (qdcount, ancount, nscount, arcount) = (count(0)?, count(1)?, count(2)?, count(3)?);
    let mut reply = Reply {
        id: be16(msg, 0)?,
        response: flags & 0x8000 != 0,
        opcode: (flags >> 11) & 0xf,
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0xf) as u8,
        questions: Vec::new(),
        answers: Vec::new(),
        additional: Vec::new(),
    };
    if reply.truncated {
        return Ok(reply);
    }
    let mut pos = 12;
    for _ in 0..qdcount {
        let (name, next) = read_name(msg, pos)?;
        reply.questions.push((name, be16(msg, next)?, be16(msg, next + 2)?));
        pos = next + 4;
    }
    for section in [ancount, nscount, arcount].into_iter().enumerate() {
        for _ in 0..section.1 {
            let (record, next) = read_record(msg, pos)?;
            pos = next;
            match section.0 {
                0 => reply.answers.push(record),
                2 => reply.additional.push(record),
                _ => {}
            }
        }
    }
    Ok(reply)
}

/// Decodes `msg` as the resolver decodes a reply, then runs the pure steps that
/// follow (question check, CNAME chain, MX and address picking) for a query of
/// `name`. Returns every name it decoded, in message order, or why decoding
/// failed. Public only for the fuzz targets.
#[doc(hidden)]
pub fn decode_reply_names(msg: &[u8], name: &str) -> Result<Vec<String>, String> {
    let reply = parse_reply(msg).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = reply.questions.iter().map(|q| q.0.clone()).collect();
    for record in reply.answers.iter().chain(&reply.additional) {
        names.push(record.name.clone());
        match &record.data {
            RData::Cname(target) | RData::Mx { exchange: target, .. } => names.push(target.clone()),
            RData::Addr(_) | RData::Other => {}
        }
    }
    for ty in [RrType::A, RrType::Aaaa, RrType::Mx] {
        let _ = reply_matches(&reply, reply.id, name, ty);
        if let Ok(owner) = canonical_name(&reply.answers, name) {
            let _ = addresses(&reply.answers, &owner, ty);
            let _ = addresses(&reply.additional, &owner, ty);
        }
    }
    Ok(names)
}

/// Decodes the resource record at `pos`; returns it and the offset after it.
fn read_record(msg: &[u8], pos: usize) -> Result<(Record, usize), WireError> {
    let (name, next) = read_name(msg, pos)?;
    let (ty, class) = (be16(msg, next)?, be16(msg, next + 2)?);
    let start = next + 10;
    let end = start + usize::from(be16(msg, next + 8)?);
    let rdata = msg.get(start..end).ok_or(WireError::Truncated)?;
    let data = match (class, ty) {
        (CLASS_IN, TYPE_A | TYPE_AAAA) => RData::Addr(addr_rdata(ty, rdata)?),
        (CLASS_IN, TYPE_MX) => {
            let (preference, exchange) = mx_rdata(msg, start, end)?;
            RData::Mx { preference, exchange }
        }
        (CLASS_IN, TYPE_CNAME) => RData::Cname(name_rdata(msg, start, end)?),
        _ => RData::Other,
    };
    Ok((Record { name, data }, end))
}

/// A/AAAA RDATA: exactly 4 or 16 octets.
fn addr_rdata(ty: u16, rdata: &[u8]) -> Result<IpAddr, WireError> {
    match ty {
        TYPE_A => <[u8; 4]>::try_from(rdata).map(IpAddr::from).map_err(|_| WireError::BadRdata),
        TYPE_AAAA => <[u8; 16]>::try_from(rdata).map(IpAddr::from).map_err(|_| WireError::BadRdata),
        _ => Err(WireError::BadRdata),
    }
}

/// MX RDATA in `msg[start..end]`: preference, then the exchange, whose compression
/// pointers may lead anywhere in the message. Both must fill the RDATA exactly.
fn mx_rdata(msg: &[u8], start: usize, end: usize) -> Result<(u16, String), WireError> {
    if end < start + 2 {
        return Err(WireError::BadRdata);
    }
    Ok((be16(msg, start)?, name_rdata(msg, start + 2, end)?))
}

/// RDATA that is one name (CNAME), which must end exactly at `end`.
fn name_rdata(msg: &[u8], start: usize, end: usize) -> Result<String, WireError> {
    match read_name(msg, start)? {
        (name, after) if after == end => Ok(name),
        _ => Err(WireError::BadRdata),
    }
}

/// Reads the possibly compressed name at `pos`. Returns it lowercase and without the
/// final dot ("" for the root), and the offset just after it where it was found.
/// Octets other than letters, digits, `-` and `_` are written `\DDD`, so a strange
/// label can never pass for a host name.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut wire_len = 1;
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)?;
        match len >> 6 {
            0 if len == 0 => return Ok((name, after.unwrap_or(pos + 1))),
            0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len)).ok_or(WireError::Truncated)?;
                wire_len += 1 + label.len();
                if wire_len > 255 {
                    return Err(WireError::NameTooLong);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        name.push(char::from(b.to_ascii_lowercase()));
                    } else {
                        name.push('\\');
                        name.extend([b / 100, b / 10 % 10, b % 10].map(|d| char::from(b'0' + d)));
                    }
                }
                pos += 1 + label.len();
            }
            3 => {
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err(WireError::PointerLoop);
                }
                let target = be16(msg, pos)? & 0x3fff;
                after.get_or_insert(pos + 2);
                pos = usize::from(target);
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WireError::*;
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;
    use std::time::Instant;

    // ---- Pure decoders. ----

    #[test]
    fn read_name_follows_pointers_and_rejects_bad_names() {
        let long: Vec<u8> = (0..5).flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat()).chain([0]).collect();
        type Case<'a> = (&'a [u8], usize, Result<(&'a str, usize), WireError>);
        let cases: &[Case<'_>] = &[
            (b"\x03www\x07Example\x03COM\x00", 0, Ok(("www.example.com", 17))),
            (b"\x00", 0, Ok(("", 1))),
            (b"\x07example\x03com\x00\x03www\xc0\x00", 13, Ok(("www.example.com", 19))),
            (b"\x03com\x00\x07example\xc0\x00\x04mail\xc0\x05", 15, Ok(("mail.example.com", 22))),
            (b"\x03a.b\x00", 0, Ok(("a\\046b", 5))),
            (b"", 0, Err(Truncated)),
            (b"\x05ab", 0, Err(Truncated)),
            (b"\x03www", 0, Err(Truncated)),
            (b"\x03www\xc0", 0, Err(Truncated)),
            (b"\xc0\x10", 0, Err(Truncated)),
            (b"\xc0\x00", 0, Err(PointerLoop)),
            (b"\xc0\x02\xc0\x00", 0, Err(PointerLoop)),
            (b"\x03www\xc0\x00", 0, Err(PointerLoop)),
            (b"\x41abc\x00", 0, Err(BadLabel)),
            (b"\x81abc\x00", 0, Err(BadLabel)),
            (&long, 0, Err(NameTooLong)),
        ];
        for (i, (msg, pos, want)) in cases.iter().enumerate() {
            let got = read_name(msg, *pos);
            assert_eq!(got, want.map(|(name, after)| (name.to_string(), after)), "case {i}");
        }
    }

    #[test]
    fn mx_rdata_reads_preference_and_exchange() {
        type Case<'a> = (&'a [u8], usize, usize, Result<(u16, &'a str), WireError>);
        let cases: &[Case<'_>] = &[
            (b"\x00\x0a\x04mail\x07example\x03com\x00", 0, 20, Ok((10, "mail.example.com"))),
            (b"\x00\x00\x00", 0, 3, Ok((0, ""))),
            (b"\x07example\x03com\x00\x00\x14\x02mx\xc0\x00", 13, 20, Ok((20, "mx.example.com"))),
            (b"\x00", 0, 1, Err(BadRdata)),
            (b"\x00\x0a\x00\xff", 0, 4, Err(BadRdata)),
            (b"\x00\x0a\x03abc\x00", 0, 4, Err(BadRdata)),
            (b"\x00\x0a\x03ab", 0, 5, Err(Truncated)),
            (b"\x00\x0a\xc0\x02", 0, 4, Err(PointerLoop)),
        ];
        for (i, (msg, start, end, want)) in cases.iter().enumerate() {
            let got = mx_rdata(msg, *start, *end);
            assert_eq!(got, want.map(|(p, name)| (p, name.to_string())), "case {i}");
        }
    }

    #[test]
    fn addr_rdata_needs_the_exact_length() {
        assert_eq!(addr_rdata(TYPE_A, &[192, 0, 2, 1]), Ok(IpAddr::from([192, 0, 2, 1])));
        let v6 = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(addr_rdata(TYPE_AAAA, &v6), Ok("2001:db8::1".parse().unwrap()));
        assert_eq!(addr_rdata(TYPE_A, &v6), Err(BadRdata));
        assert_eq!(addr_rdata(TYPE_A, &[1, 2, 3]), Err(BadRdata));
        assert_eq!(addr_rdata(TYPE_AAAA, &[1, 2, 3, 4]), Err(BadRdata));
    }

    #[test]
    fn parse_reply_survives_cut_and_corrupted_replies() {
        let query = encode_query(7, "example.com", RrType::Mx).unwrap();
        let reply = respond(&query, true).remove(0);
        let parsed = parse_reply(&reply).unwrap();
        assert_eq!(parsed.answers.len(), 3);
        for len in 0..reply.len() {
            assert!(parse_reply(&reply[..len]).is_err(), "prefix of {len} octets");
        }
        for pos in 0..reply.len() {
            for byte in [0x00, 0x01, 0x3f, 0x40, 0xc0, 0xff] {
                let mut bad = reply.clone();
                bad[pos] = byte;
                let _ = parse_reply(&bad);
            }
        }
    }

    #[test]
    fn decode_reply_names_lists_every_name_read() {
        let query = encode_query(7, "example.com", RrType::Mx).unwrap();
        let reply = respond(&query, true).remove(0);
        let names = decode_reply_names(&reply, "example.com").unwrap();
        let want = [
            "example.com",
            "example.com",
            "mx3.example.com",
            "example.com",
            "mx1.example.com",
            "example.com",
            "mx2.example.com",
        ];
        assert_eq!(names, want);
        assert_eq!(decode_reply_names(&reply[..20], "example.com"), Err("it ends too early".to_string()));
    }

    #[test]
    fn reply_must_echo_our_id_and_question() {
        let query = encode_query(7, "example.com", RrType::Mx).unwrap();
        let reply = parse_reply(&respond(&query, true).remove(0)).unwrap();
        assert!(reply_matches(&reply, 7, "example.com", RrType::Mx));
        assert!(!reply_matches(&reply, 8, "example.com", RrType::Mx));
        assert!(!reply_matches(&reply, 7, "example.org", RrType::Mx));
        assert!(!reply_matches(&reply, 7, "example.com", RrType::A));
    }

    #[test]
    fn normalize_accepts_host_names_only() {
        let label63 = "a".repeat(63);
        let cases = [
            ("Example.COM.", Some("example.com")),
            ("_dmarc.example", Some("_dmarc.example")),
            ("xn--bcher-kva.example", Some("xn--bcher-kva.example")),
            (label63.as_str(), Some(label63.as_str())),
            (&format!("{label63}a"), None),
            ("bücher.example", None),
            ("a..b", None),
            ("", None),
            (".", None),
            ("ex ample.com", None),
            ("a\\046b", None),
        ];
        for (name, want) in cases {
            assert_eq!(normalize(name).as_deref(), want, "{name:?}");
        }
    }

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
            ("bü cher.test", None),
            ("bü_cher.test", None),
            ("bü☃.test", None),
            ("bü..test", None),
        ];
        for (name, want) in cases {
            assert_eq!(valid_name(name).ok().as_deref(), want, "{name:?}");
        }
        // RFC 3492 7.1 samples: (A) Arabic, (L) Japanese with ASCII, (S) ASCII only.
        let samples = [
            (
                "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}",
                "egbpdaj6bu4bxfgehfvwxn",
            ),
            ("3\u{5E74}B\u{7D44}\u{91D1}\u{516B}\u{5148}\u{751F}", "3B-ww4c5e180e575a65lsy2b"),
            ("-> $1.00 <-", "-> $1.00 <--"),
        ];
        for (input, want) in samples {
            assert_eq!(punycode(input).as_deref(), Some(want), "{input:?}");
        }
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

    // ---- A fake DNS server on 127.0.0.1, answering from `zone`. ----

    enum Data {
        Addr(&'static str),
        Mx(u16, &'static str),
        Cname(&'static str),
    }

    struct Rr(String, Data);

    /// Response code, answer and additional records for one question.
    fn zone(name: &str, ty: u16) -> (u8, Vec<Rr>, Vec<Rr>) {
        use Data::*;
        let rr = |owner: &str, data| Rr(owner.to_string(), data);
        let one = |data| (0, vec![rr(name, data)], vec![]);
        match (name, ty) {
            ("example.com", TYPE_MX) => (
                0,
                vec![
                    rr(name, Mx(20, "mx3.example.com")),
                    rr(name, Mx(10, "mx1.example.com")),
                    rr(name, Mx(10, "mx2.example.com")),
                ],
                vec![],
            ),
            ("mx1.example.com", TYPE_A) => one(Addr("192.0.2.1")),
            ("mx1.example.com", TYPE_AAAA) => one(Addr("2001:db8::1")),
            ("mx2.example.com", TYPE_A) => one(Addr("192.0.2.2")),
            ("mx3.example.com", TYPE_AAAA) => one(Addr("2001:db8::3")),
            ("dual.example", TYPE_A) => {
                (0, vec![rr(name, Addr("192.0.2.10")), rr(name, Addr("192.0.2.11"))], vec![])
            }
            ("dual.example", TYPE_AAAA) => {
                (0, vec![rr(name, Addr("2001:db8::10")), rr(name, Addr("2001:db8::11"))], vec![])
            }
            ("glue.example", TYPE_MX) => (
                0,
                vec![rr(name, Mx(10, "mx.glue.example"))],
                vec![rr("mx.glue.example", Addr("192.0.2.99"))],
            ),
            ("implicit.example", TYPE_A) => one(Addr("192.0.2.20")),
            ("nullmx.example", TYPE_MX) => one(Mx(0, "")),
            ("mxalias.example", TYPE_MX) => (
                0,
                vec![rr(name, Cname("example.com")), rr("example.com", Mx(10, "mx1.example.com"))],
                vec![],
            ),
            ("cname.example", TYPE_MX) => one(Mx(10, "alias.cname.example")),
            // The A answer holds the CNAME and its target's record; the AAAA one only the CNAME.
            ("alias.cname.example", TYPE_A) => (
                0,
                vec![rr(name, Cname("real.cname.example")), rr("real.cname.example", Addr("192.0.2.30"))],
                vec![],
            ),
            ("alias.cname.example", TYPE_AAAA) => one(Cname("real.cname.example")),
            ("real.cname.example", TYPE_A) => one(Addr("192.0.2.30")),
            ("real.cname.example", TYPE_AAAA) => one(Addr("2001:db8::30")),
            ("loop.example", _) => one(Cname("loop2.example")),
            ("loop2.example", _) => one(Cname("loop.example")),
            // A label of 41 octets that, escaped, no longer fits in a query.
            ("badmx.example", TYPE_MX) => {
                one(Mx(10, "a b c d e f g h i j k l m n o p q r s t u.badmx.example"))
            }
            ("tc.example", TYPE_MX) => one(Mx(10, "mx1.example.com")),
            ("spoof.example", TYPE_A) => one(Addr("192.0.2.40")),
            ("nxdomain.example", _) => (RCODE_NXDOMAIN, vec![], vec![]),
            ("servfail.example", _) => (RCODE_SERVFAIL, vec![], vec![]),
            _ => (0, vec![], vec![]),
        }
    }

    /// Writes `name`, compressed against the question name at offset 12 when it ends with it.
    fn put_name(out: &mut Vec<u8>, name: &str, qname: &str) {
        let prefix =
            if name == qname { Some("") } else { name.strip_suffix(qname).and_then(|p| p.strip_suffix('.')) };
        for label in prefix.unwrap_or(name).split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.extend_from_slice(if prefix.is_some() { &[0xc0, 12] } else { &[0] });
    }

    fn build(query: &[u8], qname: &str, rcode: u8, tc: bool, answers: &[Rr], additional: &[Rr]) -> Vec<u8> {
        let flags = 0x8180 | if tc { 0x0200 } else { 0 } | u16::from(rcode);
        let mut out = query[..2].to_vec();
        out.extend(flags.to_be_bytes());
        for count in [1, answers.len(), 0, additional.len()] {
            out.extend((count as u16).to_be_bytes());
        }
        out.extend(&query[12..]);
        for Rr(owner, data) in answers.iter().chain(additional) {
            put_name(&mut out, owner, qname);
            let mut rdata = Vec::new();
            let ty = match data {
                Data::Addr(ip) => match ip.parse::<IpAddr>().unwrap() {
                    IpAddr::V4(ip) => (rdata.extend(ip.octets()), TYPE_A).1,
                    IpAddr::V6(ip) => (rdata.extend(ip.octets()), TYPE_AAAA).1,
                },
                Data::Mx(preference, exchange) => {
                    rdata.extend(preference.to_be_bytes());
                    put_name(&mut rdata, exchange, qname);
                    TYPE_MX
                }
                Data::Cname(target) => (put_name(&mut rdata, target, qname), TYPE_CNAME).1,
            };
            out.extend(ty.to_be_bytes());
            out.extend(CLASS_IN.to_be_bytes());
            out.extend(300u32.to_be_bytes());
            out.extend((rdata.len() as u16).to_be_bytes());
            out.extend(rdata);
        }
        out
    }

    /// The replies to send for `query`, decoded with dns-protocol as a check on our encoder.
    fn respond(query: &[u8], over_tcp: bool) -> Vec<Vec<u8>> {
        let mut questions = [Question::default()];
        let message = Message::read(query, &mut questions, &mut [], &mut [], &mut []).unwrap();
        assert!(message.flags().recursive(), "queries ask for recursion");
        let question = message.questions()[0];
        let qname = question.name().to_string();
        let (rcode, answers, additional) = zone(&qname, u16::from(question.ty()));
        if qname == "tc.example" && !over_tcp {
            return vec![build(query, &qname, rcode, true, &[], &[])];
        }
        let reply = build(query, &qname, rcode, false, &answers, &additional);
        if qname == "spoof.example" {
            let mut forged =
                build(query, &qname, 0, false, &[Rr(qname.clone(), Data::Addr("192.0.2.66"))], &[]);
            forged[1] ^= 1;
            return vec![forged, reply];
        }
        vec![reply]
    }

    struct FakeDns {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        threads: Vec<JoinHandle<()>>,
    }

    impl FakeDns {
        fn start() -> FakeDns {
            // UDP and TCP share one port number; try again if TCP's is taken.
            let (udp, tcp) = (0..20)
                .find_map(|_| {
                    let udp = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
                    let tcp = std::net::TcpListener::bind(udp.local_addr().ok()?).ok()?;
                    Some((udp, tcp))
                })
                .expect("a port free for UDP and TCP");
            let addr = udp.local_addr().unwrap();
            udp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let udp_stop = stop.clone();
            let udp_thread = std::thread::spawn(move || {
                let mut buf = [0; 512];
                while let Ok((len, from)) = udp.recv_from(&mut buf) {
                    if udp_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    for reply in respond(&buf[..len], false) {
                        let _ = udp.send_to(&reply, from);
                    }
                }
            });
            let tcp_stop = stop.clone();
            let tcp_thread = std::thread::spawn(move || {
                for stream in tcp.incoming() {
                    let Ok(mut stream) = stream else { break };
                    if tcp_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut len = [0; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut query = vec![0; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).is_err() {
                        continue;
                    }
                    for reply in respond(&query, true) {
                        let _ = stream.write_all(&[&(reply.len() as u16).to_be_bytes()[..], &reply].concat());
                    }
                }
            });
            FakeDns { addr, stop, threads: vec![udp_thread, tcp_thread] }
        }

        fn resolver(&self, prefer: Prefer) -> Resolver {
            Resolver::new(vec![self.addr], prefer).with_timeout(Duration::from_secs(5), 1)
        }
    }

    impl Drop for FakeDns {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"stop", self.addr));
            let _ = std::net::TcpStream::connect(self.addr);
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
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
    fn permanent_failures() {
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
}
