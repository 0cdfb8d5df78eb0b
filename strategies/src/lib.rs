//! Selection strategies for gpusel: how to order the devices that passed every
//! filter. Each is a [`SelectStrategy`]; [`StrategyKind`] names them for the
//! command line.

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::cmp::{Ordering, Reverse};

use gpusel_core::rand::Rng;
use gpusel_core::rand::seq::SliceRandom;
use gpusel_core::{Device, Request, SelectStrategy, StrategyError};
use strum::{EnumIter, EnumMessage, EnumString, IntoStaticStr, VariantNames};

/// The built-in strategies, by command-line name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumString,
    IntoStaticStr,
    VariantNames,
    EnumIter,
    EnumMessage,
)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum StrategyKind {
    /// Only idle devices (no processes, 0% utilization), one at random.
    #[strum(
        message = "only idle devices (no processes, 0% GPU and memory utilization), picked at random (default)"
    )]
    IdleRandom,
    /// The device with the least free memory that still fits `--mem`.
    #[strum(
        message = "the device with the least free memory that still fits --mem (packs jobs, keeps big GPUs free)"
    )]
    BestFit,
    /// The device with the most free memory.
    #[strum(message = "the device with the most free memory")]
    WorstFit,
    /// Any device that passes the filters, uniformly at random.
    #[strum(message = "any device that passes the filters, uniformly at random")]
    Random,
    /// Lowest utilization, then most free memory; ties at random.
    #[strum(message = "the lowest utilization, then the most free memory; ties at random")]
    LeastUsed,
}

/// A strategy name that is not one of [`StrategyKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy '{name}'; available: {}", StrategyKind::VARIANTS.join(", "))]
pub struct UnknownStrategy {
    /// What the user wrote.
    pub name: String,
}

impl StrategyKind {
    /// The command-line name (`best-fit`).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// One line for `--help`.
    pub fn description(self) -> &'static str {
        self.get_message().unwrap_or("")
    }

    /// The strategy itself.
    pub fn build(self) -> Box<dyn SelectStrategy> {
        match self {
            StrategyKind::IdleRandom => Box::new(IdleRandom),
            StrategyKind::BestFit => Box::new(BestFit),
            StrategyKind::WorstFit => Box::new(WorstFit),
            StrategyKind::Random => Box::new(RandomPick),
            StrategyKind::LeastUsed => Box::new(LeastUsed),
        }
    }
}

/// Builds the strategy named `name`.
pub fn by_name(name: &str) -> Result<Box<dyn SelectStrategy>, UnknownStrategy> {
    name.trim()
        .parse::<StrategyKind>()
        .map(StrategyKind::build)
        .map_err(|_| UnknownStrategy {
            name: name.to_string(),
        })
}

fn shuffled(n: usize, rng: &mut dyn Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
}

/// Orders `Option`s ascending with `None` last: an unknown value never wins.
fn some_first<T: Ord>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// gpuselect's behaviour: only idle devices, picked at random so that
/// concurrent users spread out instead of all taking GPU 0. Idle is 0% GPU
/// utilization, no process, and 0% memory utilization, or none reported on
/// a GPU whose 0% utilization and empty process list already prove it idle
/// (a user's own `max_memory_utilization` still rejects unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdleRandom;

impl SelectStrategy for IdleRandom {
    fn name(&self) -> &str {
        "idle-random"
    }

    /// No GPU or memory utilization, no process. A provider that reports no
    /// memory utilization (plugins, most non-NVML sources) is not locked out:
    /// when the user sets no maximum of their own, an unreported memory
    /// utilization passes on a GPU that reports 0% utilization and an empty
    /// process list ([`Request::idle_memory_utilization_may_be_unknown`]).
    fn apply_defaults(&self, request: &mut Request) {
        request.max_utilization.get_or_insert(0);
        if request.max_memory_utilization.is_none() {
            request.max_memory_utilization = Some(0);
            request.idle_memory_utilization_may_be_unknown = true;
        }
        request.max_processes.get_or_insert(0);
    }

    fn rank(&self, candidates: &[Device<'_>], _: &Request, rng: &mut dyn Rng) -> Vec<usize> {
        shuffled(candidates.len(), rng)
    }
}

/// The tightest fit for `--mem`: least free memory first, so large free GPUs
/// stay free for large jobs. Ties go to the lower index.
#[derive(Debug, Clone, Copy, Default)]
pub struct BestFit;

impl SelectStrategy for BestFit {
    fn name(&self) -> &str {
        "best-fit"
    }

    fn validate(&self, request: &Request) -> Result<(), StrategyError> {
        match request.min_free_memory {
            Some(_) => Ok(()),
            None => Err(StrategyError::missing(
                self.name(),
                "min_free_memory",
                "best-fit ranks devices by how tightly the job fits, so it needs the job's memory",
            )),
        }
    }

    fn rank(&self, candidates: &[Device<'_>], _: &Request, _: &mut dyn Rng) -> Vec<usize> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order
            .sort_by(|&a, &b| some_first(candidates[a].memory_free(), candidates[b].memory_free()));
        order
    }
}

/// The most free memory first. Ties go to the lower index.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorstFit;

impl SelectStrategy for WorstFit {
    fn name(&self) -> &str {
        "worst-fit"
    }

    fn rank(&self, candidates: &[Device<'_>], _: &Request, _: &mut dyn Rng) -> Vec<usize> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| {
            some_first(
                candidates[a].memory_free().map(Reverse),
                candidates[b].memory_free().map(Reverse),
            )
        });
        order
    }
}

/// Uniform among every device that passes the filters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomPick;

impl SelectStrategy for RandomPick {
    fn name(&self) -> &str {
        "random"
    }

    fn rank(&self, candidates: &[Device<'_>], _: &Request, rng: &mut dyn Rng) -> Vec<usize> {
        shuffled(candidates.len(), rng)
    }
}

/// Lowest GPU utilization, then most free memory. Exact ties are broken at
/// random so that GPU 0 is not always the first victim.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastUsed;

impl SelectStrategy for LeastUsed {
    fn name(&self) -> &str {
        "least-used"
    }

    fn rank(&self, candidates: &[Device<'_>], _: &Request, rng: &mut dyn Rng) -> Vec<usize> {
        // Shuffle first; the stable sort then keeps ties in random order.
        let mut order = shuffled(candidates.len(), rng);
        order.sort_by(|&a, &b| {
            let (a, b) = (&candidates[a], &candidates[b]);
            some_first(a.utilization_gpu(), b.utilization_gpu()).then_with(|| {
                some_first(a.memory_free().map(Reverse), b.memory_free().map(Reverse))
            })
        });
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn names_round_trip_and_unknown_lists_all() {
        for kind in StrategyKind::iter() {
            assert_eq!(by_name(kind.name()).unwrap().name(), kind.name());
            assert!(!kind.description().is_empty());
        }
        assert_eq!(by_name("Best-Fit").unwrap().name(), "best-fit");
        assert_eq!(
            by_name("fastest").err().unwrap().to_string(),
            "unknown strategy 'fastest'; available: idle-random, best-fit, worst-fit, random, least-used"
        );
    }
}
