//! The scenario file: what the fake driver reports, in NVML's own terms
//! (memory total/reserved/used/free, utilization, running processes, MIG
//! devices), plus the faults to inject. Deliberately not gpusel's model, so
//! that the test double shares no code with what it tests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Deserialize;

/// Environment variable naming the scenario file.
pub const SCENARIO_ENV: &str = "FAKE_NVML_SCENARIO";

/// Everything the fake driver knows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Free-form note on what the scenario is for (ignored).
    #[serde(default, rename = "comment")]
    _comment: Option<serde::de::IgnoredAny>,
    /// `nvmlSystemGetDriverVersion`, e.g. `570.124.06`.
    #[serde(default)]
    pub driver_version: Option<String>,
    /// `nvmlSystemGetNVMLVersion`, e.g. `12.570.124.06`.
    #[serde(default)]
    pub nvml_version: Option<String>,
    /// `nvmlSystemGetCudaDriverVersion`, as NVML encodes it (12080 is 12.8).
    #[serde(default)]
    pub cuda_driver_version: Option<i32>,
    /// Makes every init entry point fail.
    #[serde(default)]
    pub init_error: Option<InitError>,
    /// Makes every init entry point sleep this long (milliseconds) before
    /// it answers, as a driver hung at start-up does (a GPU fallen off the
    /// bus, a driver waking GPUs without persistence mode).
    #[serde(default)]
    pub hang_init_ms: Option<u64>,
    /// Entry points that answer `NVML_ERROR_FUNCTION_NOT_FOUND`, as on a
    /// driver too old to have them.
    #[serde(default)]
    pub missing_functions: Vec<String>,
    /// GPUs in NVML index order.
    #[serde(default)]
    pub devices: Vec<Device>,
}

/// Why init fails.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitError {
    /// `NVML_ERROR_DRIVER_NOT_LOADED`: no kernel module.
    DriverNotLoaded,
    /// `NVML_ERROR_LIB_RM_VERSION_MISMATCH`: driver upgraded, module not reloaded.
    LibRmVersionMismatch,
    /// `NVML_ERROR_NO_PERMISSION`: no access to `/dev/nvidia*`.
    NoPermission,
}

/// Why a device's handle cannot be had.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandleError {
    /// `NVML_ERROR_GPU_IS_LOST`: fell off the bus.
    GpuIsLost,
    /// `NVML_ERROR_NO_PERMISSION`: cgroup or device-node permission.
    NoPermission,
    /// `NVML_ERROR_UNKNOWN`.
    Unknown,
}

/// One physical GPU.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// `GPU-...`.
    pub uuid: String,
    /// Product name.
    #[serde(default)]
    pub name: Option<String>,
    /// Makes the handle lookup of this device fail.
    #[serde(default)]
    pub handle_error: Option<HandleError>,
    /// `DDDDDDDD:BB:DD.F` (NVML's 8-digit domain form).
    #[serde(default)]
    pub pci_bus_id: Option<String>,
    /// PCI device and vendor id, e.g. `0x20B210DE`.
    #[serde(default)]
    pub pci_device_id: Option<u32>,
    /// PCI subsystem id.
    #[serde(default)]
    pub pci_sub_system_id: Option<u32>,
    /// Framebuffer memory.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Utilization rates.
    #[serde(default)]
    pub utilization: Option<Utilization>,
    /// GPU core temperature in °C.
    #[serde(default)]
    pub temperature: Option<u32>,
    /// Power draw in mW.
    #[serde(default)]
    pub power_usage: Option<u32>,
    /// Power management limit in mW.
    #[serde(default)]
    pub power_limit: Option<u32>,
    /// Enforced power limit in mW.
    #[serde(default)]
    pub enforced_power_limit: Option<u32>,
    /// P-state, 0 to 15.
    #[serde(default)]
    pub performance_state: Option<u32>,
    /// Current clocks in MHz.
    #[serde(default)]
    pub clocks: Option<Clocks>,
    /// Maximum clocks in MHz.
    #[serde(default)]
    pub max_clocks: Option<Clocks>,
    /// MIG mode; absent on GPUs without MIG.
    #[serde(default)]
    pub mig_mode: Option<MigMode>,
    /// Processes with a compute context.
    #[serde(default)]
    pub compute_processes: Option<Vec<Process>>,
    /// Processes with a graphics context.
    #[serde(default)]
    pub graphics_processes: Option<Vec<Process>>,
    /// MIG devices, by MIG index.
    #[serde(default)]
    pub mig_devices: Vec<MigDevice>,
    /// `nvmlDeviceGetComputeMode`; absent answers `NOT_SUPPORTED`.
    #[serde(default)]
    pub compute_mode: Option<ComputeMode>,
    /// The driver's sample buffer (`nvmlDeviceGetSamples`); absent answers
    /// `NOT_SUPPORTED`, as on a driver that keeps none for the device.
    #[serde(default)]
    pub samples: Option<Samples>,
    /// Where the GPU sits: NUMA node, CPUs, PCIe switches, NVLinks. Absent:
    /// every topology call answers `NVML_ERROR_NOT_SUPPORTED`.
    #[serde(default)]
    pub topology: Option<Topology>,
}

/// `nvmlComputeMode_t`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeMode {
    /// `NVML_COMPUTEMODE_DEFAULT` (0).
    Default,
    /// `NVML_COMPUTEMODE_EXCLUSIVE_THREAD` (1).
    ExclusiveThread,
    /// `NVML_COMPUTEMODE_PROHIBITED` (2).
    Prohibited,
    /// `NVML_COMPUTEMODE_EXCLUSIVE_PROCESS` (3).
    ExclusiveProcess,
}

/// Utilization samples by kind, each as old as the scenario says at the
/// moment of the query (so a scenario stays true however long a test runs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    /// `NVML_GPU_UTILIZATION_SAMPLES`.
    #[serde(default)]
    pub gpu: Vec<Sample>,
    /// `NVML_MEMORY_UTILIZATION_SAMPLES`.
    #[serde(default)]
    pub memory: Vec<Sample>,
}

/// One sample: its value and its age.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// How long before the query it was taken, in milliseconds.
    pub age_ms: u64,
    /// Percent.
    pub value: u32,
}

/// Where one GPU sits in the machine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The NUMA node nearest the GPU (`nvmlDeviceGetMemoryAffinity`).
    #[serde(default)]
    pub numa_node: Option<u32>,
    /// The CPUs nearest the GPU as ranges, `0-15,32-47`
    /// (`nvmlDeviceGetCpuAffinity`).
    #[serde(default)]
    pub cpus: Option<String>,
    /// Names of the PCIe switches above the GPU, the host bridge's first.
    /// Two GPUs whose nearest switch is the same meet at
    /// `NVML_TOPOLOGY_SINGLE`; sharing a farther one, at `..._MULTIPLE`.
    #[serde(default)]
    pub pcie_switches: Vec<String>,
    /// Name of the host bridge above the switches: GPUs sharing it (and no
    /// switch) meet at `NVML_TOPOLOGY_HOSTBRIDGE`; on one NUMA node, at
    /// `..._NODE`; else at `..._SYSTEM`.
    #[serde(default)]
    pub host_bridge: Option<String>,
    /// The GPU's NVLinks, by link index; absent on a GPU without NVLink
    /// (`NVML_ERROR_NOT_SUPPORTED`). An index past the list answers
    /// `NVML_ERROR_INVALID_ARGUMENT`, as a link the GPU does not have.
    #[serde(default)]
    pub nvlinks: Option<Vec<NvLink>>,
}

/// One NVLink of a GPU.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvLink {
    /// `nvmlDeviceGetNvLinkState`: whether the link is up.
    #[serde(default = "yes")]
    pub active: bool,
    /// `nvmlDeviceGetNvLinkRemotePciInfo_v2`: the bus id at the other end.
    pub remote_pci_bus_id: String,
}

fn yes() -> bool {
    true
}

/// One MIG device.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigDevice {
    /// `MIG-...`.
    pub uuid: String,
    /// Name as NVML gives it, e.g. `NVIDIA H100 80GB HBM3 MIG 1g.10gb`.
    #[serde(default)]
    pub name: Option<String>,
    /// GPU instance id.
    #[serde(default)]
    pub gpu_instance_id: Option<u32>,
    /// Compute instance id.
    #[serde(default)]
    pub compute_instance_id: Option<u32>,
    /// Memory of the instance.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Processes with a compute context.
    #[serde(default)]
    pub compute_processes: Option<Vec<Process>>,
    /// Processes with a graphics context.
    #[serde(default)]
    pub graphics_processes: Option<Vec<Process>>,
}

/// Memory as `nvmlMemory_v2_t` has it: `total = reserved + used + free`.
/// The v1 call reports `used + reserved` as used, as drivers since R510 do.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Bytes installed.
    pub total: u64,
    /// Bytes the driver keeps for itself.
    #[serde(default)]
    pub reserved: u64,
    /// Bytes allocated by contexts.
    pub used: u64,
    /// Bytes free.
    pub free: u64,
}

/// Utilization rates in percent.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Utilization {
    /// Kernel busy percentage.
    pub gpu: u32,
    /// Memory controller busy percentage.
    pub memory: u32,
}

/// Clocks in MHz, by `nvmlClockType_t`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clocks {
    /// `NVML_CLOCK_GRAPHICS`.
    #[serde(default)]
    pub graphics: Option<u32>,
    /// `NVML_CLOCK_SM`.
    #[serde(default)]
    pub sm: Option<u32>,
    /// `NVML_CLOCK_MEM`.
    #[serde(default)]
    pub memory: Option<u32>,
    /// `NVML_CLOCK_VIDEO`.
    #[serde(default)]
    pub video: Option<u32>,
}

/// MIG mode, current and pending (after the next GPU reset).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigMode {
    /// Enabled now.
    pub current: bool,
    /// Enabled after reset.
    pub pending: bool,
}

/// A process holding a context.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    /// Host pid.
    pub pid: u32,
    /// GPU memory in bytes; absent reads as `NVML_VALUE_NOT_AVAILABLE`.
    #[serde(default)]
    pub used_memory: Option<u64>,
    /// What `nvmlSystemGetProcessName` answers for this pid.
    #[serde(default)]
    pub name: Option<String>,
}

/// Why the scenario could not be had.
#[derive(Debug)]
pub enum LoadError {
    /// The variable is unset.
    Unset,
    /// The file cannot be read or parsed, and why.
    Bad(String),
}

impl Scenario {
    /// Every process on every device and MIG device.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.devices.iter().flat_map(|d| {
            let own = [&d.compute_processes, &d.graphics_processes];
            let migs = d
                .mig_devices
                .iter()
                .flat_map(|m| [&m.compute_processes, &m.graphics_processes]);
            own.into_iter().chain(migs).flatten().flatten()
        })
    }
}

type Key = (PathBuf, u64, u64, u64, Option<SystemTime>);

static CACHE: Mutex<Option<(Key, Arc<Scenario>)>> = Mutex::new(None);

/// The scenario as the file says now. Parsed again whenever the file changes
/// (path, inode, size or mtime), so a test can rewrite it between queries.
pub fn current() -> Result<Arc<Scenario>, LoadError> {
    let path = PathBuf::from(std::env::var_os(SCENARIO_ENV).ok_or(LoadError::Unset)?);
    let key =
        key(&path).map_err(|e| LoadError::Bad(format!("cannot read {}: {e}", path.display())))?;
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((k, s)) = cache.as_ref()
        && *k == key
    {
        return Ok(Arc::clone(s));
    }
    let text = std::fs::read(&path)
        .map_err(|e| LoadError::Bad(format!("cannot read {}: {e}", path.display())))?;
    let scenario: Arc<Scenario> = Arc::new(
        serde_json::from_slice(&text)
            .map_err(|e| LoadError::Bad(format!("{} is not a scenario: {e}", path.display())))?,
    );
    *cache = Some((key, Arc::clone(&scenario)));
    Ok(scenario)
}

fn key(path: &Path) -> std::io::Result<Key> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((
        path.to_path_buf(),
        m.dev(),
        m.ino(),
        m.len(),
        m.modified().ok(),
    ))
}
