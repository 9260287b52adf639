//! What an IMAP client may send: bytes in any pieces through the framing
//! and every command it gathers through the parser. Never a panic, never
//! more held for one command than the framing's limits, and the same steps
//! whatever the pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::imap::command;
use postern::imap::framing::{Assembler, MAX_LINE, MAX_SMALL_LITERALS, Part, Step};

/// The steps for `input` fed `chunk` bytes at a time, as text.
fn run(input: &[u8], chunk: usize) -> Vec<String> {
    let mut a = Assembler::new(1 << 20);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let (used, step) = a.step(&buf);
            let more = matches!(step, Step::NeedMore) && used == 0;
            match step {
                Step::NeedMore | Step::Spool(_) => {}
                Step::Command(parts) => {
                    let held: usize = parts
                        .iter()
                        .map(|p| match p {
                            Part::Line(l) | Part::Literal(l) => l.len(),
                            Part::Spooled(_) => 0,
                        })
                        .sum();
                    assert!(held <= MAX_LINE + MAX_SMALL_LITERALS, "{held} bytes held");
                    out.push(format!("{:?}", command::parse(&parts)));
                }
                Step::Fail(why) => {
                    out.push(format!("fail {why}"));
                    return out;
                }
                other => out.push(format!("{other:?}")),
            }
            buf.drain(..used);
            if more {
                break;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let pieces = run(input, usize::from(first % 16) + 1);
    assert_eq!(whole, pieces);
});
