//! `gpusel serve`: the agent, with this process's signals and messages.

use gpusel_core::GpuInfoProvider;

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
        _ => Some(crate::providers::open(config)?),
    };
    let mut options = gpusel_agent::ServeOptions::new(args.listen);
    options.interval = args.interval;
    options.lock_dir = config.lock_dir.value.clone();
    options.expose_cmdline = args.expose_cmdline;
    options.max_connections = args.max_connections as usize;
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
    rt.block_on(async move {
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
        };
        let served = match (agents, provider) {
            (Some(agents), provider) => {
                eprint_line(
                    "",
                    &format!(
                        "master of {} nodes: serving http://{addr}/ (all nodes), /api/v1/cluster, /metrics, /healthz; Ctrl-C or SIGTERM stops",
                        agents.nodes.len()
                    ),
                );
                server.run_master(provider, agents, stop).await
            }
            (None, Some(provider)) => {
                eprint_line(
                    "",
                    &format!("serving http://{addr}/ (dashboard), /api/v1/snapshot, /metrics, /healthz; Ctrl-C or SIGTERM stops"),
                );
                server.run(provider, stop).await
            }
            (None, None) => return Err(Failure::Provider("no GPU provider".into())),
        };
        served.map_err(|e| Failure::Provider(e.to_string()))
    })
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
