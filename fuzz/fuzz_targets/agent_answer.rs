//! An agent's answer to `GET /api/v1/snapshot` as the http provider reads
//! it (provider-http's parse::snapshot), and its error-body reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gpusel_http::fuzzing::agent_error(data);
    match gpusel_http::fuzzing::answer(data, "http://node1:9477/api/v1/snapshot") {
        Ok(remote) => {
            gpusel_fuzz::assert_round_trip(&remote.snapshot);
            // What the agent writes (snapshot and status side by side) reads back.
            if let Some(agent) = &remote.agent {
                let mut json = serde_json::to_value(&remote.snapshot).unwrap();
                json["agent"] = serde_json::to_value(agent).unwrap();
                let bytes = serde_json::to_vec(&json).unwrap();
                let back = gpusel_http::fuzzing::answer(&bytes, "http://node1:9477")
                    .unwrap_or_else(|e| panic!("an agent's own answer reads back: {e}"));
                assert!(back.agent.is_some());
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("node1"),
                "the error names the agent: {message}"
            );
        }
    }
});
