//! The few CUDA runtime calls that tch does not wrap, looked up in the
//! libcudart that libtorch_cuda itself loaded: the same runtime PyTorch would
//! use, and no second copy to find, version or ship.

use std::ffi::{CStr, c_char, c_int, c_void};

use crate::TorchError;
use crate::pci::c_text;

type CountFn = unsafe extern "C" fn(*mut c_int) -> c_int;
type SetDeviceFn = unsafe extern "C" fn(c_int) -> c_int;
type MemGetInfoFn = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;
type PropertiesFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type PciBusIdFn = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// `cudaDeviceProp` starts with `char name[256]; cudaUUID_t uuid;` in every
/// CUDA release gpusel meets (11 to 13); the rest of its layout changes
/// between releases and is never read. The buffer is far larger than the
/// struct of any of them (about 1 KiB) so the runtime never writes past it.
const PROPERTIES_WORDS: usize = 1024;
const NAME_LEN: usize = 256;

/// Function pointers into the loaded CUDA runtime.
pub struct Cudart {
    device_count: CountFn,
    set_device: SetDeviceFn,
    mem_get_info: MemGetInfoFn,
    properties: PropertiesFn,
    pci_bus_id: PciBusIdFn,
    error_string: ErrorStringFn,
}

/// The address of `name` among the libraries already loaded, if any.
fn lookup(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT only reads the loader's tables; the name is NUL-terminated.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

fn symbol(name: &'static CStr) -> Result<*mut c_void, TorchError> {
    lookup(name).ok_or(TorchError::MissingSymbol {
        symbol: name.to_str().unwrap_or("a CUDA runtime function"),
    })
}

impl Cudart {
    /// Looks every function up; fails when libtorch_cuda (and so libcudart) is not loaded.
    pub fn load() -> Result<Cudart, TorchError> {
        // CUDA 12 keeps the old `cudaGetDeviceProperties` for binaries built
        // against CUDA 11 and names the current one `_v2`; CUDA 13 has only
        // the plain name again. Both start with the name and the UUID.
        let properties = match lookup(c"cudaGetDeviceProperties_v2") {
            Some(p) => p,
            None => symbol(c"cudaGetDeviceProperties")?,
        };
        // SAFETY: each pointer is the named cudart function, whose C signature
        // the type it is cast to spells out (cuda_runtime_api.h).
        unsafe {
            Ok(Cudart {
                device_count: std::mem::transmute::<*mut c_void, CountFn>(symbol(
                    c"cudaGetDeviceCount",
                )?),
                set_device: std::mem::transmute::<*mut c_void, SetDeviceFn>(symbol(
                    c"cudaSetDevice",
                )?),
                mem_get_info: std::mem::transmute::<*mut c_void, MemGetInfoFn>(symbol(
                    c"cudaMemGetInfo",
                )?),
                properties: std::mem::transmute::<*mut c_void, PropertiesFn>(properties),
                pci_bus_id: std::mem::transmute::<*mut c_void, PciBusIdFn>(symbol(
                    c"cudaDeviceGetPCIBusId",
                )?),
                error_string: std::mem::transmute::<*mut c_void, ErrorStringFn>(symbol(
                    c"cudaGetErrorString",
                )?),
            })
        }
    }

    fn check(&self, call: &'static str, device: c_int, code: c_int) -> Result<(), TorchError> {
        if code == 0 {
            return Ok(());
        }
        Err(TorchError::Cuda {
            call,
            device,
            code,
            message: self.error_text(code),
        })
    }

    /// `cudaGetErrorString` of `code`.
    pub fn error_text(&self, code: c_int) -> String {
        // SAFETY: cudaGetErrorString accepts any code and returns a static
        // string (or NULL in old runtimes for unknown codes).
        let text = unsafe { (self.error_string)(code) };
        if text.is_null() {
            return format!("unknown CUDA error {code}");
        }
        // SAFETY: non-NULL, NUL-terminated and static.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }

    /// Why the runtime sees no device, in its own words (e.g. "CUDA driver
    /// version is insufficient for CUDA runtime version", "no CUDA-capable
    /// device is detected"); `None` when it does see one.
    pub fn no_device_reason(&self) -> Option<String> {
        let mut count: c_int = 0;
        // SAFETY: writes one int to a live local.
        let code = unsafe { (self.device_count)(&mut count) };
        match (code, count) {
            (0, n) if n > 0 => None,
            (0, _) => Some("the CUDA runtime counts no device".into()),
            (code, _) => Some(self.error_text(code)),
        }
    }

    /// Free and total memory of `device`, in bytes. This is the call that
    /// creates a CUDA context on the device, the cost that deprecates the provider.
    pub fn memory(&self, device: c_int) -> Result<(u64, u64), TorchError> {
        // SAFETY: plain value argument; the device ordinal is checked by the runtime.
        self.check("cudaSetDevice", device, unsafe {
            (self.set_device)(device)
        })?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: writes two size_t to live locals.
        self.check("cudaMemGetInfo", device, unsafe {
            (self.mem_get_info)(&mut free, &mut total)
        })?;
        Ok((free as u64, total as u64))
    }

    /// Name and UUID bytes of `device`.
    pub fn identity(&self, device: c_int) -> Result<(String, [u8; 16]), TorchError> {
        let mut buffer = vec![0u64; PROPERTIES_WORDS];
        // SAFETY: the buffer is 8-aligned and larger than any cudaDeviceProp.
        self.check("cudaGetDeviceProperties", device, unsafe {
            (self.properties)(buffer.as_mut_ptr().cast(), device)
        })?;
        let bytes: Vec<u8> = buffer.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[NAME_LEN..NAME_LEN + 16]);
        Ok((c_text(&bytes[..NAME_LEN]), uuid))
    }

    /// PCI bus id of `device`, as CUDA writes it (`0000:1B:00.0`).
    pub fn pci_bus_id(&self, device: c_int) -> Result<String, TorchError> {
        let mut buffer = [0u8; 64];
        // SAFETY: the runtime writes at most `len` bytes, NUL-terminated.
        self.check("cudaDeviceGetPCIBusId", device, unsafe {
            (self.pci_bus_id)(buffer.as_mut_ptr().cast(), buffer.len() as c_int, device)
        })?;
        Ok(c_text(&buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the real lookups and calls; on CI (no driver) every device call
    /// must come back as a typed error in the runtime's words, not a crash.
    #[test]
    fn calls_without_a_gpu_are_typed_errors() {
        if std::env::var_os("GPUSEL_TEST_HAS_GPU").is_some() {
            let rt = Cudart::load().unwrap();
            assert_eq!(rt.no_device_reason(), None);
            let (free, total) = rt.memory(0).unwrap();
            assert!(0 < free && free <= total);
            assert!(rt.identity(0).unwrap().0.contains("NVIDIA"));
            return;
        }
        let rt = Cudart::load().expect("libtorch_cuda loads a CUDA runtime");
        assert_eq!(rt.error_text(100), "no CUDA-capable device is detected");
        assert!(rt.no_device_reason().is_some());
        for e in [
            rt.memory(0).unwrap_err(),
            rt.identity(0).unwrap_err(),
            rt.pci_bus_id(0).unwrap_err(),
        ] {
            let TorchError::Cuda { device, code, .. } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(*device, 0);
            assert_ne!(*code, 0);
            assert!(
                e.to_string().ends_with("; check the GPU with nvidia-smi"),
                "{e}"
            );
        }
    }
}
