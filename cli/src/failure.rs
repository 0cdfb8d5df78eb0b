//! Every way gpusel itself can fail, and its exit code.

use std::fmt;

use gpusel_core::SelectError;

/// Exit code: bad flag or value.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: no GPU satisfies the request.
pub const EXIT_NO_GPU: i32 = 3;
/// Exit code: the provider failed.
pub const EXIT_PROVIDER: i32 = 4;
/// Exit code: the lock directory cannot be used.
pub const EXIT_LEASE: i32 = 5;
/// Exit code with `-- CMD`: gpusel failed before running CMD.
pub const EXIT_RUN_FAILED: i32 = 125;
/// Exit code with `-- CMD`: CMD exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit code with `-- CMD`: CMD not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// What went wrong, with the lines to print on stderr.
#[derive(Debug)]
pub enum Failure {
    /// The user's input is wrong.
    Usage(String),
    /// Nothing fits; `details` are extra lines (per-GPU reasons, hints).
    NoGpu {
        /// One-line summary.
        message: String,
        /// Indented detail lines.
        details: Vec<String>,
    },
    /// The provider could not deliver a snapshot.
    Provider(String),
    /// The lock directory or a lease cannot be used.
    Lease(String),
    /// exec of the command failed.
    Exec {
        /// 126 or 127.
        code: i32,
        /// What failed.
        message: String,
    },
    /// Writing output failed (other than a closed pipe).
    Output(std::io::Error),
}

impl Failure {
    /// The exit code; `running` is true in `-- CMD` mode, where gpusel's own
    /// failures must not look like the command's.
    pub fn exit_code(&self, running: bool) -> i32 {
        match self {
            Failure::Exec { code, .. } => *code,
            _ if running => EXIT_RUN_FAILED,
            Failure::Usage(_) => EXIT_USAGE,
            Failure::NoGpu { .. } => EXIT_NO_GPU,
            Failure::Provider(_) => EXIT_PROVIDER,
            Failure::Lease(_) => EXIT_LEASE,
            Failure::Output(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m)
            | Failure::Provider(m)
            | Failure::Lease(m)
            | Failure::Exec { message: m, .. } => f.write_str(m),
            Failure::NoGpu { message, details } => {
                f.write_str(message)?;
                for line in details {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            Failure::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl From<gpusel_core::ProviderError> for Failure {
    fn from(e: gpusel_core::ProviderError) -> Self {
        match e {
            gpusel_core::ProviderError::UnknownProvider { .. } => Failure::Usage(e.to_string()),
            other => Failure::Provider(other.to_string()),
        }
    }
}

/// Every selection failure but [`SelectError::NoMatch`], whose per-device
/// details and hints `choose` adds (it falls back here to its headline).
impl From<SelectError> for Failure {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::Strategy(e) => Failure::Usage(e.to_string()),
            SelectError::Lease(e) => Failure::Lease(e.to_string()),
            other => Failure::NoGpu {
                message: other.to_string(),
                details: Vec::new(),
            },
        }
    }
}
