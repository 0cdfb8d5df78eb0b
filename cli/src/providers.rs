//! The providers this binary knows: the facade's, in the order `--provider
//! auto` tries them (NVML, then nvidia-smi).

use gpusel_core::{GpuInfoProvider, ProviderSpec};

use crate::config::Config;
use crate::failure::Failure;

/// Opens the provider the config (or `--provider`) names.
pub fn open(config: &Config) -> Result<Box<dyn GpuInfoProvider>, Failure> {
    let spec = &config.provider.value;
    // Before opening: the warning stands whether or not libtorch then works.
    let torch = ProviderSpec::parse(spec);
    if torch.name == gpusel::TORCH && torch.argument.is_none() {
        warn_torch();
    }
    Ok(gpusel::open(spec, config)?)
}

#[cfg(feature = "torch")]
fn warn_torch() {
    crate::out::eprint_line("warning: ", gpusel::TORCH_DEPRECATION);
}

#[cfg(not(feature = "torch"))]
fn warn_torch() {}
