//! Interop with nvgpu (rossumai/nvgpu): `gpusel serve` answers nvgpu's
//! `GET /gpu_status`, and a master reads nvgpu agents (`kind = "nvgpu"`),
//! here played by a std TcpListener with a canned answer.

mod common;

use common::http::stand_in;
use common::nvml::{fixture, nvml_std};
use common::serve::serve;
use common::{LAB, gpusel_std, gpusel_std_on, out, write_file};
use std::collections::BTreeMap;

const FAST: [&str; 2] = ["--interval", "100ms"];

/// nvgpu's answer, in the shape its `list_gpus.device_status` returns.
const NVGPU: &str = include_str!("../../tests/fixtures/nvgpu/gpu_status.json");

/// Keys nvgpu may send as null: `running_since` and `cmd` without
/// processes, `utilization` when NVML will not say (nvgpu's source).
const NULLABLE: [&str; 3] = ["running_since", "cmd", "utilization"];

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        serde_json::Value::Number(_) => "float",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "object",
    }
}

/// Each key of an nvgpu GPU and the JSON types it takes.
fn shape(gpu: &serde_json::Value) -> BTreeMap<String, &'static str> {
    gpu.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), kind(v)))
        .collect()
}

/// An nvgpu agent answering `GET /gpu_status` with `body` (404 to any
/// other path); its `http://127.0.0.1:PORT`.
fn canned_agent(body: &'static str) -> String {
    stand_in(move |head| match head.starts_with("get /gpu_status ") {
        true => ("200 OK".into(), body.into()),
        false => ("404 Not Found".into(), "{}".into()),
    })
}

#[test]
fn serve_answers_gpu_status_as_an_nvgpu_agent_does() {
    let server = serve(nvml_std(fixture("lab-8xa100")), &FAST);
    let r = server.wait_for("/gpu_status", |r| r.status == 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let got = r.json();
    let want: serde_json::Value = serde_json::from_str(NVGPU).unwrap();
    let top: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(top, ["gpus", "hostname"], "{got:#}");
    assert_eq!(kind(&got["hostname"]), "string");
    let gpus = got["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8);
    let reference = shape(&want["gpus"][1]);
    for gpu in gpus {
        let mine = shape(gpu);
        assert_eq!(
            mine.keys().collect::<Vec<_>>(),
            reference.keys().collect::<Vec<_>>(),
            "{gpu:#}"
        );
        for (key, t) in &mine {
            let ok = *t == reference[key] || (*t == "null" && NULLABLE.contains(&key.as_str()));
            assert!(ok, "{key} is {t}, nvgpu sends {}: {gpu:#}", reference[key]);
        }
        for k in ["total", "free", "used"] {
            assert_eq!(kind(&gpu["memory"][k]), "integer", "{gpu:#}");
        }
    }
    assert_eq!(gpus[0]["type"], "NVIDIA A100-SXM4-80GB");
    assert_eq!(gpus[0]["pids"], "48213");
    assert_eq!(gpus[0]["utilization"], 98);
    assert_eq!(gpus[0]["clock_mhz"], 1410);
    assert_eq!(gpus[0]["temperature"], 67);
    assert_eq!(gpus[0]["memory"]["used"], 67108864000u64);
    // gpusel's rule, as `list` marks [ ]: the idle GPUs of the lab.
    let available: Vec<usize> = (0..8)
        .filter(|&i| gpus[i]["is_available"] == true)
        .collect();
    assert_eq!(available, [1, 3, 5, 7]);
}

#[test]
fn a_master_shows_an_nvgpu_agent_and_names_one_that_answers_garbage() {
    let nvgpu = canned_agent(NVGPU);
    let garbage = canned_agent("<html><body>It works!</body></html>");
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        "agents.toml",
        &format!(
            "timeout = \"30s\"\n[[agent]]\nurl = \"{nvgpu}\"\nkind = \"nvgpu\"\nname = \"node02\"\n\n[[agent]]\nurl = \"{garbage}\"\nkind = \"nvgpu\"\nname = \"broken\"\n"
        ),
    );
    let master = serve(
        gpusel_std(),
        &["--agents", file.to_str().unwrap(), "--interval", "100ms"],
    );
    let cluster = master.wait_for("/api/v1/cluster", |r| {
        r.json()["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|n| n["status"] != "pending"))
    });
    let json = cluster.json();
    let node = |name: &str| {
        json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {json:#}"))
            .clone()
    };
    let up = node("node02");
    assert_eq!(up["status"], "up", "{up:#}");
    let gpus = up["snapshot"]["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(up["snapshot"]["host"], "127.0.0.1");
    assert_eq!(up["snapshot"]["provider"], "nvgpu");
    assert_eq!(gpus[1]["name"], "GeForce GTX 1080 Ti");
    assert_eq!(gpus[1]["sm_clock"], 1860);
    assert_eq!(gpus[1]["processes"][0]["user"], "alice");
    let broken = node("broken");
    assert_eq!(broken["status"], "error", "{broken:#}");
    let reason = broken["error"].as_str().unwrap();
    assert!(
        reason.contains("did not answer with nvgpu's /gpu_status JSON (it sent HTML or XML"),
        "{reason}"
    );

    let page = master.get("/").body;
    let start = page.find("data-node=\"node02\"").expect("node02's section");
    let section = &page[start..start + page[start..].find("</section>").unwrap()];
    for cell in [
        "GeForce GTX 1080 Ti",
        "<td class=\"mark free\">[ ]</td>",
        "<td class=\"mark busy\">[~]</td>",
        "1860 MHz",
        "<td class=\"since nowrap\">2 days ago</td>",
        "alice:4242",
    ] {
        assert!(section.contains(cell), "no {cell} in {section}");
    }
    assert!(page.contains("it sent HTML or XML"), "{page}");
}

#[test]
fn an_nvgpu_master_config_gets_the_agents_file_to_write_instead() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        "nvgpu_master.cfg",
        "AGENTS = [\n         'self', # node01 - master\n         'http://node02:1080',\n         'http://node03:1080',\n]\n",
    );
    let o = out(assert_cmd::Command::from_std({
        let mut c = gpusel_std_on(LAB);
        c.args(["serve", "--listen", "127.0.0.1:0", "--agents"])
            .arg(&file);
        c
    }));
    o.code(2).no_stdout().stderr_has("this is an nvgpu master config").stderr_has(
        "[[agent]]\nurl = \"self\"\n\n[[agent]]\nurl = \"http://node02:1080\"\nkind = \"nvgpu\"\n\n[[agent]]\nurl = \"http://node03:1080\"\nkind = \"nvgpu\"\n",
    );
}

#[test]
fn the_dashboard_shows_mark_clock_and_since_as_list_does() {
    let server = serve(gpusel_std_on(LAB), &FAST);
    let page = server
        .wait_for("/", |r| r.status == 200 && r.body.contains("data-gpu"))
        .body;
    let row = |gpu: &str| {
        let start = page
            .find(&format!("data-gpu=\"{gpu}\""))
            .unwrap_or_else(|| panic!("no row {gpu}: {page}"));
        page[start..start + page[start..].find("</tr>").unwrap()].to_string()
    };
    let busy = row("0");
    assert!(busy.contains("<td class=\"mark busy\">[~]</td>"), "{busy}");
    assert!(busy.contains("1410 MHz"), "{busy}");
    // alice's job started 2026-11-20: some days, months or years ago.
    let since = busy
        .split("<td class=\"since nowrap\">")
        .nth(1)
        .and_then(|s| s.split("</td>").next())
        .unwrap_or_default();
    assert!(
        since.ends_with(" ago") || since == "just now",
        "since {since:?} in {busy}"
    );
    let idle = row("1");
    assert!(idle.contains("<td class=\"mark free\">[ ]</td>"), "{idle}");
    assert!(idle.contains("<td class=\"since nowrap\"></td>"), "{idle}");
}
