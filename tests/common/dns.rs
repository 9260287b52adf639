//! A throwaway DNS server on 127.0.0.1 for the tests: answers MX, A, TXT and
//! PTR queries from a table, over UDP.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the server says about one name.
#[derive(Clone, Debug, Default)]
pub struct Zone {
    /// (preference, exchange); `(0, ".")` alone is a null MX.
    pub mx: Vec<(u16, String)>,
    /// A records.
    pub a: Vec<Ipv4Addr>,
    /// TXT records, each given as its character-strings (at most 255 octets each).
    pub txt: Vec<Vec<Vec<u8>>>,
    /// PTR records: the names a reverse name points to.
    pub ptr: Vec<String>,
    /// Answer NXDOMAIN for this name.
    pub nxdomain: bool,
    /// Answer SERVFAIL for this name.
    pub servfail: bool,
}

/// The running server; stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    zones: Arc<Mutex<HashMap<String, Zone>>>,
    stop: Arc<AtomicBool>,
}

impl Dns {
    pub fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let zones: Arc<Mutex<HashMap<String, Zone>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (z, s) = (Arc::clone(&zones), Arc::clone(&stop));
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
                if let Some(reply) = answer(&buf[..n], &z.lock().unwrap()) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        Dns { addr, zones, stop }
    }

    /// Sets what `name` resolves to.
    pub fn set(&self, name: &str, zone: Zone) {
        self.zones.lock().unwrap().insert(name.to_lowercase(), zone);
    }

    /// `name` has one MX, `host`, which has the address `ip`.
    pub fn mx(&self, name: &str, host: &str, ip: Ipv4Addr) {
        self.set(name, Zone { mx: vec![(10, host.into())], ..Zone::default() });
        self.set(host, Zone { a: vec![ip], ..Zone::default() });
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(query: &[u8], zones: &HashMap<String, Zone>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = &query[12..i + 4];
    let name = labels.join(".");
    let zone = zones.get(&name);
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut rcode = 0u8;
    match zone {
        None => rcode = 3,
        Some(z) if z.nxdomain => rcode = 3,
        Some(z) if z.servfail => rcode = 2,
        Some(z) => {
            if qtype == 15 {
                for (pref, host) in &z.mx {
                    let mut rdata = pref.to_be_bytes().to_vec();
                    rdata.extend(encode_name(host));
                    answers.push(record(15, &rdata));
                }
            } else if qtype == 1 {
                for ip in &z.a {
                    answers.push(record(1, &ip.octets()));
                }
            } else if qtype == 16 {
                for strings in &z.txt {
                    let mut rdata = Vec::new();
                    for s in strings {
                        rdata.push(s.len() as u8);
                        rdata.extend_from_slice(s);
                    }
                    answers.push(record(16, &rdata));
                }
            } else if qtype == 12 {
                for name in &z.ptr {
                    answers.push(record(12, &encode_name(name)));
                }
            }
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]); // id
    out.push(0x81 | (query[2] & 0x01)); // QR, AA... keep RD
    out.push(0x80 | rcode); // RA + rcode
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for a in answers {
        out.extend(a);
    }
    Some(out)
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// An answer record for the question's name (a pointer to offset 12).
fn record(rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut r = vec![0xC0, 12];
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&60u32.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}
