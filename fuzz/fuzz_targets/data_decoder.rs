//! The DATA decoder: the first byte picks the size limit, the next two how the
//! rest is cut into reads. Whatever the cuts, the decoder must find the same
//! end, give the same bytes and the same verdict; what it accepts has only
//! CRLF line ends, short lines, no NUL, and decodes to itself once stuffed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::smtp::data::{DataDecoder, DataError};

mod split;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    out: Vec<u8>,
    /// Bytes used up to and including the final dot, when it was seen.
    end: Option<usize>,
    verdict: Result<u64, DataError>,
}

fn run(input: &[u8], cuts: &[usize], max: u64) -> Outcome {
    let mut d = DataDecoder::new(max);
    let mut out = Vec::new();
    let mut pos = 0;
    for &len in cuts {
        let piece = &input[pos..pos + len];
        // The decoder may stop inside a read, at the final dot.
        let (used, done) = d.decode(piece, &mut out);
        assert!(used <= piece.len());
        if done {
            return Outcome { out, end: Some(pos + used), verdict: d.finish() };
        }
        assert_eq!(used, piece.len(), "bytes left over without the final dot");
        pos += len;
    }
    Outcome { out, end: None, verdict: d.finish() }
}

/// Dot-stuffs a decoded message and adds the final dot, as a client sends it.
fn stuff(message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(message.len() + 8);
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            wire.push(b'.');
        }
        wire.push(b);
        line_start = b == b'\n';
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = [0, 1, 5, 64, 1000, 1 << 20][usize::from(data[0]) % 6];
    let seed = u32::from(u16::from_le_bytes([data[1], data[2]]));
    let input = &data[3..];

    let whole = run(input, &[input.len()], max);
    let cut = run(input, &split::pieces(seed, input.len()), max);
    assert_eq!(whole, cut, "the result depends on how the input was cut");
    let bytewise = run(input, &vec![1; input.len()], max);
    assert_eq!(whole, bytewise, "the result depends on how the input was cut");

    assert!(whole.out.len() as u64 <= max, "more output than the size limit");
    assert!(whole.out.len() <= input.len(), "more output than input");
    if let (Ok(size), Some(_)) = (whole.verdict, whole.end) {
        let msg = &whole.out;
        assert_eq!(size, msg.len() as u64);
        assert!(!msg.contains(&0), "NUL accepted");
        assert!(msg.is_empty() || msg.ends_with(b"\r\n"), "accepted message without a final CRLF");
        for line in msg.split_inclusive(|&b| b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "bare LF accepted");
            assert!(!line[..line.len() - 2].contains(&b'\r'), "bare CR accepted");
            assert!(line.len() <= 1000, "line over 1000 octets accepted");
        }
        let wire = stuff(msg);
        let again = run(&wire, &[wire.len()], max);
        assert_eq!(again.out, *msg, "stuffing then decoding changed the message");
        assert_eq!(again.end, Some(wire.len()));
        assert_eq!(again.verdict, Ok(size));
    }
});
