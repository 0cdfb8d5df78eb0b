//! Property tests of the selection pipeline, [`gpusel_core::select`], driven by
//! every built-in strategy on random snapshots, requests and
//! `CUDA_VISIBLE_DEVICES` values, plus the ordering each strategy promises.
//!
//! The oracle for "qualifies" is written here from the documented rules, not
//! taken from the pipeline: a device qualifies when it is visible under
//! `CUDA_VISIBLE_DEVICES`, the request (with the strategy's defaults filled
//! in) gives no reason against it, and it is not a MIG device while more than
//! one device is asked for (a process can use only one MIG device).

use std::cmp::Reverse;
use std::collections::HashSet;
use std::num::NonZeroUsize;

use gpusel_core::rand::SeedableRng;
use gpusel_core::rand::rngs::SmallRng;
use gpusel_core::{
    ComputeMode, Count, Device, DeviceSpec, Gpu, GpuProcess, IdleRules, MemoryAmount, MigDevice,
    Occupancy, Peak, ProcessKind, Reason, Request, SelectError, Selection, Snapshot,
    UtilizationWindow, Verdict, Visible, WriteOptions, select,
};
use gpusel_strategies::StrategyKind;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use strum::IntoEnumIterator;

const GIB: u64 = 1 << 30;

/// `"3"` -> (3, None), `"3:1"` -> (3, Some(1)): the order verdicts must come in.
fn label_order(label: &str) -> (u32, Option<u32>) {
    let (gpu, mig) = match label.split_once(':') {
        Some((g, m)) => (g, Some(m.parse().expect("MIG index"))),
        None => (label, None),
    };
    (gpu.parse().expect("GPU index"), mig)
}
const GPU_NAMES: [&str; 3] = [
    "NVIDIA A100-SXM4-80GB",
    "NVIDIA H100 80GB HBM3",
    "Tesla V100-PCIE-16GB",
];
const NAME_PATTERNS: [&str; 6] = ["a100", "H100", "nvidia", "MIG", "10gb", "zzz"];

fn config() -> ProptestConfig {
    ProptestConfig {
        // Shrunk failures are kept next to this file (cargo runs integration
        // tests from the package root).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/properties.proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(512)
    }
}

// ---------------------------------------------------------------- generators

fn maybe<S: Strategy>(probability_some: f64, s: S) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::weighted(probability_some, s)
}

/// Up to 80 GiB, mostly in whole GiB so that equal values (ties) are common.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0u64..=80).prop_map(|g| g * GIB),
        1 => 0u64..=80 * GIB,
    ]
}

/// 0..=100 %, with 0 (idle) common.
fn percent() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), 0u8..=100]
}

/// A process of any kind (a display server's graphics context is common),
/// with or without its memory, seen in `/proc` or not.
fn process() -> impl Strategy<Value = GpuProcess> {
    (
        0u32..4,
        prop_oneof![
            2 => Just(Some(ProcessKind::Compute)),
            2 => Just(Some(ProcessKind::Graphics)),
            1 => Just(Some(ProcessKind::ComputeGraphics)),
            1 => Just(None),
        ],
        maybe(0.8, size()),
        prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
    )
        .prop_map(|(pid, kind, used, visible)| {
            let mut p = GpuProcess::new(1000 + pid);
            p.kind = kind;
            p.used_memory = used.map(|u| u / 8);
            p.visible = visible;
            p
        })
}

fn processes() -> impl Strategy<Value = Option<Vec<GpuProcess>>> {
    maybe(
        0.92,
        prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(process(), 1..4)],
    )
}

/// Memory in use: mostly none or a little (idle), sometimes a ghost.
fn used() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        2 => 0u64..=512 << 20,
        1 => size(),
    ]
}

/// The window's peaks, when the provider read them.
fn window() -> impl Strategy<Value = Option<UtilizationWindow>> {
    let peak = || {
        maybe(
            0.8,
            (percent(), 0u64..10_000, 1u32..100).prop_map(|(p, age, n)| Peak::new(p, age, n)),
        )
    };
    maybe(
        0.5,
        (peak(), peak()).prop_map(|(g, m)| UtilizationWindow::new(10_000, g, m)),
    )
}

fn compute_mode() -> impl Strategy<Value = Option<ComputeMode>> {
    prop_oneof![
        6 => Just(None),
        3 => Just(Some(ComputeMode::Default)),
        1 => Just(Some(ComputeMode::Prohibited)),
        1 => Just(Some(ComputeMode::ExclusiveProcess)),
        1 => Just(Some(ComputeMode::ExclusiveThread)),
    ]
}

/// A MIG device; its index and UUID are assigned by [`snapshot`].
fn mig_device() -> impl Strategy<Value = MigDevice> {
    (
        maybe(
            0.6,
            prop::sample::select(vec!["1g.10gb", "3g.40gb", "7g.80gb"]),
        ),
        maybe(0.92, size()),
        maybe(0.92, size()),
        maybe(0.9, used()),
        processes(),
    )
        .prop_map(
            |(profile, memory_total, memory_free, memory_used, processes)| {
                let mut mig = MigDevice::new(0, String::new());
                mig.profile = profile.map(String::from);
                mig.memory_total = memory_total;
                mig.memory_free = memory_free;
                mig.memory_used = memory_used;
                mig.processes = processes;
                mig
            },
        )
}

/// A GPU whose `uuid` holds, for now, the two-letter tag [`snapshot`] builds
/// the UUIDs from (shared tags make shared UUID prefixes).
fn gpu() -> impl Strategy<Value = Gpu> {
    let mig = prop_oneof![
        8 => Just(None),
        2 => prop::collection::vec(mig_device(), 1..=3).prop_map(Some),
        // MIG mode on, no instance configured.
        1 => Just(Some(Vec::new())),
    ];
    (
        "[ab]{2}",
        prop::sample::select(GPU_NAMES.to_vec()),
        maybe(0.92, size()),
        maybe(0.92, size()),
        maybe(0.92, percent()),
        maybe(0.92, percent()),
        maybe(0.92, 0u32..=700_000),
        processes(),
        mig,
        any::<bool>(),
        (
            maybe(0.9, used()),
            maybe(0.5, 0u64..=1 << 30),
            window(),
            compute_mode(),
        ),
    )
        .prop_map(
            |(tag, name, total, free, util, mem_util, power, processes, mig, mig_off, idle)| {
                let (used, reserved, window, mode) = idle;
                let mut g = Gpu::new(0, tag, name);
                g.memory_total = total;
                g.memory_free = free;
                g.memory_used = used;
                g.memory_reserved = reserved;
                g.utilization_window = window;
                g.compute_mode = mode;
                g.utilization_gpu = util;
                g.utilization_memory = mem_util;
                g.power_draw = power;
                g.processes = processes;
                match mig {
                    Some(devices) => {
                        g.mig_mode = Some(true);
                        g.mig_devices = devices;
                    }
                    None => g.mig_mode = mig_off.then_some(false),
                }
                g
            },
        )
}

/// 0..10 GPUs with indices 0..n and unique UUIDs.
fn snapshot() -> impl Strategy<Value = Snapshot> {
    let gpus = prop_oneof![
        1 => prop::collection::vec(gpu(), 0..2),
        4 => prop::collection::vec(gpu(), 2..10),
    ];
    gpus.prop_map(|gpus| {
        let mut snapshot = Snapshot::new("node1", "proptest");
        for (i, mut g) in gpus.into_iter().enumerate() {
            let tag = std::mem::take(&mut g.uuid);
            g.index = i as u32;
            g.uuid = format!("GPU-{tag}{i:x}c1e-7c2d-4b9a-8f00-{i:012x}");
            for (m, mig) in g.mig_devices.iter_mut().enumerate() {
                mig.index = m as u32;
                mig.uuid = format!("MIG-{tag}{i:x}{m}e-1d3c-5a6b-9e00-{i:06x}{m:06x}");
            }
            snapshot.gpus.push(g);
        }
        snapshot
    })
}

/// A prefix of `uuid` (at least `GPU-`/`MIG-`) in random case: a short one
/// is often ambiguous, a long one names one device.
fn uuid_token(uuid: String) -> BoxedStrategy<String> {
    (any::<bool>(), any::<Index>(), 0u8..3)
        .prop_map(move |(short, cut, case)| {
            let span = if short { 5 } else { uuid.len() - 3 };
            let prefix = &uuid[..4 + cut.index(span)];
            match case {
                0 => prefix.to_string(),
                1 => prefix.to_ascii_uppercase(),
                _ => prefix.to_ascii_lowercase(),
            }
        })
        .boxed()
}

/// GPU `i` as an ordinal, in one of the spellings CUDA reads (`strtoul`).
fn ordinal_token(i: u32) -> BoxedStrategy<String> {
    (0u8..6)
        .prop_map(move |style| match style {
            0 => format!("+{i}"),
            1 => format!("{i}gpu"),
            2 => format!(" {i} "),
            _ => i.to_string(),
        })
        .boxed()
}

fn join(tokens: Vec<BoxedStrategy<String>>) -> BoxedStrategy<String> {
    (tokens, any::<bool>())
        .prop_map(|(tokens, spaced)| tokens.join(if spaced { ", " } else { "," }))
        .boxed()
}

/// Tokens for distinct `items`, in random order (each item is listed once).
fn distinct_list<T: Clone + std::fmt::Debug + 'static>(
    items: Vec<T>,
    token: fn(T) -> BoxedStrategy<String>,
) -> BoxedStrategy<String> {
    let n = items.len();
    prop::sample::subsequence(items, 1..=n)
        .prop_shuffle()
        .prop_flat_map(move |picked| join(picked.into_iter().map(token).collect()))
        .boxed()
}

/// `None` (unset), or a comma list: of distinct ordinals, GPU UUID prefixes
/// or MIG UUID prefixes, or of anything (repeats, unknown or ambiguous
/// tokens, junk, mixed forms).
fn cvd(snapshot: &Snapshot) -> BoxedStrategy<Option<String>> {
    let n = snapshot.gpus.len() as u32;
    let gpu_uuids: Vec<String> = snapshot.gpus.iter().map(|g| g.uuid.clone()).collect();
    let mig_uuids: Vec<String> = snapshot
        .gpus
        .iter()
        .flat_map(|g| g.mig_devices.iter().map(|m| m.uuid.clone()))
        .collect();
    let any_uuid = |uuids: &Vec<String>, fallback: &str| -> BoxedStrategy<String> {
        if uuids.is_empty() {
            Just(fallback.to_string()).boxed()
        } else {
            prop::sample::select(uuids.clone())
                .prop_flat_map(uuid_token)
                .boxed()
        }
    };
    let any_token = prop_oneof![
        // n is an index this machine lacks.
        4 => (0..=n).prop_flat_map(ordinal_token),
        3 => any_uuid(&gpu_uuids, "GPU-zzzz"),
        2 => any_uuid(&mig_uuids, "MIG-zzzz"),
        1 => prop::sample::select(vec!["", "-1", "foo", "GPU-zzzz"]).prop_map(String::from),
    ];
    let anything = prop::collection::vec(any_token, 1..5)
        .prop_flat_map(|tokens| join(tokens.into_iter().map(|t| Just(t).boxed()).collect()));
    let mut arms: Vec<(u32, BoxedStrategy<Option<String>>)> = vec![
        (4, Just(None).boxed()),
        (2, anything.prop_map(Some).boxed()),
    ];
    if n > 0 {
        arms.push((
            2,
            distinct_list((0..n).collect(), ordinal_token)
                .prop_map(Some)
                .boxed(),
        ));
        arms.push((
            2,
            distinct_list(gpu_uuids, uuid_token).prop_map(Some).boxed(),
        ));
    }
    if !mig_uuids.is_empty() {
        arms.push((
            1,
            distinct_list(mig_uuids, uuid_token).prop_map(Some).boxed(),
        ));
    }
    prop::strategy::Union::new_weighted(arms).boxed()
}

fn snapshot_and_cvd() -> impl Strategy<Value = (Snapshot, Option<String>)> {
    snapshot().prop_flat_map(|s| {
        let cvd = cvd(&s);
        (Just(s), cvd)
    })
}

fn spec() -> impl Strategy<Value = DeviceSpec> {
    prop_oneof![
        4 => (0u32..11).prop_map(DeviceSpec::Index),
        1 => (0u32..10, 0u32..3).prop_map(|(g, m)| DeviceSpec::Mig(g, m)),
        1 => prop::sample::select(vec!["GPU-a", "gpu-AB", "GPU-ba1", "MIG-b", "MIG-aa0"])
            .prop_map(|u| DeviceSpec::Uuid(u.to_string())),
    ]
}

fn specs() -> impl Strategy<Value = Vec<DeviceSpec>> {
    prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec(spec(), 1..3),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![
            8 => prop_oneof![4 => Just(1usize), 2 => 2usize..4, 1 => 4usize..5]
                .prop_map(|n| Count::exactly(NonZeroUsize::new(n).unwrap())),
            1 => Just(Count::all()),
            1 => (1usize..3, prop::option::of(0usize..3)).prop_map(|(min, extra)| {
                let min = NonZeroUsize::new(min).unwrap();
                Count::range(min, extra.map(|e| min.saturating_add(e))).unwrap()
            }),
        ],
        maybe(0.6, (0u64..=40).prop_map(|g| g * GIB)),
        maybe(0.25, 0u8..=100),
        maybe(0.25, 0u8..=100),
        maybe(0.25, 0usize..4),
        maybe(0.25, 0u32..=700_000),
        maybe(0.2, prop::sample::select(NAME_PATTERNS.to_vec())),
        specs(),
        specs(),
        maybe(
            0.2,
            prop_oneof![
                (0u8..=100).prop_map(MemoryAmount::Percent),
                (0u64..=80).prop_map(|g| MemoryAmount::Bytes(g * GIB)),
            ],
        ),
    )
        .prop_map(
            |(count, mem, util, mem_util, procs, power, name, devices, exclude, used)| {
                let mut r = Request::new();
                r.count = count;
                r.min_free_memory = mem;
                r.max_utilization = util;
                r.max_memory_utilization = mem_util;
                r.max_processes = procs;
                r.max_power = power;
                r.name = name.map(String::from);
                r.devices = devices;
                r.exclude = exclude;
                r.max_memory_used = used;
                r
            },
        )
}

// ------------------------------------------------------------------- oracles

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// A `CUDA_VISIBLE_DEVICES` token that is an ordinal rather than a UUID.
fn is_ordinal(token: &str) -> bool {
    !starts_with_ci(token, "GPU-") && !starts_with_ci(token, "MIG-")
}

fn is_visible(visible: &Visible, d: &Device<'_>) -> bool {
    visible.contains(d.uuid(), d.is_mig().then_some(d.gpu.uuid.as_str()))
}

/// The request with `kind`'s defaults filled in.
fn defaulted(kind: StrategyKind, request: &Request) -> Request {
    let mut r = request.clone();
    kind.build().apply_defaults(&mut r);
    r
}

/// Passes every filter of `request` (visibility aside).
fn passes(request: &Request, d: &Device<'_>) -> bool {
    request.evaluate(d).is_empty() && !(d.is_mig() && request.count.may_take_several())
}

fn qualifies(request: &Request, visible: &Visible, d: &Device<'_>) -> bool {
    is_visible(visible, d) && passes(request, d)
}

/// Some values in ascending order, every `None` after them.
fn ascending_none_last<T: Ord>(values: &[Option<T>]) -> bool {
    values.windows(2).all(|w| match (&w[0], &w[1]) {
        (Some(a), Some(b)) => a <= b,
        (None, Some(_)) => false,
        _ => true,
    })
}

fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut sorted = order.to_vec();
    sorted.sort_unstable();
    sorted == (0..n).collect::<Vec<_>>()
}

/// Checks `ranked` (a ranking of `candidates`) against `kind`'s definition.
fn check_ranking(
    kind: StrategyKind,
    candidates: &[Device<'_>],
    order: &[usize],
) -> Result<(), TestCaseError> {
    prop_assert!(
        is_permutation(order, candidates.len()),
        "{}: {order:?} is not a permutation of 0..{}",
        kind.name(),
        candidates.len()
    );
    let ranked: Vec<&Device<'_>> = order.iter().map(|&i| &candidates[i]).collect();
    let free: Vec<Option<u64>> = ranked.iter().map(|d| d.memory_free()).collect();
    match kind {
        StrategyKind::BestFit | StrategyKind::WorstFit => {
            if kind == StrategyKind::BestFit {
                prop_assert!(ascending_none_last(&free), "best-fit order {free:?}");
            } else {
                let rev: Vec<_> = free.iter().map(|f| f.map(Reverse)).collect();
                prop_assert!(ascending_none_last(&rev), "worst-fit order {free:?}");
            }
            // Ties go to the lower index (candidates come in index order).
            for (w, f) in order.windows(2).zip(free.windows(2)) {
                if f[0] == f[1] {
                    prop_assert!(w[0] < w[1], "{}: tie not in index order", kind.name());
                }
            }
        }
        StrategyKind::LeastUsed => {
            let util: Vec<Option<u8>> = ranked.iter().map(|d| d.utilization_gpu()).collect();
            prop_assert!(ascending_none_last(&util), "least-used order {util:?}");
            for (u, f) in util.windows(2).zip(free.windows(2)) {
                if u[0] == u[1] {
                    prop_assert!(
                        ascending_none_last(&[f[0].map(Reverse), f[1].map(Reverse)]),
                        "least-used: at utilization {:?}, {:?} before {:?}",
                        u[0],
                        f[0],
                        f[1]
                    );
                }
            }
        }
        StrategyKind::IdleRandom | StrategyKind::Random => {}
    }
    Ok(())
}

/// The checks common to `Ok` and `NoMatch`: one verdict per device, reasons
/// exactly for the devices that do not qualify; a hidden device carries that
/// one reason, a visible one every reason the request gives.
fn check_verdicts(
    snapshot: &Snapshot,
    request: &Request,
    visible: &Visible,
    verdicts: &[Verdict],
) -> Result<(), TestCaseError> {
    let devices = Device::all(&snapshot.gpus);
    let empty_mig: Vec<&Gpu> = snapshot
        .gpus
        .iter()
        .filter(|g| g.mig_mode == Some(true) && g.mig_devices.is_empty())
        .collect();
    prop_assert_eq!(verdicts.len(), devices.len() + empty_mig.len());
    let uuids: HashSet<&str> = verdicts.iter().map(|v| v.uuid.as_str()).collect();
    prop_assert_eq!(uuids.len(), verdicts.len(), "one verdict per device");
    for w in verdicts.windows(2) {
        prop_assert!(
            label_order(&w[0].device) <= label_order(&w[1].device),
            "verdicts out of order: {} before {}",
            w[0].device,
            w[1].device
        );
    }
    for d in &devices {
        let v = verdicts.iter().find(|v| v.uuid == d.uuid()).unwrap();
        prop_assert_eq!(&v.device, &d.label().to_string());
        let ok = qualifies(request, visible, d);
        prop_assert_eq!(
            v.reasons.is_empty(),
            ok,
            "device {}: reasons {:?}",
            &v.device,
            &v.reasons
        );
        if is_visible(visible, d) {
            prop_assert!(!v.reasons.contains(&Reason::HiddenByCudaVisibleDevices));
            for r in request.evaluate(d) {
                prop_assert!(
                    v.reasons.contains(&r),
                    "device {}: {r} missing from {:?}",
                    &v.device,
                    &v.reasons
                );
            }
        } else {
            // A hidden device gets that one reason, whatever its state.
            prop_assert_eq!(&v.reasons, &vec![Reason::HiddenByCudaVisibleDevices]);
        }
        if v.selected {
            prop_assert!(ok, "device {} selected but does not qualify", &v.device);
        }
    }
    for g in empty_mig {
        let v = verdicts.iter().find(|v| v.uuid == g.uuid).unwrap();
        prop_assert!(!v.selected);
        prop_assert_eq!(&v.reasons, &vec![Reason::MigWithoutInstances]);
    }
    Ok(())
}

fn check_selection(
    kind: StrategyKind,
    snapshot: &Snapshot,
    request: &Request,
    visible: &Visible,
    write: WriteOptions,
    sel: &Selection,
    count: usize,
) -> Result<(), TestCaseError> {
    let devices = Device::all(&snapshot.gpus);
    prop_assert_eq!(sel.devices.len(), count);
    prop_assert_eq!(&sel.strategy, kind.name());
    let uuids: HashSet<String> = sel
        .devices
        .iter()
        .map(|s| s.uuid.to_ascii_lowercase())
        .collect();
    prop_assert_eq!(
        uuids.len(),
        count,
        "duplicate devices in {:?}",
        &sel.devices
    );

    let mut chosen = Vec::new();
    for s in &sel.devices {
        let d = devices.iter().find(|d| d.uuid() == s.uuid);
        prop_assert!(d.is_some(), "selected {} is no device", &s.uuid);
        let d = d.unwrap();
        prop_assert!(
            qualifies(request, visible, d),
            "selected {} does not qualify: {:?}",
            d.label(),
            request.evaluate(d)
        );
        prop_assert_eq!(s.index, d.gpu.index);
        prop_assert_eq!(s.mig_index, d.mig.map(|m| m.index));
        let expected_token = if write.uuids || d.is_mig() {
            d.uuid().to_string()
        } else if let Some(entries) = &visible.entries {
            let entry = entries
                .iter()
                .find(|e| e.uuid.eq_ignore_ascii_case(d.uuid()));
            prop_assert!(entry.is_some(), "{} visible without an entry", d.label());
            entry.unwrap().token.clone()
        } else {
            d.gpu.index.to_string()
        };
        prop_assert_eq!(&s.token, &expected_token);
        if !write.uuids
            && !d.is_mig()
            && let Some(entries) = &visible.entries
        {
            prop_assert!(entries.iter().any(|e| e.token == s.token));
        }
        chosen.push(*d);
    }

    // Order: CUDA_VISIBLE_DEVICES order when set, index order otherwise.
    let key = |d: &Device<'_>| {
        let pos = visible.entries.as_ref().and_then(|entries| {
            entries.iter().position(|e| {
                e.uuid.eq_ignore_ascii_case(d.uuid())
                    || (d.is_mig() && e.uuid.eq_ignore_ascii_case(&d.gpu.uuid))
            })
        });
        (pos, d.label())
    };
    for w in chosen.windows(2) {
        prop_assert!(key(&w[0]) < key(&w[1]), "selection out of order");
    }

    let tokens: Vec<&str> = sel.devices.iter().map(|s| s.token.as_str()).collect();
    prop_assert_eq!(&sel.cuda_visible_devices, &tokens.join(","));
    let ordinals = tokens.iter().any(|t| is_ordinal(t));
    prop_assert_eq!(
        sel.cuda_device_order.as_deref(),
        ordinals.then_some("PCI_BUS_ID"),
        "tokens {:?}",
        tokens
    );

    let selected: HashSet<&str> = sel
        .verdicts
        .iter()
        .filter(|v| v.selected)
        .map(|v| v.uuid.as_str())
        .collect();
    let expected: HashSet<&str> = sel.devices.iter().map(|s| s.uuid.as_str()).collect();
    prop_assert_eq!(selected, expected);

    // What was chosen is the best of the candidates by the strategy's order.
    let candidates: Vec<Device<'_>> = devices
        .iter()
        .copied()
        .filter(|d| qualifies(request, visible, d))
        .collect();
    let chosen_uuids: HashSet<&str> = chosen.iter().map(|d| d.uuid()).collect();
    let sort_key = |d: &Device<'_>| {
        (
            d.utilization_gpu().is_none(),
            d.utilization_gpu(),
            d.memory_free().is_none(),
            d.memory_free().map(Reverse),
        )
    };
    match kind {
        StrategyKind::BestFit | StrategyKind::WorstFit => {
            let mut best = candidates.clone();
            best.sort_by_key(|d| {
                let free = d.memory_free();
                let free = if kind == StrategyKind::BestFit {
                    free.map(|f| f as i128)
                } else {
                    free.map(|f| -(f as i128))
                };
                (free.is_none(), free)
            });
            let expected: HashSet<&str> = best[..count].iter().map(|d| d.uuid()).collect();
            prop_assert_eq!(&chosen_uuids, &expected, "{} chose badly", kind.name());
        }
        StrategyKind::LeastUsed => {
            for c in candidates
                .iter()
                .filter(|c| !chosen_uuids.contains(c.uuid()))
            {
                for s in &chosen {
                    prop_assert!(
                        sort_key(s) <= sort_key(c),
                        "least-used chose {} over {}",
                        s.label(),
                        c.label()
                    );
                }
            }
        }
        StrategyKind::IdleRandom | StrategyKind::Random => {}
    }
    Ok(())
}

/// Runs `select` with `kind` and checks every property of its result.
fn check_select(
    kind: StrategyKind,
    snapshot: &Snapshot,
    request: &Request,
    visible: &Visible,
    write: WriteOptions,
    seed: u64,
) -> Result<(), TestCaseError> {
    let strategy = kind.build();
    let full = defaulted(kind, request);
    let count = request.count.min().get();
    let most = request.count.max().map_or(usize::MAX, NonZeroUsize::get);
    let devices = Device::all(&snapshot.gpus);
    let result = select(
        snapshot,
        request,
        &*strategy,
        visible,
        write,
        &mut SmallRng::seed_from_u64(seed),
    );

    if kind == StrategyKind::BestFit || kind == StrategyKind::WorstFit {
        let again = select(
            snapshot,
            request,
            &*strategy,
            visible,
            write,
            &mut SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
        );
        prop_assert_eq!(
            format!("{result:?}"),
            format!("{again:?}"),
            "{} depends on the seed",
            kind.name()
        );
    }

    let refuses = kind == StrategyKind::BestFit && full.min_free_memory.is_none();
    prop_assert_eq!(
        matches!(result, Err(SelectError::Strategy(_))),
        refuses,
        "{}: {:?}",
        kind.name(),
        &result
    );
    if refuses {
        return Ok(());
    }

    let unknown_spec = full.devices.iter().find(|s| {
        !devices.iter().any(|d| s.matches(d))
            && !snapshot.gpus.iter().any(|g| s.matches(&Device::whole(g)))
    });
    if let Err(SelectError::UnknownDevice { spec, .. }) = &result {
        prop_assert!(
            unknown_spec.is_some(),
            "UnknownDevice {spec} matches a device"
        );
        prop_assert_eq!(spec, &unknown_spec.unwrap().to_string());
        return Ok(());
    }
    prop_assert!(
        unknown_spec.is_none(),
        "--devices {} names nothing, yet {:?}",
        unknown_spec.unwrap(),
        &result
    );

    let qualifying = devices
        .iter()
        .filter(|d| qualifies(&full, visible, d))
        .count();
    let n_visible = devices.iter().filter(|d| is_visible(visible, d)).count();
    match &result {
        Ok(sel) => {
            prop_assert!(qualifying >= count);
            check_verdicts(snapshot, &full, visible, &sel.verdicts)?;
            // As many as qualify, within the count.
            let taken = qualifying.min(most);
            check_selection(kind, snapshot, &full, visible, write, sel, taken)?;
        }
        Err(SelectError::NoMatch {
            requested,
            eligible,
            visible: visible_count,
            cuda_visible_devices,
            cvd_problem,
            verdicts,
            ..
        }) => {
            prop_assert_eq!(*requested, count);
            prop_assert!(eligible < requested);
            prop_assert_eq!(*eligible, qualifying, "eligible");
            prop_assert_eq!(*visible_count, n_visible, "visible");
            prop_assert_eq!(cuda_visible_devices, &visible.value);
            prop_assert_eq!(cvd_problem.as_ref(), visible.warning());
            prop_assert!(verdicts.iter().all(|v| !v.selected));
            check_verdicts(snapshot, &full, visible, verdicts)?;
        }
        Err(e) => prop_assert!(false, "unexpected error {e:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Properties 1-3 and 5: every strategy, both write modes.
    #[test]
    fn select_keeps_its_contract(
        (snapshot, cvd) in snapshot_and_cvd(),
        request in request(),
        seed in any::<u64>(),
    ) {
        prop_assert!(snapshot.validate().is_ok());
        let visible = Visible::parse(cvd.as_deref(), &snapshot.gpus);
        for kind in StrategyKind::iter() {
            for uuids in [false, true] {
                check_select(kind, &snapshot, &request, &visible, WriteOptions { uuids }, seed)?;
            }
        }
    }

    /// Property 4: each strategy's ranking follows its definition, on the
    /// qualifying devices and, for good measure, on every device.
    #[test]
    fn rankings_follow_their_definitions(
        (snapshot, cvd) in snapshot_and_cvd(),
        request in request(),
        seed in any::<u64>(),
    ) {
        let visible = Visible::parse(cvd.as_deref(), &snapshot.gpus);
        let devices = Device::all(&snapshot.gpus);
        for kind in StrategyKind::iter() {
            let strategy = kind.build();
            let full = defaulted(kind, &request);
            let qualifying: Vec<Device<'_>> = devices
                .iter()
                .copied()
                .filter(|d| qualifies(&full, &visible, d))
                .collect();
            let passing: Vec<Device<'_>> =
                devices.iter().copied().filter(|d| passes(&full, d)).collect();
            for candidates in [&qualifying, &passing, &devices] {
                let order = strategy.rank(candidates, &full, &mut SmallRng::seed_from_u64(seed));
                check_ranking(kind, candidates, &order)?;
            }
        }
    }

    /// `gpusel list`'s free mark (and the master page's idle count) is the
    /// default strategy's rule: a device is marked free exactly when plain
    /// `gpusel -- CMD` would take it, and unknown values count for neither.
    #[test]
    fn the_free_mark_is_what_the_default_strategy_takes(
        (snapshot, _) in snapshot_and_cvd(),
        tolerance in maybe(0.5, prop_oneof![
            size().prop_map(MemoryAmount::Bytes),
            (0u8..=100).prop_map(MemoryAmount::Percent),
        ]),
    ) {
        let rules = IdleRules::with_unaccounted_memory(tolerance);
        let mut request = defaulted(StrategyKind::IdleRandom, &Request::default());
        request.idle = rules;
        for d in Device::all(&snapshot.gpus) {
            let occupancy = match d.mig {
                Some(mig) => d.gpu.mig_occupancy(mig, &rules),
                None => d.gpu.occupancy_with(&rules),
            };
            prop_assert_eq!(
                occupancy == Occupancy::Free,
                passes(&request, &d),
                "device {}: {:?}, reasons {:?}",
                d.label(),
                occupancy,
                request.evaluate(&d)
            );
        }
    }
}

// ---------------------------------------------------------------- unit tests

/// `n` identical idle GPUs.
fn idle_gpus(n: u32) -> Snapshot {
    let mut snapshot = Snapshot::new("node1", "test");
    for i in 0..n {
        let mut g = Gpu::new(
            i,
            format!("GPU-{i}0000000-0000-0000-0000-000000000000"),
            "T",
        );
        g.memory_total = Some(80 * GIB);
        g.memory_free = Some(40 * GIB);
        g.utilization_gpu = Some(0);
        g.utilization_memory = Some(0);
        g.power_draw = Some(60_000);
        g.processes = Some(Vec::new());
        snapshot.gpus.push(g);
    }
    snapshot
}

#[test]
fn least_used_breaks_ties_at_random() {
    let snapshot = idle_gpus(4);
    let devices = Device::all(&snapshot.gpus);
    let strategy = StrategyKind::LeastUsed.build();
    let request = Request::new();
    let mut first = HashSet::new();
    for seed in 0..200 {
        let order = strategy.rank(&devices, &request, &mut SmallRng::seed_from_u64(seed));
        assert!(is_permutation(&order, devices.len()));
        first.insert(order[0]);
    }
    assert_eq!(first.len(), 4, "first places over 200 seeds: {first:?}");
}

#[test]
fn random_strategies_pick_every_idle_gpu() {
    let snapshot = idle_gpus(4);
    let visible = Visible::parse(None, &snapshot.gpus);
    for kind in [StrategyKind::IdleRandom, StrategyKind::Random] {
        let strategy = kind.build();
        let mut picked = HashSet::new();
        for seed in 0..200 {
            let sel = select(
                &snapshot,
                &Request::new(),
                &*strategy,
                &visible,
                WriteOptions::default(),
                &mut SmallRng::seed_from_u64(seed),
            )
            .unwrap();
            picked.insert(sel.devices[0].index);
        }
        assert_eq!(picked.len(), 4, "{}: picked {picked:?}", kind.name());
    }
}

#[test]
fn idle_random_rejects_busy_gpus_with_reasons() {
    let mut snapshot = idle_gpus(2);
    snapshot.gpus[0].processes = Some(vec![GpuProcess::new(4242)]);
    snapshot.gpus[1].utilization_gpu = Some(5);
    let visible = Visible::parse(None, &snapshot.gpus);
    let err = select(
        &snapshot,
        &Request::new(),
        &*StrategyKind::IdleRandom.build(),
        &visible,
        WriteOptions::default(),
        &mut SmallRng::seed_from_u64(7),
    )
    .unwrap_err();
    let SelectError::NoMatch {
        eligible, verdicts, ..
    } = err
    else {
        panic!("expected NoMatch, got {err:?}");
    };
    assert_eq!(eligible, 0);
    let text = |i: usize| -> Vec<String> {
        verdicts[i]
            .reasons
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(text(0), ["1 process > 0 allowed"]);
    assert_eq!(text(1), ["utilization 5% > 0% allowed"]);
}

/// A provider without memory utilization (a plugin, most non-NVML sources):
/// the default rule takes a GPU whose 0% utilization and empty process list
/// prove it idle, and `list` marks it free; a user's own maximum does not.
#[test]
fn unreported_memory_utilization_does_not_lock_out_an_idle_gpu() {
    let mut snapshot = idle_gpus(2);
    for g in &mut snapshot.gpus {
        g.utilization_memory = None;
    }
    snapshot.gpus[1].utilization_gpu = None;
    assert_eq!(snapshot.gpus[0].occupancy(), Occupancy::Free);
    assert_eq!(snapshot.gpus[1].occupancy(), Occupancy::Unknown);
    let visible = Visible::parse(None, &snapshot.gpus);
    let idle = StrategyKind::IdleRandom.build();
    for seed in 0..8 {
        let selection = select(
            &snapshot,
            &Request::new(),
            &*idle,
            &visible,
            WriteOptions::default(),
            &mut SmallRng::seed_from_u64(seed),
        )
        .unwrap();
        assert_eq!(selection.cuda_visible_devices, "0", "seed {seed}");
    }
    let err = select(
        &snapshot,
        &Request::new().max_memory_utilization(50),
        &*idle,
        &visible,
        WriteOptions::default(),
        &mut SmallRng::seed_from_u64(1),
    )
    .unwrap_err();
    let SelectError::NoMatch { verdicts, .. } = err else {
        panic!("expected NoMatch, got {err:?}");
    };
    assert_eq!(
        verdicts[0].reasons,
        [Reason::Unknown {
            what: "memory utilization".into()
        }]
    );
}

#[test]
fn best_fit_without_mem_asks_for_it() {
    let snapshot = idle_gpus(2);
    let visible = Visible::parse(None, &snapshot.gpus);
    let err = select(
        &snapshot,
        &Request::new(),
        &*StrategyKind::BestFit.build(),
        &visible,
        WriteOptions::default(),
        &mut SmallRng::seed_from_u64(1),
    )
    .unwrap_err();
    let SelectError::Strategy(refusal) = &err else {
        panic!("expected the strategy's refusal, got {err:?}");
    };
    // What it lacks, as data; the CLI names its flag (--mem).
    assert_eq!(refusal.missing, Some("min_free_memory"));
    assert!(err.to_string().contains("needs the job's memory"), "{err}");
    assert!(!err.to_string().contains("--"), "{err}");
}

#[test]
fn idle_random_defaults_fill_only_unset_filters() {
    let strategy = StrategyKind::IdleRandom.build();
    let mut request = Request::new();
    strategy.apply_defaults(&mut request);
    assert_eq!(request.max_utilization, Some(0));
    assert_eq!(request.max_memory_utilization, Some(0));
    assert!(request.idle_memory_utilization_may_be_unknown);
    assert_eq!(request.max_processes, Some(0));
    let mut request = Request::new()
        .max_utilization(30)
        .max_memory_utilization(20)
        .max_processes(2);
    strategy.apply_defaults(&mut request);
    assert_eq!(request.max_utilization, Some(30));
    assert_eq!(request.max_memory_utilization, Some(20));
    assert!(!request.idle_memory_utilization_may_be_unknown);
    assert_eq!(request.max_processes, Some(2));
    for kind in StrategyKind::iter().filter(|k| *k != StrategyKind::IdleRandom) {
        let mut request = Request::new();
        kind.build().apply_defaults(&mut request);
        assert!(
            request.max_utilization.is_none()
                && request.max_memory_utilization.is_none()
                && request.max_processes.is_none()
                && request.min_free_memory.is_none(),
            "{} fills a filter",
            kind.name()
        );
    }
}
