//! A master facing hostile agents, over real loopback connections: stand-in
//! agents (common::http) that answer escape sequences or huge snapshots.

mod common;

use std::path::PathBuf;

use common::http::snapshot_server;
use common::serve::{Response, Served, serve};
use common::{LAB, gpusel_std, write_file};

/// An agents file listing `urls` as `name = url` (a 30 s timeout: a live
/// stand-in is never slow, however loaded the machine).
fn agents_file(dir: &tempfile::TempDir, urls: &[(&str, &str)]) -> PathBuf {
    let mut text = String::from("timeout = \"30s\"\n");
    for (name, url) in urls {
        text.push_str(&format!("[[agent]]\nurl = \"{url}\"\nname = \"{name}\"\n"));
    }
    write_file(dir, "agents.toml", &text)
}

fn master(file: &std::path::Path) -> Served {
    serve(
        gpusel_std(),
        &["--agents", file.to_str().unwrap(), "--interval", "200ms"],
    )
}

/// The status of node `name` in `/api/v1/cluster`.
fn status(cluster: &Response, name: &str) -> String {
    cluster.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| n["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Characters that act on a terminal (or reorder what it shows) when a body
/// is printed: every control but the line feed and tab, and bidi and
/// zero-width formatting characters.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

fn strings_in(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings_in(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

#[test]
fn escape_sequences_from_an_agent_reach_no_page_json_or_metrics() {
    // OSC 52 (write the clipboard), BEL, a screen clear, CR, a bidi override.
    let evil = "x\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\r\u{202e}y";
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    json["host"] = format!("host{evil}").into();
    json["driver_version"] = format!("550{evil}").into();
    json["gpus"][0]["name"] = format!("A100{evil}").into();
    json["gpus"][0]["processes"][0]["name"] = format!("python{evil}").into();
    json["gpus"][0]["processes"][0]["user"] = format!("root{evil}").into();
    json["agent"] = serde_json::to_value(gpusel_core::AgentStatus {
        version: format!("0.1{evil}"),
        up: false,
        last_attempt: std::time::SystemTime::now(),
        last_error: Some(format!("NVML says{evil}")),
        lease_error: None,
        interval_ms: 2000,
        command_lines: false,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = write_file(&dir, "evil.json", &json.to_string());
    let agent = snapshot_server(&snapshot, None);
    let file = agents_file(&dir, &[("evil", &agent)]);
    let master = master(&file);
    let cluster = master.wait_for("/api/v1/cluster", |r| status(r, "evil") == "failing");
    let mut strings = Vec::new();
    strings_in(&cluster.json(), &mut strings);
    for s in &strings {
        assert!(raw_controls(s).is_empty(), "/api/v1/cluster holds {s:?}");
    }
    assert!(
        strings
            .iter()
            .any(|s| s.contains("A100x\\e]52;c;ZXZpbA==\\x07\\e[2J\\r\\u{202e}y")),
        "the name is shown, escaped: {strings:?}"
    );
    for path in ["/", "/metrics"] {
        let body = master.get(path).body;
        // Escaped (and in /metrics, its backslashes escaped again).
        assert!(
            body.contains("A100x\\") && body.contains("e]52;c;ZXZpbA=="),
            "{path} shows the GPU: {body}"
        );
        assert!(body.contains("NVML says") || path == "/metrics", "{body}");
        let raw = raw_controls(&body);
        assert!(raw.is_empty(), "{path} holds {raw:?}: {body:?}");
    }
}

/// The peak resident memory of process `pid`, in KiB (`VmHWM`).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

#[test]
fn an_agent_reporting_40000_gpus_is_refused_and_costs_the_master_little() {
    // 40,000 GPUs in under the 16 MiB body cap (about 15 MiB).
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    let mut gpu = json["gpus"][0].clone();
    let gpu = gpu.as_object_mut().unwrap();
    for field in ["performance_state", "sm_clock", "mig_mode", "pci_bus_id"] {
        gpu.remove(field);
    }
    gpu["processes"] = serde_json::json!([{"pid": 48213, "used_memory": 66571993088u64, "name": "python3", "user": "alice", "kind": "compute"}]);
    json["gpus"] = (0..40_000)
        .map(|i| {
            let mut g = gpu.clone();
            g["index"] = i.into();
            g["uuid"] = format!("GPU-{i:08}-0000-0000-0000-000000000000").into();
            serde_json::Value::Object(g)
        })
        .collect();
    let body = json.to_string();
    assert!(body.len() < 16 << 20, "{} bytes", body.len());
    let dir = tempfile::tempdir().unwrap();
    let big = snapshot_server(write_file(&dir, "big.json", &body), None);
    drop((json, body));
    let lab = snapshot_server(LAB, None);
    let file = agents_file(&dir, &[("big", &big), ("lab", &lab)]);
    let master = master(&file);
    let cluster = master.wait_for("/api/v1/cluster", |r| {
        status(r, "big") == "error" && status(r, "lab") == "up"
    });
    let node = cluster.json()["nodes"][0].clone();
    let error = node["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("reports 40000 GPUs, more than the 1024 a node may have"),
        "{node:#}"
    );
    assert!(node["snapshot"].is_null(), "{node:#}");
    // A few more rounds of the big one, and every page served meanwhile.
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(master.get("/").status, 200);
        assert!(master.get("/metrics").body.contains("node=\"lab\""));
    }
    // Without the limit this master peaked at 755 MB (release build);
    // with it, the body and its check cost about twice the body's 15 MiB.
    let peak = peak_kib(master.pid());
    assert!(
        peak < 200 * 1024,
        "the master peaked at {} MiB",
        peak / 1024
    );
    eprintln!("the master peaked at {} MiB", peak / 1024);
}
