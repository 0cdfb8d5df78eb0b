//! One snapshot: every GPU, every field by its own call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gpusel_core::{Gpu, MigDevice, Peak, ProcReader, Snapshot, UtilizationWindow};
use nvml_wrapper::enum_wrappers::device::{Clock, ComputeMode, Sampling, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use crate::error::ScanError;
use crate::processes;
use crate::raw::{MemoryV1, RawCalls};

/// `NVML_DEVICE_MIG_ENABLE`.
const MIG_ENABLED: u32 = 1;

/// The value of a field, or `None` (logged) when its call fails.
pub(crate) fn field<T>(what: &str, result: Result<T, NvmlError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!("NVML: {what} unavailable: {e}");
            None
        }
    }
}

pub(crate) fn snapshot(
    nvml: &Nvml,
    raw: &RawCalls,
    window: Duration,
) -> Result<Snapshot, ScanError> {
    let count = nvml.device_count().map_err(ScanError::Count)?;
    let mut snapshot = Snapshot::local(crate::NAME);
    snapshot.driver_version = field("driver version", nvml.sys_driver_version());
    snapshot.cuda_driver_version =
        field("CUDA driver version", nvml.sys_cuda_driver_version()).map(cuda_version);
    let mut procs = ProcReader::default();
    for i in 0..count {
        if let Some(gpu) = gpu(nvml, raw, &mut procs, i, window) {
            snapshot.gpus.push(gpu);
        }
    }
    Ok(snapshot)
}

/// GPU `i`, or `None` (with a warning: the user loses a GPU from view) when
/// it cannot be identified.
fn gpu(
    nvml: &Nvml,
    raw: &RawCalls,
    procs: &mut ProcReader,
    i: u32,
    window: Duration,
) -> Option<Gpu> {
    let device = nvml
        .device_by_index(i)
        .map_err(|e| tracing::warn!("GPU {i} is left out: NVML cannot reach it ({e})"))
        .ok()?;
    let uuid = device
        .uuid()
        .map_err(|e| tracing::warn!("GPU {i} is left out: NVML gives no UUID for it ({e})"))
        .ok()?;
    let what = |f: &str| format!("GPU {i} {f}");
    let index = field(&what("index"), device.index()).unwrap_or(i);
    let name = field(&what("name"), device.name()).unwrap_or_else(|| "unknown".into());
    let mut gpu = Gpu::new(index, uuid, name);
    gpu.pci_bus_id = field(&what("PCI info"), device.pci_info()).map(|p| p.bus_id);
    if let Some((m, reserved)) = memory(raw, &device, &what("memory")) {
        gpu.memory_total = Some(m.total);
        gpu.memory_used = Some(m.used);
        gpu.memory_free = Some(m.free);
        gpu.memory_reserved = reserved;
    }
    if let Some(u) = field(&what("utilization"), device.utilization_rates()) {
        gpu.utilization_gpu = u8::try_from(u.gpu).ok();
        gpu.utilization_memory = u8::try_from(u.memory).ok();
    }
    gpu.temperature = field(
        &what("temperature"),
        device.temperature(TemperatureSensor::Gpu),
    )
    .and_then(|t| i32::try_from(t).ok());
    gpu.power_draw = field(&what("power usage"), device.power_usage());
    gpu.power_limit = field(&what("power limit"), device.enforced_power_limit());
    gpu.performance_state = field(&what("performance state"), device.performance_state())
        .and_then(|p| u8::try_from(p.as_c()).ok())
        .filter(|p| *p <= 15);
    gpu.sm_clock = field(&what("SM clock"), device.clock_info(Clock::SM));
    gpu.mig_mode = field(&what("MIG mode"), device.mig_mode()).map(|m| m.current == MIG_ENABLED);
    gpu.compute_mode = field(&what("compute mode"), device.compute_mode()).map(compute_mode);
    if gpu.mig_mode != Some(true) && !window.is_zero() {
        gpu.utilization_window = utilization_window(&device, i, window);
    }
    gpu.processes = processes::list(nvml, &device, procs, &what("processes"));
    if gpu.mig_mode == Some(true) {
        gpu.mig_devices = mig_devices(nvml, raw, procs, &device, i);
    }
    Some(gpu)
}

fn mig_devices(
    nvml: &Nvml,
    raw: &RawCalls,
    procs: &mut ProcReader,
    parent: &Device<'_>,
    gpu: u32,
) -> Vec<MigDevice> {
    let Some(slots) = field(
        &format!("GPU {gpu} MIG device count"),
        parent.mig_device_count(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for slot in 0..slots {
        let what = |f: &str| format!("GPU {gpu} MIG {slot} {f}");
        let device = match parent.mig_device_by_index(slot) {
            Ok(d) => d,
            // Slots up to the maximum that hold no instance.
            Err(NvmlError::NotFound) => continue,
            Err(e) => {
                tracing::debug!("NVML: GPU {gpu} MIG slot {slot} unavailable: {e}");
                continue;
            }
        };
        let Some(uuid) = field(&what("UUID"), device.uuid()) else {
            tracing::warn!("GPU {gpu} MIG device {slot} is left out: NVML gives no UUID for it");
            continue;
        };
        let (gpu_instance_id, compute_instance_id) = raw.instance_ids(&device);
        let memory = memory(raw, &device, &what("memory")).map(|(m, _)| m);
        let mut mig = MigDevice::new(slot, uuid);
        mig.profile = field(&what("name"), device.name()).and_then(|n| profile(&n));
        mig.gpu_instance_id = gpu_instance_id;
        mig.compute_instance_id = compute_instance_id;
        mig.memory_total = memory.as_ref().map(|m| m.total);
        mig.memory_used = memory.as_ref().map(|m| m.used);
        mig.memory_free = memory.as_ref().map(|m| m.free);
        mig.processes = processes::list(nvml, &device, procs, &what("processes"));
        // Leases are gpusel's, not the driver's: `list` fills them.
        out.push(mig);
    }
    out
}

/// Memory by the v2 call, whose `used` leaves out what the driver reserves;
/// on a driver without it (before R510), by the v1 call, which there means
/// the same.
/// The memory, and the driver's reservation when the v2 call reports it
/// apart (the v1 fallback counts it as used).
fn memory(raw: &RawCalls, device: &Device<'_>, what: &str) -> Option<(MemoryV1, Option<u64>)> {
    match device.memory_info() {
        Ok(m) => Some((
            MemoryV1 {
                total: m.total,
                used: m.used,
                free: m.free,
            },
            Some(m.reserved),
        )),
        Err(NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound) => {
            tracing::debug!("NVML: no v2 memory call in this driver, using v1");
            raw.memory_v1(device).map(|m| (m, None))
        }
        Err(e) => {
            tracing::debug!("NVML: {what} unavailable: {e}");
            None
        }
    }
}

/// gpusel's name for NVML's compute mode.
fn compute_mode(mode: ComputeMode) -> gpusel_core::ComputeMode {
    match mode {
        ComputeMode::Default => gpusel_core::ComputeMode::Default,
        ComputeMode::ExclusiveThread => gpusel_core::ComputeMode::ExclusiveThread,
        ComputeMode::Prohibited => gpusel_core::ComputeMode::Prohibited,
        ComputeMode::ExclusiveProcess => gpusel_core::ComputeMode::ExclusiveProcess,
    }
}

/// The peaks of the driver's GPU and memory utilization samples over the
/// last `window`: `None` (the instant reading decides, said at `-v`) when
/// the driver keeps no samples for the GPU or has none that recent.
fn utilization_window(device: &Device<'_>, i: u32, window: Duration) -> Option<UtilizationWindow> {
    // NVML's sample timestamps: microseconds since the epoch.
    let micros = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    };
    let since_us = micros(SystemTime::now().checked_sub(window).unwrap_or(UNIX_EPOCH));
    let peak = |kind: Sampling, what: &str| -> Result<Option<Peak>, NvmlError> {
        let samples = match device.samples(kind, since_us) {
            Ok(s) => s,
            // Nothing newer than the start of the window.
            Err(NvmlError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        // Ages as of the driver's answer, not of the start of this read: a
        // thread preempted in between (a loaded machine) would otherwise
        // make every sample look younger than it is (a 2 s old peak shown
        // as 1.9 s ago).
        let now_us = micros(SystemTime::now());
        let values = samples.iter().filter_map(|s| {
            let value = match &s.value {
                SampleValue::U32(v) => *v,
                SampleValue::U64(v) => u32::try_from(*v).unwrap_or(u32::MAX),
                other => {
                    tracing::debug!("NVML: GPU {i} {what} sample of an unexpected type: {other:?}");
                    return None;
                }
            };
            Some((now_us.saturating_sub(s.timestamp) / 1000, value))
        });
        Ok(Peak::of(values))
    };
    let gpu = match peak(Sampling::GpuUtilization, "utilization") {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(
                "GPU {i}: the driver keeps no utilization samples for it ({e}); idleness uses the instant reading"
            );
            return None;
        }
    };
    let memory = peak(Sampling::MemoryUtilization, "memory utilization").unwrap_or_else(|e| {
        tracing::debug!("NVML: GPU {i} memory utilization samples unavailable: {e}");
        None
    });
    if gpu.is_none() && memory.is_none() {
        tracing::info!(
            "GPU {i}: no utilization sample in the last {}; idleness uses the instant reading",
            humantime::format_duration(window)
        );
        return None;
    }
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    Some(UtilizationWindow::new(window_ms, gpu, memory))
}

/// The profile in a MIG device's name: `NVIDIA H100 80GB HBM3 MIG 1g.10gb`
/// gives `1g.10gb`.
fn profile(name: &str) -> Option<String> {
    let (_, profile) = name.rsplit_once(" MIG ")?;
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_string())
}

/// NVML's `12080` is CUDA 12.8.
fn cuda_version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profiles_come_from_the_name() {
        assert_eq!(
            profile("NVIDIA H100 80GB HBM3 MIG 1g.10gb").as_deref(),
            Some("1g.10gb")
        );
        assert_eq!(
            profile("NVIDIA A100-SXM4-40GB MIG 3g.20gb").as_deref(),
            Some("3g.20gb")
        );
        assert_eq!(profile("NVIDIA H100 80GB HBM3"), None);
        assert_eq!(profile("X MIG "), None);
    }

    #[test]
    fn cuda_versions_read_as_nvidia_smi_shows_them() {
        assert_eq!(cuda_version(12080), "12.8");
        assert_eq!(cuda_version(11040), "11.4");
        assert_eq!(cuda_version(12020), "12.2");
    }
}
