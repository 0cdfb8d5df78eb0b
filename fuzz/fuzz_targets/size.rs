//! Sizes (`--mem`, `filters.mem`): `parse_size` and `format_bytes`.
#![no_main]
use gpusel_core::{format_bytes, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = gpusel_fuzz::text(data);
    let Ok(bytes) = parse_size(&input) else {
        return;
    };
    // The exact value, written in bytes, reads back the same.
    assert_eq!(parse_size(&format!("{bytes} B")), Ok(bytes), "{input:?}");
    assert_eq!(parse_size(&format!("{bytes}b")), Ok(bytes), "{input:?}");
    // What gpusel shows reads back to within its rounding (one decimal, at
    // least 1024 of the unit below: under 5% off).
    let shown = format_bytes(bytes);
    let Ok(back) = parse_size(&shown) else {
        // Only what rounds up past the largest size does not read back.
        assert!(
            bytes > u64::MAX - (u64::MAX >> 11),
            "{shown:?} of {input:?}"
        );
        return;
    };
    let error = (back as f64 - bytes as f64).abs();
    assert!(
        error <= bytes as f64 * 0.05 + 0.5,
        "{input:?} = {bytes}, shown {shown:?} = {back}"
    );
});
