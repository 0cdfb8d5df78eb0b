//! Why NVML could not be started, in words that say what went wrong (a
//! command line adds which provider to try instead).

use std::path::{Path, PathBuf};

use nvml_wrapper::error::NvmlError;

/// NVML could not be loaded or initialised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The library could not be loaded at all.
    #[error(
        "cannot load the NVML library {}: {reason}; is the NVIDIA driver installed? set {} to the library's path",
        library.display(),
        crate::LIB_ENV
    )]
    Load {
        /// What was loaded.
        library: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library lacks `nvmlInit_v2`: not NVML, or far too old.
    #[error(
        "{} is not a usable NVML library ({reason}); point {} at the driver's libnvidia-ml.so.1",
        library.display(),
        crate::LIB_ENV
    )]
    NotNvml {
        /// What was loaded.
        library: PathBuf,
        /// The missing symbol.
        reason: String,
    },
    /// The kernel driver is not running.
    #[error("no NVIDIA driver found: is this a GPU machine? load the nvidia kernel module")]
    DriverNotLoaded,
    /// The library and the kernel module are of different versions.
    #[error(
        "driver/library version mismatch: the NVIDIA driver was updated but the old kernel module is still loaded; reboot or reload the nvidia module"
    )]
    VersionMismatch,
    /// No permission to open the device nodes.
    #[error(
        "no permission to talk to the NVIDIA driver: check that this user can open /dev/nvidiactl and /dev/nvidia*"
    )]
    NoPermission,
    /// Anything else.
    #[error("NVML failed to initialise: {0}")]
    Other(#[source] NvmlError),
}

impl InitError {
    pub(crate) fn from_nvml(library: &Path, e: NvmlError) -> Self {
        match e {
            NvmlError::LibloadingError(e) => InitError::Load {
                library: library.to_path_buf(),
                reason: e.to_string(),
            },
            NvmlError::FailedToLoadSymbol(reason) => InitError::NotNvml {
                library: library.to_path_buf(),
                reason,
            },
            NvmlError::DriverNotLoaded => InitError::DriverNotLoaded,
            NvmlError::LibRmVersionMismatch => InitError::VersionMismatch,
            NvmlError::NoPermission => InitError::NoPermission,
            other => InitError::Other(other),
        }
    }
}

/// NVML was initialised but a snapshot could not be taken at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// `nvmlDeviceGetCount` failed, so no GPU can be listed.
    #[error("NVML cannot count the GPUs: {0}")]
    Count(#[source] NvmlError),
}
