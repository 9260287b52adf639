//! The resolver's I/O: one question asked of the configured nameservers in
//! turn, over UDP and over TCP when the reply comes back truncated, each
//! exchange raced against the timeout, the rounds repeated as configured. The
//! query id comes from the operating system's random source. Nothing is
//! cached; the bytes are written and read by `wire`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use async_net::{TcpStream, UdpSocket};
use ring::rand::{SecureRandom, SystemRandom};
use smol::Timer;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::Resolver;
use super::wire::{self, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL, Reply, RrType};
use crate::logtext::{quoted, word};

/// Without EDNS a server sends at most 512 octets over UDP; read a little more.
const UDP_BUFFER: usize = 4096;

impl Resolver {
    /// One question, asked of each nameserver in turn until one gives a definite
    /// answer: `Some` for NOERROR, `None` for NXDOMAIN.
    pub(super) async fn query(&self, name: &str, ty: RrType) -> Result<Option<Reply>, String> {
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
        let id = query_id()?;
        let query = wire::encode_query(id, name, ty)?;
        let matches = |reply: &Reply| reply.is_answer_to(id, name, ty);
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

/// Sends `query` over UDP and waits for its reply. Datagrams with another id,
/// and replies with our id to another question, are ignored (late or forged
/// answers): the wait goes on for the real one until the timeout. A datagram
/// with our id that cannot be decoded is an error.
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
        if wire::be16(bytes, 0) != Ok(id) {
            log::debug!("DNS reply from {server} with a wrong id ignored");
            continue;
        }
        let reply = Reply::parse(bytes).map_err(|e| format!("malformed reply: {e}"))?;
        if !matches(&reply) {
            log::debug!("DNS reply from {server} to another question ignored");
            continue;
        }
        return Ok(reply);
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
    let reply = Reply::parse(&buf).map_err(|e| format!("malformed reply over TCP: {e}"))?;
    if !matches(&reply) || reply.truncated {
        return Err("TCP reply does not match the question".into());
    }
    Ok(reply)
}

/// A query id from the operating system's random source (getrandom(2), through
/// `ring`): the id and the random source port are all that stop an off-path
/// attacker's forged answer (RFC 5452 9.2), so neither may be guessable.
fn query_id() -> Result<u16, String> {
    random_bytes().map(u16::from_be_bytes)
}

/// A random number from the operating system, for shuffling MX hosts of equal
/// preference; 0 (no shuffle) in the unlikely case it cannot give one, since a
/// query has just used the same source.
pub(super) fn shuffle_key() -> u64 {
    random_bytes().map(u64::from_be_bytes).unwrap_or_default()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system's random source gave no random bytes".to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn query_ids_are_spread_over_all_sixteen_bits() {
        let ids: Vec<u16> = (0..200).map(|_| query_id().unwrap()).collect();
        let distinct: HashSet<u16> = ids.iter().copied().collect();
        // 200 draws from 65536 values repeat one now and then (0.3 pairs on
        // average); a constant, or a counter, fails one of these.
        assert!(distinct.len() >= 190, "{} distinct ids in 200", distinct.len());
        assert!(ids.iter().any(|id| id >> 8 != 0) && ids.iter().any(|id| id & 0xff != 0));
    }
}
