//! What the fuzz targets share: the properties every parsed snapshot must have.

use std::path::Path;

use gpusel_core::Snapshot;

/// A snapshot that was accepted is valid, serializes, and parses back (through
/// the file provider's entry point) to one that serializes to the same JSON:
/// what one gpusel writes, every other reads. (Not `==` the first: the schema
/// keeps whole seconds, a parsed time may carry a fraction.)
pub fn assert_round_trip(snapshot: &Snapshot) {
    snapshot.validate().expect("an accepted snapshot is valid");
    let json = serde_json::to_string(snapshot).expect("a snapshot serializes");
    let back = gpusel_core::parse_snapshot(&json, Path::new("round-trip.json"))
        .unwrap_or_else(|e| panic!("what gpusel writes it reads: {e}\n{json}"));
    let again = serde_json::to_string(&back).expect("a snapshot serializes");
    assert_eq!(json, again, "a written snapshot reads back the same");
}

/// The fuzz input as text, lossily: the parsers take `&str`.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
