//! Where each GPU sits: its NUMA node and nearest CPUs, its NVLinks, and
//! where its PCIe path meets every other GPU's.
//!
//! Topology does not change while the machine runs, so it is read once per
//! set of GPUs and kept for the provider's life (the agent's snapshots after
//! the first cost nothing). The first read costs, for `n` GPUs, `n` handle
//! lookups, `2n` affinity calls, up to 18 NVLink state calls and one
//! remote-PCI call per active link per GPU, and `n(n-1)/2` common-ancestor
//! calls (28 for 8 GPUs). A call that fails or is missing leaves its part
//! out; it never fails the snapshot.

use std::ffi::c_ulong;
use std::sync::{Mutex, PoisonError};

use gpusel_core::{Gpu, GpuLink, PcieLevel};
use nvml_wrapper::enum_wrappers::device::{P2pCapabilitiesIndex, P2pStatus, TopologyLevel};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};

use crate::read::field;

/// `NVML_NVLINK_MAX_LINKS`: link indices NVML accepts.
const NVLINK_MAX_LINKS: u32 = 18;
/// `NVML_AFFINITY_SCOPE_NODE`.
const SCOPE_NODE: u32 = 0;
/// Words of the CPU mask asked for: 4096 CPUs.
const CPU_WORDS: usize = 64;
/// Words of the NUMA node mask asked for: 256 nodes.
const NODE_WORDS: usize = 4;

/// What one GPU's topology read gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Placement {
    numa_node: Option<u32>,
    cpu_affinity: Option<String>,
    links: Vec<GpuLink>,
    /// Active NVLinks, and how many of them end at no GPU (an NVSwitch).
    active: u32,
    switched: u32,
}

/// Topology read once per set of GPUs (their UUIDs, in order).
#[derive(Debug, Default)]
pub(crate) struct Cache {
    read: Mutex<Option<(Vec<String>, Vec<Placement>)>>,
}

impl Cache {
    /// Fills every GPU's topology fields, from the cache when the GPUs are
    /// the ones it was read for.
    pub(crate) fn fill(&self, nvml: &Nvml, gpus: &mut [Gpu]) {
        let uuids: Vec<String> = gpus.iter().map(|g| g.uuid.clone()).collect();
        let mut slot = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let placements = match slot.as_ref() {
            Some((seen, placements)) if *seen == uuids => placements.clone(),
            _ => {
                let start = std::time::Instant::now();
                let placements = read(nvml, gpus);
                tracing::debug!(
                    "NVML: topology of {} GPUs read in {:?} (kept for this process)",
                    gpus.len(),
                    start.elapsed()
                );
                *slot = Some((uuids, placements.clone()));
                placements
            }
        };
        for (gpu, p) in gpus.iter_mut().zip(placements) {
            gpu.numa_node = p.numa_node;
            gpu.cpu_affinity = p.cpu_affinity;
            gpu.links = p.links;
        }
    }
}

fn read(nvml: &Nvml, gpus: &[Gpu]) -> Vec<Placement> {
    // One handle a GPU, for its own calls and every pair's.
    let devices: Vec<Option<Device<'_>>> = gpus
        .iter()
        .map(|g| field("topology handle", nvml.device_by_index(g.index)))
        .collect();
    let mut out: Vec<Placement> = gpus
        .iter()
        .zip(&devices)
        .map(|(g, d)| d.as_ref().map(|d| place(d, g, gpus)).unwrap_or_default())
        .collect();
    for i in 0..gpus.len() {
        for j in i + 1..gpus.len() {
            let (Some(first), Some(second)) = (&devices[i], &devices[j]) else {
                continue;
            };
            let (a, b) = (&gpus[i], &gpus[j]);
            if let Some(level) = common_ancestor((first, a), (second, b)) {
                for (from, to) in [(i, j), (j, i)] {
                    link_entry(&mut out[from].links, &gpus[to].uuid).pcie = Some(level);
                }
            }
            // Through NVSwitches: every link ends at a switch, and the
            // driver says whether the two reach each other over them (as
            // nvidia-smi, counted as the links each has: NV18 on an HGX H100).
            if out[i].switched > 0
                && out[j].switched > 0
                && link_entry(&mut out[i].links, &b.uuid).nvlinks == 0
                && nvlink_p2p((first, a), (second, b))
            {
                let count = out[i].active.min(out[j].active);
                for (from, to) in [(i, j), (j, i)] {
                    link_entry(&mut out[from].links, &gpus[to].uuid).nvlinks = count;
                }
            }
        }
    }
    // In the GPUs' order, as nvidia-smi's columns are.
    for p in &mut out {
        p.links
            .sort_by_key(|l| gpus.iter().position(|g| g.uuid == l.peer));
    }
    out
}

/// The entry for `peer` in `links`, added when missing.
fn link_entry<'a>(links: &'a mut Vec<GpuLink>, peer: &str) -> &'a mut GpuLink {
    let at = match links.iter().position(|l| l.peer == peer) {
        Some(at) => at,
        None => {
            links.push(GpuLink::new(peer));
            links.len() - 1
        }
    };
    &mut links[at]
}

/// NUMA node, CPUs and NVLinks of `gpu`, whose handle is `device`.
fn place(device: &Device<'_>, gpu: &Gpu, all: &[Gpu]) -> Placement {
    let what = |f: &str| format!("GPU {} {f}", gpu.index);
    let numa_node = field(
        &what("memory affinity"),
        device.memory_affinity(NODE_WORDS, SCOPE_NODE),
    )
    .and_then(|mask| bits(&mask).first().map(|&n| n as u32));
    let cpu_affinity = field(&what("CPU affinity"), device.cpu_affinity(CPU_WORDS))
        .map(|mask| ranges(&bits(&mask)))
        .filter(|r| !r.is_empty());
    let mut links = Vec::new();
    let (mut active, mut switched) = (0, 0);
    for link in 0..NVLINK_MAX_LINKS {
        let wrapper = device.link_wrapper_for(link);
        match wrapper.is_active() {
            Ok(true) => {}
            Ok(false) => continue,
            // Past the GPU's last link, or a GPU without NVLink.
            Err(NvmlError::InvalidArg | NvmlError::NotSupported) => break,
            Err(e) => {
                tracing::debug!(
                    "NVML: GPU {} NVLink {link} state unavailable: {e}",
                    gpu.index
                );
                break;
            }
        }
        let Some(remote) = field(&what("NVLink remote PCI info"), wrapper.remote_pci_info()) else {
            continue;
        };
        active += 1;
        // A link to an NVSwitch (or a CPU) names no GPU here.
        match all
            .iter()
            .find(|g| g.uuid != gpu.uuid && same_bus(g.pci_bus_id.as_deref(), &remote.bus_id))
        {
            Some(peer) => link_entry(&mut links, &peer.uuid).nvlinks += 1,
            None => switched += 1,
        }
    }
    Placement {
        numa_node,
        cpu_affinity,
        links,
        active,
        switched,
    }
}

/// A GPU's handle and the GPU.
type Handle<'a, 'nvml> = (&'a Device<'nvml>, &'a Gpu);

/// Whether the driver says `a` and `b` reach each other over NVLink.
fn nvlink_p2p((first, a): Handle<'_, '_>, (second, b): Handle<'_, '_>) -> bool {
    field(
        &format!("GPU {} and {} NVLink P2P status", a.index, b.index),
        first.p2p_status(second, P2pCapabilitiesIndex::NvLink),
    ) == Some(P2pStatus::Ok)
}

fn common_ancestor((first, a): Handle<'_, '_>, (second, b): Handle<'_, '_>) -> Option<PcieLevel> {
    // nvml-wrapper takes the other device by value; Device has no Drop, so
    // a second wrapper of the same handle costs nothing and frees nothing.
    // SAFETY: the handle comes from the live `Nvml` it is wrapped with.
    let second = unsafe { Device::new(second.handle(), second.nvml()) };
    let level = field(
        &format!("GPU {} and {} common ancestor", a.index, b.index),
        first.topology_common_ancestor(second),
    )?;
    Some(match level {
        TopologyLevel::Internal => PcieLevel::Internal,
        TopologyLevel::Single => PcieLevel::Single,
        TopologyLevel::Multiple => PcieLevel::Multiple,
        TopologyLevel::HostBridge => PcieLevel::HostBridge,
        TopologyLevel::Node => PcieLevel::Node,
        TopologyLevel::System => PcieLevel::System,
    })
}

/// Whether two PCI bus ids name one device, whatever the domain's width
/// (`00000000:07:00.0` and `0000:07:00.0`) and case.
fn same_bus(ours: Option<&str>, theirs: &str) -> bool {
    let parse = |id: &str| -> Option<Vec<u32>> {
        id.trim()
            .split([':', '.'])
            .map(|p| u32::from_str_radix(p, 16).ok())
            .collect()
    };
    ours.and_then(parse)
        .is_some_and(|o| Some(o) == parse(theirs))
}

/// The set bits of a mask of `unsigned long` words, ascending.
fn bits(mask: &[c_ulong]) -> Vec<usize> {
    let word = c_ulong::BITS as usize;
    mask.iter()
        .enumerate()
        .flat_map(|(w, &m)| {
            (0..word)
                .filter(move |b| m & (1 << b) != 0)
                .map(move |b| w * word + b)
        })
        .collect()
}

/// `0-15,32-47` for the numbers given (ascending).
fn ranges(numbers: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_read_as_cpu_lists() {
        assert_eq!(ranges(&bits(&[0xFFFF, 0])), "0-15");
        assert_eq!(ranges(&bits(&[0b1011, 1])), "0-1,3,64");
        assert_eq!(ranges(&bits(&[0])), "");
    }

    #[test]
    fn bus_ids_match_across_widths() {
        assert!(same_bus(Some("00000000:07:00.0"), "0000:07:00.0"));
        assert!(same_bus(Some("00000000:4E:00.0"), "00000000:4e:00.0"));
        assert!(!same_bus(Some("00000000:07:00.0"), "00000000:08:00.0"));
        assert!(!same_bus(None, "00000000:08:00.0"));
    }
}
