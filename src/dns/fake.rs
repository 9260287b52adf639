//! A fake DNS server on 127.0.0.1 for the unit tests, answering from `zone`
//! over UDP and TCP, and the reply builder the decoder's tests use. It reads
//! queries with `dns-protocol`, as a check on the queries we write.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use dns_protocol::{Message, Question};

use super::wire::{
    CLASS_IN, RCODE_NXDOMAIN, RCODE_SERVFAIL, RrType, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_MX, TYPE_PTR,
    TYPE_TXT, encode_query,
};
use super::{Prefer, Resolver};

pub enum Data {
    Addr(&'static str),
    Mx(u16, &'static str),
    Cname(&'static str),
    Ptr(&'static str),
    /// The character-strings of one TXT record.
    Txt(&'static [&'static [u8]]),
}

pub struct Rr(pub String, pub Data);

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
        ("example.com", TYPE_TXT) => (
            0,
            vec![rr(name, Txt(&[b"v=spf1 ", b"ip4:192.0.2.0/24", b" -all"])), rr(name, Txt(&[b"hello"]))],
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
        ("glue.example", TYPE_MX) => {
            (0, vec![rr(name, Mx(10, "mx.glue.example"))], vec![rr("mx.glue.example", Addr("192.0.2.99"))])
        }
        ("implicit.example", TYPE_A) => one(Addr("192.0.2.20")),
        ("nullmx.example", TYPE_MX) => one(Mx(0, "")),
        ("mxalias.example", TYPE_MX) => {
            (0, vec![rr(name, Cname("example.com")), rr("example.com", Mx(10, "mx1.example.com"))], vec![])
        }
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
        ("badmx.example", TYPE_MX) => one(Mx(10, "a b c d e f g h i j k l m n o p q r s t u.badmx.example")),
        ("tc.example", TYPE_MX) => one(Mx(10, "mx1.example.com")),
        ("tc.example", TYPE_TXT) => one(Txt(&[b"over tcp"])),
        ("spoof.example", TYPE_A) => one(Addr("192.0.2.40")),
        ("otherq.example", TYPE_A) => one(Addr("192.0.2.50")),
        ("_dmarc.example.com", TYPE_TXT) => one(Txt(&[b"v=DMARC1; p=reject"])),
        // Octets that are not UTF-8, and a record of no strings at all.
        ("bytes.example", TYPE_TXT) => {
            (0, vec![rr(name, Txt(&[b"\xff\x00a", b""])), rr(name, Txt(&[]))], vec![])
        }
        // The TXT answer holds the CNAME and its target's records, and an A record.
        ("txtalias.example", TYPE_TXT) => (
            0,
            vec![
                rr(name, Cname("_dmarc.example.com")),
                rr("_dmarc.example.com", Txt(&[b"v=DMARC1; p=none"])),
                rr("_dmarc.example.com", Addr("192.0.2.1")),
            ],
            vec![],
        ),
        ("1.2.0.192.in-addr.arpa", TYPE_PTR) => one(Ptr("mx1.example.com")),
        ("2.2.0.192.in-addr.arpa", TYPE_PTR) => {
            (0, vec![rr(name, Ptr("mx2.example.com")), rr(name, Ptr("alias.example.com"))], vec![])
        }
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", TYPE_PTR) => {
            one(Ptr("mx1.example.com"))
        }
        ("nxdomain.example" | "9.2.0.192.in-addr.arpa", _) => (RCODE_NXDOMAIN, vec![], vec![]),
        ("servfail.example" | "8.2.0.192.in-addr.arpa", _) => (RCODE_SERVFAIL, vec![], vec![]),
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

/// A reply to `query` (its id and question copied) with these records.
pub fn build(query: &[u8], qname: &str, rcode: u8, tc: bool, answers: &[Rr], additional: &[Rr]) -> Vec<u8> {
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
            Data::Ptr(target) => (put_name(&mut rdata, target, qname), TYPE_PTR).1,
            Data::Txt(strings) => {
                for s in strings.iter() {
                    rdata.push(s.len() as u8);
                    rdata.extend_from_slice(s);
                }
                TYPE_TXT
            }
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
pub fn respond(query: &[u8], over_tcp: bool) -> Vec<Vec<u8>> {
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
        let mut forged = build(query, &qname, 0, false, &[Rr(qname.clone(), Data::Addr("192.0.2.66"))], &[]);
        forged[1] ^= 1;
        return vec![forged, reply];
    }
    if qname == "otherq.example" {
        // Our id, but the answer to another question.
        let mut other = encode_query(0, "other.example", RrType::A).unwrap();
        other[..2].copy_from_slice(&query[..2]);
        let forged = build(
            &other,
            "other.example",
            0,
            false,
            &[Rr("other.example".into(), Data::Addr("192.0.2.66"))],
            &[],
        );
        return vec![forged, reply];
    }
    vec![reply]
}

pub struct FakeDns {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    pub fn start() -> FakeDns {
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

    pub fn resolver(&self, prefer: Prefer) -> Resolver {
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

pub fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}
