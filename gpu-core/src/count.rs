//! How many devices a request takes: exactly N (`-n 2`), every device that
//! qualifies (`-n all`, nvgpu's `available`), or as many as qualify within
//! a range (`-n 2..4`, `-n 2..`, `-n ..4`).

use std::fmt;
use std::num::NonZeroUsize;

use thiserror::Error;

/// How many devices a request takes: at least [`min`](Count::min), and as
/// many more as qualify up to [`max`](Count::max) (`None`: no upper bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Count {
    min: NonZeroUsize,
    max: Option<NonZeroUsize>,
}

/// A count that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("'{input}' is not a count: {why}; write a number (2), all, or a range (2..4, 2.., ..4)")]
pub struct CountError {
    /// What the user wrote.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl Count {
    /// Exactly `n` devices.
    pub const fn exactly(n: NonZeroUsize) -> Self {
        Count {
            min: n,
            max: Some(n),
        }
    }

    /// Every device that qualifies, at least one.
    pub const fn all() -> Self {
        Count {
            min: NonZeroUsize::MIN,
            max: None,
        }
    }

    /// At least `min` and at most `max` (`None`: every one that qualifies);
    /// `None` when `max` is below `min`.
    pub fn range(min: NonZeroUsize, max: Option<NonZeroUsize>) -> Option<Self> {
        match max {
            Some(max) if max < min => None,
            _ => Some(Count { min, max }),
        }
    }

    /// The fewest devices that satisfy the request.
    pub fn min(&self) -> NonZeroUsize {
        self.min
    }

    /// The most devices taken; `None` for every one that qualifies.
    pub fn max(&self) -> Option<NonZeroUsize> {
        self.max
    }

    /// Whether exactly one number of devices satisfies the request.
    pub fn is_exact(&self) -> bool {
        self.max == Some(self.min)
    }

    /// Whether the selection may hold more than one device (so that no MIG
    /// device can be part of it: a process uses one MIG device at most).
    pub fn may_take_several(&self) -> bool {
        self.max.is_none_or(|m| m.get() > 1)
    }

    /// The count in words, for messages: `1 device`, `3 devices`, `every
    /// device that qualifies (at least 1)`, `at least 2 devices`, `2 to 4
    /// devices`.
    pub fn describe(&self) -> String {
        let noun = |n: usize| if n == 1 { "device" } else { "devices" };
        match (self.min.get(), self.max.map(NonZeroUsize::get)) {
            (min, Some(max)) if min == max => format!("{min} {}", noun(min)),
            (1, None) => "every device that qualifies (at least 1)".to_string(),
            (min, None) => format!("at least {min} devices"),
            (min, Some(max)) => format!("{min} to {max} devices"),
        }
    }

    /// Reads `2`, `all`, `2..4`, `2..`, `..4` (`2..=4` too).
    pub fn parse(input: &str) -> Result<Self, CountError> {
        let err = |why| CountError {
            input: input.to_string(),
            why,
        };
        let text = input.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(Count::all());
        }
        let number = |s: &str| -> Result<Option<NonZeroUsize>, CountError> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<usize>() {
                Ok(0) => Err(err("a count is at least 1")),
                Ok(n) => Ok(NonZeroUsize::new(n)),
                Err(_) => Err(err("not a whole number")),
            }
        };
        let Some((low, high)) = text.split_once("..") else {
            return match number(text)? {
                Some(n) => Ok(Count::exactly(n)),
                None => Err(err("it is empty")),
            };
        };
        let high = high.strip_prefix('=').unwrap_or(high);
        if low.trim().is_empty() && high.trim().is_empty() {
            return Err(err("the range has no bound; write all for every device"));
        }
        let min = number(low)?.unwrap_or(NonZeroUsize::MIN);
        let max = number(high)?;
        Count::range(min, max).ok_or_else(|| err("the range ends below its start"))
    }
}

impl Default for Count {
    fn default() -> Self {
        Count::exactly(NonZeroUsize::MIN)
    }
}

impl From<NonZeroUsize> for Count {
    fn from(n: NonZeroUsize) -> Self {
        Count::exactly(n)
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min.get(), self.max) {
            (1, None) => f.write_str("all"),
            (min, None) => write!(f, "{min}.."),
            (min, Some(max)) if max.get() == min => write!(f, "{min}"),
            (min, Some(max)) => write!(f, "{min}..{max}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: usize) -> NonZeroUsize {
        NonZeroUsize::new(v).unwrap()
    }

    #[test]
    fn parses_what_users_write() {
        assert_eq!(Count::parse("2"), Ok(Count::exactly(n(2))));
        assert_eq!(Count::parse(" all "), Ok(Count::all()));
        assert_eq!(Count::parse("ALL"), Ok(Count::all()));
        assert_eq!(
            Count::parse("2..4"),
            Ok(Count::range(n(2), Some(n(4))).unwrap())
        );
        assert_eq!(Count::parse("2..=4"), Count::parse("2..4"));
        assert_eq!(Count::parse("2.."), Ok(Count::range(n(2), None).unwrap()));
        assert_eq!(
            Count::parse("..3"),
            Ok(Count::range(n(1), Some(n(3))).unwrap())
        );
        assert_eq!(Count::parse("3..3"), Ok(Count::exactly(n(3))));
        for bad in [
            "", "0", "-1", "two", "4..2", "0..2", "1..0", "1...2", "..", "1..2..3",
        ] {
            let e = Count::parse(bad).unwrap_err();
            assert!(e.to_string().contains("write a number"), "{bad}: {e}");
        }
    }

    #[test]
    fn displays_as_it_parses() {
        for text in ["1", "2", "all", "2..", "2..4"] {
            assert_eq!(Count::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Count::parse("..1").unwrap().to_string(), "1");
        assert!(!Count::parse("1").unwrap().may_take_several());
        let words: Vec<String> = ["1", "3", "all", "2..", "2..4"]
            .iter()
            .map(|t| Count::parse(t).unwrap().describe())
            .collect();
        assert_eq!(
            words,
            [
                "1 device",
                "3 devices",
                "every device that qualifies (at least 1)",
                "at least 2 devices",
                "2 to 4 devices"
            ]
        );
        assert!(Count::parse("all").unwrap().may_take_several());
        assert!(Count::parse("..2").unwrap().may_take_several());
    }
}
