//! What choosing a multi-GPU set by topology costs: `choose_set` on 8 and 16
//! GPUs, for the topologies that make it work hardest. Prints the median and
//! the 90th percentile of 2000 runs per case.
//!
//!     cargo run --release -p gpusel-core --example set_choice

use std::time::{Duration, Instant};

use gpusel_core::{Device, Gpu, GpuLink, PcieLevel, choose_set};

/// `n` GPUs on two NUMA nodes; `nvlink(a, b)` says which pairs have NVLink.
fn machine(n: u32, nvlink: impl Fn(u32, u32) -> bool) -> Vec<Gpu> {
    let uuid = |i: u32| format!("GPU-{i:04}");
    (0..n)
        .map(|i| {
            let mut g = Gpu::new(i, uuid(i), "H100");
            g.numa_node = Some(i * 2 / n);
            for j in (0..n).filter(|&j| j != i) {
                let mut link = GpuLink::new(uuid(j));
                link.pcie = Some(if i * 2 / n == j * 2 / n {
                    PcieLevel::Node
                } else {
                    PcieLevel::System
                });
                if nvlink(i, j) {
                    link.nvlinks = 4;
                }
                g.links.push(link);
            }
            g
        })
        .collect()
}

/// Which pairs of GPUs NVLink joins.
type Nvlink = Box<dyn Fn(u32, u32) -> bool>;

fn time(gpus: &[Gpu], size: usize, runs: u32) -> (Duration, Duration) {
    let devices: Vec<Device<'_>> = gpus.iter().map(Device::whole).collect();
    // A fixed shuffle, as a random strategy hands over.
    let mut ranked: Vec<usize> = (0..gpus.len()).collect();
    ranked.sort_by_key(|&i| (i * 7919) % gpus.len());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(choose_set(&devices, &ranked, size));
            start.elapsed()
        })
        .collect();
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() * 9 / 10])
}

fn main() {
    let cases: [(&str, u32, Nvlink); 5] = [
        ("8 GPUs, NVLink pairs", 8, Box::new(|a, b| a / 2 == b / 2)),
        ("16 GPUs, NVLink pairs", 16, Box::new(|a, b| a / 2 == b / 2)),
        // NVLink in a ring: no clique of 3 or more, the search's worst case.
        (
            "16 GPUs, NVLink ring",
            16,
            Box::new(|a, b| (a + 1) % 16 == b || (b + 1) % 16 == a),
        ),
        // NVLink between every two GPUs but those of one quad: many
        // cliques, none of 5 or more.
        (
            "16 GPUs, NVLink 4-partite",
            16,
            Box::new(|a, b| a % 4 != b % 4),
        ),
        ("16 GPUs, no NVLink", 16, Box::new(|_, _| false)),
    ];
    println!("{:<28} {:>4} {:>12} {:>12}", "case", "-n", "median", "p90");
    for (name, n, nvlink) in &cases {
        let gpus = machine(*n, nvlink);
        for size in [2, 4, 8] {
            let (median, p90) = time(&gpus, size, 2000);
            println!("{name:<28} {size:>4} {median:>12.1?} {p90:>12.1?}");
        }
    }
}
