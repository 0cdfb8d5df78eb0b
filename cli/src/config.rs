//! The site's configuration (read by `gpusel_core::Config`, exactly as a
//! library user reads it), plus the global flags, and `gpusel config`.

pub use gpusel_core::config::{Config, ConfigError, Setting, Source};

use crate::args::GlobalArgs;
use crate::failure::Failure;

/// Reads the files and the environment, then applies the global flags.
pub fn load(global: &GlobalArgs) -> Result<Config, Failure> {
    let mut config = Config::load().map_err(failure)?;
    if let Some(dir) = &global.lock_dir {
        config.lock_dir = Setting::new(dir.clone(), Source::Flag("--lock-dir"));
    }
    if let Some(w) = global.idle_window {
        config.idle_window = Setting::new(w, Source::Flag("--idle-window"));
    }
    if let Some(p) = &global.provider {
        config.provider = Setting::new(p.clone(), Source::Flag("--provider"));
    }
    Ok(config)
}

/// A config error as gpusel reports it, with where to read about the format.
pub fn failure(e: ConfigError) -> Failure {
    match e {
        ConfigError::File {
            malformed: true, ..
        } => Failure::Usage(format!("{e}; fix it (see `gpusel --help`, Configuration)")),
        e => Failure::Usage(e.to_string()),
    }
}

/// `gpusel config`: the table, or JSON.
pub fn render(config: &Config, json: bool) -> Result<(), Failure> {
    if json {
        let settings: Vec<_> = config
            .rows()
            .into_iter()
            .map(|(key, value, source)| serde_json::json!({"key": key, "value": value, "source": source}))
            .collect();
        let files: Vec<_> = config
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
    for (path, found) in &config.files {
        let state = if *found { "read" } else { "absent" };
        text.push_str(&format!("# {} ({state})\n", path.display()));
    }
    let rows = config.rows();
    let kw = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let vw = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (key, value, source) in rows {
        // Padded by hand: `{:<w$}` panics on a width past u16.
        let key_pad = " ".repeat(kw.saturating_sub(key.len()));
        let pad = " ".repeat(vw.saturating_sub(value.chars().count()));
        text.push_str(&format!("{key}{key_pad}  {value}{pad}  {source}\n"));
    }
    crate::out::print(&text)
}
