//! The site's per-user limits (`[limits]` in the config): what one user
//! holds at once, counted from the live records in the lock directory.

use std::collections::HashSet;

use crate::config::Limits;
use crate::lease::{ExitedWait, LockDir, Look};
use crate::request::Request;

/// A request that would take its user past a site limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct OverLimit {
    /// Which limit (`limits.gpus_per_user`, `limits.share_memory_per_user`).
    pub limit: &'static str,
    /// What the user already holds (devices, or bytes).
    pub held: u64,
    /// What the request asks for on top.
    pub asked: u64,
    /// What the limit allows.
    pub allowed: u64,
}

impl OverLimit {
    /// Whether waiting can help: the request alone fits the limit.
    pub fn may_fit(&self) -> bool {
        self.asked <= self.allowed
    }

    fn describe(&self) -> String {
        let amount = |n: u64| match self.limit {
            "limits.share_memory_per_user" => crate::format_bytes(n),
            _ => format!("{n} GPU{}", if n == 1 { "" } else { "s" }),
        };
        format!(
            "the site allows {} per user ({}); you hold {} and ask for {} more",
            amount(self.allowed),
            self.limit,
            amount(self.held),
            amount(self.asked)
        )
    }
}

/// What one user holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// Devices leased or shared.
    pub devices: u64,
    /// Bytes reserved in shares.
    pub share_bytes: u64,
    /// Whether some of it is a job's that has exited: its guardian is
    /// letting it go (see [`EXITED_HOLDER_WAIT`](crate::lease::EXITED_HOLDER_WAIT)).
    pub letting_go: bool,
}

impl LockDir {
    /// What `uid` holds, from the names in `look`.
    pub(crate) fn held_by(&self, uid: u32, look: &Look) -> Held {
        let mut devices = HashSet::new();
        let mut held = Held::default();
        for (key, reserved, letting_go) in self.live_records_of(uid, look) {
            devices.insert(key);
            held.share_bytes = held.share_bytes.saturating_add(reserved.unwrap_or(0));
            held.letting_go |= letting_go;
        }
        held.devices = devices.len() as u64;
        held
    }
}

/// Refuses `request` when it would take `uid` past `limits`, as `look`
/// shows what `uid` holds. What a job that has exited still holds is waited
/// out first (up to [`EXITED_HOLDER_WAIT`](crate::lease::EXITED_HOLDER_WAIT), as a lease is, with a fresh look
/// each time), so that `gpusel -- A; gpusel -- B` does not count A's lease,
/// which its guardian lets go an instant after A ends, against B.
pub(crate) fn check(
    limits: &Limits,
    dir: &LockDir,
    look: &Look,
    uid: u32,
    request: &Request,
) -> Result<(), OverLimit> {
    if limits.gpus_per_user.is_none() && limits.share_memory_per_user.is_none() {
        return Ok(());
    }
    let mut wait = ExitedWait::new();
    let mut fresh: Option<Look> = None;
    loop {
        let held = dir.held_by(uid, fresh.as_ref().unwrap_or(look));
        let verdict = over(limits, held, request);
        if verdict.is_ok() || !held.letting_go || wait.over() {
            return verdict;
        }
        wait.pause(|| {
            tracing::debug!(
                "a job of this user's that has exited still holds a lease; waiting for it to be let go"
            );
        });
        fresh = Some(dir.look());
    }
}

/// Whether `request` on top of `held` is past `limits`.
fn over(limits: &Limits, held: Held, request: &Request) -> Result<(), OverLimit> {
    let count = request.count.min().get() as u64;
    if let Some(cap) = &limits.gpus_per_user {
        let allowed = cap.value as u64;
        if held.devices.saturating_add(count) > allowed {
            return Err(OverLimit {
                limit: "limits.gpus_per_user",
                held: held.devices,
                asked: count,
                allowed,
            });
        }
    }
    if let (Some(cap), true, Some(mem)) = (
        &limits.share_memory_per_user,
        request.share,
        request.min_free_memory,
    ) {
        let asked = mem.saturating_mul(count);
        if held.share_bytes.saturating_add(asked) > cap.value {
            return Err(OverLimit {
                limit: "limits.share_memory_per_user",
                held: held.share_bytes,
                asked,
                allowed: cap.value,
            });
        }
    }
    Ok(())
}
