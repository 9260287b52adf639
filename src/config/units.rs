//! The config's spelling of sizes (`"25M"`) and durations (`"1h30m"`): reading
//! them, and writing them back for error messages. Pure text in, numbers out.

use std::time::Duration;

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;
pub(super) const GIB: u64 = 1024 * MIB;

/// Parses a size: `"1024"` (bytes), `"512K"`, `"25M"`, `"1G"`. Units are powers of
/// 1024, case-insensitive, optionally followed by `B` or `iB` (`"25MiB"`).
///
/// # Errors
///
/// A plain-words message that quotes `s`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(format!("\"{s}\" is not a size: write a whole number with K, M or G, like \"25M\""));
    }
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ if unit.starts_with('.') => {
            return Err(format!(
                "\"{s}\" is not a size: use a whole number, like \"1536M\" instead of \"1.5G\""
            ));
        }
        _ => {
            return Err(format!(
                "\"{s}\" is not a size: unknown unit `{unit}` (use K, M or G, like \"25M\")"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("\"{s}\" is too large"))
}

/// Parses a duration: `"30s"`, `"5m"`, `"4h"`, `"5d"`, or a sum like `"1h30m"`.
///
/// # Errors
///
/// A plain-words message that quotes `s`; a bare number is refused because its unit
/// would be a guess.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("the duration is empty; write one like \"5m\"".to_string());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{s}\" has no unit; add a unit: s, m, h or d (like \"{text}s\")"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "\"{s}\" is not a duration: expected a number at `{rest}` (write it like \"90s\", \"5m\" or \"1h30m\")"
            ));
        }
        let unit = rest[digits..].chars().next();
        let seconds = match unit {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 60 * 60,
            Some('d') => 24 * 60 * 60,
            Some(other) => {
                return Err(format!("\"{s}\" is not a duration: unknown unit `{other}` (use s, m, h or d)"));
            }
            None => {
                return Err(format!(
                    "\"{s}\" is not a duration: the last number has no unit; add a unit: s, m, h or d"
                ));
            }
        };
        total = rest[..digits]
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| format!("\"{s}\" is too long"))?;
        rest = &rest[digits + 1..];
    }
    Ok(Duration::from_secs(total))
}

/// Writes a duration in the config's spelling, in its largest exact unit: `2h`, `90s`.
pub(super) fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (unit, size) = [('d', 86400), ('h', 3600), ('m', 60)]
        .into_iter()
        .find(|(_, size)| secs >= *size && secs % size == 0)
        .unwrap_or(('s', 1));
    format!("{}{unit}", secs / size)
}

/// Writes a size in the config's spelling, in its largest exact unit: `25M`, `1000`.
pub(super) fn show_size(n: u64) -> String {
    let (unit, size) = [("G", GIB), ("M", MIB), ("K", KIB)]
        .into_iter()
        .find(|(_, size)| n >= *size && n % size == 0)
        .unwrap_or(("", 1));
    format!("{}{unit}", n / size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1024", Some(1024)),
            ("512K", Some(512 * KIB)),
            ("25M", Some(25 * MIB)),
            ("1G", Some(GIB)),
            ("25m", Some(25 * MIB)),
            ("25MB", Some(25 * MIB)),
            ("25MiB", Some(25 * MIB)),
            ("25 mib", Some(25 * MIB)),
            ("100B", Some(100)),
            ("0", Some(0)),
            ("", None),
            ("M", None),
            ("-1M", None),
            ("1.5G", None),
            ("25X", None),
            ("25T", None),
            ("99999999999999999999", None),
            ("17179869184G", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), *want, "parse_size({input:?})");
        }
    }

    #[test]
    fn durations_need_units() {
        let cases: &[(&str, Option<u64>)] = &[
            ("30s", Some(30)),
            ("5m", Some(300)),
            ("4h", Some(4 * 3600)),
            ("5d", Some(5 * 86400)),
            ("1h30m", Some(5400)),
            ("1d2h3m4s", Some(86400 + 7200 + 180 + 4)),
            ("0s", Some(0)),
            ("300", None),
            ("", None),
            ("h", None),
            ("5x", None),
            ("5M", None),
            ("1h30", None),
            ("1.5h", None),
            ("99999999999999999999s", None),
            ("999999999999999999d", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok().map(|d| d.as_secs()), *want, "parse_duration({input:?})");
        }
        let bare = parse_duration("300").unwrap_err();
        assert!(bare.contains("add a unit: s, m, h or d"), "{bare}");
    }

    #[test]
    fn durations_and_sizes_print_back_in_config_spelling() {
        assert_eq!(show_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(show_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(show_duration(Duration::from_secs(61)), "61s");
        assert_eq!(show_duration(Duration::ZERO), "0s");
        assert_eq!(show_size(25 * MIB), "25M");
        assert_eq!(show_size(1000), "1000");
        assert_eq!(show_size(1536 * MIB), "1536M");
    }
}
