//! Property tests: every renderer takes any snapshot a file or a remote
//! agent can send (huge or odd strings, extreme numbers) without panicking.

use proptest::prelude::*;
use serde_json::{Value, json};

use gpusel_core::{Request, Snapshot, Visible, WriteOptions};

use crate::table::Look;

/// Text a snapshot can carry: empty, long (past the u16 a format width
/// takes), wide, control characters, escapes, bidi overrides.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{0,40}",
        any::<String>(),
        "[\\x00-\\x1f\\x7f\\u{9b}\\u{202e}\\u{200b}]{0,20}",
        (
            0usize..70_000,
            prop_oneof![Just('x'), Just('名'), Just('\u{301}'), Just('\x1b')]
        )
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
    ]
}

fn time() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("1970-01-01T00:00:00Z")),
        Just(json!("2026-11-22T10:00:00Z")),
        Just(json!("9999-12-31T23:59:59Z")),
    ]
}

fn opt<T: Strategy>(s: T) -> impl Strategy<Value = Option<T::Value>>
where
    T::Value: std::fmt::Debug,
{
    proptest::option::of(s)
}

fn big() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX), any::<u64>()]
}

fn process() -> impl Strategy<Value = Value> {
    (
        any::<u32>(),
        opt(big()),
        opt(text()),
        opt(proptest::collection::vec(text(), 0..3)),
        opt(text()),
        opt(time()),
        opt(prop_oneof![
            Just("compute"),
            Just("graphics"),
            Just("compute_graphics")
        ]),
        opt(any::<bool>()),
    )
        .prop_map(|(pid, mem, name, cmd, user, start, kind, visible)| {
            json!({"pid": pid, "used_memory": mem, "name": name, "command_line": cmd,
                   "user": user, "start_time": start, "kind": kind, "visible": visible})
        })
}

fn lease() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!({"holder": null})),
        (
            any::<u32>(),
            text(),
            proptest::collection::vec(text(), 0..3),
            text(),
            time()
        )
            .prop_map(|(pid, user, command, host, since)| {
                json!({"holder": {"pid": pid, "uid": pid, "user": user, "command": command,
                                  "host": host, "since": since}})
            }),
    ]
}

fn mig(index: u32) -> impl Strategy<Value = Value> {
    (
        text(),
        opt(text()),
        opt(big()),
        opt(big()),
        opt(proptest::collection::vec(process(), 0..2)),
        lease(),
    )
        .prop_map(move |(uuid, profile, total, used, processes, lease)| {
            json!({"index": index, "uuid": format!("MIG-{index}-{uuid}"), "profile": profile,
                   "memory_total": total, "memory_used": used, "processes": processes,
                   "lease": lease})
        })
}

fn gpu(index: u32) -> impl Strategy<Value = Value> {
    (
        (
            text(),
            text(),
            opt(text()),
            opt(big()),
            opt(big()),
            opt(big()),
        ),
        (
            opt(any::<u8>()),
            opt(any::<u8>()),
            opt(any::<i32>()),
            opt(any::<u32>()),
            opt(any::<u32>()),
        ),
        (opt(any::<u8>()), opt(any::<u32>()), opt(any::<bool>())),
        opt(proptest::collection::vec(process(), 0..3)),
        proptest::collection::vec(mig(index), 0..2),
        lease(),
    )
        .prop_map(
            move |(
                (uuid, name, pci, total, used, free),
                (util, mem_util, temp, power, limit),
                (pstate, clock, mig_mode),
                processes,
                migs,
                lease,
            )| {
                json!({"index": index, "uuid": format!("GPU-{index}-{uuid}"), "name": name,
                   "pci_bus_id": pci, "memory_total": total, "memory_used": used,
                   "memory_free": free, "utilization_gpu": util, "utilization_memory": mem_util,
                   "temperature": temp, "power_draw": power, "power_limit": limit,
                   "performance_state": pstate, "sm_clock": clock, "mig_mode": mig_mode,
                   "processes": processes, "mig_devices": migs, "lease": lease})
            },
        )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        text(),
        text(),
        opt(text()),
        opt(text()),
        time(),
        proptest::collection::vec(any::<u32>(), 0..4),
    )
        .prop_flat_map(|(host, provider, driver, cuda, time, indices)| {
            let gpus: Vec<_> = indices
                .iter()
                .enumerate()
                .map(|(i, _)| gpu(i as u32))
                .collect();
            gpus.prop_map(move |gpus| {
                let value = json!({"schema_version": gpusel_core::SCHEMA_VERSION, "host": host,
                    "time": time, "provider": provider, "driver_version": driver,
                    "cuda_driver_version": cuda, "gpus": gpus});
                serde_json::from_value::<Snapshot>(value).expect("the generator writes the schema")
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn status_list_and_explain_never_panic(snapshot in snapshot(), width in opt(0usize..300), wide in any::<bool>(), color in any::<bool>(), full_cmd in any::<bool>()) {
        let _ = crate::status::render(&snapshot);
        let look = Look { width, color, full_cmd, wide, bans: Vec::new(), idle: Default::default() };
        let _ = crate::table::render(&snapshot, &look);
        // The explain lines: a verdict per device, as `--explain` and a
        // failed selection print them.
        let strategy = gpusel_strategies::by_name("idle-random").expect("built in");
        let request = Request::new();
        let mut rng = <gpusel_core::rand::rngs::SmallRng as gpusel_core::rand::SeedableRng>::seed_from_u64(1);
        let verdicts = match gpusel_core::select(&snapshot, &request, strategy.as_ref(), &Visible::all(), WriteOptions::default(), &mut rng) {
            Ok(selection) => selection.verdicts,
            Err(gpusel_core::SelectError::NoMatch { verdicts, .. }) => verdicts,
            Err(_) => Vec::new(),
        };
        for v in &verdicts {
            let _ = crate::sanitize::clean_lines(&format!("  {v}"));
        }
    }
}
