//! gpusel as a library: pick idle NVIDIA GPUs from a Rust program, with the
//! same providers, strategies, site configuration and leases as the `gpusel`
//! command.
//!
//! A third-party provider is either a crate implementing
//! [`GpuInfoProvider`], registered in a [`ProviderRegistry`], or, for the
//! shipped binary, an executable `gpusel-provider-NAME` on `PATH` that prints
//! one snapshot ([`PluginProvider`], installed with [`plugin_fallback`]).

#![warn(missing_docs)]

mod plugin;

pub use gpusel_core::*;
pub use gpusel_strategies as strategies;
pub use plugin::{
    DEFAULT_PLUGIN_TIMEOUT, MAX_PLUGIN_OUTPUT, PLUGIN_PREFIX, PluginProvider, is_plugin_name,
    plugin_fallback,
};
