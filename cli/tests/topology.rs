//! Topology-aware picks on NVML: the real provider-nvml reads fake-nvml's
//! topology scenarios (`nvlink-pairs-8xa100`: NVLink pairs 0-1, 2-3, 4-5,
//! 6-7 and NUMA halves 0-3 / 4-7; `pcie-numa-4xl40s`: PCIe only, 0-1 on one
//! switch of NUMA node 0, 2-3 on node 1), and every mode must keep `-n 2`
//! inside a pair and `-n 4` inside a half, and say what joins the pick.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::nvml::*;
use common::serve::serve;
use common::*;
use serde_json::Value;

const PAIRS: &str = "nvlink-pairs-8xa100";
const PCIE: &str = "pcie-numa-4xl40s";
const PAIR_SETS: [&str; 4] = ["0,1", "2,3", "4,5", "6,7"];

/// The scenario `name` with a compute job on each GPU of `busy`.
fn with_jobs(name: &str, busy: &[usize]) -> Scene {
    let scene = Scene::from_fixture(name);
    let mut json = scene.json();
    for &i in busy {
        let gpu = &mut json["devices"][i];
        gpu["utilization"] = serde_json::json!({"gpu": 97, "memory": 60});
        gpu["memory"]["used"] = 40_000_000_000u64.into();
        gpu["memory"]["free"] = (85_899_345_920u64 - 566_231_040 - 40_000_000_000).into();
        gpu["compute_processes"] = serde_json::json!([
            {"pid": 4_194_400 + i, "used_memory": 40_000_000_000u64, "name": "python3"}
        ]);
    }
    scene.set(&json.to_string());
    scene
}

fn picks(scenario: &Path, args: &[&str]) -> String {
    nvml_out(scenario, args).ok().trim_end().to_string()
}

#[test]
fn two_gpus_are_always_an_nvlink_pair_whatever_the_strategy_and_seed() {
    for strategy in ["idle-random", "random", "least-used", "best-fit"] {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..8 {
            let seed = seed.to_string();
            let got = picks(
                &fixture(PAIRS),
                &[
                    "-n",
                    "2",
                    "--strategy",
                    strategy,
                    "--seed",
                    &seed,
                    "--mem",
                    "20GiB",
                ],
            );
            assert!(
                PAIR_SETS.contains(&got.as_str()),
                "{strategy} seed {seed}: {got}"
            );
            seen.insert(got);
        }
        // Random stays random among the pairs.
        if strategy.contains("random") {
            assert!(seen.len() > 1, "{strategy} always took {seen:?}");
        }
    }
}

#[test]
fn with_one_gpu_of_a_pair_busy_the_pick_is_another_whole_pair_in_every_mode() {
    // One GPU of each of the first three pairs runs a job: only 6-7 is whole.
    let scene = with_jobs(PAIRS, &[0, 3, 4]);
    for strategy in ["idle-random", "least-used"] {
        for seed in 0..6 {
            let seed = seed.to_string();
            let args = ["-n", "2", "--strategy", strategy, "--seed", &seed];
            assert_eq!(picks(&scene.path, &args), "6,7", "{strategy} seed {seed}");
        }
    }
    // `-- CMD`: the job sees the pair.
    let out = out(nvml(&scene.path).args(["-n", "2", "--"]).args(REPORT));
    let line = out.ok().trim_end().to_string();
    assert!(line.starts_with("6,7|PCI_BUS_ID|"), "{line}");
    // --explain names the link.
    let explained = nvml_out(&scene.path, ["-n", "2", "--explain"]);
    explained.code(0);
    assert_eq!(explained.stdout, "6,7\n");
    assert!(
        explained
            .stderr
            .contains("\nGPUs 6,7: joined by NVLink (NV12)"),
        "{}",
        explained.stderr
    );
    assert!(
        explained
            .stderr
            .contains("GPU 0 (NVIDIA A100 80GB PCIe): utilization 97%"),
        "{}",
        explained.stderr
    );
    // -v says it too.
    let verbose = nvml_out(&scene.path, ["-n", "2", "-v"]);
    assert!(
        verbose.stderr.contains("GPUs 6,7: joined by NVLink (NV12)"),
        "{}",
        verbose.stderr
    );
    // --json carries it.
    let json: Value =
        serde_json::from_str(nvml_out(&scene.path, ["-n", "2", "--json"]).ok()).unwrap();
    assert_eq!(json["cuda_visible_devices"], "6,7");
    assert_eq!(json["link"], "nvlink");
    assert_eq!(json["link_code"], "NV12");
    // env mode.
    assert!(
        nvml_out(&scene.path, ["env", "-n", "2"])
            .ok()
            .contains("CUDA_VISIBLE_DEVICES=6,7")
    );
}

#[test]
fn four_gpus_are_one_numa_half() {
    for seed in 0..6 {
        let seed = seed.to_string();
        let got = picks(
            &fixture(PAIRS),
            &["-n", "4", "--strategy", "random", "--seed", &seed],
        );
        assert!(
            ["0,1,2,3", "4,5,6,7"].contains(&got.as_str()),
            "seed {seed}: {got}"
        );
    }
    let scene = with_jobs(PAIRS, &[2]);
    let out = nvml_out(&scene.path, ["-n", "4", "--explain"]);
    out.code(0);
    assert_eq!(out.stdout, "4,5,6,7\n");
    assert!(
        out.stderr
            .contains("GPUs 4,5,6,7: on the same NUMA node (NODE)"),
        "{}",
        out.stderr
    );
    // Eight: the whole machine, which spans both sockets.
    let all = nvml_out(fixture(PAIRS), ["-n", "8", "--json"]);
    let json: Value = serde_json::from_str(all.ok()).unwrap();
    assert_eq!(json["link"], "system");
    assert_eq!(json["link_code"], "SYS");
}

#[test]
fn without_nvlink_two_gpus_share_a_numa_node() {
    for seed in 0..8 {
        let seed = seed.to_string();
        let got = picks(
            &fixture(PCIE),
            &["-n", "2", "--strategy", "random", "--seed", &seed],
        );
        assert!(["0,1", "2,3"].contains(&got.as_str()), "seed {seed}: {got}");
    }
    // GPU 0 busy: 1 has no partner on its node, so 2-3 (one host bridge).
    let scene = with_jobs(PCIE, &[0]);
    let out = nvml_out(&scene.path, ["-n", "2", "--explain"]);
    out.code(0);
    assert_eq!(out.stdout, "2,3\n");
    assert!(
        out.stderr.contains("GPUs 2,3: on the same NUMA node (PHB)"),
        "{}",
        out.stderr
    );
    // Three cannot share a node: the explanation says so.
    let out = nvml_out(fixture(PCIE), ["-n", "3", "--explain"]);
    out.code(0);
    assert!(
        out.stderr
            .contains(": no common link: spans the system (SYS)"),
        "{}",
        out.stderr
    );
}

/// Starts `gpusel -d INDEX -- sh -c 'echo ready; exec sleep 60'` on
/// `scenario` with `locks`, and returns once the job runs (holding the lease).
fn hold(scenario: &Path, locks: &Path, index: usize) -> Child {
    let mut job = nvml_std(scenario)
        .arg("--lock-dir")
        .arg(locks)
        .args([
            "-d",
            &index.to_string(),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 60",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut ready = String::new();
    BufReader::new(job.stdout.as_mut().expect("piped"))
        .read_line(&mut ready)
        .expect("read the holder");
    assert_eq!(ready, "ready\n", "the holder did not start");
    job
}

#[test]
fn a_leased_pair_member_sends_the_pick_to_another_pair() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let scenario = fixture(PAIRS);
    let mut holders: Vec<Child> = [1, 2, 5]
        .iter()
        .map(|&i| hold(&scenario, &locks, i))
        .collect();
    for seed in 0..6 {
        let seed = seed.to_string();
        let out = out(nvml(&scenario)
            .arg("--lock-dir")
            .arg(&locks)
            .args(["-n", "2", "--strategy", "random", "--seed", &seed, "--"])
            .args(REPORT));
        let line = out.ok().trim_end().to_string();
        assert!(line.starts_with("6,7|"), "seed {seed}: {line}");
    }
    // What a job now running holds is leased by it, and the rest free.
    let list = nvml_out(
        &scenario,
        ["list", "--json", "--lock-dir", locks.to_str().unwrap()],
    );
    let json: Value = serde_json::from_str(list.ok()).unwrap();
    let leased: Vec<u64> = json["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g.get("lease").is_some())
        .map(|g| g["index"].as_u64().unwrap())
        .collect();
    assert_eq!(leased, [1, 2, 5]);
    for h in &mut holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
}

const PCIE_MATRIX: &str = "\
\tGPU0\tGPU1\tGPU2\tGPU3\tCPU Affinity\tNUMA Affinity
GPU0\t X \tPIX\tSYS\tSYS\t0-23\t0
GPU1\tPIX\t X \tSYS\tSYS\t0-23\t0
GPU2\tSYS\tSYS\t X \tPHB\t24-47\t1
GPU3\tSYS\tSYS\tPHB\t X \t24-47\t1

Legend:
";

#[test]
fn topo_prints_the_matrix_as_nvidia_smi_does() {
    let text = nvml_out(fixture(PCIE), ["topo"]).ok().to_string();
    assert!(text.starts_with(PCIE_MATRIX), "{text}");
    assert!(text.contains("  NV#  = Connection traversing a bonded set of # NVLinks\n"));
    let pairs = nvml_out(fixture(PAIRS), ["topo"]).ok().to_string();
    assert!(
        pairs.contains("\nGPU5\tSYS\tSYS\tSYS\tSYS\tNV12\t X \tNODE\tNODE\t32-63,96-127\t1\n"),
        "{pairs}"
    );
    let json: Value =
        serde_json::from_str(nvml_out(fixture(PAIRS), ["topo", "--json"]).ok()).unwrap();
    assert_eq!(
        json["gpus"][2]["links"],
        serde_json::json!(["NODE", "NODE", "X", "NV12", "SYS", "SYS", "SYS", "SYS"])
    );
    assert_eq!(json["gpus"][2]["numa_node"], 0);
    assert_eq!(json["gpus"][2]["cpu_affinity"], "0-31,64-95");
    // A driver that reads no topology: every cell N/A, and a warning.
    let plain = nvml_out(fixture("lab-8xa100"), ["topo"]);
    plain.code(0);
    assert!(
        plain.stdout.contains("\nGPU1\tN/A\t X \tN/A\t"),
        "{}",
        plain.stdout
    );
    plain.stderr_has("the nvml provider reports no topology for these GPUs");
}

#[test]
fn list_json_carries_topology_only_where_the_driver_gives_it() {
    let json: Value =
        serde_json::from_str(nvml_out(fixture(PAIRS), ["list", "--json"]).ok()).unwrap();
    let gpu4 = &json["gpus"][4];
    assert_eq!(gpu4["numa_node"], 1);
    assert_eq!(gpu4["cpu_affinity"], "32-63,96-127");
    let links = gpu4["links"].as_array().unwrap();
    assert_eq!(links.len(), 7, "{links:?}");
    assert_eq!(links[0]["peer"], json["gpus"][0]["uuid"]);
    assert_eq!(links[0]["pcie"], "system");
    let to5 = links
        .iter()
        .find(|l| l["peer"] == json["gpus"][5]["uuid"])
        .unwrap();
    assert_eq!(to5["nvlinks"], 12);
    assert_eq!(to5["pcie"], "single");
    // Without topology in the driver, nothing new in the JSON.
    let lab: Value = serde_json::from_str(nvml_lab_out(["list", "--json"]).ok()).unwrap();
    for key in ["numa_node", "cpu_affinity", "links"] {
        assert!(
            lab["gpus"][0].get(key).is_none(),
            "{key}: {}",
            lab["gpus"][0]
        );
    }
    let pick: Value = serde_json::from_str(nvml_lab_out(["-n", "2", "--json"]).ok()).unwrap();
    assert!(pick.get("link").is_none(), "{pick}");
}

#[test]
fn a_snapshot_file_and_an_agent_pick_and_print_as_nvml_does() {
    let dir = tempfile::tempdir().unwrap();
    let scene = with_jobs(PAIRS, &[0, 3, 4]);
    let file = write_file(
        &dir,
        "pairs.json",
        nvml_out(&scene.path, ["list", "--json"]).ok(),
    );
    let nvml_topo = nvml_out(&scene.path, ["topo"]).ok().to_string();
    let by_file = out(gpusel_on(&file).args(["topo"]));
    assert_eq!(by_file.ok(), nvml_topo);
    assert_eq!(out(gpusel_on(&file).args(["-n", "2"])).ok(), "6,7\n");

    let agent = serve(nvml_std(&scene.path), &["--interval", "100ms"]);
    let api = agent.get("/api/v1/snapshot").json();
    assert_eq!(api["gpus"][6]["numa_node"], 1);
    assert!(
        api["gpus"][6]["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["peer"] == api["gpus"][7]["uuid"] && l["nvlinks"] == 12),
        "{api:#}"
    );
    let url = format!("http://{}", agent.addr);
    let remote = |args: &[&str]| out(gpusel().args(["--provider", &url]).args(args));
    assert_eq!(remote(&["topo"]).ok(), nvml_topo);
    let json: Value = serde_json::from_str(remote(&["-n", "2", "--json"]).ok()).unwrap();
    assert_eq!(json["cuda_visible_devices"], "6,7");
    assert_eq!(json["link"], "nvlink");
}

#[test]
fn topo_shows_a_snapshots_escapes_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut gpus = vec![idle_gpu(0), idle_gpu(1)];
    gpus[0]["cpu_affinity"] = "0-7\u{1b}]52;c;ZXZpbA==\u{7}".into();
    gpus[0]["links"] = serde_json::json!([{"peer": gpus[1]["uuid"], "nvlinks": 2}]);
    let file = write_file(&dir, "evil.json", &snapshot_json("h", gpus));
    let out = out(gpusel_on(&file).args(["topo"]));
    let text = out.ok();
    assert!(
        text.contains("\nGPU0\t X \tNV2\t0-7\\e]52;c;ZXZpbA==\\x07\tN/A\n"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text}");
}

#[test]
fn on_an_nvswitch_board_every_pair_is_nv18_and_picks_keep_to_a_socket() {
    let board = fixture("nvswitch-8xh100");
    let text = nvml_out(&board, ["topo"]).ok().to_string();
    assert!(
        text.contains("\nGPU3\tNV18\tNV18\tNV18\t X \tNV18\tNV18\tNV18\tNV18\t0-55,112-167\t0\n"),
        "{text}"
    );
    for seed in 0..8 {
        let seed = seed.to_string();
        let two = picks(
            &board,
            &["-n", "2", "--strategy", "random", "--seed", &seed],
        );
        let gpus: Vec<u32> = two.split(',').map(|g| g.parse().unwrap()).collect();
        assert_eq!(
            gpus[0] / 4,
            gpus[1] / 4,
            "seed {seed}: {two} spans the sockets"
        );
        let four = picks(
            &board,
            &["-n", "4", "--strategy", "random", "--seed", &seed],
        );
        assert!(
            ["0,1,2,3", "4,5,6,7"].contains(&four.as_str()),
            "seed {seed}: {four}"
        );
    }
    let json: Value = serde_json::from_str(nvml_out(&board, ["-n", "8", "--json"]).ok()).unwrap();
    assert_eq!(
        (json["link"].as_str(), json["link_code"].as_str()),
        (Some("nvlink"), Some("NV18"))
    );
}

#[test]
fn a_range_takes_as_many_as_it_can_best_joined_and_all_takes_all() {
    // Idle: 1, 2, 5, 6, 7. Three of them share a NUMA node only on node 1.
    let scene = with_jobs(PAIRS, &[0, 3, 4]);
    for seed in 0..4 {
        let seed = seed.to_string();
        let args = ["-n", "2..3", "--strategy", "idle-random", "--seed", &seed];
        assert_eq!(picks(&scene.path, &args), "5,6,7", "seed {seed}");
    }
    let all = nvml_out(&scene.path, ["-n", "all", "--explain"]);
    all.code(0);
    assert_eq!(all.stdout, "1,2,5,6,7\n");
    assert!(
        all.stderr
            .contains("GPUs 1,2,5,6,7: no common link: spans the system (SYS)"),
        "{}",
        all.stderr
    );
}

#[test]
fn a_pick_of_one_gpu_reads_no_topology() {
    let one = nvml_out(fixture(PAIRS), ["-vv"]);
    one.code(0);
    assert!(!one.stderr.contains("topology of"), "{}", one.stderr);
    let two = nvml_out(fixture(PAIRS), ["-vv", "-n", "2"]);
    two.code(0);
    two.stderr_has("NVML: topology of 8 GPUs read in");
}

#[test]
fn nvidia_smi_topo_gives_the_same_picks_and_matrix() {
    use common::smi::smi_out;
    // The lab's GPUs: 1, 3, 5 and 7 idle, and of those only 1-3 a pair.
    for seed in 0..4 {
        let seed = seed.to_string();
        assert_eq!(
            smi_out("nvlink-pairs", ["-n", "2", "--seed", &seed]).ok(),
            "1,3\n"
        );
    }
    let json: Value =
        serde_json::from_str(smi_out("nvlink-pairs", ["-n", "2", "--json"]).ok()).unwrap();
    assert_eq!(
        (json["link"].as_str(), json["link_code"].as_str()),
        (Some("nvlink"), Some("NV12"))
    );
    let text = smi_out("nvlink-pairs", ["topo"]).ok().to_string();
    assert!(
        text.contains("\nGPU1\tNODE\t X \tNODE\tNV12\tSYS\tSYS\tSYS\tSYS\t0-31\t0\n"),
        "{text}"
    );
    // A recording without `topo -m`: no topology, and no error.
    let plain = smi_out("lab-8xa100", ["-n", "2", "--json"]);
    let json: Value = serde_json::from_str(plain.ok()).unwrap();
    assert!(json.get("link").is_none(), "{json}");
}
