//! provider-nvml: gpusel's default [`GpuInfoProvider`], over NVML through
//! [`nvml_wrapper`].
//!
//! NVML is loaded at run time (`dlopen` of `libnvidia-ml.so.1`), so gpusel
//! builds and starts on machines without a driver; [`NvmlProvider::open`]
//! fails fast there, with a message that says what to do, so that
//! `--provider auto` can fall through to the next provider. The library path
//! can be overridden ([`LIB_ENV`], or `nvml:PATH`), which is how the tests
//! point it at `fake-nvml`.
//!
//! Every field is read by its own NVML call; a call that fails leaves that
//! field `None` (logged at debug level) and never fails the scan. Only a GPU
//! whose handle or UUID cannot be had at all is left out, with a warning.

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod processes;
mod raw;
mod read;
mod topology;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use gpusel_core::{GpuInfoProvider, ProviderError, Snapshot};
use nvml_wrapper::Nvml;

pub use error::{InitError, ScanError};

/// Environment variable that names the NVML library to load instead of
/// `libnvidia-ml.so.1` (a path, or a name the dynamic linker resolves).
pub const LIB_ENV: &str = "GPUSEL_NVML_LIB";

/// The library NVML is normally loaded from.
pub const DEFAULT_LIB: &str = "libnvidia-ml.so.1";

/// Provider name in snapshots and logs.
pub const NAME: &str = "nvml";

/// Reads GPU state through NVML. Initialised once and kept: NVML init takes
/// tens to hundreds of milliseconds on real hardware, every query after it
/// microseconds.
pub struct NvmlProvider {
    nvml: Nvml,
    raw: raw::RawCalls,
    topology: topology::Cache,
    library: PathBuf,
    idle_window: Duration,
}

impl std::fmt::Debug for NvmlProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlProvider")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

impl NvmlProvider {
    /// Loads and initialises NVML from `library`, or else from [`LIB_ENV`],
    /// or else from [`DEFAULT_LIB`].
    pub fn open(library: Option<PathBuf>) -> Result<Self, InitError> {
        let library = library
            .or_else(|| {
                std::env::var_os(LIB_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LIB));
        let path = OsString::from(library.as_os_str());
        let nvml = Nvml::builder()
            .lib_path(&path)
            .init()
            .map_err(|e| InitError::from_nvml(&library, e))?;
        let raw = raw::RawCalls::new(&library);
        tracing::debug!(library = %library.display(), "NVML initialised");
        Ok(NvmlProvider {
            nvml,
            raw,
            topology: topology::Cache::default(),
            library,
            idle_window: gpusel_core::config::DEFAULT_IDLE_WINDOW,
        })
    }

    /// Reads the driver's utilization samples over the last `window`
    /// (`Duration::ZERO`: the instant reading only), for the idle rule; the
    /// default is [`DEFAULT_IDLE_WINDOW`](gpusel_core::config::DEFAULT_IDLE_WINDOW).
    pub fn with_idle_window(mut self, window: Duration) -> Self {
        self.idle_window = window;
        self
    }

    /// The library this provider loaded.
    pub fn library(&self) -> &std::path::Path {
        &self.library
    }

    /// Reads every GPU now. What cannot be read is `None`, or left out with
    /// a warning when a whole GPU cannot be read; only a failure to count
    /// the GPUs is an error.
    pub fn read(&self) -> Result<Snapshot, ScanError> {
        let mut snapshot = read::snapshot(&self.nvml, &self.raw, self.idle_window)?;
        self.topology.fill(&self.nvml, &mut snapshot.gpus);
        Ok(snapshot)
    }

    /// [`read`](Self::read) without the topology (NUMA node, CPU affinity,
    /// NVLinks, PCIe paths), whose first read costs a call per GPU pair and
    /// per NVLink: what a pick of one GPU needs.
    pub fn read_without_topology(&self) -> Result<Snapshot, ScanError> {
        read::snapshot(&self.nvml, &self.raw, self.idle_window)
    }
}

#[async_trait]
impl GpuInfoProvider for NvmlProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        validated(self.read())
    }

    async fn snapshot_without_topology(&self) -> Result<Snapshot, ProviderError> {
        validated(self.read_without_topology())
    }
}

fn validated(read: Result<Snapshot, ScanError>) -> Result<Snapshot, ProviderError> {
    read.map_err(|e| ProviderError::failed_because(NAME, e))?
        .validated(NAME)
}

/// Opens the provider for a `--provider nvml` or `nvml:PATH` spec: the
/// argument, when given, is the library to load.
pub fn open_spec(argument: Option<&str>) -> Result<NvmlProvider, ProviderError> {
    let library = argument.filter(|a| !a.is_empty()).map(PathBuf::from);
    NvmlProvider::open(library).map_err(|e| ProviderError::unavailable_because(NAME, e))
}
