//! Why a device was not chosen: data, not log text, so `--explain`, `--json`
//! and the library all see the same thing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::holder::Holder;
use crate::idle::format_ms;
use crate::size::{format_bytes, format_power};

/// One reason a device cannot be given to the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// `CUDA_VISIBLE_DEVICES` (from Slurm, Kubernetes or the user) hides it.
    HiddenByCudaVisibleDevices,
    /// `--devices` names other devices.
    NotRequested,
    /// `--exclude` names it.
    Excluded,
    /// The name does not contain the `--name` pattern.
    NameMismatch {
        /// The device name.
        name: String,
        /// The pattern asked for.
        pattern: String,
    },
    /// Less free memory than `--mem`.
    NotEnoughMemory {
        /// Free bytes.
        free: u64,
        /// Bytes asked for.
        required: u64,
    },
    /// More memory in use than `--max-mem-used`.
    MemoryUsed {
        /// Bytes in use.
        used: u64,
        /// Bytes allowed.
        max: u64,
        /// The limit as asked for (`20%`, `2 GiB`).
        limit: String,
    },
    /// A filter needs a value the provider does not report.
    Unknown {
        /// Which value: `free memory`, `utilization`, `processes`, `power draw`...
        what: String,
    },
    /// GPU utilization above `--max-util`.
    Utilization {
        /// Measured %.
        value: u8,
        /// Allowed %.
        max: u8,
    },
    /// Memory-bandwidth utilization above `--max-mem-util`.
    MemoryUtilization {
        /// Measured %.
        value: u8,
        /// Allowed %.
        max: u8,
    },
    /// More processes than `--max-processes`.
    Processes {
        /// Processes on the device.
        count: usize,
        /// Allowed.
        max: usize,
    },
    /// Power draw above `--max-power`.
    Power {
        /// Draw in mW.
        draw: u32,
        /// Allowed in mW.
        max: u32,
    },
    /// The library caller's custom predicate said no.
    Predicate {
        /// The label the predicate was registered with.
        label: String,
    },
    /// MIG mode is on: only its MIG devices can be used, and it has none.
    MigWithoutInstances,
    /// A process can use only one MIG device, and more devices were asked for.
    MigNeedsSingleDevice {
        /// Devices asked for.
        count: usize,
    },
    /// As [`MigNeedsSingleDevice`](Reason::MigNeedsSingleDevice), for a
    /// request that may take several devices (`-n all`, `-n 2..4`).
    MigNeedsSingleDeviceOf {
        /// The count asked for, as written (`all`, `2..4`).
        count: String,
    },
    /// Another job holds its lease.
    Leased {
        /// Who, when the holder left a record that can be trusted.
        by: Option<Holder>,
    },
    /// Its lock file cannot be used (planted by someone, unreadable).
    LeaseUnavailable {
        /// What is wrong and what to do.
        message: String,
    },
    /// Shared by jobs that asked to share it: an exclusive job cannot take it.
    Shared {
        /// Shares on it.
        shares: usize,
        /// Bytes they reserved, in all.
        reserved: u64,
    },
    /// A share does not fit beside the device's other shares.
    SharesFull {
        /// Free bytes, as the driver reports them.
        free: u64,
        /// Bytes of it the other shares reserved and have not allocated yet.
        outstanding: u64,
        /// Other shares on the device.
        shares: usize,
        /// Bytes asked for.
        required: u64,
    },
    /// An older waiter in the queue has first claim on it.
    Claimed {
        /// The older waiter.
        by: Holder,
        /// How many devices it asks for, as written.
        count: String,
    },
    /// Memory in use that no listed process holds, above what an idle
    /// device shows: a job gpusel cannot see (another container or PID
    /// namespace).
    UnaccountedMemory {
        /// Bytes in use by no listed process.
        unaccounted: u64,
        /// The most an idle device may show.
        tolerance: u64,
    },
    /// The driver's sample buffer shows GPU utilization over the limit
    /// within the idle window, though the instant reading does not.
    UtilizationPeak {
        /// The peak, percent.
        value: u8,
        /// The limit, percent.
        max: u8,
        /// How long before the snapshot the peak was sampled, ms.
        age_ms: u64,
        /// The window's length, ms.
        window_ms: u64,
    },
    /// The same, for memory-bandwidth utilization.
    MemoryUtilizationPeak {
        /// The peak, percent.
        value: u8,
        /// The limit, percent.
        max: u8,
        /// How long before the snapshot the peak was sampled, ms.
        age_ms: u64,
        /// The window's length, ms.
        window_ms: u64,
    },
    /// Compute mode `Prohibited`: the driver lets no process create a CUDA
    /// context on the GPU.
    ComputeProhibited,
    /// Compute mode `Exclusive_Process` (or `Exclusive_Thread`) and a
    /// compute client holds the GPU: the driver refuses a second context.
    ComputeExclusive {
        /// The client's pid.
        pid: u32,
    },
    /// The site's configuration bans it.
    Banned {
        /// Where the ban comes from (a config file, an environment variable).
        source: String,
    },
}

impl Reason {
    /// Whether the reason stays for as long as a selection waits: it comes
    /// from the request, the environment or the site's config (a hidden,
    /// unrequested, excluded, banned or wrongly named device), not from
    /// what the device is doing.
    pub fn lasts(&self) -> bool {
        matches!(
            self,
            Reason::HiddenByCudaVisibleDevices
                | Reason::NotRequested
                | Reason::Excluded
                | Reason::NameMismatch { .. }
                | Reason::MigWithoutInstances
                | Reason::MigNeedsSingleDevice { .. }
                | Reason::MigNeedsSingleDeviceOf { .. }
                | Reason::Banned { .. }
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::HiddenByCudaVisibleDevices => write!(f, "hidden by CUDA_VISIBLE_DEVICES"),
            Reason::NotRequested => write!(f, "not named by --devices"),
            Reason::Excluded => write!(f, "excluded by --exclude"),
            Reason::NameMismatch { name, pattern } => {
                write!(f, "name '{name}' does not contain '{pattern}'")
            }
            Reason::NotEnoughMemory { free, required } => {
                let (free_text, required_text) = (format_bytes(*free), format_bytes(*required));
                if free_text == required_text {
                    // Rounding would make it read "80 GiB free < 80 GiB needed".
                    write!(f, "{free} bytes free < {required} bytes needed")
                } else {
                    write!(f, "{free_text} free < {required_text} needed")
                }
            }
            Reason::Unknown { what } => {
                write!(f, "{what} unknown (the provider does not report it)")
            }
            Reason::Utilization { value, max } => {
                write!(f, "utilization {value}% > {max}% allowed")
            }
            Reason::MemoryUtilization { value, max } => {
                write!(f, "memory utilization {value}% > {max}% allowed")
            }
            Reason::Processes { count, max } => {
                let s = if *count == 1 { "" } else { "es" };
                write!(f, "{count} process{s} > {max} allowed")
            }
            Reason::MemoryUsed { used, max, limit } => {
                let allowed = if limit.ends_with('%') {
                    format!("{} ({limit})", format_bytes(*max))
                } else {
                    format_bytes(*max)
                };
                write!(f, "{} in use > {allowed} allowed", format_bytes(*used))
            }
            Reason::Power { draw, max } => write!(
                f,
                "power draw {} > {} allowed",
                format_power(*draw),
                format_power(*max)
            ),
            Reason::Predicate { label } => write!(f, "rejected by custom filter '{label}'"),
            Reason::MigWithoutInstances => {
                write!(
                    f,
                    "MIG mode is on and no MIG device is listed (none is configured, or this provider cannot list them; --provider nvml can)"
                )
            }
            Reason::MigNeedsSingleDevice { count } => write!(
                f,
                "MIG device, and a process can use only one (asked for {count} devices)"
            ),
            Reason::MigNeedsSingleDeviceOf { count } => write!(
                f,
                "MIG device, and a process can use only one (asked for {count} devices)"
            ),
            Reason::Leased { by: Some(holder) } => write!(f, "leased by {holder}"),
            Reason::Leased { by: None } => {
                write!(f, "leased by another job (it left no record of who)")
            }
            Reason::LeaseUnavailable { message } => write!(f, "cannot be leased: {message}"),
            Reason::UnaccountedMemory {
                unaccounted,
                tolerance,
            } => write!(
                f,
                "{} in use by no process visible here (an idle GPU shows at most {}): a job in another container or PID namespace?",
                format_bytes(*unaccounted),
                format_bytes(*tolerance)
            ),
            Reason::UtilizationPeak {
                value,
                max,
                age_ms,
                window_ms,
            } => write!(
                f,
                "utilization peaked at {value}% {} ago (> {max}% allowed over the last {})",
                format_ms(*age_ms),
                format_ms(*window_ms)
            ),
            Reason::MemoryUtilizationPeak {
                value,
                max,
                age_ms,
                window_ms,
            } => write!(
                f,
                "memory utilization peaked at {value}% {} ago (> {max}% allowed over the last {})",
                format_ms(*age_ms),
                format_ms(*window_ms)
            ),
            Reason::ComputeProhibited => write!(
                f,
                "compute mode is Prohibited: the driver lets no process create a CUDA context on it"
            ),
            Reason::ComputeExclusive { pid } => write!(
                f,
                "compute mode is Exclusive_Process and process {pid} holds it: the driver refuses a second context"
            ),
            Reason::Banned { source } => write!(f, "banned by the site configuration ({source})"),
            Reason::Claimed { by, count } => {
                write!(
                    f,
                    "first claimed by an older waiter, {by} (asks for {count})"
                )
            }
            Reason::Shared { shares, reserved } => {
                let s = if *shares == 1 { "" } else { "s" };
                write!(
                    f,
                    "shared by {shares} job{s} ({} reserved), which an exclusive lease cannot join (a share, --share --mem, can)",
                    format_bytes(*reserved)
                )
            }
            Reason::SharesFull {
                free,
                outstanding,
                shares,
                required,
            } => {
                let s = if *shares == 1 { "" } else { "s" };
                write!(
                    f,
                    "{} free, {} of it reserved by {shares} share{s} < {} needed",
                    format_bytes(*free),
                    format_bytes(*outstanding),
                    format_bytes(*required)
                )
            }
        }
    }
}
