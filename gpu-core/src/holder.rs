//! Who holds a lease: what `gpusel list` shows as "leased by".

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The process holding a device's lease, as it recorded itself.
///
/// A reader trusts a record only when the file it came from is owned by
/// [`uid`](Holder::uid) and its writer still holds it locked (see
/// [`LockDir`](crate::LockDir)), so one user cannot pass a lease off as
/// another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id of the holder (with `gpusel -- CMD`, the job's own pid).
    pub pid: u32,
    /// Numeric user id of the holder.
    pub uid: u32,
    /// User name of the holder (the uid as text when it has no name).
    pub user: String,
    /// The job's command line.
    pub command: Vec<String>,
    /// Host the holder runs on.
    pub host: String,
    /// When the lease was taken (RFC 3339 in JSON).
    #[serde(with = "crate::timefmt::rfc3339")]
    pub since: SystemTime,
}

/// The lease on one device, as `gpusel list --json` reports it: present only
/// when the device is leased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// Who holds it; `None` when the holder left no record that can be
    /// trusted (it is leased all the same).
    pub holder: Option<Holder>,
    /// Why no job can lease the device although nobody leases it: its lock
    /// file is unreadable, not a regular file, or held with a shared lock
    /// that outlives any probe (an attack, or a broken tool). Such a device
    /// is shown unusable, never free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The shares of a shared device (`--share --mem`), oldest first; empty
    /// for an exclusive lease. A device holds either one exclusive lease or
    /// shares, never both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
}

/// One share of a device: a job that reserved memory on it with
/// `--share --mem SIZE` (see [`LockDir`](crate::LockDir)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Who holds it, as the kernel's lock table confirms it.
    pub holder: Holder,
    /// Bytes it reserved.
    pub reserved: u64,
    /// Bytes its processes (the holder and its descendants) already use on
    /// the device, as the snapshot lists them; `None` when the provider
    /// lists no processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
}

impl Share {
    /// What it reserved and has not allocated yet: what a new share must
    /// leave room for besides the memory the driver reports in use.
    pub fn outstanding(&self) -> u64 {
        self.reserved.saturating_sub(self.used.unwrap_or(0))
    }
}

impl LeaseStatus {
    /// The outstanding reservations of the device's shares, in all.
    pub fn outstanding(&self) -> u64 {
        self.shares.iter().map(Share::outstanding).sum()
    }

    /// The exclusive holder and every share's holder, to edit in place
    /// (what a sanitizer or a redactor goes over).
    pub fn holders_mut(&mut self) -> impl Iterator<Item = &mut Holder> {
        self.holder
            .iter_mut()
            .chain(self.shares.iter_mut().map(|s| &mut s.holder))
    }
}

impl Holder {
    /// This process, about to run `command`, now.
    pub fn current(command: Vec<String>) -> Self {
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string());
        let host = crate::model::host_name();
        Holder {
            pid: std::process::id(),
            uid: uid.as_raw(),
            user,
            command,
            host,
            since: SystemTime::now(),
        }
    }
}

/// The holder in the record file `text` of a file owned by `uid`; `None`
/// when it is no record, or the record of another user.
pub fn parse_record(text: &[u8], uid: u32) -> Option<Holder> {
    let holder: Holder = serde_json::from_slice(text).ok()?;
    (holder.uid == uid).then_some(holder)
}

/// Control characters become `?`, so that another user's command line cannot
/// drive the reader's terminal.
fn defused(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {}, since {})",
            defused(&self.user, 32),
            self.pid,
            crate::timefmt::format(self.since)
        )?;
        if !self.command.is_empty() {
            write!(f, ": {}", defused(&self.command.join(" "), 60))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_defuses_and_shortens() {
        let h = Holder {
            pid: 7,
            uid: 1000,
            user: "al\x1bice".into(),
            command: vec!["python".into(), "x".repeat(100)],
            host: "h".into(),
            since: std::time::UNIX_EPOCH,
        };
        let text = h.to_string();
        assert!(
            text.starts_with("al?ice (pid 7, since 1970-01-01T00:00:00Z): python xxx"),
            "{text}"
        );
        assert!(text.ends_with('…') && !text.contains('\x1b'), "{text}");
    }
}
