//! Every selection mode through the default provider, NVML: the real
//! provider-nvml loads fake-nvml through `dlopen` and reads the scenarios
//! under `tests/fixtures/nvml/`. The `lab-8xa100` scenario describes the
//! GPUs of `examples/lab-8xa100.json`, so NVML and `--provider file:` must
//! give the same picks and reasons.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::nvml::*;
use common::*;

/// `gpusel ARGS` through the file provider and through NVML on the same
/// GPUs: both outputs, after checking that both succeeded.
fn both(args: &[&str]) -> (String, String) {
    let file = lab_out(args);
    let nvml = nvml_lab_out(args);
    (file.ok().to_string(), nvml.ok().to_string())
}

/// The child's view in `-- CMD` mode: `CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|pid`.
fn report(cmd: &mut assert_cmd::Command) -> Vec<String> {
    let out = out(cmd.arg("--").args(REPORT));
    let line = out.ok().strip_suffix('\n').expect("one line").to_string();
    line.split('|').map(str::to_string).collect()
}

// ---- the same picks as the snapshot of the same GPUs ------------------------------

#[test]
fn default_provider_is_nvml_and_picks_as_the_snapshot_does() {
    for seed in 0..12 {
        let seed = seed.to_string();
        let (file, nvml) = both(&["--seed", &seed]);
        assert_eq!(nvml, file, "seed {seed}");
        assert!(LAB_IDLE.contains(&tokens(&nvml)[0]), "{nvml:?}");
    }
}

#[test]
fn two_gpus_are_the_snapshots_two() {
    for seed in 0..6 {
        let seed = seed.to_string();
        let (file, nvml) = both(&["-n", "2", "--seed", &seed]);
        assert_eq!(nvml, file, "seed {seed}");
        let got = tokens(&nvml);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|g| LAB_IDLE.contains(g)), "{got:?}");
    }
    assert_eq!(nvml_lab_out(["-n", "4"]).ok(), "1,3,5,7\n");
}

#[test]
fn explicit_provider_flag_and_library_argument() {
    let lib = format!("nvml:{}", fake_library().display());
    let scenario = fixture("lab-8xa100");
    let by_arg = out(gpusel()
        .env("FAKE_NVML_SCENARIO", &scenario)
        .args(["-p", &lib, "--seed", "4"]));
    let by_env = nvml_lab_out(["-p", "nvml", "--seed", "4"]);
    assert_eq!(by_arg.ok(), by_env.ok());
    assert_eq!(by_env.stdout, lab_out(["--seed", "4"]).ok());
}

#[test]
fn explain_gives_the_snapshots_reasons() {
    let args = ["--explain", "--seed", "5"];
    let file = lab_out(args);
    let nvml = nvml_lab_out(args);
    nvml.code(0);
    assert_eq!(nvml.stdout, file.stdout);
    assert_eq!(nvml.stderr, file.stderr);
    nvml.stderr_has("8 devices, 4 qualify, strategy idle-random")
        .stderr_has("GPU 0 (NVIDIA A100-SXM4-80GB): utilization 98% > 0% allowed")
        .stderr_has("GPU 2 (NVIDIA A100-SXM4-80GB): 1 process > 0 allowed")
        .stderr_has("GPU 4 (NVIDIA A100-SXM4-80GB): utilization 76% > 0% allowed; memory utilization 43% > 0% allowed; 2 processes > 0 allowed");
}

#[test]
fn json_is_the_snapshots_selection_on_this_host() {
    let args = ["--json", "--seed", "9", "-n", "2"];
    let (file, nvml) = both(&args);
    let mut file: serde_json::Value = serde_json::from_str(&file).unwrap();
    let mut nvml: serde_json::Value = serde_json::from_str(&nvml).unwrap();
    assert_eq!(file["host"], "lab-gpu01");
    assert!(
        nvml["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{nvml}"
    );
    file["host"] = serde_json::Value::Null;
    nvml["host"] = serde_json::Value::Null;
    assert_eq!(nvml, file);
    assert_eq!(nvml["verdicts"].as_array().map(Vec::len), Some(8));
}

#[test]
fn env_mode_prints_the_snapshots_exports() {
    let (file, nvml) = both(&["env", "--seed", "2"]);
    assert_eq!(nvml, file);
    assert!(nvml.contains("export CUDA_VISIBLE_DEVICES="), "{nvml}");
    assert!(
        nvml.contains("export CUDA_DEVICE_ORDER=PCI_BUS_ID"),
        "{nvml}"
    );
}

#[test]
fn run_mode_gives_the_child_an_idle_gpu() {
    let child = report(&mut nvml(fixture("lab-8xa100")));
    assert!(LAB_IDLE.contains(&child[0].as_str()), "{child:?}");
    assert_eq!(child[1], "PCI_BUS_ID");
    let child = report(nvml(fixture("lab-8xa100")).args(["--uuid", "--devices", "7"]));
    assert_eq!(child[0], LAB_GPU7_UUID);
    assert_eq!(child[1], "unset");
}

/// NVML is shut down before the exec: the job must not inherit the driver's
/// descriptors (the fake holds its scenario file open, inheritably, while
/// initialised, as the real library holds its device nodes).
#[test]
fn run_mode_shuts_nvml_down_before_the_job_starts() {
    let scene = Scene::from_fixture("lab-8xa100");
    // The glob lists the descriptor it read the directory through, gone by
    // the time readlink looks: that one may fail.
    let open_files = "for fd in /proc/$$/fd/*; do readlink \"$fd\" || true; done";
    let out = out(nvml(&scene.path).args(["--", "sh", "-c", open_files]));
    let files = out.ok();
    let scenario = scene.path.display().to_string();
    assert!(
        !files.contains(&scenario),
        "the job holds {scenario}:\n{files}"
    );
}

// ---- filters ------------------------------------------------------------------------

#[test]
fn filters_read_nvml_values() {
    // Idle GPUs have 85895151616 B (just under 80 GiB) free.
    let stdout = nvml_lab_out(["--mem", "79GiB"]).ok().to_string();
    assert!(LAB_IDLE.contains(&tokens(&stdout)[0]), "{stdout:?}");
    nvml_lab_out(["--mem", "80GiB"])
        .code(3)
        .no_stdout()
        .stderr_has("free < 80 GiB needed");
    // GPU 2: 0% utilization but one process.
    assert_eq!(
        nvml_lab_out(["--max-processes", "1", "--devices", "2"]).ok(),
        "2\n"
    );
    // GPU 6 at 45%, 201.7 W.
    assert_eq!(
        nvml_lab_out([
            "--max-util",
            "50",
            "--max-mem-util",
            "30",
            "--max-processes",
            "1",
            "--max-power",
            "250",
            "-d",
            "6"
        ])
        .ok(),
        "6\n"
    );
    nvml_lab_out(["--max-util", "40", "--max-processes", "1", "-d", "6"])
        .code(3)
        .stderr_has("utilization 45% > 40% allowed");
    assert_eq!(
        nvml_lab_out(["--exclude", "1,3,5", "--name", "a100-sxm4"]).ok(),
        "7\n"
    );
}

#[test]
fn no_match_exits_3_with_every_reason() {
    let out = nvml_lab_out(["--name", "H100", "--explain"]);
    out.code(3).no_stdout();
    for i in 0..8 {
        out.stderr_has(&format!("GPU {i} (NVIDIA A100-SXM4-80GB): "));
    }
    nvml_out(fixture("busy-mixed"), ["-n", "3"])
        .code(3)
        .no_stdout();
}

// ---- list ---------------------------------------------------------------------------

#[test]
fn list_shows_every_gpu_and_process() {
    let out = nvml_out(fixture("busy-mixed"), ["list"]);
    let stdout = out.ok();
    assert!(
        stdout
            .lines()
            .next()
            .is_some_and(|l| l.contains("5 GPUs  driver 550.127.05  CUDA 12.4  nvml")),
        "{stdout}"
    );
    // A GPU's row and the process lines under it, up to the next GPU.
    let device = |i: usize| {
        let lines: Vec<&str> = stdout.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.starts_with(&format!("{i} ")))
            .unwrap_or_else(|| panic!("no row for GPU {i}: {stdout}"));
        let len = lines[start + 1..]
            .iter()
            .take_while(|l| l.starts_with(' '))
            .count();
        lines[start..=start + len].join("\n")
    };
    for (i, needle) in [
        (0, "GeForce RTX 4090"),
        (0, "87%"),
        (0, "71C"),
        (0, "389/450 W"),
        (
            0,
            "[!] 4194305  ?   16 GiB  -  python3.11  (not visible in /proc here)",
        ),
        (0, "4194306  ?  1.2 GiB  -  blender"),
        (0, "4194307  ?  256 MiB  -  Xorg"),
        (1, "[ ]"),
        (1, "0 B/24 GiB"),
        (2, "A100-PCIE-40GB"),
        (2, "30/40 GiB"),
        (3, "Tesla V100-SXM2-32GB"),
        (3, "4194320  ?        -  -  torchrun"),
        (4, "4194330  ?    2 GiB  -  jupyter-lab"),
    ] {
        let text = device(i);
        assert!(text.contains(needle), "GPU {i} lacks {needle:?}:\n{text}");
    }
}

#[test]
fn list_json_is_the_snapshots_gpus() {
    let nvml = nvml_lab_out(["list", "--json"]);
    let mut nvml: serde_json::Value = serde_json::from_str(nvml.ok()).unwrap();
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    assert_eq!(nvml["provider"], "nvml");
    assert_eq!(nvml["driver_version"], "570.124.06");
    assert_eq!(nvml["cuda_driver_version"], "12.8");
    // User, start time and command line come from this machine's /proc;
    // the driver's reservation is NVML's v2 call's, which a snapshot file
    // written by another provider need not have.
    for s in [&mut nvml, &mut file] {
        for gpu in s["gpus"].as_array_mut().unwrap() {
            gpu.as_object_mut().unwrap().remove("memory_reserved");
            for p in gpu["processes"].as_array_mut().unwrap() {
                let p = p.as_object_mut().unwrap();
                for key in ["user", "start_time", "command_line", "visible"] {
                    p.remove(key);
                }
            }
        }
    }
    assert_eq!(nvml["gpus"], file["gpus"]);
}

// ---- MIG ----------------------------------------------------------------------------

#[test]
fn mig_devices_are_selectable_by_uuid() {
    let h100 = fixture("mig-h100");
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let out = out(nvml(&h100)
            .env("CUDA_VISIBLE_DEVICES", "0")
            .args(["--seed", &seed.to_string()]));
        let token = tokens(out.ok())[0].to_string();
        assert!(MIG_IDLE_UUIDS.contains(&token.as_str()), "{token}");
        seen.insert(token);
    }
    assert_eq!(seen.len(), 2, "only {seen:?} over 16 seeds");
    assert_eq!(
        nvml_out(&h100, ["--devices", "0:2"]).ok(),
        format!("{}\n", MIG_IDLE_UUIDS[1])
    );
    nvml_out(&h100, ["--devices", "0:0"])
        .code(3)
        .stderr_has("1 process > 0 allowed");
    assert_eq!(nvml_out(&h100, ["--devices", "1"]).ok(), "1\n");
    let child = report(nvml(&h100).args(["--devices", "0:1"]));
    assert_eq!(child[0], MIG_IDLE_UUIDS[0]);
}

#[test]
fn two_mig_devices_are_refused() {
    nvml_out(fixture("mig-h100"), ["-n", "2", "-d", "0:1,0:2"])
        .code(3)
        .no_stdout()
        .stderr_has("a process can use only one");
}

#[test]
fn mig_list_shows_instances() {
    let out = nvml_out(fixture("mig-h100"), ["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let migs = v["gpus"][0]["mig_devices"].as_array().expect("MIG devices");
    let profiles: Vec<&str> = migs
        .iter()
        .map(|m| m["profile"].as_str().unwrap())
        .collect();
    assert_eq!(profiles, ["3g.40gb", "2g.20gb", "1g.10gb"]);
    assert_eq!(migs[0]["processes"][0]["pid"], 4194400);
    assert_eq!(v["gpus"][0]["mig_mode"], true);
    assert_eq!(v["gpus"][0]["processes"], serde_json::Value::Null);
}

// ---- faults ------------------------------------------------------------------------

#[test]
fn no_driver_exits_4_and_says_what_to_do() {
    let scenario = fixture("driver-not-loaded");
    // The default, auto, says why each provider it tried failed (no
    // nvidia-smi on this PATH, even on a GPU machine).
    let no_smi = tempfile::tempdir().unwrap();
    let out = out(nvml(&scenario).env("PATH", no_smi.path()).arg("list"));
    out.code(4)
        .no_stdout()
        .stderr_has("\n  provider 'nvml' is unavailable: no NVIDIA driver found: is this a GPU machine? load the nvidia kernel module\n")
        .stderr_has("\n  provider 'smi' is unavailable: nvidia-smi not found on PATH");
    out.one_error_naming("no GPU provider works on this machine");
    // Asked for by name, it also names the provider to try instead.
    nvml_out(&scenario, ["-p", "nvml"])
        .code(4)
        .one_error_naming("provider 'nvml' is unavailable: no NVIDIA driver found: is this a GPU machine? load the nvidia kernel module, or try --provider smi");
    // In run mode gpusel's failure must not look like the command's.
    nvml_out(&scenario, ["--", "sh", "-c", "echo ran"])
        .code(125)
        .no_stdout()
        .stderr_has("no NVIDIA driver found");
}

#[test]
fn version_mismatch_exits_4_and_says_what_to_do() {
    let out = nvml_out(fixture("version-mismatch"), ["-p", "nvml", "-n", "2"]);
    out.code(4).no_stdout();
    let line = out.one_error_naming("driver/library version mismatch");
    assert!(
        line.contains("reboot or reload the nvidia module"),
        "{line}"
    );
}

#[test]
fn missing_library_exits_4_naming_it() {
    let out = out(gpusel()
        .env("GPUSEL_NVML_LIB", "/nonexistent/libnvidia-ml.so.1")
        .args(["-p", "nvml"]));
    out.code(4).no_stdout();
    let line = out.one_error_naming("/nonexistent/libnvidia-ml.so.1");
    assert!(line.contains("GPUSEL_NVML_LIB"), "{line}");
}

#[test]
fn lost_gpu_is_left_out_with_a_warning() {
    let lost = fixture("lost-gpu");
    let out = nvml_out(&lost, ["-n", "3"]);
    out.code(0).stderr_has("GPU 2 is left out");
    assert_eq!(out.stdout, "0,1,3\n");
    nvml_out(&lost, ["-n", "4"]).code(3).no_stdout();
    let list = nvml_out(&lost, ["list", "--json"]);
    list.code(0);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let indices: Vec<u64> = v["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 3]);
}

#[test]
fn old_driver_without_v3_calls_picks_as_a_new_one() {
    let old = fixture("old-driver");
    for seed in ["1", "8"] {
        let a = nvml_out(&old, ["--explain", "--seed", seed]);
        let b = nvml_lab_out(["--explain", "--seed", seed]);
        a.code(0);
        assert_eq!(a.stdout, b.stdout);
        assert_eq!(a.stderr, b.stderr);
    }
}

#[test]
fn bad_scenario_is_a_provider_error_not_a_crash() {
    let scene = Scene::from_fixture("idle-8xa100");
    scene.set("{ \"devices\": [ oops");
    // Init reads the scenario too: a broken one is an unknown NVML error.
    nvml_out(&scene.path, ["-p", "nvml", "list"])
        .code(4)
        .no_stdout()
        .one_error_naming("NVML");
}

// ---- state changes between runs ------------------------------------------------------

#[test]
fn a_changed_scenario_is_seen_by_the_next_run() {
    let scene = Scene::from_fixture("idle-8xa100");
    assert_eq!(nvml_out(&scene.path, ["-d", "3"]).ok(), "3\n");
    let mut v = scene.json();
    v["devices"][3]["utilization"]["gpu"] = 93.into();
    v["devices"][3]["compute_processes"] =
        serde_json::json!([{"pid": 4194399, "used_memory": 1_u64 << 30, "name": "python"}]);
    scene.set(&v.to_string());
    nvml_out(&scene.path, ["-d", "3"])
        .code(3)
        .no_stdout()
        .stderr_has("utilization 93% > 0% allowed")
        .stderr_has("1 process > 0 allowed");
    let idle: Vec<String> = (0..8).filter(|&i| i != 3).map(|i| i.to_string()).collect();
    assert_eq!(
        nvml_out(&scene.path, ["-n", "7"]).ok(),
        format!("{}\n", idle.join(","))
    );
}

#[test]
fn a_waiter_sees_the_driver_free_a_gpu() {
    let scene = Scene::from_fixture("idle-8xa100");
    let idle = scene.json();
    let mut busy = idle.clone();
    busy["devices"][3]["utilization"]["gpu"] = 100.into();
    busy["devices"][3]["compute_processes"] =
        serde_json::json!([{"pid": 4194399, "used_memory": 1_u64 << 30}]);
    scene.set(&busy.to_string());
    // --timeout: a waiter that never sees the change fails rather than hangs.
    let mut child = nvml_std(&scene.path)
        .args([
            "--wait",
            "--timeout",
            "120s",
            "--interval",
            "100ms",
            "-d",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gpusel");
    // Its status line shows it read the busy GPU through NVML.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    while !seen.contains("GPU 3 ") {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert_ne!(n, 0, "stderr ended: {seen}");
        seen.push_str(&line);
    }
    assert!(seen.contains("utilization 100% > 0% allowed"), "{seen}");
    assert_eq!(child.try_wait().expect("poll"), None, "still waiting");
    scene.set(&idle.to_string());
    let out: Out = child.wait_with_output().expect("wait").into();
    assert_eq!(out.ok(), "3\n");
}

#[test]
fn a_driver_hung_at_init_is_named_on_stderr_while_gpusel_waits() {
    // NVML init that never returns (within the test): once, `list` and
    // `-- CMD` hung without a word.
    let dir = tempfile::tempdir().unwrap();
    let path = hung_init_scenario(&dir);
    for args in [
        &["list"][..],
        &["--", "echo", "ran"],
        &["-p", "auto", "status"],
    ] {
        let mut child = nvml_std(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Collected::new(child.stderr.take().unwrap());
        let said = stderr.wait_for("the watchdog's line", |t| t.contains("still waiting for"));
        assert!(
            said.contains("gpusel: still waiting for NVML to initialise (")
                && said.contains(" s); the driver may be hung")
                && said.contains("--provider smi"),
            "{args:?}: {said}"
        );
        assert_eq!(child.try_wait().unwrap(), None, "still waiting");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
