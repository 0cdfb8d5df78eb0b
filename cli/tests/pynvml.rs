//! The ABI check: NVIDIA's own Python binding, `nvidia-ml-py` (pynvml),
//! reads fake-nvml and must see what `gpusel list --json` shows. pynvml's
//! ctypes structures are NVIDIA's transcription of `nvml.h`, so agreement
//! proves that the fake's entry points and layouts are the real ones, and
//! that the NVML tests exercise the real ABI.
//!
//! Python comes from `GPUSEL_TEST_PYTHON` (`.ci/run` sets it), or else this
//! test makes a venv under the target directory and installs the pinned
//! binding from PyPI; it fails, never skips, when it cannot.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::nvml::*;
use serde_json::{Value, json};

/// The binding this test is checked against (`.ci/run` pins the same).
const PYNVML: &str = "nvidia-ml-py==12.575.51";

const READ_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynvml/read.py");

fn how_to() -> String {
    format!(
        "make a Python with the binding and name it: python3 -m venv target/pyvenv && \
         target/pyvenv/bin/pip install {PYNVML} && \
         export GPUSEL_TEST_PYTHON=$PWD/target/pyvenv/bin/python"
    )
}

fn imports_pynvml(python: &Path) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-c", "import pynvml"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A venv with the pinned binding under the target directory, made once and
/// moved into place whole, so a half-made one is never used.
fn make_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pynvml-venv");
    let python = venv.join("bin/python");
    if imports_pynvml(&python).is_ok() {
        return Ok(python);
    }
    let partial = venv.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    run(Command::new("python3").arg("-m").arg("venv").arg(&partial))?;
    run(Command::new(partial.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        PYNVML,
    ]))?;
    let _ = std::fs::remove_dir_all(&venv);
    if let Err(e) = std::fs::rename(&partial, &venv) {
        // Another test process made it first; use theirs.
        let _ = std::fs::remove_dir_all(&partial);
        if imports_pynvml(&python).is_err() {
            return Err(format!("cannot move the venv into place: {e}"));
        }
    }
    imports_pynvml(&python)?;
    Ok(python)
}

fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| match std::env::var_os("GPUSEL_TEST_PYTHON") {
        Some(given) => {
            let given = PathBuf::from(given);
            if let Err(e) = imports_pynvml(&given) {
                panic!(
                    "GPUSEL_TEST_PYTHON={} cannot import pynvml ({e}); {}",
                    given.display(),
                    how_to()
                );
            }
            given
        }
        None => make_venv().unwrap_or_else(|e| {
            panic!(
                "no Python with {PYNVML} for the ABI check ({e}); {}",
                how_to()
            )
        }),
    })
}

/// Runs `python ARGS` with fake-nvml as the `libnvidia-ml.so.1` the dynamic
/// linker finds, serving `scenario`.
fn python_on(scenario: &Path, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(fake_library(), dir.path().join("libnvidia-ml.so.1"))
        .expect("symlink the fake library");
    Command::new(python())
        .args(args)
        .env("LD_LIBRARY_PATH", dir.path())
        .env("FAKE_NVML_SCENARIO", scenario)
        .output()
        .expect("run python")
}

/// What pynvml reports for `scenario`.
fn pynvml_reads(scenario: &Path) -> Value {
    let out = python_on(scenario, &[READ_PY]);
    assert!(
        out.status.success(),
        "pynvml failed on {}: {}",
        scenario.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("read.py prints JSON")
}

fn kind(kinds: &Value) -> &'static str {
    let has = |k: &str| kinds.as_array().is_some_and(|a| a.iter().any(|x| x == k));
    match (has("compute"), has("graphics")) {
        (true, true) => "compute_graphics",
        (false, true) => "graphics",
        _ => "compute",
    }
}

/// pynvml's processes in gpusel's terms (the executable without its path).
fn py_processes(list: &Value) -> Value {
    match list.as_array() {
        None => Value::Null,
        Some(ps) => ps
            .iter()
            .map(|p| {
                let name = p["name"]
                    .as_str()
                    .map(|n| n.rsplit('/').next().unwrap_or(n).to_string());
                json!({"pid": p["pid"], "used_memory": p["used_memory"], "name": name, "kind": kind(&p["kinds"])})
            })
            .collect(),
    }
}

/// gpusel's processes, less what only `/proc` gives.
fn gpusel_processes(list: &Value) -> Value {
    match list.as_array() {
        None => Value::Null,
        Some(ps) => ps
            .iter()
            .map(|p| json!({"pid": p["pid"], "used_memory": p["used_memory"], "name": p["name"], "kind": p["kind"]}))
            .collect(),
    }
}

fn py_gpu(g: &Value) -> Value {
    let migs: Vec<Value> = g["mig_devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let profile = m["name"]
                .as_str()
                .and_then(|n| n.rsplit_once(" MIG "))
                .map(|(_, p)| p.to_string());
            json!({
                "index": m["index"], "uuid": m["uuid"], "profile": profile,
                "gpu_instance_id": m["gpu_instance_id"], "compute_instance_id": m["compute_instance_id"],
                "memory_total": m["memory"]["total"], "memory_used": m["memory"]["used"], "memory_free": m["memory"]["free"],
                "processes": py_processes(&m["processes"]),
            })
        })
        .collect();
    let mut gpu = json!({
        "index": g["index"], "uuid": g["uuid"], "name": g["name"], "pci_bus_id": g["pci_bus_id"],
        "memory_total": g["memory"]["total"], "memory_used": g["memory"]["used"], "memory_free": g["memory"]["free"],
        "utilization_gpu": g["utilization_gpu"], "utilization_memory": g["utilization_memory"],
        "temperature": g["temperature"], "power_draw": g["power_draw"], "power_limit": g["power_limit"],
        "performance_state": g["performance_state"], "sm_clock": g["sm_clock"], "mig_mode": g["mig_mode"],
        "processes": py_processes(&g["processes"]),
        "mig_devices": migs,
    });
    // Fields gpusel leaves out when the driver does not report them.
    for (ours, theirs) in [
        ("memory_reserved", &g["memory"]["reserved"]),
        ("compute_mode", &g["compute_mode"]),
        ("utilization_window", &g["utilization_window"]),
    ] {
        if !theirs.is_null() {
            gpu[ours] = theirs.clone();
        }
    }
    // Topology fields are absent, not null, where the driver gives none.
    if let (Some(gpu), Some(topology)) = (gpu.as_object_mut(), g["topology"].as_object()) {
        gpu.extend(topology.clone());
    }
    gpu
}

/// The window's sample ages, taken out of `gpu` (they depend on when each
/// reader looked, so they are compared apart, within a margin).
fn take_ages(gpu: &mut Value) -> Vec<u64> {
    let mut ages = Vec::new();
    for key in ["gpu", "memory"] {
        if let Some(peak) = gpu["utilization_window"]
            .get_mut(key)
            .and_then(Value::as_object_mut)
            && let Some(age) = peak.remove("age_ms")
        {
            ages.push(age.as_u64().expect("an age in ms"));
        }
    }
    ages
}

fn gpusel_gpu(g: &Value) -> Value {
    let migs: Vec<Value> = g["mig_devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut m = m.clone();
            m["processes"] = gpusel_processes(&m["processes"]);
            m
        })
        .collect();
    let mut g = g.clone();
    g["processes"] = gpusel_processes(&g["processes"]);
    g["mig_devices"] = Value::Array(migs);
    g
}

fn agree_on(name: &str) {
    let scenario = fixture(name);
    let py = pynvml_reads(&scenario);
    let out = nvml_out(&scenario, ["list", "--json"]);
    let ours: Value = serde_json::from_str(out.ok()).expect("gpusel prints JSON");
    assert_eq!(ours["driver_version"], py["driver_version"], "{name}");
    // NVML's version is the CUDA major and the driver's.
    let driver = py["driver_version"].as_str().expect("driver version");
    assert!(
        py["nvml_version"]
            .as_str()
            .is_some_and(|v| v.ends_with(driver)),
        "{name}: {py}"
    );
    let cuda = py["cuda_driver_version"].as_i64().expect("CUDA version");
    assert_eq!(
        ours["cuda_driver_version"],
        format!("{}.{}", cuda / 1000, cuda % 1000 / 10),
        "{name}"
    );
    let py_gpus: Vec<Value> = py["gpus"].as_array().unwrap().iter().map(py_gpu).collect();
    let our_gpus: Vec<Value> = ours["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(gpusel_gpu)
        .collect();
    assert!(!py_gpus.is_empty(), "{name}: pynvml saw no GPU");
    assert_eq!(our_gpus.len(), py_gpus.len(), "{name}");
    for (mut o, mut p) in our_gpus.into_iter().zip(py_gpus) {
        let (our_ages, py_ages) = (take_ages(&mut o), take_ages(&mut p));
        assert_eq!(o, p, "{name}: gpusel (left) and pynvml (right) differ");
        assert_eq!(our_ages.len(), py_ages.len(), "{name}");
        for (a, b) in our_ages.iter().zip(&py_ages) {
            // The two read the same samples seconds apart at most.
            assert!(
                a.abs_diff(*b) < 30_000,
                "{name}: sample ages {a} and {b} ms"
            );
        }
    }
}

#[test]
fn pynvml_sees_the_lab_as_gpusel_does() {
    agree_on("lab-8xa100");
}

#[test]
fn pynvml_sees_the_busy_mixed_box_as_gpusel_does() {
    agree_on("busy-mixed");
}

#[test]
fn pynvml_sees_the_mig_h100_as_gpusel_does() {
    agree_on("mig-h100");
}

#[test]
fn pynvml_sees_the_idle_a100s_as_gpusel_does() {
    agree_on("idle-8xa100");
}

#[test]
fn pynvml_sees_compute_modes_and_sample_buffers_as_gpusel_does() {
    agree_on("idleness");
}

#[test]
fn pynvml_sees_the_nvlink_pairs_as_gpusel_does() {
    agree_on("nvlink-pairs-8xa100");
}

#[test]
fn pynvml_sees_the_nvswitch_board_as_gpusel_does() {
    agree_on("nvswitch-8xh100");
}

#[test]
fn pynvml_sees_the_pcie_numa_box_as_gpusel_does() {
    agree_on("pcie-numa-4xl40s");
}

/// The exception pynvml raises for `call` (Python, after `import pynvml as
/// n`) on fixture `name`, or `ok`.
fn pynvml_raises(name: &str, call: &str) -> String {
    let code = format!(
        "import pynvml as n\ntry:\n    {call}\n    print('ok')\nexcept (n.NVMLError, n.NVMLLibraryMismatchError) as e:\n    print(type(e).__name__)"
    );
    let out = python_on(&fixture(name), &["-c", &code]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pynvml_reads_the_faults_as_the_real_errors() {
    assert_eq!(
        pynvml_raises("driver-not-loaded", "n.nvmlInit()"),
        "NVMLError_DriverNotLoaded"
    );
    assert_eq!(
        pynvml_raises("version-mismatch", "n.nvmlInit()"),
        "NVMLError_LibRmVersionMismatch"
    );
    let init = "n.nvmlInit(); ";
    assert_eq!(
        pynvml_raises(
            "lost-gpu",
            &format!("{init}n.nvmlDeviceGetHandleByIndex(2)")
        ),
        "NVMLError_GpuIsLost"
    );
    assert_eq!(
        pynvml_raises(
            "lost-gpu",
            &format!("{init}n.nvmlDeviceGetHandleByIndex(3)")
        ),
        "ok"
    );
    // pynvml, written for real drivers, expects this very code from an old
    // one: its unversioned call turns it into "use the _v2 function".
    let procs = |v: &str| {
        format!("{init}n.nvmlDeviceGetComputeRunningProcesses{v}(n.nvmlDeviceGetHandleByIndex(0))")
    };
    assert_eq!(
        pynvml_raises("old-driver", &procs("_v3")),
        "NVMLError_FunctionNotFound"
    );
    assert_eq!(
        pynvml_raises("old-driver", &procs("")),
        "NVMLLibraryMismatchError"
    );
    assert_eq!(pynvml_raises("old-driver", &procs("_v2")), "ok");
    assert_eq!(pynvml_raises("lab-8xa100", &procs("")), "ok");
    // A field the scenario leaves out is "not supported", as on a real board.
    let util = "n.nvmlDeviceGetUtilizationRates(n.nvmlDeviceGetHandleByIndex(0))";
    assert_eq!(
        pynvml_raises("mig-h100", &format!("{init}{util}")),
        "NVMLError_NotSupported"
    );
    // The sample buffer: none kept (a scenario without it), none newer than
    // asked for, and a buffer read whole.
    let samples = |gpu: u32, since: &str| {
        format!(
            "{init}n.nvmlDeviceGetSamples(n.nvmlDeviceGetHandleByIndex({gpu}), n.NVML_GPU_UTILIZATION_SAMPLES, {since})"
        )
    };
    assert_eq!(
        pynvml_raises("lab-8xa100", &samples(0, "0")),
        "NVMLError_NotSupported"
    );
    assert_eq!(
        pynvml_raises(
            "idleness",
            &samples(1, "int((__import__('time').time() + 3600) * 1e6)")
        ),
        "NVMLError_NotFound"
    );
    assert_eq!(pynvml_raises("idleness", &samples(1, "0")), "ok");
}

#[test]
fn pynvml_reads_missing_nvlinks_as_real_drivers_answer() {
    let state = |gpu: u32, link: u32| {
        format!(
            "n.nvmlInit(); n.nvmlDeviceGetNvLinkState(n.nvmlDeviceGetHandleByIndex({gpu}), {link})"
        )
    };
    let pairs = "nvlink-pairs-8xa100";
    assert_eq!(pynvml_raises(pairs, &state(0, 11)), "ok");
    // Past the GPU's links, and past NVML_NVLINK_MAX_LINKS.
    assert_eq!(
        pynvml_raises(pairs, &state(0, 12)),
        "NVMLError_InvalidArgument"
    );
    assert_eq!(
        pynvml_raises(pairs, &state(0, 18)),
        "NVMLError_InvalidArgument"
    );
    // A GPU without NVLink, and one whose driver reads no topology.
    assert_eq!(
        pynvml_raises("pcie-numa-4xl40s", &state(0, 0)),
        "NVMLError_NotSupported"
    );
    let ancestor = "n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex; n.nvmlDeviceGetTopologyCommonAncestor(h(0), h(1))";
    assert_eq!(
        pynvml_raises("lab-8xa100", ancestor),
        "NVMLError_NotSupported"
    );
    assert_eq!(pynvml_raises(pairs, ancestor), "ok");
    // P2P over NVLink: what an NVSwitch board answers, and a PCIe-only box.
    let p2p = |a: u32, b: u32| {
        format!(
            "n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex; s = n.nvmlDeviceGetP2PStatus(h({a}), h({b}), n.NVML_P2P_CAPS_INDEX_NVLINK); assert s == n.NVML_P2P_STATUS_OK, s"
        )
    };
    assert_eq!(pynvml_raises("nvswitch-8xh100", &p2p(0, 7)), "ok");
    let not = "n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex; s = n.nvmlDeviceGetP2PStatus(h(0), h(1), n.NVML_P2P_CAPS_INDEX_NVLINK); assert s == n.NVML_P2P_STATUS_NOT_SUPPORTED, s";
    assert_eq!(pynvml_raises("pcie-numa-4xl40s", not), "ok");
}
