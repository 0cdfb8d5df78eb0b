//! gpusel as a library: pick idle NVIDIA GPUs from a Rust program, with the
//! same providers, strategies, site configuration and leases as the `gpusel`
//! command.

#![warn(missing_docs)]

pub use gpusel_core::*;
pub use gpusel_strategies as strategies;
