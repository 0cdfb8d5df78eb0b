//! The C types of `nvml.h` that cross the boundary, laid out exactly as
//! there (checked against the header's sizes in the tests below).

use std::ffi::c_char;

/// `nvmlReturn_t`.
pub type Ret = u32;

/// `NVML_SUCCESS`.
pub const SUCCESS: Ret = 0;
/// `NVML_ERROR_UNINITIALIZED`.
pub const UNINITIALIZED: Ret = 1;
/// `NVML_ERROR_INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: Ret = 2;
/// `NVML_ERROR_NOT_SUPPORTED`.
pub const NOT_SUPPORTED: Ret = 3;
/// `NVML_ERROR_NO_PERMISSION`.
pub const NO_PERMISSION: Ret = 4;
/// `NVML_ERROR_NOT_FOUND`.
pub const NOT_FOUND: Ret = 6;
/// `NVML_ERROR_INSUFFICIENT_SIZE`.
pub const INSUFFICIENT_SIZE: Ret = 7;
/// `NVML_ERROR_DRIVER_NOT_LOADED`.
pub const DRIVER_NOT_LOADED: Ret = 9;
/// `NVML_ERROR_FUNCTION_NOT_FOUND`.
pub const FUNCTION_NOT_FOUND: Ret = 13;
/// `NVML_ERROR_GPU_IS_LOST`.
pub const GPU_IS_LOST: Ret = 15;
/// `NVML_ERROR_LIB_RM_VERSION_MISMATCH`.
pub const LIB_RM_VERSION_MISMATCH: Ret = 18;
/// `NVML_ERROR_ARGUMENT_VERSION_MISMATCH`.
pub const ARGUMENT_VERSION_MISMATCH: Ret = 25;
/// `NVML_ERROR_UNKNOWN`.
pub const UNKNOWN: Ret = 999;

/// `NVML_VALUE_NOT_AVAILABLE` as an `unsigned long long`.
pub const VALUE_NOT_AVAILABLE: u64 = u64::MAX;
/// What a process's instance ids read as outside MIG.
pub const NO_INSTANCE: u32 = 0xFFFF_FFFF;

/// `nvmlMemory_t` (v1).
#[repr(C)]
pub struct Memory {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
pub struct MemoryV2 {
    pub version: u32,
    pub total: u64,
    pub reserved: u64,
    pub free: u64,
    pub used: u64,
}

/// `nvmlMemory_v2`: `NVML_STRUCT_VERSION(Memory, 2)`.
pub const MEMORY_V2: u32 = (std::mem::size_of::<MemoryV2>() as u32) | (2 << 24);

/// `nvmlUtilization_t`.
#[repr(C)]
pub struct Utilization {
    pub gpu: u32,
    pub memory: u32,
}

/// `nvmlPciInfo_t` (the v2/v3 layout).
#[repr(C)]
pub struct PciInfo {
    pub bus_id_legacy: [c_char; 16],
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    pub pci_device_id: u32,
    pub pci_sub_system_id: u32,
    pub bus_id: [c_char; 32],
}

/// `nvmlProcessInfo_v1_t`, filled by the unversioned process calls.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessInfoV1 {
    pub pid: u32,
    pub used_gpu_memory: u64,
}

/// `nvmlProcessInfo_t` (= `_v2_t`), filled by the `_v2` and `_v3` calls.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcessInfo {
    pub pid: u32,
    pub used_gpu_memory: u64,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
}

/// The text `nvmlErrorString` gives for `ret`, NUL-terminated.
/// `nvmlSample_t`: a CPU timestamp in microseconds and an 8-byte
/// `nvmlValue_t` union, of which utilization samples use `uiVal`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sample {
    /// Microseconds since the epoch.
    pub time_stamp: u64,
    /// `nvmlValue_t`; the low 4 bytes are `uiVal` on little-endian.
    pub value: u64,
}

/// `NVML_VALUE_TYPE_UNSIGNED_INT`.
pub const VALUE_TYPE_UNSIGNED_INT: u32 = 1;
/// `NVML_GPU_UTILIZATION_SAMPLES`.
pub const GPU_UTILIZATION_SAMPLES: u32 = 1;
/// `NVML_MEMORY_UTILIZATION_SAMPLES`.
pub const MEMORY_UTILIZATION_SAMPLES: u32 = 2;

pub fn error_string(ret: Ret) -> &'static [u8] {
    match ret {
        SUCCESS => b"Success\0",
        UNINITIALIZED => b"Uninitialized\0",
        INVALID_ARGUMENT => b"Invalid Argument\0",
        NOT_SUPPORTED => b"Not Supported\0",
        NO_PERMISSION => b"Insufficient Permissions\0",
        NOT_FOUND => b"Not Found\0",
        INSUFFICIENT_SIZE => b"Insufficient Size\0",
        DRIVER_NOT_LOADED => b"Driver Not Loaded\0",
        FUNCTION_NOT_FOUND => b"Function Not Found\0",
        GPU_IS_LOST => b"GPU is lost\0",
        LIB_RM_VERSION_MISMATCH => b"Driver/library version mismatch\0",
        ARGUMENT_VERSION_MISMATCH => b"Argument version mismatch\0",
        _ => b"Unknown Error\0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // Sizes and offsets from nvml.h on x86_64 (what pynvml's ctypes
    // structures also compute).
    #[test]
    fn layouts_match_nvml_h() {
        assert_eq!(size_of::<Memory>(), 24);
        assert_eq!(size_of::<MemoryV2>(), 40);
        assert_eq!(offset_of!(MemoryV2, total), 8);
        assert_eq!(MEMORY_V2, 0x0200_0028);
        assert_eq!(size_of::<Utilization>(), 8);
        assert_eq!(size_of::<PciInfo>(), 68);
        assert_eq!(offset_of!(PciInfo, bus_id), 36);
        assert_eq!(size_of::<ProcessInfoV1>(), 16);
        assert_eq!(size_of::<ProcessInfo>(), 24);
        assert_eq!(offset_of!(ProcessInfo, gpu_instance_id), 16);
        assert_eq!(size_of::<Sample>(), 16);
    }
}
