//! A selectable device: a whole GPU, or one MIG instance of a MIG-enabled GPU.
//!
//! CUDA never sees a MIG-enabled GPU as a whole, only its MIG devices, so the
//! selection pipeline works on this view rather than on [`Gpu`] directly.

use std::fmt;

use crate::model::{Gpu, GpuProcess, MigDevice};

/// A borrowed view of one device a job can be given.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// The physical GPU (the parent, for a MIG device).
    pub gpu: &'a Gpu,
    /// The MIG instance, when this device is one.
    pub mig: Option<&'a MigDevice>,
}

/// Display label of a device: `3` for GPU 3, `3:1` for MIG device 1 on GPU 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceLabel {
    /// NVML index of the GPU.
    pub gpu: u32,
    /// MIG device index within the GPU.
    pub mig: Option<u32>,
}

impl fmt::Display for DeviceLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mig {
            Some(m) => write!(f, "{}:{}", self.gpu, m),
            None => write!(f, "{}", self.gpu),
        }
    }
}

impl<'a> Device<'a> {
    /// The whole-GPU device.
    pub fn whole(gpu: &'a Gpu) -> Self {
        Device { gpu, mig: None }
    }

    /// A MIG device of `gpu`.
    pub fn mig(gpu: &'a Gpu, mig: &'a MigDevice) -> Self {
        Device {
            gpu,
            mig: Some(mig),
        }
    }

    /// Every device a job could be given, in index order: whole GPUs, and for
    /// MIG-enabled GPUs their MIG devices instead.
    pub fn all(gpus: &'a [Gpu]) -> Vec<Device<'a>> {
        let mut out = Vec::with_capacity(gpus.len());
        for gpu in gpus {
            if gpu.mig_enabled() {
                out.extend(gpu.mig_devices.iter().map(|m| Device::mig(gpu, m)));
            } else {
                out.push(Device::whole(gpu));
            }
        }
        out
    }

    /// `3` or `3:1`.
    pub fn label(&self) -> DeviceLabel {
        DeviceLabel {
            gpu: self.gpu.index,
            mig: self.mig.map(|m| m.index),
        }
    }

    /// The device's UUID (`GPU-...` or `MIG-...`).
    pub fn uuid(&self) -> &'a str {
        match self.mig {
            Some(m) => &m.uuid,
            None => &self.gpu.uuid,
        }
    }

    /// For a MIG device, the UUID of the GPU it is part of.
    pub fn parent_uuid(&self) -> Option<&'a str> {
        self.mig.map(|_| self.gpu.uuid.as_str())
    }

    /// True for a MIG device.
    pub fn is_mig(&self) -> bool {
        self.mig.is_some()
    }

    /// Product name; for a MIG device the parent's name and the profile.
    pub fn name(&self) -> String {
        match self.mig.and_then(|m| m.profile.as_deref()) {
            Some(profile) => format!("{} MIG {}", self.gpu.name, profile),
            None => self.gpu.name.clone(),
        }
    }

    /// Free memory in bytes, less the outstanding reservations of the
    /// device's shares (what they reserved and have not allocated yet), so
    /// that `--mem`, best-fit and worst-fit count them as used.
    pub fn memory_free(&self) -> Option<u64> {
        let outstanding = self.lease().map_or(0, crate::LeaseStatus::outstanding);
        self.memory_free_reported()
            .map(|free| free.saturating_sub(outstanding))
    }

    /// Free memory in bytes as the driver reports it.
    pub fn memory_free_reported(&self) -> Option<u64> {
        match self.mig {
            Some(m) => m.memory_free,
            None => self.gpu.memory_free,
        }
    }

    /// Who leases or shares the device, when the snapshot says.
    pub fn lease(&self) -> Option<&'a crate::LeaseStatus> {
        match self.mig {
            Some(m) => m.lease.as_ref(),
            None => self.gpu.lease.as_ref(),
        }
    }

    /// Memory in use, in bytes.
    pub fn memory_used(&self) -> Option<u64> {
        match self.mig {
            Some(m) => m.memory_used,
            None => self.gpu.memory_used,
        }
    }

    /// Total memory in bytes.
    pub fn memory_total(&self) -> Option<u64> {
        match self.mig {
            Some(m) => m.memory_total,
            None => self.gpu.memory_total,
        }
    }

    /// GPU utilization %. NVML does not report it per MIG device: `None` there.
    pub fn utilization_gpu(&self) -> Option<u8> {
        match self.mig {
            Some(_) => None,
            None => self.gpu.utilization_gpu,
        }
    }

    /// Memory-bandwidth utilization %; `None` for MIG devices, as above.
    pub fn utilization_memory(&self) -> Option<u8> {
        match self.mig {
            Some(_) => None,
            None => self.gpu.utilization_memory,
        }
    }

    /// Power draw in milliwatts (the whole board's, for a MIG device).
    pub fn power_draw(&self) -> Option<u32> {
        self.gpu.power_draw
    }

    /// Processes on this device; `None` when the provider could not list them.
    pub fn processes(&self) -> Option<&'a [GpuProcess]> {
        match self.mig {
            Some(m) => m.processes.as_deref(),
            None => self.gpu.processes.as_deref(),
        }
    }
}
