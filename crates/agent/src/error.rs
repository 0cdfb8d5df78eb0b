//! Why the agent cannot start.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// The token file cannot be read.
    #[error("cannot read the token file {}: {source}; check the path given to --token-file", path.display())]
    TokenRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error("the token file {} {problem}; write one line of at least 16 printable characters, e.g. `openssl rand -hex 32 > {}`", path.display(), path.display())]
    TokenInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
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
