//! Percentages (`--max-util`, `--max-mem-util`): `parse_percent`.
#![no_main]
use gpusel_core::parse_percent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = gpusel_fuzz::text(data);
    let Ok(p) = parse_percent(&input) else {
        return;
    };
    assert!(p <= 100);
    assert_eq!(parse_percent(&p.to_string()), Ok(p));
    assert_eq!(parse_percent(&format!("{p}%")), Ok(p));
});
