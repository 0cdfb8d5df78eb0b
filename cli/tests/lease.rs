//! Leases with real processes: concurrent jobs never share a GPU, a killed
//! holder frees its GPU at once, another user sees (and cannot take, delete
//! or forge) a lease, and unsafe lock directories are refused.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::users::{OTHER, as_other, is_root, other_user};
use common::*;

/// A 4-GPU snapshot, all idle, in `dir`.
fn four_idle(dir: &tempfile::TempDir) -> PathBuf {
    write_file(
        dir,
        "4-idle.json",
        &snapshot_json("node4", (0..4).map(idle_gpu).collect()),
    )
}

/// `gpusel -p file:SNAPSHOT` sharing the lock directory `locks`.
fn on(snapshot: &Path, locks: &Path) -> std::process::Command {
    let mut cmd = gpusel_std_on(snapshot);
    cmd.env("GPUSEL_LOCK_DIR", locks);
    cmd
}

fn run(mut cmd: impl std::borrow::BorrowMut<std::process::Command>) -> Out {
    cmd.borrow_mut()
        .output()
        .expect("gpusel can be started")
        .into()
}

/// `gpusel list --json`: the holder of GPU `index`, if leased.
fn holder_of(snapshot: &Path, locks: &Path, index: usize) -> Option<serde_json::Value> {
    let out = run(on(snapshot, locks).args(["list", "--json"]));
    let json: serde_json::Value = serde_json::from_str(out.ok()).expect("JSON");
    json["gpus"][index].get("lease").cloned()
}

/// Starts `gpusel -d INDEX -- sleep 60` and waits until `list` shows the lease.
fn hold(snapshot: &Path, locks: &Path, index: usize) -> Child {
    let mut child = on(snapshot, locks)
        .args(["-d", &index.to_string(), "--", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the holder");
    // Bounded so a broken lease fails the test instead of hanging it.
    for _ in 0..500 {
        if holder_of(snapshot, locks, index).is_some() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the holder exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("GPU {index} never showed as leased");
}

#[test]
fn thirty_two_waiting_jobs_on_four_gpus_never_share_one() {
    const JOBS: usize = 32;
    const JOB_SECONDS: f64 = 0.3;
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let records = tmp.path().join("records");
    std::fs::create_dir(&records).unwrap();
    // Each job writes `GPU START_NS END_NS` into a file of its own.
    let job = format!(
        r#"s=$(date +%s%N); sleep {JOB_SECONDS}; e=$(date +%s%N); echo "$CUDA_VISIBLE_DEVICES $s $e" > "$0/$$""#
    );
    let start = Instant::now();
    let children: Vec<_> = (0..JOBS)
        .map(|_| {
            let child = on(&snapshot, &locks)
                .args(["--wait", "--interval", "100ms", "--", "sh", "-c", &job])
                .arg(&records)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn gpusel");
            std::thread::spawn(move || child.wait_with_output().expect("wait for gpusel"))
        })
        .collect();
    for child in children {
        let out: Out = child.join().expect("waiter thread").into();
        out.code(0);
    }
    let wall = start.elapsed().as_secs_f64();

    let mut by_gpu: BTreeMap<String, Vec<(u128, u128)>> = BTreeMap::new();
    for entry in std::fs::read_dir(&records).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let parts: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "record {text:?}");
        let (s, e) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        by_gpu.entry(parts[0].to_string()).or_default().push((s, e));
    }
    let total: usize = by_gpu.values().map(Vec::len).sum();
    assert_eq!(total, JOBS, "every job ran once: {by_gpu:?}");
    assert!(
        by_gpu
            .keys()
            .all(|k| ["0", "1", "2", "3"].contains(&k.as_str())),
        "each job got exactly one GPU of the four: {by_gpu:?}"
    );
    for (gpu, runs) in &mut by_gpu {
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "two jobs on GPU {gpu} at once: {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    let ideal = (JOBS / 4) as f64 * JOB_SECONDS;
    // Reported, not asserted: timing depends on the machine.
    eprintln!(
        "stress: {JOBS} jobs of {JOB_SECONDS}s on 4 GPUs took {wall:.2}s; ideal {ideal:.2}s; ratio {:.2}",
        wall / ideal
    );
}

#[test]
fn a_killed_holder_frees_its_gpu_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let mut holder = hold(&snapshot, &locks, 2);

    let lease = holder_of(&snapshot, &locks, 2).expect("leased");
    assert_eq!(lease["holder"]["pid"], holder.id(), "{lease}");
    assert_eq!(
        lease["holder"]["command"],
        serde_json::json!(["sleep", "60"])
    );
    let out = run(on(&snapshot, &locks).args(["-d", "2"]));
    out.code(3)
        .stderr_has("GPU 2")
        .stderr_has("leased by")
        .stderr_has("sleep 60");
    // Another GPU is still free for the next job.
    assert_eq!(run(on(&snapshot, &locks).args(["-d", "1"])).ok(), "1\n");

    holder.kill().expect("SIGKILL the holder");
    holder.wait().unwrap();
    // The job's guardian lets go an instant after the job is gone; a job
    // asking for the GPU meanwhile waits it out.
    assert_eq!(run(on(&snapshot, &locks).args(["-d", "2"])).ok(), "2\n");
    eventually("the lease to be gone with the job", || {
        match holder_of(&snapshot, &locks, 2) {
            None => Ok(()),
            Some(lease) => Err(format!("still leased: {lease}")),
        }
    });
}

#[test]
fn run_mode_skips_leased_gpus_and_the_job_holds_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let mut holders: Vec<Child> = (0..3).map(|i| hold(&snapshot, &locks, i)).collect();
    // The job sees GPU 3, the only free one, and lists itself as its holder.
    let script = r#"echo "$CUDA_VISIBLE_DEVICES"; "$0" -p "$1" list --json"#;
    let out = run(on(&snapshot, &locks)
        .args(["--", "sh", "-c", script])
        .arg(bin())
        .arg(provider(&snapshot)));
    let stdout = out.ok();
    let (first, json) = stdout.split_once('\n').expect("two parts");
    assert_eq!(first, "3");
    let json: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(
        json["gpus"][3]["lease"]["holder"]["command"][0], "sh",
        "{json}"
    );
    for h in &mut holders {
        h.kill().unwrap();
        h.wait().unwrap();
    }
}

#[test]
fn all_or_nothing_and_no_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let mut holder = hold(&snapshot, &locks, 0);
    let out = run(on(&snapshot, &locks).args(["-n", "4"]));
    out.code(3)
        .stderr_has("need 4 devices, 3 of 4 visible qualify");
    // Nothing was kept from the failed attempt.
    assert_eq!(run(on(&snapshot, &locks).args(["-n", "3"])).ok(), "1,2,3\n");
    // --no-lease ignores leases altogether.
    let out = run(on(&snapshot, &locks).args(["-n", "4", "--no-lease"]));
    assert_eq!(out.ok(), "0,1,2,3\n");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn all_and_ranges_lease_what_they_take_and_pass_over_the_leased() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let mut holder = hold(&snapshot, &locks, 2);
    // Every free one, the leased GPU 2 passed over.
    assert_eq!(
        run(on(&snapshot, &locks).args(["-n", "all"])).ok(),
        "0,1,3\n"
    );
    // A job given all of them holds all of them for its life.
    let mut all = on(&snapshot, &locks)
        .args(["-n", "all", "--", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the -n all job");
    for _ in 0..500 {
        if [0, 1, 3]
            .iter()
            .all(|&i| holder_of(&snapshot, &locks, i).is_some())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in [0, 1, 3] {
        let lease = holder_of(&snapshot, &locks, i).expect("leased by the -n all job");
        assert_eq!(lease["holder"]["command"][0], "sleep", "GPU {i}: {lease}");
    }
    run(on(&snapshot, &locks).args(["-n", "1.."]))
        .code(3)
        .stderr_has("need at least 1 device, 0 of 4 visible qualify");
    all.kill().unwrap();
    all.wait().unwrap();
    let two = run(on(&snapshot, &locks).args(["-n", "..2"]));
    let two: Vec<&str> = two.ok().trim().split(',').collect();
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(!two.contains(&"2"), "GPU 2 is still leased: {two:?}");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn explain_names_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let mut holder = hold(&snapshot, &locks, 1);
    // worst-fit tries equal GPUs in index order, so GPU 1 is tried (and
    // passed over) whatever the seed; a random order might take 0, 2 and 3
    // first and never look at GPU 1.
    let out = run(on(&snapshot, &locks).args(["-n", "3", "--explain", "--strategy", "worst-fit"]));
    out.code(0);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("GPU 1 "))
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(line.contains("leased by "), "{line}");
    assert!(
        line.contains(&format!("(pid {}, since", holder.id())),
        "{line}"
    );
    assert!(line.contains("sleep 60"), "{line}");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn a_symlinked_lock_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = run(on(Path::new(LAB), &link));
    out.code(5).no_stdout().one_error_naming("symbolic link");
    let out = run(on(Path::new(LAB), &link).args(["--", "true"]));
    out.code(125).one_error_naming("symbolic link");
    // The flag says the same as the variable, and --no-lease gets past it.
    let out = common::out(gpusel_on(LAB).arg("--lock-dir").arg(&link));
    out.code(5).one_error_naming(&link.display().to_string());
    assert!(
        common::out(
            gpusel_on(LAB)
                .arg("--lock-dir")
                .arg(&link)
                .arg("--no-lease")
        )
        .code
            == Some(0)
    );
}

#[test]
fn a_world_writable_lock_dir_without_sticky_bit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(on(Path::new(LAB), &dir));
    out.code(5).no_stdout().one_error_naming("chmod +t");
    // `list` still shows the GPUs, and says why leases are missing.
    let out = run(on(Path::new(LAB), &dir).arg("list"));
    out.code(0)
        .stderr_has("leases not shown")
        .stderr_has("chmod +t");
}

#[test]
fn a_missing_lock_dir_is_created_sticky_and_world_writable() {
    let locks = fresh_lock_dir();
    assert_eq!(
        run(on(Path::new(LAB), &locks).args(["-d", "3"])).ok(),
        "3\n"
    );
    let mode = std::fs::metadata(&locks).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o1777, "{mode:o}");
}

// ---- a second user ----------------------------------------------------------------

#[test]
fn another_user_sees_the_lease_and_can_neither_take_delete_nor_forge_it() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root: it creates a second user"
        );
        eprintln!(
            "NOTICE: not root; the second-user lease test did not run (run the tests as root to include it)"
        );
        return;
    }
    let uid = other_user();
    // A place the other user can read: the binary, the snapshot, the locks.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = tmp.path().join("gpusel");
    std::fs::copy(bin(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let snapshot = four_idle(&tmp);
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o644)).unwrap();
    let locks = tmp.path().join("locks");
    let p = provider(&snapshot);
    let l = locks.display().to_string();
    let common = ["-p", p.as_str(), "--lock-dir", l.as_str()];
    let args = |extra: &[&str]| -> Vec<String> {
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let other = |extra: &[&str]| {
        let a = args(extra);
        as_other(&binary, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let mut holder = hold(&snapshot, &locks, 0);
    let pid = holder.id();

    // Sees who holds GPU 0.
    let out = other(&["list"]);
    let stdout = out.ok();
    let row0 = stdout.lines().nth(2).unwrap_or_default();
    assert!(row0.starts_with("0    [L]"), "{stdout}");
    let lease = stdout.lines().nth(3).unwrap_or_default();
    assert!(
        lease.contains(&format!("leased by root (pid {pid}, ")) && lease.ends_with(": sleep 60"),
        "{stdout}"
    );
    // Cannot take it.
    other(&["-d", "0"]).code(3).stderr_has("leased by root");
    let out = other(&["-d", "0", "--", "true"]);
    out.code(125).stderr_has("leased by root");

    // Cannot delete, replace or write the lock file or the holder record.
    let lock = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "lock")
                && p.display().to_string().contains("gpu-00000000")
        })
        .expect("GPU 0's lock file");
    let record = PathBuf::from(lock.display().to_string().replace(".lock", ".0.holder"));
    assert!(record.exists(), "{record:?}");
    let sh = Path::new("/bin/sh");
    for attack in [
        format!("rm -f '{}'", lock.display()),
        format!("mv '{}' '{}.x'", lock.display(), lock.display()),
        format!("echo x >> '{}'", lock.display()),
        format!("rm -f '{}'", record.display()),
        format!("echo '{{}}' > '{}'", record.display()),
    ] {
        let out = as_other(sh, &["-c", &attack]);
        assert_ne!(out.code, Some(0), "{attack} succeeded: {out:#?}");
    }
    assert!(lock.exists() && record.exists());

    // A record in its own name claiming to be root is not believed, and
    // neither is one naming itself that it does not hold locked.
    let forged = PathBuf::from(
        lock.display()
            .to_string()
            .replace(".lock", &format!(".{uid}.holder")),
    );
    let fake = |who_uid: u32| {
        format!(
            r#"{{"pid":1,"uid":{who_uid},"user":"mallory","command":["forged"],"host":"x","since":"2030-01-01T00:00:00Z"}}"#
        )
    };
    for claimed in [0, uid] {
        let out = as_other(
            sh,
            &[
                "-c",
                &format!("printf '%s' '{}' > '{}'", fake(claimed), forged.display()),
            ],
        );
        out.code(0);
        let stdout = run(on(&snapshot, &locks).arg("list")).ok().to_string();
        assert!(
            stdout.contains(&format!("leased by root (pid {pid}, ")),
            "{stdout}"
        );
        assert!(
            !stdout.contains("mallory") && !stdout.contains("forged"),
            "{stdout}"
        );
    }

    // Once the holder is gone, the other user leases the GPU through the
    // lock file root created, and root sees it.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let script = format!(
        r#"echo "$CUDA_VISIBLE_DEVICES"; "{}" {} list"#,
        binary.display(),
        common.join(" ")
    );
    let out = other(&["-d", "0", "--", "sh", "-c", &script]);
    let stdout = out.ok();
    assert!(stdout.starts_with("0\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("leased by {OTHER} (pid ")),
        "{stdout}"
    );

    // A lock directory the other user created is theirs; root refuses it,
    // since its owner could delete root's lock files.
    // In a sticky, world-writable parent, as /run/lock is.
    let parent = tmp.path().join("run-lock");
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = parent.join("gpusel");
    let t = theirs.display().to_string();
    let made = as_other(&binary, &["-p", &p, "--lock-dir", &t, "-d", "1"]);
    assert_eq!(made.ok(), "1\n");
    let out = run(on(&snapshot, &theirs).args(["-d", "1"]));
    out.code(5).one_error_naming(&format!("chown root {t}"));
}

#[test]
fn a_lock_file_another_user_blocks_shows_unusable_not_free() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test as root: it creates a second user"
        );
        eprintln!("NOTICE: not root; the blocked-lock-file test did not run");
        return;
    }
    other_user();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let snapshot = four_idle(&tmp);
    let locks = tmp.path().join("locks");
    // The lock directory exists (as gpusel makes it) before the attacker
    // comes: run once to create it.
    run(on(&snapshot, &locks).args(["list"])).code(0);
    let lock_of = |index: u32| {
        locks.join(format!(
            "gpusel-gpu-{index:08x}-0000-4000-8000-{index:012x}.lock"
        ))
    };
    // GPU 1: a lock file of mode 000 (pre-created by someone else): no
    // other user can open it to lock it.
    let blocked = lock_of(1);
    std::fs::write(&blocked, "").unwrap();
    std::fs::set_permissions(&blocked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // GPU 2: the attacker holds a shared lock on its lock file, for good.
    let shared = lock_of(2);
    let mut holder = std::process::Command::new("setpriv")
        .args(["--reuid", OTHER, "--regid", OTHER, "--clear-groups", "--"])
        .args([
            "sh",
            "-c",
            ": > \"$1\" && exec flock --shared \"$1\" sleep 60",
            "sh",
        ])
        .arg(&shared)
        .spawn()
        .expect("run setpriv");
    // Wait until the attacker's shared lock is there (the kernel's table
    // says so). Its own, by pid: the table is the whole machine's, and the
    // tests running beside this one take shared locks too (a guardian, a
    // `list` probing a lease), so any READ lock would not do.
    let attacker = holder.id().to_string();
    eventually("the attacker's shared lock", || {
        let table = std::fs::read_to_string("/proc/locks").map_err(|e| e.to_string())?;
        let held = table.lines().any(|l| {
            let mut fields = l.split_whitespace().skip_while(|f| *f != "READ");
            fields.next().is_some() && fields.next() == Some(attacker.as_str())
        });
        match held && shared.exists() {
            true => Ok(()),
            false => Err(format!("/proc/locks:\n{table}")),
        }
    });
    assert!(
        blocked.exists() && shared.exists(),
        "{:?}",
        std::fs::read_dir(&locks).unwrap().collect::<Vec<_>>()
    );
    let table = run(on(&snapshot, &locks).args(["list"]));
    let table = table.ok();
    let row = |i: u32| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{i} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(2).contains("[!]"), "{table}");
    assert!(row(0).contains("[ ]") && row(3).contains("[ ]"), "{table}");
    assert!(
        table.contains(&format!("({OTHER}) holds a shared lock")),
        "{table}"
    );
    // The mode-000 file, as another user sees it.
    let binary = tmp.path().join("gpusel");
    std::fs::copy(bin(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&snapshot, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = provider(&snapshot);
    let l = locks.display().to_string();
    let seen = as_other(&binary, &["-p", &p, "--lock-dir", &l, "list"]);
    let seen = seen.ok();
    let row1 = seen
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_default();
    assert!(row1.contains("[!]"), "{seen}");
    assert!(seen.contains("is not readable by you"), "{seen}");
    as_other(
        &binary,
        &["-p", &p, "--lock-dir", &l, "-d", "1", "--", "true"],
    )
    .code(125)
    .stderr_has("is not readable by you");
    // And a job asking for them is refused, with the reason.
    run(on(&snapshot, &locks).args(["-d", "2", "--", "true"]))
        .code(125)
        .stderr_has("holds a shared lock");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn deleting_a_held_lock_file_does_not_let_a_second_job_on() {
    // The user who created a lock file may delete it (the sticky bit lets a
    // file's owner). The holder's own live record still marks the lease.
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = four_idle(&tmp);
    let locks = fresh_lock_dir();
    let mut holder = hold(&snapshot, &locks, 0);
    let lock = locks.join("gpusel-gpu-00000000-0000-4000-8000-000000000000.lock");
    std::fs::remove_file(&lock).expect("the lock file's creator can delete it");
    // A second job is refused GPU 0, and nothing else changed.
    let refused = run(on(&snapshot, &locks).args(["-d", "0", "--", "true"]));
    refused.code(125).stderr_has("leased by");
    assert!(
        holder_of(&snapshot, &locks, 0).is_some(),
        "list still shows GPU 0 leased"
    );
    assert_eq!(
        run(on(&snapshot, &locks).args(["-n", "3"])).ok(),
        "1,2,3\n",
        "the other GPUs are untouched"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Once the holder is gone, GPU 0 is free again (a new lock file).
    assert_eq!(run(on(&snapshot, &locks).args(["-d", "0"])).ok(), "0\n");
}

/// A one-GPU snapshot, idle, in `dir`.
fn one_idle(dir: &tempfile::TempDir) -> PathBuf {
    write_file(
        dir,
        "1-idle.json",
        &snapshot_json("node1", vec![idle_gpu(0)]),
    )
}

/// A temporary directory with [`one_idle`] in it, a lock directory, and
/// the files of a [`CLOSING_JOB`].
fn one_gpu() -> (tempfile::TempDir, PathBuf, PathBuf, JobFiles) {
    let tmp = tempfile::tempdir().unwrap();
    let snapshot = one_idle(&tmp);
    let files = JobFiles::in_dir(&tmp);
    (tmp, snapshot, fresh_lock_dir(), files)
}

/// The one guardian holding files of `locks`, once it has settled: gpusel
/// does not wait for it (the job may run before the guardian has named
/// itself, moved to `/` and closed what it does not keep), and it sleeps
/// (state `S`) only in its wait for the job's end, after all that.
#[track_caller]
fn the_guardian(locks: &Path) -> Proc {
    eventually("the guardian to settle", || {
        let mut guardians = guardians_of(locks);
        match guardians.as_slice() {
            [one] if one.state == 'S' => Ok(guardians.remove(0)),
            _ => Err(format!("guardians: {guardians:?}")),
        }
    })
}

/// A job that closes every descriptor it inherited (the leases' too), as
/// launchers and daemons do, then writes its pid to `ARGV[1]`, counts a
/// SIGINT by creating `ARGV[2]` and runs on until `ARGV[3]` exists (two
/// minutes at most).
const CLOSING_JOB: &str = r#"
import os, signal, sys, time
ready, interrupted, stop = sys.argv[1:4]
signal.signal(signal.SIGINT, lambda *_: open(interrupted, "w").close())
os.closerange(3, 65536)
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
deadline = time.monotonic() + 120
while not os.path.exists(stop) and time.monotonic() < deadline:
    time.sleep(0.02)
"#;

/// The files [`CLOSING_JOB`] is told about, in `dir`.
struct JobFiles {
    ready: PathBuf,
    interrupted: PathBuf,
    stop: PathBuf,
}

impl JobFiles {
    fn in_dir(dir: &tempfile::TempDir) -> Self {
        JobFiles {
            ready: dir.path().join("ready"),
            interrupted: dir.path().join("interrupted"),
            stop: dir.path().join("stop"),
        }
    }
}

/// Starts `gpusel -d 0 -- python3 -c CLOSING_JOB` in a process group of its
/// own (as a shell's job is) and waits until the job has closed its
/// descriptors and said its pid, which it returns.
fn start_closing_job(snapshot: &Path, locks: &Path, files: &JobFiles) -> (Child, u32) {
    start_closing_job_with(snapshot, locks, files, &[])
}

/// [`start_closing_job`] with `args` before `-d 0` (`--share --mem SIZE`).
fn start_closing_job_with(
    snapshot: &Path,
    locks: &Path,
    files: &JobFiles,
    args: &[&str],
) -> (Child, u32) {
    use std::os::unix::process::CommandExt;
    let mut child = on(snapshot, locks)
        .args(args)
        .args(["-d", "0", "--", "python3", "-c", CLOSING_JOB])
        .args([&files.ready, &files.interrupted, &files.stop])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gpusel");
    let pid = eventually("the job to close its descriptors", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the job exited early: {status}");
        }
        std::fs::read_to_string(&files.ready)
            .map_err(|e| e.to_string())?
            .parse::<u32>()
            .map_err(|e| e.to_string())
    });
    (child, pid)
}

/// The live processes named `gpusel-guard` holding a file of `locks` open.
fn guardians_of(locks: &Path) -> Vec<Proc> {
    processes()
        .into_iter()
        .filter(|p| p.comm == "gpusel-guard")
        .filter(|p| {
            std::fs::read_dir(format!("/proc/{}/fd", p.pid))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| target.starts_with(locks))
        })
        .collect()
}

/// Waits until GPU 0 shows no lease, no guardian is left holding a file of
/// `locks`, and a job gets GPU 0 again.
#[track_caller]
fn freed(snapshot: &Path, locks: &Path) {
    eventually("GPU 0 to be free again", || {
        match holder_of(snapshot, locks, 0) {
            None => Ok(()),
            Some(lease) => Err(format!("still leased: {lease}")),
        }
    });
    eventually("the guardian to be gone", || match guardians_of(locks) {
        left if left.is_empty() => Ok(()),
        left => Err(format!("still running: {left:?}")),
    });
    assert_eq!(run(on(snapshot, locks).args(["-d", "0"])).ok(), "0\n");
}

#[test]
fn a_job_that_closes_its_inherited_descriptors_keeps_its_lease() {
    let (_tmp, snapshot, locks, files) = one_gpu();
    let (mut child, pid) = start_closing_job(&snapshot, &locks, &files);
    assert_eq!(pid, child.id(), "the job has gpusel's pid");
    // Ctrl-C at a terminal: SIGINT to the job's whole process group. The
    // job counts it and runs on; the guardian is in no group of the job's.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    eventually("the job to see the SIGINT", || {
        files
            .interrupted
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });

    // A second job is refused the GPU, and list names the job.
    run(on(&snapshot, &locks).args(["-d", "0", "--", "true"]))
        .code(125)
        .stderr_has("leased by")
        .stderr_has(&format!("pid {pid}"));
    let lease = holder_of(&snapshot, &locks, 0).expect("GPU 0 leased");
    assert_eq!(lease["holder"]["pid"], pid, "{lease}");
    assert_eq!(lease["holder"]["command"][1], "-c", "{lease}");

    // One guardian: no child of the job's, in no session of the job's, in
    // `/`, on /dev/null, holding the lease's files and a pidfd, nothing else.
    let guardian = the_guardian(&locks);
    assert_ne!(guardian.ppid, pid, "{guardian:?}");
    let sid = |p: u32| nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(p as i32))).unwrap();
    assert_ne!(sid(guardian.pid), sid(pid), "a session of its own");
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", guardian.pid)).unwrap(),
        Path::new("/")
    );
    let mut fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{}/fd", guardian.pid))
        .unwrap()
        .map(|fd| {
            let fd = fd.unwrap();
            let target = std::fs::read_link(fd.path()).unwrap();
            let target = match target.strip_prefix(&locks) {
                Ok(name) => format!("LOCKS/{}", name.display()),
                Err(_) => target.display().to_string(),
            };
            (fd.file_name().to_str().unwrap().parse().unwrap(), target)
        })
        .collect();
    fds.sort();
    let targets: Vec<&str> = fds.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(&targets[..3], ["/dev/null"; 3], "{fds:?}");
    let mut rest: Vec<&str> = targets[3..].to_vec();
    rest.sort();
    let device = "LOCKS/gpusel-gpu-00000000-0000-4000-8000-000000000000";
    let record = format!("{device}.{}.holder", nix::unistd::geteuid());
    let lock = format!("{device}.lock");
    assert_eq!(
        rest,
        [record.as_str(), lock.as_str(), "anon_inode:[pidfd]"],
        "{fds:?}"
    );

    std::fs::write(&files.stop, "").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    freed(&snapshot, &locks);
}

#[test]
fn a_guarded_job_keeps_gpusels_pid_exit_status_and_signals() {
    use std::os::unix::process::ExitStatusExt;
    let (_tmp, snapshot, locks, files) = one_gpu();
    let child = on(&snapshot, &locks)
        .args(["-d", "0", "--", "python3", "-c"])
        .arg("import os, sys; os.closerange(3, 65536); print(os.getpid()); sys.exit(7)")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let gpusel_pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(stdout.trim(), gpusel_pid.to_string(), "{out:?}");
    freed(&snapshot, &locks);

    // SIGTERM to gpusel's pid reaches the job, which dies of it.
    let (mut child, pid) = start_closing_job(&snapshot, &locks, &files);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGTERM as i32),
        "{status}"
    );
    freed(&snapshot, &locks);
}

#[test]
fn sigkill_of_a_job_that_closed_its_descriptors_frees_its_gpu() {
    let (_tmp, snapshot, locks, files) = one_gpu();
    let (mut child, _) = start_closing_job(&snapshot, &locks, &files);
    the_guardian(&locks);
    child.kill().unwrap();
    child.wait().unwrap();
    freed(&snapshot, &locks);
}

/// Continues a stopped process when dropped, so that a failing test leaves
/// no guardian stopped for good.
struct Continued(nix::unistd::Pid);

impl Drop for Continued {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// Runs a [`CLOSING_JOB`] (`gpusel ARGS -d 0`) to its end with its guardian stopped
/// first: its lease outlives it until the returned guard (dropped, or its
/// pid sent SIGCONT) lets the guardian run again.
fn exited_with_its_guardian_stopped(
    snapshot: &Path,
    locks: &Path,
    files: &JobFiles,
    args: &[&str],
) -> Continued {
    let (mut child, _) = start_closing_job_with(snapshot, locks, files, args);
    let guardian = nix::unistd::Pid::from_raw(the_guardian(locks).pid as i32);
    nix::sys::signal::kill(guardian, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let continued = Continued(guardian);
    std::fs::write(&files.stop, "").unwrap();
    assert!(child.wait().unwrap().success());
    continued
}

/// Runs `gpusel -vv -d 0 -- true` (`cmd`) after a job whose guardian is
/// stopped (`guardian`), waits until it says `waiting` (it waits for the
/// guardian), lets the guardian go, and asserts that it runs; returns what
/// it said.
#[track_caller]
fn runs_once_let_go(mut cmd: std::process::Command, guardian: Continued, waiting: &str) -> String {
    let mut next = cmd
        .args(["-vv", "-d", "0", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Collected::new(next.stderr.take().unwrap());
    stderr.wait_for("the next job to wait for the exited job's lease", |text| {
        text.contains(waiting)
    });
    drop(guardian);
    let status = next.wait().unwrap();
    let said = stderr.so_far();
    assert!(status.success(), "{status}: {said}");
    said
}

#[test]
fn a_job_waits_out_the_guardian_of_a_job_that_just_exited() {
    // The guardian stopped: the lease outlives its job until it runs again.
    let (_tmp, snapshot, locks, files) = one_gpu();
    let guardian = exited_with_its_guardian_stopped(&snapshot, &locks, &files, &[]);
    runs_once_let_go(
        on(&snapshot, &locks),
        guardian,
        "the lease's holder has exited; waiting for it to be let go",
    );
    freed(&snapshot, &locks);
}

#[test]
fn a_per_user_limit_waits_out_the_guardian_of_a_job_that_just_exited() {
    // `gpusel -- A; gpusel -- B` under `limits.gpus_per_user = 1`: A's lease
    // outlives A by as long as its guardian takes to let it go, and B once
    // counted it against the limit (refused at once, "you hold 1 GPU"). The
    // guardian is stopped here to make that instant last.
    let (tmp, snapshot, locks, files) = one_gpu();
    let site = write_file(&tmp, "site.toml", "[limits]\ngpus_per_user = 1\n");
    let guardian = exited_with_its_guardian_stopped(&snapshot, &locks, &files, &[]);
    let mut cmd = on(&snapshot, &locks);
    cmd.env("GPUSEL_SYSTEM_CONFIG", &site);
    let said = runs_once_let_go(
        cmd,
        guardian,
        "still holds a lease; waiting for it to be let go",
    );
    assert!(!said.contains("the site allows"), "{said}");
    freed(&snapshot, &locks);
}

#[test]
fn a_share_waits_out_the_guardian_of_a_sharer_that_just_exited() {
    // `gpusel --share --mem 60GiB -- A; gpusel --share --mem 60GiB -- B` on
    // one 80 GiB GPU: A's share outlives A by as long as its guardian takes
    // to let it go, and B once counted A's 60 GiB (refused at once, "80 GiB
    // free, 60 GiB of it reserved by 1 share < 60 GiB needed").
    let (_tmp, snapshot, locks, files) = one_gpu();
    let share = ["--share", "--mem", "60GiB"];
    let guardian = exited_with_its_guardian_stopped(&snapshot, &locks, &files, &share);
    let mut cmd = on(&snapshot, &locks);
    cmd.args(share);
    runs_once_let_go(
        cmd,
        guardian,
        "its reservation is in the way; waiting for it to be let go",
    );
    freed(&snapshot, &locks);
}

#[test]
fn back_to_back_jobs_on_one_gpu_each_get_it() {
    // The guardian lets go an instant after its job exits; the next job
    // waits that instant out instead of taking the GPU for taken.
    let (_tmp, snapshot, locks, _) = one_gpu();
    for _ in 0..20 {
        run(on(&snapshot, &locks).args(["-d", "0", "--", "true"])).code(0);
    }
}
