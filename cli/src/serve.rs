//! `gpusel serve`: the agent, with this process's signals and messages.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use gpusel_core::{GpuInfoProvider, ProviderError, ProviderSpec, Snapshot};

use crate::args::ServeArgs;
use crate::config::Config;
use crate::failure::Failure;
use crate::out::eprint_line;

/// Serves until SIGTERM or SIGINT: an agent, or with `--agents` a master.
pub fn run(args: &ServeArgs, config: &Config) -> Result<(), Failure> {
    let agents = match &args.agents {
        Some(path) => {
            Some(gpusel_agent::master::load(path).map_err(|e| Failure::Usage(e.to_string()))?)
        }
        None => None,
    };
    // A master without `self` may run where there is no GPU at all.
    let provider: Option<Box<dyn GpuInfoProvider>> = match &agents {
        Some(a) if !a.has_self() => None,
        _ => Some(open_provider(config)?),
    };
    let mut options = gpusel_agent::ServeOptions::new(args.listen);
    options.interval = args.interval;
    options.lock_dir = config.lock_dir.value.clone();
    options.expose_cmdline = args.expose_cmdline;
    options.max_connections = args.max_connections as usize;
    options.idle = config.idle_rules();
    if let Some(path) = &args.token_file {
        options.token =
            Some(gpusel_agent::Token::from_file(path).map_err(|e| Failure::Usage(e.to_string()))?);
    }
    let has_token = options.token.is_some();
    // The server's own threads: one per core (the default), each serving
    // many connections; the snapshot loop has a thread of its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .thread_name("gpusel-serve")
        .build()
        .map_err(|e| Failure::Provider(format!("cannot start the async runtime: {e}")))?;
    let served = rt.block_on(async move {
        // Installed before anything is announced, so that a SIGTERM sent
        // as soon as the address is printed is a clean stop.
        let shutdown = shutdown_signal().map_err(|e| {
            Failure::Provider(format!("cannot listen for SIGTERM/SIGINT: {e}"))
        })?;
        let server = gpusel_agent::Server::bind(options)
            .await
            .map_err(|e| Failure::Usage(e.to_string()))?;
        let addr = server.local_addr();
        if !addr.ip().is_loopback() && !has_token {
            eprint_line(
                "warning: ",
                &format!("{} is reachable from other machines and no --token-file is set: anyone who can reach it sees the GPUs, process names and users", addr.ip()),
            );
        }
        let stop = async move {
            shutdown.await;
            eprint_line("", "shutting down");
            // A snapshot still running (a hung nvidia-smi) would outlive us.
            gpusel_core::kill_child_groups();
        };
        let served = match (agents, provider) {
            (Some(agents), provider) => {
                eprint_line(
                    "",
                    &format!(
                        "master of {} node{}: serving http://{addr}/ (all nodes), /api/v1/cluster, /metrics, /healthz; Ctrl-C or SIGTERM stops",
                        agents.nodes.len(),
                        if agents.nodes.len() == 1 { "" } else { "s" }
                    ),
                );
                server.run_master(provider, agents, stop).await
            }
            (None, Some(provider)) => {
                eprint_line(
                    "",
                    &format!("serving http://{addr}/ (dashboard), /api/v1/snapshot, /gpu_status (nvgpu), /metrics, /healthz; Ctrl-C or SIGTERM stops"),
                );
                server.run(provider, stop).await
            }
            (None, None) => return Err(Failure::Provider("no GPU provider".into())),
        };
        served.map_err(|e| Failure::Provider(e.to_string()))
    });
    // And one started since (the poller's next round), before the runtime
    // is dropped.
    gpusel_core::kill_child_groups();
    served
}

/// A future that completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// How long `serve` waits for its provider to open before serving anyway.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// What the thread opening the provider sends back.
type Opened = Result<Box<dyn GpuInfoProvider>, Failure>;

/// Opens the provider on a thread of its own. One that fails within
/// [`OPEN_WAIT`] stops `serve` (a wrong `--provider`, no driver: nothing to
/// serve); one still opening then (NVML init on a hung driver) is served
/// as a provider that has not answered, so that `/healthz` and the API say
/// so, until it opens.
fn open_provider(config: &Config) -> Result<Box<dyn GpuInfoProvider>, Failure> {
    let (tx, rx) = std::sync::mpsc::channel::<Opened>();
    let owned = config.clone();
    std::thread::Builder::new()
        .name("gpusel-open".into())
        .spawn(move || {
            let _ = tx.send(crate::providers::open(&owned));
        })
        .map_err(|e| {
            Failure::Provider(format!("cannot start a thread to open the provider: {e}"))
        })?;
    match rx.recv_timeout(OPEN_WAIT) {
        Ok(opened) => opened,
        Err(RecvTimeoutError::Timeout) => {
            let name = ProviderSpec::parse(&config.provider.value).name;
            eprint_line(
                "warning: ",
                &format!(
                    "provider '{name}' has not opened after {} s (the driver may be hung); serving anyway, as failing until it opens",
                    OPEN_WAIT.as_secs()
                ),
            );
            Ok(Box::new(Opening {
                name,
                pending: Mutex::new(Some(rx)),
                opened: OnceLock::new(),
            }))
        }
        Err(RecvTimeoutError::Disconnected) => Err(Failure::Provider(
            "the thread opening the provider stopped".into(),
        )),
    }
}

/// A provider still opening: its first snapshot waits for it (so that the
/// agent's watchdog reports it as not answering), later ones use it, or
/// fail with why it could not be opened.
struct Opening {
    name: String,
    pending: Mutex<Option<Receiver<Opened>>>,
    opened: OnceLock<Result<Box<dyn GpuInfoProvider>, String>>,
}

#[gpusel_core::async_trait]
impl GpuInfoProvider for Opening {
    fn name(&self) -> &str {
        &self.name
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        // Only the snapshot loop calls this, on a thread of its own, where
        // blocking is what a driver call does anyway.
        let opened = self.opened.get_or_init(|| {
            let rx = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            match rx.map(|rx| rx.recv()) {
                Some(Ok(Ok(provider))) => Ok(provider),
                Some(Ok(Err(failure))) => Err(failure.to_string()),
                _ => Err("the thread opening the provider stopped".into()),
            }
        });
        match opened {
            Ok(provider) => provider.snapshot().await,
            Err(message) => Err(ProviderError::unavailable(
                self.name.clone(),
                message.clone(),
            )),
        }
    }
}
