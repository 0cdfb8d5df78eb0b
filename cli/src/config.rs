//! Site policy and defaults: `/etc/gpusel/config.toml`, then the user's
//! `gpusel/config.toml`, then `GPUSEL_*` variables, then flags. Later wins;
//! bans add up, so a user cannot lift the site's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gpusel_core::{Ban, BanRule, DeviceSpec};
use serde::{Deserialize, Serialize};

use crate::args::GlobalArgs;
use crate::failure::Failure;

/// The site's file, unless `GPUSEL_SYSTEM_CONFIG` names another.
pub const SYSTEM_CONFIG: &str = "/etc/gpusel/config.toml";
const DEFAULT_PROVIDER: &str = "auto";
const DEFAULT_STRATEGY: &str = "idle-random";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The limit on one run of a plugin (`10s`, `500ms`, or seconds).
pub const ENV_PLUGIN_TIMEOUT: &str = "GPUSEL_PLUGIN_TIMEOUT";

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built in.
    Default,
    /// A config file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
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
#[derive(Debug, Clone)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Where it was set.
    pub source: Source,
}

impl<T> Setting<T> {
    fn new(value: T, source: Source) -> Self {
        Setting { value, source }
    }
}

/// Default filters, used when the flag is not given.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// `--mem`, bytes.
    pub mem: Option<Setting<u64>>,
    /// `--max-util`.
    pub max_util: Option<Setting<u8>>,
    /// `--max-mem-util`.
    pub max_mem_util: Option<Setting<u8>>,
    /// `--max-processes`.
    pub max_processes: Option<Setting<usize>>,
    /// `--max-power`, milliwatts.
    pub max_power: Option<Setting<u32>>,
}

/// The configuration in force.
#[derive(Debug, Clone)]
pub struct Config {
    /// Config files looked at, and whether each was there.
    pub files: Vec<(PathBuf, bool)>,
    /// Lease lock directory.
    pub lock_dir: Setting<PathBuf>,
    /// Provider spec.
    pub provider: Setting<String>,
    /// Strategy name.
    pub strategy: Setting<String>,
    /// Poll period while waiting.
    pub interval: Setting<Duration>,
    /// Devices never given out.
    pub bans: Vec<Ban>,
    /// Default filters.
    pub filters: Filters,
    /// The bearer token file for `--provider http://...`.
    pub http_token_file: Option<Setting<PathBuf>>,
    /// The limit on one request to an `http://` agent.
    pub http_timeout: Setting<Duration>,
    /// The limit on making the connection to an `http://` agent.
    pub http_connect_timeout: Setting<Duration>,
    /// The limit on one run of a plugin `gpusel-provider-NAME`.
    pub plugin_timeout: Setting<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    lock_dir: Option<PathBuf>,
    provider: Option<String>,
    strategy: Option<String>,
    interval: Option<toml::Spanned<String>>,
    #[serde(default)]
    ban: FileBan,
    #[serde(default)]
    filters: FileFilters,
    #[serde(default)]
    http: FileHttp,
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
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn bad_value<T>(path: &Path, text: &str, value: &toml::Spanned<T>, message: String) -> Failure {
    let (line, col) = line_col(text, value.span().start);
    Failure::Usage(format!(
        "config file {}, line {line}, column {col}: {message}",
        path.display()
    ))
}

impl Config {
    /// The `http://` provider's limits: the connect timeout never exceeds
    /// the whole one.
    pub fn http_settings(&self) -> gpusel_http::Settings {
        gpusel_http::Settings {
            timeout: self.http_timeout.value,
            connect_timeout: self.http_connect_timeout.value.min(self.http_timeout.value),
            ..gpusel_http::Settings::default()
        }
    }

    /// Reads the files and the environment, then applies the global flags.
    pub fn load(global: &GlobalArgs) -> Result<Self, Failure> {
        let mut config = Config {
            files: Vec::new(),
            lock_dir: Setting::new(
                PathBuf::from(gpusel_core::DEFAULT_LOCK_DIR),
                Source::Default,
            ),
            provider: Setting::new(DEFAULT_PROVIDER.into(), Source::Default),
            strategy: Setting::new(DEFAULT_STRATEGY.into(), Source::Default),
            interval: Setting::new(DEFAULT_INTERVAL, Source::Default),
            bans: Vec::new(),
            filters: Filters::default(),
            http_token_file: None,
            http_timeout: Setting::new(gpusel_http::DEFAULT_TIMEOUT, Source::Default),
            http_connect_timeout: Setting::new(
                gpusel_http::DEFAULT_CONNECT_TIMEOUT,
                Source::Default,
            ),
            plugin_timeout: Setting::new(gpusel::DEFAULT_PLUGIN_TIMEOUT, Source::Default),
        };
        for path in paths() {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    config.files.push((path, false));
                    continue;
                }
                Err(e) => {
                    return Err(Failure::Usage(format!(
                        "cannot read config file {}: {e}; fix its permissions or set GPUSEL_SYSTEM_CONFIG / XDG_CONFIG_HOME to another",
                        path.display()
                    )));
                }
            };
            config.merge_file(&path, &text)?;
            config.files.push((path, true));
        }
        config.merge_env()?;
        if let Some(dir) = &global.lock_dir {
            config.lock_dir = Setting::new(dir.clone(), Source::Flag("--lock-dir"));
        }
        if let Some(p) = &global.provider {
            config.provider = Setting::new(p.clone(), Source::Flag("--provider"));
        }
        Ok(config)
    }

    fn merge_file(&mut self, path: &Path, text: &str) -> Result<(), Failure> {
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, col) = line_col(text, s.start);
                    format!(", line {line}, column {col}")
                })
                .unwrap_or_default();
            Failure::Usage(format!(
                "config file {}{at}: {}; fix it (see `gpusel --help`, Configuration)",
                path.display(),
                e.message().trim_end()
            ))
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
            let d = crate::args::parse_interval(i.get_ref())
                .map_err(|m| bad_value(path, text, i, format!("interval: {m}")))?;
            self.interval = Setting::new(d, src());
        }
        for g in &file.ban.gpus {
            let spec: DeviceSpec =
                g.get_ref()
                    .parse()
                    .map_err(|e: gpusel_core::DeviceSpecError| {
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
            let bytes = gpusel_core::parse_size(m.get_ref())
                .map_err(|e| bad_value(path, text, m, format!("filters.mem: {e}")))?;
            self.filters.mem = Some(Setting::new(bytes, src()));
        }
        if let Some(p) = &f.max_power {
            let mw = gpusel_core::parse_power(p.get_ref())
                .map_err(|e| bad_value(path, text, p, format!("filters.max_power: {e}")))?;
            self.filters.max_power = Some(Setting::new(mw, src()));
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
        ] {
            if let Some(t) = value {
                let d = gpusel_http::parse_duration(t.get_ref()).ok_or_else(|| {
                    let message = format!(
                        "{key} = {:?} is not a duration: give e.g. 10s, 500ms or 30",
                        t.get_ref()
                    );
                    bad_value(path, text, t, message)
                })?;
                *slot = Setting::new(d, src());
            }
        }
        Ok(())
    }

    fn merge_env(&mut self) -> Result<(), Failure> {
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
            let d = crate::args::parse_interval(&i)
                .map_err(|m| Failure::Usage(format!("GPUSEL_INTERVAL: {m}")))?;
            self.interval = Setting::new(d, Source::Env("GPUSEL_INTERVAL"));
        }
        if let Some(t) = env(gpusel_http::ENV_TOKEN_FILE) {
            self.http_token_file = Some(Setting::new(
                t.into(),
                Source::Env(gpusel_http::ENV_TOKEN_FILE),
            ));
        }
        for (var, slot) in [
            (ENV_PLUGIN_TIMEOUT, &mut self.plugin_timeout),
            (gpusel_http::ENV_TIMEOUT, &mut self.http_timeout),
            (
                gpusel_http::ENV_CONNECT_TIMEOUT,
                &mut self.http_connect_timeout,
            ),
        ] {
            if let Some(t) = env(var) {
                let d = gpusel_http::parse_duration(&t).ok_or_else(|| {
                    Failure::Usage(format!(
                        "{var}={t:?} is not a duration: give e.g. 10s, 500ms or 30"
                    ))
                })?;
                *slot = Setting::new(d, Source::Env(var));
            }
        }
        if let Some(list) = env("GPUSEL_BAN") {
            let specs = DeviceSpec::parse_list(&list)
                .map_err(|e| Failure::Usage(format!("GPUSEL_BAN: {e}")))?;
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
        let f = &self.filters;
        let mut rows = vec![
            row("lock_dir", &self.lock_dir, |p| p.display().to_string()),
            row("provider", &self.provider, String::clone),
            row("strategy", &self.strategy, String::clone),
            row("interval", &self.interval, |d| {
                humantime::format_duration(*d).to_string()
            }),
            opt("filters.mem", &f.mem, |b| gpusel_core::format_bytes(*b)),
            opt("filters.max_util", &f.max_util, |p| format!("{p}%")),
            opt("filters.max_mem_util", &f.max_mem_util, |p| format!("{p}%")),
            opt("filters.max_processes", &f.max_processes, usize::to_string),
            opt("filters.max_power", &f.max_power, |mw| {
                gpusel_core::format_power(*mw)
            }),
            opt("http.token_file", &self.http_token_file, |p| {
                p.display().to_string()
            }),
            row("http.timeout", &self.http_timeout, |d| {
                humantime::format_duration(*d).to_string()
            }),
            row("http.connect_timeout", &self.http_connect_timeout, |d| {
                humantime::format_duration(*d).to_string()
            }),
            row("plugin.timeout", &self.plugin_timeout, |d| {
                humantime::format_duration(*d).to_string()
            }),
        ];
        for ban in &self.bans {
            rows.push(("ban".into(), ban.rule.to_string(), ban.source.clone()));
        }
        rows
    }

    /// `gpusel config`: the table, or JSON.
    pub fn render(&self, json: bool) -> Result<(), Failure> {
        if json {
            let settings: Vec<_> = self
                .rows()
                .into_iter()
                .map(|(key, value, source)| serde_json::json!({"key": key, "value": value, "source": source}))
                .collect();
            let files: Vec<_> = self
                .files
                .iter()
                .map(|(p, found)| serde_json::json!({"path": p, "found": found}))
                .collect();
            return crate::out::print_json(&serde_json::json!({
                "schema_version": gpusel_core::SCHEMA_VERSION,
                "files": files,
                "settings": settings,
            }));
        }
        let mut text = String::new();
        for (path, found) in &self.files {
            let state = if *found { "read" } else { "absent" };
            text.push_str(&format!("# {} ({state})\n", path.display()));
        }
        let rows = self.rows();
        let kw = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let vw = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        for (key, value, source) in rows {
            let pad = vw.saturating_sub(value.chars().count());
            text.push_str(&format!(
                "{key:<kw$}  {value}{}  {source}\n",
                " ".repeat(pad)
            ));
        }
        crate::out::print(&text)
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
}
