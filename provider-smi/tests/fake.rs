//! The provider running the fake `nvidia-smi` of `tests/fixtures/smi/`.
//! Each test gets a wrapper script that fixes the scenario, so no test
//! touches this process's environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gpusel_core::{GpuInfoProvider, Snapshot};
use gpusel_smi::{SmiError, SmiProvider};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/smi");
const LAB_JSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab-8xa100.json");

/// An executable `nvidia-smi` in `dir` running the fake on `scenario`.
fn wrapper(dir: &Path, scenario: &str) -> PathBuf {
    let path = dir.join("nvidia-smi");
    let script =
        format!("#!/bin/sh\nFAKE_SMI_SCENARIO='{scenario}' exec '{FIXTURES}/nvidia-smi' \"$@\"\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A scenario directory in `dir` holding the given outputs, in the lab's
/// recorded field order.
fn scenario(dir: &Path, gpus: &str, apps: &str) -> PathBuf {
    let s = dir.join("scenario");
    std::fs::create_dir_all(&s).unwrap();
    for q in ["query-gpu", "compute-apps"] {
        std::fs::copy(
            Path::new(FIXTURES)
                .join("lab-8xa100")
                .join(format!("{q}.cmd")),
            s.join(format!("{q}.cmd")),
        )
        .unwrap();
    }
    std::fs::write(s.join("query-gpu.csv"), gpus).unwrap();
    std::fs::write(s.join("compute-apps.csv"), apps).unwrap();
    s
}

fn read(scenario: &str) -> Result<Snapshot, SmiError> {
    let dir = tempfile::tempdir().unwrap();
    SmiProvider::new(wrapper(dir.path(), scenario)).read()
}

#[test]
fn the_lab_scenario_is_the_lab_snapshot() {
    let smi = read("lab-8xa100").unwrap();
    let text = std::fs::read_to_string(LAB_JSON).unwrap();
    let file = gpusel_core::parse_snapshot(&text, LAB_JSON.as_ref()).unwrap();
    assert_eq!(smi.provider, "smi");
    assert_eq!(smi.driver_version, file.driver_version);
    assert_eq!(smi.gpus.len(), file.gpus.len());
    for (mut s, mut f) in smi.gpus.into_iter().zip(file.gpus) {
        // Watts with two decimals: within 5 mW.
        for (a, b) in [(s.power_draw, f.power_draw), (s.power_limit, f.power_limit)] {
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a.abs_diff(b) <= 5, "GPU {}: {a} vs {b}", f.index);
        }
        (s.power_draw, s.power_limit) = (f.power_draw, f.power_limit);
        // What /proc says about these pids is this machine's business.
        for gpu in [&mut s, &mut f] {
            for p in gpu.processes.iter_mut().flatten() {
                (p.user, p.start_time, p.command_line, p.kind) = (None, None, None, None);
                p.visible = None;
            }
        }
        assert_eq!(s, f);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_trait_gives_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let provider = SmiProvider::new(wrapper(dir.path(), "busy-mixed"));
    let snapshot = provider.snapshot().await.unwrap();
    assert_eq!(provider.name(), "smi");
    assert_eq!(snapshot.gpus.len(), 4);
    assert_eq!(snapshot.gpus[2].processes.as_ref().map(Vec::len), Some(2));
    snapshot.validate().unwrap();
}

#[test]
fn processes_are_joined_by_uuid_whatever_its_case() {
    let dir = tempfile::tempdir().unwrap();
    let gpus = "0, GPU-aa, A, 00000000:01:00.0, 100, 1, 99, 0, 0, 30, 10.00, 100.00, P8, 100, Disabled, 1.0\n\
                1, GPU-bb, B, 00000000:02:00.0, 100, 1, 99, 0, 0, 30, 10.00, 100.00, P8, 100, Disabled, 1.0\n";
    // A process on a GPU that --query-gpu did not list (hidden by the
    // driver between the two runs) is dropped, not attached elsewhere.
    let apps = "1, x, 5, gpu-BB\n2, y, 6, GPU-cc\n";
    let s = scenario(dir.path(), gpus, apps);
    let snapshot = read(s.to_str().unwrap()).unwrap();
    assert_eq!(snapshot.gpus[0].processes, Some(vec![]));
    let on_b = snapshot.gpus[1].processes.as_ref().unwrap();
    assert_eq!(on_b.len(), 1);
    assert_eq!(on_b[0].pid, 1);
    assert_eq!(on_b[0].name.as_deref(), Some("x"));
}

#[test]
fn own_process_is_enriched_from_proc() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let gpus = "0, GPU-aa, A, 00000000:01:00.0, 100, 1, 99, 0, 0, 30, 10.00, 100.00, P8, 100, Disabled, 1.0\n";
    let apps = format!("{me}, [Insufficient Permissions], 5, GPU-aa\n");
    let s = scenario(dir.path(), gpus, &apps);
    let snapshot = read(s.to_str().unwrap()).unwrap();
    let p = &snapshot.gpus[0].processes.as_ref().unwrap()[0];
    assert!(p.user.is_some() && p.start_time.is_some(), "{p:?}");
    assert!(p.command_line.as_ref().is_some_and(|c| !c.is_empty()));
    assert!(p.name.is_some(), "the unreadable name comes from /proc");
}

#[test]
fn a_failing_process_query_leaves_processes_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(
        dir.path(),
        &std::fs::read_to_string(Path::new(FIXTURES).join("busy-mixed/query-gpu.csv")).unwrap(),
        "Unable to determine the device handle for GPU 0000:1A:00.0: Unknown Error\n",
    );
    std::fs::write(s.join("compute-apps.exit"), "255\n").unwrap();
    let snapshot = read(s.to_str().unwrap()).unwrap();
    assert_eq!(snapshot.gpus.len(), 4);
    assert!(snapshot.gpus.iter().all(|g| g.processes.is_none()));
}

#[test]
fn garbage_only_is_an_error_not_an_empty_machine() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(dir.path(), "Something, changed\n", "");
    let e = read(s.to_str().unwrap()).unwrap_err();
    assert!(matches!(e, SmiError::Unreadable { .. }), "{e}");
    assert!(
        e.to_string().contains("first line: \"Something, changed"),
        "{e}"
    );
}

#[test]
fn driver_failure_shows_what_nvidia_smi_said() {
    let e = read("driver-not-loaded").unwrap_err();
    assert_eq!(
        e.to_string(),
        "nvidia-smi --query-gpu failed (exit code 9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
    );
}

#[test]
fn hang_is_bounded_by_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let provider =
        SmiProvider::new(wrapper(dir.path(), "hang")).with_timeout(Duration::from_millis(200));
    let e = provider.read().unwrap_err();
    assert!(matches!(e, SmiError::Timeout { .. }), "{e}");
}

/// A wrapper running the fake on `scenario` that logs every run's
/// arguments (`FAKE_SMI_CALLS`), and a count of the runs of `topo -m` so far.
fn counting_wrapper(dir: &Path, scenario: &str) -> (PathBuf, impl Fn() -> usize) {
    let log = dir.join("calls");
    let path = dir.join("nvidia-smi");
    let script = format!(
        "#!/bin/sh\nFAKE_SMI_CALLS='{}' FAKE_SMI_SCENARIO='{scenario}' exec '{FIXTURES}/nvidia-smi' \"$@\"\n",
        log.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let topo_runs = move || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "topo -m")
            .count()
    };
    (path, topo_runs)
}

#[test]
fn topo_m_is_read_once_and_only_for_snapshots_that_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, topo_runs) = counting_wrapper(dir.path(), "nvlink-pairs");
    let provider = SmiProvider::new(&path);

    let plain = provider.read_without_topology().unwrap();
    assert!(plain.gpus.iter().all(|g| g.links.is_empty()));
    assert_eq!(topo_runs(), 0);
    for _ in 0..3 {
        let full = provider.read().unwrap();
        let gpu1 = &full.gpus[1];
        assert_eq!(gpu1.numa_node, Some(0));
        assert_eq!(gpu1.cpu_affinity.as_deref(), Some("0-31"));
        let to3 = gpu1.link_to(&full.gpus[3].uuid).unwrap();
        assert_eq!(to3.nvlinks, 12);
        assert_eq!(gpu1.links.len(), 7);
    }
    assert_eq!(topo_runs(), 1, "topo -m is kept for the same GPUs");
    // A clone shares what was read.
    let again = provider.clone().read().unwrap();
    assert_eq!(again.gpus[1].links.len(), 7);
    assert_eq!(topo_runs(), 1);
}

#[test]
fn a_failed_topo_m_is_not_run_again() {
    // The lab's recording has no `topo -m`: the fake fails it (exit 2), as
    // a driver without topology support does.
    let dir = tempfile::tempdir().unwrap();
    let (path, topo_runs) = counting_wrapper(dir.path(), "lab-8xa100");
    let provider = SmiProvider::new(&path);
    for _ in 0..3 {
        let full = provider.read().unwrap();
        assert_eq!(full.gpus.len(), 8);
        assert!(
            full.gpus
                .iter()
                .all(|g| g.links.is_empty() && g.numa_node.is_none() && g.cpu_affinity.is_none()),
            "{:?}",
            full.gpus
        );
    }
    assert_eq!(topo_runs(), 1, "the failure is kept for the same GPUs");
    // Once its retry time is up, a snapshot runs it again.
    let provider = SmiProvider::new(&path).with_topology_retry(Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(provider.read().unwrap().gpus.len(), 8);
    }
    assert_eq!(topo_runs(), 1 + 3, "tried again on every snapshot");
}

#[test]
fn other_gpus_have_topo_m_read_again() {
    // One provider, its machine's GPUs changed under it (the scenario's
    // recording swapped): the matrix kept is for other GPUs.
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("machine");
    let copy = |from: &str| {
        let _ = std::fs::remove_dir_all(&recording);
        std::fs::create_dir_all(&recording).unwrap();
        for entry in std::fs::read_dir(Path::new(FIXTURES).join(from)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), recording.join(entry.file_name())).unwrap();
        }
    };
    copy("busy-mixed");
    let (path, topo_runs) = counting_wrapper(dir.path(), recording.to_str().unwrap());
    let provider = SmiProvider::new(&path);
    assert!(
        provider
            .read()
            .unwrap()
            .gpus
            .iter()
            .all(|g| g.links.is_empty())
    );
    assert_eq!(topo_runs(), 1);
    copy("nvlink-pairs");
    let full = provider.read().unwrap();
    assert_eq!(full.gpus[1].links.len(), 7);
    assert_eq!(topo_runs(), 2);
}
