//! The providers this binary knows, in the order `--provider auto` tries them.

use gpu_core::ProviderRegistry;

/// Every provider compiled into `gpusel`. `auto` tries the auto-eligible ones
/// in registration order: NVML first, then nvidia-smi.
pub fn registry() -> ProviderRegistry {
    #[allow(unused_mut)]
    let mut registry = ProviderRegistry::with_builtin();
    // NVML (issue 3) registers here, first, as the default.
    registry.register(
        provider_nvml::NAME,
        "nvml[:LIBRARY]",
        "NVIDIA's management library (the default); LIBRARY or $GPUSEL_NVML_LIB overrides libnvidia-ml.so.1",
        true,
        |spec| {
            let provider = provider_nvml::open_spec(spec.argument.as_deref())?;
            Ok(Box::new(provider))
        },
    );
    // nvidia-smi (issue 4) registers here, after NVML.
    registry.register(
        provider_smi::NAME,
        "smi[:PATH]",
        "run nvidia-smi (PATH, $GPUSEL_NVIDIA_SMI or on $PATH; timeout $GPUSEL_SMI_TIMEOUT, default 10s)",
        true,
        |spec| Ok(Box::new(provider_smi::SmiProvider::from_env(spec.argument.as_deref())?)),
    );
    registry
}
