//! `gpusel serve`: the real binary on a loopback port, read over HTTP.

mod common;

use std::time::Duration;

use common::nvml::{Scene, fixture, hung_init_scenario, nvml_std};
use common::serve::{Response, Served, lease_gpu7, promtool, serve};
use common::{
    LAB, gpusel_std_on, idle_gpu, marked_gone, marked_hang, out, replace_file, snapshot_json,
    test_mark, write_file,
};

/// Fast enough that a test sees a change within a few polls.
const FAST: [&str; 2] = ["--interval", "100ms"];

fn lab_on_nvml() -> Served {
    serve(nvml_std(fixture("lab-8xa100")), &FAST)
}

#[track_caller]
fn promtool_accepts(metrics: &Response) {
    if let Some(result) = promtool(&metrics.body) {
        result.unwrap_or_else(|e| panic!("promtool rejects /metrics: {e}\n{}", metrics.body));
    }
}

/// The lines of `text` that start with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn every_endpoint_serves_the_fake_nvml_gpus() {
    let server = lab_on_nvml();

    let api = server.get("/api/v1/snapshot");
    assert_eq!(api.status, 200, "{api:#?}");
    assert_eq!(api.header("content-type"), Some("application/json"));
    let json = api.json();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["provider"], "nvml");
    assert_eq!(json["driver_version"], "570.124.06");
    let gpus = json["gpus"].as_array().expect("gpus");
    assert_eq!(gpus.len(), 8);
    assert_eq!(gpus[0]["name"], "NVIDIA A100-SXM4-80GB");
    assert_eq!(gpus[0]["processes"][0]["name"], "python3");
    assert_eq!(json["agent"]["up"], true);
    assert_eq!(json["agent"]["interval_ms"], 100);
    assert_eq!(json["agent"]["command_lines"], false);
    assert!(json["agent"].get("last_error").is_none(), "{json:#}");

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_accepts(&metrics);
    // NVML reports this machine's GPUs, so the host is this machine.
    let host = json["host"].as_str().unwrap();
    let gpu0 = format!(
        r#"{{gpu="0",uuid="GPU-5f2c7a1e-8b3d-4c6e-9a1f-0d2e4b6c8a10",name="NVIDIA A100-SXM4-80GB",host="{host}"}}"#
    );
    for line in [
        "gpusel_up 1".to_string(),
        "gpusel_snapshot_errors_total 0".to_string(),
        format!("gpusel_gpu_memory_total_bytes{gpu0} 85899345920.0"),
        format!("gpusel_gpu_memory_used_bytes{gpu0} 67108864000.0"),
        format!("gpusel_gpu_utilization_ratio{gpu0} 0.98"),
        format!("gpusel_gpu_temperature_celsius{gpu0} 67.0"),
        format!("gpusel_gpu_power_draw_watts{gpu0} 352.118"),
        format!("gpusel_gpu_sm_clock_hertz{gpu0} 1410000000.0"),
        format!("gpusel_gpu_processes{gpu0} 1.0"),
        format!("gpusel_gpu_leased{gpu0} 0.0"),
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "no line {line} in /metrics:\n{}",
            metrics.body
        );
    }
    assert_eq!(
        lines(&metrics.body, "gpusel_gpu_memory_total_bytes{").len(),
        8
    );

    // Prometheus asks for OpenMetrics, and gets it.
    let open = server.get_with(
        "/metrics",
        &["Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"],
    );
    assert!(
        open.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    assert!(
        open.body
            .contains("# UNIT gpusel_gpu_temperature_celsius celsius")
    );

    let health = server.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        page.body.matches("<tr class=\"gpu\"").count(),
        8,
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!("<h1 id=\"host\">{host}</h1>")),
        "{}",
        page.body
    );
    assert!(page.body.contains("NVIDIA A100-SXM4-80GB"));
    assert!(
        page.body
            .contains("<meta http-equiv=\"refresh\" content=\"2\">")
    );
    assert!(
        page.body
            .contains(":48213</span> <span class=\"pname\">python3</span>"),
        "{}",
        page.body
    );
}

#[test]
fn requests_see_the_driver_change_without_touching_it() {
    let scene = Scene::from_fixture("lab-8xa100");
    let server = serve(nvml_std(&scene.path), &FAST);
    let first = server.get("/api/v1/snapshot").json();
    assert_eq!(first["gpus"][1]["processes"], serde_json::json!([]));

    let mut json = scene.json();
    json["devices"][1]["compute_processes"] =
        serde_json::json!([{"pid": 4194400, "used_memory": 1073741824, "name": "late-job"}]);
    scene.set(&json.to_string());
    let api = server.wait_for("/api/v1/snapshot", |r| {
        r.json()["gpus"][1]["processes"][0]["name"] == "late-job"
    });
    assert_eq!(
        api.json()["gpus"][1]["processes"][0]["used_memory"],
        1073741824u64
    );
    let metrics = server.get("/metrics");
    let line = lines(&metrics.body, "gpusel_gpu_processes{gpu=\"1\"");
    assert_eq!(line.len(), 1, "{}", metrics.body);
    assert!(line[0].ends_with(" 1.0"), "{line:?}");
    assert!(server.get("/").body.contains("late-job"));
}

#[test]
fn a_failing_provider_is_shown_with_the_last_good_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.json");
    std::fs::copy(LAB, &file).unwrap();
    let server = serve(gpusel_std_on(&file), &FAST);
    assert_eq!(server.get("/api/v1/snapshot").json()["agent"]["up"], true);

    // Each change in one rename: a half-written file is an error of its
    // own, logged as news, and the log is checked below.
    replace_file(&file, "{ not json");
    let api = server.wait_for("/api/v1/snapshot", |r| r.json()["agent"]["up"] == false);
    assert_eq!(api.status, 200, "the last good snapshot is still served");
    let json = api.json();
    assert_eq!(json["gpus"].as_array().unwrap().len(), 8);
    let error = json["agent"]["last_error"].as_str().unwrap();
    assert!(error.contains("is not a gpusel snapshot"), "{error}");

    let metrics = server.get("/metrics");
    assert!(
        metrics.body.lines().any(|l| l == "gpusel_up 0"),
        "{}",
        metrics.body
    );
    let errors = lines(&metrics.body, "gpusel_snapshot_errors_total ");
    let count: u64 = errors[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 1, "{errors:?}");
    assert_eq!(
        lines(&metrics.body, "gpusel_gpu_memory_total_bytes{").len(),
        8
    );
    assert_eq!(
        lines(
            &metrics.body,
            "gpusel_snapshot_timestamp_seconds{host=\"lab-gpu01\"} "
        )
        .len(),
        1
    );
    promtool_accepts(&metrics);

    let health = server.get("/healthz");
    assert_eq!(health.status, 503);
    assert!(
        !health.body.contains("snapshot.json"),
        "/healthz needs no token, so it says no more than failing: {health:#?}"
    );

    let page = server.get("/");
    assert!(page.body.contains("stale"), "{}", page.body);
    assert!(
        page.body
            .contains("The last attempt to read the GPUs failed"),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<tr class=\"gpu\"").count(), 8);

    replace_file(&file, &std::fs::read_to_string(LAB).unwrap());
    server.wait_for("/api/v1/snapshot", |r| r.json()["agent"]["up"] == true);
    assert_eq!(server.get("/healthz").status, 200);
    let (code, stderr) = server.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // One line when it fails and one when it recovers, not one per round.
    assert_eq!(
        stderr
            .matches("cannot read the GPUs; serving the last good snapshot")
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("the GPUs can be read again").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn before_any_good_snapshot_the_api_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet.json");
    let server = serve(gpusel_std_on(&missing), &FAST);
    let api = server.get("/api/v1/snapshot");
    assert_eq!(api.status, 503, "{api:#?}");
    let error = api.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("no GPU snapshot yet: cannot read snapshot file"),
        "{error}"
    );
    let metrics = server.get("/metrics");
    assert!(
        metrics.body.lines().any(|l| l == "gpusel_up 0"),
        "{}",
        metrics.body
    );
    promtool_accepts(&metrics);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("cannot read snapshot file"),
        "{}",
        page.body
    );

    replace_file(&missing, &std::fs::read_to_string(LAB).unwrap());
    let api = server.wait_for("/api/v1/snapshot", |r| r.status == 200);
    assert_eq!(api.json()["gpus"].as_array().unwrap().len(), 8);
}

/// A snapshot of the lab whose GPU 0 process has a secret in its arguments.
fn lab_with_secret(dir: &std::path::Path) -> std::path::PathBuf {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    json["gpus"][0]["processes"][0]["command_line"] =
        serde_json::json!(["python3", "train.py", "--api-key=SECRET-1234"]);
    let file = dir.join("lab.json");
    std::fs::write(&file, json.to_string()).unwrap();
    file
}

#[test]
fn leases_are_shown_and_command_arguments_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = lab_with_secret(dir.path());
    let lock_dir = dir.path().join("locks");
    let mut job = lease_gpu7(&snapshot, &lock_dir, &["--password=SECRET-5678"]);
    let lock_arg = lock_dir.to_str().unwrap();

    let server = serve(gpusel_std_on(&snapshot), &["--lock-dir", lock_arg]);
    let api = server.get("/api/v1/snapshot");
    assert!(!api.body.contains("SECRET"), "{}", api.body);
    let json = api.json();
    assert_eq!(json["agent"]["command_lines"], false);
    assert!(
        json["gpus"][0]["processes"][0]
            .get("command_line")
            .is_none()
    );
    assert_eq!(json["gpus"][0]["processes"][0]["name"], "python3");
    let holder = &json["gpus"][7]["lease"]["holder"];
    assert_eq!(holder["command"], serde_json::json!(["sh"]), "{json:#}");
    assert_eq!(holder["pid"], job.id());
    assert!(json["gpus"][6].get("lease").is_none());
    let page = server.get("/");
    assert!(!page.body.contains("SECRET"));
    assert!(page.body.contains("<th>Leased by</th>"), "{}", page.body);
    let metrics = server.get("/metrics");
    assert!(!metrics.body.contains("SECRET"));
    let leased = lines(&metrics.body, "gpusel_gpu_leased{");
    assert_eq!(
        leased.iter().filter(|l| l.ends_with(" 1.0")).count(),
        1,
        "{leased:?}"
    );
    assert!(lines(&metrics.body, "gpusel_gpu_leased{gpu=\"7\"")[0].ends_with(" 1.0"));
    drop(server);

    let exposed = serve(
        gpusel_std_on(&snapshot),
        &["--lock-dir", lock_arg, "--expose-cmdline"],
    );
    let json = exposed.get("/api/v1/snapshot").json();
    assert_eq!(json["agent"]["command_lines"], true);
    assert_eq!(
        json["gpus"][0]["processes"][0]["command_line"][2],
        "--api-key=SECRET-1234"
    );
    let command = &json["gpus"][7]["lease"]["holder"]["command"];
    assert_eq!(
        command[command.as_array().unwrap().len() - 1],
        "--password=SECRET-5678"
    );
    job.kill().unwrap();
    job.wait().unwrap();
}

#[test]
fn a_token_guards_everything_but_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cr3t-t0ken-0123456789\n").unwrap();
    let server = serve(
        gpusel_std_on(LAB),
        &["--token-file", token_file.to_str().unwrap()],
    );
    for path in ["/", "/api/v1/snapshot", "/gpu_status", "/metrics"] {
        let r = server.get(path);
        assert_eq!(r.status, 401, "{path}: {r:#?}");
        let challenges = r.headers("www-authenticate");
        assert_eq!(
            challenges,
            [
                r#"Bearer realm="gpusel""#,
                r#"Basic realm="gpusel", charset="UTF-8""#
            ]
        );
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer")
        );
        let wrong = server.get_with(path, &["Authorization: Bearer s3cr3t-t0ken-0123456780"]);
        assert_eq!(wrong.status, 401, "{path}");
        let right = server.get_with(path, &["Authorization: Bearer s3cr3t-t0ken-0123456789"]);
        assert_eq!(right.status, 200, "{path}: {right:#?}");
    }
    // A browser sends the token as the password of its login prompt;
    // base64("me:s3cr3t-t0ken-0123456789").
    let basic = server.get_with(
        "/",
        &["Authorization: Basic bWU6czNjcjN0LXQwa2VuLTAxMjM0NTY3ODk="],
    );
    assert_eq!(basic.status, 200);
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn a_bad_token_file_stops_serve_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let missing = dir.path().join("missing");
    let fifo = common::fifo(&dir, "fifo");
    for (file, says) in [
        (&short, "too short"),
        (&missing, "cannot read it"),
        (&fifo, "a FIFO (named pipe), not a regular file"),
    ] {
        let o = out(common::lab()
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(file)
            .timeout(common::PATIENCE));
        o.code(2);
        let line = o.one_error_naming(file.to_str().unwrap());
        assert!(line.contains(says), "{line}");
        assert!(!o.stderr.contains("serving"), "{o:#?}");
    }
}

#[test]
fn only_get_and_small_requests() {
    let server = serve(gpusel_std_on(LAB), &[]);
    let post = server.request("POST", "/api/v1/snapshot", &[], "x");
    assert_eq!(post.status, 405, "{post:#?}");
    assert_eq!(post.header("allow"), Some("GET,HEAD"));
    assert_eq!(server.request("DELETE", "/metrics", &[], "").status, 405);
    let missing = server.get("/api/v1/lease");
    assert_eq!(missing.status, 404);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("/api/v1/snapshot")
    );
    let big = server.request("GET", "/", &[], &"x".repeat(4096));
    assert_eq!(big.status, 413, "{big:#?}");
    let head = server.request("HEAD", "/metrics", &[], "");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}

#[test]
fn sigterm_and_sigint_stop_it_cleanly() {
    for signal in ["TERM", "INT"] {
        let server = serve(gpusel_std_on(LAB), &[]);
        assert_eq!(server.get("/healthz").status, 200);
        let (code, stderr) = server.stop(signal);
        assert_eq!(code, Some(0), "SIG{signal}: {stderr}");
        assert!(
            stderr.ends_with("gpusel: shutting down\n"),
            "SIG{signal}: {stderr}"
        );
    }
}

#[test]
fn a_client_that_never_finishes_cannot_hold_the_shutdown() {
    let server = serve(gpusel_std_on(LAB), &[]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut slow, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(server.get("/healthz").status, 200);
    let started = std::time::Instant::now();
    let (code, stderr) = server.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
    // The header timeout (3 s) closes it, else the grace period (5 s) does;
    // either is well under the test's hang limit.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_client_that_never_finishes_its_headers_is_closed() {
    let server = serve(gpusel_std_on(LAB), &[]);
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    std::io::Write::write_all(&mut slow, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(common::PATIENCE)).unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    // The server closes it after the header timeout (3 s), with a 408 or
    // nothing; a read timeout (PATIENCE) would be an error here.
    let read = std::io::Read::read_to_end(&mut slow, &mut answer);
    assert!(read.is_ok(), "{read:?} after {:?}", started.elapsed());
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn listens_on_loopback_unless_told_and_warns_when_exposed() {
    let help = out(common::lab().args(["serve", "--help"]));
    let text = help.ok();
    assert!(text.contains("[default: 127.0.0.1:9477]"), "{text}");
    let exposed = serve(gpusel_std_on(LAB), &["--listen", "0.0.0.0:0"]);
    assert!(exposed.addr.ip().is_unspecified());
    assert!(
        exposed.stderr().contains(
            "warning: 0.0.0.0 is reachable from other machines and no --token-file is set"
        ),
        "{}",
        exposed.stderr()
    );
    let quiet = serve(gpusel_std_on(LAB), &[]);
    assert!(!quiet.stderr().contains("warning"), "{}", quiet.stderr());
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = out(common::lab().args(["serve", "--listen", &addr]));
    o.code(2);
    let line = o.one_error_naming(&addr);
    assert!(
        line.contains("choose another address with --listen"),
        "{line}"
    );
}

#[test]
fn mig_devices_have_rows_and_series_of_their_own() {
    let server = serve(nvml_std(fixture("mig-h100")), &[]);
    let page = server.get("/");
    for row in ["0", "0:0", "0:1", "0:2", "1"] {
        assert!(
            page.body.contains(&format!("data-gpu=\"{row}\"")),
            "no row {row}: {}",
            page.body
        );
    }
    assert!(page.body.contains("MIG 3g.40gb"), "{}", page.body);
    assert!(page.body.contains("on its MIG devices"), "{}", page.body);
    let metrics = server.get("/metrics");
    promtool_accepts(&metrics);
    let busy = lines(
        &metrics.body,
        "gpusel_mig_processes{gpu=\"0\",mig=\"0\",uuid=\"MIG-4e2a8c6b-1d3f-5a7e-9b0c-2d4f6a8c0e11\",profile=\"3g.40gb\"",
    );
    assert_eq!(busy.len(), 1, "{}", metrics.body);
    assert!(busy[0].ends_with(" 1.0"), "{busy:?}");
    assert_eq!(
        lines(&metrics.body, "gpusel_mig_memory_total_bytes{").len(),
        3
    );
    let parent = lines(&metrics.body, "gpusel_gpu_processes{gpu=\"0\"");
    assert!(
        parent[0].ends_with(" 1.0"),
        "the parent counts its MIG devices' processes: {parent:?}"
    );
}

#[test]
fn a_hung_driver_shows_as_a_failure_while_it_hangs() {
    // The fake nvidia-smi of the `hang` scenario never answers; the smi
    // provider gives up after 8 s. The watchdog tells from 5 s, so each
    // attempt shows "has not answered" for about 3 s; rounds every second
    // bring that window back, should a loaded machine make the test miss it.
    let mut cmd = common::gpusel_std();
    cmd.env("PATH", common::smi::path_with_fake())
        .env("FAKE_SMI_SCENARIO", "hang")
        .env("GPUSEL_SMI_TIMEOUT", "8s")
        .args(["-p", "smi"]);
    let mark = test_mark();
    cmd.env("GPUSEL_TEST_MARK", &mark);
    let server = serve(cmd, &["--interval", "1s"]);
    let api = server.wait_for("/api/v1/snapshot", |r| r.body.contains("has not answered"));
    assert_eq!(api.status, 503, "{api:#?}");
    let error = api.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("provider 'smi' has not answered for ")
            && error.ends_with(" s; the driver may be hung"),
        "{error}"
    );
    let metrics = server.get("/metrics");
    assert!(
        metrics.body.lines().any(|l| l == "gpusel_up 0"),
        "{}",
        metrics.body
    );
    assert_eq!(server.get("/healthz").status, 503);
    // Then the provider's own timeout ends the attempt, with its reason.
    let api = server.wait_for("/api/v1/snapshot", |r| r.body.contains("nvidia-smi"));
    assert_eq!(api.status, 503);
    marked_hang(&mark);
    let (code, stderr) = server.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
    // The nvidia-smi hung at that moment is not left running.
    marked_gone(&mark);
}

#[test]
fn an_unusable_lock_dir_hides_leases_not_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let server = serve(
        gpusel_std_on(LAB),
        &["--lock-dir", not_a_dir.to_str().unwrap()],
    );
    let json = server.get("/api/v1/snapshot").json();
    assert_eq!(json["agent"]["up"], true);
    assert_eq!(json["gpus"].as_array().unwrap().len(), 8);
    let lease_error = json["agent"]["lease_error"].as_str().unwrap();
    assert!(
        lease_error.contains(not_a_dir.to_str().unwrap()),
        "{lease_error}"
    );
    let page = server.get("/");
    assert!(page.body.contains("Leases not shown: "), "{}", page.body);
    let metrics = server.get("/metrics");
    assert!(
        !metrics.body.contains("gpusel_gpu_leased"),
        "unknown is absent, not 0: {}",
        metrics.body
    );
    promtool_accepts(&metrics);
}

#[test]
fn no_provider_no_server() {
    let o = out(common::gpusel().args([
        "-p",
        "nvml:/nonexistent/libnvidia-ml.so.1",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]));
    o.code(4);
    o.one_error_naming("/nonexistent/libnvidia-ml.so.1");
    assert!(!o.stderr.contains("serving"), "{o:#?}");
}

#[test]
fn json_is_not_a_serve_flag() {
    let o = out(common::lab().args(["serve", "--json"]));
    o.code(2);
    let line = o.one_error_naming("--json");
    assert!(line.contains("/api/v1/snapshot"), "{line}");
}

#[test]
fn the_dashboard_shows_the_largest_values_a_snapshot_can_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut gpu = idle_gpu(0);
    gpu["memory_total"] = serde_json::json!(u64::MAX);
    gpu["memory_used"] = serde_json::json!(u64::MAX);
    gpu["memory_free"] = serde_json::json!(0);
    gpu["power_draw"] = serde_json::json!(u32::MAX);
    let file = write_file(&dir, "huge.json", &snapshot_json("huge", vec![gpu]));
    let server = serve(gpusel_std_on(&file), &FAST);
    let page = server.get("/");
    assert_eq!(page.status, 200, "{}", server.stderr());
    assert!(page.body.contains("title=\"100%\""), "{}", page.body);
}

#[test]
fn a_relay_keeps_the_remote_nodes_leases() {
    let dir = tempfile::tempdir().unwrap();
    let lock_dir = dir.path().join("locks");
    let mut job = lease_gpu7(std::path::Path::new(LAB), &lock_dir, &[]);
    let agent = serve(
        gpusel_std_on(LAB),
        &[
            "--lock-dir",
            lock_dir.to_str().unwrap(),
            "--interval",
            "100ms",
        ],
    );
    // The relay's own lock directory is empty: it must not stand for the
    // remote node's.
    let mut relay = common::gpusel_std();
    relay.args(["--provider", &format!("http://{}", agent.addr)]);
    let relay = serve(relay, &FAST);
    let json = relay.get("/api/v1/snapshot").json();
    assert_eq!(
        json["gpus"][7]["lease"]["holder"]["pid"],
        job.id(),
        "{json:#}"
    );
    assert!(json["gpus"][6].get("lease").is_none(), "{json:#}");
    let metrics = relay.get("/metrics").body;
    assert!(
        lines(&metrics, "gpusel_gpu_leased{gpu=\"7\"")[0].ends_with(" 1.0"),
        "{metrics}"
    );
    job.kill().unwrap();
    job.wait().unwrap();
}

#[test]
fn a_driver_hung_at_init_is_served_as_failing() {
    // NVML init that does not return: serve once hung before listening,
    // without a word. It now serves, and says the provider is not answering.
    let dir = tempfile::tempdir().unwrap();
    let path = hung_init_scenario(&dir);
    let server = serve(nvml_std(&path), &["--interval", "1s"]);
    assert!(
        server
            .stderr()
            .contains("warning: provider 'auto' has not opened after 5 s (the driver may be hung)"),
        "{}",
        server.stderr()
    );
    let api = server.wait_for("/api/v1/snapshot", |r| r.body.contains("has not answered"));
    assert_eq!(api.status, 503, "{api:#?}");
    let error = api.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("the driver may be hung"), "{error}");
    assert_eq!(server.get("/healthz").status, 503);
    let (code, stderr) = server.stop("TERM");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_agents_json_page_and_metrics_show_control_and_bidi_characters_escaped() {
    // Anyone names their own processes: a right-to-left override in a
    // name would reorder `curl`'s output on a terminal, an OSC 52 would
    // write the reader's clipboard. The agent's JSON carries them as the
    // visible escapes the master's shows, its page and its metrics too
    // (all three from the snapshot its poller cleaned once).
    let dir = tempfile::tempdir().unwrap();
    let mut gpus: Vec<serde_json::Value> = (0..8).map(idle_gpu).collect();
    gpus[0]["name"] = "A100\u{1b}[2J\u{202e}x".into();
    gpus[0]["processes"] = serde_json::json!([{
        "pid": 4242,
        "used_memory": 1048576,
        "name": "evil\u{202e}gnp.exe",
        "command_line": ["python3", "\u{1b}]52;c;AAAA\u{7}", "\u{2067}x\u{9b}2J"],
        "user": "mallory",
        "kind": "compute",
    }]);
    let snapshot = common::write_file(&dir, "evil.json", &snapshot_json("node", gpus));
    let locks = common::fresh_lock_dir();
    let mut job = lease_gpu7(&snapshot, &locks, &["\u{202e}txt.exe"]);
    let server = serve(
        gpusel_std_on(&snapshot),
        &[
            "--lock-dir",
            locks.to_str().unwrap(),
            "--expose-cmdline",
            "--interval",
            "200ms",
        ],
    );
    let api = server.wait_for("/api/v1/snapshot", |r| {
        r.status == 200 && r.json()["gpus"][7].get("lease").is_some()
    });
    let json = api.json();
    let process = &json["gpus"][0]["processes"][0];
    assert_eq!(process["name"], "evil\\u{202e}gnp.exe", "{process}");
    assert_eq!(
        process["command_line"],
        serde_json::json!(["python3", "\\e]52;c;AAAA\\x07", "\\u{2067}x\\x9b2J"]),
        "{process}"
    );
    let holder = &json["gpus"][7]["lease"]["holder"]["command"];
    assert_eq!(
        holder.as_array().and_then(|a| a.last()),
        Some(&serde_json::json!("\\u{202e}txt.exe")),
        "{holder}"
    );
    let raw = |body: &str| {
        body.chars()
            .any(|c| matches!(c, '\u{202e}' | '\u{2067}' | '\u{9b}' | '\u{1b}'))
    };
    assert!(!raw(&api.body), "{}", api.body);
    assert_eq!(json["gpus"][0]["name"], "A100\\e[2J\\u{202e}x");
    let page = server.get("/").body;
    assert!(!raw(&page), "{page}");
    for shown in [
        "A100\\e[2J\\u{202e}x",
        "evil\\u{202e}gnp.exe",
        "\\u{202e}txt.exe",
    ] {
        assert!(page.contains(shown), "the page shows {shown}: {page}");
    }
    let metrics = server.get("/metrics").body;
    assert!(!raw(&metrics), "{metrics}");
    // Escaped, and its backslashes escaped again in the label.
    assert!(
        metrics.contains(r#"name="A100\\e[2J\\u{202e}x""#),
        "{metrics}"
    );
    job.kill().unwrap();
    job.wait().unwrap();
}

#[test]
fn a_waiters_command_line_is_hidden_and_escaped_like_a_holders() {
    // A job queued with --wait is listed in the agent's JSON with who waits
    // and what it will run: its arguments may hold a password, and its
    // user chose every byte of them.
    let dir = tempfile::tempdir().unwrap();
    let snapshot = common::write_file(
        &dir,
        "lab.json",
        &snapshot_json("node", (0..8).map(idle_gpu).collect()),
    );
    let locks = common::fresh_lock_dir();
    let mut holder = lease_gpu7(&snapshot, &locks, &[]);
    let mut waiter = gpusel_std_on(&snapshot)
        .arg("--lock-dir")
        .arg(&locks)
        .args(["-d", "7", "--wait", "--interval", "100ms", "--"])
        .args([
            "/bin/sh",
            "-c",
            "true",
            "--password=hunter2",
            "\u{202e}x\u{1b}[2J",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiters = |server: &Served| {
        let api = server.wait_for("/api/v1/snapshot", |r| {
            r.status == 200 && r.json()["waiters"].as_array().is_some_and(|w| w.len() == 1)
        });
        let command = api.json()["waiters"][0]["holder"]["command"].clone();
        (api.body, command)
    };
    let lock_dir = ["--lock-dir", locks.to_str().unwrap(), "--interval", "100ms"];
    let hidden = serve(gpusel_std_on(&snapshot), &lock_dir);
    let (body, command) = waiters(&hidden);
    assert_eq!(command, serde_json::json!(["sh"]), "{body}");
    assert!(!body.contains("hunter2"), "{body}");
    let exposed = serve(
        gpusel_std_on(&snapshot),
        &[&lock_dir[..], &["--expose-cmdline"]].concat(),
    );
    let (body, command) = waiters(&exposed);
    assert_eq!(
        command,
        serde_json::json!([
            "/bin/sh",
            "-c",
            "true",
            "--password=hunter2",
            "\\u{202e}x\\e[2J"
        ]),
        "{body}"
    );
    assert!(
        !body.contains('\u{202e}') && !body.contains("\\u001b"),
        "{body}"
    );
    waiter.kill().unwrap();
    waiter.wait().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
}
