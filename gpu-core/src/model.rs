//! The GPU model every provider fills and every consumer reads.
//!
//! Units are fixed by the type: sizes in bytes, power in milliwatts,
//! percentages as `u8`, temperatures in degrees Celsius. A value the driver
//! does not report is `None`, never 0: "not supported" and "zero" differ.

use crate::provider::ProviderError;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::holder::LeaseStatus;

/// Version of the JSON schema written by `--json`, the agent API and snapshot
/// files. Bumped on any change that an older reader would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one provider saw on one host at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Host name of the machine the GPUs are in.
    pub host: String,
    /// When the snapshot was taken (RFC 3339 in JSON).
    #[serde(with = "crate::timefmt::rfc3339")]
    pub time: SystemTime,
    /// Name of the provider that produced it (`nvml`, `smi`, `file:...`).
    pub provider: String,
    /// NVIDIA driver version, e.g. `570.124.06`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. `12.8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_driver_version: Option<String>,
    /// The GPUs, in NVML index (PCI bus) order.
    pub gpus: Vec<Gpu>,
    /// gpusel's waiters (`--wait`), oldest first: the queue, filled in with
    /// the leases (`gpusel list --json`, the agent), empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiters: Vec<crate::Waiter>,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Gpu {
    /// NVML index: the number `nvidia-smi` shows (PCI bus order).
    pub index: u32,
    /// Stable identity, `GPU-xxxxxxxx-xxxx-...`.
    pub uuid: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// PCI bus id, e.g. `00000000:1B:00.0`.
    #[serde(default)]
    pub pci_bus_id: Option<String>,
    /// Total memory in bytes.
    #[serde(default)]
    pub memory_total: Option<u64>,
    /// Used memory in bytes.
    #[serde(default)]
    pub memory_used: Option<u64>,
    /// Free memory in bytes.
    #[serde(default)]
    pub memory_free: Option<u64>,
    /// Memory the driver keeps for itself, in bytes, when the provider
    /// reports it apart (NVML's v2 memory call). `None` when it does not:
    /// then `memory_used` may include it (NVML's v1 call since R510), which
    /// the unaccounted-memory rule allows for (see
    /// [`IdleRules`](crate::IdleRules)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reserved: Option<u64>,
    /// Percent of the last sample period in which a kernel ran.
    #[serde(default)]
    pub utilization_gpu: Option<u8>,
    /// Percent of the last sample period in which memory was read or written.
    #[serde(default)]
    pub utilization_memory: Option<u8>,
    /// Core temperature in degrees Celsius.
    #[serde(default)]
    pub temperature: Option<i32>,
    /// Power draw in milliwatts.
    #[serde(default)]
    pub power_draw: Option<u32>,
    /// Enforced power limit in milliwatts.
    #[serde(default)]
    pub power_limit: Option<u32>,
    /// Performance state, 0 (P0, fastest) to 15.
    #[serde(default)]
    pub performance_state: Option<u8>,
    /// Current SM clock in MHz.
    #[serde(default)]
    pub sm_clock: Option<u32>,
    /// Whether MIG mode is on (`None` on GPUs without MIG support).
    #[serde(default)]
    pub mig_mode: Option<bool>,
    /// Who may create CUDA contexts on it (`nvidia-smi -c`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_mode: Option<ComputeMode>,
    /// The highest GPU and memory utilization in the driver's sample buffer
    /// over the last seconds (`--idle-window`), when the provider read it:
    /// a job paused for data loading reads 0% at the instant of a sample,
    /// not over a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_window: Option<UtilizationWindow>,
    /// Processes using the GPU; `None` when the provider could not list them.
    #[serde(default)]
    pub processes: Option<Vec<GpuProcess>>,
    /// MIG instances, when MIG mode is on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mig_devices: Vec<MigDevice>,
    /// Who leases it, when someone does. Filled by `gpusel list`, not by
    /// providers; absent in older snapshot files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
    /// The NUMA node nearest the GPU (the first of its memory affinity set,
    /// nvidia-smi's "NUMA Affinity"); `None` when the provider cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// The CPUs nearest the GPU, as a list of ranges (`0-15,32-47`,
    /// nvidia-smi's "CPU Affinity"); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_affinity: Option<String>,
    /// How the GPU reaches each other GPU of the snapshot, one entry a peer;
    /// empty when the provider reads no topology (see [`GpuLink`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<GpuLink>,
}

/// How one GPU reaches one peer: NVLink lanes, and the PCIe path between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuLink {
    /// UUID of the peer GPU.
    pub peer: String,
    /// Active NVLinks that join the two (nvidia-smi's `NV#`); 0 for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nvlinks: u32,
    /// The closest point of the PCIe tree the two share, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie: Option<PcieLevel>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where two GPUs' PCIe paths meet, nearest first: NVML's
/// `nvmlGpuTopologyLevel_t`, as `nvidia-smi topo -m` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcieLevel {
    /// On one board (a dual-GPU card such as a K80): `NVML_TOPOLOGY_INTERNAL`.
    Internal,
    /// Behind one PCIe switch (`PIX`): `NVML_TOPOLOGY_SINGLE`.
    Single,
    /// Behind several PCIe switches, without crossing a host bridge (`PXB`):
    /// `NVML_TOPOLOGY_MULTIPLE`.
    Multiple,
    /// Through one PCIe host bridge (`PHB`): `NVML_TOPOLOGY_HOSTBRIDGE`.
    HostBridge,
    /// Between host bridges of one NUMA node (`NODE`): `NVML_TOPOLOGY_NODE`.
    Node,
    /// Across NUMA nodes, over the CPUs' interconnect (`SYS`):
    /// `NVML_TOPOLOGY_SYSTEM`.
    System,
}

impl PcieLevel {
    /// The name `nvidia-smi topo -m` prints for it.
    pub fn code(self) -> &'static str {
        match self {
            PcieLevel::Internal | PcieLevel::Single => "PIX",
            PcieLevel::Multiple => "PXB",
            PcieLevel::HostBridge => "PHB",
            PcieLevel::Node => "NODE",
            PcieLevel::System => "SYS",
        }
    }
}

impl GpuLink {
    /// A link to `peer` with no NVLink and no known PCIe path.
    pub fn new(peer: impl Into<String>) -> Self {
        GpuLink {
            peer: peer.into(),
            nvlinks: 0,
            pcie: None,
        }
    }
}

/// One MIG (Multi-Instance GPU) device carved out of a [`Gpu`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MigDevice {
    /// Index of this MIG device within its parent GPU.
    pub index: u32,
    /// Stable identity, `MIG-xxxxxxxx-xxxx-...`.
    pub uuid: String,
    /// Profile name, e.g. `1g.10gb`.
    #[serde(default)]
    pub profile: Option<String>,
    /// GPU instance id.
    #[serde(default)]
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id.
    #[serde(default)]
    pub compute_instance_id: Option<u32>,
    /// Total memory in bytes.
    #[serde(default)]
    pub memory_total: Option<u64>,
    /// Used memory in bytes.
    #[serde(default)]
    pub memory_used: Option<u64>,
    /// Free memory in bytes.
    #[serde(default)]
    pub memory_free: Option<u64>,
    /// Processes using this MIG device; `None` when unknown.
    #[serde(default)]
    pub processes: Option<Vec<GpuProcess>>,
    /// Who leases it, when someone does (see [`Gpu::lease`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
}

/// Who may create CUDA contexts on a GPU: NVML's `nvmlComputeMode_t`, as
/// `nvidia-smi --compute-mode` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeMode {
    /// Any number of processes, any number of contexts.
    Default,
    /// One context, used by one thread at a time (deprecated by NVIDIA).
    ExclusiveThread,
    /// No CUDA context at all: no job can run.
    Prohibited,
    /// One process at a time: a GPU with a compute client takes no other.
    ExclusiveProcess,
}

impl ComputeMode {
    /// The name `nvidia-smi` prints (`Exclusive_Process`).
    pub fn smi_name(self) -> &'static str {
        match self {
            ComputeMode::Default => "Default",
            ComputeMode::ExclusiveThread => "Exclusive_Thread",
            ComputeMode::Prohibited => "Prohibited",
            ComputeMode::ExclusiveProcess => "Exclusive_Process",
        }
    }

    /// Reads `nvidia-smi`'s name (any case, `_` or space), or `None`.
    pub fn from_smi_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().replace(' ', "_").as_str() {
            "default" => Some(ComputeMode::Default),
            "exclusive_thread" => Some(ComputeMode::ExclusiveThread),
            "prohibited" => Some(ComputeMode::Prohibited),
            "exclusive_process" => Some(ComputeMode::ExclusiveProcess),
            _ => None,
        }
    }
}

/// The peaks of the driver's utilization samples over a window ending at
/// the snapshot's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UtilizationWindow {
    /// How far back the window reaches, in milliseconds.
    pub window_ms: u64,
    /// The highest GPU utilization sample in the window; `None` when the
    /// buffer held no GPU sample in it.
    #[serde(default)]
    pub gpu: Option<Peak>,
    /// The highest memory utilization sample in the window; `None` when
    /// the buffer held no memory sample in it.
    #[serde(default)]
    pub memory: Option<Peak>,
}

/// The highest sample of a series, and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Peak {
    /// The value, percent.
    pub percent: u8,
    /// How long before the snapshot's time it was sampled, in milliseconds
    /// (the latest sample of that value).
    pub age_ms: u64,
    /// How many samples the window held.
    pub samples: u32,
}

impl Peak {
    /// The peak of `(age_ms, percent)` samples, `None` when there are none.
    /// Percentages over 100 read as 100; among equal peaks the most recent
    /// one is kept.
    pub fn of(samples: impl IntoIterator<Item = (u64, u32)>) -> Option<Peak> {
        let mut peak: Option<Peak> = None;
        let mut count = 0u32;
        for (age_ms, value) in samples {
            count = count.saturating_add(1);
            let percent = u8::try_from(value.min(100)).unwrap_or(100);
            let better = peak
                .is_none_or(|p| percent > p.percent || (percent == p.percent && age_ms < p.age_ms));
            if better {
                peak = Some(Peak {
                    percent,
                    age_ms,
                    samples: 0,
                });
            }
        }
        peak.map(|p| Peak {
            samples: count,
            ..p
        })
    }

    /// A peak with its sample count, for providers and tests.
    pub fn new(percent: u8, age_ms: u64, samples: u32) -> Self {
        Peak {
            percent,
            age_ms,
            samples,
        }
    }
}

impl UtilizationWindow {
    /// A window of `window_ms` with the given peaks.
    pub fn new(window_ms: u64, gpu: Option<Peak>, memory: Option<Peak>) -> Self {
        UtilizationWindow {
            window_ms,
            gpu,
            memory,
        }
    }
}

/// Whether a process uses the GPU for compute, graphics or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    /// A CUDA (compute) context.
    Compute,
    /// A graphics context (X server, a desktop, a game).
    Graphics,
    /// Both.
    ComputeGraphics,
}

/// A process holding a context on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuProcess {
    /// Process id as the driver reports it (host PID namespace).
    pub pid: u32,
    /// GPU memory the process uses, in bytes.
    #[serde(default)]
    pub used_memory: Option<u64>,
    /// Executable name.
    #[serde(default)]
    pub name: Option<String>,
    /// Full command line, when visible in `/proc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<Vec<String>>,
    /// Owning user name, when visible in `/proc`.
    #[serde(default)]
    pub user: Option<String>,
    /// When the process started, when visible in `/proc`.
    #[serde(default, with = "crate::timefmt::rfc3339_opt")]
    pub start_time: Option<SystemTime>,
    /// Compute, graphics or both, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProcessKind>,
    /// Whether `/proc` shows the process to the reader. `Some(false)`: the
    /// driver reports it but it is in another PID namespace (a container) or
    /// hidden (`hidepid=`, permissions), so its user, start time and command
    /// are unknown; `list` marks it `[!]` instead of hiding it. `None`: not
    /// looked up (snapshot files written before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
}

impl Gpu {
    /// A GPU with identity only and every measurement unknown.
    pub fn new(index: u32, uuid: impl Into<String>, name: impl Into<String>) -> Self {
        Gpu {
            index,
            uuid: uuid.into(),
            name: name.into(),
            pci_bus_id: None,
            memory_total: None,
            memory_used: None,
            memory_free: None,
            memory_reserved: None,
            utilization_gpu: None,
            utilization_memory: None,
            temperature: None,
            power_draw: None,
            power_limit: None,
            performance_state: None,
            sm_clock: None,
            mig_mode: None,
            compute_mode: None,
            utilization_window: None,
            processes: None,
            mig_devices: Vec::new(),
            lease: None,
            numa_node: None,
            cpu_affinity: None,
            links: Vec::new(),
        }
    }

    /// How this GPU reaches `peer` (a UUID), when the provider said.
    pub fn link_to(&self, peer: &str) -> Option<&GpuLink> {
        self.links
            .iter()
            .find(|l| l.peer.eq_ignore_ascii_case(peer))
    }

    /// True when MIG mode is on: CUDA then sees only the MIG devices, never the whole GPU.
    pub fn mig_enabled(&self) -> bool {
        self.mig_mode == Some(true) || !self.mig_devices.is_empty()
    }

    /// Every process on the GPU: its own, or its MIG devices' when MIG is on.
    pub fn all_processes(&self) -> impl Iterator<Item = &GpuProcess> {
        let own = self.processes.iter().flatten();
        let mig = self
            .mig_devices
            .iter()
            .flat_map(|m| m.processes.iter().flatten());
        own.chain(mig)
    }

    /// When the oldest process on the GPU started (what nvgpu and the
    /// dashboards show as "since"), if any start time is known.
    pub fn first_start(&self) -> Option<SystemTime> {
        self.all_processes().filter_map(|p| p.start_time).min()
    }
}

impl MigDevice {
    /// When the oldest process on the MIG device started, if any start
    /// time is known (see [`Gpu::first_start`]).
    pub fn first_start(&self) -> Option<SystemTime> {
        self.processes
            .iter()
            .flatten()
            .filter_map(|p| p.start_time)
            .min()
    }

    /// A MIG device with identity only and every measurement unknown.
    pub fn new(index: u32, uuid: impl Into<String>) -> Self {
        MigDevice {
            index,
            uuid: uuid.into(),
            profile: None,
            gpu_instance_id: None,
            compute_instance_id: None,
            memory_total: None,
            memory_used: None,
            memory_free: None,
            processes: None,
            lease: None,
        }
    }
}

impl GpuProcess {
    /// A process known only by its pid.
    pub fn new(pid: u32) -> Self {
        GpuProcess {
            pid,
            used_memory: None,
            name: None,
            command_line: None,
            user: None,
            start_time: None,
            kind: None,
            visible: None,
        }
    }
}

impl Snapshot {
    /// An empty snapshot of `host` taken now by `provider`.
    pub fn new(host: impl Into<String>, provider: impl Into<String>) -> Self {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            host: host.into(),
            time: SystemTime::now(),
            provider: provider.into(),
            driver_version: None,
            cuda_driver_version: None,
            gpus: Vec::new(),
            waiters: Vec::new(),
        }
    }

    /// An empty snapshot of this machine (its host name) taken now by
    /// `provider`: what a provider that reads local GPUs starts from.
    pub fn local(provider: impl Into<String>) -> Self {
        Self::new(host_name(), provider)
    }

    /// [`validate`](Self::validate)s, as a provider returns it: the snapshot,
    /// or [`ProviderError::Invalid`] naming `source` (a provider, a file).
    pub fn validated(self, source: impl Into<String>) -> Result<Self, ProviderError> {
        match self.validate() {
            Ok(()) => Ok(self),
            Err(error) => Err(ProviderError::Invalid {
                source_name: source.into(),
                error,
            }),
        }
    }

    /// Checks what the rest of gpusel relies on: a supported schema version and
    /// unique GPU indices and UUIDs (identity is the UUID).
    pub fn validate(&self) -> Result<(), SnapshotError> {
        if self.schema_version == 0 || self.schema_version > SCHEMA_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: self.schema_version,
            });
        }
        let mut uuids = std::collections::HashSet::new();
        let mut indices = std::collections::HashSet::new();
        for gpu in &self.gpus {
            if gpu.uuid.trim().is_empty() {
                return Err(SnapshotError::MissingUuid { index: gpu.index });
            }
            if !indices.insert(gpu.index) {
                return Err(SnapshotError::DuplicateIndex { index: gpu.index });
            }
            if !uuids.insert(gpu.uuid.to_ascii_lowercase()) {
                return Err(SnapshotError::DuplicateUuid {
                    uuid: gpu.uuid.clone(),
                });
            }
            for mig in &gpu.mig_devices {
                if !uuids.insert(mig.uuid.to_ascii_lowercase()) {
                    return Err(SnapshotError::DuplicateUuid {
                        uuid: mig.uuid.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A snapshot that breaks the rules of the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The schema version is not one this build reads.
    #[error(
        "snapshot schema version {found} is not supported (this gpusel reads version {SCHEMA_VERSION}); upgrade gpusel or re-record the snapshot"
    )]
    UnsupportedVersion {
        /// The version the snapshot declares.
        found: u32,
    },
    /// Two GPUs share an index.
    #[error("two GPUs have index {index}; each GPU needs its own index")]
    DuplicateIndex {
        /// The repeated index.
        index: u32,
    },
    /// Two devices share a UUID.
    #[error("two devices have UUID {uuid}; UUIDs identify GPUs and must be unique")]
    DuplicateUuid {
        /// The repeated UUID.
        uuid: String,
    },
    /// A GPU has an empty UUID.
    #[error("GPU {index} has an empty uuid; every GPU needs its UUID")]
    MissingUuid {
        /// Index of the GPU without UUID.
        index: u32,
    },
}

/// This machine's host name, or `localhost` when it has none.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
