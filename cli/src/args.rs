//! Command-line definition (clap derive). `--help` is the manual.

use std::ffi::OsString;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand};
use gpusel_core::DeviceSpec;
use gpusel_strategies::StrategyKind;
use strum::IntoEnumIterator;

const ABOUT: &str = "Pick idle NVIDIA GPUs for a job, set CUDA_VISIBLE_DEVICES, and run it";

const LONG_ABOUT: &str = "\
Pick idle NVIDIA GPUs for a job, set CUDA_VISIBLE_DEVICES, and run it.

  gpusel -- python train.py          run the job on one idle GPU
  gpusel -n 2 --mem 20GiB -- CMD     two GPUs with 20 GiB free each
  gpusel                             print the choice, e.g. 3 (for $(gpusel))
  eval \"$(gpusel env)\"               export it into the current shell
  gpusel list                        table of the GPUs, their processes and leases
  gpusel list --watch                the same, redrawn every 2s until Ctrl-C
  gpusel status --json               the GPUs this job may use, for scripts

If CUDA_VISIBLE_DEVICES is already set (Slurm, Kubernetes, you), gpusel chooses only among those devices and writes back a subset of the same tokens. Otherwise it writes NVML indices (the numbers nvidia-smi shows) and sets CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA numbers the GPUs the same way; --uuid writes GPU UUIDs instead.

Leases: `gpusel -- CMD` leases the GPUs it chooses (an exclusive lock per GPU in /run/lock, shared by every user and by systemd services, unlike /tmp under PrivateTmp=yes) and hands the lease to CMD across exec, so no other gpusel is given those GPUs until CMD exits, however it exits. GPUs leased by others are never chosen. The printing and `env` modes can only report a choice: their lease ends when gpusel exits, before your job starts, so two people who run them at the same moment can still be told the same GPU. Use `gpusel -- CMD` wherever you can.

Waiting: --wait polls every --interval until the request can be met; --timeout bounds the wait (exit 3 when it runs out).

Configuration: /etc/gpusel/config.toml (the site's), then $XDG_CONFIG_HOME/gpusel/config.toml (or ~/.config/gpusel/config.toml), then GPUSEL_* variables, then flags; later wins, bans add up. `gpusel config` shows the result and where each value comes from.";

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  2    usage error (bad flag or value)
  3    no GPU satisfies the request (with --wait: none did before --timeout)
  4    the provider failed (no driver, unreadable snapshot, ...)
  5    the lock directory cannot be used (see --lock-dir, --no-lease)
With `-- CMD`, gpusel exits with CMD's own status once CMD runs. If gpusel fails before that, it exits 125 (the reason is on stderr, after `gpusel:`); 126 if CMD cannot be executed, 127 if it is not found. These are the codes of env(1), nice(1) and timeout(1).

Environment:
  CUDA_VISIBLE_DEVICES   devices gpusel may choose from (unset: all)
  GPUSEL_PROVIDER        default for --provider
  GPUSEL_NVML_LIB        the NVML library to load (default libnvidia-ml.so.1)
  GPUSEL_STRATEGY        default for --strategy
  GPUSEL_LOCK_DIR        default for --lock-dir
  GPUSEL_INTERVAL        default for --interval
  GPUSEL_HTTP_TOKEN_FILE file holding the bearer token of an http:// agent
  GPUSEL_HTTP_TIMEOUT    limit on one request to an http:// agent (default 10s)
  GPUSEL_PLUGIN_TIMEOUT  limit on one run of a plugin gpusel-provider-NAME (default 10s)
  GPUSEL_IDLE_WINDOW     default for --idle-window
  GPUSEL_UNACCOUNTED_MEMORY  memory no listed process holds that an idle GPU may show (256MiB, 1%)
  GPUSEL_BAN             GPUs never to give out, added to the config's bans (0,GPU-5f2c)
  GPUSEL_SYSTEM_CONFIG   the site config file to read instead of /etc/gpusel/config.toml
  XDG_CONFIG_HOME        where the user's gpusel/config.toml is (default ~/.config)
  RUST_LOG               log filter, overrides -v (e.g. RUST_LOG=gpusel_core=debug)";

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
// Parsed once per process: boxing SelectArgs would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Print `export` lines for the chosen GPUs, for `eval "$(gpusel env)"`.
    /// Holds no lease once it exits: prefer `gpusel -- CMD`.
    Env(SelectArgs),
    /// Show the GPUs, their load and processes, and who leases them.
    #[command(long_about = LIST_ABOUT)]
    List(ListArgs),
    /// Print the state of the GPUs this process may use, for scripts.
    #[command(long_about = STATUS_ABOUT)]
    Status(StatusArgs),
    /// Show the effective configuration and where each value comes from.
    Config,
    /// Show gpusel's waiters (`--wait`) in queue order: first come, first
    /// served. An older waiter has first claim on every GPU its request could
    /// use; a younger one takes only what no older one could. Jobs started
    /// without gpusel are not in the queue.
    Queue,
    /// Show how the GPUs are connected (NVLink, PCIe, NUMA), as
    /// `nvidia-smi topo -m` does.
    #[command(long_about = TOPO_ABOUT)]
    Topo,
    /// Serve the GPUs over HTTP: a dashboard (/), JSON (/api/v1/snapshot),
    /// Prometheus metrics (/metrics) and /healthz. Read-only.
    #[command(long_about = SERVE_ABOUT)]
    Serve(ServeArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell).
    #[command(long_about = COMPLETIONS_ABOUT)]
    Completions(CompletionsArgs),
    /// Print the manual page gpusel(1) in roff, or write every page with --dir.
    #[command(long_about = MAN_ABOUT)]
    Man(ManArgs),
}

const TOPO_ABOUT: &str = "\
Show how the GPUs are connected, as `nvidia-smi topo -m` does: one row and column a GPU, each cell what joins the two (NV# for # bonded NVLinks, PIX one PCIe switch, PXB several, PHB a host bridge, NODE one NUMA node, SYS across NUMA nodes, N/A unknown), then each GPU's CPU and NUMA affinity and the legend. `-n 2` and more prefer GPUs joined in that order. --json prints the same matrix. Works with any provider that reads topology: nvml, a snapshot file written by `gpusel list --json`, or an agent (http://HOST:PORT).";

const COMPLETIONS_ABOUT: &str = "\
Print the shell completion script for SHELL, generated from the same definition as --help. The Debian package installs bash's, zsh's and fish's already. By hand, for one user:

  bash        gpusel completions bash > ~/.local/share/bash-completion/completions/gpusel
  zsh         gpusel completions zsh > ~/.zfunc/_gpusel   (with fpath+=(~/.zfunc) before compinit in ~/.zshrc)
  fish        gpusel completions fish > ~/.config/fish/completions/gpusel.fish
  elvish      eval (gpusel completions elvish | slurp)   (in ~/.config/elvish/rc.elv)
  powershell  gpusel completions powershell | Out-String | Invoke-Expression   (in $PROFILE)";

/// Options of `gpusel completions`.
#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

const MAN_ABOUT: &str = "\
Print the manual page gpusel(1) in roff, generated from the same definition as --help: `gpusel man | man -l -` reads it. With --dir, write gpusel.1 and a page per subcommand (gpusel-list.1, gpusel-serve.1, ...) into that directory, creating it, and print their paths; `man -M` or MANPATH finds them under a man1 directory. The Debian package installs them all in /usr/share/man/man1.";

/// Options of `gpusel man`.
#[derive(Debug, Args, Clone)]
pub struct ManArgs {
    /// Write every page into this directory instead of printing gpusel(1).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

const SERVE_ABOUT: &str = "\
Serve the GPUs over HTTP, read-only: an HTML dashboard at /, the snapshot as JSON at /api/v1/snapshot (the schema of `gpusel list --json`, plus an `agent` status object), nvgpu's agent JSON at /gpu_status (for nvgpu masters; is_available is gpusel's [ ] rule), Prometheus metrics at /metrics, and /healthz (200 `ok` or 503 `failing`).

One snapshot is taken every --interval in the background and every request is answered from it: requests never touch the driver. When the provider fails, the last good snapshot is served with the error (the dashboard says so, the JSON has agent.up=false and agent.last_error, /metrics has gpusel_up 0).

Safety: listens on 127.0.0.1 only unless --listen says otherwise. Nothing in it can start, stop or lease anything. Process command lines are not served (arguments can hold secrets) unless --expose-cmdline; names and users are. With --token-file, every request but /healthz needs the token, as `Authorization: Bearer TOKEN` or as the password of the browser's login prompt. Stops cleanly on SIGTERM or SIGINT.";

/// Options of `gpusel serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address and port to listen on. The default serves this machine only;
    /// `0.0.0.0:9477` (or `[::]:9477`) exposes it to the network (use
    /// --token-file then). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9477")]
    pub listen: std::net::SocketAddr,

    /// How often to take a snapshot (500ms, 2s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_interval)]
    pub interval: std::time::Duration,

    /// Require the token in this file (its first line, 16 characters or more)
    /// on every request except /healthz.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,

    /// Serve processes' full command lines and lease holders' and waiters'
    /// full commands, which can hold passwords and tokens. Off by default.
    #[arg(long)]
    pub expose_cmdline: bool,

    /// The most connections served at once. At the cap, the oldest
    /// connection not in the middle of a request (idle, or still sending its
    /// headers) is closed to make room for a new one. Each takes a file
    /// descriptor: keep this under `ulimit -n`.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Be a master: poll every agent this TOML file lists ([[agent]] url =
    /// "http://HOST:PORT", optional name, token_file, and kind = "nvgpu"
    /// for an nvgpu agent; url = "self" for this machine's own GPUs) every
    /// --interval, and show all nodes at /,
    /// /api/v1/cluster and /metrics. A node that is down or slow is shown as
    /// such and never holds up the page. See examples/agents.toml.
    #[arg(long, value_name = "FILE")]
    pub agents: Option<std::path::PathBuf>,
}

const LIST_ABOUT: &str = "\
Show the GPUs, their load and processes, and who leases them.

One row per GPU, and per MIG device under its parent: index, availability, model, GPU and memory-bandwidth utilization, memory used/total (with a bar), temperature, power draw/limit and SM clock. Under each device, one line per process: pid, user, GPU memory, when it started and its command (--full-cmd: with its arguments); then who leases the device through gpusel.

Availability, as nvgpu shows it:
  [ ]  free: no process, 0% GPU and memory utilization, no lease: what plain gpusel -- CMD takes (memory utilization that the provider does not report counts as 0 when GPU utilization is 0 and no process is listed; an explicit --max-mem-util below 100 still wants it)
  [~]  in use by the processes listed under it
  [L]  leased by a gpusel job (gpusel never gives it to another)
  [!]  in use by a process this machine's /proc does not show (another PID namespace, such as a container, or hidepid=), or the driver would not list its processes or report its load: someone may use it and nobody here can say who

Width: the table fits the terminal, or COLUMNS when set, by leaving out the SM clock, memory utilization, the bar, temperature and power, in that order, and then cutting names and commands with …; --wide shows every column whole, with performance state, PCI bus id, UUID and process kind (C compute, G graphics). Into a pipe or a file (and no COLUMNS) nothing is cut, as with ps. Start times are counted back from when the snapshot was taken.

Color, by load (green light, yellow moderate, red heavy): on a terminal unless NO_COLOR is set or TERM=dumb; CLICOLOR_FORCE=1 forces it; --color overrides both. Names and commands are shown with control characters escaped (\\e, \\x07, \\u{202e}), so no process can write to your terminal through them.

--json prints the snapshot in gpusel's versioned schema (the one `--provider file:PATH` replays) instead of the table.";

const STATUS_ABOUT: &str = "\
Print the state of the GPUs this process may use, for scripts (gpuselect's gpustatus).

Only the devices CUDA_VISIBLE_DEVICES lets CUDA see (all when it is unset); --all for every GPU. One line per device after a header line: DEVICE (index as `gpusel list` shows it; GPU:MIG for a MIG device), UTIL and MEM_UTIL (%), PROCESSES (count), PSTATE (0-15), POWER_MW (milliwatts), TEMP_C (degrees Celsius), UUID and NAME (last, as it may hold spaces). A value the driver does not report is `-`, never 0.

--json prints the same devices as a snapshot in gpusel's versioned schema (as `gpusel list --json`).";

/// `gpusel list` options.
#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    /// Redraw the table in place every INTERVAL (default 2s) until Ctrl-C,
    /// like `gpustat -i` or `watch`: 500ms, 2s, 1m. Your screen comes back
    /// as it was on Ctrl-C, and until `fg` on Ctrl-Z.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s", value_parser = parse_interval)]
    pub watch: Option<std::time::Duration>,

    /// Show every column whole (performance state, PCI bus id, UUID, process
    /// kind), however wide the terminal.
    #[arg(long)]
    pub wide: bool,

    /// Show each process's whole command line, not only its name.
    #[arg(long)]
    pub full_cmd: bool,

    /// When to color the table: auto (a terminal, unless NO_COLOR is set),
    /// always, never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: crate::term::ColorChoice,
}

/// `gpusel status` options.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// Every GPU, not only those CUDA_VISIBLE_DEVICES lets CUDA see.
    #[arg(long)]
    pub all: bool,
}

/// Options every mode takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where GPU state comes from: `auto` (NVML, then nvidia-smi), `nvml[:LIB]`,
    /// `smi[:PATH]`, `file:PATH` to replay a snapshot written by
    /// `gpusel list --json`, or `http://HOST:PORT[/PREFIX]` for another
    /// node's GPUs from its `gpusel serve` (list and print a choice; no local
    /// lease, no `-- CMD`). Any other `NAME[:ARG]` runs the plugin
    /// `gpusel-provider-NAME [ARG]` found on PATH, which prints one snapshot
    /// (see docs/providers.md). Default: auto (or the config's provider, or
    /// GPUSEL_PROVIDER).
    #[arg(long, short = 'p', global = true, value_name = "PROVIDER")]
    pub provider: Option<String>,

    /// Directory of the lease lock files, shared by every user of the
    /// machine. Default: /run/lock (or the config's lock_dir, or
    /// GPUSEL_LOCK_DIR): /run/lock is one machine-wide tmpfs that systemd's
    /// PrivateTmp= does not hide, unlike /tmp. Created mode 1777 (sticky, like
    /// /tmp) when missing; refused when it is a symlink, owned by another
    /// user, or writable by others without the sticky bit.
    #[arg(long, global = true, value_name = "DIR")]
    pub lock_dir: Option<std::path::PathBuf>,

    /// Print JSON (the versioned schema shared by every mode) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// How far back idleness looks: with NVML, a GPU is idle only if no
    /// utilization sample the driver kept over this window exceeds the
    /// limit (a job paused for data loading reads 0% at one instant). 0
    /// reads the instant value only. Default: 10s (or the config's
    /// idle.window, or GPUSEL_IDLE_WINDOW).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_window: Option<std::time::Duration>,

    /// Log more to stderr: -v info, -vv debug, -vvv trace. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// What the job needs, and how to choose.
#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// How to choose among the GPUs that pass every filter. Default:
    /// idle-random (or the config's strategy, or GPUSEL_STRATEGY).
    #[arg(
        long,
        short = 's',
        value_name = "STRATEGY",
        value_parser = strategy_parser()
    )]
    pub strategy: Option<String>,

    /// How many GPUs: N exactly, `all` (every GPU that qualifies, at least
    /// one; nvgpu's `available`), or a range: `2..4` (as many as qualify, 2
    /// to 4), `2..` (at least 2), `..4` (1 to 4).
    #[arg(long, short = 'n', alias = "num-gpus", default_value = "1", value_name = "N|all|MIN..MAX", value_parser = parse_count)]
    pub count: gpusel_core::Count,

    /// Minimum free memory per GPU: 800MiB, 20GiB, 1.5GB, 512M. MiB/GiB are
    /// powers of 1024, MB/GB and M/G powers of 1000.
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| gpusel_core::parse_size(s).map_err(|e| e.to_string()))]
    pub mem: Option<u64>,

    /// Maximum GPU utilization, 0-100 (%). idle-random defaults it to 0.
    #[arg(long, alias = "util", value_name = "PCT", value_parser = parse_percent)]
    pub max_util: Option<u8>,

    /// Maximum memory-bandwidth utilization, 0-100 (%). idle-random defaults it to 0.
    #[arg(long, aliases = ["mem_util", "mem-util", "max_mem_util"], value_name = "PCT", value_parser = parse_percent)]
    pub max_mem_util: Option<u8>,

    /// Maximum number of processes already on a GPU. idle-random defaults it to 0.
    #[arg(long, alias = "processes", value_name = "N", value_parser = parse_process_count)]
    pub max_processes: Option<usize>,

    /// Maximum power draw per GPU, in watts: 80W, 250, 87.5W.
    #[arg(long, value_name = "WATTS", value_parser = |s: &str| gpusel_core::parse_power(s).map_err(|e| e.to_string()))]
    pub max_power: Option<u32>,

    /// Maximum memory in use per GPU: a size (2GiB) or a percentage of the
    /// GPU's total (20%). nvgpu's `available` is `-n all --max-mem-used 20%`.
    #[arg(long, value_name = "SIZE|PCT", value_parser = |s: &str| gpusel_core::MemoryAmount::parse(s).map_err(|e| e.to_string()))]
    pub max_mem_used: Option<gpusel_core::MemoryAmount>,

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

    /// Do not lease the GPUs: choose among all of them, including those other
    /// gpusel jobs hold, and hold nothing. Without it, `gpusel -- CMD` holds
    /// its GPUs until CMD exits; the print and `env` modes skip leased GPUs
    /// but hold theirs only until gpusel exits.
    #[arg(long)]
    pub no_lease: bool,

    /// Share the GPU instead of leasing it whole: reserve --mem on it, beside
    /// other sharers. A share is admitted only while the memory the driver
    /// reports free, less what the GPU's other shares reserved and have not
    /// allocated yet, still fits --mem; a GPU holds one exclusive job or any
    /// number of shares, never both. Pair it with --strategy best-fit to pack
    /// small jobs onto the fullest GPU that fits.
    #[arg(long, requires = "mem", conflicts_with = "no_lease")]
    pub share: bool,

    /// When no GPU fits, wait until one does, checking every --interval
    /// (for at most the config's timeout, if it sets one).
    #[arg(long, short = 'w')]
    pub wait: bool,

    /// Do not wait, even if the config (wait = true) or GPUSEL_WAIT says to.
    #[arg(long, conflicts_with_all = ["wait", "timeout"])]
    pub no_wait: bool,

    /// Give up waiting after this long (30s, 5m, 1h30m, or seconds: 3600)
    /// and exit 3 with the reasons. Implies --wait.
    #[arg(long, short_alias = 't', value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// How often to check while waiting (500ms, 5s, 1m, or seconds). Default:
    /// 5s (or the config's interval, or GPUSEL_INTERVAL).
    #[arg(long, short_alias = 'i', value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Option<std::time::Duration>,

    /// Instead of waiting for idle GPUs, take the least used ones that pass
    /// the other filters now (the least-used strategy).
    #[arg(long, short = 'l', conflicts_with_all = ["wait", "timeout", "strategy"])]
    pub least_used: bool,

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

fn parse_count(s: &str) -> Result<gpusel_core::Count, String> {
    gpusel_core::Count::parse(s).map_err(|e| e.to_string())
}

fn parse_process_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("'{s}' is not a number of processes; write a whole number, e.g. 0"))
}

fn parse_percent(s: &str) -> Result<u8, String> {
    gpusel_core::parse_percent(s).map_err(|e| e.to_string())
}

/// Parses a duration as `--timeout` takes it: `30s`, `5m`, `1h30m`,
/// `500ms`, or a number of seconds (`3600`). The one parser of gpusel
/// ([`gpusel_core::parse_duration`]), as in the config and `GPUSEL_*`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    gpusel_core::parse_duration(s).map_err(|e| e.to_string())
}

/// A duration that is long enough to poll with.
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    gpusel_core::parse_duration_min(s, gpusel_core::config::MIN_INTERVAL).map_err(|e| e.to_string())
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
        assert_eq!(parse_count("3").map(|n| n.min().get()), Ok(3));
        assert_eq!(parse_count("all"), Ok(gpusel_core::Count::all()));
        assert!(parse_devices(",").is_err());
        assert_eq!(
            parse_duration("5m"),
            Ok(std::time::Duration::from_secs(300))
        );
        assert!(
            parse_duration("5 parsecs")
                .unwrap_err()
                .contains("e.g. 30s")
        );
        assert!(parse_interval("0s").unwrap_err().contains("too short"));
        assert_eq!(
            parse_duration("3600"),
            Ok(std::time::Duration::from_secs(3600))
        );
    }
}
