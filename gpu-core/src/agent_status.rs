//! What an agent (`gpusel serve`) says about its own snapshots, served beside
//! the snapshot in `/api/v1/snapshot` so that a client can tell fresh data
//! from the last good data of a failing driver.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::model::Snapshot;

/// The body of an agent's `GET /api/v1/snapshot`: the snapshot in the shared
/// schema (its fields at the top level, as `gpusel list --json` writes them,
/// so a snapshot reader reads it as is) plus the agent's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// The last good snapshot.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// How the agent's snapshots are going.
    pub agent: AgentStatus,
}

/// How an agent's background snapshots are going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The gpusel version of the agent.
    pub version: String,
    /// True when the last attempt to take a snapshot succeeded; false while
    /// the served snapshot is the last good one of a failing provider.
    pub up: bool,
    /// When the agent last tried to take a snapshot (RFC 3339 in JSON). The
    /// snapshot's own `time` says when the served data was read.
    #[serde(with = "crate::timefmt::rfc3339")]
    pub last_attempt: SystemTime,
    /// Why the last attempt failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why the lease directory could not be read, when it could not (the
    /// GPUs are shown without leases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_error: Option<String>,
    /// How often the agent takes a snapshot, in milliseconds.
    pub interval_ms: u64,
    /// Whether process command lines are served (`--expose-cmdline`);
    /// without it they are left out, and a lease holder's command is cut to
    /// its program name, since arguments can hold secrets.
    pub command_lines: bool,
}

/// The JSON body of an agent's error responses (503 before any good
/// snapshot, 401 without the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    /// What went wrong and what to do.
    pub error: String,
}
