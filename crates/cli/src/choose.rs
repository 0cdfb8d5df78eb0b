//! The selection modes: print, `env`, and `-- CMD` (exec).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use gpu_core::{
    GpuInfoProvider, Request, SelectError, Selection, Snapshot, Verdict, Visible, WriteOptions,
};

use crate::args::SelectArgs;
use crate::failure::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, Failure};
use crate::out;

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

/// Builds the library request from the flags.
pub fn request_from(args: &SelectArgs) -> Request {
    Request {
        count: args.count,
        min_free_memory: args.mem,
        max_utilization: args.max_util,
        max_memory_utilization: args.max_mem_util,
        max_processes: args.max_processes,
        max_power: args.max_power,
        name: args.name.clone(),
        devices: args.devices.concat(),
        exclude: args.exclude.concat(),
        predicates: Vec::new(),
    }
}

/// Takes a snapshot, selects, and delivers the result in `mode`.
pub fn run(
    provider: &dyn GpuInfoProvider,
    rt: &tokio::runtime::Runtime,
    args: &SelectArgs,
    mode: Mode,
    json: bool,
    command: &[OsString],
) -> Result<(), Failure> {
    if args.silent && mode == Mode::Run {
        return Err(Failure::Usage(
            "--silent cannot be used with `-- CMD`: without a GPU there is nothing to run the command on".into(),
        ));
    }
    let request = request_from(args);
    let strategy =
        strategies::by_name(&args.strategy).map_err(|e| Failure::Usage(e.to_string()))?;
    let snapshot: Snapshot = rt.block_on(provider.snapshot())?;
    tracing::debug!(
        provider = provider.name(),
        gpus = snapshot.gpus.len(),
        "snapshot taken"
    );

    let visible = Visible::from_env(&snapshot.gpus);
    let mut rng = match args.seed {
        Some(seed) => gpu_core::fastrand::Rng::with_seed(seed),
        None => gpu_core::fastrand::Rng::new(),
    };
    let write = WriteOptions { uuids: args.uuid };
    let result = gpu_core::select(
        &snapshot,
        &request,
        strategy.as_ref(),
        &visible,
        write,
        &mut rng,
    );
    // When nothing is visible the error itself explains the variable; say it once.
    let explained_by_error = matches!(result, Err(SelectError::NoMatch { visible: 0, .. }));
    if let (Some(problem), false) = (visible.warning(), explained_by_error) {
        out::eprint_line(
            "warning: ",
            &format!(
                "CUDA_VISIBLE_DEVICES='{}': {problem}",
                visible.value.as_deref().unwrap_or_default()
            ),
        );
    }
    let selection = match result {
        Ok(s) => s,
        Err(SelectError::NoMatch { .. }) if args.silent => return Ok(()),
        Err(e) => return Err(no_match(e, &args.strategy, args.explain)),
    };
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
                            || v.reasons == [gpu_core::Reason::HiddenByCudaVisibleDevices])
                })
                .map(ToString::to_string)
                .collect();
            // Hint only where it helps: a GPU that load alone keeps out.
            let idle_defaults = verdicts.iter().any(|v| {
                !v.reasons.is_empty()
                    && v.reasons.iter().all(|r| {
                        matches!(
                            r,
                            gpu_core::Reason::Utilization { max: 0, .. }
                                | gpu_core::Reason::MemoryUtilization { max: 0, .. }
                                | gpu_core::Reason::Processes { max: 0, .. }
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
        SelectError::UnknownDevice { .. } => Failure::NoGpu {
            message: error.to_string(),
            details: Vec::new(),
        },
        SelectError::Strategy(e) => Failure::Usage(e.to_string()),
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
