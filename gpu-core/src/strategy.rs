//! How to order the devices that passed every filter.

use crate::device::Device;
use crate::request::Request;

/// A request that a strategy cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strategy '{strategy}': {message}")]
#[non_exhaustive]
pub struct StrategyError {
    /// The strategy's name.
    pub strategy: String,
    /// What is missing.
    pub message: String,
    /// The [`Request`] filter the strategy needs and the request lacks, by
    /// field name (`min_free_memory`), for a caller to name its own way of
    /// setting it.
    pub missing: Option<&'static str>,
}

impl StrategyError {
    /// `strategy` cannot rank for the request, because of `message`.
    pub fn new(strategy: impl Into<String>, message: impl Into<String>) -> Self {
        StrategyError {
            strategy: strategy.into(),
            message: message.into(),
            missing: None,
        }
    }

    /// `strategy` needs the request's `field` (a [`Request`] field name,
    /// `min_free_memory`), which is unset; `message` says why.
    pub fn missing(
        strategy: impl Into<String>,
        field: &'static str,
        message: impl Into<String>,
    ) -> Self {
        StrategyError {
            missing: Some(field),
            ..StrategyError::new(strategy, message)
        }
    }
}

/// Orders candidate devices. Implementations live in the `strategies` crate or
/// in third-party code; a strategy knows nothing of providers.
pub trait SelectStrategy: Send + Sync {
    /// The name used on the command line (`best-fit`).
    fn name(&self) -> &str;

    /// Fills filters the user left unset with this strategy's defaults (the
    /// idle strategy asks for zero utilization and no processes). Filters the
    /// user set are never overridden.
    fn apply_defaults(&self, request: &mut Request) {
        let _ = request;
    }

    /// Refuses a request this strategy cannot rank for, with what to add.
    fn validate(&self, request: &Request) -> Result<(), StrategyError> {
        let _ = request;
        Ok(())
    }

    /// Returns positions into `candidates`, best first. Every candidate passed
    /// the request's filters. The pipeline ignores out-of-range and repeated
    /// positions, and takes the first `count`.
    fn rank(
        &self,
        candidates: &[Device<'_>],
        request: &Request,
        rng: &mut dyn rand::Rng,
    ) -> Vec<usize>;
}

/// A boxed strategy (what [`strategies::by_name`](https://docs.rs/gpusel-strategies)
/// returns) is a strategy.
impl<S: SelectStrategy + ?Sized> SelectStrategy for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn apply_defaults(&self, request: &mut Request) {
        (**self).apply_defaults(request)
    }

    fn validate(&self, request: &Request) -> Result<(), StrategyError> {
        (**self).validate(request)
    }

    fn rank(
        &self,
        candidates: &[Device<'_>],
        request: &Request,
        rng: &mut dyn rand::Rng,
    ) -> Vec<usize> {
        (**self).rank(candidates, request, rng)
    }
}
