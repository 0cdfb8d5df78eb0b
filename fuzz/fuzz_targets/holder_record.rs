//! A lease's holder record (`gpusel-<uuid>.<uid>.holder` in the lock
//! directory), as a reader of the directory parses it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let uid = 1000;
    let Some(holder) = gpusel_core::fuzzing::holder_record(data, uid) else {
        return;
    };
    assert_eq!(holder.uid, uid, "another user's record is never taken");
    // `gpusel list` shows it: one line, no control character of the record.
    let shown = holder.to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    // The record a holder writes reads back as the same holder (the
    // record keeps whole seconds: written twice, the same bytes).
    let written = serde_json::to_vec(&holder).unwrap();
    let back = gpusel_core::fuzzing::holder_record(&written, uid).expect("its own record");
    assert_eq!(serde_json::to_vec(&back).unwrap(), written);
    assert_eq!(gpusel_core::fuzzing::holder_record(&written, uid + 1), None);
});
