//! How taken a GPU or MIG device looks: the one rule behind `gpusel list`'s
//! mark and the master page's count of idle GPUs. It is the rule of the
//! default strategy (idle-random) too: a device is free exactly when plain
//! `gpusel -- CMD` would take it, which never guesses at a value the driver
//! did not report.

use crate::device::Device;
use crate::holder::LeaseStatus;
use crate::idle::{IdleRules, Load, ModeBlock};
use crate::model::{Gpu, MigDevice};

/// How taken a device is, from least to most: a MIG GPU is as taken as its
/// most taken device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Occupancy {
    /// No compute client, no load (0% GPU utilization, and 0% memory
    /// utilization or none reported, over the idle window where the driver
    /// keeps samples), no memory that no listed process holds, no lease.
    Free,
    /// Compute clients gpusel can name, or load.
    InUse,
    /// Leased through gpusel.
    Leased,
    /// Compute clients that `/proc` does not show here, a process list the
    /// driver would not give, memory in use by no listed process, or no
    /// process but a load the driver would not report: someone may use it,
    /// nobody here can tell who.
    Unknown,
    /// No job can use it: compute mode `Prohibited`.
    Unusable,
}

impl Occupancy {
    /// The mark `gpusel list` and the dashboards show, as nvgpu does:
    /// `[ ]` free, `[~]` in use, `[L]` leased, `[!]` unknown, `[x]` unusable.
    pub fn mark(self) -> &'static str {
        match self {
            Occupancy::Free => "[ ]",
            Occupancy::InUse => "[~]",
            Occupancy::Leased => "[L]",
            Occupancy::Unknown => "[!]",
            Occupancy::Unusable => "[x]",
        }
    }

    /// How taken `device` is under `rules`. A lease decides first; then
    /// the compute mode, the compute clients, memory no listed process
    /// holds, and the load (none for a MIG device: the driver reports
    /// utilization per GPU).
    pub fn of(device: &Device<'_>, rules: &IdleRules) -> Self {
        let lease = match device.mig {
            Some(m) => m.lease.as_ref(),
            None => device.gpu.lease.as_ref(),
        };
        if let Some(taken) = Occupancy::of_lease(lease) {
            return taken;
        }
        if crate::idle::mode_block(device) == Some(ModeBlock::Prohibited) {
            return Occupancy::Unusable;
        }
        let Some(list) = device.processes() else {
            return Occupancy::Unknown;
        };
        let mut compute = list.iter().filter(|p| p.is_compute());
        if compute.clone().any(|p| p.visible == Some(false)) {
            return Occupancy::Unknown;
        }
        if compute.next().is_some() {
            return Occupancy::InUse;
        }
        if rules.ghost(device).is_some() {
            return Occupancy::Unknown;
        }
        if device.is_mig() {
            return Occupancy::Free;
        }
        match (
            Load::gpu(device.gpu).percent,
            Load::memory(device.gpu).percent,
        ) {
            // No kernel ran and no process: an unreported memory load is no
            // job (idle-random's default rule takes it too).
            (Some(0), Some(0) | None) => Occupancy::Free,
            (gpu, memory) if gpu > Some(0) || memory > Some(0) => Occupancy::InUse,
            _ => Occupancy::Unknown,
        }
    }
}

impl Occupancy {
    /// What a lease makes of a device, whatever else holds: leased, or
    /// (a lock file no job can use) unknown, never free.
    fn of_lease(lease: Option<&LeaseStatus>) -> Option<Occupancy> {
        match lease? {
            LeaseStatus {
                blocked: Some(_), ..
            } => Some(Occupancy::Unknown),
            _ => Some(Occupancy::Leased),
        }
    }
}

impl Gpu {
    /// How taken the GPU is under gpusel's built-in idle rules (see
    /// [`occupancy_with`](Self::occupancy_with)).
    pub fn occupancy(&self) -> Occupancy {
        self.occupancy_with(&IdleRules::default())
    }

    /// How taken the GPU is under `rules`. A GPU in MIG mode is as taken as
    /// its most taken MIG device (the parent reports no processes of its
    /// own); one whose devices a provider cannot list (nvidia-smi) is
    /// [`Occupancy::Unknown`].
    pub fn occupancy_with(&self, rules: &IdleRules) -> Occupancy {
        if !self.mig_enabled() {
            return Occupancy::of(&Device::whole(self), rules);
        }
        // A lease on the parent (as a snapshot file may carry) covers every
        // MIG device.
        if let Some(taken) = Occupancy::of_lease(self.lease.as_ref()) {
            return taken;
        }
        self.mig_devices
            .iter()
            .map(|m| Occupancy::of(&Device::mig(self, m), rules))
            .max()
            .unwrap_or(Occupancy::Unknown)
    }

    /// How taken `mig`, one of this GPU's MIG devices, is under `rules`.
    pub fn mig_occupancy(&self, mig: &MigDevice, rules: &IdleRules) -> Occupancy {
        Occupancy::of(&Device::mig(self, mig), rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Holder;
    use crate::model::GpuProcess;

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
    fn only_compute_clients_visible_memory_and_the_window_count() {
        use crate::model::{ComputeMode, Peak, ProcessKind, UtilizationWindow};
        let mut gpu = Gpu::new(0, "GPU-0", "RTX A6000");
        gpu.utilization_gpu = Some(0);
        gpu.utilization_memory = Some(0);
        gpu.memory_total = Some(48 << 30);
        gpu.memory_reserved = Some(400 << 20);
        gpu.memory_used = Some(24 << 20);
        let mut xorg = GpuProcess::new(1200);
        xorg.kind = Some(ProcessKind::Graphics);
        xorg.used_memory = Some(20 << 20);
        xorg.visible = Some(false);
        gpu.processes = Some(vec![xorg]);
        assert_eq!(gpu.occupancy(), Occupancy::Free, "a display server only");
        // 30 GiB that no listed process holds: a job nobody here can see.
        gpu.memory_used = Some(30 << 30);
        assert_eq!(gpu.occupancy(), Occupancy::Unknown);
        let loose = IdleRules::with_unaccounted_memory(Some(crate::MemoryAmount::Percent(90)));
        assert_eq!(gpu.occupancy_with(&loose), Occupancy::Free);
        gpu.memory_used = Some(24 << 20);
        // A job in a data-loading pause: 0% now, 70% two seconds ago.
        gpu.utilization_window = Some(UtilizationWindow::new(
            10_000,
            Some(Peak::new(70, 2_000, 50)),
            Some(Peak::new(0, 100, 50)),
        ));
        assert_eq!(gpu.occupancy(), Occupancy::InUse);
        gpu.utilization_window = None;
        gpu.compute_mode = Some(ComputeMode::Prohibited);
        assert_eq!(gpu.occupancy(), Occupancy::Unusable);
        assert_eq!(Occupancy::Unusable.mark(), "[x]");
        gpu.compute_mode = Some(ComputeMode::ExclusiveProcess);
        assert_eq!(gpu.occupancy(), Occupancy::Free);
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
        assert_eq!(
            gpu.mig_occupancy(&gpu.mig_devices[0], &IdleRules::default()),
            Occupancy::Free
        );
    }
}
