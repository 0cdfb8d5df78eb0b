//! gpusel as a library: pick idle NVIDIA GPUs from a Rust program, with the
//! same providers, strategies, site configuration and leases as the `gpusel`
//! command, so that a service and `gpusel -- CMD` never get the same GPU.
//!
//! This crate re-exports [`gpusel_core`] (the model, [`Selector`],
//! [`Config`], leases) and the strategies, and adds what only a facade can
//! do: open any built-in provider from the string the CLI takes
//! (`auto`, `nvml`, `nvml:LIB`, `smi`, `smi:PATH`, `file:PATH`,
//! `http://HOST:PORT`, `torch` behind its feature), and, for any other
//! name, the plugin `gpusel-provider-NAME` on `PATH` ([`PluginProvider`],
//! see `docs/providers.md`).
//!
//! A service that takes the best-fit GPU for 800 MiB at start-up and holds
//! it while it runs (GPU-utils' use):
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let site = gpusel::Config::load()?; // the CLI's files and GPUSEL_* variables
//!     let provider = gpusel::open(&site.provider.value, &site)?; // auto: NVML, then nvidia-smi
//!     let gpu = gpusel::selector(&site)?
//!         .strategy(gpusel::strategy("best-fit")?)
//!         .min_free_memory(gpusel::parse_size("800MiB")?)
//!         .wait(None) // until one frees up
//!         .select(provider.as_ref())?;
//!     println!("serving on GPU {}", gpu.cuda_visible_devices);
//!     // ... serve; the lease is held until `gpu` is dropped
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]
// Library code reports failures as typed errors, never by panicking on
// them (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod plugin;

/// The attribute implementors of [`GpuInfoProvider`] put on their `impl`.
pub use async_trait::async_trait;
pub use gpusel_core::*;
/// The `http://` provider's crate (its types, such as the errors it keeps
/// as a [`ProviderError`]'s source).
#[cfg(feature = "http")]
pub use gpusel_http as http;
/// The NVML provider's crate.
#[cfg(feature = "nvml")]
pub use gpusel_nvml as nvml;
/// The nvidia-smi provider's crate.
#[cfg(feature = "smi")]
pub use gpusel_smi as smi;
pub use gpusel_strategies as strategies;
pub use gpusel_strategies::{StrategyKind, UnknownStrategy};
/// The deprecated libtorch provider's crate.
#[cfg(feature = "torch")]
pub use gpusel_torch as torch;
pub use plugin::{
    DEFAULT_PLUGIN_TIMEOUT, MAX_PLUGIN_OUTPUT, PLUGIN_PREFIX, PluginProvider, is_plugin_name,
    plugin_fallback,
};

/// The private parsers, for the fuzz targets in `fuzz/`. Not part of the
/// API: it may change at any time.
#[doc(hidden)]
pub mod fuzzing {
    /// What a plugin printed on stdout, read as [`PluginProvider`](crate::PluginProvider)
    /// reads it: the validated snapshot, or what is wrong with it.
    pub use crate::plugin::parse_output as plugin_output;
    pub use gpusel_core::fuzzing::*;
}

/// The strategy a name gives (`idle-random`, `best-fit`, `worst-fit`,
/// `random`, `least-used`), as `--strategy` takes it.
pub fn strategy(name: &str) -> Result<Box<dyn SelectStrategy>, UnknownStrategy> {
    gpusel_strategies::by_name(name)
}

/// A [`Selector`] with the site's settings and its strategy
/// (`config.strategy`, idle-random unless configured).
pub fn selector(config: &Config) -> Result<Selector, UnknownStrategy> {
    Ok(Selector::from_config(
        config,
        strategy(&config.strategy.value)?,
    ))
}

/// Opens the provider `spec` names, with the settings of `config` (the
/// `http://` provider's token file and timeouts): the same strings, and the
/// same result, as `gpusel --provider SPEC`.
///
/// ```
/// let config = gpusel::Config::default();
/// let provider = gpusel::open("file:examples/lab-8xa100.json", &config).unwrap();
/// assert_eq!(provider.name(), "file:examples/lab-8xa100.json");
/// let e = gpusel::open("nvidiaa", &config).err().unwrap();
/// assert!(e.to_string().starts_with("unknown provider 'nvidiaa'"));
/// ```
pub fn open(spec: &str, config: &Config) -> Result<Box<dyn GpuInfoProvider>, ProviderError> {
    registry(config).open(spec)
}

/// Every provider built into this crate (by its features), set up from
/// `config`, in the order `auto` tries them: NVML first, then nvidia-smi;
/// any other name runs the plugin `gpusel-provider-NAME` from `PATH` (never
/// tried by `auto`), with `config.plugin_timeout`. Register more on it
/// before opening.
pub fn registry(config: &Config) -> ProviderRegistry {
    let mut registry = ProviderRegistry::with_builtin();
    registry.set_fallback(plugin_fallback(config.plugin_timeout.value));
    #[cfg(feature = "nvml")]
    let idle_window = config.idle_window.value;
    #[cfg(feature = "nvml")]
    registry.register(
        gpusel_nvml::NAME,
        "nvml[:LIBRARY]",
        "NVIDIA's management library (the default); LIBRARY or $GPUSEL_NVML_LIB overrides libnvidia-ml.so.1",
        true,
        move |spec| {
            let provider =
                gpusel_nvml::open_spec(spec.argument.as_deref())?.with_idle_window(idle_window);
            Ok(Box::new(provider))
        },
    );
    #[cfg(feature = "smi")]
    registry.register(
        gpusel_smi::NAME,
        "smi[:PATH]",
        "run nvidia-smi (PATH, $GPUSEL_NVIDIA_SMI or on $PATH; timeout $GPUSEL_SMI_TIMEOUT, default 10s)",
        true,
        |spec| {
            Ok(Box::new(gpusel_smi::SmiProvider::from_env(
                spec.argument.as_deref(),
            )?))
        },
    );
    // Registered even without the feature, so that asking for it says how
    // to get it. Never tried by `auto`: it creates a CUDA context.
    registry.register(
        TORCH,
        TORCH,
        "deprecated: libtorch's device count and memory; creates a CUDA context on every GPU (needs a build with the torch feature)",
        false,
        open_torch,
    );
    #[cfg(feature = "http")]
    {
        // Never tried by `auto`: another machine's GPUs, asked for by URL.
        registry.register(
            gpusel_http::NAME,
            "http://HOST:PORT[/PREFIX]",
            "another node's GPUs from its `gpusel serve` agent (token file $GPUSEL_HTTP_TOKEN_FILE; timeout $GPUSEL_HTTP_TIMEOUT, default 10s)",
            false,
            http(config),
        );
        registry.register(
            "https",
            "https://HOST:PORT",
            "not built in (gpusel has no TLS): tunnel the agent's port over SSH and use http://",
            false,
            http(config),
        );
    }
    registry
}

/// The `http://` provider's limits from `config`: the connect timeout never
/// exceeds the whole one.
#[cfg(feature = "http")]
pub fn http_settings(config: &Config) -> gpusel_http::Settings {
    gpusel_http::Settings {
        timeout: config.http_timeout.value,
        connect_timeout: config
            .http_connect_timeout
            .value
            .min(config.http_timeout.value),
        ..gpusel_http::Settings::default()
    }
}

#[cfg(feature = "http")]
fn http(
    config: &Config,
) -> impl Fn(&ProviderSpec) -> Result<Box<dyn GpuInfoProvider>, ProviderError> + Send + Sync + 'static
{
    let token_file = config.http_token_file.as_ref().map(|s| s.value.clone());
    let settings = http_settings(config);
    move |spec| {
        let endpoint = gpusel_http::Endpoint::parse(&spec.raw)?;
        let token = match &token_file {
            Some(path) => Some(gpusel_http::Token::from_file(path)?),
            None => None,
        };
        let client = gpusel_http::Client::new(settings);
        Ok(Box::new(gpusel_http::HttpProvider::new(
            client, endpoint, token,
        )))
    }
}

/// What a program should tell its user when it opens `torch`.
#[cfg(feature = "torch")]
pub use gpusel_torch::DEPRECATION as TORCH_DEPRECATION;

/// The name of the deprecated libtorch provider.
pub const TORCH: &str = "torch";

/// What opening `torch` says in a build without the `torch` feature.
pub const NO_TORCH: &str = "gpusel was built without torch support; rebuild with --features torch";

fn torch_takes_no_argument(spec: &ProviderSpec) -> Result<(), ProviderError> {
    match spec.argument {
        Some(_) => Err(ProviderError::UnknownProvider {
            spec: spec.raw.clone(),
            available: vec!["torch (it takes no argument)".into()],
            plugin: None,
        }),
        None => Ok(()),
    }
}

#[cfg(feature = "torch")]
fn open_torch(spec: &ProviderSpec) -> Result<Box<dyn GpuInfoProvider>, ProviderError> {
    torch_takes_no_argument(spec)?;
    Ok(Box::new(gpusel_torch::TorchProvider::open()?))
}

#[cfg(not(feature = "torch"))]
fn open_torch(spec: &ProviderSpec) -> Result<Box<dyn GpuInfoProvider>, ProviderError> {
    torch_takes_no_argument(spec)?;
    Err(ProviderError::unavailable(TORCH, NO_TORCH))
}
