//! The queue of `--wait`ers with real processes on fake-nvml: first come,
//! first served (a 4-GPU waiter is not starved by a stream of later 1-GPU
//! waiters), `gpusel queue` shows the waiters in order, a SIGKILLed waiter
//! leaves the queue at once, and another user can neither delete nor forge
//! a ticket.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::nvml::{idle_a100s as idle, nvml_locked as on};
use common::users::{OTHER, as_other, can_be_other};
use common::*;

/// `gpusel queue --json`: the waiters' pids, oldest first.
fn queued(scenario: &Path, locks: &Path) -> Vec<u64> {
    let out: Out = on(scenario, locks)
        .args(["queue", "--json"])
        .output()
        .unwrap()
        .into();
    let json: serde_json::Value = serde_json::from_str(out.ok()).expect("JSON");
    json["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["holder"]["pid"].as_u64().unwrap())
        .collect()
}

/// A job that marks `started/PID`, runs `seconds`, and writes
/// `CUDA_VISIBLE_DEVICES START_NS END_NS` into `records/PID`.
fn job(dir: &Path, seconds: f64) -> Vec<String> {
    let script = format!(
        r#"touch "$0/started/$$"; s=$(date +%s%N); sleep {seconds}; e=$(date +%s%N); echo "$CUDA_VISIBLE_DEVICES $s $e" > "$0/records/$$""#
    );
    vec!["sh".into(), "-c".into(), script, dir.display().to_string()]
}

fn spawn(scenario: &Path, locks: &Path, args: &[&str], command: &[String]) -> Child {
    on(scenario, locks)
        .args(args)
        .arg("--")
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gpusel")
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// One job's record: its pid, GPUs and the time it ran (ns).
#[derive(Debug)]
struct Ran {
    pid: u32,
    gpus: Vec<String>,
    start: u128,
    end: u128,
}

fn records(dir: &Path) -> Vec<Ran> {
    std::fs::read_dir(dir.join("records"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            let f: Vec<&str> = text.split_whitespace().collect();
            Ran {
                pid: e.file_name().to_string_lossy().parse().unwrap(),
                gpus: f[0].split(',').map(String::from).collect(),
                start: f[1].parse().unwrap(),
                end: f[2].parse().unwrap(),
            }
        })
        .collect()
}

/// `gpus` idle GPUs, a fresh lock directory, and the folders [`job`] writes
/// into.
fn jobs_on(gpus: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = idle(&tmp, gpus);
    std::fs::create_dir(tmp.path().join("started")).unwrap();
    std::fs::create_dir(tmp.path().join("records")).unwrap();
    (tmp, scenario, fresh_lock_dir())
}

#[test]
fn a_four_gpu_waiter_is_not_starved_by_later_one_gpu_waiters() {
    let (tmp, scenario, locks) = jobs_on(4);
    let dir = tmp.path();
    let wait = ["--wait", "--interval", "200ms"];

    // Four 1-GPU jobs hold the four GPUs for 3 s.
    let mut first: Vec<Child> = (0..4)
        .map(|_| spawn(&scenario, &locks, &[], &job(dir, 3.0)))
        .collect();
    eventually("the four first jobs to start", || {
        let n = count_files(&dir.join("started"));
        (n == 4).then_some(()).ok_or(format!("{n} started"))
    });
    // A 4-GPU waiter queues behind them.
    let mut big = spawn(
        &scenario,
        &locks,
        &[&["-n", "4"][..], &wait].concat(),
        &job(dir, 1.0),
    );
    let big_pid = u64::from(big.id());
    eventually("the 4-GPU waiter to be queued", || {
        let q = queued(&scenario, &locks);
        (q == [big_pid]).then_some(()).ok_or(format!("{q:?}"))
    });
    // A new 1-GPU waiter every 0.4 s for 6 s, each queued after it.
    let mut small = Vec::new();
    for _ in 0..15 {
        small.push(spawn(&scenario, &locks, &wait, &job(dir, 0.3)));
        std::thread::sleep(Duration::from_millis(400));
    }
    for child in first.iter_mut().chain([&mut big]).chain(small.iter_mut()) {
        assert!(child.wait().unwrap().success());
    }

    let ran = records(dir);
    assert_eq!(ran.len(), 20, "every job ran: {ran:?}");
    let big_run = ran.iter().find(|r| u64::from(r.pid) == big_pid).unwrap();
    assert_eq!(big_run.gpus.len(), 4, "{big_run:?}");
    // No two jobs on one GPU at once.
    for gpu in ["0", "1", "2", "3"] {
        let mut on_gpu: Vec<&Ran> = ran
            .iter()
            .filter(|r| r.gpus.iter().any(|g| g == gpu))
            .collect();
        on_gpu.sort_by_key(|r| r.start);
        for pair in on_gpu.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "overlap on GPU {gpu}: {pair:?}"
            );
        }
    }
    // First come, first served: every later 1-GPU waiter started after the
    // 4-GPU one, although GPUs freed while they waited.
    let small_pids: Vec<u32> = small.iter().map(Child::id).collect();
    for r in ran.iter().filter(|r| small_pids.contains(&r.pid)) {
        assert!(r.start > big_run.start, "{r:?} started before {big_run:?}");
    }
    let freed = ran
        .iter()
        .filter(|r| !small_pids.contains(&r.pid) && u64::from(r.pid) != big_pid)
        .map(|r| r.end)
        .max()
        .unwrap();
    eprintln!(
        "the 4-GPU job started {:.0} ms after the first four ended (--interval 200ms)",
        (big_run.start - freed) as f64 / 1e6
    );
}

#[test]
fn a_killed_waiter_leaves_the_queue_at_once_and_the_queue_is_shown_in_order() {
    let (tmp, scenario, locks) = jobs_on(1);
    let dir = tmp.path();
    // Its lease is the sleep's once it execs: killing it frees the GPU.
    let hold = format!(r#"touch "{}/started/$$"; exec sleep 60"#, dir.display());
    let mut holder = spawn(&scenario, &locks, &[], &["sh".into(), "-c".into(), hold]);
    eventually("the holder to start", || {
        (count_files(&dir.join("started")) == 1)
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let wait = ["--wait", "--interval", "100ms", "--mem", "20GiB"];
    let mut older = spawn(&scenario, &locks, &wait, &job(dir, 0.0));
    let older_pid = u64::from(older.id());
    eventually("the first waiter to be queued", || {
        let q = queued(&scenario, &locks);
        (q == [older_pid]).then_some(()).ok_or(format!("{q:?}"))
    });
    let mut younger = spawn(
        &scenario,
        &locks,
        &["--wait", "--interval", "100ms"],
        &job(dir, 0.0),
    );
    let younger_pid = u64::from(younger.id());
    eventually("both waiters to be queued", || {
        let q = queued(&scenario, &locks);
        (q == [older_pid, younger_pid])
            .then_some(())
            .ok_or(format!("{q:?}"))
    });
    // `list --json` carries the queue too.
    let out: Out = on(&scenario, &locks)
        .args(["list", "--json"])
        .output()
        .unwrap()
        .into();
    let listed: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let pids: Vec<u64> = listed["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["holder"]["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, [older_pid, younger_pid]);
    let out: Out = on(&scenario, &locks).arg("queue").output().unwrap().into();
    let table = out.ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("#  USER  PID"), "{table}");
    assert!(
        lines[1].starts_with(&format!("1  root  {older_pid}"))
            && lines[1].contains("1 GPU, 20 GiB free, idle")
            && lines[1].contains(" sh -c touch "),
        "{table}"
    );
    assert!(
        lines[2].starts_with(&format!("2  root  {younger_pid}")),
        "{table}"
    );

    older.kill().unwrap();
    older.wait().unwrap();
    assert_eq!(queued(&scenario, &locks), [younger_pid], "gone at once");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(younger.wait().unwrap().success());
    assert!(queued(&scenario, &locks).is_empty());
    let out: Out = on(&scenario, &locks).arg("queue").output().unwrap().into();
    assert_eq!(out.ok(), "no gpusel job is waiting\n");
}

#[test]
fn another_user_can_neither_delete_nor_forge_a_ticket() {
    if !can_be_other("the second-user queue test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = tmp.path().join("gpusel");
    std::fs::copy(bin(), &binary).unwrap();
    let snapshot = write_file(&tmp, "one.json", &snapshot_json("node1", vec![idle_gpu(0)]));
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o644)).unwrap();
    let locks = tmp.path().join("locks");
    let with_locks = |mut cmd: std::process::Command| {
        cmd.env("GPUSEL_LOCK_DIR", &locks);
        cmd
    };
    let mut holder = with_locks(gpusel_std_on(&snapshot))
        .args(["--", "sleep", "60"])
        .spawn()
        .unwrap();
    eventually("the holder to lease the GPU", || {
        let out: Out = with_locks(gpusel_std_on(&snapshot))
            .args(["list", "--json"])
            .output()
            .unwrap()
            .into();
        let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        let lease = &json["gpus"][0]["lease"];
        (!lease.is_null())
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let mut waiter = with_locks(gpusel_std_on(&snapshot))
        .args(["--wait", "--interval", "100ms", "--", "true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let queue = || -> Vec<serde_json::Value> {
        let out: Out = with_locks(gpusel_std_on(&snapshot))
            .args(["queue", "--json"])
            .output()
            .unwrap()
            .into();
        let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        json["waiters"].as_array().unwrap().clone()
    };
    eventually("the waiter to be queued", || {
        let q = queue();
        (q.len() == 1).then_some(()).ok_or(format!("{q:?}"))
    });
    let ticket = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ticket"))
        .expect("the ticket");
    let sh = Path::new("/bin/sh");
    for attack in [
        format!("rm -f '{}'", ticket.display()),
        format!("mv '{}' '{}.x'", ticket.display(), ticket.display()),
        format!("echo '{{}}' > '{}'", ticket.display()),
        // An older ticket: the kernel sets the change time, touch cannot.
        format!("touch -d 2000-01-01 '{}'", ticket.display()),
    ] {
        let out = as_other(sh, &["-c", &attack]);
        assert_ne!(out.code, Some(0), "{attack} succeeded");
    }
    // A ticket in root's name, in a file of the other user's, held locked.
    let forged = locks.join(format!("gpusel-queue.0.{}-5.ticket", holder.id()));
    let record = format!(
        r#"{{"holder":{{"pid":{},"uid":0,"user":"root","command":["forged"],"host":"h","since":"2000-01-01T00:00:00Z"}},"wanted":{{"count":"1"}}}}"#,
        holder.id()
    );
    let script = format!(
        "echo '{record}' > '{f}' && exec flock '{f}' sleep 60",
        f = forged.display()
    );
    let mut forger = std::process::Command::new("setpriv")
        .args(["--reuid", OTHER, "--regid", OTHER, "--clear-groups", "--"])
        .args(["sh", "-c", &script])
        .current_dir("/")
        .spawn()
        .unwrap();
    eventually("the forged ticket to exist", || {
        forged
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let q = queue();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["holder"]["pid"], waiter.id(), "{q:?}");
    forger.kill().unwrap();
    forger.wait().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(waiter.wait().unwrap().success());
}

#[test]
fn a_request_over_the_sites_per_user_limit_waits_or_fails_saying_so() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = idle(&tmp, 4);
    let locks = fresh_lock_dir();
    let config = write_file(
        &tmp,
        "site.toml",
        "[limits]\ngpus_per_user = 2\nshare_memory_per_user = \"10GiB\"\n",
    );
    let site = |mut cmd: std::process::Command| {
        cmd.env("GPUSEL_SYSTEM_CONFIG", &config);
        cmd
    };
    let run = |args: &[&str]| -> Out {
        site(on(&scenario, &locks))
            .args(args)
            .output()
            .unwrap()
            .into()
    };
    let mut holder = site(on(&scenario, &locks))
        .args(["--", "sleep", "60"])
        .spawn()
        .unwrap();
    eventually("the first GPU to be held", || {
        let out = run(&["list", "--json"]);
        let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
        let held = json["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| !g["lease"].is_null())
            .count();
        (held == 1).then_some(()).ok_or(format!("{held} held"))
    });
    run(&["-n", "2", "--", "true"])
        .code(125)
        .stderr_has("the site allows 2 GPUs per user (limits.gpus_per_user); you hold 1 GPU and ask for 2 GPUs more");
    run(&["-n", "2"]).code(3).stderr_has("limits.gpus_per_user");
    run(&["-n", "1", "--", "true"]).ok();
    run(&["--share", "--mem", "12GiB", "--", "true"])
        .code(125)
        .stderr_has("the site allows 10 GiB per user (limits.share_memory_per_user); you hold 0 B and ask for 12 GiB more");
    let shown = run(&["config"]).ok().to_string();
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("limits.gpus_per_user") && l.contains(" 2 ")),
        "{shown}"
    );
    // With --wait, it waits until the user's own job ends.
    let mut waiter = site(on(&scenario, &locks))
        .args(["-n", "2", "--wait", "--interval", "100ms", "--", "true"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiter.try_wait().unwrap().is_none(), "it waits");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(waiter.wait().unwrap().success());
}

/// Waits until `gpusel list --json` shows GPU `index` leased.
fn until_leased(scenario: &Path, locks: &Path, index: usize) {
    eventually("the holder to lease its GPU", || {
        let out: Out = on(scenario, locks)
            .args(["list", "--json"])
            .output()
            .unwrap()
            .into();
        let json: serde_json::Value = serde_json::from_str(out.ok()).expect("JSON");
        (!json["gpus"][index]["lease"].is_null())
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
}

#[test]
fn waiters_further_back_than_there_are_gpus_still_start_in_queue_order() {
    // One GPU, four waiters: three of them are behind more waiters than
    // there are GPUs, and only watch the queue until the ones ahead leave.
    let (tmp, scenario, locks) = jobs_on(1);
    let dir = tmp.path();
    let mut holder = spawn(&scenario, &locks, &[], &["sleep".into(), "60".into()]);
    until_leased(&scenario, &locks, 0);
    let wait = ["--wait", "--interval", "50ms"];
    let mut waiters: Vec<Child> = Vec::new();
    for n in 1..=4 {
        waiters.push(spawn(&scenario, &locks, &wait, &job(dir, 0.2)));
        eventually("the waiter to be queued", || {
            let q = queued(&scenario, &locks);
            (q.len() == n).then_some(()).ok_or(format!("{q:?}"))
        });
    }
    let order: Vec<u64> = waiters.iter().map(|c| u64::from(c.id())).collect();
    assert_eq!(queued(&scenario, &locks), order);
    holder.kill().unwrap();
    holder.wait().unwrap();
    for child in &mut waiters {
        assert!(child.wait().unwrap().success());
    }
    let mut ran = records(dir);
    ran.sort_by_key(|r| r.start);
    let started: Vec<u64> = ran.iter().map(|r| u64::from(r.pid)).collect();
    assert_eq!(started, order, "they ran in queue order: {ran:?}");
    for pair in ran.windows(2) {
        assert!(pair[0].end <= pair[1].start, "overlap: {pair:?}");
    }
}

#[test]
fn what_a_killed_waiter_and_a_killed_sharer_leave_is_removed_by_their_users_next_gpusel() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = idle(&tmp, 3);
    let locks = fresh_lock_dir();
    let files = |suffix: &str| -> Vec<String> {
        std::fs::read_dir(&locks)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .collect()
    };
    let mut holder = spawn(
        &scenario,
        &locks,
        &["-d", "0"],
        &["sleep".into(), "60".into()],
    );
    until_leased(&scenario, &locks, 0);
    let mut waiter = spawn(
        &scenario,
        &locks,
        &["-d", "0", "--wait", "--interval", "100ms"],
        &["true".into()],
    );
    let mut sharer = spawn(
        &scenario,
        &locks,
        &["-d", "1", "--share", "--mem", "1GiB"],
        &["sleep".into(), "60".into()],
    );
    eventually("the waiter's ticket and the share's record", || {
        let found = (files(".ticket").len(), files(".share").len());
        (found == (1, 1)).then_some(()).ok_or(format!("{found:?}"))
    });
    // Files of another user's, left the same way: never touched.
    let gone = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let others = if can_be_other("another user's left files") {
        let uid = common::users::other_user();
        let names = [
            format!("gpusel-queue.{uid}.{gone}-0.ticket"),
            format!("gpusel-gpu-x.{uid}.{gone}-0.share"),
        ];
        for name in &names {
            let path = locks.join(name);
            std::fs::write(&path, "{}").unwrap();
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
        }
        names.to_vec()
    } else {
        Vec::new()
    };
    for child in [&mut waiter, &mut sharer] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mine = |suffix: &str| -> Vec<String> {
        files(suffix)
            .into_iter()
            .filter(|n| !others.contains(n))
            .collect()
    };
    assert_eq!(mine(".ticket").len(), 1, "left by the killed waiter");
    assert!(queued(&scenario, &locks).is_empty(), "but nobody waits");
    eventually("the user's next gpusel to remove them", || {
        let out: Out = on(&scenario, &locks)
            .args(["-d", "2", "--", "true"])
            .output()
            .unwrap()
            .into();
        out.ok();
        let left = (mine(".ticket"), mine(".share"));
        (left.0.is_empty() && left.1.is_empty())
            .then_some(())
            .ok_or(format!("{left:?}"))
    });
    for name in &others {
        assert!(locks.join(name).exists(), "{name} was removed");
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn waiters_checking_hourly_start_when_the_gpu_frees() {
    // An interval of an hour: each waiter learns that the GPU is free, or
    // that the waiter ahead left, from the lock directory itself.
    let (tmp, scenario, locks) = jobs_on(1);
    let dir = tmp.path();
    let mut holder = spawn(&scenario, &locks, &[], &["sleep".into(), "60".into()]);
    until_leased(&scenario, &locks, 0);
    let wait = ["--wait", "--interval", "1h"];
    // Killed however the test ends: they would wait an hour.
    struct Reaped(Vec<Child>);
    impl Drop for Reaped {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut waiters = Reaped(Vec::new());
    for n in 1..=2 {
        waiters
            .0
            .push(spawn(&scenario, &locks, &wait, &job(dir, 0.2)));
        eventually("the waiter to be queued", || {
            let q = queued(&scenario, &locks);
            (q.len() == n).then_some(()).ok_or(format!("{q:?}"))
        });
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    eventually("both waiters to run their jobs", || {
        let n = records(dir).len();
        (n == 2).then_some(()).ok_or(format!("{n} ran"))
    });
    for child in &mut waiters.0 {
        assert!(child.wait().unwrap().success());
    }
}
