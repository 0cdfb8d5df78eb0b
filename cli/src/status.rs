//! `gpusel status`: the state of the GPUs this process may use, for scripts
//! (gpuselect's `gpustatus`).

use gpusel_core::{Gpu, Snapshot, Visible};

use crate::sanitize::clean;

/// Keeps the devices `visible` lets CUDA see: a GPU when it is listed, a MIG
/// device when it or its parent is, and a MIG parent while any of its
/// devices is.
pub fn keep_visible(snapshot: &mut Snapshot, visible: &Visible) {
    snapshot.gpus.retain_mut(|gpu| {
        let listed = visible.contains(&gpu.uuid, None);
        if gpu.mig_devices.is_empty() {
            return listed;
        }
        let parent = gpu.uuid.clone();
        gpu.mig_devices
            .retain(|m| visible.contains(&m.uuid, Some(&parent)));
        !gpu.mig_devices.is_empty()
    });
}

/// Column titles of the text form; NAME is last so that it may hold spaces.
const TITLES: [&str; 9] = [
    "DEVICE",
    "UTIL",
    "MEM_UTIL",
    "PROCESSES",
    "PSTATE",
    "POWER_MW",
    "TEMP_C",
    "UUID",
    "NAME",
];

/// One line per device: raw numbers (percent, count, milliwatts, degrees
/// Celsius), `-` for what the driver does not report, aligned in columns
/// that `awk` or `read` split at blanks; the name, which may hold blanks,
/// comes last.
pub fn render(snapshot: &Snapshot) -> String {
    let mut rows: Vec<Vec<String>> = vec![TITLES.iter().map(|t| t.to_string()).collect()];
    for gpu in &snapshot.gpus {
        rows.push(gpu_row(gpu));
        for mig in &gpu.mig_devices {
            rows.push(vec![
                format!("{}:{}", gpu.index, mig.index),
                "-".into(),
                "-".into(),
                count(mig.processes.as_deref()),
                "-".into(),
                "-".into(),
                "-".into(),
                clean(&mig.uuid),
                format!(
                    "{} MIG {}",
                    clean(&gpu.name),
                    mig.profile.as_deref().map_or("?".into(), clean)
                ),
            ]);
        }
    }
    crate::out::columns(&rows)
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Compute clients, as gpuselect counts them and `--max-processes` does: a
/// graphics-only client (the X server) is not one.
fn count(list: Option<&[gpusel_core::GpuProcess]>) -> String {
    or_dash(list.map(|l| l.iter().filter(|p| p.is_compute()).count()))
}

fn gpu_row(gpu: &Gpu) -> Vec<String> {
    vec![
        gpu.index.to_string(),
        or_dash(gpu.utilization_gpu),
        or_dash(gpu.utilization_memory),
        if gpu.mig_enabled() {
            "-".into()
        } else {
            count(gpu.processes.as_deref())
        },
        or_dash(gpu.performance_state),
        or_dash(gpu.power_draw),
        or_dash(gpu.temperature),
        clean(&gpu.uuid),
        clean(&gpu.name),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new("box", "test");
        for i in 0..3 {
            let mut g = Gpu::new(i, format!("GPU-{i}"), "NVIDIA A100");
            g.utilization_gpu = Some(10 * i as u8);
            g.processes = Some(vec![]);
            s.gpus.push(g);
        }
        s
    }

    #[test]
    fn only_the_visible_gpus_unless_all() {
        let mut s = snapshot();
        let visible = Visible::parse(Some("2,0"), &s.gpus);
        keep_visible(&mut s, &visible);
        let idx: Vec<u32> = s.gpus.iter().map(|g| g.index).collect();
        assert_eq!(idx, [0, 2]);
        let mut s = snapshot();
        keep_visible(&mut s, &Visible::all());
        assert_eq!(s.gpus.len(), 3);
    }

    #[test]
    fn text_is_one_aligned_line_per_device() {
        let text = render(&snapshot());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("DEVICE  UTIL  MEM_UTIL"), "{text}");
        let fields: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "2", "20", "-", "0", "-", "-", "-", "GPU-2", "NVIDIA", "A100"
            ]
        );
    }
}
