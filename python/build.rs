// A build script reports failure by panicking: cargo shows the message.
#![allow(clippy::expect_used)]

//! With the `wheel` feature (what `pip install .` builds, see
//! pyproject.toml), also builds the `gpusel` binary, the same one `cargo
//! install --path cli` gives, and puts it where the wheel's scripts come
//! from: `python/native/gpusel`, which the committed link
//! `python/wheel-data/scripts/gpusel` points at. maturin builds one
//! artifact per wheel and cannot ship a binary beside an extension module
//! (its guide offers a Python entry point instead, which would lose the
//! binary's start-up time and `exec`), so the binary is built here, by a
//! second cargo in a target directory of its own (the first holds its lock).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the CLI is built from: a change in any of these rebuilds it.
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "gpu-core",
    "strategies",
    "provider-nvml",
    "provider-smi",
    "provider-http",
    "provider-torch",
    "agent",
    "cli",
    "gpusel",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_WHEEL").is_none() {
        return;
    }
    let here =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = here.parent().expect("python/ sits in the workspace root");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={}", root.join(source).display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <profile dir>/build/<package-hash>/out.
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR lies three levels below the profile directory");
    let target_dir = profile_dir.join("gpusel-cli");
    let profile = env::var("PROFILE").expect("cargo sets PROFILE");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let host = env::var("HOST").expect("cargo sets HOST");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--locked", "-p", "gpusel-cli", "--bin", "gpusel"])
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's own settings are not the CLI's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if profile == "release" {
        build.arg("--release");
    }
    let mut built = target_dir.clone();
    if target != host {
        build.args(["--target", &target]);
        built.push(&target);
    }
    built.push(if profile == "release" {
        "release"
    } else {
        "debug"
    });
    built.push("gpusel");
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the gpusel binary: {e}"));
    assert!(
        status.success(),
        "cargo build -p gpusel-cli failed ({status})"
    );
    install(&built, &here.join("native"));
}

/// Copies the binary into `dir`, replacing the old one in one step (a
/// wheel being written beside this build never reads half a file).
fn install(binary: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let partial = dir.join(".gpusel.partial");
    std::fs::copy(binary, &partial).unwrap_or_else(|e| {
        panic!(
            "cannot copy {} to {}: {e}",
            binary.display(),
            partial.display()
        )
    });
    std::fs::rename(&partial, dir.join("gpusel"))
        .unwrap_or_else(|e| panic!("cannot install the gpusel binary in {}: {e}", dir.display()));
}
