//! Every way gpusel itself can fail, and its exit code.

use std::fmt;

use gpusel_core::{LeaseError, ProviderError, SelectError, StrategyError};

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

impl Failure {
    /// What kind of failure, as `--json` names it in its `error` object.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::NoGpu { .. } => "no_gpu",
            Failure::Provider(_) => "provider",
            Failure::Lease(_) => "lease",
            Failure::Exec { .. } => "exec",
            Failure::Output(_) => "output",
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

// The libraries say what went wrong; the flags that get past it are the
// CLI's to name, and are added here.

impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::UnknownProvider { .. } => Failure::Usage(e.to_string()),
            ProviderError::NoProvider { ref tried } => Failure::Provider(format!(
                "no GPU provider works on this machine; give one with --provider, e.g. --provider file:PATH to read a snapshot{}",
                tried.iter().map(|t| format!("\n  {t}")).collect::<String>()
            )),
            other => Failure::Provider(with_hint(other.to_string(), provider_hint(&other))),
        }
    }
}

impl From<LeaseError> for Failure {
    fn from(e: LeaseError) -> Self {
        Failure::Lease(lease_message(&e))
    }
}

/// A lease error with the flags that get past it.
pub fn lease_message(e: &LeaseError) -> String {
    with_hint(e.to_string(), lease_hint(e))
}

fn with_hint(message: String, hint: Option<&str>) -> String {
    match hint {
        Some(hint) => format!("{message}{hint}"),
        None => message,
    }
}

/// What to add to a provider's message, from the provider's own error.
fn provider_hint(e: &ProviderError) -> Option<&'static str> {
    use std::error::Error;
    if let ProviderError::Io { .. }
    | ProviderError::NotAFile { .. }
    | ProviderError::TooLarge { .. } = e
    {
        return Some("; check the path given to --provider file:PATH");
    }
    let source = e.source()?;
    if let Some(e) = source.downcast_ref::<gpusel::nvml::InitError>() {
        return match e {
            gpusel::nvml::InitError::Load { .. } | gpusel::nvml::InitError::DriverNotLoaded => {
                Some(", or try --provider smi")
            }
            gpusel::nvml::InitError::Other(_) => Some("; try --provider smi"),
            _ => None,
        };
    }
    if let Some(gpusel::smi::SmiError::Unreadable { .. }) = source.downcast_ref() {
        return Some(", use --provider nvml");
    }
    #[cfg(feature = "torch")]
    if let Some(e) = source.downcast_ref::<gpusel::torch::TorchError>() {
        return match e {
            gpusel::torch::TorchError::CudaUnavailable { .. } => {
                Some(", or use --provider smi or --provider file:PATH")
            }
            gpusel::torch::TorchError::SharedPciDevice { .. } => {
                Some(", use --provider nvml or --provider smi")
            }
            _ => None,
        };
    }
    None
}

fn lease_hint(e: &LeaseError) -> Option<&'static str> {
    Some(match e {
        LeaseError::Symlink { .. } => {
            "; give the real directory with --lock-dir (or GPUSEL_LOCK_DIR, or lock_dir in the config)"
        }
        LeaseError::NotADirectory { .. } | LeaseError::UnsafeMode { .. } => {
            ", or choose another with --lock-dir"
        }
        LeaseError::BadOwner { .. } => ", or use another with --lock-dir",
        LeaseError::Create { .. } | LeaseError::Open { .. } => {
            ", choose another with --lock-dir, or run without leases (--no-lease)"
        }
        _ => return None,
    })
}

/// What to add to a strategy's refusal: the flag that sets what it misses.
fn strategy_hint(e: &StrategyError) -> Option<&'static str> {
    match e.missing? {
        "min_free_memory" => Some(": add --mem SIZE (e.g. --mem 20GiB)"),
        _ => None,
    }
}

/// Every selection failure but [`SelectError::NoMatch`], whose per-device
/// details and hints `choose` adds (it falls back here to its headline).
impl From<SelectError> for Failure {
    fn from(e: SelectError) -> Self {
        match e {
            SelectError::Strategy(e) => Failure::Usage(with_hint(e.to_string(), strategy_hint(&e))),
            SelectError::Lease(e) => e.into(),
            SelectError::ShareWithoutMemory(e) => {
                Failure::Usage(format!("{e}: add --mem SIZE (e.g. --share --mem 20GiB)"))
            }
            SelectError::UnknownDevice { spec, known } => Failure::NoGpu {
                message: format!(
                    "--devices {spec}: no such device on this machine (it has {known}); see `gpusel list`"
                ),
                details: Vec::new(),
            },
            other => Failure::NoGpu {
                message: other.to_string(),
                details: Vec::new(),
            },
        }
    }
}
