//! What the snapshot loop publishes and every request reads.

use std::sync::{Arc, Mutex};

use crate::latest::Latest;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use gpusel_core::{AgentError, AgentStatus, Snapshot};

use crate::metrics;
use crate::options::Token;

/// One round of the snapshot loop, rendered: the bodies are encoded once
/// here, so a request only clones a reference to them.
#[derive(Debug)]
pub struct Published {
    /// The last good snapshot (leases added, command lines hidden unless
    /// exposed, every text cleaned by `gpusel_core::sanitize::clean_snapshot`:
    /// the page and the metrics show it as it is); `None` until the provider
    /// has succeeded once.
    pub snapshot: Option<Arc<Snapshot>>,
    /// How the snapshots are going.
    pub status: AgentStatus,
    /// The body of `/api/v1/snapshot`: an [`AgentSnapshot`](gpusel_core::AgentSnapshot), or an
    /// [`AgentError`] while there is no snapshot.
    pub json: Bytes,
    /// The body of `/metrics` for Prometheus (OpenMetrics).
    pub openmetrics: Bytes,
    /// The body of `/metrics` for everyone else (classic text format).
    pub metrics: Bytes,
    /// Failed attempts since the start, as `/metrics` counts them.
    pub errors_total: u64,
}

impl Published {
    /// Renders one round. `duration` is how long its attempt took;
    /// `snapshot` must be cleaned already (see [`snapshot`](Self::snapshot)).
    pub fn render(
        snapshot: Option<Arc<Snapshot>>,
        status: AgentStatus,
        duration: Duration,
        errors_total: u64,
    ) -> Self {
        // gpusel_core::AgentSnapshot, borrowed: the same JSON without a copy.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            snapshot: &'a Snapshot,
            agent: &'a AgentStatus,
        }
        let json = match &snapshot {
            Some(s) => serde_json::to_vec(&Body {
                snapshot: s,
                agent: &status,
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
            errors_total,
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
    current: Latest<Published>,
    /// When the attempt in progress started; `None` between attempts. Its
    /// lock also orders the loop's and the watchdog's publications.
    attempt: Mutex<Option<Instant>>,
    token: Option<Token>,
    interval: Duration,
    idle: gpusel_core::IdleRules,
}

impl State {
    /// A state serving `initial` until the first [`publish`](Self::publish).
    pub fn new(initial: Published, token: Option<Token>, interval: Duration) -> Self {
        State {
            current: Latest::new(initial),
            attempt: Mutex::new(None),
            token,
            interval,
            idle: gpusel_core::IdleRules::default(),
        }
    }

    /// The same, judging idleness by `rules`.
    pub fn with_idle_rules(mut self, rules: gpusel_core::IdleRules) -> Self {
        self.idle = rules;
        self
    }

    /// The idle rules the marks and `is_available` apply.
    pub fn idle_rules(&self) -> &gpusel_core::IdleRules {
        &self.idle
    }

    /// The latest round. The lock is held only to clone the pointer.
    pub fn current(&self) -> Arc<Published> {
        self.current.get()
    }

    /// Replaces the round that requests see.
    pub fn publish(&self, round: Published) {
        self.current.set(round);
    }

    /// Notes that an attempt to read the GPUs starts now.
    pub fn begin_attempt(&self) {
        *lock(&self.attempt) = Some(Instant::now());
    }

    /// Publishes the round of the attempt that just ended.
    pub fn finish_attempt(&self, round: Published) {
        let mut attempt = lock(&self.attempt);
        self.publish(round);
        *attempt = None;
    }

    /// When the attempt in progress has run for `threshold` or longer,
    /// publishes what `stalled` makes of the current round and how long the
    /// attempt has run. A driver call that hangs thus shows as a failure
    /// while it hangs, not as the last good snapshot looking current.
    pub fn check_stalled(
        &self,
        threshold: Duration,
        stalled: impl FnOnce(&Published, Duration) -> Published,
    ) {
        let attempt = lock(&self.attempt);
        if let Some(running) = attempt.map(|started| started.elapsed())
            && running >= threshold
        {
            let round = stalled(&self.current(), running);
            self.publish(round);
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpusel_core::AgentSnapshot;

    #[test]
    fn the_api_body_reads_back_as_an_agent_snapshot_and_as_a_snapshot() {
        // JSON times are whole seconds.
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut snapshot = Snapshot::new("node1", "test");
        snapshot.time = time;
        snapshot
            .gpus
            .push(gpusel_core::Gpu::new(0, "GPU-0", "A100"));
        let mut status = Published::starting(Duration::from_secs(2), false).status;
        status.up = true;
        status.last_attempt = time;
        let round = Published::render(
            Some(Arc::new(snapshot.clone())),
            status.clone(),
            Duration::ZERO,
            0,
        );
        let back: AgentSnapshot = serde_json::from_slice(&round.json).unwrap();
        assert_eq!(
            back,
            AgentSnapshot {
                snapshot: snapshot.clone(),
                agent: status
            }
        );
        let plain: Snapshot = serde_json::from_slice(&round.json).unwrap();
        assert_eq!(plain, snapshot);
    }
}
