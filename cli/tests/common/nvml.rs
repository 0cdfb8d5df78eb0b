//! Running `gpusel` on NVML: the real provider-nvml, loading fake-nvml
//! through `dlopen`, answering from a scenario under `tests/fixtures/nvml/`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Out, gpusel, gpusel_std, out};

#[path = "../../../fake-nvml/locate.rs"]
mod fake_nvml;

pub use fake_nvml::library as fake_library;

/// Long enough for any honest run on a loaded CI machine; a hang fails
/// instead of blocking the suite.
const HANG: Duration = Duration::from_secs(120);

/// `tests/fixtures/nvml/NAME.json`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/nvml")
        .join(format!("{name}.json"))
}

/// `gpusel` with the default provider, NVML loaded from fake-nvml, which
/// serves `scenario`.
pub fn nvml(scenario: impl AsRef<Path>) -> assert_cmd::Command {
    let mut cmd = gpusel();
    cmd.env("GPUSEL_NVML_LIB", fake_library())
        .env("FAKE_NVML_SCENARIO", scenario.as_ref())
        .timeout(HANG);
    cmd
}

/// [`nvml`] as a `std::process::Command`, to spawn it.
pub fn nvml_std(scenario: impl AsRef<Path>) -> std::process::Command {
    let mut cmd = gpusel_std();
    cmd.env("GPUSEL_NVML_LIB", fake_library())
        .env("FAKE_NVML_SCENARIO", scenario.as_ref());
    cmd
}

/// Runs `gpusel ARGS` on NVML serving `scenario`.
pub fn nvml_out<I, S>(scenario: impl AsRef<Path>, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    out(nvml(scenario).args(args))
}

/// Runs `gpusel ARGS` on NVML serving the `lab-8xa100` fixture, the GPUs of
/// `examples/lab-8xa100.json`.
pub fn nvml_lab_out<I, S>(args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    nvml_out(fixture("lab-8xa100"), args)
}

/// A scenario file a test rewrites between runs.
pub struct Scene {
    _dir: tempfile::TempDir,
    /// Where the scenario lives.
    pub path: PathBuf,
}

impl Scene {
    /// A scenario that starts as fixture `name`.
    pub fn from_fixture(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let scene = Scene {
            path: dir.path().join("scenario.json"),
            _dir: dir,
        };
        scene.set(&std::fs::read_to_string(fixture(name)).expect("fixture"));
        scene
    }

    /// Replaces the scenario in one rename, as a driver's state changes at
    /// once.
    pub fn set(&self, json: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, json).expect("write scenario");
        std::fs::rename(&tmp, &self.path).expect("replace scenario");
    }

    /// The scenario as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&self.path).expect("read scenario"))
            .expect("scenario is JSON")
    }
}

/// The `lab-8xa100` fixture with an NVML init that does not return (within
/// a test: an hour), written into `dir`; returns its path.
pub fn hung_init_scenario(dir: &tempfile::TempDir) -> PathBuf {
    let text = std::fs::read_to_string(fixture("lab-8xa100")).expect("fixture");
    let mut scenario: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    scenario["hang_init_ms"] = 3_600_000.into();
    let path = dir.path().join("hung-init.json");
    std::fs::write(&path, scenario.to_string()).expect("write scenario");
    path
}

/// The first `n` GPUs of the `idle-8xa100` fixture (idle A100-80GB, 79.5 GiB
/// free each), written into `dir`.
pub fn idle_a100s(dir: &tempfile::TempDir, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(fixture("idle-8xa100")).expect("fixture");
    let mut scenario: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    if let Some(devices) = scenario["devices"].as_array_mut() {
        devices.truncate(n);
    }
    let path = dir.path().join(format!("idle-{n}.json"));
    std::fs::write(&path, scenario.to_string()).expect("write scenario");
    path
}

/// gpusel on NVML serving `scenario`, with the lock directory `locks`
/// shared by every command a test builds so.
pub fn nvml_locked(scenario: &Path, locks: &Path) -> std::process::Command {
    let mut cmd = nvml_std(scenario);
    cmd.env("GPUSEL_LOCK_DIR", locks);
    cmd
}
