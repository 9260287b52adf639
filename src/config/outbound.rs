//! The reader of `[outbound]` and its `[outbound.domains."…"]` tables: MX
//! delivery or smarthosts, the resolver's settings and the client's limits.

use std::net::{IpAddr, SocketAddr};

use super::ConfigError;
use super::names::dns_name;
use super::reader::{Reader, Section};
use super::sections::{Outbound, Smarthost, SmarthostTls};
use crate::dns::Prefer;

const OUTBOUND_KEYS: &[&str] = &[
    "relay",
    "tls",
    "username",
    "password_file",
    "domains",
    "nameservers",
    "prefer",
    "mx_port",
    "ca_file",
    "max_concurrent",
    "connect_timeout",
    "command_timeout",
    "data_timeout",
];
const SMARTHOST_KEYS: &[&str] = &["relay", "tls", "username", "password_file"];

pub(super) fn read_outbound(r: &Reader<'_>, root: &Section<'_>) -> Result<Outbound, ConfigError> {
    let mut out = Outbound::default();
    let Some(item) = root.get("outbound") else {
        return Ok(out);
    };
    let s = r.section(&item, OUTBOUND_KEYS)?;
    out.relay = read_smarthost(r, &s)?;
    if out.relay.is_none() {
        for key in ["tls", "username", "password_file"] {
            if let Some(item) = s.get(key) {
                return Err(r.at_key(&item, format!("`{key}` needs `relay`, the smarthost it is for")));
            }
        }
    }
    if let Some(item) = s.get("domains") {
        for (domain, item) in r.table(&item)?.entries() {
            let name = dns_name(domain).map_err(|problem| r.at_key(&item, problem))?;
            let section = r.section(&item, SMARTHOST_KEYS)?;
            match read_smarthost(r, &section)? {
                Some(host) => out.domains.push((name, host)),
                None => return Err(r.at(&item, "needs `relay = \"host:port\"`")),
            }
        }
    }
    if let Some(item) = s.get("nameservers") {
        for element in r.array(&item)? {
            out.nameservers.push(r.parsed(&element, |s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| format!("`{s}` is not an IP address (optionally with :port)"))
            })?);
        }
    }
    r.set(&s, "prefer", &mut out.prefer, |r, item| r.parsed(item, prefer))?;
    r.set(&s, "mx_port", &mut out.mx_port, Reader::count)?;
    if let Some(item) = s.get("ca_file") {
        out.ca_file = Some(r.path(&item)?);
    }
    r.set(&s, "max_concurrent", &mut out.max_concurrent, Reader::count)?;
    r.set(&s, "connect_timeout", &mut out.connect_timeout, Reader::duration)?;
    r.set(&s, "command_timeout", &mut out.command_timeout, Reader::duration)?;
    r.set(&s, "data_timeout", &mut out.data_timeout, Reader::duration)?;
    Ok(out)
}

/// `relay`, `tls`, `username` and `password_file` of a section, if it has `relay`.
fn read_smarthost(r: &Reader<'_>, s: &Section<'_>) -> Result<Option<Smarthost>, ConfigError> {
    let Some(item) = s.get("relay") else {
        return Ok(None);
    };
    let (host, port) = r.parsed(&item, |v| {
        let (host, port) = v
            .rsplit_once(':')
            .ok_or_else(|| format!("`{v}` needs a port, like \"smtp.provider.net:465\""))?;
        let port: u16 = port.parse().map_err(|_| format!("`{port}` is not a port number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_err() {
            dns_name(host)?;
        }
        Ok((host.to_lowercase(), port))
    })?;
    let tls = match s.get("tls") {
        Some(item) => r.parsed(&item, |v| match v {
            "implicit" => Ok(SmarthostTls::Implicit),
            "starttls" => Ok(SmarthostTls::StartTls),
            _ => Err(format!(
                "`{v}` is not \"implicit\" (port 465) or \"starttls\" (port 587); plaintext is not offered"
            )),
        })?,
        None if port == 465 => SmarthostTls::Implicit,
        None => SmarthostTls::StartTls,
    };
    let username = match s.get("username") {
        Some(item) => Some(r.string(&item)?.to_string()),
        None => None,
    };
    let password_file = match s.get("password_file") {
        Some(item) => Some(r.path(&item)?),
        None => None,
    };
    match (&username, &password_file) {
        (Some(_), None) => return Err(r.at(&item, "`username` is set but `password_file` is not")),
        (None, Some(_)) => return Err(r.at(&item, "`password_file` is set but `username` is not")),
        _ => {}
    }
    Ok(Some(Smarthost { host, port, tls, username, password_file }))
}

/// `[outbound] prefer`: which address family to try first.
fn prefer(s: &str) -> Result<Prefer, String> {
    match s {
        "ipv4" => Ok(Prefer::Ipv4),
        "ipv6" => Ok(Prefer::Ipv6),
        "any" => Ok(Prefer::Any),
        _ => Err(format!("`{s}` is not one of \"ipv4\", \"ipv6\", \"any\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_takes_the_three_families_in_lowercase_only() {
        let cases: &[(&str, Option<Prefer>)] = &[
            ("ipv4", Some(Prefer::Ipv4)),
            ("ipv6", Some(Prefer::Ipv6)),
            ("any", Some(Prefer::Any)),
            ("IPv6", None),
            ("ipv5", None),
            ("both", None),
            ("", None),
            (" ipv4", None),
        ];
        for (input, want) in cases {
            assert_eq!(prefer(input).ok(), *want, "prefer({input:?})");
        }
        let err = prefer("ipv5").expect_err("not a family");
        assert_eq!(err, "`ipv5` is not one of \"ipv4\", \"ipv6\", \"any\"");
    }
}
