//! What "idle" means beyond the filters' numbers: the rules that
//! [`Occupancy`](crate::Occupancy), `gpusel list`'s marks, the master's idle
//! count and the default strategy share, so that they always agree.
//!
//! - Only compute clients make a GPU busy. A graphics-only client (the X
//!   server, a desktop) does not; its memory still counts as used.
//! - Memory in use that no listed process holds, above a tolerance, is a
//!   job gpusel cannot see (in another container or PID namespace, or
//!   hidden by the driver): the device is not idle.
//! - Utilization is the highest of the instant reading and the driver's
//!   sample buffer over the window the provider read
//!   ([`Gpu::utilization_window`]).
//! - Compute mode: a `Prohibited` GPU takes no job, an `Exclusive_Process`
//!   GPU with a compute client takes no other, whatever the filters.
//!
//! # The unaccounted-memory tolerance
//!
//! An idle GPU never reads exactly 0 bytes used. What drivers report for
//! one with no process:
//!
//! - NVML's v2 memory call (R510 and later, what `nvidia-smi` shows) keeps
//!   the driver's reservation apart: an idle data-center GPU reads 0–5 MiB
//!   used, a workstation's a few MiB more for the display's own buffers.
//! - NVML's v1 call (older drivers, and the fallback where v2 is missing)
//!   counts the reservation as used since R510: an idle 80 GB board reads
//!   about 500–600 MiB, a 24 GB one 250–300 MiB, roughly 0.5–1 % of the
//!   board.
//!
//! So the tolerance is [`BASE_TOLERANCE`] (256 MiB: far above the few MiB an
//! idle GPU shows, far below the 300 MiB and more a single CUDA context
//! takes) when the provider reports the reservation apart
//! ([`Gpu::memory_reserved`]), plus [`V1_ALLOWANCE_PERCENT`] of the board
//! when it does not. A site sets its own with `[idle] unaccounted_memory`
//! (a size or a percentage of the board).

use crate::device::Device;
use crate::model::{ComputeMode, Gpu, GpuProcess, ProcessKind};
use crate::size::MemoryAmount;

/// The tolerance when the reservation is reported apart: 256 MiB.
pub const BASE_TOLERANCE: u64 = 256 << 20;

/// What is added, in percent of the board, when it is not (NVML's v1
/// memory call, nvidia-smi, snapshot files that do not say).
pub const V1_ALLOWANCE_PERCENT: u8 = 2;

/// The site's idle rules; [`Default`] is gpusel's built-in ones.
///
/// The unaccounted-memory tolerance: an idle GPU never reads exactly 0
/// bytes used. NVML's v2 memory call (R510 and later, what `nvidia-smi`
/// shows) keeps the driver's reservation apart, and an idle data-center GPU
/// reads 0–5 MiB used; the v1 call (older drivers, or where v2 is missing)
/// counts the reservation as used, about 500–600 MiB on an 80 GB board. So
/// the built-in tolerance is [`BASE_TOLERANCE`] (256 MiB: far above what an
/// idle GPU shows, below what one CUDA context takes) when the provider
/// reports the reservation apart ([`Gpu::memory_reserved`]), plus
/// [`V1_ALLOWANCE_PERCENT`] of the board when it does not. A site sets its
/// own with `[idle] unaccounted_memory` (a size or a share of the board).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdleRules {
    /// Memory in use by no listed process that a device may show and still
    /// be idle; `None`: the built-in tolerance (see [`IdleRules`]).
    pub unaccounted_memory: Option<MemoryAmount>,
}

/// Memory in use that no listed process holds, above the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ghost {
    /// Bytes in use beyond what the listed processes hold.
    pub unaccounted: u64,
    /// The most an idle device may show.
    pub tolerance: u64,
}

impl IdleRules {
    /// Rules with this tolerance (`None`: the built-in one).
    pub fn with_unaccounted_memory(amount: Option<MemoryAmount>) -> Self {
        IdleRules {
            unaccounted_memory: amount,
        }
    }

    /// The most memory in use by no listed process that `device` may show
    /// and still be idle, in bytes.
    pub fn tolerance(&self, device: &Device<'_>) -> u64 {
        let total = device.memory_total();
        if let Some(amount) = self.unaccounted_memory {
            return amount.bytes_of(total).unwrap_or(BASE_TOLERANCE);
        }
        if device.gpu.memory_reserved.is_some() {
            return BASE_TOLERANCE;
        }
        let allowance = MemoryAmount::Percent(V1_ALLOWANCE_PERCENT)
            .bytes_of(total)
            .unwrap_or(0);
        BASE_TOLERANCE.saturating_add(allowance)
    }

    /// The memory on `device` that no listed process accounts for, when it
    /// is over the tolerance; `None` when it is not, or when it cannot be
    /// told (used memory unknown, no process list, or a process whose
    /// memory the driver does not report: that process is seen anyway).
    pub fn ghost(&self, device: &Device<'_>) -> Option<Ghost> {
        let unaccounted = unaccounted_memory(device)?;
        let tolerance = self.tolerance(device);
        (unaccounted > tolerance).then_some(Ghost {
            unaccounted,
            tolerance,
        })
    }
}

/// Memory in use beyond what the listed processes hold, in bytes (0 when
/// they hold it all); `None` when it cannot be told.
pub fn unaccounted_memory(device: &Device<'_>) -> Option<u64> {
    let used = device.memory_used()?;
    let mut accounted: u64 = 0;
    for p in device.processes()? {
        accounted = accounted.saturating_add(p.used_memory?);
    }
    Some(used.saturating_sub(accounted))
}

impl GpuProcess {
    /// Whether the process has a compute context (or may have: a process of
    /// unknown kind counts). Only these make a device busy.
    pub fn is_compute(&self) -> bool {
        self.kind != Some(ProcessKind::Graphics)
    }
}

/// Why the compute mode keeps every job off a device, whatever the
/// filters: `Prohibited`, or `Exclusive_Process` with a compute client
/// (whose pid is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeBlock {
    /// The mode is `Prohibited`.
    Prohibited,
    /// The mode is `Exclusive_Process` and this process holds the GPU.
    ExclusiveProcess {
        /// The compute client's pid.
        pid: u32,
    },
}

/// What the compute mode of `device`'s GPU allows now.
pub fn mode_block(device: &Device<'_>) -> Option<ModeBlock> {
    match device.gpu.compute_mode? {
        ComputeMode::Prohibited => Some(ModeBlock::Prohibited),
        ComputeMode::ExclusiveProcess | ComputeMode::ExclusiveThread => device
            .processes()?
            .iter()
            .find(|p| p.is_compute())
            .map(|p| ModeBlock::ExclusiveProcess { pid: p.pid }),
        ComputeMode::Default => None,
    }
}

/// Utilization as the idle rule reads it: the highest of the instant
/// reading and the window's peak, and the peak's age when the peak is what
/// is higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Percent; `None` when neither is reported.
    pub percent: Option<u8>,
    /// When the window's peak decides: how long ago it was, in ms, and the
    /// window's length in ms.
    pub peak: Option<(u64, u64)>,
}

impl Load {
    fn of(instant: Option<u8>, peak: Option<crate::model::Peak>, window_ms: u64) -> Load {
        match (instant, peak) {
            (i, Some(p)) if i.is_none_or(|i| p.percent > i) => Load {
                percent: Some(p.percent),
                peak: Some((p.age_ms, window_ms)),
            },
            (i, _) => Load {
                percent: i,
                peak: None,
            },
        }
    }

    /// GPU (kernel) utilization of a whole GPU.
    pub fn gpu(gpu: &Gpu) -> Load {
        let w = gpu.utilization_window.as_ref();
        Load::of(
            gpu.utilization_gpu,
            w.and_then(|w| w.gpu),
            w.map_or(0, |w| w.window_ms),
        )
    }

    /// Memory-bandwidth utilization of a whole GPU.
    pub fn memory(gpu: &Gpu) -> Load {
        let w = gpu.utilization_window.as_ref();
        Load::of(
            gpu.utilization_memory,
            w.and_then(|w| w.memory),
            w.map_or(0, |w| w.window_ms),
        )
    }
}

/// What `gpusel list` says under a GPU whose window peak is higher than its
/// instant reading: `peaked in the last 10 s: utilization 72% 2 s ago,
/// memory 31% 2 s ago`.
pub fn peak_note(gpu: &Gpu) -> Option<String> {
    let mut parts = Vec::new();
    let mut window_ms = 0;
    for (what, load) in [
        ("utilization", Load::gpu(gpu)),
        ("memory", Load::memory(gpu)),
    ] {
        if let Load {
            percent: Some(p),
            peak: Some((age, window)),
        } = load
            && p > 0
        {
            window_ms = window;
            parts.push(format!("{what} {p}% {} ago", format_ms(age)));
        }
    }
    (!parts.is_empty()).then(|| {
        format!(
            "peaked in the last {}: {}",
            format_ms(window_ms),
            parts.join(", ")
        )
    })
}

/// A duration in milliseconds as gpusel says it: `2 s`, `1.5 s`, `300 ms`.
pub(crate) fn format_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths.is_multiple_of(10) || ms >= 10_000 {
        format!("{} s", (ms + 500) / 1000)
    } else {
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Peak, UtilizationWindow};

    fn idle_gpu() -> Gpu {
        let mut g = Gpu::new(0, "GPU-0", "H100");
        g.memory_total = Some(80 << 30);
        g.memory_used = Some(4 << 20);
        g.memory_reserved = Some(500 << 20);
        g.processes = Some(Vec::new());
        g
    }

    #[test]
    fn memory_no_process_holds_is_a_ghost_above_the_tolerance() {
        let rules = IdleRules::default();
        let mut g = idle_gpu();
        assert_eq!(rules.ghost(&Device::whole(&g)), None, "4 MiB is idle");
        g.memory_used = Some(30 << 30);
        assert_eq!(
            rules.ghost(&Device::whole(&g)),
            Some(Ghost {
                unaccounted: 30 << 30,
                tolerance: BASE_TOLERANCE
            })
        );
        // A process holding it accounts for it.
        let mut p = GpuProcess::new(7);
        p.used_memory = Some((30 << 30) - (10 << 20));
        g.processes = Some(vec![p.clone()]);
        assert_eq!(rules.ghost(&Device::whole(&g)), None);
        // A process whose memory is unknown: cannot be told.
        p.used_memory = None;
        g.processes = Some(vec![p]);
        assert_eq!(rules.ghost(&Device::whole(&g)), None);
        // No process list: cannot be told either (the list says unknown).
        g.processes = None;
        assert_eq!(rules.ghost(&Device::whole(&g)), None);
    }

    #[test]
    fn the_v1_call_gets_room_for_the_reservation() {
        let mut g = idle_gpu();
        g.memory_reserved = None;
        g.memory_used = Some(600 << 20);
        let rules = IdleRules::default();
        assert_eq!(
            rules.tolerance(&Device::whole(&g)),
            BASE_TOLERANCE + (80u64 << 30) / 50
        );
        assert_eq!(rules.ghost(&Device::whole(&g)), None);
        let strict = IdleRules::with_unaccounted_memory(Some(MemoryAmount::Bytes(100 << 20)));
        assert!(strict.ghost(&Device::whole(&g)).is_some());
        let pct = IdleRules::with_unaccounted_memory(Some(MemoryAmount::Percent(1)));
        assert_eq!(pct.tolerance(&Device::whole(&g)), (80u64 << 30) / 100);
    }

    #[test]
    fn graphics_clients_are_not_compute() {
        let mut p = GpuProcess::new(1);
        assert!(p.is_compute(), "unknown kind counts");
        p.kind = Some(ProcessKind::Graphics);
        assert!(!p.is_compute());
        p.kind = Some(ProcessKind::ComputeGraphics);
        assert!(p.is_compute());
    }

    #[test]
    fn compute_modes_block_as_the_driver_would() {
        let mut g = idle_gpu();
        assert_eq!(mode_block(&Device::whole(&g)), None);
        g.compute_mode = Some(ComputeMode::Prohibited);
        assert_eq!(mode_block(&Device::whole(&g)), Some(ModeBlock::Prohibited));
        g.compute_mode = Some(ComputeMode::ExclusiveProcess);
        assert_eq!(mode_block(&Device::whole(&g)), None, "nobody holds it");
        let mut xorg = GpuProcess::new(2);
        xorg.kind = Some(ProcessKind::Graphics);
        g.processes = Some(vec![xorg, GpuProcess::new(3)]);
        assert_eq!(
            mode_block(&Device::whole(&g)),
            Some(ModeBlock::ExclusiveProcess { pid: 3 })
        );
    }

    #[test]
    fn the_window_peak_counts_when_it_is_higher() {
        let mut g = idle_gpu();
        g.utilization_gpu = Some(0);
        assert_eq!(Load::gpu(&g).percent, Some(0));
        g.utilization_window = Some(UtilizationWindow::new(
            10_000,
            Some(Peak::new(72, 2_000, 60)),
            None,
        ));
        assert_eq!(
            Load::gpu(&g),
            Load {
                percent: Some(72),
                peak: Some((2_000, 10_000))
            }
        );
        g.utilization_gpu = Some(90);
        assert_eq!(Load::gpu(&g).peak, None, "the instant is higher");
        assert_eq!(Load::memory(&g).percent, None);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(format_ms(300), "300 ms");
        assert_eq!(format_ms(2_003), "2 s");
        assert_eq!(format_ms(1_520), "1.5 s");
        assert_eq!(format_ms(10_000), "10 s");
        assert_eq!(format_ms(12_600), "13 s");
    }

    #[test]
    fn peaks_keep_the_latest_highest_sample() {
        assert_eq!(Peak::of([]), None);
        assert_eq!(
            Peak::of([(9_000, 70), (5_000, 10), (2_000, 70), (100, 0)]),
            Some(Peak::new(70, 2_000, 4))
        );
        assert_eq!(Peak::of([(1, 250)]), Some(Peak::new(100, 1, 1)));
    }
}
