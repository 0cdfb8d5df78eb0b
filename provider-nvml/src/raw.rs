//! NVML entry points that `nvml-wrapper` 0.13 does not wrap: the MIG
//! instance ids (`nvmlDeviceGetGpuInstanceId`, `nvmlDeviceGetComputeInstanceId`)
//! and the v1 memory call for drivers older than R510, which lack the v2 one.
//! They are called through a second handle on the same library; the dynamic
//! loader hands back the one already loaded, so NVML's state is shared.

use std::ffi::c_uint;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nvml_wrapper::Device;
use nvml_wrapper_sys::bindings::{
    NvmlLib, nvmlDevice_t, nvmlMemory_t, nvmlReturn_enum_NVML_SUCCESS, nvmlReturn_t,
};

/// The raw entry points, resolved on first use: most snapshots (no MIG, a
/// current driver) need none, and resolving NVML's ~400 symbols again costs
/// more than a whole snapshot.
pub(crate) struct RawCalls {
    library: PathBuf,
    lib: OnceLock<Option<NvmlLib>>,
}

/// Memory as the v1 call reports it.
pub(crate) struct MemoryV1 {
    pub(crate) total: u64,
    pub(crate) used: u64,
    pub(crate) free: u64,
}

impl RawCalls {
    /// The entry points of `library`, the one `Nvml` loaded.
    pub(crate) fn new(library: &Path) -> Self {
        RawCalls {
            library: library.to_path_buf(),
            lib: OnceLock::new(),
        }
    }

    /// The library, opened again on first use; a failure only costs what
    /// these calls read.
    fn lib(&self) -> Option<&NvmlLib> {
        self.lib
            .get_or_init(|| {
                // SAFETY: the library `Nvml` already loaded and initialised;
                // opening it again runs no initialisers.
                let lib = unsafe { NvmlLib::new(self.library.as_os_str()) };
                if let Err(e) = &lib {
                    tracing::debug!(error = %e, "NVML: raw entry points unavailable");
                }
                lib.ok()
            })
            .as_ref()
    }

    /// `(gpu instance id, compute instance id)` of a MIG device.
    pub(crate) fn instance_ids(&self, mig: &Device<'_>) -> (Option<u32>, Option<u32>) {
        let Some(lib) = self.lib() else {
            return (None, None);
        };
        // SAFETY: the handle comes from the live `Nvml` this provider owns.
        let handle = unsafe { mig.handle() };
        (
            read_id(lib.nvmlDeviceGetGpuInstanceId.as_ref().ok(), handle),
            read_id(lib.nvmlDeviceGetComputeInstanceId.as_ref().ok(), handle),
        )
    }

    /// The v1 memory call. Only for drivers without the v2 one: since R510
    /// v1 counts reserved memory as used.
    pub(crate) fn memory_v1(&self, device: &Device<'_>) -> Option<MemoryV1> {
        let f = self.lib()?.nvmlDeviceGetMemoryInfo.as_ref().ok()?;
        let mut m = nvmlMemory_t {
            total: 0,
            free: 0,
            used: 0,
        };
        // SAFETY: a live handle, and the call writes one `nvmlMemory_t`.
        let ret = unsafe { f(device.handle(), &mut m) };
        if ret != nvmlReturn_enum_NVML_SUCCESS {
            tracing::debug!(code = ret, "NVML: v1 memory call failed");
            return None;
        }
        Some(MemoryV1 {
            total: m.total,
            used: m.used,
            free: m.free,
        })
    }
}

type IdFn = unsafe extern "C" fn(nvmlDevice_t, *mut c_uint) -> nvmlReturn_t;

fn read_id(f: Option<&IdFn>, handle: nvmlDevice_t) -> Option<u32> {
    let f = f?;
    let mut id: c_uint = 0;
    // SAFETY: `handle` is live and `f` writes one `unsigned int`.
    let ret = unsafe { f(handle, &mut id) };
    if ret == nvmlReturn_enum_NVML_SUCCESS {
        Some(id)
    } else {
        tracing::debug!(code = ret, "NVML: MIG instance id unavailable");
        None
    }
}
