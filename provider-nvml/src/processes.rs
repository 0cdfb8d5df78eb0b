//! The processes on a GPU or MIG device: compute and graphics contexts
//! merged, named by NVML or `/proc`, with user and start time from `/proc`.

use gpusel_core::{GpuProcess, ProcReader, ProcessKind};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::{Device, Nvml};

use crate::read::field;

/// Longest process name asked of NVML.
const NAME_LENGTH: usize = 256;

/// Every process on `device`, or `None` when the compute list cannot be had
/// (an unknown list must not read as an idle GPU).
pub(crate) fn list(
    nvml: &Nvml,
    device: &Device<'_>,
    procs: &mut ProcReader,
    what: &str,
) -> Option<Vec<GpuProcess>> {
    let compute = field(
        &format!("{what} (compute)"),
        with_fallback(device.running_compute_processes(), || {
            device.running_compute_processes_v2()
        }),
    )?;
    // Datacenter boards have no graphics contexts; a failure here is no
    // reason to drop the compute list.
    let graphics = field(
        &format!("{what} (graphics)"),
        with_fallback(device.running_graphics_processes(), || {
            device.running_graphics_processes_v2()
        }),
    )
    .unwrap_or_default();
    let mut out: Vec<GpuProcess> = Vec::with_capacity(compute.len() + graphics.len());
    for (info, kind) in compute
        .iter()
        .map(|p| (p, ProcessKind::Compute))
        .chain(graphics.iter().map(|p| (p, ProcessKind::Graphics)))
    {
        let used = used_memory(info);
        if let Some(seen) = out.iter_mut().find(|p| p.pid == info.pid) {
            // Listed as both: one process, counted once.
            seen.kind = Some(ProcessKind::ComputeGraphics);
            seen.used_memory = seen.used_memory.max(used);
            continue;
        }
        let mut p = GpuProcess::new(info.pid);
        p.used_memory = used;
        p.kind = Some(kind);
        out.push(p);
    }
    for p in &mut out {
        p.name = field(
            &format!("name of process {}", p.pid),
            nvml.sys_process_name(p.pid, NAME_LENGTH),
        )
        .and_then(|n| executable(&n));
        procs.enrich(p);
    }
    Some(out)
}

/// The `_v3` call, or on a driver without it (before R510) the `_v2` one.
fn with_fallback(
    v3: Result<Vec<ProcessInfo>, NvmlError>,
    v2: impl FnOnce() -> Result<Vec<ProcessInfo>, NvmlError>,
) -> Result<Vec<ProcessInfo>, NvmlError> {
    match v3 {
        Err(NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound) => {
            tracing::debug!("NVML: no _v3 process call in this driver, using _v2");
            v2()
        }
        other => other,
    }
}

fn used_memory(info: &ProcessInfo) -> Option<u64> {
    match info.used_gpu_memory {
        UsedGpuMemory::Used(bytes) => Some(bytes),
        UsedGpuMemory::Unavailable => None,
    }
}

/// NVML may name a process by its path; the model holds the executable name.
fn executable(name: &str) -> Option<String> {
    let base = name.trim().rsplit('/').next().unwrap_or_default();
    (!base.is_empty()).then(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_names_lose_their_directory() {
        assert_eq!(executable("/usr/bin/python3").as_deref(), Some("python3"));
        assert_eq!(executable("python").as_deref(), Some("python"));
        assert_eq!(executable(""), None);
        assert_eq!(executable("/"), None);
    }
}
