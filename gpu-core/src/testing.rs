//! A conformance kit for third-party providers and strategies (the `testing`
//! feature): the checks gpusel runs on its own, as functions a crate calls
//! from its tests.
//!
//! ```
//! use gpusel_core::testing;
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("gpus.json");
//! # let mut s = gpusel_core::Snapshot::new("node1", "example");
//! # s.gpus.push(gpusel_core::Gpu::new(0, "GPU-0", "T4"));
//! # std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
//! // In a provider crate's tests:
//! let provider = gpusel_core::FileProvider::new(&path);
//! let snapshot = testing::check_provider(&provider).unwrap();
//! assert_eq!(snapshot.gpus.len(), 1);
//! ```

use std::collections::HashSet;
use std::num::NonZeroUsize;

use crate::block_on::block_on;
use crate::cvd::Visible;
use crate::device::Device;
use crate::model::{SCHEMA_VERSION, Snapshot};
use crate::provider::GpuInfoProvider;
use crate::request::Request;
use crate::select::{SelectError, WriteOptions, select};
use crate::strategy::SelectStrategy;

/// A rule of gpusel's that a provider or strategy breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, Violation> {
    Err(Violation(message.into()))
}

/// Takes a snapshot from `provider` and checks it against the schema's
/// rules: a name, the current schema version, unique indices and UUIDs,
/// used + free not above total, percentages of at most 100, a JSON form
/// that reads back and is written again the same; then runs [`check_strategy`]-style
/// selection checks over it with a strategy that takes devices in order.
/// Returns the snapshot for further checks of the crate's own.
pub fn check_provider(provider: &dyn GpuInfoProvider) -> Result<Snapshot, Violation> {
    if provider.name().trim().is_empty() {
        return fail("the provider's name is empty");
    }
    let snapshot =
        block_on(provider.snapshot()).map_err(|e| Violation(format!("snapshot failed: {e}")))?;
    if snapshot.schema_version != SCHEMA_VERSION {
        return fail(format!(
            "schema_version is {}, not {SCHEMA_VERSION}",
            snapshot.schema_version
        ));
    }
    snapshot
        .validate()
        .map_err(|e| Violation(format!("invalid snapshot: {e}")))?;
    for gpu in &snapshot.gpus {
        let at = format!("GPU {}", gpu.index);
        if let (Some(total), Some(used), Some(free)) =
            (gpu.memory_total, gpu.memory_used, gpu.memory_free)
            && used.checked_add(free).is_none_or(|sum| sum > total)
        {
            return fail(format!(
                "{at}: used {used} + free {free} bytes exceed total {total}"
            ));
        }
        for (what, value) in [
            ("utilization_gpu", gpu.utilization_gpu),
            ("utilization_memory", gpu.utilization_memory),
        ] {
            if value.is_some_and(|v| v > 100) {
                return fail(format!("{at}: {what} is above 100%"));
            }
        }
    }
    let json = serde_json::to_string(&snapshot)
        .map_err(|e| Violation(format!("the snapshot cannot be written as JSON: {e}")))?;
    let back: Snapshot = serde_json::from_str(&json)
        .map_err(|e| Violation(format!("the snapshot's JSON does not read back: {e}")))?;
    // Times are written to the second, so compare what is written.
    let again = serde_json::to_string(&back)
        .map_err(|e| Violation(format!("the snapshot cannot be written as JSON: {e}")))?;
    if again != json {
        return fail("the snapshot's JSON reads back as a different snapshot");
    }
    check_selections(&snapshot, &InOrder)?;
    Ok(snapshot)
}

/// Runs `strategy` over `snapshot` with a range of requests (every count up
/// to one more than there are devices, with and without each device's free
/// memory as the minimum, several seeds) and checks what gpusel promises of
/// every selection: exactly `count` distinct devices, each of which passes
/// every filter (the strategy's defaults included), in a
/// `CUDA_VISIBLE_DEVICES` of `count` tokens; or a failure that says why
/// (fewer qualify than asked, each rejected device with a reason).
pub fn check_strategy(strategy: &dyn SelectStrategy, snapshot: &Snapshot) -> Result<(), Violation> {
    check_selections(snapshot, strategy)
}

fn check_selections(snapshot: &Snapshot, strategy: &dyn SelectStrategy) -> Result<(), Violation> {
    let devices = Device::all(&snapshot.gpus);
    let visible = Visible::parse(None, &snapshot.gpus);
    let mut requests = vec![Request::new()];
    requests.extend(
        devices
            .iter()
            .filter_map(|d| d.memory_free())
            .map(|free| Request::new().min_free_memory(free)),
    );
    let mut counts: Vec<crate::Count> = (1..=devices.len() + 1)
        .filter_map(NonZeroUsize::new)
        .map(crate::Count::exactly)
        .collect();
    counts.push(crate::Count::all());
    counts.extend(crate::Count::range(
        NonZeroUsize::MIN.saturating_add(1),
        None,
    ));
    for count in counts {
        for base in &requests {
            for seed in 0..4 {
                let request = base.clone().count(count);
                let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(seed);
                let result = select(
                    snapshot,
                    &request,
                    strategy,
                    &visible,
                    WriteOptions::default(),
                    &mut rng,
                );
                check_one(snapshot, &request, strategy, result)?;
            }
        }
    }
    Ok(())
}

fn check_one(
    snapshot: &Snapshot,
    request: &Request,
    strategy: &dyn SelectStrategy,
    result: Result<crate::Selection, SelectError>,
) -> Result<(), Violation> {
    let count = request.count;
    let name = strategy.name();
    let mut full = request.clone();
    strategy.apply_defaults(&mut full);
    match result {
        Ok(selection) => {
            let taken = selection.devices.len();
            if taken < count.min().get() || count.max().is_some_and(|m| taken > m.get()) {
                return fail(format!(
                    "{name}: asked for {count}, selected {}",
                    selection.devices.len()
                ));
            }
            let mut seen = HashSet::new();
            for chosen in &selection.devices {
                if !seen.insert(chosen.uuid.clone()) {
                    return fail(format!("{name}: {} selected twice", chosen.uuid));
                }
                let device = Device::all(&snapshot.gpus)
                    .into_iter()
                    .find(|d| d.uuid() == chosen.uuid)
                    .ok_or_else(|| {
                        Violation(format!("{name}: selected unknown {}", chosen.uuid))
                    })?;
                let reasons = full.evaluate(&device);
                if !reasons.is_empty() {
                    return fail(format!(
                        "{name}: selected {} although it is rejected: {reasons:?}",
                        chosen.uuid
                    ));
                }
            }
            let qualifying = selection
                .verdicts
                .iter()
                .filter(|v| v.reasons.is_empty())
                .count();
            if count.max().is_none() && taken != qualifying {
                return fail(format!(
                    "{name}: asked for all ({count}), took {taken} of {qualifying} that qualify"
                ));
            }
            let tokens = selection.cuda_visible_devices.split(',').count();
            if tokens != taken {
                return fail(format!(
                    "{name}: CUDA_VISIBLE_DEVICES {:?} has {tokens} tokens for {taken} devices",
                    selection.cuda_visible_devices
                ));
            }
            Ok(())
        }
        Err(SelectError::NoMatch {
            requested,
            eligible,
            verdicts,
            ..
        }) => {
            if eligible >= requested {
                return fail(format!(
                    "{name}: refused {requested} although {eligible} qualify"
                ));
            }
            let qualifying = verdicts.iter().filter(|v| v.reasons.is_empty()).count();
            if qualifying != eligible {
                return fail(format!(
                    "{name}: says {eligible} qualify, but {qualifying} verdicts have no reason"
                ));
            }
            Ok(())
        }
        Err(SelectError::Strategy(_)) => Ok(()),
        Err(e) => fail(format!("{name}: unexpected failure: {e}")),
    }
}

/// Takes devices in the order given: the neutral strategy the provider
/// checks select with.
struct InOrder;

impl SelectStrategy for InOrder {
    fn name(&self) -> &str {
        "in-order"
    }

    fn rank(&self, c: &[Device<'_>], _: &Request, _: &mut dyn rand::Rng) -> Vec<usize> {
        (0..c.len()).collect()
    }
}
