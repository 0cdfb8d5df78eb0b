//! `gpusel serve --agents FILE`: a master over real `gpusel serve` agents on
//! loopback, each on its own fake-NVML scenario.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::nvml::{fixture, nvml_std};
use common::serve::{Response, Served, promtool, serve};
use common::{
    LAB, gpusel_std, gpusel_std_on, marked_gone, marked_hang, out, test_mark, write_file,
};

const FAST: [&str; 2] = ["--interval", "100ms"];

/// Three agents: `lab` (8 A100s), `mig` (2 H100s), `hostile` (2 A100s
/// with HTML in their names).
/// A per-node timeout no live agent misses, however loaded the machine.
const LIVE_TIMEOUT: &str = "timeout = \"30s\"\n";

fn three_agents() -> Vec<(&'static str, Served)> {
    ["lab-8xa100", "mig-h100", "hostile-names"]
        .into_iter()
        .zip(["lab", "mig", "hostile"])
        .map(|(scenario, name)| (name, serve(nvml_std(fixture(scenario)), &FAST)))
        .collect()
}

/// An agents file listing `agents` by name, `extra` TOML first. Unless
/// `extra` sets one, the per-node timeout is 30 s: the default (the interval,
/// 100 ms here) would call a live agent slow on a loaded machine.
fn agents_file(dir: &tempfile::TempDir, extra: &str, agents: &[(&str, &Served)]) -> PathBuf {
    let mut text = match extra.starts_with("timeout") {
        true => format!("{extra}\n"),
        false => format!("{LIVE_TIMEOUT}{extra}\n"),
    };
    for (name, served) in agents {
        text.push_str(&format!(
            "[[agent]]\nurl = \"http://{}\"\nname = \"{name}\"\n",
            served.addr
        ));
    }
    write_file(dir, "agents.toml", &text)
}

/// The node called `name` in a `/api/v1/cluster` body.
fn node<'a>(cluster: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}: {cluster:#}"))
}

fn statuses(cluster: &Response) -> Vec<(String, String)> {
    cluster.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The `<section>` of node `name` in the page.
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!("data-node=\"{name}\""))
        .unwrap_or_else(|| panic!("no section for {name}: {page}"));
    let end = page[start..].find("</section>").unwrap() + start;
    &page[start..end]
}

/// `GET path`, and how long it took.
fn timed(server: &Served, path: &str) -> (Response, Duration) {
    let start = Instant::now();
    let r = server.get(path);
    (r, start.elapsed())
}

#[test]
fn a_master_shows_every_node_and_marks_a_killed_or_hung_one() {
    let mut agents = three_agents();
    let dir = tempfile::tempdir().unwrap();
    // The per-node timeout: what a hung agent may cost a round, and never
    // what it may cost a request to the master.
    let timeout = Duration::from_secs(10);
    let refs: Vec<(&str, &Served)> = agents.iter().map(|(n, s)| (*n, s)).collect();
    let file = agents_file(
        &dir,
        "timeout = \"10s\"\n[[agent]]\nurl = \"self\"\nname = \"master\"",
        &refs,
    );
    let master = serve(
        gpusel_std_on(LAB),
        &["--agents", file.to_str().unwrap(), "--interval", "200ms"],
    );
    let all_up = pairs(&[
        ("master", "up"),
        ("lab", "up"),
        ("mig", "up"),
        ("hostile", "up"),
    ]);
    let cluster = master.wait_for("/api/v1/cluster", |r| statuses(r) == all_up);
    assert!(
        master
            .stderr()
            .contains("master of 4 nodes: serving http://"),
        "{}",
        master.stderr()
    );
    assert_eq!(cluster.header("content-type"), Some("application/json"));
    let json = cluster.json();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["timeout_ms"], 10000);
    assert!(json["rounds"]["count"].as_u64().unwrap() >= 1, "{json:#}");
    for (name, gpus) in [("master", 8), ("lab", 8), ("mig", 2), ("hostile", 2)] {
        let n = node(&json, name);
        assert_eq!(
            n["snapshot"]["gpus"].as_array().unwrap().len(),
            gpus,
            "{name}: {n:#}"
        );
        assert!(n["last_success"].is_string(), "{n:#}");
        assert_eq!(n["agent"]["up"], true, "{n:#}");
        assert!(n.get("error").is_none(), "{n:#}");
    }
    assert_eq!(node(&json, "master")["url"], "self");
    let health = master.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(node(&json, "master")["snapshot"]["host"], "lab-gpu01");
    let lab_url = format!("http://{}", agents[0].1.addr);
    assert_eq!(node(&json, "lab")["url"], lab_url.as_str());
    assert_eq!(node(&json, "lab")["snapshot"]["provider"], "nvml");

    let page = master.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("4 of 4 nodes answering · 20 GPUs"),
        "{}",
        page.body
    );
    for (name, rows) in [("master", 8), ("lab", 8), ("mig", 2), ("hostile", 2)] {
        let s = section(&page.body, name);
        assert!(s.contains("data-status=\"up\""), "{s}");
        assert_eq!(s.matches("<tr class=\"gpu\"").count(), rows, "{name}: {s}");
    }
    assert!(
        section(&page.body, "hostile").contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<img"), "{}", page.body);

    let metrics = master.get("/metrics");
    for line in [
        "gpusel_node_up{node=\"lab\",url=\"".to_string() + &lab_url + "\"} 1.0",
        "gpusel_node_up{node=\"master\",url=\"self\"} 1.0".to_string(),
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "no {line}: {}",
            metrics.body
        );
    }
    assert!(
        metrics
            .body
            .contains("gpusel_gpu_memory_total_bytes{gpu=\"7\""),
        "{}",
        metrics.body
    );
    // The MIG node's devices have series of their own.
    assert!(
        metrics.body.lines().any(|l| l
            .starts_with("gpusel_mig_memory_total_bytes{gpu=\"0\",mig=\"1\"")
            && l.contains("node=\"mig\"")),
        "{}",
        metrics.body
    );
    if let Some(result) = promtool(&metrics.body) {
        result.unwrap_or_else(|e| panic!("promtool rejects the master's metrics: {e}"));
    }

    // Hang `hostile` (it accepts connections but never answers), kill `mig`.
    let hostile_pid = agents[2].1.pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &hostile_pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {hostile_pid}");
    };
    signal("-STOP");
    let (mig_name, mig) = agents.remove(1);
    let (code, _) = mig.stop("KILL");
    assert_eq!(code, None, "{mig_name} was killed by a signal");

    let expected = pairs(&[
        ("master", "up"),
        ("lab", "up"),
        ("mig", "down"),
        ("hostile", "slow"),
    ]);
    let cluster = master.wait_for("/api/v1/cluster", |r| statuses(r) == expected);
    let json = cluster.json();
    let mig_node = node(&json, "mig");
    let error = mig_node["error"].as_str().unwrap();
    assert!(
        error.contains("connection refused; is `gpusel serve` running on"),
        "{mig_node:#}"
    );
    assert!(
        mig_node["last_success"].is_string(),
        "when it was last seen: {mig_node:#}"
    );
    assert!(mig_node["age_seconds"].is_u64(), "{mig_node:#}");
    let hung = node(&json, "hostile");
    assert!(
        hung["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 10s"),
        "{hung:#}"
    );

    // Rounds keep the interval's beat while the hung agent's poll waits out
    // its timeout: within less than one timeout, several rounds finish.
    let rounds = |r: &Response| r.json()["rounds"]["count"].as_u64().unwrap();
    let before = rounds(&master.get("/api/v1/cluster"));
    let start = Instant::now();
    master.wait_for("/api/v1/cluster", |r| rounds(r) >= before + 3);
    assert!(
        start.elapsed() < timeout,
        "3 rounds took {:?}: the hung agent holds up the others",
        start.elapsed()
    );

    // While the hung agent is polled, the master answers from what it has.
    for path in ["/", "/api/v1/cluster", "/metrics"] {
        let (r, took) = timed(&master, path);
        assert_eq!(r.status, 200, "{path}: {r:#?}");
        assert!(
            took < timeout,
            "{path} took {took:?}: the master waited for the hung agent"
        );
    }
    let page = master.get("/");
    assert!(
        page.body.contains("2 of 4 nodes answering"),
        "{}",
        page.body
    );
    let down = section(&page.body, "mig");
    assert!(down.contains("data-status=\"down\""), "{down}");
    assert!(down.contains("connection refused"), "{down}");
    assert!(down.contains("Last seen "), "{down}");
    assert!(
        !down.contains("<table"),
        "a down node's old GPUs are not shown as current: {down}"
    );
    let slow = section(&page.body, "hostile");
    assert!(
        slow.contains("data-status=\"slow\"") && slow.contains("did not answer within 10s"),
        "{slow}"
    );
    let lab = section(&page.body, "lab");
    assert_eq!(lab.matches("<tr class=\"gpu\"").count(), 8, "{lab}");
    let metrics = master.get("/metrics");
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("gpusel_node_up{node=\"mig\",") && l.ends_with(" 0.0")),
        "{}",
        metrics.body
    );

    // The hung agent recovers; the dead one stays down.
    signal("-CONT");
    let expected = pairs(&[
        ("master", "up"),
        ("lab", "up"),
        ("mig", "down"),
        ("hostile", "up"),
    ]);
    master.wait_for("/api/v1/cluster", |r| statuses(r) == expected);
    let (code, stderr) = master.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_master_without_self_needs_no_gpu_and_serves_no_snapshot_of_its_own() {
    let agent = serve(nvml_std(fixture("lab-8xa100")), &FAST);
    let dir = tempfile::tempdir().unwrap();
    let file = agents_file(&dir, "", &[("lab", &agent)]);
    // A provider that cannot open: a master without `self` never opens it.
    let mut cmd = gpusel_std();
    cmd.args(["--provider", "smi:/nonexistent/nvidia-smi"]);
    let master = serve(
        cmd,
        &["--agents", file.to_str().unwrap(), "--interval", "100ms"],
    );
    let cluster = master.wait_for("/api/v1/cluster", |r| {
        statuses(r) == pairs(&[("lab", "up")])
    });
    assert_eq!(
        node(&cluster.json(), "lab")["snapshot"]["gpus"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    let own = master.get("/api/v1/snapshot");
    assert_eq!(own.status, 404, "{own:#?}");
    assert!(
        own.json()["error"]
            .as_str()
            .unwrap()
            .contains("no `self` entry"),
        "{own:#?}"
    );
    let health = master.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    // Without `self`, the master is of use while any node answers.
    drop(agent);
    let health = master.wait_for("/healthz", |r| r.status == 503);
    assert_eq!(health.body, "failing: no node answers\n");
}

#[test]
fn tokens_guard_the_master_and_reach_each_agent() {
    let dir = tempfile::tempdir().unwrap();
    let agent_token = write_file(&dir, "agent.token", "agent-0123456789abcdef\n");
    let master_token = write_file(&dir, "master.token", "master-0123456789abcdef\n");
    let agents: Vec<Served> = (0..2)
        .map(|_| {
            serve(
                nvml_std(fixture("lab-8xa100")),
                &[
                    "--interval",
                    "100ms",
                    "--token-file",
                    agent_token.to_str().unwrap(),
                ],
            )
        })
        .collect();
    let text = format!(
        "{LIVE_TIMEOUT}[[agent]]\nurl = \"http://{}\"\nname = \"with\"\ntoken_file = \"agent.token\"\n\
         [[agent]]\nurl = \"http://{}\"\nname = \"without\"\n",
        agents[0].addr, agents[1].addr
    );
    let file = write_file(&dir, "agents.toml", &text);
    let master = serve(
        gpusel_std(),
        &[
            "--agents",
            file.to_str().unwrap(),
            "--interval",
            "100ms",
            "--token-file",
            master_token.to_str().unwrap(),
        ],
    );
    assert_eq!(master.get("/api/v1/cluster").status, 401);
    assert_eq!(master.get("/").status, 401);
    assert_eq!(master.get("/healthz").status, 200);
    let auth = "Authorization: Bearer master-0123456789abcdef";
    let json = common::eventually("both nodes polled", || {
        let r = master.get_with("/api/v1/cluster", &[auth]);
        assert_eq!(r.status, 200, "{r:#?}");
        let json = r.json();
        match node(&json, "with")["status"] == "up" && node(&json, "without")["status"] != "pending"
        {
            true => Ok(json),
            false => Err(format!("the cluster: {json:#}")),
        }
    });
    let without = node(&json, "without");
    assert_eq!(without["status"], "unauthorized", "{without:#}");
    assert!(
        without["error"]
            .as_str()
            .unwrap()
            .contains("requires a bearer token"),
        "{without:#}"
    );
}

#[test]
fn a_bad_agents_file_stops_the_master_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        "agents.toml",
        "[[agent]]\nurl = \"https://node1:9477\"\n",
    );
    let o = out(assert_cmd::Command::from_std({
        let mut c = gpusel_std_on(LAB);
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--agents",
            file.to_str().unwrap(),
        ]);
        c
    }));
    o.code(2).no_stdout();
    let line = o.one_error_naming(&file.display().to_string());
    assert!(line.contains("line 2, column 7"), "{line}");
    assert!(line.contains("https is not supported"), "{line}");
}

#[test]
fn a_master_whose_own_driver_hangs_says_so_while_it_hangs() {
    // `self` on the hanging fake nvidia-smi: the provider gives up after 8 s.
    // The master's own watchdog must tell while it hangs (from 5 s), as an
    // agent's does; rounds every second see that window whatever the timing
    // of the first one.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        &dir,
        "agents.toml",
        "[[agent]]\nurl = \"self\"\nname = \"me\"\n",
    );
    let mut cmd = gpusel_std();
    cmd.env("PATH", common::smi::path_with_fake())
        .env("FAKE_SMI_SCENARIO", "hang")
        .env("GPUSEL_SMI_TIMEOUT", "8s")
        .args(["-p", "smi"]);
    let mark = test_mark();
    cmd.env("GPUSEL_TEST_MARK", &mark);
    let master = serve(
        cmd,
        &["--agents", file.to_str().unwrap(), "--interval", "1s"],
    );
    // Waited for on the node itself: its status and its error come from
    // one round of the master, which may lag the local watchdog on a
    // loaded machine.
    let cluster = master.wait_for("/api/v1/cluster", |r| {
        let json: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        json["nodes"].as_array().into_iter().flatten().any(|me| {
            me["name"] == "me"
                && me["status"] == "error"
                && me["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("has not answered"))
        })
    });
    let json = cluster.json();
    let me = node(&json, "me");
    let error = me["error"].as_str().unwrap();
    assert!(
        error.contains("provider 'smi' has not answered for ")
            && error.ends_with(" s; the driver may be hung"),
        "{error}"
    );
    let health = master.wait_for("/healthz", |r| r.status == 503);
    assert_eq!(
        health.body.as_str(),
        "failing: this machine's GPUs cannot be read\n"
    );
    marked_hang(&mark);
    let (code, stderr) = master.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
    // The nvidia-smi hung at that moment is not left running.
    marked_gone(&mark);
}

#[test]
fn a_master_hides_the_command_lines_an_agent_exposes_unless_told_too() {
    let agent = serve(
        gpusel_std_on(LAB),
        &["--expose-cmdline", "--interval", "100ms"],
    );
    assert!(agent.get("/api/v1/snapshot").body.contains("llama-7b.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let file = agents_file(&dir, "", &[("lab", &agent)]);
    let args = ["--agents", file.to_str().unwrap(), "--interval", "100ms"];
    let up = |r: &Response| statuses(r) == pairs(&[("lab", "up")]);
    let master = serve(gpusel_std(), &args);
    let cluster = master.wait_for("/api/v1/cluster", up);
    assert!(!cluster.body.contains("llama-7b.yaml"), "{}", cluster.body);
    assert!(
        !cluster.body.contains("\"command_line\""),
        "{}",
        cluster.body
    );
    let json = cluster.json();
    let lab = node(&json, "lab");
    assert_eq!(
        lab["snapshot"]["gpus"][0]["processes"][0]["name"], "python3",
        "{lab:#}"
    );
    assert_eq!(lab["agent"]["command_lines"], false, "{lab:#}");
    for path in ["/", "/metrics"] {
        let body = master.get(path).body;
        assert!(!body.contains("llama-7b.yaml"), "{path}: {body}");
    }
    let exposing = serve(gpusel_std(), &[&args[..], &["--expose-cmdline"]].concat());
    let cluster = exposing.wait_for("/api/v1/cluster", up);
    assert!(cluster.body.contains("llama-7b.yaml"), "{}", cluster.body);
}

#[test]
fn master_metrics_tell_nodes_apart_and_leave_unknown_leases_out() {
    // The same machine twice, as `self` and through its agent, and that
    // agent cannot read its lease directory.
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let agent = serve(
        gpusel_std_on(LAB),
        &[
            "--lock-dir",
            not_a_dir.to_str().unwrap(),
            "--interval",
            "100ms",
        ],
    );
    let file = agents_file(
        &dir,
        "[[agent]]\nurl = \"self\"\nname = \"me\"",
        &[("again", &agent)],
    );
    let master = serve(
        gpusel_std_on(LAB),
        &["--agents", file.to_str().unwrap(), "--interval", "100ms"],
    );
    let both = pairs(&[("me", "up"), ("again", "up")]);
    master.wait_for("/api/v1/cluster", |r| statuses(r) == both);
    let metrics = master.get("/metrics").body;
    let of = |prefix: &str, node: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&format!("node=\"{node}\"")))
            .count()
    };
    for node in ["me", "again"] {
        assert_eq!(of("gpusel_gpu_memory_total_bytes{", node), 8, "{metrics}");
        assert_eq!(of("gpusel_gpu_info{", node), 8, "{metrics}");
        assert_eq!(
            of("gpusel_snapshot_timestamp_seconds{", node),
            1,
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("host=\"lab-gpu01\",node=\"again\""),
        "{metrics}"
    );
    // Unknown is absent, not 0, as on the agent itself.
    assert_eq!(of("gpusel_gpu_leased{", "me"), 8, "{metrics}");
    assert_eq!(of("gpusel_gpu_leased{", "again"), 0, "{metrics}");
    let samples: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    let unique: std::collections::HashSet<&&str> = samples.iter().collect();
    assert_eq!(unique.len(), samples.len(), "duplicate series: {metrics}");
    if let Some(result) = promtool(&metrics) {
        result.unwrap_or_else(|e| panic!("promtool rejects the master's metrics: {e}"));
    }
}

#[test]
fn the_master_page_counts_idle_gpus_as_list_marks_them_free() {
    // GPU 0 in MIG mode with every device free, GPU 1 idle; taken 3 hours ago.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::MIG).unwrap()).unwrap();
    for mig in json["gpus"][0]["mig_devices"].as_array_mut().unwrap() {
        mig["processes"] = serde_json::json!([]);
        // Without its process, its memory would be no listed process's.
        mig["memory_used"] = serde_json::json!(0);
    }
    let taken = std::time::SystemTime::now() - Duration::from_secs(3 * 3600 + 60);
    json["time"] = gpusel_core::timefmt::format(taken).into();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = write_file(&dir, "mig.json", &json.to_string());
    let free = out(common::gpusel_on(&snapshot).arg("list"))
        .ok()
        .to_string();
    // Both GPUs and the three MIG devices.
    assert_eq!(free.matches("[ ]").count(), 5, "{free}");
    let file = write_file(
        &dir,
        "agents.toml",
        &format!("{LIVE_TIMEOUT}[[agent]]\nurl = \"self\"\nname = \"me\"\n"),
    );
    let master = serve(
        gpusel_std_on(&snapshot),
        &["--agents", file.to_str().unwrap(), "--interval", "100ms"],
    );
    let page = master
        .wait_for("/", |r| r.body.contains("1 of 1 nodes answering"))
        .body;
    assert!(
        page.contains("1 of 1 nodes answering · 2 GPUs · 2 idle"),
        "{page}"
    );
    assert!(
        section(&page, "me").contains("snapshot 3 hours ago"),
        "{page}"
    );
}
