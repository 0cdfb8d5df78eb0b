//! Snapshot JSON as the file provider reads it (`--provider file:PATH`):
//! `gpusel_core::parse_snapshot`. Whatever it accepts round-trips, and the
//! plugin reader accepts the same documents.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = gpusel_core::parse_snapshot(text, std::path::Path::new("fuzz.json"));
    if let Ok(snapshot) = &file {
        gpusel_fuzz::assert_round_trip(snapshot);
    }
    // The same bytes from a plugin: the same verdict, the same snapshot.
    let plugin = gpusel::fuzzing::plugin_output(data);
    match (&file, &plugin) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        // A plugin's output of only whitespace is "nothing", not a parse error.
        _ => panic!("file and plugin readers disagree: {file:?} / {plugin:?}"),
    }
});
