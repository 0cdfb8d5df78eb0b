//! Shared leases with real processes on fake-nvml: `--share --mem` packs
//! jobs onto a GPU while their reservations fit, racing sharers never
//! overcommit one, a killed sharer's reservation is gone at once, exclusive
//! and shared never mix, and another user can neither forge nor delete a
//! share.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::nvml::idle_a100s;
use common::users::{OTHER, as_other, can_be_other};
use common::*;

/// Two idle A100-80GB (79.5 GiB free each).
fn two_idle(dir: &tempfile::TempDir) -> PathBuf {
    idle_a100s(dir, 2)
}

use common::nvml::nvml_locked as on;

fn run(mut cmd: std::process::Command) -> Out {
    cmd.output().expect("gpusel can be started").into()
}

/// `gpusel list --json`: the shares of each GPU, as (user, reserved bytes, pid).
fn shares(scenario: &Path, locks: &Path) -> Vec<Vec<(String, u64, u64)>> {
    let mut cmd = on(scenario, locks);
    cmd.args(["list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(run(cmd).ok()).expect("JSON");
    json["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            g["lease"]["shares"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|s| {
                            (
                                s["holder"]["user"].as_str().unwrap_or_default().to_string(),
                                s["reserved"].as_u64().unwrap(),
                                s["holder"]["pid"].as_u64().unwrap(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// A job that writes its CUDA_VISIBLE_DEVICES into `out`, then runs until
/// `stop` exists.
fn job_script(out: &Path, stop: &Path) -> String {
    format!(
        r#"echo "$CUDA_VISIBLE_DEVICES" > '{o}.tmp' && mv '{o}.tmp' '{o}'; while [ ! -e '{s}' ]; do sleep 0.05; done"#,
        o = out.display(),
        s = stop.display()
    )
}

/// Starts `gpusel ARGS -- sh -c JOB` (see [`job_script`]).
fn spawn_job(scenario: &Path, locks: &Path, args: &[&str], out: &Path, stop: &Path) -> Child {
    on(scenario, locks)
        .args(args)
        .args(["--", "sh", "-c", &job_script(out, stop)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gpusel")
}

/// What a job wrote: the GPU it was given.
fn gpu_of(out: &Path) -> String {
    eventually(&format!("{} to be written", out.display()), || {
        std::fs::read_to_string(out)
            .map(|s| s.trim().to_string())
            .map_err(|e| e.to_string())
    })
}

const SHARE_30: [&str; 5] = ["--share", "--mem", "30GiB", "--strategy", "best-fit"];

#[test]
fn five_30_gib_jobs_share_two_80_gib_gpus_two_by_two_and_the_fifth_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = two_idle(&tmp);
    let locks = fresh_lock_dir();
    let stop: Vec<PathBuf> = (0..5)
        .map(|i| tmp.path().join(format!("stop{i}")))
        .collect();
    let out: Vec<PathBuf> = (0..5).map(|i| tmp.path().join(format!("out{i}"))).collect();
    let mut jobs = Vec::new();
    let mut gpus = Vec::new();
    for i in 0..4 {
        jobs.push(spawn_job(&scenario, &locks, &SHARE_30, &out[i], &stop[i]));
        gpus.push(gpu_of(&out[i]));
    }
    // Best-fit packs: the second job goes where the first one is.
    assert_eq!(gpus, ["0", "0", "1", "1"], "jobs 1-4 were given these GPUs");
    let held = shares(&scenario, &locks);
    assert_eq!(
        held.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2],
        "{held:?}"
    );
    assert!(
        held.iter()
            .flatten()
            .all(|(_, bytes, _)| *bytes == 30 << 30),
        "{held:?}"
    );

    // `list` shows each share: who, what it reserved, what it uses.
    let mut cmd = on(&scenario, &locks);
    cmd.arg("list");
    let table = run(cmd).ok().to_string();
    let pid = jobs[0].id();
    assert!(
        table
            .lines()
            .any(|l| l.contains(&format!("shared by root (pid {pid}, "))
                && l.contains(": 30 GiB reserved, 0 B used: sh -c ")),
        "{table}"
    );

    // A fifth does not fit now: without --wait it fails, saying why.
    let mut cmd = on(&scenario, &locks);
    cmd.args(SHARE_30).args(["--", "true"]);
    let refused = run(cmd);
    refused
        .code(125)
        .stderr_has("reserved by 2 shares < 30 GiB needed");
    // With --wait it waits, and runs once a share ends.
    let waiter = spawn_job(
        &scenario,
        &locks,
        &[&SHARE_30[..], &["--wait", "--interval", "100ms"]].concat(),
        &out[4],
        &stop[4],
    );
    let waiting = eventually("the fifth job to be waiting", || {
        let seen = shares(&scenario, &locks);
        if out[4].exists() {
            return Err(format!("it ran beside {seen:?}"));
        }
        Ok(seen)
    });
    assert_eq!(waiting.iter().map(Vec::len).sum::<usize>(), 4);
    std::fs::write(&stop[0], "").unwrap();
    jobs[0].wait().unwrap();
    assert_eq!(gpu_of(&out[4]), "0", "the fifth takes the freed share");
    let held = shares(&scenario, &locks);
    assert_eq!(
        held.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2],
        "{held:?}"
    );
    for s in &stop {
        std::fs::write(s, "").unwrap();
    }
    for mut job in jobs.into_iter().chain([waiter]) {
        assert!(job.wait().unwrap().success());
    }
}

#[test]
fn a_hundred_racing_sharers_never_overcommit_a_gpu() {
    const RACERS: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let scenario = two_idle(&tmp);
    let locks = fresh_lock_dir();
    let stop = tmp.path().join("stop");
    let outs: Vec<PathBuf> = (0..RACERS)
        .map(|i| tmp.path().join(format!("out{i}")))
        .collect();
    let mut racers: Vec<Child> = outs
        .iter()
        .map(|out| spawn_job(&scenario, &locks, &SHARE_30, out, &stop))
        .collect();
    // Every racer either runs (writes its GPU) or is refused (exits 125).
    let mut refused = 0;
    let mut admitted: Vec<String> = Vec::new();
    for (racer, out) in racers.iter_mut().zip(&outs) {
        let verdict = eventually("each racer to run or be refused", || {
            if let Some(status) = racer.try_wait().map_err(|e| e.to_string())? {
                return Ok(Err(status));
            }
            match std::fs::read_to_string(out) {
                Ok(gpu) => Ok(Ok(gpu.trim().to_string())),
                Err(e) => Err(e.to_string()),
            }
        });
        match verdict {
            Ok(gpu) => admitted.push(gpu),
            Err(status) => {
                let mut stderr = String::new();
                std::io::Read::read_to_string(racer.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                assert_eq!(status.code(), Some(125), "{stderr}");
                assert!(stderr.contains("no GPU satisfies the request"), "{stderr}");
                refused += 1;
            }
        }
    }
    admitted.sort();
    assert_eq!(admitted, ["0", "0", "1", "1"], "{refused} refused");
    let held = shares(&scenario, &locks);
    assert_eq!(
        held.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2],
        "{held:?}"
    );
    std::fs::write(&stop, "").unwrap();
    for mut racer in racers {
        racer.wait().unwrap();
    }
}

#[test]
fn a_killed_sharers_reservation_is_gone_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = two_idle(&tmp);
    let locks = fresh_lock_dir();
    let (out, stop) = (tmp.path().join("out"), tmp.path().join("stop"));
    let mut job = spawn_job(
        &scenario,
        &locks,
        &["--share", "--mem", "60GiB", "-d", "0"],
        &out,
        &stop,
    );
    assert_eq!(gpu_of(&out), "0");
    assert_eq!(shares(&scenario, &locks)[0].len(), 1);
    // While it lives, 60 GiB of GPU 0's 79.5 are reserved.
    let mut cmd = on(&scenario, &locks);
    cmd.args(["--share", "--mem", "30GiB", "-d", "0"]);
    run(cmd)
        .code(3)
        .stderr_has("reserved by 1 share < 30 GiB needed");
    job.kill().unwrap();
    job.wait().unwrap();
    assert_eq!(shares(&scenario, &locks)[0].len(), 0);
    let mut cmd = on(&scenario, &locks);
    cmd.args(["--share", "--mem", "70GiB", "-d", "0", "--", "true"]);
    run(cmd).ok();
}

#[test]
fn exclusive_and_shared_leases_never_mix_on_a_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = two_idle(&tmp);
    let locks = fresh_lock_dir();
    let stop = tmp.path().join("stop");
    let shared_out = tmp.path().join("shared");
    let exclusive_out = tmp.path().join("exclusive");
    let mut sharer = spawn_job(
        &scenario,
        &locks,
        &["--share", "--mem", "1GiB", "-d", "0"],
        &shared_out,
        &stop,
    );
    assert_eq!(gpu_of(&shared_out), "0");
    let mut holder = spawn_job(&scenario, &locks, &["-d", "1"], &exclusive_out, &stop);
    assert_eq!(gpu_of(&exclusive_out), "1");

    let attempt = |args: &[&str]| {
        let mut cmd = on(&scenario, &locks);
        cmd.args(args);
        run(cmd)
    };
    // An exclusive job is refused the shared GPU...
    attempt(&["-d", "0", "--", "true"])
        .code(125)
        .stderr_has("shared by 1 job (1 GiB reserved), which an exclusive lease cannot join");
    attempt(&["-d", "0"]).code(3).stderr_has("shared by 1 job");
    // ...and a share the exclusively leased one.
    let pid = holder.id();
    attempt(&["--share", "--mem", "1GiB", "-d", "1", "--", "true"])
        .code(125)
        .stderr_has(&format!("leased by root (pid {pid}"));
    attempt(&["--share", "--mem", "1GiB", "-d", "1"])
        .code(3)
        .stderr_has("leased by root");
    // A share asks for memory.
    attempt(&["--share", "--", "true"])
        .code(125)
        .stderr_has("--mem");
    // A second share joins the first.
    attempt(&["--share", "--mem", "1GiB", "-d", "0", "--", "true"]).ok();

    std::fs::write(&stop, "").unwrap();
    assert!(sharer.wait().unwrap().success());
    assert!(holder.wait().unwrap().success());
}

#[test]
fn another_user_can_neither_forge_nor_delete_a_share() {
    if !can_be_other("the second-user share test") {
        return;
    }
    // A place the other user can read: the binary, the snapshot, the locks.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = tmp.path().join("gpusel");
    std::fs::copy(bin(), &binary).unwrap();
    let snapshot = write_file(
        &tmp,
        "two.json",
        &snapshot_json("node2", (0..2).map(idle_gpu).collect()),
    );
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o644)).unwrap();
    let locks = tmp.path().join("locks");
    let p = provider(&snapshot);
    let l = locks.display().to_string();
    let other = |extra: &[&str]| {
        let mut args = vec!["-p", p.as_str(), "--lock-dir", l.as_str()];
        args.extend(extra);
        as_other(&binary, &args)
    };
    let (out, stop) = (tmp.path().join("out"), tmp.path().join("stop"));
    let mut sharer = gpusel_std_on(&snapshot)
        .env("GPUSEL_LOCK_DIR", &locks)
        .args(["--share", "--mem", "60GiB", "-d", "0", "--"])
        .args(["sh", "-c", &job_script(&out, &stop)])
        .spawn()
        .unwrap();
    assert_eq!(gpu_of(&out), "0");
    let root_pid = sharer.id();
    let record = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "share"))
        .expect("the share record");

    // Sees the share, and that 30 GiB more do not fit.
    let table = other(&["list"]).ok().to_string();
    assert!(
        table.contains(&format!("shared by root (pid {root_pid}, ")),
        "{table}"
    );
    other(&["--share", "--mem", "30GiB", "-d", "0"])
        .code(3)
        .stderr_has("reserved by 1 share");

    // Cannot delete, replace or rewrite the record.
    let sh = Path::new("/bin/sh");
    for attack in [
        format!("rm -f '{}'", record.display()),
        format!("mv '{}' '{}.x'", record.display(), record.display()),
        format!("echo '{{}}' > '{}'", record.display()),
    ] {
        let out = as_other(sh, &["-c", &attack]);
        assert_ne!(out.code, Some(0), "{attack} succeeded");
    }
    assert!(record.exists());

    // Forges: a record in root's name (a file of its own, so not root's),
    // and one in its own name claiming root's job and 1 byte.
    let name = record.file_name().unwrap().to_string_lossy().to_string();
    let key = name.split('.').next().unwrap();
    let forged_root = locks.join(format!("{key}.0.{root_pid}-99.share"));
    let claim = |uid: u32| {
        format!(
            r#"{{"holder":{{"pid":{root_pid},"uid":{uid},"user":"root","command":["forged"],"host":"h","since":"2020-01-01T00:00:00Z"}},"reserved":1}}"#
        )
    };
    let other_uid = common::users::other_user();
    let forged_own = locks.join(format!("{key}.{other_uid}.{root_pid}-98.share"));
    for (path, uid) in [(&forged_root, 0), (&forged_own, other_uid)] {
        // Kept open and locked by a process of the other user's, as a live
        // record would be.
        let script = format!(
            "echo '{}' > '{}' && exec flock '{}' sleep 60",
            claim(uid),
            path.display(),
            path.display()
        );
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid", OTHER, "--regid", OTHER, "--clear-groups", "--"])
            .args(["sh", "-c", &script])
            .current_dir("/");
        let mut forger = cmd.spawn().unwrap();
        eventually("the forged record to be locked", || {
            let locked = std::fs::read_to_string("/proc/locks")
                .map_err(|e| e.to_string())?
                .lines()
                .any(|l| l.contains(&format!(" {} ", forger.id())));
            locked.then_some(()).ok_or_else(|| "not yet".to_string())
        });
        let json = {
            let mut cmd = gpusel_std_on(&snapshot);
            cmd.env("GPUSEL_LOCK_DIR", &locks).args(["list", "--json"]);
            run(cmd).ok().to_string()
        };
        let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let shown = listed["gpus"][0]["lease"]["shares"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(shown.len(), 1, "{path:?}: {shown:?}");
        assert_eq!(shown[0]["holder"]["pid"], root_pid, "{shown:?}");
        assert!(!json.contains("forged"), "{json}");
        forger.kill().unwrap();
        forger.wait().unwrap();
    }
    std::fs::write(&stop, "").unwrap();
    assert!(sharer.wait().unwrap().success());
}
