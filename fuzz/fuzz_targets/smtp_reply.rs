//! The outbound client's reply reader: the bytes a server sends, cut into
//! reads as the second and third input bytes say. The replies and the final
//! state must not depend on the cuts, and each reply must survive being
//! written out by the server side's reply writer and read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::smtp::client::{ReplyReader, Response};

mod split;

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Waiting for more bytes; whether anything is buffered.
    Waiting(bool),
    Failed(String),
}

fn read(input: &[u8], cuts: &[usize]) -> (Vec<Response>, End) {
    let mut reader = ReplyReader::default();
    let mut replies = Vec::new();
    let mut pos = 0;
    for &len in cuts {
        reader.push(&input[pos..pos + len]);
        pos += len;
        loop {
            match reader.next_reply() {
                Ok(Some(r)) => replies.push(r),
                Ok(None) => break,
                Err(e) => return (replies, End::Failed(e.to_string())),
            }
        }
    }
    (replies, End::Waiting(!reader.is_empty()))
}

fn check(reply: &Response) {
    assert!((200..600).contains(&reply.code), "code {}", reply.code);
    assert!(!reply.lines.is_empty());
    for line in &reply.lines {
        assert!(!line.contains('\n') && !line.ends_with('\r'), "line ending kept in {line:?}");
    }
    let total: usize = reply.lines.iter().map(|l| l.len() + 4).sum();
    assert!(total <= 2 * 64 * 1024, "reply of {total} octets");
    let _ = (reply.text(), reply.has("PIPELINING"), reply.params("SIZE"), reply.params("AUTH"));
    let status = reply.status();
    assert_eq!(status.class(), reply.class(), "{status} for a {}", reply.code);

    // Written as a server writes it, read back the same.
    if total < 60 * 1024 {
        let mut wire = Vec::new();
        let mut server = postern::smtp::reply::Reply::new(reply.code, "", "");
        server.lines = reply.lines.clone();
        server.write_to(&mut wire);
        let mut reader = ReplyReader::default();
        reader.push(&wire);
        assert_eq!(reader.next_reply().ok().flatten().as_ref(), Some(reply), "wire form {wire:?}");
        assert!(reader.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let seed = u32::from(u16::from_le_bytes([data[0], data[1]]));
    let input = &data[2..];
    let whole = read(input, &[input.len()]);
    let cut = read(input, &split::pieces(seed, input.len()));
    assert_eq!(whole, cut, "the replies depend on how the input was cut");
    for reply in &whole.0 {
        check(reply);
    }
});
