//! `gpusel topo`: the GPUs' connection matrix, as `nvidia-smi topo -m`
//! prints it, from whatever provider gives topology (NVML, a snapshot file,
//! an agent).

use gpusel_core::{Gpu, SCHEMA_VERSION, Snapshot, pair_link};
use serde::Serialize;

use crate::sanitize::clean;

/// The matrix as `--json` writes it.
#[derive(Debug, Serialize)]
pub struct Matrix {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Host the GPUs are in.
    pub host: String,
    /// Provider that read them.
    pub provider: String,
    /// One row a GPU, in index order.
    pub gpus: Vec<Row>,
}

/// One GPU's row.
#[derive(Debug, Serialize)]
pub struct Row {
    /// NVML index.
    pub index: u32,
    /// UUID.
    pub uuid: String,
    /// How it reaches each GPU of [`Matrix::gpus`], in that order: `X` for
    /// itself, `NV#`, `PIX`, `PXB`, `PHB`, `NODE`, `SYS`, or `N/A` when the
    /// provider does not say.
    pub links: Vec<String>,
    /// CPUs nearest the GPU (`0-31,64-95`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_affinity: Option<String>,
    /// NUMA node nearest the GPU, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
}

const NA: &str = "N/A";

/// What joins `a` to `b`, as nvidia-smi writes it.
fn code(a: &Gpu, b: &Gpu) -> String {
    if a.uuid == b.uuid {
        return "X".into();
    }
    pair_link(a, b).map_or_else(|| NA.to_string(), |p| p.code)
}

/// The matrix of `snapshot`'s GPUs, in index order.
pub fn matrix(snapshot: &Snapshot) -> Matrix {
    let mut gpus: Vec<&Gpu> = snapshot.gpus.iter().collect();
    gpus.sort_by_key(|g| g.index);
    Matrix {
        schema_version: SCHEMA_VERSION,
        host: snapshot.host.clone(),
        provider: snapshot.provider.clone(),
        gpus: gpus
            .iter()
            .map(|a| Row {
                index: a.index,
                uuid: a.uuid.clone(),
                links: gpus.iter().map(|b| code(a, b)).collect(),
                cpu_affinity: a.cpu_affinity.clone(),
                numa_node: a.numa_node,
            })
            .collect(),
    }
}

const LEGEND: &str = "\
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
";

/// The matrix as text: tab-separated columns under a header, then the
/// legend, as `nvidia-smi topo -m` lays it out.
pub fn render(matrix: &Matrix) -> String {
    let mut out = String::from("\t");
    for row in &matrix.gpus {
        out.push_str(&format!("GPU{}\t", row.index));
    }
    out.push_str("CPU Affinity\tNUMA Affinity\n");
    for row in &matrix.gpus {
        out.push_str(&format!("GPU{}\t", row.index));
        for cell in &row.links {
            // nvidia-smi pads its one-letter self cell.
            let cell = if cell == "X" { " X " } else { cell.as_str() };
            out.push_str(&format!("{cell}\t"));
        }
        let numa = row
            .numa_node
            .map_or_else(|| NA.to_string(), |n| n.to_string());
        // A snapshot file or an agent chooses this text: no escapes on the terminal.
        let cpus = row
            .cpu_affinity
            .as_deref()
            .map_or_else(|| NA.to_string(), clean);
        out.push_str(&format!("{cpus}\t{numa}\n"));
    }
    out.push('\n');
    out.push_str(LEGEND);
    out
}
