//! RFC 3339 (UTC) serde for `SystemTime`, the one time format of the schema.

/// `SystemTime` as an RFC 3339 string.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::SystemTime;

    /// Writes `time` as RFC 3339 with second precision.
    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*time))
    }

    /// Reads an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(|e| {
            D::Error::custom(format!(
                "bad time '{text}': {e} (expected RFC 3339, e.g. 2026-11-22T10:00:00Z)"
            ))
        })
    }
}

/// `Option<SystemTime>` as an RFC 3339 string or null.
pub mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    /// Writes `Some(time)` as RFC 3339, `None` as null.
    pub fn serialize<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// Reads an RFC 3339 timestamp or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrap(#[serde(with = "super::rfc3339")] SystemTime);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

/// Formats `time` as the schema writes it: RFC 3339, UTC, whole seconds.
pub fn format(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// How long before `now` the moment `then` was, as people say it: `just now`,
/// `5 minutes ago`, `14 hours ago`, `2 days ago` (whole units, rounded down,
/// as nvgpu and `ps` show a start time). A `then` after `now` (clocks of two
/// machines) reads `just now`.
pub fn ago(then: std::time::SystemTime, now: std::time::SystemTime) -> String {
    let secs = now.duration_since(then).map(|d| d.as_secs()).unwrap_or(0);
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        86_400..2_592_000 => (secs / 86_400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::ago;
    use std::time::{Duration, SystemTime};

    #[test]
    fn ago_reads_like_speech() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let before = |s: u64| now - Duration::from_secs(s);
        assert_eq!(ago(before(5), now), "just now");
        assert_eq!(ago(before(60), now), "1 minute ago");
        assert_eq!(ago(before(3_599), now), "59 minutes ago");
        assert_eq!(ago(before(14 * 3_600 + 10), now), "14 hours ago");
        assert_eq!(ago(before(2 * 86_400 + 3_000), now), "2 days ago");
        assert_eq!(ago(before(90 * 86_400), now), "3 months ago");
        assert_eq!(ago(before(800 * 86_400), now), "2 years ago");
        assert_eq!(ago(now + Duration::from_secs(30), now), "just now");
    }
}
