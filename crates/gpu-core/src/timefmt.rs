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
