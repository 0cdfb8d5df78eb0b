//! `nvmlDevice_t` values. NVML hands out opaque pointers; the fake encodes
//! which device they name in the pointer value itself, never dereferenced,
//! so a handle survives the scenario file being rewritten.

use std::ffi::c_void;

use crate::abi::{self, Ret};
use crate::scenario::{Device, MigDevice, Scenario};

/// `nvmlDevice_t`.
pub type Handle = *mut c_void;

const MIG_BITS: usize = 8;

/// A handle for GPU `gpu`, or its MIG device `mig`.
pub fn encode(gpu: usize, mig: Option<usize>) -> Handle {
    let mig = mig.map_or(0, |m| m + 1);
    // Offset so that no handle is null or a small integer.
    (((gpu + 1) << MIG_BITS | mig) << 4) as Handle
}

/// What a handle names.
pub enum Target<'a> {
    /// A physical GPU, with its index.
    Gpu(usize, &'a Device),
    /// A MIG device, with its parent's index.
    Mig(usize, &'a MigDevice),
}

/// Resolves `handle` against the scenario as it is now.
pub fn resolve(scenario: &Scenario, handle: Handle) -> Result<Target<'_>, Ret> {
    let raw = handle as usize;
    if raw & 0xF != 0 || raw >> 4 >> MIG_BITS == 0 {
        return Err(abi::INVALID_ARGUMENT);
    }
    let raw = raw >> 4;
    let gpu = (raw >> MIG_BITS) - 1;
    let mig = raw & ((1 << MIG_BITS) - 1);
    let device = scenario.devices.get(gpu).ok_or(abi::INVALID_ARGUMENT)?;
    if let Some(e) = device.handle_error {
        return Err(crate::exports::handle_error_code(e));
    }
    if mig == 0 {
        return Ok(Target::Gpu(gpu, device));
    }
    let m = device
        .mig_devices
        .get(mig - 1)
        .ok_or(abi::INVALID_ARGUMENT)?;
    Ok(Target::Mig(gpu, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        let mut s = Scenario::default();
        for _ in 0..3 {
            let mut d = Device::default();
            d.mig_devices.push(MigDevice::default());
            d.mig_devices.push(MigDevice::default());
            s.devices.push(d);
        }
        assert!(matches!(
            resolve(&s, encode(2, None)),
            Ok(Target::Gpu(2, _))
        ));
        assert!(matches!(
            resolve(&s, encode(1, Some(1))),
            Ok(Target::Mig(1, _))
        ));
        assert!(resolve(&s, encode(3, None)).is_err());
        assert!(resolve(&s, encode(0, Some(2))).is_err());
        assert!(resolve(&s, std::ptr::null_mut()).is_err());
        assert!(resolve(&s, 0x1235 as Handle).is_err());
    }
}
