//! provider-torch: the deprecated `torch` provider of gpusel, over libtorch
//! through [`tch`](https://docs.rs/tch).
//!
//! GPU-utils, whose features gpusel unites, had a torch-based source and
//! deprecated it: asking the CUDA runtime for a GPU's free memory creates a
//! CUDA context on that GPU, which holds hundreds of MiB of its memory for as
//! long as the process lives. gpusel keeps it for machines where only a
//! PyTorch install is at hand, never as the default and never under
//! `--provider auto`.
//!
//! What libtorch can honestly give is little: whether CUDA is available, how
//! many devices it sees, and, through the CUDA runtime libtorch loads, each
//! device's total and free memory (used is total minus free), name, UUID and
//! PCI bus id (the identity gpusel needs to lease it). Every other field is
//! `None`.
//!
//! The libtorch part is behind the `libtorch` feature, so that a workspace
//! build never needs libtorch; without it this crate holds the deprecation
//! text, the errors and the pure helpers, all tested in the default build.

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg_attr(not(feature = "libtorch"), allow(dead_code))]
mod pci;

#[cfg(feature = "libtorch")]
mod cudart;
#[cfg(feature = "libtorch")]
mod provider;

#[cfg(feature = "libtorch")]
pub use provider::TorchProvider;

use gpusel_core::ProviderError;

/// The provider's name in `--provider torch` and in snapshots.
pub const NAME: &str = "torch";

/// The one-line warning gpusel prints whenever `--provider torch` is selected.
pub const DEPRECATION: &str = "--provider torch is deprecated: libtorch creates a CUDA context on every GPU it queries, \
     which holds hundreds of MiB of that GPU's memory while gpusel runs; use --provider nvml or --provider smi";

/// A failure of the torch provider. Every message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TorchError {
    /// libtorch sees no usable CUDA device: no GPU, no driver, or a CPU-only libtorch.
    #[error(
        "CUDA is not available to libtorch ({why}); run on a machine with an NVIDIA GPU and driver"
    )]
    CudaUnavailable {
        /// What libtorch reported.
        why: String,
    },
    /// libtorch has CUDA but a CUDA runtime function is not loaded in the process.
    #[error(
        "the CUDA runtime that libtorch loaded has no {symbol}; rebuild gpusel with --features torch against a CUDA build of PyTorch 2.11"
    )]
    MissingSymbol {
        /// The C symbol looked up.
        symbol: &'static str,
    },
    /// A CUDA runtime call failed.
    #[error(
        "{call} failed on CUDA device {device}: {message} (CUDA error {code}); check the GPU with nvidia-smi"
    )]
    Cuda {
        /// The CUDA runtime function.
        call: &'static str,
        /// The CUDA device ordinal.
        device: i32,
        /// `cudaError_t`.
        code: i32,
        /// `cudaGetErrorString` of the code.
        message: String,
    },
    /// Two CUDA devices sit on one PCI device: MIG instances, which this
    /// provider cannot tell apart from GPUs.
    #[error(
        "CUDA devices {first} and {second} are both on PCI device {bus_id} (MIG instances); the torch provider cannot describe MIG"
    )]
    SharedPciDevice {
        /// The first CUDA device ordinal.
        first: i32,
        /// The second CUDA device ordinal.
        second: i32,
        /// The PCI bus id both report.
        bus_id: String,
    },
}

impl From<TorchError> for ProviderError {
    fn from(e: TorchError) -> Self {
        match e {
            TorchError::CudaUnavailable { .. } => ProviderError::unavailable_because(NAME, e),
            other => ProviderError::failed_because(NAME, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deprecation_is_one_line_naming_the_cost_and_the_alternatives() {
        assert!(!DEPRECATION.contains('\n'));
        assert_eq!(
            DEPRECATION,
            "--provider torch is deprecated: libtorch creates a CUDA context on every GPU it queries, \
             which holds hundreds of MiB of that GPU's memory while gpusel runs; \
             use --provider nvml or --provider smi"
        );
    }

    #[test]
    fn no_cuda_is_unavailable_and_says_what_to_do() {
        let e: ProviderError = TorchError::CudaUnavailable {
            why: "no CUDA device".into(),
        }
        .into();
        assert!(matches!(e, ProviderError::Unavailable { .. }));
        assert_eq!(
            e.to_string(),
            "provider 'torch' is unavailable: CUDA is not available to libtorch (no CUDA device); \
             run on a machine with an NVIDIA GPU and driver"
        );
    }

    #[test]
    fn a_failed_cuda_call_names_call_device_and_code() {
        let e: ProviderError = TorchError::Cuda {
            call: "cudaMemGetInfo",
            device: 1,
            code: 2,
            message: "out of memory".into(),
        }
        .into();
        assert!(matches!(e, ProviderError::Failed { .. }));
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            matches!(
                source.downcast_ref(),
                Some(TorchError::Cuda { code: 2, .. })
            ),
            "{source:?}"
        );
        assert_eq!(
            e.to_string(),
            "provider 'torch' failed: cudaMemGetInfo failed on CUDA device 1: out of memory (CUDA error 2); check the GPU with nvidia-smi"
        );
    }
}
