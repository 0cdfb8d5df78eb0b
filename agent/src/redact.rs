//! What the agent leaves out of what it serves.

use gpusel_core::{Holder, LeaseStatus, Snapshot};

/// Drops process command lines and cuts lease holders' and waiters'
/// commands to the program's name: arguments can hold passwords and tokens,
/// and the agent may be read by people who could not read `/proc` on the
/// machine.
pub fn hide_command_lines(snapshot: &mut Snapshot) {
    for gpu in &mut snapshot.gpus {
        hide_processes(gpu.processes.as_mut());
        hide_lease(gpu.lease.as_mut());
        for mig in &mut gpu.mig_devices {
            hide_processes(mig.processes.as_mut());
            hide_lease(mig.lease.as_mut());
        }
    }
    for waiter in &mut snapshot.waiters {
        hide_holder(&mut waiter.holder);
    }
}

fn hide_processes(list: Option<&mut Vec<gpusel_core::GpuProcess>>) {
    for p in list.into_iter().flatten() {
        p.command_line = None;
    }
}

fn hide_lease(lease: Option<&mut LeaseStatus>) {
    lease
        .into_iter()
        .flat_map(LeaseStatus::holders_mut)
        .for_each(hide_holder);
}

/// Cuts `holder`'s command to the program's name.
fn hide_holder(holder: &mut Holder) {
    let program = holder
        .command
        .first()
        .map(|c| c.rsplit('/').next().unwrap_or(c).to_string());
    holder.command = program.into_iter().collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpusel_core::{Gpu, GpuProcess};

    #[test]
    fn arguments_are_gone() {
        let mut s = Snapshot::new("h", "test");
        let mut gpu = Gpu::new(0, "GPU-0", "A100");
        let mut p = GpuProcess::new(1);
        p.name = Some("python".into());
        p.command_line = Some(vec!["python".into(), "--password=hunter2".into()]);
        gpu.processes = Some(vec![p]);
        let mut holder = Holder::current(vec!["/usr/bin/python3".into(), "--token=x".into()]);
        holder.user = "alice".into();
        gpu.lease = Some(LeaseStatus {
            holder: Some(holder),
            blocked: None,
            shares: Vec::new(),
        });
        s.gpus.push(gpu);
        s.waiters.push(
            serde_json::from_value(serde_json::json!({
                "holder": Holder::current(vec!["/opt/bin/train".into(), "--secret=s3".into()]),
                "wanted": {"count": "2"},
            }))
            .unwrap(),
        );
        hide_command_lines(&mut s);
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            !json.contains("hunter2") && !json.contains("--token") && !json.contains("--secret"),
            "{json}"
        );
        assert_eq!(s.waiters[0].holder.command, ["train"]);
        assert!(json.contains(r#""command":["python3"]"#), "{json}");
        assert!(json.contains(r#""name":"python""#), "{json}");
    }
}
