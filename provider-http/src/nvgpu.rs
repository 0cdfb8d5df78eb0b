//! nvgpu's agent format, both ways. An nvgpu agent (rossumai/nvgpu, its
//! `nvgpu.webapp`) answers `GET /gpu_status` with
//!
//! ```text
//! {"hostname": "node02",
//!  "gpus": [{"type": "NVIDIA A100-SXM4-80GB", "is_available": false,
//!            "pids": "4242,4243", "users": "alice,?", "running_since": "2 days ago",
//!            "utilization": 98, "memory": {"total": 85899345920, "free": 18790481920, "used": 67108864000},
//!            "clock_mhz": 1410, "temperature": 67, "cmd": "train.py"}, ...]}
//! ```
//!
//! what its `list_gpus.device_status` returns per GPU: `pids` and `users`
//! joined by commas (`?` for a process it cannot see), `running_since` the
//! oldest process's start as words (or null), `utilization` percent (null
//! when the driver will not say), `clock_mhz` the SM clock, `temperature`
//! in °C, `cmd` the first process's script (or null). `memory` is pynvml's
//! memory struct (bytes), which nvgpu itself cannot put into JSON; gpusel
//! writes its fields.
//!
//! [`status`] builds that answer from a snapshot (`gpusel serve`'s
//! `/gpu_status`, so that an nvgpu master shows gpusel nodes); [`snapshot`]
//! reads it into a snapshot (a gpusel master's `kind = "nvgpu"` agents).

use std::time::SystemTime;

use gpusel_core::{Gpu, GpuProcess, Occupancy, Snapshot};
use serde::{Deserialize, Serialize};

use crate::error::HttpError;
use crate::limits::{MAX_GPUS, MAX_NAME_BYTES, MAX_PROCESS_TEXT_BYTES, MAX_PROCESSES};

/// The path of an nvgpu agent's status.
pub const PATH: &str = "/gpu_status";
/// The provider name of snapshots read from nvgpu agents.
pub const PROVIDER: &str = "nvgpu";

/// An nvgpu agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The agent's host name.
    pub hostname: String,
    /// Its GPUs, in NVML index order.
    pub gpus: Vec<NvGpu>,
}

/// One GPU as nvgpu reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NvGpu {
    /// The product name.
    #[serde(rename = "type")]
    pub kind: String,
    /// No process on it (nvgpu's rule); gpusel writes its own rule here:
    /// the GPU is [`Occupancy::Free`].
    pub is_available: bool,
    /// Process ids, comma-separated.
    pub pids: String,
    /// Their users, comma-separated, `?` where unknown.
    pub users: String,
    /// When the oldest process started, as words (`2 days ago`).
    pub running_since: Option<String>,
    /// GPU utilization, percent.
    pub utilization: Option<u64>,
    /// Memory, bytes.
    #[serde(default)]
    pub memory: Option<Memory>,
    /// SM clock, MHz.
    pub clock_mhz: Option<u64>,
    /// Temperature, °C.
    pub temperature: Option<i64>,
    /// The first process's command, roughly.
    pub cmd: Option<String>,
}

/// pynvml's memory struct, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Total.
    pub total: u64,
    /// Free.
    pub free: u64,
    /// Used.
    pub used: u64,
}

/// nvgpu's answer for `snapshot`, with "since" counted up to `now`.
pub fn status(snapshot: &Snapshot, now: SystemTime, idle: &gpusel_core::IdleRules) -> Status {
    Status {
        hostname: snapshot.host.clone(),
        gpus: snapshot.gpus.iter().map(|g| gpu(g, now, idle)).collect(),
    }
}

fn gpu(g: &Gpu, now: SystemTime, idle: &gpusel_core::IdleRules) -> NvGpu {
    let procs: Vec<&GpuProcess> = g.all_processes().collect();
    let join = |f: &dyn Fn(&GpuProcess) -> String| {
        procs.iter().map(|p| f(p)).collect::<Vec<_>>().join(",")
    };
    let memory = match (g.memory_total, g.memory_used) {
        (Some(total), Some(used)) => Some(Memory {
            total,
            used,
            free: g.memory_free.unwrap_or(total.saturating_sub(used)),
        }),
        _ => None,
    };
    NvGpu {
        kind: g.name.clone(),
        is_available: g.occupancy_with(idle) == Occupancy::Free,
        pids: join(&|p| p.pid.to_string()),
        users: join(&|p| match (&p.user, p.visible) {
            (_, Some(false)) | (None, _) => "?".into(),
            (Some(u), _) => u.clone(),
        }),
        running_since: g.first_start().map(|t| gpusel_core::timefmt::ago(t, now)),
        utilization: g.utilization_gpu.map(u64::from),
        memory,
        clock_mhz: g.sm_clock.map(u64::from),
        temperature: g.temperature.map(i64::from),
        cmd: procs.iter().find_map(|p| p.name.clone()),
    }
}

/// The snapshot in an nvgpu agent's `body`; `url` names it in errors and
/// `host` (the URL's) is the snapshot's host. Within [`crate::limits`];
/// nothing here may panic, whatever arrives.
pub fn snapshot(body: &[u8], url: &str, host: &str) -> Result<Snapshot, HttpError> {
    let bad = |message: String| HttpError::NotNvgpu {
        url: url.to_string(),
        message,
    };
    let status: Status = serde_json::from_slice(body).map_err(|e| {
        bad(match body.iter().find(|b| !b.is_ascii_whitespace()) {
            None => "the answer is empty".into(),
            Some(b'<') => format!("it sent HTML or XML, not JSON: {e}"),
            Some(b'{') => format!("JSON, but not nvgpu's: {e}"),
            Some(_) => format!("not JSON: {e}"),
        })
    })?;
    let over = |what: String| HttpError::OverLimit {
        url: url.to_string(),
        what,
    };
    if status.gpus.len() > MAX_GPUS {
        return Err(over(format!(
            "reports {} GPUs, more than the {MAX_GPUS} a node may have",
            status.gpus.len()
        )));
    }
    let mut snapshot = Snapshot::new(host, PROVIDER);
    let now = snapshot.time;
    for (index, g) in status.gpus.into_iter().enumerate() {
        let long = [
            ("GPU name", g.kind.len(), MAX_NAME_BYTES),
            ("process list", g.pids.len(), MAX_PROCESS_TEXT_BYTES),
            ("user list", g.users.len(), MAX_PROCESS_TEXT_BYTES),
            (
                "command",
                g.cmd.as_ref().map_or(0, String::len),
                MAX_PROCESS_TEXT_BYTES,
            ),
        ];
        if let Some((what, len, max)) = long.into_iter().find(|(_, len, max)| len > max) {
            return Err(over(format!(
                "reports a {what} of {len} bytes, more than the {max} it may have"
            )));
        }
        let index = index as u32;
        let mut gpu = Gpu::new(index, format!("NVGPU-{host}-{index}"), g.kind);
        gpu.utilization_gpu = g.utilization.map(|u| u.min(100) as u8);
        gpu.sm_clock = g.clock_mhz.map(|c| c.min(u64::from(u32::MAX)) as u32);
        gpu.temperature = g
            .temperature
            .map(|t| t.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
        if let Some(m) = g.memory {
            gpu.memory_total = Some(m.total);
            gpu.memory_used = Some(m.used);
            gpu.memory_free = Some(m.free);
        }
        let pids: Vec<&str> = g.pids.split(',').filter(|p| !p.trim().is_empty()).collect();
        if pids.len() > MAX_PROCESSES {
            return Err(over(format!(
                "reports a device with {} processes, more than the {MAX_PROCESSES} a device may have",
                pids.len()
            )));
        }
        let mut users = g.users.split(',');
        let mut processes = Vec::with_capacity(pids.len());
        for (i, pid) in pids.into_iter().enumerate() {
            let pid = pid.trim().parse::<u32>().map_err(|_| {
                bad(format!(
                    "GPU {index} lists pid {:?}, not a number",
                    gpusel_core::sanitize::clean(pid)
                ))
            })?;
            let mut p = GpuProcess::new(pid);
            match users.next().map(str::trim) {
                Some("?") | None | Some("") => p.visible = Some(false),
                Some(u) => {
                    p.user = Some(u.to_string());
                    p.visible = Some(true);
                }
            }
            if i == 0 {
                p.name = g.cmd.clone();
                p.start_time = g.running_since.as_deref().and_then(|w| started(w, now));
            }
            processes.push(p);
        }
        gpu.processes = Some(processes);
        snapshot.gpus.push(gpu);
    }
    snapshot.validate().map_err(|error| HttpError::Invalid {
        url: url.to_string(),
        error,
    })?;
    Ok(snapshot)
}

/// When a process started that `words` (arrow's `humanize`: `just now`,
/// `an hour ago`, `2 days ago`) says it did, before `now`; `None` for what
/// it is not.
fn started(words: &str, now: SystemTime) -> Option<SystemTime> {
    let words = words.trim();
    if words == "just now" || words == "instantly" || words == "seconds ago" {
        return Some(now);
    }
    let (n, unit) = words.strip_suffix(" ago")?.split_once(' ')?;
    let n: u64 = match n {
        "a" | "an" => 1,
        n => n.parse().ok()?,
    };
    let unit: u64 = match unit.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        "month" => 2_592_000,
        "year" => 31_536_000,
        _ => return None,
    };
    now.checked_sub(std::time::Duration::from_secs(n.checked_mul(unit)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const URL: &str = "http://node02:1080/gpu_status";

    const ANSWER: &str = r#"{"hostname": "node02", "gpus": [
        {"type": "GeForce GTX 1080 Ti", "is_available": true, "pids": "", "users": "",
         "running_since": null, "utilization": 0, "clock_mhz": 139, "temperature": 31, "cmd": null},
        {"type": "GeForce GTX 1080 Ti", "is_available": false, "pids": "4242,4243", "users": "alice,?",
         "running_since": "2 days ago", "utilization": 97, "clock_mhz": 1860, "temperature": 80,
         "cmd": "train.py", "memory": {"total": 11000000000, "free": 1000000000, "used": 10000000000}}]}"#;

    #[test]
    fn an_nvgpu_answer_becomes_a_snapshot() {
        let s = snapshot(ANSWER.as_bytes(), URL, "node02").unwrap();
        assert_eq!(s.host, "node02");
        assert_eq!(s.provider, "nvgpu");
        assert_eq!(s.gpus.len(), 2);
        assert_eq!(s.gpus[0].occupancy(), Occupancy::Free);
        assert_eq!(s.gpus[0].sm_clock, Some(139));
        let busy = &s.gpus[1];
        assert_eq!(busy.name, "GeForce GTX 1080 Ti");
        assert_eq!(busy.memory_used, Some(10_000_000_000));
        let procs = busy.processes.as_ref().unwrap();
        assert_eq!(procs[0].pid, 4242);
        assert_eq!(procs[0].user.as_deref(), Some("alice"));
        assert_eq!(procs[0].name.as_deref(), Some("train.py"));
        assert_eq!(procs[1].visible, Some(false));
        assert_eq!(
            gpusel_core::timefmt::ago(busy.first_start().unwrap(), s.time),
            "2 days ago"
        );
        // A process nvgpu cannot see: gpusel's [!], as nvgpu's own.
        assert_eq!(busy.occupancy(), Occupancy::Unknown);
    }

    #[test]
    fn a_snapshot_goes_there_and_back() {
        let s = snapshot(ANSWER.as_bytes(), URL, "node02").unwrap();
        let out = status(&s, SystemTime::now(), &Default::default());
        assert_eq!(out.gpus[1].pids, "4242,4243");
        assert_eq!(out.gpus[1].users, "alice,?");
        assert!(out.gpus[0].is_available);
        assert!(!out.gpus[1].is_available);
        let back = serde_json::to_vec(&out).unwrap();
        let again = status(
            &snapshot(&back, URL, "node02").unwrap(),
            SystemTime::now(),
            &Default::default(),
        );
        assert_eq!(again.gpus, out.gpus);
    }

    #[test]
    fn nvgpu_words_read_back_as_times() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 32);
        let ago = |w: &str| started(w, now).map(|t| gpusel_core::timefmt::ago(t, now));
        assert_eq!(ago("just now").as_deref(), Some("just now"));
        assert_eq!(ago("an hour ago").as_deref(), Some("1 hour ago"));
        assert_eq!(ago("14 hours ago").as_deref(), Some("14 hours ago"));
        assert_eq!(ago("a week ago").as_deref(), Some("7 days ago"));
        assert_eq!(ago("in 2 days"), None);
        assert_eq!(ago("99999999999999 years ago"), None);
    }

    #[test]
    fn garbage_is_named() {
        let msg = |body: &str| snapshot(body.as_bytes(), URL, "n").unwrap_err().to_string();
        assert!(msg("").contains("the answer is empty"), "{}", msg(""));
        assert!(msg("<html>").contains("HTML or XML"));
        assert!(msg("{\"gpus\": 3}").contains("JSON, but not nvgpu's"));
        let bad_pid = ANSWER.replace("4242,4243", "4242,x");
        assert!(msg(&bad_pid).contains("pid \"x\", not a number"));
        let many = format!(
            "{{\"hostname\":\"n\",\"gpus\":[{}]}}",
            vec![r#"{"type":"g","is_available":true,"pids":"","users":"","running_since":null,"utilization":0,"clock_mhz":1,"temperature":1,"cmd":null}"#; MAX_GPUS + 1].join(",")
        );
        assert!(msg(&many).contains("1025 GPUs"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = snapshot(&body, URL, "n");
        }

        #[test]
        fn an_answer_cut_anywhere_is_an_error(cut in 0usize..700) {
            let text = ANSWER.trim_end();
            let cut = cut.min(text.len() - 1);
            prop_assert!(snapshot(&text.as_bytes()[..cut], URL, "n").is_err());
        }
    }
}
