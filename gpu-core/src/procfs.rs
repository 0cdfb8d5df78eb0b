//! What `/proc` says about a process the driver reports: user, start time,
//! name and command line. Every provider that lists GPU processes fills them
//! the same way, through [`ProcReader`].
//!
//! A pid the driver reports may be invisible here (another PID namespace, a
//! container, `hidepid=`): its fields stay `None`, which `list` shows as
//! "not visible" rather than hiding the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::model::GpuProcess;

/// Reads `/proc` (or another procfs root, for tests), caching user names and
/// the boot time across the processes of one snapshot.
#[derive(Debug)]
pub struct ProcReader {
    root: PathBuf,
    users: HashMap<u32, Option<String>>,
    boot_time: Option<Option<SystemTime>>,
    ticks_per_second: Option<u64>,
}

impl Default for ProcReader {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcReader {
    /// A reader over the procfs mounted at `root` (normally `/proc`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcReader {
            root: root.into(),
            users: HashMap::new(),
            boot_time: None,
            ticks_per_second: clock_ticks(),
        }
    }

    /// Fills the fields of `process` that are still `None` from
    /// `/proc/<pid>`: name (`comm`), command line, user and start time, and
    /// sets [`GpuProcess::visible`]. A process that cannot be seen keeps them
    /// `None`.
    pub fn enrich(&mut self, process: &mut GpuProcess) {
        let dir = self.root.join(process.pid.to_string());
        // `status` is readable for every process that /proc shows at all,
        // even under hidepid=1; without it nothing below can be known.
        process.visible = Some(dir.join("status").is_file());
        if process.name.is_none() {
            process.name = read_comm(&dir);
        }
        if process.command_line.is_none() {
            process.command_line = read_cmdline(&dir);
        }
        if process.user.is_none() {
            process.user = self.owner(&dir);
        }
        if process.start_time.is_none() {
            process.start_time = self.start_time(&dir);
        }
    }

    fn owner(&mut self, dir: &Path) -> Option<String> {
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let uid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        self.users
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    fn start_time(&mut self, dir: &Path) -> Option<SystemTime> {
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let ticks = start_ticks(&stat)?;
        let boot = *self
            .boot_time
            .get_or_insert_with(|| read_boot_time(&self.root));
        let hz = self.ticks_per_second?;
        let since_boot = Duration::from_secs(ticks / hz)
            + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
        boot?.checked_add(since_boot)
    }
}

/// `comm` without its newline; `None` when unreadable or empty.
fn read_comm(dir: &Path) -> Option<String> {
    let raw = std::fs::read(dir.join("comm")).ok()?;
    let name = String::from_utf8_lossy(&raw)
        .trim_end_matches('\n')
        .to_string();
    (!name.is_empty()).then_some(name)
}

/// `cmdline` split at NULs. Kernel threads and zombies have an empty one.
fn read_cmdline(dir: &Path) -> Option<Vec<String>> {
    let raw = std::fs::read(dir.join("cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then_some(args)
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (the state) on. The
/// command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the last `)`. Allocates nothing:
/// the lease guardian reads them between `fork` and its end.
pub(crate) fn stat_fields(line: &[u8]) -> Option<impl Iterator<Item = &[u8]>> {
    let close = line.iter().rposition(|&b| b == b')')?;
    Some(
        line[close + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty()),
    )
}

/// Field `n` (3 or more) of a `/proc/<pid>/stat` line, as a number.
fn stat_number<T: std::str::FromStr>(stat: &str, n: usize) -> Option<T> {
    let field = stat_fields(stat.as_bytes())?.nth(n.checked_sub(3)?)?;
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Field 3 of `/proc/<pid>/stat`: the state (`R`, `S`, `Z` ...).
pub(crate) fn stat_state(stat: &[u8]) -> Option<u8> {
    stat_fields(stat)?.next()?.first().copied()
}

/// Field 4 of `/proc/<pid>/stat`: the parent's pid.
pub(crate) fn parent_pid(stat: &str) -> Option<u32> {
    stat_number(stat, 4)
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
pub(crate) fn start_ticks(stat: &str) -> Option<u64> {
    stat_number(stat, 22)
}

fn read_boot_time(root: &Path) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(root.join("stat")).ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

fn clock_ticks() -> Option<u64> {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => u64::try_from(hz).ok(),
        _ => None,
    }
}

/// The account name of `uid` (through NSS, so LDAP users resolve too), or
/// the number itself when the account has no name.
fn user_name(uid: u32) -> Option<String> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => Some(user.name),
        _ => Some(uid.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_survives_odd_command_names() {
        let stat = "4242 (evil) name (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks(stat), Some(987654));
        assert_eq!(start_ticks("garbage"), None);
        assert_eq!(start_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn own_process_is_enriched() {
        let mut me = GpuProcess::new(std::process::id());
        let mut reader = ProcReader::default();
        reader.enrich(&mut me);
        assert!(me.name.is_some());
        assert!(me.command_line.as_ref().is_some_and(|c| !c.is_empty()));
        let user = me.user.expect("own user is visible");
        let expected = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| nix::unistd::getuid().to_string());
        assert_eq!(user, expected);
        assert_eq!(me.visible, Some(true));
        let started = me.start_time.expect("own start time is visible");
        let age = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(3600), "started {age:?} ago");
    }

    #[test]
    fn invisible_pid_keeps_fields_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = GpuProcess::new(99_999_999);
        ProcReader::new(dir.path()).enrich(&mut p);
        let mut expected = GpuProcess::new(99_999_999);
        expected.visible = Some(false);
        assert_eq!(p, expected);
    }

    #[test]
    fn driver_name_is_kept() {
        let mut me = GpuProcess::new(std::process::id());
        me.name = Some("from-driver".into());
        ProcReader::default().enrich(&mut me);
        assert_eq!(me.name.as_deref(), Some("from-driver"));
    }
}
