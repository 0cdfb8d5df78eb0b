//! nvidia-smi's CSV (provider-smi): the `--query-gpu` output (with every
//! field, or an old driver's fields) and the `--query-compute-apps` output,
//! joined as the provider joins them. The input is both outputs, split at
//! the first NUL byte; its first byte picks the field list.
#![no_main]
use gpusel_smi::{GPU_FIELDS, NEWER_GPU_FIELDS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = gpusel_fuzz::text(rest);
    let (gpu_csv, apps_csv) = text.split_once('\0').unwrap_or((&text, ""));
    let mut fields = GPU_FIELDS.to_vec();
    if pick & 1 == 1 {
        fields.retain(|f| !NEWER_GPU_FIELDS.contains(f));
    }
    let (snapshot, skipped) = gpusel_smi::fuzzing::snapshot(gpu_csv, &fields, apps_csv);
    // Every non-blank line is a GPU or a skipped line, never lost.
    let lines = gpu_csv.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(snapshot.gpus.len() + skipped.len(), lines);
    for gpu in &snapshot.gpus {
        assert!(gpu.uuid.starts_with("GPU-"), "{gpu:?}");
        assert!(gpu.utilization_gpu.is_none_or(|u| u <= 100));
        assert!(gpu.utilization_memory.is_none_or(|u| u <= 100));
        assert!(gpu.processes.is_some(), "the process query succeeded");
        if pick & 1 == 1 {
            assert_eq!(gpu.mig_mode, None, "an old driver's query has no MIG mode");
        }
    }
    // A snapshot the schema accepts (unique indices and UUIDs) round-trips.
    if snapshot.validate().is_ok() {
        gpusel_fuzz::assert_round_trip(&snapshot);
    }
});
