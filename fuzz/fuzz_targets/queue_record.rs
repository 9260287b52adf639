//! The queue's record decoder, over bytes a damaged disk or an older build
//! could leave in the store: never a panic, and a record it accepts writes
//! out in the current version and reads back as the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::queue::record::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode(data) {
        let again = encode(&m);
        assert_eq!(decode(&again).as_ref().ok(), Some(&m), "a decoded record does not survive a rewrite");
        assert_eq!(encode(&decode(&again).unwrap()), again, "the current version does not write stably");
    }
});
