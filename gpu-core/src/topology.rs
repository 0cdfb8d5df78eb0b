//! Topology-aware multi-GPU picks: which link joins two GPUs, which set of
//! candidates is best joined, and in what order to lease it.
//!
//! A set's tier is its weakest pair's: every pair over NVLink, else every
//! pair behind one PCIe switch, else behind PCIe switches short of a host
//! bridge, else on one NUMA node, else across the system. Among the sets of
//! the best tier the pick is the one the strategy's order prefers: the
//! lexicographically earliest by rank position, so that random stays random
//! and best-fit stays best-fit among equally joined sets. Without topology
//! data the pick is the strategy's first N, as before topology existed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::model::{Gpu, PcieLevel};

/// What joins every pair of a set of GPUs, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetLink {
    /// NVLink, between every pair.
    Nvlink,
    /// One PCIe switch (or one board): `PIX`.
    PcieSwitch,
    /// PCIe switches short of a host bridge: `PXB`.
    PcieSwitches,
    /// One NUMA node (a host bridge, or several of one node): `PHB`, `NODE`.
    NumaNode,
    /// Nothing nearer than the system's CPU interconnect: `SYS`.
    System,
}

impl fmt::Display for SetLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetLink::Nvlink => "joined by NVLink",
            SetLink::PcieSwitch => "behind one PCIe switch",
            SetLink::PcieSwitches => "behind PCIe switches, without crossing a host bridge",
            SetLink::NumaNode => "on the same NUMA node",
            SetLink::System => "no common link: spans the system",
        })
    }
}

/// How two GPUs are joined: the tier, and the `nvidia-smi topo -m` code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairLink {
    /// The tier of the pair.
    pub link: SetLink,
    /// What `nvidia-smi topo -m` prints for it: `NV4`, `PIX`, `PXB`, `PHB`,
    /// `NODE` or `SYS`.
    pub code: String,
    /// NVLinks joining the two (0 for none), to rank NVLink pairs.
    pub nvlinks: u32,
}

/// How `a` and `b` are joined, from either side's links and their NUMA
/// nodes; `None` when the snapshot does not say.
pub fn pair_link(a: &Gpu, b: &Gpu) -> Option<PairLink> {
    let nvlinks = nvlinks(a, b);
    if nvlinks > 0 {
        return Some(PairLink {
            link: SetLink::Nvlink,
            code: format!("NV{nvlinks}"),
            nvlinks,
        });
    }
    pcie_link(a, b).map(|(link, code)| PairLink {
        link,
        code: code.to_string(),
        nvlinks: 0,
    })
}

/// NVLinks between `a` and `b`, by either side's count.
fn nvlinks(a: &Gpu, b: &Gpu) -> u32 {
    let count = |x: &Gpu, y: &Gpu| x.link_to(&y.uuid).map_or(0, |l| l.nvlinks);
    count(a, b).max(count(b, a))
}

/// The tier and code of `a` and `b`'s PCIe path, or of their NUMA nodes.
fn pcie_link(a: &Gpu, b: &Gpu) -> Option<(SetLink, &'static str)> {
    let level = |x: &Gpu, y: &Gpu| x.link_to(&y.uuid).and_then(|l| l.pcie);
    match level(a, b).or_else(|| level(b, a)) {
        Some(level) => Some((
            match level {
                PcieLevel::Internal | PcieLevel::Single => SetLink::PcieSwitch,
                PcieLevel::Multiple => SetLink::PcieSwitches,
                PcieLevel::HostBridge | PcieLevel::Node => SetLink::NumaNode,
                PcieLevel::System => SetLink::System,
            },
            level.code(),
        )),
        None => match (a.numa_node, b.numa_node) {
            (Some(x), Some(y)) if x == y => Some((SetLink::NumaNode, "NODE")),
            (Some(_), Some(_)) => Some((SetLink::System, "SYS")),
            _ => None,
        },
    }
}

/// A pair's rank for the chooser, lower is better: its tier, and for an
/// NVLink pair its PCIe tier next (NVLink pairs on one NUMA node before
/// NVLink pairs across the sockets, as on an NVSwitch machine where every
/// pair has NVLink); [`UNKNOWN`] when nothing is known.
pub(crate) fn pair_rank(a: &Gpu, b: &Gpu) -> u8 {
    let pcie = pcie_link(a, b).map(|(tier, _)| tier as u8);
    if nvlinks(a, b) > 0 {
        // After every NVLink rank, before the first PCIe tier's.
        pcie.unwrap_or(SetLink::System as u8 + 1)
    } else {
        pcie.map_or(UNKNOWN, |t| (t + 1) * RANKS_PER_TIER)
    }
}

/// The weakest link of a set of GPUs: what joins every pair of it. `None`
/// for fewer than two GPUs, or when a pair's link is unknown.
pub fn set_link<'a>(gpus: impl IntoIterator<Item = &'a Gpu>) -> Option<PairLink> {
    let gpus: Vec<&Gpu> = gpus.into_iter().collect();
    let mut weakest: Option<PairLink> = None;
    for (i, a) in gpus.iter().enumerate() {
        for b in &gpus[i + 1..] {
            let pair = pair_link(a, b)?;
            let weaker = match &weakest {
                None => true,
                Some(w) => {
                    (pair.link, std::cmp::Reverse(pair.nvlinks))
                        > (w.link, std::cmp::Reverse(w.nvlinks))
                }
            };
            if weaker {
                weakest = Some(pair);
            }
        }
    }
    weakest
}

/// Whether any GPU of `gpus` carries topology data.
pub fn has_topology<'a>(gpus: impl IntoIterator<Item = &'a Gpu>) -> bool {
    gpus.into_iter()
        .any(|g| !g.links.is_empty() || g.numa_node.is_some())
}

/// Ranks an NVLink pair can have: one a PCIe tier, and unknown.
const RANKS_PER_TIER: u8 = SetLink::System as u8 + 2;

/// The rank of a pair nothing is known of, below every other.
pub(crate) const UNKNOWN: u8 = u8::MAX;

/// Search steps allowed per tier before that tier is given up (a pathological
/// NVLink graph of many GPUs); far above what 16 GPUs need.
const STEP_BUDGET: usize = 200_000;

/// Chooses `size` of `ranked` (indices into `devices`, the strategy's order,
/// best first): the best-joined set; among those, the one whose worst-ranked
/// member ranks best (so that a set never takes a GPU the strategy ranks
/// last when an equally joined set need not), then the earliest in the order
/// member by member. Returns the chosen indices in rank order. With no topology data, or
/// `size` of 1 or more than there are, the first `size` of `ranked`.
pub fn choose(devices: &[Device<'_>], ranked: &[usize], size: usize) -> Vec<usize> {
    let first: Vec<usize> = ranked.iter().copied().take(size).collect();
    if size < 2 || size >= ranked.len() || !has_topology(ranked.iter().map(|&i| devices[i].gpu)) {
        return first;
    }
    let n = ranked.len();
    let mut tier = vec![UNKNOWN; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (devices[ranked[i]].gpu, devices[ranked[j]].gpu);
            let t = if std::ptr::eq(a, b) {
                // Two MIG devices of one GPU: as near as it gets.
                0
            } else {
                pair_rank(a, b)
            };
            tier[i * n + j] = t;
            tier[j * n + i] = t;
        }
    }
    let mut thresholds = tier.clone();
    thresholds.sort_unstable();
    thresholds.dedup();
    // The weakest pair's rank bounds a set's: try each, best first.
    for threshold in thresholds {
        let ok = |i: usize, j: usize| tier[i * n + j] <= threshold;
        // The shortest head of the order that holds a set of this tier: its
        // last position is in the set, the rest are the earliest that fit.
        for last in size - 1..n {
            let open: Vec<usize> = (0..last).filter(|&p| ok(p, last)).collect();
            let mut search = Search {
                size: size - 1,
                ok,
                steps: 0,
                chosen: Vec::with_capacity(size),
            };
            if search.extend(&open) {
                let mut set = search.chosen;
                set.push(last);
                return set.into_iter().map(|p| ranked[p]).collect();
            }
        }
    }
    first
}

/// Depth-first search for the lexicographically first clique of `size`
/// positions under `ok`, positions tried in order.
struct Search<F> {
    size: usize,
    ok: F,
    steps: usize,
    chosen: Vec<usize>,
}

impl<F: Fn(usize, usize) -> bool> Search<F> {
    /// Extends `chosen` from `open` (positions joined to all of `chosen`,
    /// ascending); true once `chosen` is full.
    fn extend(&mut self, open: &[usize]) -> bool {
        if self.chosen.len() == self.size {
            return true;
        }
        for (k, &p) in open.iter().enumerate() {
            // Too few left to fill the set, or out of budget.
            if self.chosen.len() + open.len() - k < self.size || self.steps >= STEP_BUDGET {
                return false;
            }
            self.steps += 1;
            let next: Vec<usize> = open[k + 1..]
                .iter()
                .copied()
                .filter(|&q| (self.ok)(p, q))
                .collect();
            self.chosen.push(p);
            if self.extend(&next) {
                return true;
            }
            self.chosen.pop();
        }
        false
    }
}

/// The order in which the pipeline leases candidates: the chosen set first;
/// when a lease in it fails, a new choice among those left, keeping what is
/// held when the new set still has it.
pub(crate) struct Picker<'d, 'a> {
    devices: &'d [Device<'a>],
    /// Candidates not passed over, in rank order.
    left: Vec<usize>,
    least: usize,
    most: usize,
    plan: Vec<usize>,
    held: Vec<usize>,
}

impl<'d, 'a> Picker<'d, 'a> {
    /// A picker over `order` (the strategy's ranking of `devices`, padded and
    /// deduplicated by the caller), for at least `least` and at most `most`.
    pub(crate) fn new(
        devices: &'d [Device<'a>],
        order: Vec<usize>,
        least: usize,
        most: usize,
    ) -> Self {
        let mut picker = Picker {
            devices,
            left: order,
            least,
            most,
            plan: Vec::new(),
            held: Vec::new(),
        };
        picker.replan();
        picker
    }

    fn replan(&mut self) {
        let size = self.most.min(self.left.len());
        self.plan = if self.left.len() < self.least {
            // Too few whatever happens: try them all, so that every one
            // another gpusel holds is named.
            self.left.clone()
        } else {
            choose(self.devices, &self.left, size)
        };
    }

    /// The next candidate to lease, taken as held until [`failed`](Self::failed)
    /// says otherwise; `None` when the plan is held in full.
    pub(crate) fn next(&mut self) -> Option<usize> {
        let next = self.plan.iter().copied().find(|p| !self.held.contains(p))?;
        self.held.push(next);
        Some(next)
    }

    /// `pos` could not be leased: it leaves the candidates and the set is
    /// chosen again. Returns the held candidates the new plan drops, for the
    /// caller to release.
    pub(crate) fn failed(&mut self, pos: usize) -> Vec<usize> {
        self.held.retain(|&p| p != pos);
        self.left.retain(|&p| p != pos);
        self.replan();
        let plan = &self.plan;
        let (keep, drop): (Vec<usize>, Vec<usize>) =
            self.held.iter().partition(|p| plan.contains(p));
        self.held = keep;
        drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GpuLink;
    use proptest::prelude::*;

    /// `n` GPUs; `nvlink` pairs of indices; NUMA node `i / half`.
    fn gpus(n: u32, nvlink: &[(u32, u32)], half: Option<u32>) -> Vec<Gpu> {
        let uuid = |i: u32| format!("GPU-{i}");
        (0..n)
            .map(|i| {
                let mut g = Gpu::new(i, uuid(i), "H100");
                g.numa_node = half.map(|h| i / h);
                for &(a, b) in nvlink {
                    let peer = if a == i {
                        b
                    } else if b == i {
                        a
                    } else {
                        continue;
                    };
                    let mut l = GpuLink::new(uuid(peer));
                    l.nvlinks = 4;
                    g.links.push(l);
                }
                g
            })
            .collect()
    }

    fn pick(gpus: &[Gpu], ranked: &[usize], size: usize) -> Vec<u32> {
        let devices: Vec<Device<'_>> = gpus.iter().map(Device::whole).collect();
        let mut got: Vec<u32> = choose(&devices, ranked, size)
            .into_iter()
            .map(|i| gpus[i].index)
            .collect();
        got.sort_unstable();
        got
    }

    const PAIRS: &[(u32, u32)] = &[(0, 1), (2, 3), (4, 5), (6, 7)];

    #[test]
    fn pairs_and_halves() {
        let g = gpus(8, PAIRS, Some(4));
        // The strategy likes 0 and 2 best: 0's pair wins.
        assert_eq!(pick(&g, &[0, 2, 5, 1, 3, 4, 6, 7], 2), [0, 1]);
        // Without 1, the first whole pair in the order.
        assert_eq!(pick(&g, &[0, 2, 5, 3, 4, 6, 7], 2), [2, 3]);
        // Four: no set is all NVLink; one NUMA node, the one whose last
        // member comes first (7's node needs the 7th in the order, 0's the 6th).
        assert_eq!(pick(&g, &[7, 0, 2, 5, 1, 3, 4, 6], 4), [0, 1, 2, 3]);
        assert_eq!(pick(&g, &[7, 0, 2, 5, 6, 4, 1, 3], 4), [4, 5, 6, 7]);
        // A pair is not worth the strategy's last GPU while another pair
        // ranks higher: 6-7 (3rd and 4th) beats 1-0 (1st and 6th).
        assert_eq!(pick(&g, &[1, 3, 6, 7, 5, 0, 2, 4], 2), [6, 7]);
        // No topology at all: the strategy's first N.
        let plain = gpus(8, &[], None);
        assert_eq!(pick(&plain, &[5, 2, 7, 0], 2), [2, 5]);
    }

    #[test]
    fn among_nvlink_sets_one_numa_node_wins() {
        // An NVSwitch machine: NVLink between every two GPUs.
        let all: Vec<(u32, u32)> = (0..8)
            .flat_map(|a| (a + 1..8).map(move |b| (a, b)))
            .collect();
        let g = gpus(8, &all, Some(4));
        // The first two (0 and 5) are on two sockets; 5 and 6 share one.
        assert_eq!(pick(&g, &[0, 5, 6, 1, 2, 3, 4, 7], 2), [5, 6]);
        assert_eq!(pick(&g, &[0, 5, 6, 1, 2, 3, 4, 7], 4), [0, 1, 2, 3]);
        let link = set_link([&g[0], &g[5]]).unwrap();
        assert_eq!((link.link, link.code.as_str()), (SetLink::Nvlink, "NV4"));
    }

    #[test]
    fn set_links_name_the_weakest_pair() {
        let g = gpus(8, PAIRS, Some(4));
        let link = set_link([&g[2], &g[3]]).unwrap();
        assert_eq!((link.link, link.code.as_str()), (SetLink::Nvlink, "NV4"));
        let link = set_link([&g[0], &g[1], &g[2]]).unwrap();
        assert_eq!((link.link, link.code.as_str()), (SetLink::NumaNode, "NODE"));
        let link = set_link([&g[0], &g[7]]).unwrap();
        assert_eq!((link.link, link.code.as_str()), (SetLink::System, "SYS"));
        assert_eq!(set_link([&g[0]]), None);
        assert_eq!(
            set_link([&gpus(2, &[], None)[0], &gpus(2, &[], None)[1]]),
            None
        );
    }

    #[test]
    fn a_failed_lease_chooses_again() {
        let g = gpus(8, PAIRS, Some(4));
        let devices: Vec<Device<'_>> = g.iter().map(Device::whole).collect();
        let mut picker = Picker::new(&devices, vec![0, 2, 1, 3, 4, 5, 6, 7], 2, 2);
        assert_eq!(picker.next(), Some(0));
        assert_eq!(picker.next(), Some(1));
        // 1 is someone else's: 0 is let go, 2 and 3 are taken.
        assert_eq!(picker.failed(1), vec![0]);
        assert_eq!(picker.next(), Some(2));
        assert_eq!(picker.next(), Some(3));
        assert_eq!(picker.next(), None);
    }

    fn level(code: u8) -> Option<PcieLevel> {
        [
            None,
            Some(PcieLevel::Single),
            Some(PcieLevel::Multiple),
            Some(PcieLevel::Node),
            Some(PcieLevel::System),
        ][usize::from(code % 5)]
    }

    /// Every subset of `0..n` of `size`, as bit masks.
    fn subsets(n: usize, size: usize) -> impl Iterator<Item = Vec<usize>> {
        (0u32..1 << n)
            .filter(move |m| m.count_ones() as usize == size)
            .map(move |m| (0..n).filter(|i| m & (1 << i) != 0).collect())
    }

    proptest! {
        #[test]
        fn the_choice_is_the_best_joined_and_earliest_set(
            n in 2usize..9,
            codes in proptest::collection::vec(0u8..10, 64),
            order in Just((0..8usize).collect::<Vec<_>>()).prop_shuffle(),
            size in 2usize..6,
            with_topology in any::<bool>(),
        ) {
            let mut g = gpus(n as u32, &[], None);
            if with_topology {
                for i in 0..n {
                    for j in i + 1..n {
                        let code = codes[i * 8 + j];
                        let mut l = GpuLink::new(format!("GPU-{j}"));
                        if code >= 5 {
                            l.nvlinks = u32::from(code - 4);
                        }
                        l.pcie = level(code);
                        if code != 0 {
                            g[i].links.push(l);
                        }
                    }
                }
            }
            let devices: Vec<Device<'_>> = g.iter().map(Device::whole).collect();
            let ranked: Vec<usize> = order.into_iter().filter(|&i| i < n).collect();
            let size = size.min(n);
            let got = choose(&devices, &ranked, size);
            // A valid set of the asked size from the candidates.
            prop_assert_eq!(got.len(), size);
            let mut unique = got.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), size);
            prop_assert!(got.iter().all(|i| ranked.contains(i)));
            // The set's rank is its weakest pair's.
            let tier = |set: &[usize]| {
                set.iter()
                    .flat_map(|&i| set.iter().filter(move |&&j| j > i).map(move |&j| (i, j)))
                    .map(|(i, j)| pair_rank(&g[i], &g[j]))
                    .max()
                    .unwrap()
            };
            if !with_topology {
                prop_assert_eq!(&got[..], &ranked[..size]);
            }
            // Best achievable; among the best, the worst member ranks
            // best, then earliest member by member.
            let positions = |set: &[usize]| {
                let mut p: Vec<usize> = set.iter().map(|i| ranked.iter().position(|r| r == i).unwrap()).collect();
                p.sort_unstable();
                p
            };
            let key = |set: &[usize]| {
                let p = positions(set);
                (tier(set), p.last().copied(), p)
            };
            let best = subsets(n, size).map(|s| key(&s)).min().unwrap();
            prop_assert_eq!(key(&got), best);
        }
    }
}
