//! MIG GPU and compute instance ids. `nvml-wrapper` 0.13 does not wrap
//! `nvmlDeviceGetGpuInstanceId`/`nvmlDeviceGetComputeInstanceId`, so they are
//! called through a second handle on the same library (the dynamic loader
//! hands back the one already loaded, so NVML's state is shared).

use std::path::Path;

use nvml_wrapper::Device;
use std::ffi::c_uint;

use nvml_wrapper_sys::bindings::{
    NvmlLib, nvmlDevice_t, nvmlReturn_enum_NVML_SUCCESS, nvmlReturn_t,
};

/// The two raw entry points, when the library has them.
pub(crate) struct InstanceIds {
    lib: Option<NvmlLib>,
}

impl InstanceIds {
    /// Loads them from `library`; a failure only costs the two ids.
    pub(crate) fn load(library: &Path) -> Self {
        // SAFETY: the same library `Nvml` already loaded and initialised;
        // loading it runs no initialisers a second time.
        let lib = unsafe { NvmlLib::new(library.as_os_str()) };
        if let Err(e) = &lib {
            tracing::debug!(error = %e, "MIG instance ids unavailable");
        }
        InstanceIds { lib: lib.ok() }
    }

    /// `(gpu instance id, compute instance id)` of a MIG device.
    pub(crate) fn of(&self, mig: &Device<'_>) -> (Option<u32>, Option<u32>) {
        let Some(lib) = &self.lib else {
            return (None, None);
        };
        // SAFETY: the handle comes from the live `Nvml` this provider owns.
        let handle = unsafe { mig.handle() };
        (
            read_id(lib.nvmlDeviceGetGpuInstanceId.as_ref().ok(), handle),
            read_id(lib.nvmlDeviceGetComputeInstanceId.as_ref().ok(), handle),
        )
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
        tracing::debug!(code = ret, "MIG instance id unavailable");
        None
    }
}
