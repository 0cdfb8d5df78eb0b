//! What the snapshot loop publishes and every request reads.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use gpu_core::{AgentError, AgentSnapshot, AgentStatus, Snapshot};

use crate::metrics;
use crate::options::Token;

/// One round of the snapshot loop, rendered: the bodies are encoded once
/// here, so a request only clones a reference to them.
#[derive(Debug)]
pub struct Published {
    /// The last good snapshot (leases added, command lines hidden unless
    /// exposed); `None` until the provider has succeeded once.
    pub snapshot: Option<Arc<Snapshot>>,
    /// How the snapshots are going.
    pub status: AgentStatus,
    /// The body of `/api/v1/snapshot`: an [`AgentSnapshot`], or an
    /// [`AgentError`] while there is no snapshot.
    pub json: Bytes,
    /// The body of `/metrics` for Prometheus (OpenMetrics).
    pub openmetrics: Bytes,
    /// The body of `/metrics` for everyone else (classic text format).
    pub metrics: Bytes,
}

impl Published {
    /// Renders one round. `duration` is how long its attempt took.
    pub fn render(
        snapshot: Option<Arc<Snapshot>>,
        status: AgentStatus,
        duration: Duration,
        errors_total: u64,
    ) -> Self {
        let json = match &snapshot {
            Some(s) => serde_json::to_vec(&AgentSnapshot {
                snapshot: Snapshot::clone(s),
                agent: status.clone(),
            }),
            None => serde_json::to_vec(&AgentError {
                error: format!(
                    "no GPU snapshot yet: {}",
                    status
                        .last_error
                        .as_deref()
                        .unwrap_or("the first one is being taken")
                ),
            }),
        }
        // Serialising plain data into memory cannot fail.
        .unwrap_or_default();
        let metrics = metrics::render(&metrics::Round {
            snapshot: snapshot.as_deref(),
            up: status.up,
            duration,
            errors_total,
            leases_known: status.lease_error.is_none(),
        });
        let classic = metrics::to_classic(&metrics);
        Published {
            snapshot,
            status,
            json: Bytes::from(json),
            openmetrics: Bytes::from(metrics),
            metrics: Bytes::from(classic),
        }
    }

    /// What is served before the first round.
    pub fn starting(interval: Duration, command_lines: bool) -> Self {
        let status = AgentStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            up: false,
            last_attempt: SystemTime::now(),
            last_error: None,
            lease_error: None,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            command_lines,
        };
        Published::render(None, status, Duration::ZERO, 0)
    }
}

/// The state every handler shares: the latest [`Published`] round and the
/// server's settings.
#[derive(Debug)]
pub struct State {
    current: RwLock<Arc<Published>>,
    token: Option<Token>,
    interval: Duration,
}

impl State {
    /// A state serving `initial` until the first [`publish`](Self::publish).
    pub fn new(initial: Published, token: Option<Token>, interval: Duration) -> Self {
        State {
            current: RwLock::new(Arc::new(initial)),
            token,
            interval,
        }
    }

    /// The latest round. The lock is held only to clone the pointer.
    pub fn current(&self) -> Arc<Published> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the round that requests see.
    pub fn publish(&self, round: Published) {
        let round = Arc::new(round);
        match self.current.write() {
            Ok(mut guard) => *guard = round,
            Err(poisoned) => *poisoned.into_inner() = round,
        }
    }

    /// The token clients must send, when one is set.
    pub fn token(&self) -> Option<&Token> {
        self.token.as_ref()
    }

    /// How often snapshots are taken.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}
