//! `scripts/device-check`, the real-GPU check, run here against the fakes a
//! real machine's driver stands in for: the fake `nvidia-smi` and fake-nvml
//! serving the same GPUs must agree on every shared field, and the script
//! must say so; serving different GPUs, it must fail and say which fields.

mod common;

use std::path::Path;
use std::process::Command;

use common::nvml::{fake_library, fixture};
use common::smi::path_with_fake;
use common::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/device-check");

fn device_check(smi: &str, nvml: &str, out: &Path) -> std::process::Output {
    let mut cmd = isolated(Command::new("python3"));
    cmd.arg(SCRIPT)
        .arg("--gpusel")
        .arg(bin())
        .arg("--out")
        .arg(out)
        .arg("--skip-torch")
        .env("PATH", path_with_fake())
        .env("FAKE_SMI_SCENARIO", smi)
        .env_remove("GPUSEL_NVIDIA_SMI")
        .env("GPUSEL_NVML_LIB", fake_library())
        .env("FAKE_NVML_SCENARIO", fixture(nvml));
    cmd.output().expect("python3 runs the script")
}

#[test]
fn the_same_gpus_through_nvml_and_nvidia_smi_pass_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = device_check("lab-8xa100", "lab-8xa100", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[ok  ] nvml vs nvidia-smi: every shared field agrees"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[ok  ] smi vs nvidia-smi: every shared field agrees"),
        "{stdout}"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    // The recordings are fixtures in the formats the tests read.
    let csv = std::fs::read_to_string(dir.path().join("smi/query-gpu.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
    let cmd = std::fs::read_to_string(dir.path().join("smi/query-gpu.cmd")).unwrap();
    let fixture_cmd =
        std::fs::read_to_string(Path::new(common::smi::SMI_DIR).join("lab-8xa100/query-gpu.cmd"))
            .unwrap();
    assert_eq!(cmd, fixture_cmd, "the script asks what gpusel asks");
    let nvml: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("gpusel-nvml.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(nvml["gpus"].as_array().unwrap().len(), 8);
    let idle: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("idle-memory.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(idle.as_array().unwrap().len(), 4, "the lab's 4 idle GPUs");
}

#[test]
fn different_gpus_fail_and_name_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = device_check("busy-mixed", "lab-8xa100", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("[FAIL] nvml vs nvidia-smi: same GPUs"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");
    let summary = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    assert!(summary.contains("\"ok\": false"), "{summary}");
}

#[test]
fn the_topology_matrix_is_compared_link_by_link() {
    // The smi scenario's `topo -m` pairs GPUs 0-2, 1-3; fake-nvml's
    // nvlink-pairs scenario pairs 0-1, 2-3: the smi provider's matrix must
    // agree with nvidia-smi's, NVML's must be caught differing.
    let dir = tempfile::tempdir().unwrap();
    let out = device_check("nvlink-pairs", "nvlink-pairs-8xa100", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[ok  ] gpusel -p smi topo names the links nvidia-smi topo -m does"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[FAIL] gpusel -p nvml topo names the links nvidia-smi topo -m does"),
        "{stdout}"
    );
    assert!(dir.path().join("topo-m.txt").is_file());
}
