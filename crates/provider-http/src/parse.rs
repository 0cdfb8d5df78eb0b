//! Reading an agent's answer as a snapshot. The bytes come from the network:
//! anything may arrive, and nothing here may panic.

use gpu_core::Snapshot;

use crate::error::HttpError;

/// The snapshot in `body`, validated; `url` names the source in errors.
pub fn snapshot(body: &[u8], url: &str) -> Result<Snapshot, HttpError> {
    let snapshot: Snapshot = serde_json::from_slice(body).map_err(|e| HttpError::NotOurSchema {
        url: url.to_string(),
        message: describe(body, &e),
    })?;
    snapshot.validate().map_err(|error| HttpError::Invalid {
        url: url.to_string(),
        error,
    })?;
    Ok(snapshot)
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
            "/../../examples/lab-8xa100.json"
        ))
        .unwrap()
    }

    #[test]
    fn a_real_snapshot_parses() {
        let s = snapshot(lab().as_bytes(), URL).unwrap();
        assert_eq!(s.gpus.len(), 8);
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
