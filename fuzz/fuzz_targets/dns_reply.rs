//! The DNS reply decoder, `Reply::parse`, and the steps the resolver takes on
//! what it decoded: any datagram, never a panic or a runaway loop; the names it
//! returns are bounded and cannot pass for something they are not, TXT data is
//! never more than the datagram held, and bytes after the last record change
//! nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::dns::wire::{RData, Reply, RrType, addresses, canonical_name};

const TYPES: [RrType; 5] = [RrType::A, RrType::Aaaa, RrType::Mx, RrType::Txt, RrType::Ptr];

fuzz_target!(|msg: &[u8]| {
    let Ok(reply) = Reply::parse(msg) else {
        return;
    };
    let mut names: Vec<&str> = reply.questions.iter().map(|q| q.name.as_str()).collect();
    for record in reply.answers.iter().chain(&reply.additional) {
        names.push(&record.name);
        match &record.data {
            RData::Cname(target) | RData::Ptr(target) | RData::Mx { exchange: target, .. } => {
                names.push(target)
            }
            RData::Txt(text) => {
                assert!(text.len() < msg.len(), "{} octets of text from {}", text.len(), msg.len())
            }
            RData::Addr(_) | RData::Other => {}
        }
    }
    // Each name is at least a pointer or the root octet; each record at most two names.
    assert!(names.len() <= msg.len(), "{} names from {} octets", names.len(), msg.len());
    for name in &names {
        // 255 octets on the wire, each written as at most four characters.
        assert!(name.len() <= 4 * 255, "name of {} characters", name.len());
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || b == b'-'
                || b == b'_'
                || b == b'.'
                || b == b'\\'),
            "unescaped octet in {name:?}"
        );
        assert!(
            !name.starts_with('.') && !name.ends_with('.') && !name.contains(".."),
            "empty label in {name:?}"
        );
    }
    for ty in TYPES {
        let _ = reply.is_answer_to(reply.id, "example.com", ty);
        if let Some(owner) = canonical_name(&reply.answers, "example.com") {
            assert!(addresses(&reply.answers, &owner, ty).len() <= reply.answers.len());
            let _ = addresses(&reply.additional, &owner, ty);
        }
    }
    let mut longer = msg.to_vec();
    longer.extend_from_slice(&[0xc0, 0x0c, 0xff]);
    assert_eq!(Reply::parse(&longer), Ok(reply), "trailing bytes changed the reply");
});
