//! The topology entry points: where two GPUs' PCIe paths meet, their
//! NVLinks, and the CPUs and NUMA node nearest each, as `nvml.h` types them.

use std::ffi::{c_uint, c_ulong};

use crate::abi::{self, Ret};
use crate::exports::{call, on_device, parse_bus_id, pci_struct, put, supported};
use crate::handle::{self, Handle, Target};
use crate::scenario::{Device, Scenario, Topology};

/// `NVML_NVLINK_MAX_LINKS` in nvml.h since R535.
pub const NVLINK_MAX_LINKS: usize = 18;

/// `nvmlGpuTopologyLevel_t` values.
const TOPOLOGY_INTERNAL: u32 = 0;
const TOPOLOGY_SINGLE: u32 = 10;
const TOPOLOGY_MULTIPLE: u32 = 20;
const TOPOLOGY_HOSTBRIDGE: u32 = 30;
const TOPOLOGY_NODE: u32 = 40;
const TOPOLOGY_SYSTEM: u32 = 50;

/// `NVML_FEATURE_DISABLED` / `NVML_FEATURE_ENABLED`.
const FEATURE_DISABLED: u32 = 0;
const FEATURE_ENABLED: u32 = 1;

/// `NVML_AFFINITY_SCOPE_NODE` / `..._SOCKET`.
const SCOPE_NODE: u32 = 0;
const SCOPE_SOCKET: u32 = 1;

/// The topology of a whole GPU: MIG devices have none of their own.
fn topology_of(t: Target<'_>) -> Result<(usize, &Device, &Topology), Ret> {
    match t {
        Target::Gpu(i, d) => Ok((i, d, supported(d.topology.as_ref())?)),
        Target::Mig(..) => Err(abi::NOT_SUPPORTED),
    }
}

/// Where `a` and `b`'s paths to the CPUs meet.
fn common_ancestor(a: &Topology, b: &Topology) -> u32 {
    let near = |t: &Topology| t.pcie_switches.last().cloned();
    if near(a).is_some() && near(a) == near(b) {
        TOPOLOGY_SINGLE
    } else if a.pcie_switches.iter().any(|s| b.pcie_switches.contains(s)) {
        TOPOLOGY_MULTIPLE
    } else if a.host_bridge.is_some() && a.host_bridge == b.host_bridge {
        TOPOLOGY_HOSTBRIDGE
    } else if a.numa_node.is_some() && a.numa_node == b.numa_node {
        TOPOLOGY_NODE
    } else {
        TOPOLOGY_SYSTEM
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTopologyCommonAncestor(
    device1: Handle,
    device2: Handle,
    path_info: *mut c_uint,
) -> Ret {
    call("nvmlDeviceGetTopologyCommonAncestor", |s: &Scenario| {
        let (i, _, a) = topology_of(handle::resolve(s, device1)?)?;
        let (j, _, b) = topology_of(handle::resolve(s, device2)?)?;
        let level = if i == j {
            TOPOLOGY_INTERNAL
        } else {
            common_ancestor(a, b)
        };
        unsafe { put(path_info, level) }
    })
}

/// NVLink `link` of the GPU `t`, checked as a driver checks it.
fn nvlink(t: Target<'_>, link: c_uint) -> Result<&crate::scenario::NvLink, Ret> {
    let (_, _, topology) = topology_of(t)?;
    let links = supported(topology.nvlinks.as_ref())?;
    let link = link as usize;
    if link >= NVLINK_MAX_LINKS {
        return Err(abi::INVALID_ARGUMENT);
    }
    links.get(link).ok_or(abi::INVALID_ARGUMENT)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNvLinkState(
    device: Handle,
    link: c_uint,
    is_active: *mut c_uint,
) -> Ret {
    on_device("nvmlDeviceGetNvLinkState", device, |t| {
        let state = if nvlink(t, link)?.active {
            FEATURE_ENABLED
        } else {
            FEATURE_DISABLED
        };
        unsafe { put(is_active, state) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNvLinkRemotePciInfo_v2(
    device: Handle,
    link: c_uint,
    pci: *mut abi::PciInfo,
) -> Ret {
    call("nvmlDeviceGetNvLinkRemotePciInfo_v2", |s: &Scenario| {
        let remote = &nvlink(handle::resolve(s, device)?, link)?.remote_pci_bus_id;
        let wanted = parse_bus_id(remote).ok_or(abi::UNKNOWN)?;
        // The ids of the GPU at the other end, when it is one of the scenario's.
        let blank = Device::default();
        let peer = s
            .devices
            .iter()
            .find(|d| d.pci_bus_id.as_deref().and_then(parse_bus_id) == Some(wanted))
            .unwrap_or(&blank);
        unsafe { put(pci, pci_struct(remote, peer)?) }
    })
}

/// `nvmlGpuP2PCapsIndex_t`: READ, WRITE, NVLINK, ATOMICS, PCI (= PROP).
const P2P_CAPS_INDEX_NVLINK: c_uint = 2;
const P2P_CAPS_INDEX_LAST: c_uint = 4;
/// `nvmlGpuP2PStatus_t` values the fake answers.
const P2P_STATUS_OK: c_uint = 0;
const P2P_STATUS_CHIPSET_NOT_SUPPORTED: c_uint = 1;
const P2P_STATUS_NOT_SUPPORTED: c_uint = 5;

/// Active NVLinks' far ends.
fn active_remotes(t: &Topology) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
    t.nvlinks
        .iter()
        .flatten()
        .filter(|l| l.active)
        .filter_map(|l| parse_bus_id(&l.remote_pci_bus_id))
}

/// Whether NVLink joins `a` and `b`: a link from one to the other, or both
/// to one device that is no GPU of the scenario (an NVSwitch).
fn nvlink_joined(
    s: &Scenario,
    (a, da, ta): (usize, &Device, &Topology),
    (b, db, tb): (usize, &Device, &Topology),
) -> bool {
    let bus = |d: &Device| d.pci_bus_id.as_deref().and_then(parse_bus_id);
    let direct =
        |t: &Topology, peer: &Device| bus(peer).is_some_and(|p| active_remotes(t).any(|r| r == p));
    let gpu_buses: Vec<_> = s.devices.iter().filter_map(bus).collect();
    let switched = active_remotes(ta)
        .filter(|r| !gpu_buses.contains(r))
        .any(|r| active_remotes(tb).any(|q| q == r));
    a != b && (direct(ta, db) || direct(tb, da) || switched)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetP2PStatus(
    device1: Handle,
    device2: Handle,
    p2p_index: c_uint,
    p2p_status: *mut c_uint,
) -> Ret {
    call("nvmlDeviceGetP2PStatus", |s: &Scenario| {
        let a = topology_of(handle::resolve(s, device1)?)?;
        let b = topology_of(handle::resolve(s, device2)?)?;
        if p2p_index > P2P_CAPS_INDEX_LAST {
            return Err(abi::INVALID_ARGUMENT);
        }
        let nvlink = nvlink_joined(s, a, b);
        // The fake's rule for the PCIe capabilities: over NVLink, or behind
        // PCIe switches short of a host bridge.
        let status = if nvlink
            || (p2p_index != P2P_CAPS_INDEX_NVLINK
                && common_ancestor(a.2, b.2) <= TOPOLOGY_MULTIPLE)
        {
            P2P_STATUS_OK
        } else if p2p_index == P2P_CAPS_INDEX_NVLINK {
            P2P_STATUS_NOT_SUPPORTED
        } else {
            P2P_STATUS_CHIPSET_NOT_SUPPORTED
        };
        unsafe { put(p2p_status, status) }
    })
}

/// Parses `0-15,32-47` into the numbers it names.
fn ranges(text: &str) -> Result<Vec<usize>, Ret> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: usize = lo.trim().parse().map_err(|_| abi::UNKNOWN)?;
        let hi: usize = hi.trim().parse().map_err(|_| abi::UNKNOWN)?;
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// Writes `bits` as the `unsigned long` bitmask array of `size` words at
/// `out`, as the affinity calls do; bits past the array are dropped.
unsafe fn put_mask(out: *mut c_ulong, size: c_uint, bits: &[usize]) -> Result<(), Ret> {
    if out.is_null() || size == 0 {
        return Err(abi::INVALID_ARGUMENT);
    }
    let word = c_ulong::BITS as usize;
    let mut mask = vec![0 as c_ulong; size as usize];
    for &b in bits {
        if let Some(w) = mask.get_mut(b / word) {
            *w |= 1 << (b % word);
        }
    }
    // SAFETY: the caller's array holds `size` words.
    unsafe { std::ptr::copy_nonoverlapping(mask.as_ptr(), out, mask.len()) };
    Ok(())
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCpuAffinity(
    device: Handle,
    cpu_set_size: c_uint,
    cpu_set: *mut c_ulong,
) -> Ret {
    on_device("nvmlDeviceGetCpuAffinity", device, |t| {
        let (_, _, topology) = topology_of(t)?;
        let cpus = ranges(supported(topology.cpus.as_deref())?)?;
        unsafe { put_mask(cpu_set, cpu_set_size, &cpus) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryAffinity(
    device: Handle,
    node_set_size: c_uint,
    node_set: *mut c_ulong,
    scope: c_uint,
) -> Ret {
    on_device("nvmlDeviceGetMemoryAffinity", device, |t| {
        if scope != SCOPE_NODE && scope != SCOPE_SOCKET {
            return Err(abi::INVALID_ARGUMENT);
        }
        let (_, _, topology) = topology_of(t)?;
        let node = supported(topology.numa_node)?;
        unsafe { put_mask(node_set, node_set_size, &[node as usize]) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(switches: &[&str], bridge: &str, node: u32) -> Topology {
        Topology {
            numa_node: Some(node),
            pcie_switches: switches.iter().map(|s| s.to_string()).collect(),
            host_bridge: Some(bridge.into()),
            ..Topology::default()
        }
    }

    #[test]
    fn paths_meet_where_they_share_a_part() {
        let a = at(&["top", "sw0"], "hb0", 0);
        assert_eq!(
            common_ancestor(&a, &at(&["top", "sw0"], "hb0", 0)),
            TOPOLOGY_SINGLE
        );
        assert_eq!(
            common_ancestor(&a, &at(&["top", "sw1"], "hb0", 0)),
            TOPOLOGY_MULTIPLE
        );
        assert_eq!(
            common_ancestor(&a, &at(&["sw2"], "hb0", 0)),
            TOPOLOGY_HOSTBRIDGE
        );
        assert_eq!(common_ancestor(&a, &at(&["sw3"], "hb1", 0)), TOPOLOGY_NODE);
        assert_eq!(
            common_ancestor(&a, &at(&["sw4"], "hb2", 1)),
            TOPOLOGY_SYSTEM
        );
    }

    #[test]
    fn masks_set_the_named_bits() {
        let mut out = [0 as c_ulong; 2];
        let cpus = ranges("0-3, 64").unwrap();
        assert_eq!(unsafe { put_mask(out.as_mut_ptr(), 2, &cpus) }, Ok(()));
        assert_eq!(out, [0b1111, 1]);
        assert_eq!(ranges("x"), Err(abi::UNKNOWN));
    }
}
