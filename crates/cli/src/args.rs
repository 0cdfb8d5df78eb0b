//! Command-line definition (clap derive). `--help` is the manual.

use std::ffi::OsString;
use std::num::NonZeroUsize;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand};
use gpu_core::DeviceSpec;
use strategies::StrategyKind;
use strum::IntoEnumIterator;

const ABOUT: &str = "Pick idle NVIDIA GPUs for a job, set CUDA_VISIBLE_DEVICES, and run it";

const LONG_ABOUT: &str = "\
Pick idle NVIDIA GPUs for a job, set CUDA_VISIBLE_DEVICES, and run it.

  gpusel -- python train.py          run the job on one idle GPU
  gpusel -n 2 --mem 20GiB -- CMD     two GPUs with 20 GiB free each
  gpusel                             print the choice, e.g. 3 (for $(gpusel))
  eval \"$(gpusel env)\"               export it into the current shell
  gpusel list                        table of the GPUs

If CUDA_VISIBLE_DEVICES is already set (Slurm, Kubernetes, you), gpusel chooses only among those devices and writes back a subset of the same tokens. Otherwise it writes NVML indices (the numbers nvidia-smi shows) and sets CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA numbers the GPUs the same way; --uuid writes GPU UUIDs instead.

Only `gpusel -- CMD` hands the GPUs straight to the job: the printing and `env` modes report a choice and exit, so two people who run them at the same moment can be told the same GPU.";

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  2    usage error (bad flag or value)
  3    no GPU satisfies the request
  4    the provider failed (no driver, unreadable snapshot, ...)
With `-- CMD`, gpusel exits with CMD's own status once CMD runs. If gpusel fails before that, it exits 125 (the reason is on stderr, after `gpusel:`); 126 if CMD cannot be executed, 127 if it is not found. These are the codes of env(1), nice(1) and timeout(1).

Environment:
  CUDA_VISIBLE_DEVICES   devices gpusel may choose from (unset: all)
  GPUSEL_PROVIDER        default for --provider
  GPUSEL_NVML_LIB        the NVML library to load (default libnvidia-ml.so.1)
  GPUSEL_STRATEGY        default for --strategy
  RUST_LOG               log filter, overrides -v (e.g. RUST_LOG=gpu_core=debug)";

/// gpusel's command line.
#[derive(Debug, Parser)]
#[command(
    name = "gpusel",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXIT_CODES,
    after_help = "Run `gpusel --help` for exit codes, environment and examples.",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(flatten)]
    pub select: SelectArgs,

    /// The command to run on the chosen GPUs (after `--`). gpusel replaces
    /// itself with it: same pid, signals go straight to it, its exit status is
    /// gpusel's.
    #[arg(last = true, value_name = "CMD", allow_hyphen_values = true)]
    pub command: Vec<OsString>,

    #[command(subcommand)]
    pub sub: Option<Sub>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Print `export` lines for the chosen GPUs, for `eval "$(gpusel env)"`.
    Env(SelectArgs),
    /// Show the GPUs the provider sees.
    List,
}

/// Options every mode takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where GPU state comes from: `auto` (the first that works here, NVML
    /// first), `nvml` (or `nvml:LIBRARY` to load another libnvidia-ml), or
    /// `file:PATH` to read a snapshot written by `gpusel list --json`.
    #[arg(
        long,
        short = 'p',
        global = true,
        env = "GPUSEL_PROVIDER",
        default_value = "auto",
        value_name = "PROVIDER"
    )]
    pub provider: String,

    /// Print JSON (the versioned schema shared by every mode) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Log more to stderr: -v info, -vv debug, -vvv trace. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// What the job needs, and how to choose.
#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// How to choose among the GPUs that pass every filter.
    #[arg(
        long,
        short = 's',
        env = "GPUSEL_STRATEGY",
        default_value = "idle-random",
        value_name = "STRATEGY",
        value_parser = strategy_parser()
    )]
    pub strategy: String,

    /// Number of GPUs to select.
    #[arg(long, short = 'n', default_value = "1", value_name = "N", value_parser = parse_count)]
    pub count: NonZeroUsize,

    /// Minimum free memory per GPU: 800MiB, 20GiB, 1.5GB, 512M. MiB/GiB are
    /// powers of 1024, MB/GB and M/G powers of 1000.
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| gpu_core::parse_size(s).map_err(|e| e.to_string()))]
    pub mem: Option<u64>,

    /// Maximum GPU utilization, 0-100 (%). idle-random defaults it to 0.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub max_util: Option<u8>,

    /// Maximum memory-bandwidth utilization, 0-100 (%). idle-random defaults it to 0.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub max_mem_util: Option<u8>,

    /// Maximum number of processes already on a GPU. idle-random defaults it to 0.
    #[arg(long, value_name = "N", value_parser = parse_process_count)]
    pub max_processes: Option<usize>,

    /// Maximum power draw per GPU, in watts: 80W, 250, 87.5W.
    #[arg(long, value_name = "WATTS", value_parser = |s: &str| gpu_core::parse_power(s).map_err(|e| e.to_string()))]
    pub max_power: Option<u32>,

    /// Only GPUs whose name contains this text (case-insensitive): A100, "RTX 6000".
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,

    /// Only these GPUs: indices as `gpusel list` shows them, MIG devices as
    /// GPU:MIG (3:1), or UUIDs / unique UUID prefixes. Comma-separated or repeated.
    #[arg(long, short = 'd', value_name = "LIST", value_parser = parse_devices, action = clap::ArgAction::Append)]
    pub devices: Vec<Vec<DeviceSpec>>,

    /// Never these GPUs (same forms as --devices).
    #[arg(long, short = 'x', value_name = "LIST", value_parser = parse_devices, action = clap::ArgAction::Append)]
    pub exclude: Vec<Vec<DeviceSpec>>,

    /// Write GPU UUIDs into CUDA_VISIBLE_DEVICES instead of indices (MIG
    /// devices are always written as UUIDs).
    #[arg(long)]
    pub uuid: bool,

    /// Print on stderr why each GPU was or was not chosen.
    #[arg(long)]
    pub explain: bool,

    /// When no GPU fits, print nothing and exit 0 (for `$(gpusel --silent)`).
    /// Has no effect on other failures; cannot be used with `-- CMD`.
    #[arg(long)]
    pub silent: bool,

    /// Seed for the random strategies, to reproduce a choice.
    #[arg(long, env = "GPUSEL_SEED", hide = true)]
    pub seed: Option<u64>,
}

/// Selection flags given before a subcommand (`gpusel --count 2 env`), where
/// they would be silently ignored: the subcommand has its own.
pub fn misplaced_select_flags(matches: &clap::ArgMatches) -> Vec<String> {
    use clap::parser::ValueSource;
    let Some(sub) = matches.subcommand_name() else {
        return Vec::new();
    };
    let cmd = <Cli as clap::CommandFactory>::command();
    let select_ids: Vec<String> = <SelectArgs as clap::Args>::augment_args(clap::Command::new("x"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    cmd.get_arguments()
        .filter(|a| select_ids.iter().any(|id| id == a.get_id().as_str()))
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|a| {
            let flag = a.get_long().unwrap_or_default();
            if sub == "env" {
                format!("--{flag} must come after `{sub}`: gpusel {sub} --{flag} ...")
            } else {
                format!("--{flag} has no meaning for `{sub}`")
            }
        })
        .collect()
}

fn strategy_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        StrategyKind::iter().map(|k| PossibleValue::new(k.name()).help(k.description())),
    )
}

fn parse_count(s: &str) -> Result<NonZeroUsize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) => NonZeroUsize::new(n).ok_or_else(|| "the count must be at least 1".into()),
        Err(_) => Err(format!(
            "'{s}' is not a count; write a whole number, e.g. 2"
        )),
    }
}

fn parse_process_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("'{s}' is not a number of processes; write a whole number, e.g. 0"))
}

fn parse_percent(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    match t.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a percentage; write 0 to 100, e.g. 10 or 10%"
        )),
    }
}

fn parse_devices(s: &str) -> Result<Vec<DeviceSpec>, String> {
    let list = DeviceSpec::parse_list(s).map_err(|e| e.to_string())?;
    if list.is_empty() {
        return Err("the list is empty; write e.g. 0,2 or GPU-5f2c".into());
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_percent("10%"), Ok(10));
        assert!(parse_percent("101").is_err());
        assert!(parse_count("0").unwrap_err().contains("at least 1"));
        assert_eq!(parse_count("3").map(|n| n.get()), Ok(3));
        assert!(parse_devices(",").is_err());
    }
}
