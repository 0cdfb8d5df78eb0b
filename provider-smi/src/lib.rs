//! provider-smi: a [`GpuInfoProvider`] that reads GPU state from `nvidia-smi`.
//!
//! Each snapshot runs two queries, at the same time:
//!
//! ```text
//! nvidia-smi --query-gpu=index,uuid,name,...,mig.mode.current,driver_version --format=csv,noheader,nounits
//! nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv,noheader,nounits
//! ```
//!
//! and joins the processes to the GPUs by UUID. Never the human table and
//! never `-q -x`: both are slow and their format changes between drivers.
//! A full snapshot also runs `nvidia-smi topo -m`, the connection matrix,
//! at the same time (its tab-separated layout has been stable for a decade),
//! once for the provider's life: what it gave (the matrix read, or why it
//! failed) is kept for as long as the GPUs are the same ones;
//! [`read_without_topology`](SmiProvider::read_without_topology), for a pick
//! of one GPU, does not run it.
//! Users, start times and command lines come from `/proc`
//! ([`ProcReader`]), as with every provider.
//!
//! What nvidia-smi cannot tell, and this provider therefore does not claim:
//!
//! - **MIG devices.** `--query-gpu` says whether MIG mode is on
//!   (`mig.mode.current`) but does not list the MIG instances. A MIG-enabled
//!   GPU is reported with `mig_mode: Some(true)` and no `mig_devices`, so
//!   gpu-core's `Device::all` offers neither the whole GPU (CUDA cannot use
//!   it whole) nor any slice of it. Use the NVML provider to schedule MIG.
//! - **Graphics-only processes** (an X server): `--query-compute-apps` lists
//!   processes with a compute context only, and cannot say whether one also
//!   has a graphics context, so `kind` stays `None`.
//! - **The CUDA version** the driver supports: not a `--query-gpu` field.
//!
//! The binary is `smi:PATH` when given, else `$GPUSEL_NVIDIA_SMI`, else
//! `nvidia-smi` on `PATH`. A run that takes longer than the timeout
//! ([`DEFAULT_TIMEOUT`], or `$GPUSEL_SMI_TIMEOUT`) is killed and reported.

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod csv;
mod exec;
mod parse;
mod topo;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use gpusel_core::{GpuInfoProvider, GpuProcess, ProcReader, ProviderError, Snapshot};

use crate::exec::{Finished, RunError};

pub use crate::parse::{GPU_FIELDS, NEWER_GPU_FIELDS, PROCESS_FIELDS};

/// Name of the provider in `--provider`, logs and snapshots.
pub const NAME: &str = "smi";
/// Environment variable naming the nvidia-smi binary (a path, or a name to
/// look up on `PATH`).
pub const ENV_BINARY: &str = "GPUSEL_NVIDIA_SMI";
/// Environment variable holding the timeout per snapshot (`10s`, `500ms`, or
/// a number of seconds).
pub const ENV_TIMEOUT: &str = "GPUSEL_SMI_TIMEOUT";
/// How long a snapshot may take before nvidia-smi is killed. Generous: a
/// driver without persistence mode takes seconds to wake the GPUs.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything that can go wrong reading GPU state through nvidia-smi. Each
/// message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmiError {
    /// No nvidia-smi on `PATH` and none configured.
    #[error(
        "nvidia-smi not found on PATH: install the NVIDIA driver utilities or set {ENV_BINARY}"
    )]
    NotOnPath,
    /// The configured binary does not exist or cannot be run.
    #[error("{} ({origin}) cannot be run: {reason}; point {ENV_BINARY} or smi:PATH at nvidia-smi", path.display())]
    BadBinary {
        /// The binary.
        path: PathBuf,
        /// Where it was configured (`GPUSEL_NVIDIA_SMI`, `smi:PATH`).
        origin: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The timeout setting is not a duration.
    #[error("{ENV_TIMEOUT}={value:?} is not a duration: give e.g. 10s, 500ms or 30")]
    BadTimeout {
        /// What the variable held.
        value: String,
    },
    /// nvidia-smi did not finish in time.
    #[error(
        "nvidia-smi did not answer within {} and was killed; the driver may be busy or hung (run `nvidia-smi` by hand to see), or raise {ENV_TIMEOUT}",
        humantime::format_duration(*timeout)
    )]
    Timeout {
        /// The limit.
        timeout: Duration,
    },
    /// nvidia-smi exited with an error.
    #[error("nvidia-smi {query} failed ({status}): {message}")]
    Exit {
        /// Which query (`--query-gpu`, `--query-compute-apps`).
        query: &'static str,
        /// `exit code 9`, `killed by signal 9`.
        status: String,
        /// The first line it printed, e.g. "NVIDIA-SMI has failed because it
        /// couldn't communicate with the NVIDIA driver. ..."
        message: String,
    },
    /// nvidia-smi printed lines, none of which is a GPU row.
    #[error(
        "nvidia-smi --query-gpu printed no GPU row (first line: {first_line:?}); this driver's output format is not understood"
    )]
    Unreadable {
        /// The first line it printed.
        first_line: String,
    },
    /// Starting nvidia-smi failed for another reason.
    #[error("cannot run {}: {source}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<SmiError> for ProviderError {
    fn from(e: SmiError) -> Self {
        match e {
            SmiError::NotOnPath | SmiError::BadBinary { .. } | SmiError::BadTimeout { .. } => {
                ProviderError::unavailable_because(NAME, e)
            }
            _ => ProviderError::failed_because(NAME, e),
        }
    }
}

/// What `topo -m` gave for a set of GPUs: each GPU's place in the matrix,
/// or why it could not be read.
#[derive(Debug)]
struct TopoRead {
    /// The GPUs (UUIDs, in order) it was read for.
    uuids: Vec<String>,
    /// Their places, in the same order; the error when the run failed.
    places: Result<Vec<topo::Place>, String>,
    /// When it was read: a failure is tried again after the provider's
    /// retry time ([`TOPO_RETRY`] by default).
    at: Instant,
}

/// How long a failed `topo -m` (a timeout, a driver error) is kept, by
/// default, before a snapshot runs it again: a long-running agent is not
/// left without topology for its whole life by one bad moment, nor made to
/// wait on a failing run every round (see
/// [`SmiProvider::with_topology_retry`]).
pub const TOPO_RETRY: Duration = Duration::from_secs(600);

/// Reads GPU state by running nvidia-smi.
#[derive(Debug, Clone)]
pub struct SmiProvider {
    binary: PathBuf,
    timeout: Duration,
    /// How long a failed `topo -m` is kept.
    topology_retry: Duration,
    /// What `topo -m` gave, failure included, for the GPUs it was read for:
    /// topology does not change while the machine runs, and the run is slow
    /// (a driver that fails or hangs on it would cost that on every round).
    topology: Arc<Mutex<Option<Arc<TopoRead>>>>,
}

impl SmiProvider {
    /// A provider running `binary` (used as given, not looked up) with the
    /// default timeout.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        SmiProvider {
            binary: binary.into(),
            timeout: DEFAULT_TIMEOUT,
            topology_retry: TOPO_RETRY,
            topology: Default::default(),
        }
    }

    /// The same provider with another timeout per snapshot.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same provider keeping a failed `nvidia-smi topo -m` for `retry`
    /// (instead of [`TOPO_RETRY`]) before a snapshot runs it again. A
    /// matrix read is kept for as long as the same GPUs answer, whatever
    /// this says.
    pub fn with_topology_retry(mut self, retry: Duration) -> Self {
        self.topology_retry = retry;
        self
    }

    /// The provider `--provider smi[:PATH]` means in this environment:
    /// `explicit` (the `PATH` of `smi:PATH`), else `$GPUSEL_NVIDIA_SMI`, else
    /// `nvidia-smi` on `$PATH`; timeout from `$GPUSEL_SMI_TIMEOUT`. Fails
    /// now, without running anything, when there is no binary to run, so that
    /// `--provider auto` can move on.
    pub fn from_env(explicit: Option<&str>) -> Result<Self, SmiError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let path = std::env::var_os("PATH");
        let binary = match (explicit.filter(|e| !e.is_empty()), var(ENV_BINARY)) {
            (Some(given), _) => resolve(given.as_ref(), "smi:PATH", path)?,
            (None, Some(given)) => resolve(&given, ENV_BINARY, path)?,
            (None, None) => find_on_path("nvidia-smi".as_ref(), path).ok_or(SmiError::NotOnPath)?,
        };
        let timeout = match var(ENV_TIMEOUT) {
            Some(v) => parse_timeout(&v.to_string_lossy())?,
            None => DEFAULT_TIMEOUT,
        };
        Ok(SmiProvider::new(binary).with_timeout(timeout))
    }

    /// The binary this provider runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The limit on one snapshot.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes a snapshot. Blocks the calling thread for as long as nvidia-smi
    /// runs (at most the timeout).
    pub fn read(&self) -> Result<Snapshot, SmiError> {
        self.read_with(true)
    }

    /// [`read`](Self::read) without `nvidia-smi topo -m`, a third run that
    /// walks the whole fabric (over a second on an 8-GPU NVLink board):
    /// what a pick of one GPU needs.
    pub fn read_without_topology(&self) -> Result<Snapshot, SmiError> {
        self.read_with(false)
    }

    fn read_with(&self, topology: bool) -> Result<Snapshot, SmiError> {
        let now = Instant::now();
        // A timeout too long to add is no timeout at all; a year will do.
        let deadline = now
            .checked_add(self.timeout)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let time = SystemTime::now();
        let query_apps = [
            format!("--query-compute-apps={}", PROCESS_FIELDS.join(",")),
            FORMAT.to_string(),
        ];
        // Both start before either is awaited: a snapshot costs one
        // nvidia-smi start-up, not two.
        let gpus_run = self.start(&gpu_query(&GPU_FIELDS))?;
        let apps_run = self.start(&query_apps)?;
        let cached = self
            .topology
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut topo_run = if topology && cached.is_none() {
            Some(self.start(&TOPO.map(String::from))?)
        } else {
            None
        };
        let mut fields = GPU_FIELDS.to_vec();
        let mut gpu_result = success(self.finish(gpus_run, deadline)?, "--query-gpu");
        if let Err(SmiError::Exit { message, .. }) = &gpu_result
            && NEWER_GPU_FIELDS
                .iter()
                .any(|f| message.contains(&format!("\"{f}\" is not a valid field")))
        {
            tracing::debug!(error = %message, "old driver: querying without the MIG fields");
            fields.retain(|f| !NEWER_GPU_FIELDS.contains(f));
            let retry = self.start(&gpu_query(&fields))?;
            gpu_result = success(self.finish(retry, deadline)?, "--query-gpu");
        }
        let apps_out = self.finish(apps_run, deadline)?;

        let rows = parse::gpus(&gpu_result?, &fields);
        for line in &rows.skipped {
            // Drivers print warnings (a corrupted infoROM) before the CSV;
            // anything else may be a GPU row this parser misread.
            if line.trim_start().starts_with("WARNING") {
                tracing::info!(line = %line, "nvidia-smi warns");
            } else {
                tracing::warn!(line = %line, "nvidia-smi --query-gpu: not a GPU row, ignored");
            }
        }
        if rows.gpus.is_empty()
            && let Some(first) = rows.skipped.first()
        {
            return Err(SmiError::Unreadable {
                first_line: first.clone(),
            });
        }

        let mut snapshot = Snapshot::local(NAME);
        snapshot.time = time;
        snapshot.driver_version = rows.driver_version;
        snapshot.gpus = rows.gpus;
        // A failed process query degrades to "processes unknown" (None),
        // which every process filter treats as not satisfied; it does not
        // hide the GPUs.
        match success(apps_out, "--query-compute-apps") {
            Ok(text) => {
                let mut procfs = ProcReader::default();
                attach_processes(&mut snapshot, &text, |p| procfs.enrich(p));
            }
            Err(e) => tracing::warn!(error = %e, "GPU processes unknown"),
        }
        // Topology is a nicety: without it, picks follow the strategy alone.
        if topology {
            let uuids: Vec<String> = snapshot.gpus.iter().map(|g| g.uuid.clone()).collect();
            let read = match cached {
                Some(read)
                    if read.uuids == uuids
                        && (read.places.is_ok() || read.at.elapsed() < self.topology_retry) =>
                {
                    read
                }
                // Never read, or read for other GPUs: read it now.
                _ => {
                    let run = match topo_run.take() {
                        Some(run) => run,
                        None => self.start(&TOPO.map(String::from))?,
                    };
                    let places = self
                        .finish(run, deadline)
                        .and_then(|run| success(run, "topo -m"))
                        .map(|text| {
                            let (places, rows) = topo::read(&text, &snapshot.gpus);
                            tracing::debug!(rows, "nvidia-smi topo -m read");
                            places
                        })
                        .map_err(|e| e.to_string());
                    let read = Arc::new(TopoRead {
                        uuids,
                        places,
                        at: Instant::now(),
                    });
                    *self.topology.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::clone(&read));
                    read
                }
            };
            match &read.places {
                Ok(places) => {
                    for (gpu, place) in snapshot.gpus.iter_mut().zip(places) {
                        place.fill(gpu);
                    }
                }
                Err(error) => tracing::debug!(%error, "GPU topology unknown"),
            }
        }
        Ok(snapshot)
    }

    fn start(&self, args: &[String]) -> Result<exec::Running, SmiError> {
        exec::start(&self.binary, args).map_err(|e| self.run_error(e))
    }

    fn finish(&self, run: exec::Running, deadline: Instant) -> Result<Finished, SmiError> {
        run.finish(deadline).map_err(|e| self.run_error(e))
    }

    fn run_error(&self, e: RunError) -> SmiError {
        match e {
            RunError::Timeout => SmiError::Timeout {
                timeout: self.timeout,
            },
            RunError::Spawn(source) => SmiError::Spawn {
                path: self.binary.clone(),
                source,
            },
        }
    }
}

const FORMAT: &str = "--format=csv,noheader,nounits";

/// `nvidia-smi topo -m`: the connection matrix.
const TOPO: [&str; 2] = ["topo", "-m"];

fn gpu_query(fields: &[&str]) -> [String; 2] {
    [
        format!("--query-gpu={}", fields.join(",")),
        FORMAT.to_string(),
    ]
}

#[async_trait]
impl GpuInfoProvider for SmiProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        self.read()?.validated(NAME)
    }

    async fn snapshot_without_topology(&self) -> Result<Snapshot, ProviderError> {
        self.read_without_topology()?.validated(NAME)
    }
}

/// The output of a run that exited 0, or the error it reported. nvidia-smi
/// prints its errors on stdout, so the first line of either is shown.
fn success(run: Finished, query: &'static str) -> Result<String, SmiError> {
    if run.status.success() {
        return Ok(run.stdout);
    }
    use std::os::unix::process::ExitStatusExt;
    let status = match (run.status.code(), run.status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "abnormal exit".into(),
    };
    let message = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(it printed nothing)")
        .to_string();
    Err(SmiError::Exit {
        query,
        status,
        message,
    })
}

/// Gives every GPU its process list (empty when it has none), each process
/// passed through `enrich` (user, start time and command line from `/proc`).
fn attach_processes(snapshot: &mut Snapshot, text: &str, mut enrich: impl FnMut(&mut GpuProcess)) {
    let (rows, skipped) = parse::processes(text);
    for line in &skipped {
        tracing::warn!(line = %line, "nvidia-smi --query-compute-apps: not a process row, ignored");
    }
    for gpu in &mut snapshot.gpus {
        gpu.processes = Some(Vec::new());
    }
    for mut row in rows {
        let gpu = snapshot
            .gpus
            .iter_mut()
            .find(|g| g.uuid.eq_ignore_ascii_case(&row.gpu_uuid));
        match gpu.and_then(|g| g.processes.as_mut()) {
            Some(list) => {
                enrich(&mut row.process);
                list.push(row.process);
            }
            None => tracing::debug!(uuid = %row.gpu_uuid, pid = row.process.pid,
                "nvidia-smi listed a process on a GPU it did not list; ignored"),
        }
    }
}

/// The parsing of [`SmiProvider::read`] without running nvidia-smi, for the
/// fuzz targets in `fuzz/`. Not part of the API: it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    use gpusel_core::Snapshot;

    /// The snapshot [`read`](crate::SmiProvider::read) makes of the outputs
    /// of `--query-gpu=FIELDS` (`fields`: [`GPU_FIELDS`](crate::GPU_FIELDS)
    /// or a subset in its order) and `--query-compute-apps`, without `/proc`;
    /// and the lines of `query_gpu` that were not GPU rows.
    pub fn snapshot(
        query_gpu: &str,
        fields: &[&str],
        compute_apps: &str,
    ) -> (Snapshot, Vec<String>) {
        let rows = crate::parse::gpus(query_gpu, fields);
        let mut snapshot = Snapshot::new("fuzz", crate::NAME);
        snapshot.driver_version = rows.driver_version;
        snapshot.gpus = rows.gpus;
        crate::attach_processes(&mut snapshot, compute_apps, |_| {});
        (snapshot, rows.skipped)
    }
}

/// `given` as a path when it holds a `/`, else looked up on `PATH`.
fn resolve(
    given: &std::ffi::OsStr,
    origin: &'static str,
    path: Option<OsString>,
) -> Result<PathBuf, SmiError> {
    let as_path = Path::new(given);
    if given.as_encoded_bytes().contains(&b'/') {
        return match executable(as_path) {
            Ok(()) => Ok(as_path.to_path_buf()),
            Err(reason) => Err(SmiError::BadBinary {
                path: as_path.to_path_buf(),
                origin,
                reason,
            }),
        };
    }
    find_on_path(as_path, path).ok_or_else(|| SmiError::BadBinary {
        path: as_path.to_path_buf(),
        origin,
        reason: "not found on PATH".into(),
    })
}

fn find_on_path(name: &Path, path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| executable(candidate).is_ok())
}

/// Whether `path` is a file someone may execute; the reason when not.
fn executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("not executable".into());
    }
    Ok(())
}

/// `10s`, `500ms`, `1m`, or a plain number of seconds (`2.5`): gpusel's one
/// duration syntax; zero is refused.
fn parse_timeout(value: &str) -> Result<Duration, SmiError> {
    gpusel_core::parse_duration_min(value, Duration::from_millis(1)).map_err(|_| {
        SmiError::BadTimeout {
            value: value.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout(" 2.5 ").unwrap(), Duration::from_millis(2500));
        for bad in ["", "0", "-1", "soon", "NaN", "1e400"] {
            let e = parse_timeout(bad).unwrap_err();
            assert!(e.to_string().contains("is not a duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn an_absurd_timeout_does_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(&smi, "#!/bin/sh\necho 'No devices were found'\nexit 6\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Past gpusel_core::MAX_DURATION the setting is refused; the API
        // takes any Duration.
        assert!(parse_timeout("1000000000000000").is_err());
        let e = SmiProvider::new(&smi)
            .with_timeout(Duration::MAX)
            .read()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nvidia-smi --query-gpu failed (exit code 6): No devices were found"
        );
    }

    #[test]
    fn binary_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(&smi, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = Some(OsString::from(format!(
            "/nonexistent:{}",
            dir.path().display()
        )));

        assert_eq!(
            find_on_path("nvidia-smi".as_ref(), path.clone()),
            Some(smi.clone())
        );
        assert_eq!(find_on_path("nvidia-smi".as_ref(), None), None);
        assert_eq!(resolve(smi.as_os_str(), "smi:PATH", None).unwrap(), smi);
        assert_eq!(
            resolve("nvidia-smi".as_ref(), ENV_BINARY, path.clone()).unwrap(),
            smi
        );
        let e = resolve(plain.as_os_str(), ENV_BINARY, None).unwrap_err();
        assert!(e.to_string().contains("not executable"), "{e}");
        assert!(e.to_string().contains(ENV_BINARY), "{e}");
        let e = resolve("/nonexistent/nvidia-smi".as_ref(), "smi:PATH", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/nvidia-smi (smi:PATH) cannot be run"),
            "{e}"
        );
        let e = resolve("nvidia-smi-nope".as_ref(), ENV_BINARY, path).unwrap_err();
        assert!(e.to_string().contains("not found on PATH"), "{e}");
    }

    #[test]
    fn errors_map_to_provider_errors() {
        let e: ProviderError = SmiError::NotOnPath.into();
        assert_eq!(
            e.to_string(),
            "provider 'smi' is unavailable: nvidia-smi not found on PATH: install the NVIDIA driver utilities or set GPUSEL_NVIDIA_SMI"
        );
        let e: ProviderError = SmiError::Timeout {
            timeout: Duration::from_millis(1500),
        }
        .into();
        assert!(matches!(e, ProviderError::Failed { .. }));
        assert!(e.to_string().contains("within 1s 500ms"), "{e}");
        // The typed error stays reachable as the source.
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            matches!(source.downcast_ref(), Some(SmiError::Timeout { .. })),
            "{source:?}"
        );
    }
}
