//! `gpusel status`: the GPUs this process may use, as text and JSON.

mod common;

use common::*;

fn devices(text: &str) -> Vec<&str> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[test]
fn status_shows_only_the_visible_gpus() {
    let all = lab_out(["status"]);
    let text = all.ok();
    assert_eq!(devices(text), ["0", "1", "2", "3", "4", "5", "6", "7"]);
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "DEVICE",
            "UTIL",
            "MEM_UTIL",
            "PROCESSES",
            "PSTATE",
            "POWER_MW",
            "TEMP_C",
            "UUID",
            "NAME"
        ]
    );
    let gpu0: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        gpu0,
        [
            "0",
            "98",
            "61",
            "1",
            "0",
            "352118",
            "67",
            "GPU-5f2c7a1e-8b3d-4c6e-9a1f-0d2e4b6c8a10",
            "NVIDIA",
            "A100-SXM4-80GB"
        ]
    );
    let some = out(lab()
        .env("CUDA_VISIBLE_DEVICES", "GPU-71f3a5c9,GPU-d6a0f4b8")
        .arg("status"));
    assert_eq!(devices(some.ok()), ["4", "7"]);
    let every = out(lab()
        .env("CUDA_VISIBLE_DEVICES", "4")
        .args(["status", "--all"]));
    assert_eq!(devices(every.ok()).len(), 8);
}

#[test]
fn status_json_is_the_snapshot_of_the_visible_gpus() {
    let out = out(lab()
        .env("CUDA_VISIBLE_DEVICES", "6,2")
        .args(["status", "--json"]));
    let got: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let mut want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    let gpus = want["gpus"].as_array().unwrap();
    want["gpus"] = serde_json::json!([gpus[2], gpus[6]]);
    assert_eq!(got, want);
}

#[test]
fn status_of_mig_devices() {
    let out = out(mig()
        .env("CUDA_VISIBLE_DEVICES", MIG_IDLE_UUIDS[1])
        .arg("status"));
    let text = out.ok();
    assert_eq!(devices(text), ["0", "0:2"], "{text}");
    assert!(text.contains("NVIDIA H100 80GB HBM3 MIG 1g.10gb"), "{text}");
}

#[test]
fn status_warns_about_a_bad_cuda_visible_devices() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "1,9").arg("status"));
    out.code(0).stderr_has("CUDA_VISIBLE_DEVICES='1,9'");
    assert_eq!(devices(&out.stdout), ["1"]);
}

#[test]
fn status_on_nvml_reports_unknowns_as_dashes() {
    let out = common::nvml::nvml_out(common::nvml::fixture("busy-mixed"), ["status", "--all"]);
    let text = out.ok();
    let v100: Vec<&str> = text.lines().nth(4).unwrap().split_whitespace().collect();
    assert_eq!(
        &v100[..7],
        ["3", "100", "50", "1", "0", "287000", "66"],
        "{text}"
    );
}

#[test]
fn status_and_list_take_a_64_kib_uuid_and_name() {
    // What a remote agent can serve to `gpusel -p http://... status --all`;
    // a width past u16 once made formatting panic (exit 101).
    let dir = tempfile::tempdir().unwrap();
    let mut gpu = idle_gpu(0);
    let uuid = format!("GPU-{}", "a".repeat(64 * 1024));
    gpu["uuid"] = uuid.clone().into();
    gpu["name"] = "名".repeat(70_000).into();
    let path = write_file(
        &dir,
        "huge.json",
        &snapshot_json("box", vec![gpu, idle_gpu(1)]),
    );
    let status = out(gpusel_on(&path).args(["status", "--all"]));
    let text = status.ok();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "0");
    assert_eq!(row[7], uuid, "the UUID is shown whole");
    // The next row is aligned under the 64 KiB column.
    let next = text.lines().nth(2).unwrap();
    assert_eq!(
        next.find("GPU-00000001"),
        text.lines().nth(1).unwrap().find("GPU-")
    );
    for args in [&["list"][..], &["list", "--wide"]] {
        let list = out(gpusel_on(&path).args(args));
        assert!(list.ok().contains("名名名"), "{args:?}");
    }
}
