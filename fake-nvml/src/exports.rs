//! The exported NVML entry points, named and typed as in `nvml.h`.

use std::ffi::{CStr, c_char, c_int, c_uint};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::{self, Ret};
use crate::handle::{self, Handle, Target};
use crate::scenario::{self, ComputeMode, HandleError, InitError, LoadError, Process, Scenario};

/// Open `nvmlInit` calls not yet matched by `nvmlShutdown`; NVML refuses
/// queries while it is zero, and so does the fake, so a caller that forgets
/// init fails here as on a real driver.
static INITIALIZED: AtomicUsize = AtomicUsize::new(0);

/// What the real library holds open between init and shutdown: its device
/// nodes (`/dev/nvidiactl`, `/dev/nvidia0`). The fake holds the scenario file
/// open instead, inheritable across exec as a driver's descriptors may be, so
/// a test can see whether a process it started still has NVML initialised.
static DRIVER_FD: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);

unsafe extern "C" {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
}

fn open_driver_fd() {
    use std::os::fd::AsRawFd;
    const F_SETFD: c_int = 2;
    let Some(path) = std::env::var_os(scenario::SCENARIO_ENV) else {
        return;
    };
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    // SAFETY: a valid descriptor we own; F_SETFD with 0 clears FD_CLOEXEC.
    unsafe { fcntl(file.as_raw_fd(), F_SETFD, 0 as c_int) };
    if let Ok(mut slot) = DRIVER_FD.lock() {
        *slot = Some(file);
    }
}

fn close_driver_fd() {
    if let Ok(mut slot) = DRIVER_FD.lock() {
        *slot = None;
    }
}

/// Runs `body` against the current scenario, as the entry point `name`:
/// answers `FUNCTION_NOT_FOUND` when the scenario lists `name` as missing and
/// `UNKNOWN` when `body` panics, so no panic crosses the C boundary.
pub(crate) fn call(name: &str, body: impl FnOnce(&Scenario) -> Result<(), Ret>) -> Ret {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if INITIALIZED.load(Ordering::SeqCst) == 0 {
            return Err(abi::UNINITIALIZED);
        }
        let scenario = load()?;
        if scenario.missing_functions.iter().any(|m| m == name) {
            return Err(abi::FUNCTION_NOT_FOUND);
        }
        body(&scenario)
    }));
    match outcome {
        Ok(Ok(())) => abi::SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => abi::UNKNOWN,
    }
}

/// [`call`] for an entry point that takes a device handle.
pub(crate) fn on_device(
    name: &str,
    device: Handle,
    body: impl FnOnce(Target<'_>) -> Result<(), Ret>,
) -> Ret {
    call(name, |s| body(handle::resolve(s, device)?))
}

fn load() -> Result<std::sync::Arc<Scenario>, Ret> {
    scenario::current().map_err(|e| match e {
        // A libnvidia-ml with no scenario is a machine without a driver.
        LoadError::Unset => abi::DRIVER_NOT_LOADED,
        LoadError::Bad(_) => abi::UNKNOWN,
    })
}

/// The code a failing handle lookup answers.
pub fn handle_error_code(e: HandleError) -> Ret {
    match e {
        HandleError::GpuIsLost => abi::GPU_IS_LOST,
        HandleError::NoPermission => abi::NO_PERMISSION,
        HandleError::Unknown => abi::UNKNOWN,
    }
}

pub(crate) fn supported<T>(value: Option<T>) -> Result<T, Ret> {
    value.ok_or(abi::NOT_SUPPORTED)
}

/// Writes `value` through `out`, refusing a null pointer.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) -> Result<(), Ret> {
    if out.is_null() {
        return Err(abi::INVALID_ARGUMENT);
    }
    // SAFETY: non-null, and nvml.h makes the caller pass a valid `T*`.
    unsafe { out.write(value) };
    Ok(())
}

/// Copies `text` and its NUL into the caller's buffer of `length` bytes.
unsafe fn put_str(out: *mut c_char, length: c_uint, text: &str) -> Result<(), Ret> {
    if out.is_null() {
        return Err(abi::INVALID_ARGUMENT);
    }
    let bytes = text.as_bytes();
    if bytes.len() >= length as usize {
        return Err(abi::INSUFFICIENT_SIZE);
    }
    // SAFETY: the caller's buffer holds `length` bytes, more than we write.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), bytes.len());
        out.add(bytes.len()).write(0);
    }
    Ok(())
}

/// Reads a NUL-terminated argument string.
unsafe fn arg_str<'a>(text: *const c_char) -> Result<&'a str, Ret> {
    if text.is_null() {
        return Err(abi::INVALID_ARGUMENT);
    }
    // SAFETY: non-null, and nvml.h makes it a NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| abi::INVALID_ARGUMENT)
}

// ---- init and system --------------------------------------------------------

fn init() -> Ret {
    let outcome = catch_unwind(|| {
        // Said once, at init, so that a test with a broken scenario shows why.
        if let Err(LoadError::Bad(why)) = scenario::current() {
            eprintln!("fake-nvml: {why}");
        }
        let scenario = load()?;
        if let Some(ms) = scenario.hang_init_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if let Some(e) = scenario.init_error {
            return Err(match e {
                InitError::DriverNotLoaded => abi::DRIVER_NOT_LOADED,
                InitError::LibRmVersionMismatch => abi::LIB_RM_VERSION_MISMATCH,
                InitError::NoPermission => abi::NO_PERMISSION,
            });
        }
        if INITIALIZED.fetch_add(1, Ordering::SeqCst) == 0 {
            open_driver_fd();
        }
        Ok(())
    });
    match outcome {
        Ok(Ok(())) => abi::SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => abi::UNKNOWN,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit() -> Ret {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> Ret {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    init()
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> Ret {
    let dropped =
        INITIALIZED.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    match dropped {
        Ok(1) => {
            close_driver_fd();
            abi::SUCCESS
        }
        Ok(_) => abi::SUCCESS,
        Err(_) => abi::UNINITIALIZED,
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    abi::error_string(result).as_ptr().cast()
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    call("nvmlSystemGetDriverVersion", |s| unsafe {
        put_str(version, length, supported(s.driver_version.as_deref())?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> Ret {
    call("nvmlSystemGetNVMLVersion", |s| unsafe {
        put_str(version, length, supported(s.nvml_version.as_deref())?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(version: *mut c_int) -> Ret {
    call("nvmlSystemGetCudaDriverVersion", |s| unsafe {
        put(version, supported(s.cuda_driver_version)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) -> Ret {
    call("nvmlSystemGetCudaDriverVersion_v2", |s| unsafe {
        put(version, supported(s.cuda_driver_version)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetProcessName(
    pid: c_uint,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    call("nvmlSystemGetProcessName", |s| {
        let known = s
            .processes()
            .filter(|p| p.pid == pid)
            .find_map(|p| p.name.as_deref())
            .ok_or(abi::NOT_FOUND)?;
        unsafe { put_str(name, length, known) }
    })
}

// ---- device enumeration -----------------------------------------------------

fn count(name: &str, out: *mut c_uint) -> Ret {
    call(name, |s| unsafe { put(out, s.devices.len() as c_uint) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount(device_count: *mut c_uint) -> Ret {
    count("nvmlDeviceGetCount", device_count)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(device_count: *mut c_uint) -> Ret {
    count("nvmlDeviceGetCount_v2", device_count)
}

fn by_index(name: &str, index: c_uint, out: *mut Handle) -> Ret {
    call(name, |s| {
        let device = s.devices.get(index as usize).ok_or(abi::INVALID_ARGUMENT)?;
        if let Some(e) = device.handle_error {
            return Err(handle_error_code(e));
        }
        unsafe { put(out, handle::encode(index as usize, None)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(index: c_uint, device: *mut Handle) -> Ret {
    by_index("nvmlDeviceGetHandleByIndex", index, device)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut Handle) -> Ret {
    by_index("nvmlDeviceGetHandleByIndex_v2", index, device)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut Handle,
) -> Ret {
    call("nvmlDeviceGetHandleByUUID", |s| {
        let wanted = unsafe { arg_str(uuid)? };
        for (i, d) in s.devices.iter().enumerate() {
            let mig = d.mig_devices.iter().position(|m| m.uuid == wanted);
            if d.uuid == wanted || mig.is_some() {
                if let Some(e) = d.handle_error {
                    return Err(handle_error_code(e));
                }
                return unsafe { put(device, handle::encode(i, mig)) };
            }
        }
        Err(abi::NOT_FOUND)
    })
}

/// `(domain, bus, device)` of a bus id in either NVML form
/// (`0000:07:00.0` or `00000000:07:00.0`).
pub(crate) fn parse_bus_id(text: &str) -> Option<(u32, u32, u32)> {
    let (domain, rest) = text.trim().split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, _function) = rest.split_once('.')?;
    Some((
        u32::from_str_radix(domain, 16).ok()?,
        u32::from_str_radix(bus, 16).ok()?,
        u32::from_str_radix(device, 16).ok()?,
    ))
}

fn by_pci(name: &str, bus_id: *const c_char, out: *mut Handle) -> Ret {
    call(name, |s| {
        let wanted = parse_bus_id(unsafe { arg_str(bus_id)? }).ok_or(abi::INVALID_ARGUMENT)?;
        let index = s
            .devices
            .iter()
            .position(|d| d.pci_bus_id.as_deref().and_then(parse_bus_id) == Some(wanted))
            .ok_or(abi::NOT_FOUND)?;
        if let Some(e) = s.devices[index].handle_error {
            return Err(handle_error_code(e));
        }
        unsafe { put(out, handle::encode(index, None)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId(
    bus_id: *const c_char,
    device: *mut Handle,
) -> Ret {
    by_pci("nvmlDeviceGetHandleByPciBusId", bus_id, device)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(
    bus_id: *const c_char,
    device: *mut Handle,
) -> Ret {
    by_pci("nvmlDeviceGetHandleByPciBusId_v2", bus_id, device)
}

// ---- identity ---------------------------------------------------------------

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: Handle,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    on_device("nvmlDeviceGetName", device, |t| {
        let text = match t {
            Target::Gpu(_, d) => d.name.as_deref(),
            Target::Mig(_, m) => m.name.as_deref(),
        };
        unsafe { put_str(name, length, supported(text)?) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: Handle,
    uuid: *mut c_char,
    length: c_uint,
) -> Ret {
    on_device("nvmlDeviceGetUUID", device, |t| {
        let text = match t {
            Target::Gpu(_, d) => &d.uuid,
            Target::Mig(_, m) => &m.uuid,
        };
        unsafe { put_str(uuid, length, text) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: Handle, index: *mut c_uint) -> Ret {
    on_device("nvmlDeviceGetIndex", device, |t| match t {
        Target::Gpu(i, _) => unsafe { put(index, i as c_uint) },
        Target::Mig(..) => Err(abi::NOT_SUPPORTED),
    })
}

fn pci_info(name: &str, device: Handle, out: *mut abi::PciInfo) -> Ret {
    on_device(name, device, |t| {
        let Target::Gpu(_, d) = t else {
            return Err(abi::NOT_SUPPORTED);
        };
        let bus_id = supported(d.pci_bus_id.as_deref())?;
        unsafe { put(out, pci_struct(bus_id, d)?) }
    })
}

/// `nvmlPciInfo_t` for the device `d` at `bus_id`.
pub(crate) fn pci_struct(bus_id: &str, d: &scenario::Device) -> Result<abi::PciInfo, Ret> {
    let (domain, bus, dev) = parse_bus_id(bus_id).ok_or(abi::UNKNOWN)?;
    let mut info = abi::PciInfo {
        bus_id_legacy: [0; 16],
        domain,
        bus,
        device: dev,
        pci_device_id: d.pci_device_id.unwrap_or(0),
        pci_sub_system_id: d.pci_sub_system_id.unwrap_or(0),
        bus_id: [0; 32],
    };
    let legacy = format!("{domain:04X}:{bus:02X}:{dev:02X}.0");
    unsafe {
        put_str(info.bus_id_legacy.as_mut_ptr(), 16, &legacy)?;
        put_str(info.bus_id.as_mut_ptr(), 32, bus_id)?;
    }
    Ok(info)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v2(device: Handle, pci: *mut abi::PciInfo) -> Ret {
    pci_info("nvmlDeviceGetPciInfo_v2", device, pci)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: Handle, pci: *mut abi::PciInfo) -> Ret {
    pci_info("nvmlDeviceGetPciInfo_v3", device, pci)
}

// ---- memory and load --------------------------------------------------------

fn memory_of(t: Target<'_>) -> Result<crate::scenario::Memory, Ret> {
    supported(match t {
        Target::Gpu(_, d) => d.memory,
        Target::Mig(_, m) => m.memory,
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(device: Handle, memory: *mut abi::Memory) -> Ret {
    on_device("nvmlDeviceGetMemoryInfo", device, |t| {
        let m = memory_of(t)?;
        // Since R510 the v1 call counts reserved memory as used.
        let v1 = abi::Memory {
            total: m.total,
            free: m.free,
            used: m.used.saturating_add(m.reserved),
        };
        unsafe { put(memory, v1) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: Handle,
    memory: *mut abi::MemoryV2,
) -> Ret {
    on_device("nvmlDeviceGetMemoryInfo_v2", device, |t| {
        if memory.is_null() {
            return Err(abi::INVALID_ARGUMENT);
        }
        // SAFETY: non-null; the caller set `version` before the call.
        if unsafe { (*memory).version } != abi::MEMORY_V2 {
            return Err(abi::ARGUMENT_VERSION_MISMATCH);
        }
        let m = memory_of(t)?;
        let v2 = abi::MemoryV2 {
            version: abi::MEMORY_V2,
            total: m.total,
            reserved: m.reserved,
            free: m.free,
            used: m.used,
        };
        unsafe { put(memory, v2) }
    })
}

/// The physical GPU a query about whole-board state is for; MIG devices
/// answer `NOT_SUPPORTED` for those, as on a real driver.
fn gpu_only(t: Target<'_>) -> Result<&crate::scenario::Device, Ret> {
    match t {
        Target::Gpu(_, d) => Ok(d),
        Target::Mig(..) => Err(abi::NOT_SUPPORTED),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: Handle,
    utilization: *mut abi::Utilization,
) -> Ret {
    on_device("nvmlDeviceGetUtilizationRates", device, |t| {
        let u = supported(gpu_only(t)?.utilization)?;
        unsafe {
            put(
                utilization,
                abi::Utilization {
                    gpu: u.gpu,
                    memory: u.memory,
                },
            )
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: Handle,
    sensor: c_uint,
    temp: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetTemperature", device, |t| {
        // NVML_TEMPERATURE_GPU is the only sensor nvml.h defines.
        if sensor != 0 {
            return Err(abi::INVALID_ARGUMENT);
        }
        unsafe { put(temp, supported(gpu_only(t)?.temperature)?) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: Handle, power: *mut c_uint) -> Ret {
    on_device("nvmlDeviceGetPowerUsage", device, |t| unsafe {
        put(power, supported(gpu_only(t)?.power_usage)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimit(
    device: Handle,
    limit: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetPowerManagementLimit", device, |t| unsafe {
        put(limit, supported(gpu_only(t)?.power_limit)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetEnforcedPowerLimit(
    device: Handle,
    limit: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetEnforcedPowerLimit", device, |t| unsafe {
        put(limit, supported(gpu_only(t)?.enforced_power_limit)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPerformanceState(device: Handle, state: *mut c_int) -> Ret {
    on_device("nvmlDeviceGetPerformanceState", device, |t| {
        let p = supported(gpu_only(t)?.performance_state)?;
        unsafe { put(state, c_int::try_from(p).map_err(|_| abi::UNKNOWN)?) }
    })
}

fn clock(clocks: Option<crate::scenario::Clocks>, kind: c_uint) -> Result<u32, Ret> {
    let c = supported(clocks)?;
    supported(match kind {
        0 => c.graphics,
        1 => c.sm,
        2 => c.memory,
        3 => c.video,
        _ => return Err(abi::INVALID_ARGUMENT),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetClockInfo(
    device: Handle,
    kind: c_uint,
    mhz: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetClockInfo", device, |t| unsafe {
        put(mhz, clock(gpu_only(t)?.clocks, kind)?)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxClockInfo(
    device: Handle,
    kind: c_uint,
    mhz: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetMaxClockInfo", device, |t| unsafe {
        put(mhz, clock(gpu_only(t)?.max_clocks, kind)?)
    })
}

// ---- processes --------------------------------------------------------------

/// The NVML two-call protocol: with too small a buffer (or none), answer the
/// count and `INSUFFICIENT_SIZE`; with room, fill it and answer the count.
unsafe fn list<T>(
    count: *mut c_uint,
    infos: *mut T,
    processes: &[Process],
    entry: impl Fn(&Process) -> T,
) -> Result<(), Ret> {
    if count.is_null() {
        return Err(abi::INVALID_ARGUMENT);
    }
    let n = processes.len() as c_uint;
    // SAFETY: non-null `unsigned int*` per nvml.h.
    let room = unsafe { count.read() };
    unsafe { count.write(n) };
    if n == 0 {
        return Ok(());
    }
    if infos.is_null() || room < n {
        return Err(abi::INSUFFICIENT_SIZE);
    }
    for (i, p) in processes.iter().enumerate() {
        // SAFETY: the caller's array holds `room >= n` entries.
        unsafe { infos.add(i).write(entry(p)) };
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Compute,
    Graphics,
}

/// The processes of `t` of `kind`, and the GPU/compute instance ids their
/// entries carry (`0xFFFFFFFF` outside MIG).
fn processes_of(t: Target<'_>, kind: Kind) -> Result<(&[Process], u32, u32), Ret> {
    let (list, gi, ci) = match (t, kind) {
        (Target::Gpu(_, d), Kind::Compute) => (&d.compute_processes, None, None),
        (Target::Gpu(_, d), Kind::Graphics) => (&d.graphics_processes, None, None),
        (Target::Mig(_, m), Kind::Compute) => (
            &m.compute_processes,
            m.gpu_instance_id,
            m.compute_instance_id,
        ),
        (Target::Mig(_, m), Kind::Graphics) => (
            &m.graphics_processes,
            m.gpu_instance_id,
            m.compute_instance_id,
        ),
    };
    Ok((
        supported(list.as_deref())?,
        gi.unwrap_or(abi::NO_INSTANCE),
        ci.unwrap_or(abi::NO_INSTANCE),
    ))
}

fn used(p: &Process) -> u64 {
    p.used_memory.unwrap_or(abi::VALUE_NOT_AVAILABLE)
}

fn processes_v1(
    name: &str,
    kind: Kind,
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfoV1,
) -> Ret {
    on_device(name, device, |t| {
        let (ps, _, _) = processes_of(t, kind)?;
        unsafe {
            list(count, infos, ps, |p| abi::ProcessInfoV1 {
                pid: p.pid,
                used_gpu_memory: used(p),
            })
        }
    })
}

fn processes(
    name: &str,
    kind: Kind,
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfo,
) -> Ret {
    on_device(name, device, |t| {
        let (ps, gi, ci) = processes_of(t, kind)?;
        unsafe {
            list(count, infos, ps, |p| abi::ProcessInfo {
                pid: p.pid,
                used_gpu_memory: used(p),
                gpu_instance_id: gi,
                compute_instance_id: ci,
            })
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses(
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfoV1,
) -> Ret {
    processes_v1(
        "nvmlDeviceGetComputeRunningProcesses",
        Kind::Compute,
        device,
        count,
        infos,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v2(
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfo,
) -> Ret {
    processes(
        "nvmlDeviceGetComputeRunningProcesses_v2",
        Kind::Compute,
        device,
        count,
        infos,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfo,
) -> Ret {
    processes(
        "nvmlDeviceGetComputeRunningProcesses_v3",
        Kind::Compute,
        device,
        count,
        infos,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses(
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfoV1,
) -> Ret {
    processes_v1(
        "nvmlDeviceGetGraphicsRunningProcesses",
        Kind::Graphics,
        device,
        count,
        infos,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses_v2(
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfo,
) -> Ret {
    processes(
        "nvmlDeviceGetGraphicsRunningProcesses_v2",
        Kind::Graphics,
        device,
        count,
        infos,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGraphicsRunningProcesses_v3(
    device: Handle,
    count: *mut c_uint,
    infos: *mut abi::ProcessInfo,
) -> Ret {
    processes(
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        Kind::Graphics,
        device,
        count,
        infos,
    )
}

// ---- MIG --------------------------------------------------------------------

/// What `nvmlDeviceGetMaxMigDeviceCount` answers on a MIG-capable board
/// (A100 and H100 offer up to 7 instances).
const MAX_MIG_DEVICES: usize = 7;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: Handle,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetMigMode", device, |t| {
        let mode = supported(gpu_only(t)?.mig_mode)?;
        unsafe {
            put(current, mode.current as c_uint)?;
            put(pending, mode.pending as c_uint)
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(device: Handle, count: *mut c_uint) -> Ret {
    on_device("nvmlDeviceGetMaxMigDeviceCount", device, |t| {
        let d = gpu_only(t)?;
        supported(d.mig_mode)?;
        unsafe { put(count, MAX_MIG_DEVICES.max(d.mig_devices.len()) as c_uint) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: Handle,
    index: c_uint,
    mig: *mut Handle,
) -> Ret {
    on_device("nvmlDeviceGetMigDeviceHandleByIndex", device, |t| {
        let Target::Gpu(gpu, d) = t else {
            return Err(abi::INVALID_ARGUMENT);
        };
        let mode = supported(d.mig_mode)?;
        let index = index as usize;
        // A free slot below the maximum is "not found", as on a real board.
        if !mode.current || index >= MAX_MIG_DEVICES.max(d.mig_devices.len()) {
            return Err(abi::INVALID_ARGUMENT);
        }
        if index >= d.mig_devices.len() {
            return Err(abi::NOT_FOUND);
        }
        unsafe { put(mig, handle::encode(gpu, Some(index))) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig: Handle,
    device: *mut Handle,
) -> Ret {
    on_device(
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
        mig,
        |t| match t {
            Target::Mig(gpu, ..) => unsafe { put(device, handle::encode(gpu, None)) },
            Target::Gpu(..) => Err(abi::INVALID_ARGUMENT),
        },
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(device: Handle, is_mig: *mut c_uint) -> Ret {
    on_device("nvmlDeviceIsMigDeviceHandle", device, |t| unsafe {
        put(is_mig, matches!(t, Target::Mig(..)) as c_uint)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: Handle, id: *mut c_uint) -> Ret {
    on_device("nvmlDeviceGetGpuInstanceId", device, |t| match t {
        Target::Mig(_, m) => unsafe { put(id, supported(m.gpu_instance_id)?) },
        Target::Gpu(..) => Err(abi::INVALID_ARGUMENT),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(device: Handle, id: *mut c_uint) -> Ret {
    on_device("nvmlDeviceGetComputeInstanceId", device, |t| match t {
        Target::Mig(_, m) => unsafe { put(id, supported(m.compute_instance_id)?) },
        Target::Gpu(..) => Err(abi::INVALID_ARGUMENT),
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeMode(device: Handle, mode: *mut c_uint) -> Ret {
    call("nvmlDeviceGetComputeMode", |s| {
        let d = match handle::resolve(s, device)? {
            Target::Gpu(_, d) => d,
            // A MIG device answers for its GPU.
            Target::Mig(gpu, _) => s.devices.get(gpu).ok_or(abi::INVALID_ARGUMENT)?,
        };
        let value = match supported(d.compute_mode)? {
            ComputeMode::Default => 0,
            ComputeMode::ExclusiveThread => 1,
            ComputeMode::Prohibited => 2,
            ComputeMode::ExclusiveProcess => 3,
        };
        unsafe { put(mode, value) }
    })
}

/// `nvmlDeviceGetSamples`: the samples newer than `last_seen` (microseconds
/// since the epoch, 0 for all), oldest first. With a null `samples` it
/// answers how many there are; with a buffer, it fills up to
/// `*sample_count` of them and says how many it wrote. No sample newer than
/// `last_seen` is `NOT_FOUND`, as the driver answers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSamples(
    device: Handle,
    kind: c_uint,
    last_seen: u64,
    value_type: *mut c_uint,
    sample_count: *mut c_uint,
    samples: *mut abi::Sample,
) -> Ret {
    on_device("nvmlDeviceGetSamples", device, |t| {
        let d = gpu_only(t)?;
        if d.mig_mode.is_some_and(|m| m.current) {
            return Err(abi::NOT_SUPPORTED);
        }
        let buffer = supported(d.samples.as_ref())?;
        let series = match kind {
            abi::GPU_UTILIZATION_SAMPLES => &buffer.gpu,
            abi::MEMORY_UTILIZATION_SAMPLES => &buffer.memory,
            _ => return Err(abi::NOT_SUPPORTED),
        };
        if sample_count.is_null() || value_type.is_null() {
            return Err(abi::INVALID_ARGUMENT);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| abi::UNKNOWN)?
            .as_micros() as u64;
        let mut newer: Vec<abi::Sample> = series
            .iter()
            .map(|s| abi::Sample {
                time_stamp: now.saturating_sub(s.age_ms.saturating_mul(1000)),
                value: u64::from(s.value),
            })
            .filter(|s| s.time_stamp > last_seen)
            .collect();
        newer.sort_by_key(|s| s.time_stamp);
        if newer.is_empty() {
            return Err(abi::NOT_FOUND);
        }
        unsafe { put(value_type, abi::VALUE_TYPE_UNSIGNED_INT)? };
        let count = c_uint::try_from(newer.len()).map_err(|_| abi::UNKNOWN)?;
        if samples.is_null() {
            return unsafe { put(sample_count, count) };
        }
        // SAFETY: non-null, checked above.
        let room = unsafe { *sample_count } as usize;
        let n = newer.len().min(room);
        for (i, sample) in newer.into_iter().take(n).enumerate() {
            // SAFETY: the caller's buffer holds `room` samples and i < room.
            unsafe { samples.add(i).write(sample) };
        }
        unsafe { put(sample_count, n as c_uint) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_parse_in_both_forms() {
        assert_eq!(parse_bus_id("00000000:07:00.0"), Some((0, 7, 0)));
        assert_eq!(parse_bus_id("0000:4E:00.0"), Some((0, 0x4e, 0)));
        assert_eq!(parse_bus_id("garbage"), None);
    }

    #[test]
    fn strings_need_room_for_their_nul() {
        let mut buf = [1 as c_char; 4];
        assert_eq!(
            unsafe { put_str(buf.as_mut_ptr(), 4, "abcd") },
            Err(abi::INSUFFICIENT_SIZE)
        );
        assert_eq!(unsafe { put_str(buf.as_mut_ptr(), 4, "abc") }, Ok(()));
        assert_eq!(buf, [97, 98, 99, 0]);
    }
}
