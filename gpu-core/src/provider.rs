//! Where GPU state comes from.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::model::{Snapshot, SnapshotError};

/// A failure to read GPU state. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// `--provider` names no known provider.
    #[error("unknown provider '{spec}'; available: {}", available.join(", "))]
    UnknownProvider {
        /// What the user wrote.
        spec: String,
        /// Accepted forms, e.g. `file:PATH`.
        available: Vec<String>,
    },
    /// `--provider auto` found no provider that works on this machine.
    #[error(
        "no GPU provider works on this machine; give one with --provider, e.g. --provider file:PATH to read a snapshot{}",
        tried.iter().map(|t| format!("\n  {t}")).collect::<String>()
    )]
    NoProvider {
        /// Why each provider `auto` tried failed, one line each.
        tried: Vec<String>,
    },
    /// The provider exists but cannot run here (no driver, no binary, ...).
    #[error("provider '{provider}' is unavailable: {message}")]
    Unavailable {
        /// Provider name.
        provider: String,
        /// What is missing and what to do.
        message: String,
    },
    /// A snapshot file could not be read.
    #[error("cannot read snapshot file {}: {source}; check the path given to --provider file:PATH", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A snapshot file is not valid gpusel JSON.
    #[error("snapshot file {} is not a gpusel snapshot: {message}; write one with `gpusel list --json`", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Line, column and what was wrong.
        message: String,
    },
    /// A snapshot breaks the schema's rules.
    #[error("snapshot from {source_name} is invalid: {error}")]
    Invalid {
        /// Where it came from.
        source_name: String,
        /// The rule it breaks.
        error: SnapshotError,
    },
    /// The provider ran but failed.
    #[error("provider '{provider}' failed: {message}")]
    Failed {
        /// Provider name.
        provider: String,
        /// What happened and what to do.
        message: String,
    },
}

/// A source of GPU state: NVML, `nvidia-smi`, a snapshot file, a remote agent,
/// or a third-party crate. Implement this and register a factory in a
/// [`ProviderRegistry`](crate::ProviderRegistry) to add one.
#[async_trait]
pub trait GpuInfoProvider: Send + Sync {
    /// Name shown in logs and snapshots (`nvml`, `file:/path`).
    fn name(&self) -> &str;

    /// Reads the current state of every GPU. A field one GPU cannot report is
    /// `None`; only a failure to read anything at all is an error.
    async fn snapshot(&self) -> Result<Snapshot, ProviderError>;

    /// Whether the GPUs are another machine's (an agent reached over the
    /// network). Their leases live in that machine's lock directory and
    /// this machine's `CUDA_VISIBLE_DEVICES` says nothing about them, so
    /// callers take no local lease, apply no local visibility, and never run
    /// a local job on them.
    fn is_remote(&self) -> bool {
        false
    }
}
