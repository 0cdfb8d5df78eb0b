//! The selection modes: print, `env`, and `-- CMD` (exec).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use gpusel_core::rand::rngs::SmallRng;
use gpusel_core::{
    GpuInfoProvider, Leaser, Request, SelectError, Selection, Snapshot, Verdict, Visible,
    WriteOptions,
};

use crate::args::SelectArgs;
use crate::config::{Config, Source};
use crate::failure::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, Failure};
use crate::out;
use crate::wait;

/// How the selection is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `gpusel`: print `0,2`.
    Print,
    /// `gpusel env`: print `export` lines.
    Env,
    /// `gpusel -- CMD`: exec CMD.
    Run,
}

/// Builds the library request from the flags, with the config's defaults
/// for the filters not given and its bans.
pub fn request_from(args: &SelectArgs, config: &Config) -> Request {
    let f = &config.filters;
    Request {
        count: args.count,
        min_free_memory: args.mem.or(f.mem.as_ref().map(|s| s.value)),
        max_utilization: args.max_util.or(f.max_util.as_ref().map(|s| s.value)),
        max_memory_utilization: args
            .max_mem_util
            .or(f.max_mem_util.as_ref().map(|s| s.value)),
        idle_memory_utilization_may_be_unknown: false,
        max_processes: args
            .max_processes
            .or(f.max_processes.as_ref().map(|s| s.value)),
        max_power: args.max_power.or(f.max_power.as_ref().map(|s| s.value)),
        name: args.name.clone(),
        devices: args.devices.concat(),
        exclude: args.exclude.concat(),
        predicates: Vec::new(),
        banned: config.bans.clone(),
    }
}

/// The strategy's name, and where it comes from when not from a flag.
fn strategy_name<'a>(args: &SelectArgs, config: &'a Config) -> (String, Option<&'a Source>) {
    if args.least_used {
        return ("least-used".into(), None);
    }
    match &args.strategy {
        Some(s) => (s.clone(), None),
        None => (config.strategy.value.clone(), Some(&config.strategy.source)),
    }
}

/// Takes a snapshot, selects (leasing, and waiting if asked), and delivers
/// the result in `mode`.
pub fn run(
    provider: Box<dyn GpuInfoProvider>,
    rt: &tokio::runtime::Runtime,
    args: &SelectArgs,
    config: &Config,
    mode: Mode,
    json: bool,
    command: &[OsString],
) -> Result<(), Failure> {
    if args.silent && mode == Mode::Run {
        return Err(Failure::Usage(
            "--silent cannot be used with `-- CMD`: without a GPU there is nothing to run the command on".into(),
        ));
    }
    // A remote node's GPUs can be chosen and printed (for `ssh HOST
    // CUDA_VISIBLE_DEVICES=... CMD`), but not leased from here (the locks are
    // that node's) nor given to a job on this machine.
    let remote = provider.is_remote();
    if remote && mode == Mode::Run {
        return Err(Failure::Usage(format!(
            "`gpusel -- CMD` runs CMD on this machine, but {} serves another node's GPUs; run gpusel on that node (ssh HOST gpusel -- CMD), or print a choice without `-- CMD`",
            provider.name()
        )));
    }
    let mut request = request_from(args, config);
    if remote && !args.no_lease {
        // The node's own jobs hold these (its agent reads its lock
        // directory); a job started there would be refused them.
        request = request.predicate("not leased on the remote node", |d| {
            d.mig.map_or(d.gpu.lease.is_none(), |m| m.lease.is_none())
        });
    }
    let (strategy_name, from) = strategy_name(args, config);
    let strategy = gpusel_strategies::by_name(&strategy_name).map_err(|e| {
        Failure::Usage(match from {
            Some(source) if *source != Source::Default => format!("{e} (set by {source})"),
            _ => e.to_string(),
        })
    })?;
    let leaser = if args.no_lease || remote {
        None
    } else {
        let argv: Vec<OsString> = if command.is_empty() {
            std::env::args_os().collect()
        } else {
            command.to_vec()
        };
        // Lossy: an argument that is not UTF-8 must not stop the job.
        let holder_command = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        Some(Leaser::open(config.lock_dir.value.clone(), holder_command).map_err(Failure::from)?)
    };
    let mut rng = match args.seed {
        Some(seed) => <SmallRng as gpusel_core::rand::SeedableRng>::seed_from_u64(seed),
        None => gpusel_core::rand::make_rng::<SmallRng>(),
    };
    let write = WriteOptions { uuids: args.uuid };
    let waiting = args.wait || args.timeout.is_some();
    let interval = args.interval.unwrap_or(config.interval.value);
    let start = Instant::now();
    let mut status = wait::Status::new(waiting, request.count.get(), interval);
    let mut warned = false;
    let selection = loop {
        let snapshot: Snapshot = rt.block_on(provider.snapshot())?;
        tracing::debug!(
            provider = provider.name(),
            gpus = snapshot.gpus.len(),
            "snapshot taken"
        );
        // This machine's CUDA_VISIBLE_DEVICES says nothing about another's GPUs.
        let visible = if remote {
            Visible::all()
        } else {
            Visible::from_env(&snapshot.gpus)
        };
        let result = match &leaser {
            Some(leaser) => gpusel_core::select_leased(
                &snapshot,
                &request,
                strategy.as_ref(),
                &visible,
                write,
                &mut rng,
                leaser,
            ),
            None => gpusel_core::select(
                &snapshot,
                &request,
                strategy.as_ref(),
                &visible,
                write,
                &mut rng,
            ),
        };
        // When nothing is visible the error itself explains the variable; say it once.
        let explained_by_error = matches!(result, Err(SelectError::NoMatch { visible: 0, .. }));
        if visible.warning().is_some() && !explained_by_error && !warned {
            warned = true;
            status.suspend(|| out::warn_visible(&visible));
        }
        match result {
            Ok(s) => break s,
            Err(e) if waiting && worth_waiting(&e) => {
                let waited = start.elapsed();
                let left = args.timeout.map(|t| t.saturating_sub(waited));
                if left == Some(Duration::ZERO) {
                    status.finish();
                    let timeout = args.timeout.unwrap_or(waited);
                    return Err(timed_out(e, timeout, &strategy_name, args.explain));
                }
                if let SelectError::NoMatch { verdicts, .. } = &e {
                    status.update(waited, verdicts);
                }
                std::thread::sleep(left.map_or(interval, |l| l.min(interval)));
            }
            Err(SelectError::NoMatch { .. }) if args.silent => {
                status.finish();
                return Ok(());
            }
            Err(e) => {
                status.finish();
                return Err(no_match(e, &strategy_name, args.explain));
            }
        }
    };
    status.finish();
    // Done with the driver: shut NVML down now, so that in `-- CMD` mode the
    // job does not inherit its handle (and any descriptors the driver opened
    // without close-on-exec).
    drop(provider);
    if args.explain {
        explain(&selection.verdicts, &selection.strategy);
    }
    match mode {
        Mode::Print | Mode::Env if json => out::print_json(&selection),
        Mode::Print => out::print(&format!("{}\n", selection.cuda_visible_devices)),
        Mode::Env => out::print(&export_lines(&selection)),
        Mode::Run => exec(&selection, command),
    }
}

/// Whether waiting can help: not when more devices are asked for than are
/// visible at all.
fn worth_waiting(error: &SelectError) -> bool {
    matches!(error, SelectError::NoMatch { requested, visible, .. } if requested <= visible)
}

/// The no-match failure, headed by the timeout that ran out.
fn timed_out(error: SelectError, timeout: Duration, strategy: &str, explain_all: bool) -> Failure {
    match no_match(error, strategy, explain_all) {
        Failure::NoGpu { message, details } => Failure::NoGpu {
            message: format!(
                "timed out after {} waiting: {message}",
                humantime::format_duration(timeout)
            ),
            details,
        },
        other => other,
    }
}

fn explain(verdicts: &[Verdict], strategy: &str) {
    let qualify = verdicts.iter().filter(|v| v.reasons.is_empty()).count();
    let mut text = format!(
        "{} devices, {qualify} qualify, strategy {strategy}",
        verdicts.len()
    );
    for v in verdicts {
        text.push_str(&format!("\n  {v}"));
    }
    out::eprint_line("", &text);
}

fn no_match(error: SelectError, strategy: &str, explain_all: bool) -> Failure {
    match error {
        SelectError::NoMatch { ref verdicts, .. } => {
            let mut details: Vec<String> = verdicts
                .iter()
                .filter(|v| {
                    explain_all
                        || !(v.reasons.is_empty()
                            || v.reasons == [gpusel_core::Reason::HiddenByCudaVisibleDevices])
                })
                .map(ToString::to_string)
                .collect();
            // Hint only where it helps: a GPU that load alone keeps out.
            let idle_defaults = verdicts.iter().any(|v| {
                !v.reasons.is_empty()
                    && v.reasons.iter().all(|r| {
                        matches!(
                            r,
                            gpusel_core::Reason::Utilization { max: 0, .. }
                                | gpusel_core::Reason::MemoryUtilization { max: 0, .. }
                                | gpusel_core::Reason::Processes { max: 0, .. }
                        )
                    })
            });
            if strategy == "idle-random" && idle_defaults {
                details.push(
                    "hint: idle-random takes only idle GPUs; allow some load with --max-util/--max-mem-util/--max-processes, or use --strategy least-used"
                        .into(),
                );
            }
            Failure::NoGpu {
                message: error.to_string(),
                details,
            }
        }
        other => other.into(),
    }
}

/// `export NAME=VALUE` lines, values quoted for POSIX shells when needed.
pub fn export_lines(selection: &Selection) -> String {
    selection
        .env()
        .into_iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(&value)))
        .collect()
}

fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || ",._:/-+=@".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn exec(selection: &Selection, command: &[OsString]) -> Result<(), Failure> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::Usage("no command after `--`".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (name, value) in selection.env() {
        cmd.env(name, value);
    }
    tracing::info!(
        cuda_visible_devices = %selection.cuda_visible_devices,
        command = ?command,
        "exec"
    );
    // Last step before exec: from here on the leases belong to the job, and
    // the kernel releases them when it exits, however it exits.
    selection.keep_leases_across_exec().map_err(Failure::from)?;
    // exec only returns on failure.
    let error = cmd.exec();
    let name = program.to_string_lossy();
    Err(match error.kind() {
        std::io::ErrorKind::NotFound => Failure::Exec {
            code: EXIT_NOT_FOUND,
            message: format!("cannot run '{name}': command not found"),
        },
        _ => Failure::Exec {
            code: EXIT_CANNOT_EXECUTE,
            message: format!("cannot run '{name}': {error}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("0,2"), "0,2");
        assert_eq!(shell_quote("GPU-ab12"), "GPU-ab12");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("1 gpu'x"), r"'1 gpu'\''x'");
        assert_eq!(shell_quote("$(rm -rf)"), "'$(rm -rf)'");
    }
}
