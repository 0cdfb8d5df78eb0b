//! The providers this binary knows, in the order `--provider auto` tries them.

use gpusel_core::{GpuInfoProvider, ProviderError, ProviderRegistry, ProviderSpec};

use crate::config::Config;

/// Every provider compiled into `gpusel`, set up from `config`. `auto` tries
/// the auto-eligible ones in registration order: NVML first, then nvidia-smi.
pub fn registry(config: &Config) -> ProviderRegistry {
    #[allow(unused_mut)]
    let mut registry = ProviderRegistry::with_builtin();
    // NVML (issue 3) registers here, first, as the default.
    registry.register(
        gpusel_nvml::NAME,
        "nvml[:LIBRARY]",
        "NVIDIA's management library (the default); LIBRARY or $GPUSEL_NVML_LIB overrides libnvidia-ml.so.1",
        true,
        |spec| {
            let provider = gpusel_nvml::open_spec(spec.argument.as_deref())?;
            Ok(Box::new(provider))
        },
    );
    // nvidia-smi (issue 4) registers here, after NVML.
    registry.register(
        gpusel_smi::NAME,
        "smi[:PATH]",
        "run nvidia-smi (PATH, $GPUSEL_NVIDIA_SMI or on $PATH; timeout $GPUSEL_SMI_TIMEOUT, default 10s)",
        true,
        |spec| Ok(Box::new(gpusel_smi::SmiProvider::from_env(spec.argument.as_deref())?)),
    );
    // The deprecated torch provider (issue 8): never tried by `auto`, and
    // registered even without the feature so that asking for it says how to get it.
    registry.register(
        TORCH,
        TORCH,
        "deprecated: libtorch's device count and memory; creates a CUDA context on every GPU (needs a build with --features torch)",
        false,
        open_torch,
    );
    // A remote node's agent (issue 7). Never tried by `auto`: it is another
    // machine's GPUs, asked for by URL.
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
    registry
}

/// `http://` and `https://` (the latter only to say why it is not built in),
/// with the token file and timeouts of the config (file, then environment).
fn http(
    config: &Config,
) -> impl Fn(&ProviderSpec) -> Result<Box<dyn GpuInfoProvider>, ProviderError> + Send + Sync + 'static
{
    let token_file = config.http_token_file.as_ref().map(|s| s.value.clone());
    let settings = config.http_settings();
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

const TORCH: &str = "torch";

// Full paths below keep this whole feature in the tail of the file.
type Opened = Result<Box<dyn gpusel_core::GpuInfoProvider>, gpusel_core::ProviderError>;

/// What `--provider torch` says in a build without the `torch` feature.
#[cfg(not(feature = "torch"))]
pub const NO_TORCH: &str = "gpusel was built without torch support; rebuild with --features torch";

fn torch_takes_no_argument(
    spec: &gpusel_core::ProviderSpec,
) -> Result<(), gpusel_core::ProviderError> {
    match spec.argument {
        Some(_) => Err(gpusel_core::ProviderError::UnknownProvider {
            spec: spec.raw.clone(),
            available: vec!["torch (it takes no argument)".into()],
        }),
        None => Ok(()),
    }
}

#[cfg(feature = "torch")]
fn open_torch(spec: &gpusel_core::ProviderSpec) -> Opened {
    torch_takes_no_argument(spec)?;
    crate::out::eprint_line("warning: ", gpusel_torch::DEPRECATION);
    Ok(Box::new(gpusel_torch::TorchProvider::open()?))
}

#[cfg(not(feature = "torch"))]
fn open_torch(spec: &gpusel_core::ProviderSpec) -> Opened {
    torch_takes_no_argument(spec)?;
    Err(gpusel_core::ProviderError::unavailable(TORCH, NO_TORCH))
}
