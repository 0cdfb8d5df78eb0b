//! The background snapshot loop: the only code that talks to the provider.
//!
//! It runs on a thread of its own with its own small runtime, so that a
//! driver call that blocks or stalls never takes a thread from the server.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use gpusel_core::{AgentStatus, GpuInfoProvider, Snapshot};

use crate::error::AgentError;
use crate::redact;
use crate::state::{Published, State};

/// What the loop needs to know.
pub struct LoopOptions {
    pub interval: Duration,
    pub lock_dir: PathBuf,
    pub expose_cmdline: bool,
}

/// The running loop; dropping it stops the loop after its current round.
pub struct Poller {
    _stop: mpsc::Sender<()>,
}

/// Starts the loop. `first` is told once the first round is published.
pub fn spawn(
    provider: Box<dyn GpuInfoProvider>,
    options: LoopOptions,
    state: Arc<State>,
    first: tokio::sync::oneshot::Sender<()>,
) -> Result<Poller, AgentError> {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("gpusel-snapshot".into())
        .spawn(move || run(provider, options, state, first, stopped))
        .map_err(AgentError::Thread)?;
    Ok(Poller { _stop: stop })
}

fn run(
    provider: Box<dyn GpuInfoProvider>,
    options: LoopOptions,
    state: Arc<State>,
    first: tokio::sync::oneshot::Sender<()>,
    stopped: mpsc::Receiver<()>,
) {
    // I/O too: the provider may be another agent (`--provider http://...`).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the snapshot runtime");
            return;
        }
    };
    let remote = provider.is_remote();
    let mut first = Some(first);
    let mut last_good: Option<Arc<Snapshot>> = None;
    let mut lease_error = None;
    let mut errors_total = 0u64;
    let mut previous_error: Option<String> = None;
    loop {
        let started = Instant::now();
        let attempt = SystemTime::now();
        state.begin_attempt();
        // A provider that panics is a failed round, not a server that
        // silently serves one snapshot forever.
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(provider.snapshot())));
        let took = started.elapsed();
        let last_error = match result {
            Ok(Ok(mut snapshot)) => {
                // A remote provider's snapshot carries that node's leases;
                // this machine's lock directory says nothing about its GPUs.
                if !remote {
                    lease_error = gpusel_core::add_leases(&mut snapshot, &options.lock_dir)
                        .err()
                        .map(|e| gpusel_core::sanitize::clean(&e.to_string()));
                }
                if !options.expose_cmdline {
                    redact::hide_command_lines(&mut snapshot);
                }
                // Anyone names their own processes: no control character or
                // bidi override of theirs reaches a reader of this agent
                // (its JSON shown by `curl` on a terminal, its page, its
                // metrics), as none of a remote agent's reaches a master's.
                // Cleaned once here, for every round's readers: the page and
                // the metrics write the snapshot's text as it is.
                gpusel_core::sanitize::clean_snapshot(&mut snapshot);
                last_good = Some(Arc::new(snapshot));
                None
            }
            Ok(Err(e)) => Some(gpusel_core::sanitize::clean_lines(&e.to_string())),
            Err(_) => Some(format!(
                "provider '{}' panicked; this is a bug in gpusel, please report it",
                provider.name()
            )),
        };
        if last_error.is_some() {
            errors_total += 1;
        }
        // Logged when the state changes, not every round of a long outage.
        if last_error != previous_error {
            match &last_error {
                Some(error) => {
                    tracing::warn!(%error, "cannot read the GPUs; serving the last good snapshot")
                }
                None => tracing::warn!("the GPUs can be read again"),
            }
            previous_error.clone_from(&last_error);
        }
        let status = AgentStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            up: last_error.is_none(),
            last_attempt: attempt,
            last_error,
            lease_error: lease_error.clone(),
            interval_ms: u64::try_from(options.interval.as_millis()).unwrap_or(u64::MAX),
            command_lines: options.expose_cmdline,
        };
        state.finish_attempt(Published::render(
            last_good.clone(),
            status,
            took,
            errors_total,
        ));
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        match stopped.recv_timeout(options.interval.saturating_sub(took)) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => return,
        }
    }
}
