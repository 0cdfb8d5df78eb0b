# Reads every GPU through NVIDIA's own Python binding (nvidia-ml-py), which
# loads libnvidia-ml.so.1 by name, and prints what it saw as JSON on stdout.
# The Rust test puts fake-nvml under that name on LD_LIBRARY_PATH and compares
# this with `gpusel list --json`: pynvml's ctypes structures are written from
# nvml.h by NVIDIA, so agreement proves the fake's ABI is the real one.
import ctypes
import json
import time

import pynvml as n

# gpusel's default idle window (--idle-window), in seconds.
WINDOW = 10
COMPUTE_MODES = ["default", "exclusive_thread", "prohibited", "exclusive_process"]


def maybe(call, *args):
    try:
        return call(*args)
    except n.NVMLError_NotSupported:
        return None


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def processes(handle):
    try:
        compute = n.nvmlDeviceGetComputeRunningProcesses(handle)
    except n.NVMLError_NotSupported:
        return None
    graphics = maybe(n.nvmlDeviceGetGraphicsRunningProcesses, handle) or []
    out = {}
    for kind, procs in (("compute", compute), ("graphics", graphics)):
        for p in procs:
            entry = out.setdefault(p.pid, {"pid": p.pid, "used_memory": p.usedGpuMemory, "kinds": []})
            entry["kinds"].append(kind)
            entry["name"] = text(maybe(n.nvmlSystemGetProcessName, p.pid))
    return list(out.values())


def memory(handle):
    m = maybe(n.nvmlDeviceGetMemoryInfo, handle, n.nvmlMemory_v2)
    return None if m is None else {"total": m.total, "used": m.used, "free": m.free, "reserved": m.reserved}


def window(handle):
    """The peaks of the driver's utilization samples over the last WINDOW
    seconds, as gpusel reads them; None when the driver keeps none."""
    now_us = int(time.time() * 1e6)
    since = now_us - WINDOW * 1_000_000
    out = {"window_ms": WINDOW * 1000}
    for key, kind in (("gpu", n.NVML_GPU_UTILIZATION_SAMPLES), ("memory", n.NVML_MEMORY_UTILIZATION_SAMPLES)):
        try:
            value_type, samples = n.nvmlDeviceGetSamples(handle, kind, since)
        except n.NVMLError_NotFound:
            out[key] = None
            continue
        except n.NVMLError_NotSupported:
            return None
        assert value_type == n.NVML_VALUE_TYPE_UNSIGNED_INT, value_type
        stamps = [s.timeStamp for s in samples]
        assert stamps == sorted(stamps) and all(t > since for t in stamps), stamps
        # The highest value; of equal ones, the latest.
        value, stamp = max((s.sampleValue.uiVal, s.timeStamp) for s in samples)
        out[key] = {"percent": min(value, 100), "age_ms": (now_us - stamp) // 1000, "samples": len(samples)}
    if out["gpu"] is None and out["memory"] is None:
        return None
    return out


# nvml.h's nvmlGpuTopologyLevel_t as gpusel names the levels.
LEVELS = {
    n.NVML_TOPOLOGY_INTERNAL: "internal",
    n.NVML_TOPOLOGY_SINGLE: "single",
    n.NVML_TOPOLOGY_MULTIPLE: "multiple",
    n.NVML_TOPOLOGY_HOSTBRIDGE: "host_bridge",
    n.NVML_TOPOLOGY_NODE: "node",
    n.NVML_TOPOLOGY_SYSTEM: "system",
}


def bits(mask):
    word = 8 * ctypes.sizeof(mask._type_)
    return [w * word + b for w, m in enumerate(mask) for b in range(word) if m >> b & 1]


def ranges(numbers):
    parts, start = [], None
    for i, x in enumerate(numbers):
        if start is None:
            start = x
        if i + 1 == len(numbers) or numbers[i + 1] != x + 1:
            parts.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(parts)


def nvlink_peers(handle):
    """Bus ids at the far end of each active NVLink, one entry a link."""
    peers = []
    for link in range(n.NVML_NVLINK_MAX_LINKS):
        try:
            active = n.nvmlDeviceGetNvLinkState(handle, link)
        except (n.NVMLError_InvalidArgument, n.NVMLError_NotSupported):
            break
        if active == n.NVML_FEATURE_ENABLED:
            peers.append(text(n.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId))
    return peers


def topology(handles, i, bus_ids, uuids):
    """numa_node, cpu_affinity and links of GPU i, as gpusel writes them."""
    h = handles[i]
    out = {}
    nodes = maybe(n.nvmlDeviceGetMemoryAffinity, h, 4, n.NVML_AFFINITY_SCOPE_NODE)
    if nodes is not None and bits(nodes):
        out["numa_node"] = bits(nodes)[0]
    cpus = maybe(n.nvmlDeviceGetCpuAffinity, h, 64)
    if cpus is not None and bits(cpus):
        out["cpu_affinity"] = ranges(bits(cpus))
    remote = nvlink_peers(h)
    switched = [r for r in remote if r not in bus_ids]
    links = []
    for j, other in enumerate(handles):
        if j == i:
            continue
        link = {"peer": uuids[j]}
        count = remote.count(bus_ids[j])
        if count:
            link["nvlinks"] = count
        else:
            # Through NVSwitches: the driver's P2P status says whether the
            # two reach each other; nvidia-smi counts the links each has.
            theirs = nvlink_peers(other)
            if switched and [r for r in theirs if r not in bus_ids] and (
                n.nvmlDeviceGetP2PStatus(h, other, n.NVML_P2P_CAPS_INDEX_NVLINK) == n.NVML_P2P_STATUS_OK
            ):
                link["nvlinks"] = min(len(remote), len(theirs))
        level = maybe(n.nvmlDeviceGetTopologyCommonAncestor, h, other)
        if level is not None:
            link["pcie"] = LEVELS[level]
        if len(link) > 1:
            links.append(link)
    if links:
        out["links"] = links
    return out


n.nvmlInit()
gpus = []
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    util = maybe(n.nvmlDeviceGetUtilizationRates, h)
    mig = maybe(n.nvmlDeviceGetMigMode, h)
    # The other ways to a handle must reach the same GPU.
    for other in (
        n.nvmlDeviceGetHandleByUUID(n.nvmlDeviceGetUUID(h)),
        n.nvmlDeviceGetHandleByPciBusId(n.nvmlDeviceGetPciInfo(h).busId),
    ):
        assert n.nvmlDeviceGetIndex(other) == i, (i, other)
    # v1 memory counts reserved memory as used, as drivers since R510 do.
    v1 = maybe(n.nvmlDeviceGetMemoryInfo, h)
    v2 = maybe(n.nvmlDeviceGetMemoryInfo, h, n.nvmlMemory_v2)
    if v2 is not None:
        assert (v1.total, v1.free, v1.used) == (v2.total, v2.free, v2.used + v2.reserved)
    gpu = {
        "index": n.nvmlDeviceGetIndex(h),
        "uuid": text(n.nvmlDeviceGetUUID(h)),
        "name": text(n.nvmlDeviceGetName(h)),
        "pci_bus_id": text(n.nvmlDeviceGetPciInfo(h).busId),
        "memory": memory(h),
        "utilization_gpu": None if util is None else util.gpu,
        "utilization_memory": None if util is None else util.memory,
        "temperature": maybe(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
        "power_draw": maybe(n.nvmlDeviceGetPowerUsage, h),
        "power_limit": maybe(n.nvmlDeviceGetEnforcedPowerLimit, h),
        "performance_state": maybe(n.nvmlDeviceGetPerformanceState, h),
        "sm_clock": maybe(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
        "mig_mode": None if mig is None else mig[0] == n.NVML_DEVICE_MIG_ENABLE,
        "compute_mode": None if (m := maybe(n.nvmlDeviceGetComputeMode, h)) is None else COMPUTE_MODES[m],
        "utilization_window": None if mig and mig[0] == n.NVML_DEVICE_MIG_ENABLE else window(h),
        "processes": processes(h),
        "mig_devices": [],
    }
    if gpu["mig_mode"]:
        for slot in range(n.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                m = n.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
            except n.NVMLError_NotFound:
                continue
            assert n.nvmlDeviceIsMigDeviceHandle(m)
            parent = n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m)
            assert text(n.nvmlDeviceGetUUID(parent)) == gpu["uuid"]
            gpu["mig_devices"].append({
                "index": slot,
                "uuid": text(n.nvmlDeviceGetUUID(m)),
                "name": text(n.nvmlDeviceGetName(m)),
                "gpu_instance_id": n.nvmlDeviceGetGpuInstanceId(m),
                "compute_instance_id": n.nvmlDeviceGetComputeInstanceId(m),
                "memory": memory(m),
                "processes": processes(m),
            })
    gpus.append(gpu)
handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(len(gpus))]
bus_ids = [g["pci_bus_id"] for g in gpus]
uuids = [g["uuid"] for g in gpus]
for i, gpu in enumerate(gpus):
    gpu["topology"] = topology(handles, i, bus_ids, uuids)
print(json.dumps({
    "nvml_version": text(n.nvmlSystemGetNVMLVersion()),
    "driver_version": text(n.nvmlSystemGetDriverVersion()),
    "cuda_driver_version": n.nvmlSystemGetCudaDriverVersion(),
    "gpus": gpus,
}))
n.nvmlShutdown()
