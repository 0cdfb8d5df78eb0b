//! `nvidia-smi topo -m`: the connection matrix, read into each GPU's
//! [`links`](Gpu::links), [`cpu_affinity`](Gpu::cpu_affinity) and
//! [`numa_node`](Gpu::numa_node).
//!
//! The layout is nvidia-smi's documented one: a tab-separated header of
//! column names (`GPU0` ... , NICs such as `NIC0` or `mlx5_0`, then `CPU
//! Affinity`, `NUMA Affinity` and, on newer drivers, `GPU NUMA ID`), one row
//! a device, then the legend. Cells: `X` (itself), `NV#` (# bonded NVLinks),
//! `PIX`, `PXB`, `PHB`, `NODE`, `SYS` (`SOC` on drivers before R384). Rows
//! and columns of NICs are passed over; an unknown cell leaves that pair out.

use gpusel_core::{Gpu, GpuLink, PcieLevel};

/// Where one GPU sits, as the matrix says: its links, CPUs and NUMA node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Place {
    links: Vec<GpuLink>,
    cpu_affinity: Option<String>,
    numa_node: Option<u32>,
}

impl Place {
    /// Writes this place into `gpu`'s topology fields.
    pub(crate) fn fill(&self, gpu: &mut Gpu) {
        gpu.links.clone_from(&self.links);
        gpu.cpu_affinity.clone_from(&self.cpu_affinity);
        gpu.numa_node = self.numa_node;
    }
}

/// The place of each of `gpus` (in their order; `GPU3` is the one of
/// index 3) in the matrix `text`, the default for a GPU it has no row for;
/// and how many GPU rows were read.
pub(crate) fn read(text: &str, gpus: &[Gpu]) -> (Vec<Place>, usize) {
    let mut places = vec![Place::default(); gpus.len()];
    let mut lines = text.lines();
    let Some(header) = lines.by_ref().find(|l| l.contains("GPU0")) else {
        return (places, 0);
    };
    let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
    let column = |name: &str| columns.iter().position(|c| *c == name);
    let (cpus, numa) = (column("CPU Affinity"), column("NUMA Affinity"));
    let mut read = 0;
    for line in lines {
        let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
        let Some(row) = cells.first().and_then(|c| gpu_index(c)) else {
            continue;
        };
        let Some(at) = gpus.iter().position(|g| g.index == row) else {
            continue;
        };
        let mut links = Vec::new();
        for (i, cell) in cells.iter().enumerate().skip(1) {
            let Some(peer) = columns.get(i).and_then(|c| gpu_index(c)) else {
                continue;
            };
            let Some(uuid) = gpus
                .iter()
                .find(|g| g.index == peer)
                .map(|g| g.uuid.clone())
            else {
                continue;
            };
            if peer == row {
                continue;
            }
            if let Some(link) = link(cell, uuid) {
                links.push(link);
            }
        }
        places[at] = Place {
            links,
            cpu_affinity: cpus
                .and_then(|c| cells.get(c))
                .filter(|c| !c.is_empty() && **c != "N/A")
                .map(|c| c.to_string()),
            numa_node: numa.and_then(|c| cells.get(c)).and_then(|c| c.parse().ok()),
        };
        read += 1;
    }
    (places, read)
}

/// `3` for `GPU3`.
fn gpu_index(name: &str) -> Option<u32> {
    name.strip_prefix("GPU")?.parse().ok()
}

/// The link a cell describes.
fn link(cell: &str, peer: String) -> Option<GpuLink> {
    let mut link = GpuLink::new(peer);
    match cell {
        "PIX" => link.pcie = Some(PcieLevel::Single),
        "PXB" => link.pcie = Some(PcieLevel::Multiple),
        "PHB" => link.pcie = Some(PcieLevel::HostBridge),
        "NODE" => link.pcie = Some(PcieLevel::Node),
        "SYS" | "SOC" => link.pcie = Some(PcieLevel::System),
        _ => link.nvlinks = cell.strip_prefix("NV")?.parse().ok().filter(|n| *n > 0)?,
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_affinities_read_as_nvidia_smi_means_them() {
        let text = "\tGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n\
                    GPU0\t X \tNV4\tPIX\t0-15\t0\t\tN/A\n\
                    GPU1\tNV4\t X \tSYS\t16-31\t1\t\tN/A\n\
                    NIC0\tPIX\tSYS\t X \t\t\t\n\nLegend:\n\n  X    = Self\n";
        let mut gpus = vec![Gpu::new(0, "GPU-a", "x"), Gpu::new(1, "GPU-b", "x")];
        let (places, rows) = read(text, &gpus);
        assert_eq!(rows, 2);
        for (gpu, place) in gpus.iter_mut().zip(&places) {
            place.fill(gpu);
        }
        assert_eq!(gpus[0].links.len(), 1);
        assert_eq!(
            (gpus[0].links[0].peer.as_str(), gpus[0].links[0].nvlinks),
            ("GPU-b", 4)
        );
        assert_eq!(gpus[1].cpu_affinity.as_deref(), Some("16-31"));
        assert_eq!(gpus[1].numa_node, Some(1));
        assert_eq!(
            link("SOC", "p".into()).unwrap().pcie,
            Some(PcieLevel::System)
        );
        assert_eq!(link("NV0", "p".into()), None);
        assert_eq!(link("??", "p".into()), None);
        let (places, rows) = read("No devices were found\n", &gpus);
        assert_eq!(rows, 0);
        assert!(places.iter().all(|p| *p == Place::default()), "{places:?}");
    }
}
