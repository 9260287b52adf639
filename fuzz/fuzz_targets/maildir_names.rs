//! Names in a Maildir that Dovecot, a client or anyone with a shell wrote:
//! folder directories in modified UTF-7 and message files with their `:2,`
//! flags. Never a panic; a folder name that reads back gives the same
//! directory, and flags that read write out in one order that reads back.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use postern::mailbox::folder;
use postern::mailbox::mutf7;
use postern::mailbox::names::{flags_of, split_info, with_flags};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(text) = mutf7::decode(s) {
        assert_eq!(mutf7::encode(&text), s, "{text:?} decoded from {s:?} encodes otherwise");
    }
    // NUL is the one character the decoder refuses to find encoded; no
    // folder name holds it (control characters are refused before).
    if !s.contains('\0') {
        let text = mutf7::encode(s);
        assert_eq!(mutf7::decode(&text).as_deref(), Ok(s), "{s:?} does not survive {text:?}");
    }
    if let Some(Ok(name)) = folder::name_of(s) {
        let maildir = Path::new("/m");
        assert_eq!(folder::dir(maildir, &name), Ok(maildir.join(s)), "{s:?} read as {name:?}");
    }
    if let Ok(flags) = flags_of(s) {
        let (unique, _) = split_info(s);
        let written = with_flags(unique, flags);
        assert_eq!(flags_of(&written), Ok(flags), "{s:?} rewritten as {written:?}");
        assert_eq!(split_info(&written).0, unique);
    }
});
