//! `--provider http://HOST:PORT`: another node's GPUs, through its agent:
//! the real `gpusel serve` on fake NVML, and, where an agent must misbehave
//! on purpose, a stand-in on loopback (tests/common/http.rs).

mod common;

use std::time::{Duration, Instant};

use common::http::{snapshot_server, stand_in};
use common::nvml::{fixture, nvml_out, nvml_std};
use common::serve::{lease_gpu7, serve};
use common::*;

fn remote() -> String {
    snapshot_server(LAB, None)
}

fn remote_out<I, S>(url: &str, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    out(gpusel().arg("--provider").arg(url).args(args))
}

#[test]
fn list_of_a_real_agent_is_the_table_its_own_gpusel_prints() {
    // Its pids are above pid_max: no process here can lend them a user,
    // so both sides see the same table whatever runs meanwhile.
    let scenario = fixture("hostile-names");
    let agent = serve(nvml_std(&scenario), &["--interval", "100ms"]);
    let url = format!("http://{}", agent.addr);
    let remote = remote_out(&url, ["list"]);
    let local = nvml_out(&scenario, ["list"]);
    let (remote, local) = (remote.ok(), local.ok());
    let (r_head, r_rows) = remote.split_once('\n').unwrap();
    let (l_head, l_rows) = local.split_once('\n').unwrap();
    assert_eq!(r_rows, l_rows);
    assert!(
        r_head.contains(&format!("  nvml via {url}  ")),
        "{r_head}\n{l_head}"
    );
    assert_eq!(
        r_head.split("  ").next(),
        l_head.split("  ").next(),
        "the agent's host name"
    );

    // The agent's JSON carries its status beside the snapshot; --json is
    // still the snapshot schema, and feeds the file provider.
    let json = remote_out(&url, ["--json", "list"]);
    let dir = tempfile::tempdir().unwrap();
    let saved = write_file(&dir, "remote.json", json.ok());
    let replay = out(gpusel_on(&saved).arg("list"));
    assert_eq!(replay.ok().split_once('\n').unwrap().1, l_rows);
}

#[test]
fn an_agent_that_cannot_read_its_gpus_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let agent = serve(
        gpusel_std_on(dir.path().join("missing.json")),
        &["--interval", "100ms"],
    );
    let url = format!("http://{}", agent.addr);
    let o = remote_out(&url, ["list"]);
    o.code(4).no_stdout();
    let line = o.one_error_naming(
        "answered 503 Service Unavailable (no GPU snapshot yet: cannot read snapshot file",
    );
    assert!(line.contains(&url), "{line}");
}

#[test]
fn list_shows_the_remote_node_by_its_own_name() {
    let url = remote();
    let remote = remote_out(&url, ["list"]);
    let stdout = remote.ok();
    let local = lab_out(["list"]);
    let header = stdout.lines().next().unwrap();
    assert!(header.starts_with("lab-gpu01  8 GPUs  "), "{stdout}");
    assert!(header.contains(&format!("  nvml via {url}  ")), "{header}");
    // Apart from the provider in the header, the same table as the file.
    assert_eq!(
        stdout.lines().skip(1).collect::<Vec<_>>(),
        local.ok().lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn list_json_is_the_remote_snapshot() {
    let url = remote();
    let json: serde_json::Value =
        serde_json::from_str(remote_out(&url, ["--json", "list"]).ok()).unwrap();
    let lab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(LAB).unwrap()).unwrap();
    assert_eq!(json["host"], "lab-gpu01");
    assert_eq!(json["gpus"], lab["gpus"]);
    assert_eq!(json["provider"], format!("nvml via {url}"));
}

#[test]
fn selection_prints_a_remote_choice_and_takes_no_local_lease() {
    let url = remote();
    let lock_dir = fresh_lock_dir();
    let o: Out = gpusel()
        .args(["--provider", &url, "-n", "2"])
        .env("GPUSEL_LOCK_DIR", &lock_dir)
        // This machine's visibility says nothing about the remote GPUs.
        .env("CUDA_VISIBLE_DEVICES", "0")
        .output()
        .unwrap()
        .into();
    let picked = tokens(o.ok());
    assert_eq!(picked.len(), 2, "{o:?}");
    assert!(picked.iter().all(|t| LAB_IDLE.contains(t)), "{o:?}");
    assert!(
        !lock_dir.exists(),
        "a local lease was attempted for remote GPUs"
    );

    let env = remote_out(&url, ["env", "-d", "7"]);
    assert_eq!(
        env.ok(),
        "export CUDA_VISIBLE_DEVICES=7\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
    );
}

#[test]
fn running_a_job_on_remote_gpus_is_refused() {
    let url = remote();
    let o = remote_out(&url, ["--", "true"]);
    o.code(125).no_stdout();
    let line = o.one_error_naming(&url);
    assert!(line.contains("runs CMD on this machine"), "{line}");
    assert!(line.contains("ssh HOST gpusel -- CMD"), "{line}");
}

#[test]
fn no_agent_listening_is_one_clear_error() {
    let (_held, addr) = refusing_addr();
    let port = addr.port();
    let url = format!("http://127.0.0.1:{port}");
    let o = remote_out(&url, ["list"]);
    o.code(4).no_stdout();
    let line = o.one_error_naming(&url);
    assert!(
        line.ends_with(&format!(
            "connection refused; is `gpusel serve` running on 127.0.0.1:{port}?"
        )),
        "{line}"
    );
}

#[test]
fn the_token_comes_from_the_file_the_environment_names() {
    let url = snapshot_server(LAB, Some("T0ken-for-lab-0123"));
    let o = remote_out(&url, ["list"]);
    o.code(4);
    assert!(
        o.one_error_naming("401 Unauthorized")
            .contains("GPUSEL_HTTP_TOKEN_FILE"),
        "{o:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir, "token", "T0ken-for-lab-0123\n");
    let o: Out = gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TOKEN_FILE", &file)
        .output()
        .unwrap()
        .into();
    assert!(o.ok().starts_with("lab-gpu01"), "{o:?}");

    let wrong = write_file(&dir, "wrong", "not-it-0123456789");
    let o: Out = gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TOKEN_FILE", &wrong)
        .output()
        .unwrap()
        .into();
    o.code(4);
    let line = o.one_error_naming(&wrong.display().to_string());
    assert!(line.contains("was not accepted"), "{line}");
}

#[test]
fn a_slow_agent_is_given_up_on_at_the_timeout() {
    let url = stand_in(|_| {
        std::thread::sleep(Duration::from_secs(30));
        ("200 OK".into(), String::new())
    });
    let start = Instant::now();
    let o: Out = gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TIMEOUT", "300ms")
        .output()
        .unwrap()
        .into();
    o.code(4);
    assert!(
        o.one_error_naming(&url)
            .contains("did not answer within 300ms"),
        "{o:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "it waited for the agent"
    );
}

#[test]
fn settings_and_urls_that_cannot_work_say_what_to_do() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            "https://node1:9477",
            &[],
            "https is not supported (gpusel has no TLS built in); reach the agent through an SSH tunnel",
        ),
        (
            "https://alice:secret@node1:9477",
            &[],
            "https://***@node1:9477: https is not supported",
        ),
        (
            "http://alice:secret@node1:9477",
            &[],
            "credentials do not belong in a URL",
        ),
        ("http://node1:99999", &[], "the port is not a number"),
        (
            "http://node1:9477",
            &[("GPUSEL_HTTP_TOKEN_FILE", "/nonexistent/token")],
            "token file /nonexistent/token: cannot read it",
        ),
    ];
    for (url, env, want) in cases {
        let mut cmd = gpusel();
        cmd.args(["--provider", url, "list"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = out(cmd);
        o.code(4).no_stdout();
        assert!(
            o.one_error_naming(want).contains("unavailable"),
            "{url}: {o:?}"
        );
        assert!(
            !o.stderr.contains("secret"),
            "the password is echoed: {o:?}"
        );
    }
}

#[test]
fn token_file_and_timeout_come_from_the_config_file_and_the_environment() {
    let url = snapshot_server(LAB, Some("T0ken-for-lab-0123"));
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir, "lab.token", "T0ken-for-lab-0123\n");
    let config = write_file(
        &dir,
        "config.toml",
        "[http]\ntoken_file = \"lab.token\"\ntimeout = \"2s\"\nconnect_timeout = \"1s\"\n",
    );
    let o: Out = gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_SYSTEM_CONFIG", &config)
        .output()
        .unwrap()
        .into();
    assert!(o.ok().starts_with("lab-gpu01"), "{o:?}");
    let o: Out = gpusel()
        .arg("config")
        .env("GPUSEL_SYSTEM_CONFIG", &config)
        .env("GPUSEL_HTTP_TIMEOUT", "750ms")
        .output()
        .unwrap()
        .into();
    let shown = o.ok();
    let token_row = format!("{}", dir.path().join("lab.token").display());
    assert!(
        shown.lines().any(|l| l.starts_with("http.token_file")
            && l.contains(&token_row)
            && l.ends_with(&config.display().to_string())),
        "{shown}"
    );
    assert!(
        shown.lines().any(|l| l.starts_with("http.timeout")
            && l.contains("750ms")
            && l.ends_with("$GPUSEL_HTTP_TIMEOUT")),
        "{shown}"
    );
    assert!(
        shown.lines().any(|l| l.starts_with("http.connect_timeout")
            && l.contains("1s")
            && l.ends_with(&config.display().to_string())),
        "{shown}"
    );
    let o: Out = gpusel()
        .arg("config")
        .env("GPUSEL_SYSTEM_CONFIG", &config)
        .env("GPUSEL_HTTP_CONNECT_TIMEOUT", "250ms")
        .output()
        .unwrap()
        .into();
    assert!(
        o.ok().lines().any(|l| l.starts_with("http.connect_timeout")
            && l.contains("250ms")
            && l.ends_with("$GPUSEL_HTTP_CONNECT_TIMEOUT")),
        "{o:?}"
    );

    let o = out(gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TIMEOUT", "soon"));
    o.code(2).no_stdout();
    o.one_error_naming("GPUSEL_HTTP_TIMEOUT: 'soon' is not a duration");
    let o = out(gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_CONNECT_TIMEOUT", "0"));
    o.code(2).no_stdout();
    o.one_error_naming("GPUSEL_HTTP_CONNECT_TIMEOUT: '0' is too short");
    let bad = write_file(&dir, "bad.toml", "[http]\ntimeout = \"later\"\n");
    let o = out(gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_SYSTEM_CONFIG", &bad));
    o.code(2);
    o.one_error_naming("line 2, column 11: http.timeout: 'later' is not a duration");
}

#[test]
fn help_lists_the_remote_provider() {
    let o = out(gpusel().arg("--help"));
    assert!(o.ok().contains("http://HOST:PORT[/PREFIX]"), "{o:?}");
}

#[test]
fn the_remote_node_s_leases_are_shown_not_this_machine_s() {
    let dir = tempfile::tempdir().unwrap();
    let remote_locks = dir.path().join("remote-locks");
    // A job on the "remote" node holds GPU 7 in that node's lock directory.
    let mut job = lease_gpu7(std::path::Path::new(LAB), &remote_locks, &[]);
    let agent = serve(
        gpusel_std_on(LAB),
        &[
            "--interval",
            "100ms",
            "--lock-dir",
            remote_locks.to_str().unwrap(),
        ],
    );
    let url = format!("http://{}", agent.addr);
    // This machine's lock directory (a fresh one, from the helpers) holds nothing.
    let o = remote_out(&url, ["list"]);
    let table = o.ok();
    let lines: Vec<&str> = table.lines().collect();
    let row7 = lines.iter().position(|l| l.starts_with("7 ")).unwrap();
    assert!(lines[row7].contains("[L]"), "{table}");
    let holder = lines[row7 + 1].trim_start();
    assert!(
        holder.starts_with("leased by ")
            && holder.contains(&format!("(pid {}, ", job.id()))
            && holder.ends_with(": sh"),
        "{table}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("leased by")).count(),
        1,
        "{table}"
    );
    // A choice on the remote node skips what it leases, as it would there.
    let o = remote_out(&url, ["-d", "5,7"]);
    assert_eq!(o.ok(), "5\n");
    job.kill().unwrap();
    job.wait().unwrap();
}

/// A snapshot whose process kind (quoted raw by the JSON parser) and whose
/// duplicated UUID carry escape sequences that would retitle the window
/// and clear the screen.
fn hostile_answers() -> [String; 2] {
    let mut gpu = idle_gpu(0);
    gpu["processes"] = serde_json::json!([{
        "pid": 1, "used_memory": 1024, "name": "x", "kind": "\u{1b}]0;pwned\u{7}",
        "command_line": ["x"], "start_time": null
    }]);
    let bad_kind = snapshot_json("evil", vec![gpu]);
    let mut a = idle_gpu(0);
    let mut b = idle_gpu(1);
    a["uuid"] = serde_json::json!("GPU-\u{1b}[2J");
    b["uuid"] = a["uuid"].clone();
    [bad_kind, snapshot_json("evil", vec![a, b])]
}

#[test]
fn an_agent_s_answer_cannot_send_escapes_to_the_terminal() {
    for body in hostile_answers() {
        let url = stand_in(move |_| ("200 OK".into(), body.clone()));
        let o = remote_out(&url, ["list"]);
        o.code(4).no_stdout();
        let line = o.one_error_naming(&url);
        assert!(
            !o.stderr.contains('\u{1b}') && !o.stderr.contains('\u{7}'),
            "{o:?}"
        );
        assert!(line.contains("\\e"), "the escape is not shown: {line}");

        let mut watch = gpusel_std()
            .args(["--provider", &url, "list", "--watch", "100ms"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let frames = Collected::new(watch.stdout.take().unwrap());
        // Two error frames: the first one drawn, and one redrawn.
        frames.wait_for("two error frames", |s| {
            s.matches("gpusel: error: ").count() >= 2
        });
        watch.kill().unwrap();
        watch.wait().unwrap();
        let shown = frames.finish();
        let shown = String::from_utf8_lossy(&shown);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown:?}"
        );
    }
}

#[test]
fn the_agent_and_its_clients_read_a_token_file_by_one_rule() {
    let dir = tempfile::tempdir().unwrap();
    // A second line (a note on where the token came from) is not the token.
    let token = write_file(
        &dir,
        "agent.token",
        "  agent-0123456789abcdef\n# openssl rand -hex 32\n",
    );
    let agent = serve(
        gpusel_std_on(LAB),
        &["--token-file", token.to_str().unwrap()],
    );
    let url = format!("http://{}", agent.addr);
    let o: Out = gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TOKEN_FILE", &token)
        .output()
        .unwrap()
        .into();
    assert!(o.ok().starts_with("lab-gpu01"), "{o:?}");

    // A token too short for the agent is too short for a client too, and
    // both say so in the same words.
    let short = write_file(&dir, "short.token", "abc\n");
    let client = out(gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TOKEN_FILE", &short));
    client.code(4).no_stdout();
    let server = out(lab()
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&short));
    server.code(2);
    let why = format!(
        "token file {}: its token of 3 characters is too short to resist guessing; write one line of at least 16 printable characters",
        short.display()
    );
    client.one_error_naming(&why);
    server.one_error_naming(&why);
}

#[test]
fn a_fifo_token_file_is_refused_not_read() {
    let url = snapshot_server(LAB, Some("T0ken-for-lab-0123"));
    let dir = tempfile::tempdir().unwrap();
    let file = fifo(&dir, "token");
    let o = out(gpusel()
        .args(["--provider", &url, "list"])
        .env("GPUSEL_HTTP_TOKEN_FILE", &file)
        .timeout(PATIENCE));
    o.no_stdout();
    let line = o.one_error_naming(&file.display().to_string());
    assert!(
        line.contains("a FIFO (named pipe), not a regular file"),
        "{line}"
    );
}
