//! A Punycode decoder (RFC 3492 6.2), written here only as the fuzz targets'
//! check on the encoder: what Postern encodes must decode to what it was given.

const BASE: u64 = 36;
const T_MIN: u64 = 1;
const T_MAX: u64 = 26;

/// The code points `input` encodes; `None` when it is not valid Punycode.
pub fn decode(input: &str) -> Option<String> {
    let (basic, rest) = match input.rfind('-') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => ("", input),
    };
    if !basic.is_ascii() {
        return None;
    }
    let mut out: Vec<char> = basic.chars().collect();
    let (mut n, mut i, mut bias) = (0x80u64, 0u64, 72u64);
    let mut digits = rest.bytes().peekable();
    while digits.peek().is_some() {
        let old_i = i;
        let mut w = 1u64;
        let mut k = BASE;
        loop {
            let digit = match digits.next()? {
                c @ b'a'..=b'z' => u64::from(c - b'a'),
                c @ b'A'..=b'Z' => u64::from(c - b'A'),
                c @ b'0'..=b'9' => u64::from(c - b'0') + 26,
                _ => return None,
            };
            i = i.checked_add(digit.checked_mul(w)?)?;
            let t = if k <= bias {
                T_MIN
            } else if k >= bias + T_MAX {
                T_MAX
            } else {
                k - bias
            };
            if digit < t {
                break;
            }
            w = w.checked_mul(BASE - t)?;
            k += BASE;
        }
        let len = out.len() as u64 + 1;
        bias = adapt(i - old_i, len, old_i == 0);
        n = n.checked_add(i / len)?;
        i %= len;
        out.insert(i as usize, char::from_u32(u32::try_from(n).ok()?)?);
        i += 1;
    }
    Some(out.into_iter().collect())
}

fn adapt(mut delta: u64, points: u64, first: bool) -> u64 {
    delta /= if first { 700 } else { 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + 38)
}
