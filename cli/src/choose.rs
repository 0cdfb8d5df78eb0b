//! The selection modes: print, `env`, and `-- CMD` (exec).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

use gpusel_core::{GpuInfoProvider, Progress, SelectError, Selection, Selector};

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

/// The selector for these flags: the site's settings (lock directory, bans,
/// default filters, interval), overridden by every flag given.
fn selector(
    args: &SelectArgs,
    config: &Config,
    strategy: Box<dyn gpusel_core::SelectStrategy>,
) -> Selector {
    let mut s = Selector::from_config(config, strategy)
        .count(args.count)
        .devices(args.devices.concat())
        .exclude(args.exclude.concat())
        .uuids(args.uuid)
        .lease(!args.no_lease)
        .share(args.share);
    if let Some(bytes) = args.mem {
        s = s.min_free_memory(bytes);
    }
    if let Some(pct) = args.max_util {
        s = s.max_utilization(pct);
    }
    if let Some(pct) = args.max_mem_util {
        s = s.max_memory_utilization(pct);
    }
    if let Some(n) = args.max_processes {
        s = s.max_processes(n);
    }
    if let Some(mw) = args.max_power {
        s = s.max_power(mw);
    }
    if let Some(amount) = args.max_mem_used {
        s = s.max_memory_used(amount);
    }
    if let Some(name) = &args.name {
        s = s.name(name.clone());
    }
    if let Some(interval) = args.interval {
        s = s.interval(interval);
    }
    if let Some(seed) = args.seed {
        s = s.seed(seed);
    }
    if let Some(timeout) = args.timeout {
        s = s.wait(Some(timeout));
    } else if args.wait {
        s = s.wait_configured();
    } else if args.no_wait {
        s = s.no_wait();
    }
    s
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
    if provider.is_remote() && mode == Mode::Run {
        return Err(Failure::Usage(format!(
            "`gpusel -- CMD` runs CMD on this machine, but {} serves another node's GPUs; run gpusel on that node (ssh HOST gpusel -- CMD), or print a choice without `-- CMD`",
            provider.name()
        )));
    }
    let (strategy_name, from) = strategy_name(args, config);
    let strategy = gpusel_strategies::by_name(&strategy_name).map_err(|e| {
        Failure::Usage(match from {
            Some(source) if *source != Source::Default => format!("{e} (set by {source})"),
            _ => e.to_string(),
        })
    })?;
    let selector = selector(args, config, strategy);
    // What the status line says comes from the selector, where flags and
    // config were settled.
    let status = Arc::new(Mutex::new(wait::Status::new(
        selector.waits(),
        selector.request().count,
        selector.poll_interval(),
    )));
    let mut selector = selector.on_progress({
        let status = Arc::clone(&status);
        move |progress| {
            let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
            match progress {
                Progress::Waiting {
                    waited, verdicts, ..
                } => status.update(waited, verdicts),
                Progress::ProviderFailed {
                    waited,
                    error,
                    failures,
                    limit,
                    ..
                } => status.provider_failed(waited, error, failures, limit),
                Progress::VisibleProblem { visible } => {
                    status.suspend(|| out::warn_visible(visible))
                }
                _ => {}
            }
        }
    });
    if !command.is_empty() {
        // Lossy: an argument that is not UTF-8 must not stop the job.
        selector = selector.command(
            command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        );
    }
    let result = selector.select(provider.as_ref());
    status.lock().unwrap_or_else(|e| e.into_inner()).finish();
    let selection = match result {
        Ok(selection) => selection,
        Err(SelectError::NoMatch { .. } | SelectError::TimedOut { .. }) if args.silent => {
            return Ok(());
        }
        Err(e) => {
            let verdicts = e.verdicts().map(<[_]>::to_vec);
            let failure = no_match(e, args.explain);
            if json && mode != Mode::Run {
                out::print_json_error(&failure, verdicts.as_deref());
            }
            return Err(failure);
        }
    };
    // Done with the driver: shut NVML down now, so that in `-- CMD` mode the
    // job does not inherit its handle (and any descriptors the driver opened
    // without close-on-exec).
    drop(provider);
    if args.explain {
        explain(&selection);
    }
    match mode {
        Mode::Print | Mode::Env if json => out::print_json(&selection),
        Mode::Print => out::print(&format!("{}\n", selection.cuda_visible_devices)),
        Mode::Env => out::print(&export_lines(&selection)),
        Mode::Run => exec(&selection, command),
    }
}

fn explain(selection: &Selection) {
    let verdicts = &selection.verdicts;
    let qualify = verdicts.iter().filter(|v| v.reasons.is_empty()).count();
    let mut text = format!(
        "{} devices, {qualify} qualify, strategy {}",
        verdicts.len(),
        selection.strategy
    );
    for v in verdicts {
        text.push_str(&format!("\n  {v}"));
    }
    if let Some(line) = link_line(selection) {
        text.push_str(&format!("\n{line}"));
    }
    out::eprint_line("", &text);
}

/// What joins the chosen GPUs: `GPUs 2,3: joined by NVLink (NV12)`; `None`
/// for one device, or without topology.
pub fn link_line(selection: &Selection) -> Option<String> {
    let link = selection.link?;
    let gpus: Vec<String> = selection
        .devices
        .iter()
        .map(|d| d.index.to_string())
        .collect();
    Some(match &selection.link_code {
        Some(code) => format!("GPUs {}: {link} ({code})", gpus.join(",")),
        None => format!("GPUs {}: {link}", gpus.join(",")),
    })
}

fn no_match(error: SelectError, explain_all: bool) -> Failure {
    match error {
        SelectError::NoMatch { ref verdicts, .. } => {
            let mut details: Vec<String> = verdicts
                .iter()
                .filter(|v| explain_all || v.explains_a_failure())
                .map(ToString::to_string)
                .collect();
            // Hint only where it helps: a GPU that the strategy's own
            // defaults (idle-random's "no load") alone keep out.
            if error.only_strategy_defaults_keep_out() {
                details.push(
                    "hint: idle-random takes only idle GPUs; allow some load with --max-util/--max-mem-util/--max-processes (still a random pick among the GPUs that pass), or take the least used now with --strategy least-used"
                        .into(),
                );
            }
            Failure::NoGpu {
                message: error.to_string(),
                details,
            }
        }
        SelectError::TimedOut { timeout, last } => match no_match(*last, explain_all) {
            Failure::NoGpu { message, details } => Failure::NoGpu {
                message: format!(
                    "timed out after {} waiting: {message}",
                    humantime::format_duration(timeout)
                ),
                details,
            },
            other => other,
        },
        SelectError::Provider(e) => e.into(),
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
    // And a guardian holds them too, so that a job that closes the
    // descriptors it inherits keeps its leases until it exits. Without one
    // the job's own descriptors still hold them, as long as it keeps them.
    match selection.guard_leases_for_exec() {
        Ok(Some(pid)) => tracing::debug!(guardian = pid, "leases guarded"),
        Ok(None) => {}
        Err(e) => tracing::info!(
            "{e}; the job alone holds its leases, and loses them if it closes the descriptors it inherits"
        ),
    }
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
