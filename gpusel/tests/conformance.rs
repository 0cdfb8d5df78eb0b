//! The built-in providers pass the conformance kit a third-party provider
//! crate runs against itself (`gpusel_core::testing`, the `testing`
//! feature), and the kit rejects a provider that breaks the schema's rules.

#[path = "../../fake-nvml/locate.rs"]
mod fake_nvml;

use gpusel::testing::check_provider;
use gpusel::{GpuInfoProvider, ProviderError, Snapshot};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

#[test]
fn file_and_nvml_providers_conform() {
    let config = gpusel::Config::default();
    for example in ["lab-8xa100.json", "mig-2xh100.json"] {
        let provider = gpusel::open(&format!("file:{EXAMPLES}/{example}"), &config).unwrap();
        let snapshot = check_provider(provider.as_ref()).unwrap();
        assert!(!snapshot.gpus.is_empty());
    }
    // The real NVML provider, over the fake libnvidia-ml.so.1 serving the
    // lab example: the scenario comes from the environment, read by the
    // library at each call; this is the only test in this binary.
    unsafe {
        std::env::set_var(
            "FAKE_NVML_SCENARIO",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/nvml/lab-8xa100.json"
            ),
        );
    }
    let spec = format!("nvml:{}", fake_nvml::library().display());
    let provider = gpusel::open(&spec, &config).unwrap();
    let snapshot = check_provider(provider.as_ref()).unwrap();
    assert_eq!(snapshot.gpus.len(), 8);
}

/// A provider that reports 150% utilization and more memory in use than
/// the GPU has.
struct Impossible;

#[gpusel::async_trait]
impl GpuInfoProvider for Impossible {
    fn name(&self) -> &str {
        "impossible"
    }
    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        let mut snapshot = Snapshot::new("node1", "impossible");
        let mut gpu = gpusel::Gpu::new(0, "GPU-0", "T4");
        gpu.utilization_gpu = Some(150);
        snapshot.gpus.push(gpu);
        Ok(snapshot)
    }
}

#[test]
fn the_kit_rejects_what_breaks_the_rules() {
    let v = check_provider(&Impossible).unwrap_err();
    assert_eq!(v.to_string(), "GPU 0: utilization_gpu is above 100%");
}
