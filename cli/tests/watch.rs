//! `gpusel list` and `gpusel list --watch` on a real terminal: tmux runs
//! them in a pane of their own, and the tests read the screen as a user
//! would see it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    /// A 120x40 session running a plain `sh` with a clean environment.
    fn start() -> Self {
        Self::sized(120, 40)
    }

    /// A `columns` x `rows` session running a plain `sh`.
    fn sized(columns: u16, rows: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let tmux = Tmux { socket, _dir: dir };
        let status = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "t"])
            .args(["-x", &columns.to_string(), "-y", &rows.to_string()])
            .args([
                "env",
                "-i",
                "PATH=/usr/bin:/bin",
                "TERM=tmux-256color",
                "PS1=$ ",
                "sh",
            ])
            .status()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        // Keys sent before the shell is ready would be echoed before its
        // prompt, and its output would not start a line.
        tmux.wait_for("the shell's prompt", |s| s.starts_with('$'));
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        cmd
    }

    fn send(&self, keys: &[&str]) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The visible screen of the pane, as text.
    fn screen(&self) -> String {
        self.capture(&[])
    }

    /// The visible screen, with `extra` flags for capture-pane (`-e`: with
    /// the colors as escape sequences).
    fn capture(&self, extra: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A pane variable (`#{alternate_on}`, `#{cursor_flag}`).
    fn pane(&self, format: &str) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "t", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until the screen satisfies `ok`, failing with the screen after
    /// a generous time.
    #[track_caller]
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        eventually(what, || {
            let screen = self.screen();
            match ok(&screen) {
                true => Ok(screen),
                false => Err(format!("the screen:\n{screen}")),
            }
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The shell command that runs `gpusel list --watch 200ms` on `snapshot`
/// with nothing of the test's environment, then prints its exit status.
fn watch_command(snapshot: &Path) -> String {
    list_command(snapshot, "--watch 200ms")
}

/// The shell command that runs `gpusel list FLAGS` on `snapshot`, then
/// prints its exit status.
fn list_command(snapshot: &Path, flags: &str) -> String {
    format!(
        "env GPUSEL_SYSTEM_CONFIG={NO_CONFIG}/system.toml XDG_CONFIG_HOME={NO_CONFIG} \
         GPUSEL_LOCK_DIR={} {} -p {} list {flags}; echo \"EXIT\"\"=$?\"",
        fresh_lock_dir().display(),
        bin().display(),
        provider(snapshot),
    )
}

fn lab_copy(dir: &tempfile::TempDir) -> PathBuf {
    write_file(dir, "lab.json", &std::fs::read_to_string(LAB).unwrap())
}

/// Rewrites GPU 0's utilization in the snapshot, in one rename.
fn set_util(path: &Path, util: u8) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["gpus"][0]["utilization_gpu"] = util.into();
    replace_file(path, &v.to_string());
}

/// Whether the shell has printed gpusel's exit status. The typed command
/// line never holds `EXIT=` (it is quoted in two halves), so a wrapped line
/// of it cannot pass for the status.
fn exit_printed(screen: &str) -> bool {
    screen.lines().any(|l| l.starts_with("EXIT="))
}

fn gpu0_row(screen: &str) -> String {
    screen
        .lines()
        .find(|l| l.starts_with("0 "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn watch_redraws_in_place_and_ctrl_c_leaves_the_terminal_clean() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = lab_copy(&dir);
    let tmux = Tmux::start();
    tmux.send(&["echo before-gpusel", "Enter"]);
    tmux.wait_for("the shell", |s| s.contains("before-gpusel\n"));
    // Every byte the pane's programs write, to check how frames are drawn.
    let record = dir.path().join("pane.out");
    let status = tmux
        .cmd()
        .args(["pipe-pane", "-o", "-t", "t"])
        .arg(format!("cat > '{}'", record.display()))
        .status()
        .unwrap();
    assert!(status.success());
    tmux.send(&[&watch_command(&snapshot), "Enter"]);

    // A whole frame: the terminal may show one half drawn.
    let screen = tmux.wait_for("the first frame", |s| {
        s.contains("lab-gpu01") && s.lines().any(|l| l.starts_with("7 "))
    });
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "on the alternate screen");
    assert_eq!(tmux.pane("#{cursor_flag}"), "0", "cursor hidden");
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with("Every 200ms: gpusel list"), "{screen}");
    assert!(lines[1].starts_with("lab-gpu01"), "{screen}");
    assert!(gpu0_row(&screen).contains(" 98% "), "{screen}");
    // One frame, drawn from the top: no second copy of the table scrolled in.
    assert_eq!(screen.matches("lab-gpu01").count(), 1, "{screen}");

    set_util(&snapshot, 7);
    let screen = tmux.wait_for("a frame with the new utilization", |s| {
        gpu0_row(s).contains("  7% ")
    });
    assert_eq!(screen.matches("lab-gpu01").count(), 1, "{screen}");
    assert_eq!(screen.matches("Every 200ms").count(), 1, "{screen}");

    tmux.send(&["C-c"]);
    let screen = tmux.wait_for("gpusel to exit", exit_printed);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0", "alternate screen left");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1", "cursor shown again");
    // The user's screen is as it was: the table went with the alternate
    // screen, the shell's earlier output is still there.
    assert!(!screen.contains("lab-gpu01"), "{screen}");
    assert!(screen.contains("before-gpusel"), "{screen}");

    // What was written: the alternate screen entered once, frames drawn from
    // the top-left corner without ever clearing the whole screen (which
    // flickers), and the cursor and the screen given back once.
    // `cat` writes the recording on its own time: wait until it holds the
    // shell's status line, written after everything gpusel wrote.
    let bytes = eventually("the whole recording", || {
        let bytes = String::from_utf8_lossy(&std::fs::read(&record).unwrap()).into_owned();
        match bytes.contains("EXIT=0") {
            true => Ok(bytes),
            false => Err(format!("the recording: {bytes:?}")),
        }
    });
    assert_eq!(bytes.matches("\x1b[?1049h").count(), 1, "{bytes:?}");
    assert_eq!(bytes.matches("\x1b[?1049l").count(), 1, "{bytes:?}");
    assert!(bytes.matches("\x1b[HEvery 200ms").count() >= 2, "{bytes:?}");
    assert!(!bytes.contains("\x1b[2J"), "{bytes:?}");
    let leave = bytes
        .find("\x1b[?25h\x1b[?1049l")
        .expect("cursor and screen restored");
    assert!(
        !bytes[leave..].contains("lab-gpu01"),
        "nothing drawn after leaving: {bytes:?}"
    );
}

/// A child process of `parent`, from the parent field of `/proc/*/stat`.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Fields after the command name, which is in parentheses.
            let ppid: u32 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
}

#[test]
fn sigterm_also_leaves_the_terminal_clean() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = lab_copy(&dir);
    let tmux = Tmux::start();
    tmux.send(&[&watch_command(&snapshot), "Enter"]);
    tmux.wait_for("the first frame", |s| s.contains("lab-gpu01"));
    // The pane's foreground process is gpusel (the shell waits for it).
    let pid = tmux.pane("#{pane_pid}");
    let child = child_of(pid.parse().unwrap()).expect("gpusel runs under the pane's shell");
    let status = Command::new("kill")
        .args(["-TERM", &child.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let screen = tmux.wait_for("gpusel to exit", exit_printed);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1");
}

#[test]
fn watch_into_a_pipe_prints_frames_without_escapes() {
    let mut child = gpusel_std_on(LAB)
        .args(["list", "--watch", "100ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let frames = Collected::new(child.stdout.take().unwrap());
    frames.wait_for("two frames", |s| s.matches("lab-gpu01").count() >= 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let text = String::from_utf8(frames.finish()).unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}\n{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn list_on_a_terminal_fits_its_width_in_color() {
    let tmux = Tmux::sized(64, 40);
    // Keys typed while `clear` runs are echoed and then cleared away, and the
    // table would start on the prompt's line: wait for the prompt after it.
    tmux.send(&["clear; echo CLEARED", "Enter"]);
    tmux.wait_for("the cleared screen", |s| s.starts_with("CLEARED\n$"));
    tmux.send(&[&list_command(Path::new(LAB), ""), "Enter"]);
    let screen = tmux.wait_for("the table", exit_printed);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    let table: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.starts_with("lab-gpu01"))
        .take_while(|l| !l.starts_with("EXIT="))
        .collect();
    assert_eq!(table.len(), 15, "{screen}");
    // The width came from the terminal (no COLUMNS here): columns gave way,
    // and no line wrapped.
    assert!(
        !table[1].contains("SM CLOCK") && !table[1].contains("MEM%"),
        "{screen}"
    );
    assert!(table[2].starts_with("0    [~]"), "{screen}");
    assert!(table.iter().all(|l| l.chars().count() <= 64), "{screen}");
    // And colored, as a terminal is.
    let colored = tmux.capture(&["-e"]);
    assert!(colored.contains("\x1b[32m[ ]"), "{colored:?}");
}

#[test]
fn watch_into_a_reader_that_goes_away_exits_quietly() {
    let mut sh = Command::new("sh");
    for name in clean_env() {
        sh.env_remove(name);
    }
    let out = sh
        .args(["-c", r#""$0" -p "$1" list --watch 50ms | head -1"#])
        .arg(bin())
        .arg(provider(LAB))
        .env("GPUSEL_LOCK_DIR", fresh_lock_dir())
        .env("GPUSEL_SYSTEM_CONFIG", format!("{NO_CONFIG}/system.toml"))
        .env("XDG_CONFIG_HOME", NO_CONFIG)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Every 50ms: gpusel list (Ctrl-C to quit)\n"
    );
}

#[test]
fn ctrl_z_gives_the_terminal_back_and_fg_takes_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = lab_copy(&dir);
    let tmux = Tmux::start();
    // sh without job control cannot stop a job; an interactive one can.
    tmux.send(&["exec sh -i", "Enter"]);
    tmux.send(&[&watch_command(&snapshot), "Enter"]);
    tmux.wait_for("the first frame", |s| s.contains("lab-gpu01"));
    assert_eq!(tmux.pane("#{alternate_on}"), "1");

    tmux.send(&["C-z"]);
    let screen = tmux.wait_for("the shell to say the job stopped", |s| {
        s.to_lowercase().contains("stopped")
    });
    assert_eq!(tmux.pane("#{alternate_on}"), "0", "{screen}");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1", "{screen}");
    assert!(!screen.contains("lab-gpu01"), "{screen}");

    tmux.send(&["fg", "Enter"]);
    tmux.wait_for("the table again", |s| s.contains("lab-gpu01"));
    assert_eq!(tmux.pane("#{alternate_on}"), "1");
    assert_eq!(tmux.pane("#{cursor_flag}"), "0");
    tmux.send(&["C-c"]);
    tmux.wait_for("gpusel to exit", |s| !s.contains("lab-gpu01"));
    assert_eq!(tmux.pane("#{cursor_flag}"), "1");
}

/// `gpusel -p smi list --watch` on a fake nvidia-smi that never answers,
/// within an hour (the provider's timeout), marked with `mark`.
fn watch_on_a_hung_smi(mark: &str) -> std::process::Command {
    let mut cmd = gpusel_std();
    cmd.env("PATH", smi::path_with_fake())
        .env("FAKE_SMI_SCENARIO", "hang")
        .env("GPUSEL_SMI_TIMEOUT", "1h")
        .env("GPUSEL_TEST_MARK", mark)
        .args(["-p", "smi", "list", "--watch", "1s"]);
    cmd
}

/// A child killed when dropped: a run that fails its test is not left
/// waiting out its hour.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctrl_c_while_nvidia_smi_hangs_ends_watch_at_once() {
    let mark = test_mark();
    let mut killed = Killed(
        watch_on_a_hung_smi(&mark)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut killed.0;
    let frames = Collected::new(child.stdout.take().unwrap());
    marked_hang(&mark);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    // Well before the provider's hour is up.
    let status = eventually("gpusel to exit", || {
        child
            .try_wait()
            .unwrap()
            .ok_or_else(|| "still running".to_string())
    });
    let text = String::from_utf8(frames.finish()).unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}\n{text}");
    // The hung nvidia-smi went with it.
    marked_gone(&mark);
}

#[test]
fn ctrl_c_while_nvidia_smi_hangs_gives_the_terminal_back() {
    let mark = test_mark();
    let tmux = Tmux::start();
    let cmd = watch_on_a_hung_smi(&mark);
    let env: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?)))
        .collect();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| format!("'{}'", a.to_str().unwrap()))
        .collect();
    tmux.send(&[
        &format!(
            "env {} '{}' {}; echo EX\"IT=$?\"",
            env.join(" "),
            bin().display(),
            args.join(" ")
        ),
        "Enter",
    ]);
    marked_hang(&mark);
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "on the alternate screen");
    tmux.send(&["C-c"]);
    let screen = tmux.wait_for("gpusel to exit", exit_printed);
    assert!(screen.lines().any(|l| l == "EXIT=0"), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0", "alternate screen left");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1", "cursor shown again");
    marked_gone(&mark);
}
