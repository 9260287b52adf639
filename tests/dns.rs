//! The resolver's TXT and PTR lookups against the tests' own DNS server
//! (tests/common/dns.rs) over real UDP sockets: records as published, and
//! NXDOMAIN, no data, SERVFAIL and silence told apart.

mod common;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::dns::{Dns, Zone};
use postern::dns::{Answer, DnsError, Prefer, Resolver};

fn resolver(dns: &Dns) -> Resolver {
    Resolver::new(vec![dns.addr], Prefer::Ipv4).with_timeout(Duration::from_secs(5), 1)
}

fn strings(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.to_vec()).collect()
}

#[test]
fn txt_records_arrive_joined_and_as_octets() {
    let dns = Dns::start();
    let spf = strings(&[b"v=spf1 ip4:192.0.2.0/24 ", b"include:_spf.example.test ", b"-all"]);
    let long = vec![vec![b'k'; 255], vec![b'e'; 255], b"y".to_vec()];
    let odd = strings(&[b"\xff\xfe not UTF-8", b""]);
    dns.set(
        "example.test",
        Zone { txt: vec![spf, long, odd], a: vec![Ipv4Addr::new(192, 0, 2, 1)], ..Zone::default() },
    );
    dns.set(
        "_dmarc.xn--bcher-kva.test",
        Zone { txt: vec![strings(&[b"v=DMARC1; p=reject"])], ..Zone::default() },
    );
    let resolver = resolver(&dns);

    let mut long_text = vec![b'k'; 255];
    long_text.extend([b'e'; 255]);
    long_text.push(b'y');
    let want = Answer::Records(vec![
        b"v=spf1 ip4:192.0.2.0/24 include:_spf.example.test -all".to_vec(),
        long_text,
        b"\xff\xfe not UTF-8".to_vec(),
    ]);
    assert_eq!(smol::block_on(resolver.txt("Example.TEST.")), Ok(want));
    // A Unicode domain's DMARC record, asked for under its A-label.
    assert_eq!(
        smol::block_on(resolver.txt("_dmarc.bücher.test")),
        Ok(Answer::Records(vec![b"v=DMARC1; p=reject".to_vec()]))
    );
}

#[test]
fn txt_lookups_tell_nxdomain_from_no_data_from_failure() {
    let dns = Dns::start();
    dns.set("mail.example.test", Zone { a: vec![Ipv4Addr::new(192, 0, 2, 1)], ..Zone::default() });
    dns.set("gone.example.test", Zone { nxdomain: true, ..Zone::default() });
    dns.set("broken.example.test", Zone { servfail: true, ..Zone::default() });
    let resolver = resolver(&dns);
    let txt = |name| smol::block_on(resolver.txt(name));

    assert_eq!(txt("mail.example.test"), Ok(Answer::NoData));
    assert_eq!(txt("gone.example.test"), Ok(Answer::NoSuchDomain));
    assert_eq!(txt("unknown.example.test"), Ok(Answer::NoSuchDomain));
    let err = txt("broken.example.test").unwrap_err();
    assert!(matches!(&err, DnsError::Temporary(e) if e.contains("SERVFAIL")), "{err}");
    assert!(matches!(txt("bad..name.test"), Err(DnsError::NoSuchDomain(_))));

    // A nameserver that never answers: temporary, and said to be a timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = Resolver::new(vec![silent.local_addr().unwrap()], Prefer::Ipv4)
        .with_timeout(Duration::from_millis(300), 1);
    let err = smol::block_on(resolver.txt("mail.example.test")).unwrap_err();
    assert!(matches!(&err, DnsError::Temporary(e) if e.contains("no reply within 300 ms")), "{err}");
}

#[test]
fn ptr_lookups_give_the_names_an_address_points_to() {
    let dns = Dns::start();
    dns.set("25.2.0.192.in-addr.arpa", Zone { ptr: vec!["Mail.Example.TEST.".into()], ..Zone::default() });
    let v6 = "5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
    dns.set(v6, Zone { ptr: vec!["a.example.test".into(), "b.example.test".into()], ..Zone::default() });
    dns.set("26.2.0.192.in-addr.arpa", Zone::default());
    dns.set("27.2.0.192.in-addr.arpa", Zone { servfail: true, ..Zone::default() });
    let resolver = resolver(&dns);
    let ptr = |ip: &str| smol::block_on(resolver.ptr(ip.parse::<IpAddr>().unwrap()));
    let names = |list: &[&str]| Ok(Answer::Records(list.iter().map(|s| s.to_string()).collect()));

    assert_eq!(ptr("192.0.2.25"), names(&["mail.example.test"]));
    assert_eq!(ptr("::ffff:192.0.2.25"), names(&["mail.example.test"]));
    assert_eq!(ptr("2001:db8::25"), names(&["a.example.test", "b.example.test"]));
    assert_eq!(ptr("192.0.2.26"), Ok(Answer::NoData));
    assert_eq!(ptr("192.0.2.99"), Ok(Answer::NoSuchDomain));
    assert!(matches!(ptr("192.0.2.27"), Err(DnsError::Temporary(e)) if e.contains("SERVFAIL")));
}
