//! Text from outside (the driver, `/proc`, a remote agent) made safe to
//! show: on a terminal, in a web page, in a Prometheus label.
//!
//! Anyone on a machine chooses their process's name and arguments, and an
//! agent chooses everything it sends, so they must not be able to move the
//! cursor, clear the screen, retitle the window, write the clipboard (OSC
//! 52) or reorder text (bidi overrides) wherever they are shown. Every such
//! character becomes a visible escape instead.

use std::fmt::Write;

use crate::{AgentStatus, Gpu, GpuProcess, Holder, LeaseStatus, Snapshot};

/// `text` with every control character, and every invisible formatting
/// character that can reorder or hide text, written as a visible escape:
/// `\e` for ESC, `\n`, `\r`, `\t`, `\xNN` for other C0/C1 controls and DEL,
/// `\u{NNNN}` for the rest. Invalid UTF-8 has already become U+FFFD where the
/// text was read (`from_utf8_lossy`), which is shown as is. Cleaning clean
/// text changes nothing.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\x1b' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` [`clean`] line by line, its line breaks kept: for messages that
/// carry text from outside (a remote agent's answer, a parser's quote of
/// it) but are meant to span lines.
pub fn clean_lines(text: &str) -> String {
    text.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// Whether `text` is already what [`clean`] makes of it.
pub fn is_clean(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
}

/// Unicode format characters (category Cf and the like) that change how
/// the text around them is shown: bidi embeddings, overrides and isolates,
/// zero-width joiners and spaces, the BOM, interlinear annotations.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

fn clean_in_place(text: &mut String) {
    if !is_clean(text) {
        *text = clean(text);
    }
}

fn clean_opt(text: &mut Option<String>) {
    if let Some(t) = text {
        clean_in_place(t);
    }
}

/// Every text of `snapshot` [`clean`]ed in place: its host, provider and
/// driver versions, and each device's UUID, name, bus id, CPU affinity,
/// link peers, MIG profile,
/// processes (name, user, command line) and lease holder, and each waiter
/// (who waits, with what command). For a snapshot from elsewhere (a remote
/// agent), before it is shown anywhere.
pub fn clean_snapshot(snapshot: &mut Snapshot) {
    clean_in_place(&mut snapshot.host);
    clean_in_place(&mut snapshot.provider);
    clean_opt(&mut snapshot.driver_version);
    clean_opt(&mut snapshot.cuda_driver_version);
    for gpu in &mut snapshot.gpus {
        clean_gpu(gpu);
    }
    for waiter in &mut snapshot.waiters {
        clean_holder(&mut waiter.holder);
        // What it asks for is its own text too (its ticket's, written by
        // whoever it runs as): names, devices, the count as written.
        let wanted = &mut waiter.wanted;
        clean_in_place(&mut wanted.count);
        clean_opt(&mut wanted.name);
        clean_opt(&mut wanted.visible);
        for device in wanted.devices.iter_mut().chain(&mut wanted.exclude) {
            clean_in_place(device);
        }
    }
}

fn clean_gpu(gpu: &mut Gpu) {
    clean_in_place(&mut gpu.uuid);
    clean_in_place(&mut gpu.name);
    clean_opt(&mut gpu.pci_bus_id);
    clean_opt(&mut gpu.cpu_affinity);
    for link in &mut gpu.links {
        clean_in_place(&mut link.peer);
    }
    clean_processes(gpu.processes.as_deref_mut());
    clean_lease(gpu.lease.as_mut());
    for mig in &mut gpu.mig_devices {
        clean_in_place(&mut mig.uuid);
        clean_opt(&mut mig.profile);
        clean_processes(mig.processes.as_deref_mut());
        clean_lease(mig.lease.as_mut());
    }
}

fn clean_processes(processes: Option<&mut [GpuProcess]>) {
    for p in processes.into_iter().flatten() {
        clean_opt(&mut p.name);
        clean_opt(&mut p.user);
        for arg in p.command_line.iter_mut().flatten() {
            clean_in_place(arg);
        }
    }
}

fn clean_lease(lease: Option<&mut LeaseStatus>) {
    let Some(lease) = lease else {
        return;
    };
    // Why a GPU is unusable may quote another user's command line.
    clean_opt(&mut lease.blocked);
    for holder in lease.holders_mut() {
        clean_holder(holder);
    }
}

fn clean_holder(holder: &mut Holder) {
    clean_in_place(&mut holder.user);
    clean_in_place(&mut holder.host);
    for arg in &mut holder.command {
        clean_in_place(arg);
    }
}

/// Every text of an agent's status [`clean`]ed in place (its version and
/// errors).
pub fn clean_agent_status(status: &mut AgentStatus) {
    clean_in_place(&mut status.version);
    clean_opt(&mut status.last_error);
    clean_opt(&mut status.lease_error);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_become_visible() {
        assert_eq!(clean("\x1b[2Jevil\n"), "\\e[2Jevil\\n");
        assert_eq!(clean("py\x07thon\x7f"), "py\\x07thon\\x7f");
        assert_eq!(clean("a\u{9b}31m"), "a\\x9b31m");
        assert_eq!(clean("txt\u{202e}fdp.exe"), "txt\\u{202e}fdp.exe");
        assert_eq!(clean("naïve 日本 \u{fffd}"), "naïve 日本 \u{fffd}");
    }

    #[test]
    fn every_text_of_a_snapshot_is_cleaned() {
        let evil = "a\x1b]52;c;ZXZpbA==\x07\r\u{202e}b";
        let mut s = Snapshot::new(evil, evil);
        s.driver_version = Some(evil.into());
        let mut gpu = Gpu::new(0, evil, evil);
        gpu.cpu_affinity = Some(evil.into());
        gpu.links.push(crate::GpuLink::new(evil));
        gpu.processes = Some(vec![GpuProcess {
            name: Some(evil.into()),
            user: Some(evil.into()),
            command_line: Some(vec![evil.into()]),
            ..GpuProcess::new(1)
        }]);
        gpu.lease = Some(crate::LeaseStatus {
            holder: None,
            blocked: Some(evil.into()),
            shares: Vec::new(),
        });
        s.gpus.push(gpu);
        let mut waiter = Holder::current(vec![evil.into()]);
        waiter.user = evil.into();
        s.waiters.push(crate::Waiter {
            holder: waiter,
            wanted: serde_json::from_value(serde_json::json!({
                "count": evil, "name": evil, "devices": [evil], "exclude": [evil], "visible": evil,
            }))
            .unwrap(),
        });
        clean_snapshot(&mut s);
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            !json.contains("\\u001b") && !json.contains('\u{202e}'),
            "{json}"
        );
        assert!(
            !json.contains("\\u0007") && !json.contains("\\r\\u"),
            "{json}"
        );
        assert_eq!(s.gpus[0].name, clean(evil));
        assert_eq!(
            s.gpus[0].cpu_affinity.as_deref(),
            Some(clean(evil).as_str())
        );
        assert_eq!(s.gpus[0].links[0].peer, clean(evil));
        let blocked = s.gpus[0].lease.as_ref().and_then(|l| l.blocked.clone());
        assert_eq!(blocked, Some(clean(evil)));
        assert_eq!(s.waiters[0].holder.command, [clean(evil)]);
        assert_eq!(s.waiters[0].holder.user, clean(evil));
        let wanted = &s.waiters[0].wanted;
        assert_eq!(wanted.name.as_deref(), Some(clean(evil).as_str()));
        assert_eq!(
            (&wanted.devices[..], &wanted.exclude[..]),
            (&[clean(evil)][..], &[clean(evil)][..])
        );
    }

    proptest! {
        #[test]
        fn cleaned_text_has_no_control_or_format_character(s in any::<String>()) {
            let c = clean(&s);
            prop_assert!(is_clean(&c), "{c:?}");
            prop_assert_eq!(clean(&c), c.clone());
        }

        #[test]
        fn cleaned_text_keeps_printable_text(s in "[a-zA-Z0-9 ./:_-]{0,40}") {
            prop_assert_eq!(clean(&s), s);
        }

        #[test]
        fn bytes_from_proc_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let c = clean(&String::from_utf8_lossy(&bytes));
            prop_assert!(!c.contains('\x1b') && !c.chars().any(char::is_control));
        }
    }
}
