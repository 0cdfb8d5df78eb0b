//! A second user, for the tests of what one user can do to another's
//! leases, shares and tickets: created on first use (the tests that need it
//! run as root, as CI does).

use std::path::Path;

use super::{NO_CONFIG, Out};

/// The second user's name.
pub const OTHER: &str = "gpusel-test-other";

/// Whether the tests run as root (needed to create and become [`OTHER`]).
pub fn is_root() -> bool {
    let id = std::process::Command::new("id")
        .arg("-u")
        .output()
        .expect("run id");
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// Creates [`OTHER`] if missing; returns its uid.
pub fn other_user() -> u32 {
    let exists = std::process::Command::new("id")
        .arg("-u")
        .arg(OTHER)
        .output()
        .unwrap();
    if !exists.status.success() {
        let made = std::process::Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                OTHER,
            ])
            .output()
            .expect("run useradd");
        // Another test process may have created it meanwhile.
        let again = std::process::Command::new("id")
            .arg("-u")
            .arg(OTHER)
            .output()
            .unwrap();
        assert!(again.status.success(), "useradd {OTHER} failed: {made:?}");
        return String::from_utf8_lossy(&again.stdout)
            .trim()
            .parse()
            .unwrap();
    }
    String::from_utf8_lossy(&exists.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// Runs `program args` as [`OTHER`], with every variable of
/// `tests/clean-env.txt` cleared and no config.
pub fn as_other(program: &Path, args: &[&str]) -> Out {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid", OTHER, "--regid", OTHER, "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .env("GPUSEL_SYSTEM_CONFIG", format!("{NO_CONFIG}/system.toml"))
        .env("XDG_CONFIG_HOME", NO_CONFIG)
        .current_dir("/");
    // None of the variables gpusel reads: the args say what to use.
    for name in super::clean_env() {
        cmd.env_remove(name);
    }
    // A program the test just copied (a gpusel the second user can reach)
    // is busy while a child another test thread forked in the meantime
    // still has the copy's descriptor, until that child execs: ETXTBSY,
    // gone a moment later. Anything else is the answer.
    super::eventually(&format!("{} to be free to run", program.display()), || {
        let out = cmd.output().expect("run setpriv");
        let busy = out.status.code() == Some(126)
            && String::from_utf8_lossy(&out.stderr).contains("Text file busy");
        match busy {
            false => Ok(out.into()),
            true => Err("it stays busy (ETXTBSY)".to_string()),
        }
    })
}

/// Whether a second-user test can run: as root, yes; otherwise it says on
/// stderr that `test` did not run (and fails in CI, which runs as root).
pub fn can_be_other(test: &str) -> bool {
    if is_root() {
        other_user();
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run {test} as root: it creates a second user"
    );
    eprintln!("NOTICE: not root; {test} did not run (run the tests as root to include it)");
    false
}
