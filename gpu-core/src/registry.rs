//! Maps a `--provider` string to a provider: `nvml`, `smi`, `file:PATH`,
//! `http://host:port`, `auto`. Open to third-party crates: register a factory
//! under a name and it is reachable from the same string syntax. A fallback
//! ([`ProviderRegistry::set_fallback`]) answers for names no entry has: the
//! `gpusel` facade installs one that runs `gpusel-provider-NAME` from `PATH`.

use std::fmt;

use crate::file_provider::FileProvider;
use crate::provider::{GpuInfoProvider, ProviderError};

/// A parsed `--provider` value: `name` or `name:argument`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    /// The whole string as given.
    pub raw: String,
    /// The part before the first `:` (`file`, `http`, `nvml`).
    pub name: String,
    /// The part after the first `:`, if any (`PATH`, `//host:port`).
    pub argument: Option<String>,
}

impl ProviderSpec {
    /// Splits `raw` at its first `:`.
    pub fn parse(raw: &str) -> Self {
        let (name, argument) = match raw.split_once(':') {
            Some((n, a)) => (n, Some(a.to_string())),
            None => (raw, None),
        };
        ProviderSpec {
            raw: raw.to_string(),
            name: name.trim().to_ascii_lowercase(),
            argument,
        }
    }
}

/// Builds a provider from its spec.
pub type ProviderFactory =
    Box<dyn Fn(&ProviderSpec) -> Result<Box<dyn GpuInfoProvider>, ProviderError> + Send + Sync>;

/// Opens a provider for a name no entry has: `None` when it has none either.
/// See [`ProviderRegistry::set_fallback`].
pub type ProviderFallback = Box<
    dyn Fn(&ProviderSpec) -> Option<Result<Box<dyn GpuInfoProvider>, ProviderError>> + Send + Sync,
>;

struct Entry {
    name: String,
    usage: String,
    summary: String,
    auto: bool,
    factory: ProviderFactory,
}

/// The providers a program knows, by name.
pub struct ProviderRegistry {
    entries: Vec<Entry>,
    fallback: Option<ProviderFallback>,
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.usage))
            .finish()
    }
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::with_builtin()
    }
}

impl ProviderRegistry {
    /// A registry with no providers at all.
    pub fn empty() -> Self {
        ProviderRegistry {
            entries: Vec::new(),
            fallback: None,
        }
    }

    /// A registry with the providers of this crate: `file:PATH`.
    pub fn with_builtin() -> Self {
        let mut r = Self::empty();
        r.register(
            "file",
            "file:PATH",
            "replay a snapshot written by `gpusel list --json`",
            false,
            |spec| match spec.argument.as_deref() {
                Some(path) if !path.is_empty() => Ok(Box::new(FileProvider::new(path))),
                _ => Err(ProviderError::UnknownProvider {
                    spec: spec.raw.clone(),
                    available: vec!["file:PATH (a path is required)".into()],
                    plugin: None,
                }),
            },
        );
        r
    }

    /// Registers a provider under `name`. `usage` is how a user writes it
    /// (`file:PATH`), `summary` one line for `--help`. With `auto`, it is tried
    /// by `--provider auto` in registration order. A later registration of the
    /// same name replaces the earlier one.
    pub fn register(
        &mut self,
        name: &str,
        usage: &str,
        summary: &str,
        auto: bool,
        factory: impl Fn(&ProviderSpec) -> Result<Box<dyn GpuInfoProvider>, ProviderError>
        + Send
        + Sync
        + 'static,
    ) {
        let name = name.to_ascii_lowercase();
        self.entries.retain(|e| e.name != name);
        self.entries.push(Entry {
            name,
            usage: usage.to_string(),
            summary: summary.to_string(),
            auto,
            factory: Box::new(factory),
        });
    }

    /// Sets what [`open`](Self::open) asks for a name that no registered
    /// provider has (never for `auto`, which tries registered providers
    /// only). The fallback returns `None` when it knows the name no better,
    /// and the registry reports [`ProviderError::UnknownProvider`]; it may
    /// also return that error itself with `plugin` naming what it looked for,
    /// and the registry fills in `spec` and `available`. Any other answer is
    /// returned as is. A later call replaces the earlier fallback.
    pub fn set_fallback(
        &mut self,
        fallback: impl Fn(&ProviderSpec) -> Option<Result<Box<dyn GpuInfoProvider>, ProviderError>>
        + Send
        + Sync
        + 'static,
    ) {
        self.fallback = Some(Box::new(fallback));
    }

    /// `(usage, summary)` of every provider, for help texts.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|e| (e.usage.clone(), e.summary.clone()))
            .collect();
        let autos: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.auto)
            .map(|e| e.name.as_str())
            .collect();
        out.insert(
            0,
            (
                "auto".into(),
                if autos.is_empty() {
                    "the first provider that works here (none is built in yet: give file:PATH)"
                        .into()
                } else {
                    format!("the first of {} that works here", autos.join(", "))
                },
            ),
        );
        out
    }

    /// Opens the provider `raw` names.
    pub fn open(&self, raw: &str) -> Result<Box<dyn GpuInfoProvider>, ProviderError> {
        let spec = ProviderSpec::parse(raw);
        if spec.name == "auto" && spec.argument.is_none() {
            return self.open_auto();
        }
        if let Some(entry) = self.entries.iter().find(|e| e.name == spec.name) {
            return (entry.factory)(&spec);
        }
        let tried = match &self.fallback {
            Some(fallback) if spec.name != "auto" => fallback(&spec),
            _ => None,
        };
        let plugin = match tried {
            None => None,
            Some(Err(ProviderError::UnknownProvider { plugin, .. })) => plugin,
            Some(answer) => return answer,
        };
        Err(ProviderError::UnknownProvider {
            spec: raw.to_string(),
            available: self.describe().into_iter().map(|(u, _)| u).collect(),
            plugin,
        })
    }

    fn open_auto(&self) -> Result<Box<dyn GpuInfoProvider>, ProviderError> {
        let mut tried = Vec::new();
        for entry in self.entries.iter().filter(|e| e.auto) {
            let spec = ProviderSpec::parse(&entry.name);
            match (entry.factory)(&spec) {
                Ok(provider) => {
                    tracing::debug!(provider = %entry.name, "auto: using provider");
                    return Ok(provider);
                }
                Err(e) => {
                    tracing::debug!(provider = %entry.name, error = %e, "auto: provider unavailable");
                    tried.push(e.to_string());
                }
            }
        }
        Err(ProviderError::NoProvider {
            tried: if tried.is_empty() {
                vec!["this build has no NVML or nvidia-smi provider".into()]
            } else {
                tried
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Snapshot;
    use async_trait::async_trait;

    struct Fixed;
    #[async_trait]
    impl GpuInfoProvider for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
            Ok(Snapshot::new("h", "fixed"))
        }
    }

    #[test]
    fn unknown_lists_what_is_available() {
        let e = ProviderRegistry::with_builtin()
            .open("nvidiaa")
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "unknown provider 'nvidiaa'; available: auto, file:PATH"
        );
        let e = ProviderRegistry::with_builtin()
            .open("file:")
            .err()
            .unwrap();
        assert!(e.to_string().contains("a path is required"));
    }

    #[test]
    fn third_party_providers_plug_in_and_auto_tries_in_order() {
        let mut r = ProviderRegistry::with_builtin();
        assert!(matches!(
            r.open("auto"),
            Err(ProviderError::NoProvider { .. })
        ));
        r.register("broken", "broken", "always fails", true, |_| {
            Err(ProviderError::unavailable("broken", "no driver"))
        });
        r.register("fixed", "fixed", "a test provider", true, |_| {
            Ok(Box::new(Fixed))
        });
        assert_eq!(r.open("auto").unwrap().name(), "fixed");
        assert_eq!(r.open("FIXED").unwrap().name(), "fixed");
        assert_eq!(r.open("file:/x.json").unwrap().name(), "file:/x.json");
    }

    #[test]
    fn the_fallback_answers_for_unknown_names_only() {
        let mut r = ProviderRegistry::with_builtin();
        r.set_fallback(|spec| match spec.name.as_str() {
            "fixed" => Some(Ok(Box::new(Fixed))),
            "missing" => Some(Err(ProviderError::UnknownProvider {
                spec: String::new(),
                available: Vec::new(),
                plugin: Some("gpusel-provider-missing".into()),
            })),
            "broken" => Some(Err(ProviderError::failed("broken", "it broke"))),
            "file" | "auto" => panic!("asked for a registered name"),
            _ => None,
        });
        assert_eq!(r.open("fixed:arg").unwrap().name(), "fixed");
        assert_eq!(r.open("file:/x.json").unwrap().name(), "file:/x.json");
        assert!(matches!(
            r.open("auto"),
            Err(ProviderError::NoProvider { .. })
        ));
        assert_eq!(
            r.open("missing").err().unwrap().to_string(),
            "unknown provider 'missing'; available: auto, file:PATH; no plugin gpusel-provider-missing on PATH"
        );
        assert_eq!(
            r.open("other").err().unwrap().to_string(),
            "unknown provider 'other'; available: auto, file:PATH"
        );
        assert!(r.open("auto:x").is_err());
        assert!(matches!(
            r.open("broken"),
            Err(ProviderError::Failed { .. })
        ));
    }
}
