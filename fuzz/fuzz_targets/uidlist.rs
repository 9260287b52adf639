//! `dovecot-uidlist` files as Dovecot, another program or a damaged disk
//! left them. Never a panic; a list that reads writes out as a list that
//! reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::mailbox::uidlist::UidList;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = UidList::parse(s) {
        let text = list.format();
        assert_eq!(UidList::parse(&text).as_ref(), Ok(&list), "{s:?} written as {text:?}");
    }
});
