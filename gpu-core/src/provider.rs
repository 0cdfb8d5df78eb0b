//! Where GPU state comes from.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::model::{Snapshot, SnapshotError};

/// A failure to read GPU state. Messages say what went wrong, and what to do
/// where that needs no flag: a command line adds its own hint (gpusel's CLI
/// names the flag).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// `--provider` names no known provider.
    #[error("unknown provider '{spec}'; {}", unknown_tail(available, plugin.as_deref()))]
    UnknownProvider {
        /// What the user wrote.
        spec: String,
        /// Accepted forms, e.g. `file:PATH`.
        available: Vec<String>,
        /// The plugin executable looked for on `PATH` and not found
        /// (`gpusel-provider-NAME`), when one was.
        plugin: Option<String>,
    },
    /// `--provider auto` found no provider that works on this machine.
    #[error(
        "no GPU provider works on this machine{}",
        tried.iter().map(|t| format!("\n  {t}")).collect::<String>()
    )]
    NoProvider {
        /// Why each provider `auto` tried failed, one line each.
        tried: Vec<String>,
    },
    /// The provider exists but cannot run here (no driver, no binary, ...).
    /// Build it with [`ProviderError::unavailable`] or
    /// [`ProviderError::unavailable_because`].
    #[error("provider '{provider}' is unavailable: {message}")]
    Unavailable {
        /// Provider name.
        provider: String,
        /// What is missing (the source's words, when there is one).
        message: String,
        /// The provider's own error, for callers that want its type.
        #[source]
        source: Option<BoxedError>,
    },
    /// A snapshot file could not be read.
    #[error("cannot read snapshot file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The snapshot path is not a regular file (a FIFO, a device, a
    /// directory): reading it could block for good or never end.
    #[error("cannot read snapshot file {}: it is {kind}, not a regular file; gpusel reads snapshots only from regular files", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead: `a FIFO (named pipe)`, `a character device`, ...
        kind: String,
    },
    /// A snapshot file is larger than any snapshot gpusel writes.
    #[error("snapshot file {} is larger than {} MiB, the most gpusel reads; it is not a gpusel snapshot", path.display(), limit >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes ([`MAX_SNAPSHOT_FILE`](crate::file_provider::MAX_SNAPSHOT_FILE)).
        limit: u64,
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
        #[source]
        error: SnapshotError,
    },
    /// The provider ran but failed. Build it with [`ProviderError::failed`]
    /// or [`ProviderError::failed_because`].
    #[error("provider '{provider}' failed: {message}")]
    Failed {
        /// Provider name.
        provider: String,
        /// What happened (the source's words, when there is one).
        message: String,
        /// The provider's own error, for callers that want its type.
        #[source]
        source: Option<BoxedError>,
    },
}

/// `available: a, b; no plugin P on PATH`, leaving out what is empty.
fn unknown_tail(available: &[String], plugin: Option<&str>) -> String {
    let mut parts = Vec::new();
    if !available.is_empty() {
        parts.push(format!("available: {}", available.join(", ")));
    }
    if let Some(p) = plugin {
        parts.push(format!("no plugin {p} on PATH"));
    }
    parts.join("; ")
}

/// A provider's own error, kept as the source of a [`ProviderError`].
pub type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl ProviderError {
    /// [`ProviderError::Unavailable`] with a message and no source.
    pub fn unavailable(provider: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Unavailable {
            provider: provider.into(),
            message: message.into(),
            source: None,
        }
    }

    /// [`ProviderError::Unavailable`] because of `error`: its text is the
    /// message and the error itself the [`source`](std::error::Error::source),
    /// so a caller can downcast it to the provider's error type.
    pub fn unavailable_because(
        provider: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ProviderError::Unavailable {
            provider: provider.into(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// [`ProviderError::Failed`] with a message and no source.
    pub fn failed(provider: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Failed {
            provider: provider.into(),
            message: message.into(),
            source: None,
        }
    }

    /// [`ProviderError::Failed`] because of `error`, kept as the source (see
    /// [`ProviderError::unavailable_because`]).
    pub fn failed_because(
        provider: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ProviderError::Failed {
            provider: provider.into(),
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

/// A source of GPU state: NVML, `nvidia-smi`, a snapshot file, a remote agent,
/// or a third-party crate. Implement this and register a factory in a
/// [`ProviderRegistry`](crate::ProviderRegistry) to add one.
///
/// The trait is async through [`async_trait`](crate::async_trait), which
/// gpusel-core re-exports, so an implementation needs no dependency of its
/// own. A provider that reads local state synchronously does its work inside
/// `snapshot()`; call it with [`block_on`](crate::block_on) where no runtime
/// is at hand:
///
/// ```
/// use gpusel_core::{Gpu, GpuInfoProvider, ProviderError, Snapshot};
///
/// /// Two GPUs that are always idle.
/// struct Fixed;
///
/// #[gpusel_core::async_trait]
/// impl GpuInfoProvider for Fixed {
///     fn name(&self) -> &str {
///         "fixed"
///     }
///
///     async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
///         let mut snapshot = Snapshot::local(self.name());
///         for i in 0..2 {
///             let mut gpu = Gpu::new(i, format!("GPU-{i}"), "NVIDIA A100");
///             gpu.utilization_gpu = Some(0);
///             gpu.processes = Some(Vec::new());
///             snapshot.gpus.push(gpu);
///         }
///         // Checks unique indices and UUIDs, as callers rely on.
///         snapshot.validated(self.name())
///     }
/// }
///
/// let snapshot = gpusel_core::block_on(Fixed.snapshot()).unwrap();
/// assert_eq!(snapshot.gpus.len(), 2);
/// assert_eq!(snapshot.provider, "fixed");
/// ```
#[async_trait]
pub trait GpuInfoProvider: Send + Sync {
    /// Name shown in logs and snapshots (`nvml`, `file:/path`).
    fn name(&self) -> &str;

    /// Reads the current state of every GPU. A field one GPU cannot report is
    /// `None`; only a failure to read anything at all is an error.
    async fn snapshot(&self) -> Result<Snapshot, ProviderError>;

    /// [`snapshot`](Self::snapshot) for a pick of one device, which has no
    /// use for topology ([`Gpu::links`](crate::Gpu::links), NUMA node, CPU
    /// affinity): a provider for which reading it costs may leave it out.
    /// Default: the whole snapshot.
    async fn snapshot_without_topology(&self) -> Result<Snapshot, ProviderError> {
        self.snapshot().await
    }

    /// Whether the GPUs are another machine's (an agent reached over the
    /// network). Their leases live in that machine's lock directory and
    /// this machine's `CUDA_VISIBLE_DEVICES` says nothing about them, so
    /// callers take no local lease, apply no local visibility, and never run
    /// a local job on them.
    fn is_remote(&self) -> bool {
        false
    }
}
