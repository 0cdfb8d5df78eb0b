//! `gpusel list`: the table, `--json`, and a reader that goes away.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

fn read_json(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn list_shows_a_header_and_a_row_per_gpu() {
    let out = lab_out(["list"]);
    let stdout = out.ok();
    // Device rows; the process lines under them are indented.
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert!(lines[0].starts_with("lab-gpu01"), "{stdout}");
    assert!(lines[0].contains("8 GPUs"), "{stdout}");
    assert!(lines[1].starts_with("GPU"), "column header: {stdout}");
    assert_eq!(
        lines.len(),
        10,
        "host line, column header, 8 rows: {stdout}"
    );
    for (i, row) in lines[2..].iter().enumerate() {
        assert_eq!(
            row.split_whitespace().next(),
            Some(i.to_string().as_str()),
            "{stdout}"
        );
        assert!(row.contains("A100-SXM4-80GB"), "{row}");
    }
    for user in ["alice", "bob", "carol", "dave"] {
        assert!(stdout.contains(user), "no {user}: {stdout}");
    }
    assert!(
        lines[2].contains("98%") && lines[2].contains("[~]"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("[ ]"), "idle GPU 1: {}", lines[3]);
    let all: Vec<&str> = stdout.lines().collect();
    assert!(
        all[3].contains("48213  alice    62 GiB  2 days ago    python3"),
        "GPU 0's process: {stdout}"
    );
    assert!(all[4].starts_with("1 "), "GPU 1 has no process: {stdout}");
}

#[test]
fn list_shows_mig_devices_under_their_gpu() {
    let out = mig_out(["list"]);
    let stdout = out.ok();
    let first: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(first, ["0", "0:0", "0:1", "0:2", "1"], "{stdout}");
    assert!(stdout.lines().next().unwrap().starts_with("lab-h100"));
    assert!(stdout.contains("erin"), "{stdout}");
    for profile in ["3g.40gb", "2g.20gb", "1g.10gb"] {
        assert!(stdout.contains(profile), "no {profile}: {stdout}");
    }
}

#[test]
fn list_json_is_the_snapshot() {
    for path in [LAB, MIG] {
        let out = out(gpusel_on(path).args(["list", "--json"]));
        let got: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
        assert_eq!(got, read_json(path), "{path}");
    }
}

#[test]
fn list_json_flag_before_the_subcommand() {
    let out = out(gpusel_on(LAB).args(["--json", "list"]));
    let got: serde_json::Value = serde_json::from_str(out.ok()).expect("valid JSON");
    assert_eq!(got, read_json(LAB));
}

#[test]
fn list_json_round_trips_as_a_provider() {
    let dir = tempfile::tempdir().unwrap();
    let first = out(gpusel_on(MIG).args(["list", "--json"]));
    let path = write_file(&dir, "again.json", first.ok());
    let second = out(gpusel_on(&path).args(["list", "--json"]));
    assert_eq!(second.ok(), first.stdout);
}

#[test]
fn list_into_head_does_not_panic() {
    let out = isolated(std::process::Command::new("sh"))
        .args(["-c", r#""$0" -p "$1" list | head -1"#])
        .arg(bin())
        .arg(provider(LAB))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("lab-gpu01"), "{stdout}");
}

#[test]
fn list_to_a_reader_that_goes_away_exits_quietly() {
    // Far more than a pipe buffer holds, so the write must meet a closed pipe.
    let dir = tempfile::tempdir().unwrap();
    let gpus = (0..2000).map(idle_gpu).collect();
    let path = write_file(&dir, "big.json", &snapshot_json("big", gpus));
    let mut child = gpusel_std()
        .args(["-p", &provider(&path), "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("big"), "{first}");
    // The reader is dropped here: the rest of the table meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn list_ignores_cuda_visible_devices() {
    let out = out(lab().env("CUDA_VISIBLE_DEVICES", "3").arg("list"));
    let rows = out.ok().lines().filter(|l| !l.starts_with(' ')).count();
    assert_eq!(rows, 10, "{}", out.ok());
}

#[test]
fn list_refuses_selection_flags() {
    lab_out(["--devices", "3", "list"])
        .code(2)
        .no_stdout()
        .one_error_naming("--devices");
}

// ---- the table as a terminal sees it -----------------------------------------------

/// Escape sequences as a visible `␛`, so that the color snapshots read.
fn visible_escapes(text: &str) -> String {
    text.replace('\x1b', "␛")
}

/// Columns a line takes on a terminal: escape sequences take none, and
/// every character the table draws is one column wide.
fn columns(line: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in line.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// The table of `cmd` at `width` columns, colored or not, with its first
/// line (host and time of a live provider) replaced when `live`.
fn table(mut cmd: assert_cmd::Command, width: usize, color: bool, live: bool) -> String {
    let when = if color { "always" } else { "never" };
    let out = out(cmd
        .env("COLUMNS", width.to_string())
        .args(["list", "--color", when]));
    let text = out.ok().to_string();
    for line in text.lines() {
        assert!(columns(line) <= width, "{width} columns: {line:?}");
    }
    let text = if live {
        let (_, rest) = text.split_once('\n').unwrap();
        format!("<host and time>\n{rest}")
    } else {
        text
    };
    visible_escapes(&text)
}

#[test]
fn table_snapshots_at_80_and_160_columns() {
    for width in [80, 160] {
        for color in [false, true] {
            let suffix = format!("{width}-{}", if color { "color" } else { "plain" });
            insta::assert_snapshot!(format!("lab-{suffix}"), table(lab(), width, color, false));
            insta::assert_snapshot!(format!("mig-{suffix}"), table(mig(), width, color, false));
            let busy = common::nvml::nvml(common::nvml::fixture("busy-mixed"));
            insta::assert_snapshot!(
                format!("busy-mixed-{suffix}"),
                table(busy, width, color, true)
            );
        }
    }
}

#[test]
fn narrow_terminals_lose_columns_not_rows() {
    let text = table(lab(), 60, false, false);
    let header = text.lines().nth(1).unwrap();
    assert!(
        header.contains("NAME") && header.contains("MEMORY"),
        "{text}"
    );
    assert!(
        !header.contains("SM CLOCK") && !header.contains("MEM%"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| !l.starts_with(' ')).count(),
        10,
        "{text}"
    );
    let wide = table(lab(), 160, false, false);
    assert!(wide.lines().nth(1).unwrap().contains("SM CLOCK"), "{wide}");
}

#[test]
fn wide_and_full_cmd_show_everything() {
    let out = lab_out(["list", "--wide", "--full-cmd"]);
    let text = out.ok();
    for needle in [
        "NVIDIA A100-SXM4-80GB",
        "GPU-5f2c7a1e-8b3d-4c6e-9a1f-0d2e4b6c8a10",
        "00000000:07:00.0",
        "PERF",
        "python3 train.py --config llama-7b.yaml",
        "2 days ago",
    ] {
        assert!(text.contains(needle), "no {needle:?}: {text}");
    }
    // --wide ignores the terminal's width: nothing is cut.
    let narrow = out_of(
        lab()
            .env("COLUMNS", "40")
            .args(["list", "--wide", "--full-cmd"]),
    );
    assert_eq!(narrow, text);
    insta::assert_snapshot!("lab-wide-full-cmd", text);
}

fn out_of(cmd: &mut assert_cmd::Command) -> String {
    out(cmd).ok().to_string()
}

#[test]
fn a_pipe_gets_no_escape_codes() {
    // Captured output is a pipe: no color whatever TERM says.
    for term in ["xterm-256color", "dumb"] {
        let text = out_of(lab().env("TERM", term).arg("list"));
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("[~]"), "{text}");
    }
    let forced = out_of(lab().env("CLICOLOR_FORCE", "1").arg("list"));
    assert!(forced.contains("\x1b[32m[ ]\x1b[0m"), "{forced:?}");
    let no_color = out_of(
        lab()
            .env("CLICOLOR_FORCE", "1")
            .env("NO_COLOR", "1")
            .arg("list"),
    );
    assert!(!no_color.contains('\x1b'), "{no_color:?}");
    let always = out_of(lab().env("NO_COLOR", "1").args(["list", "--color=always"]));
    assert!(always.contains('\x1b'), "the flag wins: {always:?}");
    let never = out_of(
        lab()
            .env("CLICOLOR_FORCE", "1")
            .args(["list", "--color", "never"]),
    );
    assert!(!never.contains('\x1b'), "{never:?}");
    // A pipe is never cut: every column whole, as ps does.
    let piped = out_of(lab().args(["list", "--full-cmd"]));
    assert!(piped.contains("SM CLOCK"), "{piped}");
    assert!(
        piped.contains("torchrun --nproc_per_node=1 pretrain.py"),
        "{piped}"
    );
}

#[test]
fn a_bad_color_value_is_a_usage_error() {
    lab_out(["list", "--color", "sometimes"])
        .code(2)
        .no_stdout()
        .one_error_naming("sometimes");
}

#[test]
fn hostile_process_names_from_proc_are_escaped() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    // A real process whose argv[0] and argument carry escape sequences,
    // a bidi override and bytes that are not UTF-8, as anyone can give.
    let mut hostile = std::process::Command::new("sleep")
        .arg0(std::ffi::OsStr::from_bytes(
            b"\x1b]0;owned\x07\x1b[2Jevil\xff",
        ))
        .arg("30")
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = hostile.id();
    let _guard = Kill(std::mem::replace(
        &mut hostile,
        std::process::Command::new("true").spawn().unwrap(),
    ));
    let _ = hostile.wait();
    let scene = common::nvml::Scene::from_fixture("idle-8xa100");
    let mut json = scene.json();
    json["devices"][0]["compute_processes"] = serde_json::json!([
        {"pid": pid, "used_memory": 1u64 << 30, "name": "\u{1b}[31mred\u{202e}txt"}
    ]);
    scene.set(&json.to_string());
    for args in [
        &["list"][..],
        &["list", "--full-cmd"],
        &["list", "--wide", "--full-cmd"],
    ] {
        let text = out(common::nvml::nvml(&scene.path)
            .env("COLUMNS", "200")
            .args(args))
        .ok()
        .to_string();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(!text.contains('\u{202e}'), "{text:?}");
        let line = text
            .lines()
            .find(|l| l.contains(&pid.to_string()))
            .unwrap_or_else(|| panic!("no process {pid}: {text}"));
        if args.contains(&"--full-cmd") {
            assert!(
                line.contains("\\e]0;owned\\x07\\e[2Jevil\u{fffd} 30"),
                "{line:?}"
            );
        } else {
            assert!(line.contains("\\e[31mred\\u{202e}txt"), "{line:?}");
        }
    }
}

#[test]
fn long_names_are_cut_to_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut gpu = idle_gpu(0);
    gpu["name"] = serde_json::json!("NVIDIA ".to_string() + &"宽".repeat(60));
    gpu["processes"] = serde_json::json!([{
        "pid": 1, "used_memory": 1024, "name": "x".repeat(300), "user": "u".repeat(40),
        "command_line": ["a".repeat(500)], "start_time": null
    }]);
    let path = write_file(&dir, "long.json", &snapshot_json("long", vec![gpu]));
    for cols in [40, 80, 120] {
        let text = out_of(
            gpusel_on(&path)
                .env("COLUMNS", cols.to_string())
                .args(["list", "--full-cmd"]),
        );
        for line in text.lines() {
            // The wide characters take two columns each.
            let w: usize = line.chars().map(|c| if c == '宽' { 2 } else { 1 }).sum();
            assert!(w <= cols, "{cols}: {line:?}");
        }
        assert!(text.contains('…'), "{text}");
    }
    // A pipe gets everything whole.
    let piped = out_of(gpusel_on(&path).args(["list", "--full-cmd"]));
    assert!(!piped.contains('…'), "{piped}");
    assert!(
        piped.contains(&"u".repeat(40)) && piped.contains(&"a".repeat(500)),
        "{piped}"
    );
}

#[test]
fn watch_and_json_do_not_mix() {
    let out = lab_out(["list", "--watch", "--json"]);
    out.code(2).one_error_naming("--watch");
    // A failed --json run still gives a script one object to read.
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON object");
    assert_eq!(json["error"]["kind"], "usage");
}

#[test]
fn a_process_proc_cannot_see_is_marked_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let mut gpu = idle_gpu(0);
    gpu["processes"] = serde_json::json!([
        {"pid": 4242, "used_memory": 1073741824, "name": "python", "visible": false}
    ]);
    let path = write_file(
        &dir,
        "hidden.json",
        &snapshot_json("box", vec![gpu, idle_gpu(1)]),
    );
    let text = out_of(gpusel_on(&path).arg("list"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[2].starts_with("0    [!]"), "{text}");
    assert_eq!(
        lines[3], "    [!] 4242  ?  1 GiB  -  python  (not visible in /proc here)",
        "{text}"
    );
    assert!(lines[4].starts_with("1    [ ]"), "{text}");
    // And the field survives a round trip through --json.
    let json: serde_json::Value =
        serde_json::from_str(&out_of(gpusel_on(&path).args(["list", "--json"]))).unwrap();
    assert_eq!(json["gpus"][0]["processes"][0]["visible"], false);
}

#[test]
fn a_gpu_whose_load_is_not_reported_is_not_called_free() {
    // No process, but no utilization either: gpusel cannot tell it is idle,
    // so it is not marked free, and plain `gpusel` does not take it.
    let dir = tempfile::tempdir().unwrap();
    let mut gpu = idle_gpu(0);
    gpu["utilization_gpu"] = serde_json::Value::Null;
    let path = write_file(
        &dir,
        "no-load.json",
        &snapshot_json("box", vec![gpu, idle_gpu(1)]),
    );
    let text = out_of(gpusel_on(&path).arg("list"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[2].starts_with("0    [!]"), "{text}");
    assert!(lines[3].starts_with("1    [ ]"), "{text}");
    for seed in 0..8 {
        let chosen = out_of(gpusel_on(&path).env("GPUSEL_SEED", seed.to_string()));
        assert_eq!(chosen, "1\n");
    }
}

/// The largest values a snapshot file or a remote agent can send.
fn huge_gpu() -> serde_json::Value {
    let mut gpu = idle_gpu(0);
    gpu["power_draw"] = serde_json::json!(u32::MAX);
    gpu["power_limit"] = serde_json::json!(u32::MAX);
    gpu["memory_total"] = serde_json::json!(u64::MAX);
    gpu["memory_used"] = serde_json::json!(u64::MAX);
    gpu["memory_free"] = serde_json::json!(0);
    gpu
}

#[test]
fn the_largest_values_a_snapshot_can_hold_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "huge.json", &snapshot_json("huge", vec![huge_gpu()]));
    let text = out_of(
        gpusel_on(&path)
            .env("COLUMNS", "160")
            .args(["list", "--wide"]),
    );
    assert!(text.contains("4294967/4294967 W"), "{text}");
    assert!(text.contains("16777216/16777216 TiB"), "{text}");
}
