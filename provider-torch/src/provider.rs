//! [`TorchProvider`]: GPU state as libtorch and its CUDA runtime see it.

use std::path::Path;

use async_trait::async_trait;
use gpusel_core::{Gpu, GpuInfoProvider, ProviderError, Snapshot};

use crate::cudart::Cudart;
use crate::pci::{self, PciAddr};
use crate::{NAME, TorchError};

/// The deprecated `torch` provider. Opening it creates no CUDA context;
/// every [`snapshot`](GpuInfoProvider::snapshot) creates one on each GPU
/// CUDA sees (see [`DEPRECATION`](crate::DEPRECATION)).
#[derive(Debug)]
pub struct TorchProvider {
    devices: i32,
}

impl TorchProvider {
    /// Asks libtorch whether CUDA is available and how many devices it sees.
    /// Fails with [`TorchError::CudaUnavailable`] on a machine without a
    /// usable NVIDIA GPU, and says why in the CUDA runtime's words.
    pub fn open() -> Result<TorchProvider, TorchError> {
        let count = tch::Cuda::device_count();
        if tch::Cuda::is_available() && count > 0 {
            return Ok(TorchProvider {
                devices: i32::try_from(count).unwrap_or(i32::MAX),
            });
        }
        let why = if torch_cuda_loaded() {
            match Cudart::load().ok().and_then(|rt| rt.no_device_reason()) {
                Some(reason) => format!("libtorch sees no CUDA device: {reason}"),
                None => "libtorch sees no CUDA device".to_string(),
            }
        } else {
            // A CPU-only PyTorch, or a link that dropped libtorch_cuda as unneeded.
            "libtorch_cuda is not linked into this gpusel; rebuild it with --features torch \
             against a CUDA build of PyTorch"
                .to_string()
        };
        Err(TorchError::CudaUnavailable { why })
    }

    /// How many CUDA devices libtorch sees (after `CUDA_VISIBLE_DEVICES`).
    pub fn device_count(&self) -> i32 {
        self.devices
    }

    fn read(&self) -> Result<Snapshot, TorchError> {
        let cudart = Cudart::load()?;
        let all = pci::driver_gpus(Path::new(pci::PROC_GPUS));
        let mut snapshot = Snapshot::local(NAME);
        let mut seen: Vec<(PciAddr, i32)> = Vec::new();
        for device in 0..self.devices {
            let (name, uuid) = cudart.identity(device)?;
            let addr = PciAddr::parse(&cudart.pci_bus_id(device)?);
            if let Some(addr) = addr {
                if let Some(&(_, first)) = seen.iter().find(|(a, _)| *a == addr) {
                    return Err(TorchError::SharedPciDevice {
                        first,
                        second: device,
                        bus_id: addr.to_string(),
                    });
                }
                seen.push((addr, device));
            }
            let index = addr
                .zip(all.as_deref())
                .and_then(|(addr, all)| pci::nvml_index(addr, all))
                .unwrap_or_else(|| {
                    tracing::warn!(
                        device,
                        "torch: {} does not list this GPU; its index is CUDA's ordinal and may differ from nvidia-smi's",
                        pci::PROC_GPUS
                    );
                    device as u32
                });
            let (free, total) = cudart.memory(device)?;
            let mut gpu = Gpu::new(index, pci::format_uuid(&uuid), name);
            gpu.pci_bus_id = addr.map(|a| a.to_string());
            gpu.memory_total = Some(total);
            gpu.memory_free = Some(free);
            // What cudaMemGetInfo does not give free is in use, gpusel's own
            // context included: the same sum nvidia-smi's "used" makes.
            gpu.memory_used = Some(total.saturating_sub(free));
            snapshot.gpus.push(gpu);
        }
        snapshot.gpus.sort_by_key(|g| g.index);
        Ok(snapshot)
    }
}

#[async_trait]
impl GpuInfoProvider for TorchProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        self.read()?.validated(NAME)
    }
}

/// True when libtorch_cuda is loaded into this process. Without it libtorch
/// silently reports no CUDA at all. The CUDA runtime alone proves nothing:
/// libtorch_cpu loads it too, through the profiler's libcupti.
fn torch_cuda_loaded() -> bool {
    // SAFETY: RTLD_NOLOAD only looks the library up among those already
    // loaded and never runs its initialisers; the handle is released at once.
    unsafe {
        let handle = libc::dlopen(
            c"libtorch_cuda.so".as_ptr(),
            libc::RTLD_NOLOAD | libc::RTLD_LAZY,
        );
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `open` says where this test runs: CI has no GPU, and there it
    /// must be the clean "no device" error, not the "not linked" one (which
    /// would mean libtorch_cuda was dropped at link time) and not a panic.
    #[test]
    fn open_without_a_gpu_is_a_clean_error() {
        if std::env::var_os("GPUSEL_TEST_HAS_GPU").is_some() {
            let provider = TorchProvider::open().expect("a GPU machine");
            assert!(provider.device_count() > 0);
            return;
        }
        let e = TorchProvider::open()
            .expect_err("no GPU here: set GPUSEL_TEST_HAS_GPU on a GPU machine");
        let text = e.to_string();
        assert!(matches!(e, TorchError::CudaUnavailable { .. }), "{text}");
        assert!(
            text.starts_with("CUDA is not available to libtorch (libtorch sees no CUDA device"),
            "{text}"
        );
    }
}
