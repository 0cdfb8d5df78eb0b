//! The site's configuration, read exactly as the `gpusel` command reads it:
//! `/etc/gpusel/config.toml` (the site's), then the user's
//! `$XDG_CONFIG_HOME/gpusel/config.toml` (or `~/.config/...`), then the
//! `GPUSEL_*` variables. Later wins; bans add up, so a user cannot lift the
//! site's. A program that loads it shares the CLI's lock directory, bans and
//! default filters, so its leases and `gpusel -- CMD`'s see each other.
//!
//! ```no_run
//! let config = gpusel_core::Config::load()?;
//! println!("leases live in {}", config.lock_dir.value.display());
//! # Ok::<(), gpusel_core::ConfigError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{DurationError, parse_duration_min};
use crate::request::{Ban, BanRule, DeviceSpec};

/// The site's file, unless `GPUSEL_SYSTEM_CONFIG` names another.
pub const SYSTEM_CONFIG: &str = "/etc/gpusel/config.toml";
/// The provider used when nothing names one: NVML, then nvidia-smi.
pub const DEFAULT_PROVIDER: &str = "auto";
/// The strategy used when nothing names one.
pub const DEFAULT_STRATEGY: &str = "idle-random";
/// How often a waiter polls when nothing says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest poll interval accepted (a shorter one would spin).
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The default limit on one request to an `http://` agent.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit on making the connection to an `http://` agent.
pub const DEFAULT_HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The default limit on a plugin provider's answer.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest timeout accepted for a provider.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Environment variable naming a file that holds an `http://` agent's token.
pub const ENV_HTTP_TOKEN_FILE: &str = "GPUSEL_HTTP_TOKEN_FILE";
/// Environment variable holding the limit on one request to an agent.
pub const ENV_HTTP_TIMEOUT: &str = "GPUSEL_HTTP_TIMEOUT";
/// Environment variable holding the limit on connecting to an agent.
pub const ENV_HTTP_CONNECT_TIMEOUT: &str = "GPUSEL_HTTP_CONNECT_TIMEOUT";
/// Environment variable holding the limit on a plugin provider's answer.
pub const ENV_PLUGIN_TIMEOUT: &str = "GPUSEL_PLUGIN_TIMEOUT";
/// Overrides `idle.window` (and the built-in 10 s).
pub const ENV_IDLE_WINDOW: &str = "GPUSEL_IDLE_WINDOW";
/// Overrides `idle.unaccounted_memory`.
pub const ENV_UNACCOUNTED_MEMORY: &str = "GPUSEL_UNACCOUNTED_MEMORY";
/// How far back idleness looks into the driver's utilization samples.
pub const DEFAULT_IDLE_WINDOW: Duration = Duration::from_secs(10);

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Built in.
    Default,
    /// A config file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag (or, in a library, the program itself).
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(name) => write!(f, "${name}"),
            Source::Flag(name) => f.write_str(name),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A value and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Where it was set.
    pub source: Source,
}

impl<T> Setting<T> {
    /// `value`, set by `source`.
    pub fn new(value: T, source: Source) -> Self {
        Setting { value, source }
    }
}

/// Default filters, used when a request does not set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Minimum free memory, bytes (`--mem`).
    pub mem: Option<Setting<u64>>,
    /// Maximum GPU utilization, % (`--max-util`).
    pub max_util: Option<Setting<u8>>,
    /// Maximum memory-bandwidth utilization, % (`--max-mem-util`).
    pub max_mem_util: Option<Setting<u8>>,
    /// Maximum processes (`--max-processes`).
    pub max_processes: Option<Setting<usize>>,
    /// Maximum power draw, milliwatts (`--max-power`).
    pub max_power: Option<Setting<u32>>,
    /// Maximum memory in use (`--max-mem-used`).
    pub max_mem_used: Option<Setting<crate::MemoryAmount>>,
}

/// Largest config file read: a site's settings take a few KiB.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// What one user may hold at once (`[limits]`): a request that would take
/// them past it waits (with `--wait`) or fails saying so. A later file can
/// only lower a limit, so a user's own config cannot lift the site's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Devices (leased or shared) per user.
    pub gpus_per_user: Option<Setting<usize>>,
    /// Memory reserved in shares per user, bytes.
    pub share_memory_per_user: Option<Setting<u64>>,
}

/// A configuration that cannot be used. Each says which file or variable,
/// and where in the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file exists but cannot be read.
    #[error("cannot read config file {}: {source}; fix it (a regular file of at most 1 MiB, readable by you) or set GPUSEL_SYSTEM_CONFIG / XDG_CONFIG_HOME to another", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why: an OS error, or not a regular file, or too large.
        source: crate::FileReadError,
    },
    /// A config file is not valid TOML, has an unknown key, or a bad value.
    #[error("config file {}{}: {message}", path.display(), at.map(|(l, c)| format!(", line {l}, column {c}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// Line and column (1-based), when known.
        at: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
        /// True when the file itself is malformed (syntax or unknown key),
        /// rather than one value in it.
        malformed: bool,
    },
    /// A `GPUSEL_*` variable has a bad value.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The configuration in force.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Config files looked at, and whether each was there.
    pub files: Vec<(PathBuf, bool)>,
    /// Lease lock directory.
    pub lock_dir: Setting<PathBuf>,
    /// Provider spec (`auto`, `nvml`, `file:PATH`, ...).
    pub provider: Setting<String>,
    /// Strategy name.
    pub strategy: Setting<String>,
    /// Poll period while waiting.
    pub interval: Setting<Duration>,
    /// Whether a selection waits for its devices by default (autocvd's
    /// behaviour); `--no-wait` turns it off for one run.
    pub wait: Setting<bool>,
    /// The longest a wait lasts when the run gives no `--timeout`
    /// (`None`: for ever). Setting it does not make runs wait.
    pub timeout: Option<Setting<Duration>>,
    /// Devices never given out.
    pub bans: Vec<Ban>,
    /// Default filters.
    pub filters: Filters,
    /// What one user may hold at once.
    pub limits: Limits,
    /// The bearer token file for `http://` agents.
    pub http_token_file: Option<Setting<PathBuf>>,
    /// The limit on one request to an `http://` agent.
    pub http_timeout: Setting<Duration>,
    /// The limit on making the connection to an `http://` agent.
    pub http_connect_timeout: Setting<Duration>,
    /// The limit on a plugin provider's answer.
    pub plugin_timeout: Setting<Duration>,
    /// How far back the NVML provider reads the driver's utilization
    /// samples (`idle.window`, `--idle-window`); zero reads only the
    /// instant value.
    pub idle_window: Setting<Duration>,
    /// Memory no listed process holds that a device may show and still be
    /// idle (`idle.unaccounted_memory`); unset: the built-in tolerance.
    pub unaccounted_memory: Option<Setting<crate::MemoryAmount>>,
}

impl Default for Config {
    /// gpusel's built-in defaults, with no file or variable read.
    fn default() -> Self {
        Config {
            files: Vec::new(),
            lock_dir: Setting::new(PathBuf::from(crate::DEFAULT_LOCK_DIR), Source::Default),
            provider: Setting::new(DEFAULT_PROVIDER.into(), Source::Default),
            strategy: Setting::new(DEFAULT_STRATEGY.into(), Source::Default),
            interval: Setting::new(DEFAULT_INTERVAL, Source::Default),
            wait: Setting::new(false, Source::Default),
            timeout: None,
            bans: Vec::new(),
            filters: Filters::default(),
            limits: Limits::default(),
            http_token_file: None,
            http_timeout: Setting::new(DEFAULT_HTTP_TIMEOUT, Source::Default),
            http_connect_timeout: Setting::new(DEFAULT_HTTP_CONNECT_TIMEOUT, Source::Default),
            plugin_timeout: Setting::new(DEFAULT_PLUGIN_TIMEOUT, Source::Default),
            idle_window: Setting::new(DEFAULT_IDLE_WINDOW, Source::Default),
            unaccounted_memory: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    lock_dir: Option<PathBuf>,
    provider: Option<String>,
    strategy: Option<String>,
    interval: Option<toml::Spanned<String>>,
    wait: Option<bool>,
    timeout: Option<toml::Spanned<String>>,
    #[serde(default)]
    ban: FileBan,
    #[serde(default)]
    filters: FileFilters,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    plugin: FilePlugin,
    #[serde(default)]
    idle: FileIdle,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIdle {
    window: Option<toml::Spanned<String>>,
    unaccounted_memory: Option<toml::Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    token_file: Option<PathBuf>,
    timeout: Option<toml::Spanned<String>>,
    connect_timeout: Option<toml::Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    gpus_per_user: Option<toml::Spanned<i64>>,
    share_memory_per_user: Option<toml::Spanned<String>>,
}

/// Keeps the lower of two limits: a later file cannot lift an earlier one.
fn lower<T: PartialOrd>(slot: &mut Option<Setting<T>>, value: T, source: Source) {
    if slot.as_ref().is_none_or(|s| value < s.value) {
        *slot = Some(Setting::new(value, source));
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlugin {
    timeout: Option<toml::Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBan {
    #[serde(default)]
    gpus: Vec<toml::Spanned<String>>,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFilters {
    mem: Option<toml::Spanned<String>>,
    max_util: Option<toml::Spanned<i64>>,
    max_mem_util: Option<toml::Spanned<i64>>,
    max_processes: Option<usize>,
    max_power: Option<toml::Spanned<String>>,
    max_mem_used: Option<toml::Spanned<String>>,
}

/// Reads the environment variable `name`, treating an empty value as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The two config files, site's first.
fn paths() -> Vec<PathBuf> {
    let system =
        env("GPUSEL_SYSTEM_CONFIG").map_or_else(|| PathBuf::from(SYSTEM_CONFIG), PathBuf::from);
    let user_dir = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    let mut paths = vec![system];
    if let Some(dir) = user_dir {
        paths.push(dir.join("gpusel").join("config.toml"));
    }
    paths
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn bad_value<T>(path: &Path, text: &str, value: &toml::Spanned<T>, message: String) -> ConfigError {
    ConfigError::File {
        path: path.to_path_buf(),
        at: Some(line_col(text, value.span().start)),
        message,
        malformed: false,
    }
}

fn timeout(value: &str) -> Result<Duration, DurationError> {
    parse_duration_min(value, MIN_TIMEOUT)
}

/// A yes or no as environment variables write it.
fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn interval(value: &str) -> Result<Duration, DurationError> {
    parse_duration_min(value, MIN_INTERVAL)
}

impl Config {
    /// The idle rules these settings make (the unaccounted-memory
    /// tolerance), as [`Occupancy`](crate::Occupancy) and the selection
    /// apply them.
    pub fn idle_rules(&self) -> crate::IdleRules {
        crate::IdleRules::with_unaccounted_memory(self.unaccounted_memory.as_ref().map(|s| s.value))
    }

    /// Reads the site's file, the user's file and the `GPUSEL_*` variables,
    /// as the `gpusel` command does before it applies its flags.
    pub fn load() -> Result<Self, ConfigError> {
        let mut config = Config::default();
        for path in paths() {
            let text = match crate::read_regular_text(&path, MAX_CONFIG_FILE) {
                Ok(text) => text,
                Err(crate::FileReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    config.files.push((path, false));
                    continue;
                }
                Err(source) => return Err(ConfigError::Read { path, source }),
            };
            config.merge_file(&path, &text)?;
            config.files.push((path, true));
        }
        config.merge_env()?;
        Ok(config)
    }

    /// Applies one config file's text, as if it were read after the others.
    pub fn merge_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            at: e.span().map(|s| line_col(text, s.start)),
            message: e.message().trim_end().to_string(),
            malformed: true,
        })?;
        let src = || Source::File(path.to_path_buf());
        if let Some(dir) = file.lock_dir {
            self.lock_dir = Setting::new(dir, src());
        }
        if let Some(p) = file.provider {
            self.provider = Setting::new(p, src());
        }
        if let Some(s) = file.strategy {
            self.strategy = Setting::new(s, src());
        }
        if let Some(i) = &file.interval {
            let d = interval(i.get_ref())
                .map_err(|e| bad_value(path, text, i, format!("interval: {e}")))?;
            self.interval = Setting::new(d, src());
        }
        if let Some(w) = file.wait {
            self.wait = Setting::new(w, src());
        }
        if let Some(t) = &file.timeout {
            let d = crate::parse_duration(t.get_ref())
                .map_err(|e| bad_value(path, text, t, format!("timeout: {e}")))?;
            self.timeout = Some(Setting::new(d, src()));
        }
        for g in &file.ban.gpus {
            let spec: DeviceSpec = g.get_ref().parse().map_err(|e: crate::DeviceSpecError| {
                bad_value(path, text, g, format!("ban.gpus: {e}"))
            })?;
            self.bans.push(Ban {
                rule: BanRule::Device(spec),
                source: path.display().to_string(),
            });
        }
        for n in file.ban.names {
            self.bans.push(Ban {
                rule: BanRule::Name(n),
                source: path.display().to_string(),
            });
        }
        let f = file.filters;
        if let Some(m) = &f.mem {
            let bytes = crate::parse_size(m.get_ref())
                .map_err(|e| bad_value(path, text, m, format!("filters.mem: {e}")))?;
            self.filters.mem = Some(Setting::new(bytes, src()));
        }
        if let Some(p) = &f.max_power {
            let mw = crate::parse_power(p.get_ref())
                .map_err(|e| bad_value(path, text, p, format!("filters.max_power: {e}")))?;
            self.filters.max_power = Some(Setting::new(mw, src()));
        }
        if let Some(m) = &f.max_mem_used {
            let amount = crate::MemoryAmount::parse(m.get_ref())
                .map_err(|e| bad_value(path, text, m, format!("filters.max_mem_used: {e}")))?;
            self.filters.max_mem_used = Some(Setting::new(amount, src()));
        }
        for (value, slot, key) in [
            (&f.max_util, &mut self.filters.max_util, "max_util"),
            (
                &f.max_mem_util,
                &mut self.filters.max_mem_util,
                "max_mem_util",
            ),
        ] {
            if let Some(v) = value {
                let pct = u8::try_from(*v.get_ref())
                    .ok()
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| {
                        let message = format!(
                            "filters.{key} = {} is not a percentage; write 0 to 100",
                            v.get_ref()
                        );
                        bad_value(path, text, v, message)
                    })?;
                *slot = Some(Setting::new(pct, src()));
            }
        }
        if let Some(n) = f.max_processes {
            self.filters.max_processes = Some(Setting::new(n, src()));
        }
        if let Some(n) = &file.limits.gpus_per_user {
            let count = usize::try_from(*n.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    let message = format!(
                        "limits.gpus_per_user = {} is not a number of GPUs; write 1 or more",
                        n.get_ref()
                    );
                    bad_value(path, text, n, message)
                })?;
            lower(&mut self.limits.gpus_per_user, count, src());
        }
        if let Some(m) = &file.limits.share_memory_per_user {
            let bytes = crate::parse_size(m.get_ref()).map_err(|e| {
                bad_value(path, text, m, format!("limits.share_memory_per_user: {e}"))
            })?;
            lower(&mut self.limits.share_memory_per_user, bytes, src());
        }
        if let Some(w) = &file.idle.window {
            let d = crate::parse_duration(w.get_ref())
                .map_err(|e| bad_value(path, text, w, format!("idle.window: {e}")))?;
            self.idle_window = Setting::new(d, src());
        }
        if let Some(m) = &file.idle.unaccounted_memory {
            let amount = crate::MemoryAmount::parse(m.get_ref())
                .map_err(|e| bad_value(path, text, m, format!("idle.unaccounted_memory: {e}")))?;
            self.unaccounted_memory = Some(Setting::new(amount, src()));
        }
        if let Some(t) = file.http.token_file {
            // Relative to the config file, as a site's paths are meant.
            let t = path.parent().map_or(t.clone(), |dir| dir.join(&t));
            self.http_token_file = Some(Setting::new(t, src()));
        }
        for (key, value, slot) in [
            ("http.timeout", &file.http.timeout, &mut self.http_timeout),
            (
                "http.connect_timeout",
                &file.http.connect_timeout,
                &mut self.http_connect_timeout,
            ),
            (
                "plugin.timeout",
                &file.plugin.timeout,
                &mut self.plugin_timeout,
            ),
        ] {
            if let Some(t) = value {
                let d = timeout(t.get_ref())
                    .map_err(|e| bad_value(path, text, t, format!("{key}: {e}")))?;
                *slot = Setting::new(d, src());
            }
        }
        Ok(())
    }

    fn merge_env(&mut self) -> Result<(), ConfigError> {
        if let Some(dir) = env("GPUSEL_LOCK_DIR") {
            self.lock_dir = Setting::new(dir.into(), Source::Env("GPUSEL_LOCK_DIR"));
        }
        if let Some(p) = env("GPUSEL_PROVIDER") {
            self.provider = Setting::new(p, Source::Env("GPUSEL_PROVIDER"));
        }
        if let Some(s) = env("GPUSEL_STRATEGY") {
            self.strategy = Setting::new(s, Source::Env("GPUSEL_STRATEGY"));
        }
        if let Some(i) = env("GPUSEL_INTERVAL") {
            let d = interval(&i).map_err(|e| ConfigError::Env {
                var: "GPUSEL_INTERVAL",
                message: e.to_string(),
            })?;
            self.interval = Setting::new(d, Source::Env("GPUSEL_INTERVAL"));
        }
        if let Some(w) = env("GPUSEL_WAIT") {
            let w = parse_bool(&w).ok_or_else(|| ConfigError::Env {
                var: "GPUSEL_WAIT",
                message: format!(
                    "'{w}' is not a yes or no; write 1 or 0 (true/false, yes/no, on/off)"
                ),
            })?;
            self.wait = Setting::new(w, Source::Env("GPUSEL_WAIT"));
        }
        if let Some(t) = env("GPUSEL_TIMEOUT") {
            let d = crate::parse_duration(&t).map_err(|e| ConfigError::Env {
                var: "GPUSEL_TIMEOUT",
                message: e.to_string(),
            })?;
            self.timeout = Some(Setting::new(d, Source::Env("GPUSEL_TIMEOUT")));
        }
        if let Some(t) = env(ENV_HTTP_TOKEN_FILE) {
            self.http_token_file = Some(Setting::new(t.into(), Source::Env(ENV_HTTP_TOKEN_FILE)));
        }
        for (var, slot) in [
            (ENV_HTTP_TIMEOUT, &mut self.http_timeout),
            (ENV_HTTP_CONNECT_TIMEOUT, &mut self.http_connect_timeout),
            (ENV_PLUGIN_TIMEOUT, &mut self.plugin_timeout),
        ] {
            if let Some(t) = env(var) {
                let d = timeout(&t).map_err(|e| ConfigError::Env {
                    var,
                    message: e.to_string(),
                })?;
                *slot = Setting::new(d, Source::Env(var));
            }
        }
        if let Some(w) = env(ENV_IDLE_WINDOW) {
            let d = crate::parse_duration(&w).map_err(|e| ConfigError::Env {
                var: ENV_IDLE_WINDOW,
                message: e.to_string(),
            })?;
            self.idle_window = Setting::new(d, Source::Env(ENV_IDLE_WINDOW));
        }
        if let Some(m) = env(ENV_UNACCOUNTED_MEMORY) {
            let amount = crate::MemoryAmount::parse(&m).map_err(|e| ConfigError::Env {
                var: ENV_UNACCOUNTED_MEMORY,
                message: e.to_string(),
            })?;
            self.unaccounted_memory =
                Some(Setting::new(amount, Source::Env(ENV_UNACCOUNTED_MEMORY)));
        }
        if let Some(list) = env("GPUSEL_BAN") {
            let specs = DeviceSpec::parse_list(&list).map_err(|e| ConfigError::Env {
                var: "GPUSEL_BAN",
                message: e.to_string(),
            })?;
            self.bans.extend(specs.into_iter().map(|spec| Ban {
                rule: BanRule::Device(spec),
                source: "$GPUSEL_BAN".into(),
            }));
        }
        Ok(())
    }

    /// Every setting as (key, value, source), for `gpusel config`.
    pub fn rows(&self) -> Vec<(String, String, String)> {
        fn row<T>(
            key: &str,
            s: &Setting<T>,
            show: impl Fn(&T) -> String,
        ) -> (String, String, String) {
            (key.into(), show(&s.value), s.source.to_string())
        }
        fn opt<T>(
            key: &str,
            s: &Option<Setting<T>>,
            show: impl Fn(&T) -> String,
        ) -> (String, String, String) {
            match s {
                Some(s) => row(key, s, show),
                None => (key.into(), "-".into(), "unset".into()),
            }
        }
        let duration = |d: &Duration| humantime::format_duration(*d).to_string();
        let f = &self.filters;
        let mut rows = vec![
            row("lock_dir", &self.lock_dir, |p| p.display().to_string()),
            row("provider", &self.provider, String::clone),
            row("strategy", &self.strategy, String::clone),
            row("interval", &self.interval, duration),
            row("wait", &self.wait, bool::to_string),
            opt("timeout", &self.timeout, duration),
            opt("filters.mem", &f.mem, |b| crate::format_bytes(*b)),
            opt("filters.max_util", &f.max_util, |p| format!("{p}%")),
            opt("filters.max_mem_util", &f.max_mem_util, |p| format!("{p}%")),
            opt("filters.max_processes", &f.max_processes, usize::to_string),
            opt("filters.max_power", &f.max_power, |mw| {
                crate::format_power(*mw)
            }),
            opt("filters.max_mem_used", &f.max_mem_used, ToString::to_string),
            opt("http.token_file", &self.http_token_file, |p| {
                p.display().to_string()
            }),
            row("http.timeout", &self.http_timeout, duration),
            row("http.connect_timeout", &self.http_connect_timeout, duration),
            row("plugin.timeout", &self.plugin_timeout, duration),
            row("idle.window", &self.idle_window, duration),
            opt(
                "idle.unaccounted_memory",
                &self.unaccounted_memory,
                ToString::to_string,
            ),
        ];
        if let Some(n) = &self.limits.gpus_per_user {
            rows.push(row("limits.gpus_per_user", n, usize::to_string));
        }
        if let Some(m) = &self.limits.share_memory_per_user {
            rows.push(row("limits.share_memory_per_user", m, |b| {
                crate::format_bytes(*b)
            }));
        }
        for ban in &self.bans {
            rows.push(("ban".into(), ban.rule.to_string(), ban.source.clone()));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_col("a = 1\nb = x", 10), (2, 5));
        assert_eq!(line_col("", 0), (1, 1));
    }

    #[test]
    fn a_file_sets_and_bans_add_up() {
        let mut c = Config::default();
        let path = Path::new("/etc/gpusel/config.toml");
        c.merge_file(path, "lock_dir = \"/srv/locks\"\ninterval = \"2\"\n[ban]\ngpus = [\"3\"]\n[plugin]\ntimeout = \"30\"\n")
            .unwrap();
        c.merge_file(
            Path::new("/home/u/.config/gpusel/config.toml"),
            "[ban]\nnames = [\"T400\"]\n",
        )
        .unwrap();
        assert_eq!(c.lock_dir.value, PathBuf::from("/srv/locks"));
        assert_eq!(c.interval.value, Duration::from_secs(2));
        assert_eq!(c.plugin_timeout.value, Duration::from_secs(30));
        assert_eq!(c.bans.len(), 2);
        let e = c.merge_file(path, "interval = \"0s\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config file /etc/gpusel/config.toml, line 1, column 12: interval: '0s' is too short: give 10ms or more"
        );
        let e = c.merge_file(path, "queue = true").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::File {
                    malformed: true,
                    ..
                }
            ),
            "{e}"
        );
        // `wait` and `timeout` are keys now (issue 17): waiting as a default.
        c.merge_file(path, "wait = true\ntimeout = \"3600\"")
            .unwrap();
        assert!(c.wait.value);
        assert_eq!(c.timeout.map(|t| t.value), Some(Duration::from_secs(3600)));
    }
}
