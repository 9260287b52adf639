//! Address, domain and path parsing: never a panic, and whatever is accepted
//! is stored in a form that prints and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::envelope::{Address, Domain, Path, parse_path};

fn check_domain(d: &Domain) {
    let s = d.as_str();
    assert!(!s.is_empty() && s.len() <= 255, "domain of {} octets", s.len());
    assert_eq!(s.to_lowercase(), s, "domain not stored lowercased");
    assert!(!s.ends_with('.'), "domain stored with its trailing dot");
    assert_eq!(Domain::parse(s).as_ref(), Ok(d), "domain {s:?} does not read back");
    assert_eq!(d.to_string(), s);
}

fn check_address(a: &Address) {
    assert!(!a.local().is_empty() && a.local().len() <= 64, "local part of {} octets", a.local().len());
    check_domain(a.domain());
    let printed = a.to_string();
    assert_eq!(Address::parse(&printed).as_ref(), Ok(a), "{a:?} printed as {printed:?}");
    assert_eq!(parse_path(&format!("<{printed}>")), Ok(Path::Mailbox(a.clone())), "{printed:?} as a path");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = Domain::parse(s) {
        check_domain(&d);
    }
    if let Ok(a) = Address::parse(s) {
        check_address(&a);
    }
    match parse_path(s) {
        Ok(Path::Mailbox(a)) => check_address(&a),
        Ok(Path::Bare(local)) => {
            assert!(!local.is_empty() && local.len() <= 64);
            assert!(!local.contains('@') || s.contains('"'), "unquoted @ in a bare local part");
        }
        Ok(Path::Null) => assert!(s == "<>"),
        Err(_) => {}
    }
    // The same text in angle brackets is a path exactly when it is an address
    // or a bare local part.
    if let Ok(a) = Address::parse(s) {
        assert_eq!(parse_path(&format!("<{s}>")), Ok(Path::Mailbox(a)));
    }
});
