//! `CUDA_VISIBLE_DEVICES` (gpu-core cvd.rs): `Visible::parse` against a fixed
//! machine of four GPUs, one of them split into two MIG devices.
#![no_main]
use std::sync::OnceLock;

use gpusel_core::{Gpu, MigDevice, Visible};
use libfuzzer_sys::fuzz_target;

fn machine() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let uuids = [
            "GPU-1a2b3c4d-0000-1111-2222-333344445555",
            "GPU-1a2b9999-0000-1111-2222-333344445555",
            "GPU-ffee0000-aaaa-bbbb-cccc-ddddeeeeffff",
            "GPU-00000000-0000-0000-0000-000000000003",
        ];
        let mut gpus: Vec<Gpu> = uuids
            .iter()
            .enumerate()
            .map(|(i, u)| Gpu::new(i as u32, *u, "NVIDIA A100"))
            .collect();
        gpus[2].mig_mode = Some(true);
        gpus[2].mig_devices = vec![
            MigDevice::new(0, "MIG-aaaa0000-1111-2222-3333-444455556666"),
            MigDevice::new(1, "MIG-aaaa0001-1111-2222-3333-444455556666"),
        ];
        gpus
    })
}

fuzz_target!(|data: &[u8]| {
    let value = gpusel_fuzz::text(data);
    let gpus = machine();
    let visible = Visible::parse(Some(&value), gpus);
    assert!(visible.is_restricted());
    let entries = visible.entries.as_ref().expect("a set variable restricts");
    let known = |uuid: &str| {
        gpus.iter()
            .any(|g| g.uuid == uuid || g.mig_devices.iter().any(|m| m.uuid == uuid))
    };
    for (i, e) in entries.iter().enumerate() {
        assert!(known(&e.uuid), "{e:?} is a device of the machine");
        assert_eq!(visible.position(&e.uuid, None), Some(i), "listed once");
        assert_eq!(visible.token_for(&e.uuid), Some(e.token.as_str()));
        assert_eq!(e.token, e.token.trim());
    }
    if let Some(problem) = &visible.problem {
        let _ = problem.to_string();
    }
    // Writing the visible devices' tokens back (what gpusel does for a
    // subset) means the same devices.
    if !entries.is_empty() {
        let tokens: Vec<&str> = entries.iter().map(|e| e.token.as_str()).collect();
        let again = Visible::parse(Some(&tokens.join(",")), gpus);
        assert_eq!(again.entries.as_ref(), Some(entries));
        assert_eq!(again.problem, None);
    }
});
