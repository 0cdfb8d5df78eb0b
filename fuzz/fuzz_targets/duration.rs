//! Durations (`--timeout`, `--interval`, config files, `GPUSEL_*`):
//! `parse_duration` and `parse_duration_min`.
#![no_main]
use std::time::Duration;

use gpusel_core::{DurationError, parse_duration, parse_duration_min};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = gpusel_fuzz::text(data);
    let parsed = parse_duration(&input);
    let min = Duration::from_millis(100);
    match (&parsed, parse_duration_min(&input, min)) {
        (Ok(d), Ok(e)) => assert!(*d == e && e >= min),
        (Ok(d), Err(DurationError::TooShort { .. })) => assert!(*d < min),
        (Err(a), Err(b)) => assert_eq!(*a, b),
        (a, b) => panic!("{input:?}: {a:?} but with a minimum {b:?}"),
    }
    let Ok(d) = parsed else {
        return;
    };
    // Written as humantime writes it (and gpusel shows it), the same duration.
    let written = humantime::format_duration(d).to_string();
    assert_eq!(
        parse_duration(&written),
        Ok(d),
        "{input:?} written as {written:?}"
    );
    // Whole seconds as a bare number.
    let secs = d.as_secs();
    assert_eq!(
        parse_duration(&secs.to_string()),
        Ok(Duration::from_secs(secs)),
        "{input:?}"
    );
});
