//! The providers this binary knows: the facade's, in the order `--provider
//! auto` tries them (NVML, then nvidia-smi).

use gpusel_core::{GpuInfoProvider, ProviderError, ProviderSpec, Snapshot};

use crate::config::Config;
use crate::failure::Failure;
use crate::stall;

/// Opens the provider the config (or `--provider`) names, saying on stderr
/// what it waits on should that take long (NVML init on a hung driver).
pub fn open(config: &Config) -> Result<Box<dyn GpuInfoProvider>, Failure> {
    let spec = &config.provider.value;
    // Before opening: the warning stands whether or not libtorch then works.
    let parsed = ProviderSpec::parse(spec);
    if parsed.name == gpusel::TORCH && parsed.argument.is_none() {
        warn_torch();
    }
    let what = match parsed.name.as_str() {
        // `auto` tries NVML first.
        "auto" | "nvml" => "NVML to initialise".to_string(),
        _ => format!("provider '{spec}' to start"),
    };
    let _watch = stall::watch(what, stall::DRIVER_HINT);
    Ok(gpusel::open(spec, config)?)
}

/// `provider`, saying on stderr what it waits on when a snapshot takes long.
pub fn watched(provider: Box<dyn GpuInfoProvider>) -> Box<dyn GpuInfoProvider> {
    Box::new(Watched(provider))
}

struct Watched(Box<dyn GpuInfoProvider>);

impl Watched {
    /// Says on stderr, should the read take long, what it waits on.
    fn watch(&self) -> stall::Watchdog {
        let hint = if self.0.is_remote() {
            stall::REMOTE_HINT
        } else {
            stall::DRIVER_HINT
        };
        stall::watch(
            format!("provider '{}' to read the GPUs", self.0.name()),
            hint,
        )
    }
}

#[gpusel_core::async_trait]
impl GpuInfoProvider for Watched {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        let _watch = self.watch();
        self.0.snapshot().await
    }

    async fn snapshot_without_topology(&self) -> Result<Snapshot, ProviderError> {
        let _watch = self.watch();
        self.0.snapshot_without_topology().await
    }

    fn is_remote(&self) -> bool {
        self.0.is_remote()
    }
}

#[cfg(feature = "torch")]
fn warn_torch() {
    crate::out::eprint_line("warning: ", gpusel::TORCH_DEPRECATION);
}

#[cfg(not(feature = "torch"))]
fn warn_torch() {}
