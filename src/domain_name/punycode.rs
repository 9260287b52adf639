//! Punycode (RFC 3492), the encoder only: how a U-label's characters are
//! written in letters, digits and hyphens to make an A-label. Pure, and
//! nothing else: which labels to encode, and the `xn--` prefix, are the
//! domain-name check's business.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 0x80;

/// The Punycode of `input` (RFC 3492 6.3): its ASCII characters in order, a
/// `-` when there were any, then the rest as base-36 digits `a`-`z`, `0`-`9`.
/// Input that is all ASCII comes back with a `-` added, as the RFC says; case
/// is kept. `None` on overflow, which only inputs of thousands of characters
/// can reach, never a label of a valid length.
pub fn encode(input: &str) -> Option<String> {
    let points: Vec<u32> = input.chars().map(u32::from).collect();
    let mut out: String = input.chars().filter(char::is_ascii).collect();
    let basic = u32::try_from(out.len()).ok()?;
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias, mut handled) = (INITIAL_N, 0u32, INITIAL_BIAS, basic);
    while (handled as usize) < points.len() {
        let m = points.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &points {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = threshold(k, bias);
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(out)
}

/// The digit for `d` in 0..36: 0..=25 are `a`..`z`, 26..=35 are `0`..`9`.
fn digit(d: u32) -> char {
    char::from(if d < 26 { b'a' + d as u8 } else { b'0' + (d - 26) as u8 })
}

/// The threshold t(k) of RFC 3492 6.3, clamped to T_MIN..=T_MAX.
fn threshold(k: u32, bias: u32) -> u32 {
    if k <= bias {
        T_MIN
    } else if k >= bias + T_MAX {
        T_MAX
    } else {
        k - bias
    }
}

/// Bias adaptation (RFC 3492 6.1).
fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
    delta /= if first { DAMP } else { 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3492_samples() {
        // RFC 3492 7.1: (A) Arabic, (B) Chinese, (L) Japanese with ASCII, (S) ASCII only,
        // and labels met in mail.
        let samples = [
            (
                "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}",
                "egbpdaj6bu4bxfgehfvwxn",
            ),
            (
                "\u{4ED6}\u{4EEC}\u{4E3A}\u{4EC0}\u{4E48}\u{4E0D}\u{8BF4}\u{4E2D}\u{6587}",
                "ihqwcrb4cv8a8dqg056pqjye",
            ),
            ("3\u{5E74}B\u{7D44}\u{91D1}\u{516B}\u{5148}\u{751F}", "3B-ww4c5e180e575a65lsy2b"),
            ("-> $1.00 <-", "-> $1.00 <--"),
            ("bücher", "bcher-kva"),
            ("münchen", "mnchen-3ya"),
            ("例え", "r8jz45g"),
            ("", ""),
        ];
        for (input, want) in samples {
            assert_eq!(encode(input).as_deref(), Some(want), "{input:?}");
        }
    }

    #[test]
    fn long_inputs_overflow_to_none_instead_of_wrapping() {
        // The first delta is the distance to the largest code point times the
        // number of characters before it: past 2^32 here.
        let huge = format!("{}\u{10FFFF}", "a".repeat(4000));
        assert_eq!(encode(&huge), None);
        let label = "ü".repeat(31);
        assert!(encode(&label).is_some_and(|p| p.is_ascii()));
    }
}
