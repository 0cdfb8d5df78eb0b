//! Idleness the driver can prove (issue 15), through the real NVML provider
//! on fake-nvml's `idleness` scenario: memory no listed process holds, a job
//! paused for data loading (the driver's sample buffer), a display-only
//! GPU, and the compute modes, in every mode: print, `-- CMD`, `--explain`,
//! `--json`, `list` (table and JSON), and the agent.

mod common;

use common::nvml::*;
use common::serve::serve;
use common::*;
use serde_json::Value;

/// GPU 2 (the X server only) and GPU 5 (idle): the only idle ones.
const IDLE: [&str; 2] = ["2", "5"];

fn idleness() -> std::path::PathBuf {
    fixture("idleness")
}

fn run<const N: usize>(args: [&str; N]) -> Out {
    nvml_out(idleness(), args)
}

/// The idleness scenario on a driver without the entry point `missing`.
fn without(missing: &str) -> Scene {
    let scene = Scene::from_fixture("idleness");
    let text = std::fs::read_to_string(idleness()).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    json["missing_functions"] = serde_json::json!([missing]);
    scene.set(&json.to_string());
    scene
}

#[test]
fn plain_gpusel_takes_only_the_gpus_the_driver_proves_idle() {
    for seed in 0..16 {
        let seed = seed.to_string();
        let out = run(["--seed", &seed]);
        let pick = tokens(out.ok())[0].to_string();
        assert!(IDLE.contains(&pick.as_str()), "seed {seed}: {pick}");
    }
    assert_eq!(run(["-n", "2"]).ok(), "2,5\n");
    // The job's own view: exactly those two.
    let job = common::out(nvml(idleness()).args(["-n", "2", "--"]).args(REPORT));
    assert!(job.ok().starts_with("2,5|PCI_BUS_ID|"), "{:?}", job.stdout);
    run(["-n", "3"]).code(3);
}

#[test]
fn explain_names_each_reason() {
    let out = run(["--explain", "-n", "2"]);
    out.code(0);
    out.stderr_has("6 devices, 2 qualify, strategy idle-random")
        .stderr_has("GPU 0 (NVIDIA H100 80GB HBM3): 30 GiB in use by no process visible here (an idle GPU shows at most 256 MiB)")
        .stderr_has("GPU 1 (NVIDIA H100 80GB HBM3): utilization peaked at 72% 2 s ago (> 0% allowed over the last 10 s); memory utilization peaked at 31% 2 s ago (> 0% allowed over the last 10 s)")
        .stderr_has("GPU 2 (NVIDIA RTX A6000): selected")
        .stderr_has("GPU 3 (NVIDIA H100 80GB HBM3): compute mode is Prohibited: the driver lets no process create a CUDA context on it")
        .stderr_has("GPU 4 (NVIDIA H100 80GB HBM3): compute mode is Exclusive_Process and process 1 holds it: the driver refuses a second context; 1 process > 0 allowed")
        .stderr_has("GPU 5 (NVIDIA H100 80GB HBM3): selected");
}

#[test]
fn json_verdicts_carry_the_reasons_as_data() {
    let out = run(["--json", "-n", "2"]);
    let json: Value = serde_json::from_str(out.ok()).expect("JSON");
    assert_eq!(json["cuda_visible_devices"], "2,5");
    let reasons = |i: usize| -> Vec<Value> {
        json["verdicts"][i]["reasons"]
            .as_array()
            .expect("reasons")
            .clone()
    };
    assert_eq!(reasons(0)[0]["reason"], "unaccounted_memory");
    assert_eq!(reasons(0)[0]["unaccounted"], 32212254720u64);
    assert_eq!(reasons(1)[0]["reason"], "utilization_peak");
    assert_eq!(reasons(1)[0]["value"], 72);
    assert_eq!(reasons(1)[0]["window_ms"], 10000);
    let age = reasons(1)[0]["age_ms"].as_u64().expect("age");
    // Measured from the snapshot, taken as the driver was asked.
    assert!((1900..2000 + 60_000).contains(&age), "{age}");
    assert_eq!(reasons(1)[1]["reason"], "memory_utilization_peak");
    assert_eq!(reasons(3)[0]["reason"], "compute_prohibited");
    assert_eq!(reasons(4)[0]["reason"], "compute_exclusive");
    assert_eq!(reasons(4)[0]["pid"], 1);
}

#[test]
fn the_window_is_the_idle_window() {
    // 1 s back, the paused job's 72% (2 s ago) is out of the window.
    assert_eq!(run(["--idle-window", "1s", "-n", "3"]).ok(), "1,2,5\n");
    // 0: the instant reading only, as gpusel did before.
    assert_eq!(run(["--idle-window", "0", "-n", "3"]).ok(), "1,2,5\n");
    // The config's and the environment's say the same.
    let out = common::out(
        nvml(idleness())
            .env("GPUSEL_IDLE_WINDOW", "1s")
            .args(["-n", "3"]),
    );
    assert_eq!(out.ok(), "1,2,5\n");
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(&dir, "config.toml", "[idle]\nwindow = \"500ms\"\n");
    let out = common::out(
        nvml(idleness())
            .env("GPUSEL_SYSTEM_CONFIG", &config)
            .args(["-n", "3"]),
    );
    assert_eq!(out.ok(), "1,2,5\n");
    run(["--idle-window", "ten", "-n", "1"])
        .code(2)
        .stderr_has("ten");
}

#[test]
fn without_a_sample_buffer_the_instant_reading_decides_and_v_says_so() {
    let scene = without("nvmlDeviceGetSamples");
    let out = nvml_out(&scene.path, ["-v", "-n", "3"]);
    out.code(0);
    assert_eq!(out.stdout, "1,2,5\n", "the paused job reads 0% now");
    out.stderr_has("GPU 1: the driver keeps no utilization samples for it")
        .stderr_has("idleness uses the instant reading");
}

#[test]
fn the_unaccounted_memory_tolerance_is_the_sites() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        &dir,
        "config.toml",
        "[idle]\nunaccounted_memory = \"40GiB\"\n",
    );
    let out = common::out(
        nvml(idleness())
            .env("GPUSEL_SYSTEM_CONFIG", &config)
            .args(["-n", "3"]),
    );
    assert_eq!(out.ok(), "0,2,5\n");
    let out = common::out(
        nvml(idleness())
            .env("GPUSEL_UNACCOUNTED_MEMORY", "50%")
            .args(["-n", "3"]),
    );
    assert_eq!(out.ok(), "0,2,5\n");
    // `list` applies the same tolerance.
    let out = common::out(
        nvml(idleness())
            .env("GPUSEL_UNACCOUNTED_MEMORY", "50%")
            .args(["list"]),
    );
    let gpu0 = out.ok().lines().find(|l| l.starts_with("0 ")).unwrap();
    assert!(gpu0.contains("[ ]"), "{gpu0}");
    common::out(
        nvml(idleness())
            .env("GPUSEL_UNACCOUNTED_MEMORY", "lots")
            .args(["-n", "1"]),
    )
    .code(2)
    .stderr_has("GPUSEL_UNACCOUNTED_MEMORY");
}

#[test]
fn the_v1_memory_call_does_not_make_idle_gpus_look_taken() {
    // Without the v2 call, used memory includes the driver's reservation
    // (543 MiB here): the tolerance makes room for it, a 30 GiB ghost stays one.
    let scene = without("nvmlDeviceGetMemoryInfo_v2");
    let out = nvml_out(&scene.path, ["--explain", "-n", "2"]);
    out.code(0);
    assert_eq!(out.stdout, "2,5\n");
    out.stderr_has("GPU 0 (NVIDIA H100 80GB HBM3): 30.5 GiB in use by no process visible here (an idle GPU shows at most 1.8 GiB)");
}

#[test]
fn filters_relaxed_never_give_out_a_gpu_the_driver_refuses() {
    let relaxed = common::ANY_LOAD;
    // Every GPU but 3 (prohibited) and 4 (exclusive, taken).
    let mut args: Vec<&str> = relaxed.to_vec();
    args.extend(["-n", "all"]);
    let out = nvml_out(idleness(), &args);
    assert_eq!(out.ok(), "0,1,2,5\n");
    // Asked for by name: refused, with the reason, in print and run mode.
    let mut args: Vec<&str> = relaxed.to_vec();
    args.extend(["-d", "3"]);
    nvml_out(idleness(), &args)
        .code(3)
        .stderr_has("compute mode is Prohibited");
    let mut args: Vec<&str> = relaxed.to_vec();
    args.extend(["-d", "4", "--", "true"]);
    nvml_out(idleness(), &args)
        .code(125)
        .stderr_has("compute mode is Exclusive_Process and process 1 holds it");
}

#[test]
fn list_marks_and_says_why() {
    let out = run(["list", "--wide"]);
    let text = out.ok();
    let line = |gpu: &str| -> &str {
        text.lines()
            .find(|l| l.starts_with(&format!("{gpu} ")))
            .unwrap_or_else(|| panic!("no row for GPU {gpu}:\n{text}"))
    };
    assert!(line("0").contains("[!]"), "{text}");
    assert!(line("1").contains("[~]"), "{text}");
    assert!(line("2").contains("[ ]"), "{text}");
    assert!(line("3").contains("[x]"), "{text}");
    assert!(line("3").contains("Prohibited"), "{text}");
    assert!(line("4").contains("[~]"), "{text}");
    assert!(line("4").contains("E. Process"), "{text}");
    assert!(line("5").contains("[ ]"), "{text}");
    for says in [
        "[!] 30 GiB in use by no process visible here",
        "peaked in the last 10 s: utilization 72% 2 s ago, memory 31% 2 s ago",
        "[x] compute mode is Prohibited",
        // The X server is listed, with its kind, and does not make GPU 2 busy.
        "  G  Xorg",
    ] {
        assert!(text.contains(says), "{says:?} not in\n{text}");
    }
    assert!(text.contains("COMPUTE M."), "{text}");
}

#[test]
fn list_json_carries_what_the_driver_said() {
    let out = run(["list", "--json"]);
    let json: Value = serde_json::from_str(out.ok()).expect("JSON");
    let gpus = json["gpus"].as_array().unwrap();
    assert_eq!(gpus[0]["memory_reserved"], 569376768u64);
    assert_eq!(gpus[1]["utilization_window"]["window_ms"], 10000);
    assert_eq!(gpus[1]["utilization_window"]["gpu"]["percent"], 72);
    assert_eq!(gpus[1]["utilization_window"]["gpu"]["samples"], 4);
    assert_eq!(gpus[1]["utilization_window"]["memory"]["percent"], 31);
    assert_eq!(gpus[2]["processes"][0]["kind"], "graphics");
    assert_eq!(gpus[3]["compute_mode"], "prohibited");
    assert_eq!(gpus[4]["compute_mode"], "exclusive_process");
    assert_eq!(gpus[5]["utilization_window"]["gpu"]["percent"], 0);
    // A snapshot file replays it: the same picks from the same state.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "snap.json", out.ok());
    let replay = common::out(gpusel_on(&file).args(["-n", "2", "--explain"]));
    replay.code(0);
    assert_eq!(replay.stdout, "2,5\n");
    replay.stderr_has("utilization peaked at 72%");
}

#[test]
fn the_agent_and_its_dashboard_agree() {
    let server = serve(nvml_std(idleness()), &["--interval", "100ms"]);
    let api = server.wait_for("/api/v1/snapshot", |r| r.status == 200);
    let json = api.json();
    assert_eq!(json["gpus"][3]["compute_mode"], "prohibited");
    assert_eq!(json["gpus"][1]["utilization_window"]["gpu"]["percent"], 72);
    // nvgpu's view: available exactly where plain `gpusel` would pick.
    let status = server.get("/gpu_status").json();
    let available: Vec<bool> = status["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["is_available"].as_bool().unwrap())
        .collect();
    assert_eq!(available, [false, false, true, false, false, true]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("[x]"), "the prohibited GPU's mark");
    assert!(page.body.contains("[!]"), "the ghost's mark");
}

#[test]
fn status_counts_compute_clients_as_gpuselect_does() {
    let out = run(["status", "--all"]);
    let text = out.ok();
    let processes = |gpu: &str| -> String {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(gpu))
            .unwrap_or_else(|| panic!("no row {gpu}:\n{text}"));
        row.split_whitespace().nth(3).unwrap().to_string()
    };
    assert_eq!(
        processes("2"),
        "0",
        "the X server is no compute client\n{text}"
    );
    assert_eq!(processes("4"), "1", "{text}");
}
