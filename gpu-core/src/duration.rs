//! The one duration syntax of gpusel, for flags, `GPUSEL_*` variables and
//! config files alike: `30s`, `5m`, `1h30m`, `500ms`, or a bare number of
//! seconds (`30`, `2.5`), as autocvd's `-t 3600` and `timeout(1)` take it.

use std::time::Duration;

/// A duration that could not be read, or one below what its use allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Not a duration at all.
    #[error(
        "'{input}' is not a duration: write e.g. 30s, 5m, 1h30m, 500ms, or a number of seconds (30)"
    )]
    Invalid {
        /// What was given.
        input: String,
    },
    /// A duration, but shorter than allowed (an interval of 0 would spin).
    #[error("'{input}' is too short: give {} or more", humantime::format_duration(*min))]
    TooShort {
        /// What was given.
        input: String,
        /// The least that is allowed.
        min: Duration,
    },
    /// A duration longer than any wait: past [`MAX_DURATION`], adding it to
    /// the clock would overflow.
    #[error(
        "'{input}' is too long: give at most {}",
        humantime::format_duration(MAX_DURATION)
    )]
    TooLong {
        /// What was given.
        input: String,
    },
}

/// The longest duration gpusel reads: 100 years (of 365.25 days). Anything
/// longer means "forever", and would overflow the clock when added to it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses `30s`, `5m`, `1h30m`, `500ms`, `1.5h` or a bare number of seconds
/// (`30`, `2.5`). Zero is allowed; see [`parse_duration_min`].
///
/// ```
/// use std::time::Duration;
/// assert_eq!(gpusel_core::parse_duration("3600"), Ok(Duration::from_secs(3600)));
/// assert_eq!(gpusel_core::parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(gpusel_core::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(gpusel_core::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let v = input.trim();
    let invalid = || DurationError::Invalid {
        input: input.to_string(),
    };
    let plain_number = !v.is_empty()
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        && v.chars().filter(|&c| c == '.').count() <= 1
        && v.chars().any(|c| c.is_ascii_digit());
    let d = if plain_number {
        let secs: f64 = v.parse().map_err(|_| invalid())?;
        Duration::try_from_secs_f64(secs).map_err(|_| invalid())?
    } else {
        humantime::parse_duration(v).map_err(|_| invalid())?
    };
    if d > MAX_DURATION {
        return Err(DurationError::TooLong {
            input: input.to_string(),
        });
    }
    Ok(d)
}

/// [`parse_duration`], refusing anything shorter than `min`.
pub fn parse_duration_min(input: &str, min: Duration) -> Result<Duration, DurationError> {
    let d = parse_duration(input)?;
    if d < min {
        return Err(DurationError::TooShort {
            input: input.to_string(),
            min,
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_duration(" 0.5 "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        for bad in [
            "",
            " ",
            "-1",
            "soon",
            "NaN",
            "inf",
            "1e400",
            "1..2",
            ".",
            "5 parsecs",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let e = parse_duration_min("0s", Duration::from_millis(10)).unwrap_err();
        assert_eq!(e.to_string(), "'0s' is too short: give 10ms or more");
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .to_string()
                .contains("e.g. 30s, 5m")
        );
    }

    #[test]
    fn past_a_century_is_refused() {
        // Found by fuzz/ (duration): these parsed, and `Instant::now() + d`
        // (a --watch interval, a wait) then panics on overflow.
        for input in [
            "1000000000000000000s",
            "2\r2888888888888wk",
            "10000000000000000000",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(
                e,
                DurationError::TooLong {
                    input: input.into()
                }
            );
            assert!(e.to_string().contains("at most 100years"), "{e}");
        }
        let century = parse_duration("100 years").unwrap();
        assert_eq!(century, MAX_DURATION);
        assert!(std::time::Instant::now().checked_add(century).is_some());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn whole_seconds_round_trip(n in 0u64..10_000_000) {
            proptest::prop_assert_eq!(parse_duration(&n.to_string()), Ok(Duration::from_secs(n)));
            proptest::prop_assert_eq!(parse_duration(&format!("{n}s")), Ok(Duration::from_secs(n)));
        }
    }
}
