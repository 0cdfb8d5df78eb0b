//! How taken a GPU or MIG device looks: the one rule behind `gpusel list`'s
//! mark and the master page's count of idle GPUs. It is the rule of the
//! default strategy (idle-random) too: a device is free exactly when plain
//! `gpusel -- CMD` would take it, which never guesses at a value the driver
//! did not report.

use crate::holder::LeaseStatus;
use crate::model::{Gpu, GpuProcess, MigDevice};

/// How taken a device is, from least to most: a MIG GPU is as taken as its
/// most taken device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Occupancy {
    /// No process, no load (0% GPU utilization, and 0% memory utilization or
    /// none reported), no lease.
    Free,
    /// Processes gpusel can name, or load.
    InUse,
    /// Leased through gpusel.
    Leased,
    /// Processes that `/proc` does not show here, a process list the driver
    /// would not give, or no process but a load the driver would not report:
    /// someone may use it, nobody here can tell who.
    Unknown,
}

/// A device's load as the driver reports it: GPU and memory utilization,
/// percent. MIG devices have none (the driver reports utilization per GPU).
#[derive(Clone, Copy)]
enum Load {
    Reported(Option<u8>, Option<u8>),
    NotPerDevice,
}

impl Occupancy {
    /// The mark `gpusel list` and the dashboards show, as nvgpu does:
    /// `[ ]` free, `[~]` in use, `[L]` leased, `[!]` unknown.
    pub fn mark(self) -> &'static str {
        match self {
            Occupancy::Free => "[ ]",
            Occupancy::InUse => "[~]",
            Occupancy::Leased => "[L]",
            Occupancy::Unknown => "[!]",
        }
    }

    fn of(lease: Option<&LeaseStatus>, processes: Option<&[GpuProcess]>, load: Load) -> Self {
        match lease {
            // Nobody leases it and no job can: unusable, never free.
            Some(LeaseStatus {
                blocked: Some(_), ..
            }) => return Occupancy::Unknown,
            Some(_) => return Occupancy::Leased,
            None => {}
        }
        match (processes, load) {
            (None, _) => Occupancy::Unknown,
            (Some(list), _) if list.iter().any(|p| p.visible == Some(false)) => Occupancy::Unknown,
            (Some(list), _) if !list.is_empty() => Occupancy::InUse,
            // No kernel ran and no process: an unreported memory load is no
            // job (idle-random's default rule takes it too).
            (_, Load::NotPerDevice) | (_, Load::Reported(Some(0), Some(0) | None)) => {
                Occupancy::Free
            }
            (_, Load::Reported(gpu, memory)) if gpu > Some(0) || memory > Some(0) => {
                Occupancy::InUse
            }
            _ => Occupancy::Unknown,
        }
    }
}

impl Gpu {
    /// How taken the GPU is. A GPU in MIG mode is as taken as its most taken
    /// MIG device (the parent reports no processes of its own); one whose
    /// devices a provider cannot list (nvidia-smi) is [`Occupancy::Unknown`].
    pub fn occupancy(&self) -> Occupancy {
        match &self.lease {
            Some(LeaseStatus {
                blocked: Some(_), ..
            }) => return Occupancy::Unknown,
            Some(_) => return Occupancy::Leased,
            None => {}
        }
        if !self.mig_enabled() {
            let load = Load::Reported(self.utilization_gpu, self.utilization_memory);
            return Occupancy::of(None, self.processes.as_deref(), load);
        }
        self.mig_devices
            .iter()
            .map(MigDevice::occupancy)
            .max()
            .unwrap_or(Occupancy::Unknown)
    }
}

impl MigDevice {
    /// How taken the MIG device is (the driver reports no utilization per
    /// MIG device, so only processes and leases tell).
    pub fn occupancy(&self) -> Occupancy {
        Occupancy::of(
            self.lease.as_ref(),
            self.processes.as_deref(),
            Load::NotPerDevice,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Holder;

    fn mig(index: u32, processes: Option<Vec<GpuProcess>>) -> MigDevice {
        MigDevice {
            index,
            uuid: format!("MIG-{index}"),
            profile: None,
            gpu_instance_id: None,
            compute_instance_id: None,
            memory_total: None,
            memory_used: None,
            memory_free: None,
            processes,
            lease: None,
        }
    }

    #[test]
    fn a_gpu_is_free_only_without_processes_load_or_lease() {
        let mut gpu = Gpu::new(0, "GPU-0", "A100");
        assert_eq!(gpu.occupancy(), Occupancy::Unknown, "no process list");
        gpu.processes = Some(vec![]);
        assert_eq!(gpu.occupancy(), Occupancy::Unknown, "load not reported");
        gpu.utilization_memory = Some(0);
        assert_eq!(gpu.occupancy(), Occupancy::Unknown, "GPU load not reported");
        gpu.utilization_memory = None;
        gpu.utilization_gpu = Some(0);
        assert_eq!(
            gpu.occupancy(),
            Occupancy::Free,
            "no kernel and no process: unreported memory load is no job"
        );
        gpu.utilization_memory = Some(0);
        assert_eq!(gpu.occupancy(), Occupancy::Free);
        gpu.utilization_gpu = Some(3);
        assert_eq!(gpu.occupancy(), Occupancy::InUse);
        gpu.utilization_gpu = Some(0);
        gpu.utilization_memory = Some(1);
        assert_eq!(gpu.occupancy(), Occupancy::InUse, "memory load is load");
        gpu.utilization_gpu = None;
        assert_eq!(
            gpu.occupancy(),
            Occupancy::InUse,
            "any load reported is load"
        );
        gpu.utilization_gpu = Some(0);
        gpu.utilization_memory = Some(0);
        let mut hidden = GpuProcess::new(7);
        hidden.visible = Some(false);
        gpu.processes = Some(vec![hidden]);
        assert_eq!(gpu.occupancy(), Occupancy::Unknown);
        gpu.processes = Some(vec![GpuProcess::new(8)]);
        assert_eq!(gpu.occupancy(), Occupancy::InUse);
        gpu.lease = Some(LeaseStatus {
            holder: Some(Holder::current(vec!["sh".into()])),
            blocked: None,
            shares: Vec::new(),
        });
        assert_eq!(gpu.occupancy(), Occupancy::Leased);
        // A blocked lock file: nobody leases it, nobody could; never free.
        gpu.processes = Some(Vec::new());
        gpu.utilization_gpu = Some(0);
        gpu.utilization_memory = Some(0);
        gpu.lease = Some(LeaseStatus {
            holder: None,
            blocked: Some("pid 7 holds a shared lock on its lock file".into()),
            shares: Vec::new(),
        });
        assert_eq!(gpu.occupancy(), Occupancy::Unknown);
    }

    #[test]
    fn a_mig_gpu_is_as_taken_as_its_most_taken_device() {
        let mut gpu = Gpu::new(0, "GPU-0", "H100");
        gpu.mig_mode = Some(true);
        assert_eq!(gpu.occupancy(), Occupancy::Unknown, "devices not listed");
        gpu.mig_devices = vec![mig(0, Some(vec![])), mig(1, Some(vec![]))];
        assert_eq!(gpu.occupancy(), Occupancy::Free);
        gpu.mig_devices[1].processes = Some(vec![GpuProcess::new(9)]);
        assert_eq!(gpu.occupancy(), Occupancy::InUse);
        assert_eq!(gpu.mig_devices[0].occupancy(), Occupancy::Free);
    }
}
