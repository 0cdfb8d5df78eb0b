//! Everything that can go wrong fetching a snapshot from an agent, each with
//! what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use gpusel_core::{ProviderError, SnapshotError};

use crate::{ENV_TIMEOUT, ENV_TOKEN_FILE, NAME};

/// A failure to get a snapshot from a `gpusel serve` agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The agent URL cannot be used.
    #[error(
        "{url:?} is not an agent URL: {reason}; write http://HOST:PORT, e.g. http://gpu-node-1:9477"
    )]
    BadUrl {
        /// What the user wrote.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `https://`: this build speaks plain HTTP only.
    #[error(
        "{url}: https is not supported (gpusel has no TLS built in); reach the agent through an SSH tunnel (ssh -N -L 9477:localhost:9477 HOST, then http://localhost:9477) or a TLS-terminating proxy"
    )]
    Https {
        /// What the user wrote, credentials hidden.
        url: String,
    },
    /// The token file cannot be used.
    #[error("token file {}: {reason}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// Nothing listens on the agent's port.
    #[error(
        "cannot connect to {url}: connection refused; is `gpusel serve` running on {authority}?"
    )]
    Refused {
        /// The agent.
        url: String,
        /// `host:port`.
        authority: String,
    },
    /// The TCP connection was not made within the connect timeout.
    #[error(
        "cannot connect to {url}: no connection within {}; the host may be down, or a firewall drops the port",
        humantime::format_duration(*timeout)
    )]
    ConnectTimeout {
        /// The agent.
        url: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The host name does not resolve, or the network cannot reach it.
    #[error("cannot connect to {url}: {reason}; check the host name and port")]
    Connect {
        /// The agent.
        url: String,
        /// The resolver's or the OS's words.
        reason: String,
    },
    /// Connected, but the whole answer did not arrive in time.
    #[error(
        "{url} did not answer within {}; the agent or its host may be overloaded (raise {ENV_TIMEOUT} if it is only slow)",
        humantime::format_duration(*timeout)
    )]
    Timeout {
        /// The agent.
        url: String,
        /// The limit on the whole request.
        timeout: Duration,
    },
    /// 401 or 403: the agent wants a (different) bearer token.
    #[error("{url} refused the request ({status}): {}", match token {
        Some(path) => format!("the token in {} was not accepted; put the token the agent serves with there", path.display()),
        None => format!("the agent requires a bearer token; name a file holding it in {ENV_TOKEN_FILE} (token_file in an agents file)"),
    })]
    Unauthorized {
        /// The agent.
        url: String,
        /// `401 Unauthorized` or `403 Forbidden`.
        status: String,
        /// The token file whose token was sent, if any.
        token: Option<PathBuf>,
    },
    /// Any other answer than 200.
    #[error("{url} answered {status}{}: is it a gpusel agent (`gpusel serve`), and is the URL's path prefix right?", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Status {
        /// The URL requested.
        url: String,
        /// `404 Not Found`.
        status: String,
        /// The first line of the body, or where a redirect points.
        detail: String,
    },
    /// The answer is larger than any snapshot should be.
    #[error(
        "the answer from {url} is larger than {} and was cut off; a gpusel agent never sends that much, check the URL",
        gpusel_core::format_bytes(*limit as u64)
    )]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit, bytes.
        limit: usize,
    },
    /// The snapshot holds more than one node may (GPUs, processes, name
    /// lengths: see [`crate::limits`]); it is refused before it is built.
    #[error(
        "{url} {what}; its answer is ignored: check that the URL is a gpusel agent's, and what that agent's provider reads"
    )]
    OverLimit {
        /// The URL requested.
        url: String,
        /// What is over which limit: `reports 40000 GPUs, more than the 1024 a node may have`.
        what: String,
    },
    /// The body is not a gpusel snapshot.
    #[error(
        "{url} did not answer with a gpusel snapshot ({message}); is it a gpusel agent (`gpusel serve`)?"
    )]
    NotOurSchema {
        /// The URL requested.
        url: String,
        /// What the JSON parser said.
        message: String,
    },
    /// The body is not nvgpu's `/gpu_status` JSON.
    #[error(
        "{url} did not answer with nvgpu's /gpu_status JSON ({message}); is it an nvgpu agent? For a gpusel agent, drop kind = \"nvgpu\" from its entry in the agents file"
    )]
    NotNvgpu {
        /// The URL requested.
        url: String,
        /// What is wrong with the body.
        message: String,
    },
    /// A snapshot that breaks the schema's rules.
    #[error("snapshot from {url} is invalid: {error}")]
    Invalid {
        /// The URL requested.
        url: String,
        /// The rule it breaks.
        error: SnapshotError,
    },
    /// The connection broke mid-request, or the answer is not HTTP.
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The whole chain of causes.
        reason: String,
    },
}

/// What an error says about the agent, for a master's status column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Our own settings are wrong (URL, token file, timeout): no request made.
    Config,
    /// Nothing answers: refused, unresolvable, unreachable, broken connection.
    Down,
    /// Something answers, but not in time.
    Slow,
    /// It answers, and wants a (different) token.
    Unauthorized,
    /// It answers with something other than a valid snapshot.
    BadAnswer,
}

impl HttpError {
    /// The class of this error: is the agent down, slow, locked, or odd?
    pub fn class(&self) -> ErrorClass {
        match self {
            HttpError::BadUrl { .. } | HttpError::Https { .. } | HttpError::TokenFile { .. } => {
                ErrorClass::Config
            }
            HttpError::Refused { .. }
            | HttpError::Connect { .. }
            | HttpError::ConnectTimeout { .. }
            | HttpError::Transport { .. } => ErrorClass::Down,
            HttpError::Timeout { .. } => ErrorClass::Slow,
            HttpError::Unauthorized { .. } => ErrorClass::Unauthorized,
            HttpError::Status { .. }
            | HttpError::TooLarge { .. }
            | HttpError::OverLimit { .. }
            | HttpError::NotOurSchema { .. }
            | HttpError::NotNvgpu { .. }
            | HttpError::Invalid { .. } => ErrorClass::BadAnswer,
        }
    }
}

impl From<HttpError> for ProviderError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Invalid { url, error } => ProviderError::Invalid {
                source_name: url,
                error,
            },
            e if e.class() == ErrorClass::Config => {
                let provider = match e {
                    HttpError::Https { .. } => "https",
                    _ => NAME,
                };
                ProviderError::unavailable_because(provider, e)
            }
            e => ProviderError::failed_because(NAME, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_keep_the_http_error_as_source() {
        let e: ProviderError = HttpError::Refused {
            url: "http://h:9477/".into(),
            authority: "h:9477".into(),
        }
        .into();
        assert!(matches!(e, ProviderError::Failed { .. }), "{e:?}");
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            matches!(source.downcast_ref(), Some(HttpError::Refused { .. })),
            "{source:?}"
        );
        let e: ProviderError = HttpError::Https {
            url: "https://h/".into(),
        }
        .into();
        assert!(
            matches!(&e, ProviderError::Unavailable { provider, source: Some(_), .. } if provider == "https"),
            "{e:?}"
        );
    }
}
