//! What a plugin prints on stdout (gpusel/src/plugin.rs), as raw bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match gpusel::fuzzing::plugin_output(data) {
        Ok(snapshot) => gpusel_fuzz::assert_round_trip(&snapshot),
        Err(message) => {
            assert!(message.starts_with("printed "), "{message}");
            // The message ends a sentence shown to the user: one line, and
            // nothing of the plugin's that would drive the terminal.
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }
});
