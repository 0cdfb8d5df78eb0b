//! Power (`--max-power`, `filters.max_power`): `parse_power` and `format_power`.
#![no_main]
use gpusel_core::{format_power, parse_power};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = gpusel_fuzz::text(data);
    let Ok(mw) = parse_power(&input) else {
        return;
    };
    assert_eq!(parse_power(&format!("{mw}mW")), Ok(mw), "{input:?}");
    // What gpusel shows (watts, one decimal) reads back within 50 mW.
    let shown = format_power(mw);
    let back = parse_power(&shown).unwrap_or_else(|e| panic!("{shown:?} of {input:?}: {e}"));
    assert!(
        back.abs_diff(mw) <= 50,
        "{input:?} = {mw} mW, shown {shown:?} = {back}"
    );
});
