//! Domain names from outside (an SMTPUTF8 envelope, a reply, the config): the
//! one check never panics; a name it passes for DNS is ASCII, at most 253
//! octets in labels of 1 to 63, each label as given (lowercased) or, when it
//! was not ASCII, `xn--` and Punycode that decodes back to it; the Punycode
//! encoder round-trips on any text; the kinds nest as documented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::domain_name::{Kind, check, punycode};

mod punycode_decode;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(p) = punycode::encode(s) {
        assert!(p.is_ascii(), "punycode {p:?} of {s:?} is not ASCII");
        assert_eq!(punycode_decode::decode(&p).as_deref(), Some(s), "punycode {p:?} of {s:?}");
    }

    let lookup = check(s, Kind::Lookup);
    if let Ok(out) = &lookup {
        assert!(out.is_ascii(), "{out:?} from {s:?} is not ASCII");
        assert!(out.len() <= 253, "{} octets from {s:?}", out.len());
        let given = s.strip_suffix('.').unwrap_or(s);
        let lower = given.to_lowercase();
        let (given, lower, out): (Vec<&str>, Vec<&str>, Vec<&str>) =
            (given.split('.').collect(), lower.split('.').collect(), out.split('.').collect());
        assert_eq!(out.len(), given.len(), "{out:?} from {s:?} has another number of labels");
        for ((given, lower), out) in given.iter().zip(&lower).zip(&out) {
            assert!((1..=63).contains(&out.len()), "label {out:?} from {s:?}");
            let prefixed = given.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--"));
            assert!(
                !out.starts_with("xn--") || !given.is_ascii() || prefixed,
                "xn-- for the ASCII label {given:?}"
            );
            if lower.is_ascii() {
                assert_eq!(out, lower, "ASCII label {given:?} changed");
            } else {
                let decoded = out.strip_prefix("xn--").and_then(punycode_decode::decode);
                assert_eq!(decoded.as_deref(), Some(*lower), "A-label {out:?} of {given:?}");
            }
        }
        assert_eq!(check(&out.join("."), Kind::Lookup).as_ref(), Ok(&out.join(".")), "not idempotent");
    }

    let mail = check(s, Kind::Mail);
    if let Ok(out) = &mail {
        assert!(out.len() <= 255 && !out.is_empty(), "{} octets from {s:?}", out.len());
        assert_eq!(&out.to_lowercase(), out);
        assert_eq!(check(out, Kind::Mail).as_ref(), Ok(out), "{out:?} does not check again");
    }

    // A config host name is a mail domain and a lookup name, the same one.
    if let Ok(host) = check(s, Kind::Host) {
        assert!(host.is_ascii());
        assert_eq!(mail.as_ref(), Ok(&host), "host name {s:?} as a mail domain");
        assert_eq!(lookup.as_ref(), Ok(&host), "host name {s:?} as a lookup name");
    }
});
