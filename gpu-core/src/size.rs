//! Human sizes for `--mem` and friends: `800MiB`, `20GiB`, `1.5GB`, `512M`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SizeError {
    /// Not a number with a unit.
    #[error(
        "invalid size '{input}': {reason}; write a number and a unit, e.g. 800MiB, 20GiB, 1.5GB or 512M"
    )]
    Invalid {
        /// What the user wrote.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bare number: too easy to mean MiB and get bytes.
    #[error(
        "size '{input}' has no unit; write e.g. {input}MiB or {input}GiB (a bare number would mean bytes)"
    )]
    NoUnit {
        /// What the user wrote.
        input: String,
    },
}

/// Parses a memory size into bytes.
///
/// `KiB`/`MiB`/`GiB`/`TiB` are powers of 1024; `KB`/`MB`/`GB`/`TB` and the
/// short `K`/`M`/`G`/`T` are powers of 1000, as in SI and Kubernetes. Case is
/// ignored, a space before the unit is allowed, fractions are allowed (`1.5GB`).
/// A bare number is refused, because `--mem 800` almost always means MiB.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(SizeError::Invalid {
            input: input.to_string(),
            reason: "it is empty".into(),
        });
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(SizeError::NoUnit {
            input: text.to_string(),
        });
    }
    // parse-size 1.1 overflows (a panic in debug builds, a wrong size in
    // release) on a number of 21 significant digits that starts with
    // u64::MAX; none of that length is a size anyway.
    if significant_digits(text) > MAX_DIGITS {
        return Err(SizeError::Invalid {
            input: input.to_string(),
            reason: format!("it has more than {MAX_DIGITS} significant digits"),
        });
    }
    parse_size::parse_size(text).map_err(|e| SizeError::Invalid {
        input: input.to_string(),
        reason: e.to_string(),
    })
}

/// The most significant digits a size may have: u64::MAX has 20.
const MAX_DIGITS: usize = 20;

/// How many significant digits the number at the start of `text` has
/// (before its exponent or unit; `_` and spaces separate digits, as
/// parse-size reads them).
fn significant_digits(text: &str) -> usize {
    let number: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '_' | ' '))
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    let digits = format!("{whole}{}", fraction.trim_end_matches('0'));
    digits
        .trim_start_matches(['0', '.'])
        .chars()
        .filter(char::is_ascii_digit)
        .count()
}

/// Formats bytes for people: `79.6 GiB`, `512 MiB`, `0 B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    // One decimal, dropped when it is 0 after rounding (29.996 GiB is "30 GiB").
    let text = if unit == 0 || value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    };
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// A power limit that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid power '{input}': write watts, e.g. 80W, 250 or 87.5W")]
pub struct PowerError {
    /// What the user wrote.
    pub input: String,
}

/// Parses a power in watts (`80W`, `250`, `87.5w`, `0.3kW`) into milliwatts.
pub fn parse_power(input: &str) -> Result<u32, PowerError> {
    let err = || PowerError {
        input: input.to_string(),
    };
    let text = input.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = text.strip_suffix("kw") {
        (n, 1_000_000.0)
    } else if let Some(n) = text.strip_suffix("mw") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('w') {
        (n, 1000.0)
    } else {
        (text.as_str(), 1000.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| err())?;
    let mw = value * scale;
    if !mw.is_finite() || mw < 0.0 || mw > f64::from(u32::MAX) {
        return Err(err());
    }
    Ok(mw.round() as u32)
}

/// A percentage that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("'{input}' is not a percentage; write 0 to 100, e.g. 10 or 10%")]
pub struct PercentError {
    /// What the user wrote.
    pub input: String,
}

/// Parses a whole percentage, 0 to 100, with or without `%` (`10`, `10%`),
/// as `--max-util` takes it.
pub fn parse_percent(input: &str) -> Result<u8, PercentError> {
    let t = input.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    match t.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(PercentError {
            input: input.to_string(),
        }),
    }
}

/// An amount of memory: bytes, or a share of each device's total
/// (`--max-mem-used 20GiB`, `--max-mem-used 20%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryAmount {
    /// This many bytes.
    Bytes(u64),
    /// This percentage of the device's total memory.
    Percent(u8),
}

/// A memory amount that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "'{input}' is not an amount of memory; write a size (20GiB, 500MB) or a percentage of the total (20%)"
)]
pub struct MemoryAmountError {
    /// What the user wrote.
    pub input: String,
}

impl MemoryAmount {
    /// Reads `20GiB` or `20%`.
    pub fn parse(input: &str) -> Result<Self, MemoryAmountError> {
        let err = || MemoryAmountError {
            input: input.to_string(),
        };
        if input.trim().ends_with('%') {
            return parse_percent(input)
                .map(MemoryAmount::Percent)
                .map_err(|_| err());
        }
        parse_size(input)
            .map(MemoryAmount::Bytes)
            .map_err(|_| err())
    }

    /// The amount in bytes on a device with `total` bytes (`None` when a
    /// percentage meets an unknown total).
    pub fn bytes_of(&self, total: Option<u64>) -> Option<u64> {
        match *self {
            MemoryAmount::Bytes(b) => Some(b),
            MemoryAmount::Percent(p) => total.map(|t| (u128::from(t) * u128::from(p) / 100) as u64),
        }
    }
}

impl std::fmt::Display for MemoryAmount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryAmount::Bytes(b) => f.write_str(&format_bytes(*b)),
            MemoryAmount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Formats milliwatts as watts: `250 W`, `87.5 W`.
pub fn format_power(mw: u32) -> String {
    if mw.is_multiple_of(1000) {
        format!("{} W", mw / 1000)
    } else {
        format!("{:.1} W", f64::from(mw) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn memory_amounts() {
        assert_eq!(MemoryAmount::parse("20%"), Ok(MemoryAmount::Percent(20)));
        assert_eq!(
            MemoryAmount::parse(" 2GiB "),
            Ok(MemoryAmount::Bytes(2 << 30))
        );
        assert_eq!(MemoryAmount::Percent(20).bytes_of(Some(1000)), Some(200));
        assert_eq!(
            MemoryAmount::Percent(100).bytes_of(Some(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(MemoryAmount::Percent(20).bytes_of(None), None);
        assert_eq!(MemoryAmount::Bytes(7).bytes_of(None), Some(7));
        for bad in ["", "101%", "-1%", "2", "half", "%"] {
            let e = MemoryAmount::parse(bad).unwrap_err().to_string();
            assert!(e.contains("is not an amount of memory"), "{bad}: {e}");
        }
        assert_eq!(MemoryAmount::Percent(20).to_string(), "20%");
        assert_eq!(MemoryAmount::Bytes(2 << 30).to_string(), "2 GiB");
    }

    #[test]
    fn sizes_from_the_issue() {
        assert_eq!(parse_size("800MiB"), Ok(800 << 20));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("512M"), Ok(512_000_000));
        assert_eq!(parse_size("4 gib"), Ok(4 << 30));
    }

    #[test]
    fn garbage_is_named_in_the_error() {
        let e = parse_size("lots").unwrap_err().to_string();
        assert!(e.contains("'lots'") && e.contains("800MiB"), "{e}");
        let e = parse_size("800").unwrap_err().to_string();
        assert!(e.contains("800MiB"), "{e}");
        assert!(parse_size("").is_err());
        assert!(parse_size("-5GiB").is_err());
        assert!(parse_size("1e999GiB").is_err());
    }

    #[test]
    fn numbers_past_u64_are_refused_not_wrapped() {
        // Found by fuzz/ (size): parse-size panicked in debug builds and
        // returned 0 in release ones.
        for input in [
            "184467440737095516155B",
            "18446744073709551615.5 B",
            "1844674407370955161_55 MiB",
            "0.0184467440737095516155 GB",
        ] {
            let e = parse_size(input).unwrap_err().to_string();
            assert!(e.contains("significant digits"), "{input}: {e}");
        }
        assert_eq!(parse_size("18446744073709551615B"), Ok(u64::MAX));
        assert_eq!(parse_size("1.000000000000000000000000GiB"), Ok(1 << 30));
        assert_eq!(parse_size("00000000000000000000000001 KiB"), Ok(1024));
    }

    #[test]
    fn power() {
        assert_eq!(parse_power("80W"), Ok(80_000));
        assert_eq!(parse_power("250"), Ok(250_000));
        assert_eq!(parse_power("87.5w"), Ok(87_500));
        assert_eq!(parse_power("0.3kW"), Ok(300_000));
        assert!(parse_power("hot").is_err());
        assert!(parse_power("-1W").is_err());
        assert!(parse_power("inf").is_err());
        assert_eq!(format_power(87_500), "87.5 W");
        assert_eq!(format_power(250_000), "250 W");
    }

    #[test]
    fn format() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(81_559_420_928), "76 GiB");
        assert_eq!(format_bytes((30 << 30) - (4 << 20)), "30 GiB");
        assert_eq!(format_bytes(62 * (1 << 30) + (512 << 20)), "62.5 GiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
    }

    proptest! {
        #[test]
        fn size_parser_never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_power(&s);
        }

        #[test]
        fn mib_round_trips(n in 1u64..1_000_000) {
            prop_assert_eq!(parse_size(&format!("{n}MiB")), Ok(n << 20));
        }
    }
}
