//! From what the CUDA runtime says about a device to gpusel's identity of a
//! GPU: NVML index, UUID and PCI bus id in the form NVML and nvidia-smi write.

use std::fmt;
use std::path::Path;

/// Where the NVIDIA kernel driver lists every GPU, one directory per PCI
/// device, whatever `CUDA_VISIBLE_DEVICES` hides from CUDA.
pub const PROC_GPUS: &str = "/proc/driver/nvidia/gpus";

/// A PCI address; ordered as NVML orders GPUs (by PCI bus id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciAddr {
    domain: u32,
    bus: u8,
    device: u8,
    function: u8,
}

impl PciAddr {
    /// Parses `domain:bus:device.function` in hex, with a 4-digit domain (CUDA,
    /// the kernel) or an 8-digit one (NVML), in any case.
    pub fn parse(text: &str) -> Option<PciAddr> {
        let mut parts = text.trim().split(':');
        let (domain, bus, rest) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (device, function) = rest.split_once('.')?;
        Some(PciAddr {
            domain: u32::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            device: u8::from_str_radix(device, 16).ok()?,
            function: u8::from_str_radix(function, 16).ok()?,
        })
    }
}

impl fmt::Display for PciAddr {
    /// NVML's form, `00000000:1B:00.0`, so that snapshots from every provider agree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:08X}:{:02X}:{:02X}.{:X}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// The NVIDIA GPUs the kernel driver lists in `dir`, in NVML index order;
/// `None` when the directory cannot be read (no driver, a container without
/// `/proc/driver`).
pub fn driver_gpus(dir: &Path) -> Option<Vec<PciAddr>> {
    let mut gpus: Vec<PciAddr> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| PciAddr::parse(&entry.ok()?.file_name().to_string_lossy()))
        .collect();
    gpus.sort();
    Some(gpus)
}

/// The NVML index of the GPU at `addr`: its rank among all GPUs by PCI bus
/// id. CUDA's own ordinal would be wrong twice over: CUDA orders fastest
/// first unless `CUDA_DEVICE_ORDER=PCI_BUS_ID`, and counts only the devices
/// `CUDA_VISIBLE_DEVICES` leaves it.
pub fn nvml_index(addr: PciAddr, all: &[PciAddr]) -> Option<u32> {
    all.iter()
        .position(|a| *a == addr)
        .and_then(|i| u32::try_from(i).ok())
}

/// A CUDA `cudaUUID_t` in NVML's form, `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The text of a NUL-terminated C buffer (a device name), lossily.
pub fn c_text(buffer: &[u8]) -> String {
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_of_cuda_the_kernel_and_nvml_are_the_same_address() {
        let cuda = PciAddr::parse("0000:1B:00.0").unwrap();
        assert_eq!(PciAddr::parse("0000:1b:00.0"), Some(cuda));
        assert_eq!(PciAddr::parse("00000000:1B:00.0"), Some(cuda));
        assert_eq!(cuda.to_string(), "00000000:1B:00.0");
        for bad in [
            "",
            "1B:00.0",
            "0000:1B:00",
            "0000:1B:00.0:1",
            "zz:1B:00.0",
            "0000:1B0:00.0",
        ] {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn index_is_the_rank_by_bus_id_among_all_gpus_even_hidden_ones() {
        let dir = std::env::temp_dir().join(format!("gpusel-torch-pci-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for name in ["0000:b1:00.0", "0000:1b:00.0", "0000:3d:00.0"] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("README"), "").unwrap();
        let all = driver_gpus(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(all.len(), 3);
        // CUDA_VISIBLE_DEVICES=2 leaves CUDA one device, its ordinal 0: NVML says 2.
        let b1 = PciAddr::parse("0000:B1:00.0").unwrap();
        assert_eq!(nvml_index(b1, &all), Some(2));
        assert_eq!(
            nvml_index(PciAddr::parse("0000:1B:00.0").unwrap(), &all),
            Some(0)
        );
        assert_eq!(
            nvml_index(PciAddr::parse("0000:FF:00.0").unwrap(), &all),
            None
        );
        assert_eq!(driver_gpus(Path::new("/nonexistent/gpusel")), None);
    }

    #[test]
    fn uuid_and_name_read_as_nvidia_smi_writes_them() {
        let bytes = [
            0x6e, 0x1f, 0x3b, 0x3a, 0x4c, 0x52, 0x8f, 0x0e, 0x9d, 0x1a, 0x00, 0x11, 0x22, 0x33,
            0x44, 0xff,
        ];
        assert_eq!(
            format_uuid(&bytes),
            "GPU-6e1f3b3a-4c52-8f0e-9d1a-0011223344ff"
        );
        let mut name = [0u8; 256];
        name[..21].copy_from_slice(b"NVIDIA H100 80GB HBM3");
        assert_eq!(c_text(&name), "NVIDIA H100 80GB HBM3");
        assert_eq!(c_text(b"no terminator"), "no terminator");
    }
}
