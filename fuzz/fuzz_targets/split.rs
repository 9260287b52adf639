//! Cuts an input into pieces as a network might deliver it, from a seed the
//! fuzzer controls, so a target can check the result does not depend on it.

/// Lengths of consecutive pieces covering `len` bytes, none empty; `seed`
/// picks them (a seed of 0 gives one piece).
pub fn pieces(seed: u32, len: usize) -> Vec<usize> {
    if seed == 0 || len == 0 {
        return vec![len];
    }
    // Short pieces mostly, with now and then a long one.
    let mut state = u64::from(seed) | 1 << 40;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = if state % 8 == 0 { (state >> 8) as usize % 4096 + 1 } else { (state >> 8) as usize % 9 + 1 };
        let n = n.min(left);
        out.push(n);
        left -= n;
    }
    out
}
