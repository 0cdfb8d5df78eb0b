//! provider-nvml against fake-nvml, in process, through the real `dlopen`
//! boundary: every field, every fixture, faults, and changes to the scenario
//! under a live provider.

#[path = "../../fake-nvml/locate.rs"]
mod fake_nvml;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use gpusel_core::{FileProvider, GpuInfoProvider, ProcessKind, ProviderError, Snapshot};
use gpusel_nvml::{InitError, NvmlProvider};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/nvml");
const LAB_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-8xa100.json");
const MIG_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mig-2xh100.json");

/// The scenario file every case writes before it opens or reads.
struct Scene {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scene {
    /// Replaces the scenario atomically, so that no read sees half a file.
    fn set(&self, json: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, json).expect("write scenario");
        std::fs::rename(&tmp, &self.path).expect("replace scenario");
    }

    fn fixture(&self, name: &str) {
        self.set(&fixture(name));
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).expect("fixture is JSON")
}

fn open() -> NvmlProvider {
    NvmlProvider::open(Some(fake_nvml::library().to_path_buf())).expect("fake NVML opens")
}

fn snapshot(p: &NvmlProvider) -> Snapshot {
    block_on(p.snapshot()).expect("snapshot")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// What `/proc` adds, which differs from machine to machine, and the
/// driver's reservation, which NVML's v2 call reports and a snapshot file
/// need not.
fn without_proc_fields(mut s: Snapshot) -> Snapshot {
    for gpu in &mut s.gpus {
        gpu.memory_reserved = None;
        let migs = gpu.mig_devices.iter_mut().map(|m| &mut m.processes);
        for list in std::iter::once(&mut gpu.processes).chain(migs).flatten() {
            for p in list {
                p.user = None;
                p.start_time = None;
                p.command_line = None;
                p.visible = None;
            }
        }
    }
    s
}

fn lab_matches_the_example(scene: &Scene) {
    scene.fixture("lab-8xa100");
    let nvml = without_proc_fields(snapshot(&open()));
    let file = without_proc_fields(block_on(FileProvider::new(LAB_EXAMPLE).snapshot()).unwrap());
    assert_eq!(nvml.provider, "nvml");
    assert_eq!(nvml.driver_version.as_deref(), Some("570.124.06"));
    assert_eq!(nvml.cuda_driver_version.as_deref(), Some("12.8"));
    assert_eq!(nvml.gpus, file.gpus);
}

fn mig_matches_the_example(scene: &Scene) {
    scene.fixture("mig-h100");
    let mut nvml = without_proc_fields(snapshot(&open()));
    let mut file =
        without_proc_fields(block_on(FileProvider::new(MIG_EXAMPLE).snapshot()).unwrap());
    // The fixture's MIG process has a pid no machine has; all else is equal.
    for s in [&mut nvml, &mut file] {
        for p in s.gpus[0].mig_devices[0].processes.iter_mut().flatten() {
            p.pid = 0;
        }
    }
    assert_eq!(nvml.gpus, file.gpus);
    let m = &nvml.gpus[0].mig_devices[2];
    assert_eq!(
        (m.gpu_instance_id, m.compute_instance_id),
        (Some(9), Some(0))
    );
    assert_eq!(m.profile.as_deref(), Some("1g.10gb"));
}

fn memory_is_the_v2_figure(scene: &Scene) {
    scene.fixture("idle-8xa100");
    let s = snapshot(&open());
    assert_eq!(s.gpus.len(), 8);
    for gpu in &s.gpus {
        // 540 MiB is reserved by the driver; the v1 call would count it used.
        assert_eq!(gpu.memory_used, Some(0), "{gpu:?}");
        assert_eq!(gpu.memory_free, Some(85_899_345_920 - 566_231_040));
        assert_eq!(gpu.processes, Some(vec![]));
    }
}

fn busy_box_merges_compute_and_graphics(scene: &Scene) {
    scene.fixture("busy-mixed");
    let s = snapshot(&open());
    let names: Vec<&str> = s.gpus.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "NVIDIA GeForce RTX 4090",
            "NVIDIA GeForce RTX 4090",
            "NVIDIA A100-PCIE-40GB",
            "Tesla V100-SXM2-32GB",
            "NVIDIA A100-PCIE-40GB"
        ]
    );
    let procs = s.gpus[0].processes.as_ref().unwrap();
    type Seen<'a> = (u32, Option<&'a str>, Option<ProcessKind>, Option<u64>);
    let summary: Vec<Seen> = procs
        .iter()
        .map(|p| (p.pid, p.name.as_deref(), p.kind, p.used_memory))
        .collect();
    assert_eq!(
        summary,
        [
            (
                4194305,
                Some("python3.11"),
                Some(ProcessKind::Compute),
                Some(16 << 30)
            ),
            (
                4194306,
                Some("blender"),
                Some(ProcessKind::ComputeGraphics),
                Some((1 << 30) + (256 << 20))
            ),
            (
                4194307,
                Some("Xorg"),
                Some(ProcessKind::Graphics),
                Some(256 << 20)
            ),
        ]
    );
    // No such pid here: /proc adds nothing, and says it cannot see them.
    assert!(
        procs
            .iter()
            .all(|p| p.user.is_none() && p.start_time.is_none() && p.visible == Some(false))
    );
    let v100 = &s.gpus[3].processes.as_ref().unwrap()[0];
    assert_eq!((v100.pid, v100.used_memory), (4194320, None));
    assert_eq!(s.gpus[1].performance_state, Some(8));
    assert_eq!(s.gpus[3].mig_mode, None, "V100 has no MIG");
}

fn lost_gpu_is_left_out(scene: &Scene) {
    scene.fixture("lost-gpu");
    let s = snapshot(&open());
    let indices: Vec<u32> = s.gpus.iter().map(|g| g.index).collect();
    assert_eq!(indices, [0, 1, 3]);
}

fn old_driver_falls_back_to_v2_processes_and_v1_memory(scene: &Scene) {
    scene.fixture("old-driver");
    let old = without_proc_fields(snapshot(&open()));
    scene.fixture("lab-8xa100");
    let new = without_proc_fields(snapshot(&open()));
    assert_eq!(old.driver_version.as_deref(), Some("470.256.02"));
    assert_eq!(old.cuda_driver_version.as_deref(), Some("11.4"));
    assert_eq!(old.gpus, new.gpus);
}

fn omitted_fields_are_none(scene: &Scene) {
    scene.set(
        r#"{"devices": [{"uuid": "GPU-00000000-0000-4000-8000-000000000001", "name": "Bare"}]}"#,
    );
    let s = snapshot(&open());
    assert_eq!(s.driver_version, None);
    assert_eq!(s.cuda_driver_version, None);
    let bare = gpusel_core::Gpu::new(0, "GPU-00000000-0000-4000-8000-000000000001", "Bare");
    assert_eq!(s.gpus, [bare]);
}

fn changes_are_seen_by_a_live_provider(scene: &Scene) {
    scene.fixture("idle-8xa100");
    let provider = open();
    let before = snapshot(&provider);
    assert_eq!(before.gpus[3].utilization_gpu, Some(0));
    assert_eq!(before.gpus[3].processes, Some(vec![]));
    let mut v = fixture_json("idle-8xa100");
    v["devices"][3]["utilization"]["gpu"] = 93.into();
    v["devices"][3]["compute_processes"] =
        serde_json::json!([{"pid": 4194399, "used_memory": 1024}]);
    scene.set(&v.to_string());
    let after = snapshot(&provider);
    assert_eq!(after.gpus[3].utilization_gpu, Some(93));
    assert_eq!(after.gpus[3].processes.as_ref().map(Vec::len), Some(1));
    assert_eq!(after.gpus[2].utilization_gpu, Some(0));
}

fn bad_scenario_fails_the_scan_not_the_process(scene: &Scene) {
    scene.fixture("idle-8xa100");
    let provider = open();
    scene.set("{ not json");
    match block_on(provider.snapshot()) {
        Err(ProviderError::Failed {
            message, source, ..
        }) => {
            assert!(message.contains("cannot count the GPUs"), "{message}");
            let source = source.expect("the scan error as the source");
            assert!(
                source.downcast_ref::<gpusel_nvml::ScanError>().is_some(),
                "{source:?}"
            );
        }
        other => panic!("expected a failed scan, got {other:?}"),
    }
}

fn init_errors_say_what_to_do(scene: &Scene) {
    let fake = || NvmlProvider::open(Some(fake_nvml::library().to_path_buf())).unwrap_err();
    scene.fixture("driver-not-loaded");
    let e = fake();
    assert!(matches!(e, InitError::DriverNotLoaded), "{e:?}");
    assert!(
        e.to_string().contains("load the nvidia kernel module"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("--"),
        "no CLI flag in a library error: {e}"
    );
    scene.fixture("version-mismatch");
    let e = fake();
    assert!(matches!(e, InitError::VersionMismatch), "{e:?}");
    assert!(
        e.to_string().contains("reboot or reload the nvidia module"),
        "{e}"
    );
    let e = NvmlProvider::open(Some("/nonexistent/libnvidia-ml.so.1".into())).unwrap_err();
    assert!(matches!(e, InitError::Load { .. }), "{e:?}");
    assert!(e.to_string().contains("GPUSEL_NVML_LIB"), "{e}");
    // As a provider error, the init error stays the source.
    let e = gpusel_nvml::open_spec(Some("/nonexistent/libnvidia-ml.so.1")).unwrap_err();
    match &e {
        ProviderError::Unavailable {
            source: Some(source),
            ..
        } => assert!(
            matches!(source.downcast_ref(), Some(InitError::Load { .. })),
            "{source:?}"
        ),
        other => panic!("expected an unavailable provider, got {other:?}"),
    }
    // A library that is not NVML at all.
    let e = NvmlProvider::open(Some("libc.so.6".into())).unwrap_err();
    assert!(matches!(e, InitError::NotNvml { .. }), "{e:?}");
}

/// A process that /proc shows, so that user, start time and command line
/// can be checked against what the OS says.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn visible_processes_get_user_start_time_and_command_line(scene: &Scene) {
    let sleeper = Sleeper(
        Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = sleeper.0.id();
    let mut v = fixture_json("idle-8xa100");
    // No NVML name: it must come from /proc.
    v["devices"][5]["compute_processes"] =
        serde_json::json!([{"pid": pid, "used_memory": 1u64 << 30}]);
    scene.set(&v.to_string());
    let s = snapshot(&open());
    let p = &s.gpus[5].processes.as_ref().unwrap()[0];
    assert_eq!(p.pid, pid);
    assert_eq!(p.name.as_deref(), Some("sleep"));
    assert_eq!(
        p.command_line,
        Some(vec!["sleep".to_string(), "300".to_string()])
    );
    let me = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string());
    assert_eq!(p.user.as_deref(), Some(me.as_str()));
    let age = SystemTime::now()
        .duration_since(p.start_time.expect("start time"))
        .unwrap_or_default();
    assert!(age < Duration::from_secs(600), "started {age:?} ago");
}

type Case = (&'static str, fn(&Scene));

const CASES: &[Case] = &[
    ("lab_matches_the_example", lab_matches_the_example),
    ("mig_matches_the_example", mig_matches_the_example),
    ("memory_is_the_v2_figure", memory_is_the_v2_figure),
    (
        "busy_box_merges_compute_and_graphics",
        busy_box_merges_compute_and_graphics,
    ),
    ("lost_gpu_is_left_out", lost_gpu_is_left_out),
    (
        "old_driver_falls_back_to_v2_processes_and_v1_memory",
        old_driver_falls_back_to_v2_processes_and_v1_memory,
    ),
    ("omitted_fields_are_none", omitted_fields_are_none),
    (
        "changes_are_seen_by_a_live_provider",
        changes_are_seen_by_a_live_provider,
    ),
    (
        "bad_scenario_fails_the_scan_not_the_process",
        bad_scenario_fails_the_scan_not_the_process,
    ),
    ("init_errors_say_what_to_do", init_errors_say_what_to_do),
    (
        "visible_processes_get_user_start_time_and_command_line",
        visible_processes_get_user_start_time_and_command_line,
    ),
];

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scene = Scene {
        path: dir.path().join("scenario.json"),
        _dir: dir,
    };
    scene.fixture("idle-8xa100");
    // SAFETY: no other thread exists yet, and none reads the environment
    // while this runs; the fake reads this variable on every call.
    unsafe { std::env::set_var("FAKE_NVML_SCENARIO", &scene.path) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    // What libtest answers to `--list` (test runners such as nextest ask);
    // none of these cases is ignored.
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            for (name, _) in CASES {
                println!("{name}: test");
            }
        }
        return;
    }
    if args.iter().any(|a| a == "--ignored") {
        return;
    }
    // `cargo test -p provider-nvml -- NAME` runs the cases whose name has NAME.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let mut ran = 0;
    for (name, case) in CASES {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        case(&scene);
        println!("test {name} ... ok ({:?})", started.elapsed());
        ran += 1;
    }
    println!("\ntest result: ok. {ran} passed; 0 failed");
}
