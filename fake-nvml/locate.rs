//! Builds `fake-nvml` and gives the path of its shared library, for the
//! tests of other crates, which include this file with
//! `#[path = "../../fake-nvml/locate.rs"] mod fake_nvml;`.
//!
//! Cargo builds no cdylib for another crate's tests (artifact dependencies
//! are unstable), so the tests ask cargo: `cargo build -p fake-nvml` into the
//! same target directory (a no-op when it is up to date), reading the
//! library's path from cargo's JSON messages, so `CARGO_TARGET_DIR` and
//! profile layouts need no guessing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of `libfake_nvml.so`, built once per test process.
pub fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(build)
}

fn build() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fake-nvml/Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "-p",
            "fake-nvml",
            "--message-format=json-render-diagnostics",
        ]);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let out = cargo
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build fake-nvml: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p fake-nvml failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "fake_nvml")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| f.extension().is_some_and(|e| e == "so"))
        .unwrap_or_else(|| panic!("cargo built no libfake_nvml.so:\n{stdout}"))
}
