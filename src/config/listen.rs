//! The readers of `[listen]`, `[tls]` and `[relay]`: where the server listens,
//! which certificate it shows, and whom it lets relay without a login.

use std::net::SocketAddr;
use std::ops::Range;

use super::ConfigError;
use super::net::IpNet;
use super::reader::{Reader, Section};
use super::sections::{Listen, Relay, Tls};

const LISTEN_KEYS: &[&str] = &["mx", "submission", "submissions", "imap", "imaps"];
const TLS_KEYS: &[&str] = &["cert", "key"];
const RELAY_KEYS: &[&str] = &["trusted_networks"];

/// A listener that was configured, or defaulted, for the overlap check.
struct Bound {
    addr: SocketAddr,
    path: String,
    span: Option<Range<usize>>,
}

pub(super) fn read_listen(r: &Reader<'_>, root: &Section<'_>) -> Result<Listen, ConfigError> {
    let section = match root.get("listen") {
        Some(item) => Some(r.section(&item, LISTEN_KEYS)?),
        None => None,
    };
    let mut bound = Vec::new();
    let (s, d) = (section.as_ref(), Listen::default());
    let mx = listen_list(r, s, "mx", d.mx, &mut bound)?;
    let submission = listen_list(r, s, "submission", d.submission, &mut bound)?;
    let submissions = listen_list(r, s, "submissions", d.submissions, &mut bound)?;
    let imap = listen_list(r, s, "imap", d.imap, &mut bound)?;
    let imaps = listen_list(r, s, "imaps", d.imaps, &mut bound)?;

    // Two listeners on one port would fail at bind time, far from the config line.
    // Port 0 asks the kernel for a fresh port each time, so it never clashes.
    for (i, b) in bound.iter().enumerate() {
        let Some(a) = bound[..i].iter().find(|a| listeners_overlap(a.addr, b.addr)) else {
            continue;
        };
        let problem = if a.addr == b.addr {
            format!("{} is listed twice: as {} and as {}", b.addr, a.path, b.path)
        } else {
            format!(
                "{} overlaps {} ({}): a wildcard address already takes that port on every address",
                b.addr, a.addr, a.path
            )
        };
        let (span, key) =
            if b.span.is_some() { (b.span.clone(), &b.path) } else { (a.span.clone(), &a.path) };
        return Err(r.error(span, key, problem));
    }
    Ok(Listen { mx, submission, submissions, imap, imaps })
}

fn listen_list(
    r: &Reader<'_>,
    section: Option<&Section<'_>>,
    name: &str,
    default: Vec<SocketAddr>,
    bound: &mut Vec<Bound>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(item) = section.and_then(|s| s.get(name)) else {
        let path = format!("listen.{name} (default)");
        bound.extend(default.iter().map(|&addr| Bound { addr, path: path.clone(), span: None }));
        return Ok(default);
    };
    let mut addrs = Vec::new();
    for element in r.array(&item)? {
        let addr = r.parsed(&element, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("`{s}` is not an IP address and port like \"0.0.0.0:25\" or \"[::]:25\" (host names are not allowed here)"))
        })?;
        bound.push(Bound { addr, path: element.path.clone(), span: Some(element.value.span()) });
        addrs.push(addr);
    }
    Ok(addrs)
}

fn listeners_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

pub(super) fn read_tls(r: &Reader<'_>, root: &Section<'_>) -> Result<Tls, ConfigError> {
    let Some(item) = root.get("tls") else {
        return Ok(Tls::default());
    };
    let section = r.section(&item, TLS_KEYS)?;
    let cert = section.get("cert");
    let key = section.get("key");
    match (&cert, &key) {
        (Some(cert), Some(key)) => Ok(Tls { cert: Some(r.path(cert)?), key: Some(r.path(key)?) }),
        (None, None) => Ok(Tls::default()),
        (Some(given), None) | (None, Some(given)) => {
            let (present, absent) = if cert.is_some() { ("cert", "key") } else { ("key", "cert") };
            Err(r.error(
                Some(given.value.span()),
                &format!("tls.{absent}"),
                format!("tls.{present} is set but tls.{absent} is missing; give both, or neither to use a self-signed certificate"),
            ))
        }
    }
}

pub(super) fn read_relay(r: &Reader<'_>, root: &Section<'_>) -> Result<Relay, ConfigError> {
    let Some(item) = root.get("relay") else {
        return Ok(Relay::default());
    };
    let Some(list) = r.section(&item, RELAY_KEYS)?.get("trusted_networks") else {
        return Ok(Relay::default());
    };
    let mut trusted_networks = Vec::new();
    for element in r.array(&list)? {
        trusted_networks.push(r.parsed(&element, |s| s.parse::<IpNet>())?);
    }
    Ok(Relay { trusted_networks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_overlap_on_one_port_and_family_unless_port_zero() {
        let cases: &[(&str, &str, bool)] = &[
            ("0.0.0.0:25", "0.0.0.0:25", true),
            ("0.0.0.0:25", "127.0.0.1:25", true),
            ("127.0.0.1:25", "0.0.0.0:25", true),
            ("127.0.0.1:25", "127.0.0.2:25", false),
            ("0.0.0.0:25", "0.0.0.0:587", false),
            // IPv4 and IPv6 wildcards may be listed side by side.
            ("0.0.0.0:25", "[::]:25", false),
            ("[::]:25", "[::1]:25", true),
            // Port 0: the kernel picks a fresh port each time.
            ("127.0.0.1:0", "127.0.0.1:0", false),
        ];
        for (a, b, want) in cases {
            let (a, b): (SocketAddr, SocketAddr) =
                (a.parse().expect("test address"), b.parse().expect("test address"));
            assert_eq!(listeners_overlap(a, b), *want, "{a} and {b}");
        }
    }
}
