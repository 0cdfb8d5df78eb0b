//! Why the agent cannot start.

use std::net::SocketAddr;

/// A failure to start serving. Once serving, provider failures are data
/// (shown as the last error), not errors.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The listen address cannot be bound.
    #[error(
        "cannot listen on {addr}: {source}; choose another address with --listen (port 0 picks a free one)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The agents file of a master cannot be used.
    #[error(transparent)]
    Agents(#[from] crate::master::AgentsFileError),
    /// The agents file lists `self`, but no provider was given for it.
    #[error(
        "the agents file lists `self`, but no GPU provider was given to read this machine's GPUs"
    )]
    NoSelfProvider,
    /// The background snapshot thread could not be started.
    #[error("cannot start the snapshot thread: {0}")]
    Thread(std::io::Error),
}
