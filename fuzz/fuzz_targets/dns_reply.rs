//! The DNS reply decoder: any datagram, never a panic or a runaway loop; the
//! names it returns are bounded and cannot pass for something they are not,
//! and bytes after the last record change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::dns::decode_reply_names;

fuzz_target!(|msg: &[u8]| {
    let Ok(names) = decode_reply_names(msg, "example.com") else {
        return;
    };
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
    let mut longer = msg.to_vec();
    longer.extend_from_slice(&[0xc0, 0x0c, 0xff]);
    assert_eq!(decode_reply_names(&longer, "example.com"), Ok(names), "trailing bytes changed the reply");
});
