//! Reading an agent's answer as a snapshot. The bytes come from the network:
//! anything may arrive, and nothing here may panic.

use gpusel_core::{AgentStatus, Snapshot};
use serde::Deserialize;

use crate::error::HttpError;

/// What an agent serves at `/api/v1/snapshot`: a snapshot, and beside it
/// the agent's own status (absent from a plain snapshot file served by
/// some other web server).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Remote {
    /// The agent's last good snapshot.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// How the agent's snapshots are going.
    #[serde(default)]
    pub agent: Option<AgentStatus>,
}

/// The `agent` beside the snapshot, read on its own: a `flatten`ed
/// [`Remote`] would first copy the whole body into an untyped tree.
#[derive(Deserialize)]
struct AgentOnly {
    #[serde(default)]
    agent: Option<AgentStatus>,
}

/// The snapshot in `body`, within [`crate::limits`] and validated; `url`
/// names the source in errors.
pub fn snapshot(body: &[u8], url: &str) -> Result<Remote, HttpError> {
    crate::limits::check(body).map_err(|over| HttpError::OverLimit {
        url: url.to_string(),
        what: over.0,
    })?;
    let not_ours = |e: serde_json::Error| HttpError::NotOurSchema {
        url: url.to_string(),
        message: describe(body, &e),
    };
    let snapshot: Snapshot = serde_json::from_slice(body).map_err(not_ours)?;
    let agent = serde_json::from_slice::<AgentOnly>(body)
        .map_err(not_ours)?
        .agent;
    let remote = Remote { snapshot, agent };
    remote
        .snapshot
        .validate()
        .map_err(|error| HttpError::Invalid {
            url: url.to_string(),
            error,
        })?;
    Ok(remote)
}

/// The `error` of an agent's JSON error body, if that is what `body` is.
pub fn agent_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<gpusel_core::AgentError>(body)
        .ok()
        .map(|e| e.error)
}

/// The parser's complaint, named for what the body most likely is.
fn describe(body: &[u8], e: &serde_json::Error) -> String {
    let start = body.iter().find(|b| !b.is_ascii_whitespace());
    match start {
        None => "the answer is empty".into(),
        Some(b'<') => format!("it sent HTML or XML, not JSON: {e}"),
        Some(b'{') => format!("JSON, but not a snapshot: {e}"),
        Some(_) => format!("not JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const URL: &str = "http://node1:9090/api/v1/snapshot";

    fn lab() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/lab-8xa100.json"
        ))
        .unwrap()
    }

    #[test]
    fn a_real_snapshot_parses() {
        let s = snapshot(lab().as_bytes(), URL).unwrap();
        assert_eq!(s.snapshot.gpus.len(), 8);
        assert_eq!(s.agent, None);
        let served = serde_json::to_vec(&gpusel_core::AgentSnapshot {
            snapshot: s.snapshot.clone(),
            agent: AgentStatus {
                version: "0.1.0".into(),
                up: false,
                last_attempt: std::time::SystemTime::UNIX_EPOCH,
                last_error: Some("NVML: GPU is lost".into()),
                lease_error: None,
                interval_ms: 2000,
                command_lines: false,
            },
        })
        .unwrap();
        let r = snapshot(&served, URL).unwrap();
        assert_eq!(r.snapshot, s.snapshot);
        assert_eq!(
            r.agent.unwrap().last_error.as_deref(),
            Some("NVML: GPU is lost")
        );
    }

    #[test]
    fn what_is_wrong_is_named() {
        let msg = |body: &str| snapshot(body.as_bytes(), URL).unwrap_err().to_string();
        assert!(msg("").contains("the answer is empty"));
        assert!(msg("<html><body>Welcome to nginx</body></html>").contains("HTML or XML"));
        assert!(msg("{\"status\":\"ok\"}").contains("JSON, but not a snapshot: missing field"));
        assert!(msg("hello").contains("not JSON"));
        assert!(msg("{}").contains("is it a gpusel agent (`gpusel serve`)?"));
        let future = lab().replace("\"schema_version\": 1", "\"schema_version\": 99");
        assert_ne!(future, lab(), "the example holds schema_version 1");
        let e = snapshot(future.as_bytes(), URL).unwrap_err();
        assert!(matches!(e, HttpError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("version 99 is not supported"), "{e}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = snapshot(&body, URL);
        }

        #[test]
        fn json_shaped_noise_never_panics(body in "[\\[\\]{}\":,0-9a-z_ .-]{0,300}") {
            let _ = snapshot(body.as_bytes(), URL);
        }

        #[test]
        fn a_snapshot_cut_anywhere_is_an_error_not_a_panic(cut in 0usize..4000) {
            let full = lab();
            let text = full.trim_end();
            let cut = cut.min(text.len() - 1);
            prop_assert!(snapshot(&text.as_bytes()[..cut], URL).is_err());
        }
    }
}
