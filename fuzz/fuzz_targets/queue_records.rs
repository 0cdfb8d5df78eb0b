//! A waiter's ticket (`gpusel-queue.<uid>.<pid>-<n>.ticket`) and a share
//! record (`gpusel-<uuid>.<uid>.<pid>-<n>.share`) in the lock directory:
//! files other users write, which every waiter and sharer parses.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let uid = 1000;
    if let Some(waiter) = gpusel_core::fuzzing::ticket(data, uid) {
        assert_eq!(waiter.holder.uid, uid, "another user's ticket is never taken");
        assert!(waiter.holder.since <= std::time::SystemTime::now(), "times are clamped to now");
        let shown = waiter.holder.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        // Its request, judged against a GPU, as a younger waiter does.
        if let Some(request) = waiter.request() {
            let mut gpu = gpusel_core::Gpu::new(0, "GPU-0", "A100");
            gpu.memory_total = Some(80 << 30);
            gpu.memory_free = Some(40 << 30);
            gpu.processes = Some(Vec::new());
            let _ = request.evaluate(&gpusel_core::Device::whole(&gpu));
        }
        // What a waiter writes reads back as the same waiter.
        let written = serde_json::to_vec(&waiter).unwrap();
        let back = gpusel_core::fuzzing::ticket(&written, uid).expect("its own ticket");
        assert_eq!(back.wanted, waiter.wanted);
        assert_eq!(gpusel_core::fuzzing::ticket(&written, uid + 1), None);
    }
    if let Some((holder, _reserved)) = gpusel_core::fuzzing::share_record(data, uid) {
        assert_eq!(holder.uid, uid, "another user's share is never taken");
        let shown = holder.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }
});
