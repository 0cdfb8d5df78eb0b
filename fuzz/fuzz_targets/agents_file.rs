//! The master's agents file (`gpusel serve --agents FILE`):
//! `gpusel_agent::master::parse`. Relative token files name files of an
//! empty folder, so only absolute ones are ever read.
#![no_main]
use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/gpusel-fuzz/agents.toml");
    match gpusel_agent::master::parse(text, path) {
        Ok(file) => {
            assert!(!file.nodes.is_empty());
            let mut names = HashSet::new();
            let mut urls = HashSet::new();
            for node in &file.nodes {
                assert!(names.insert(&node.name), "names are unique");
                assert!(urls.insert(node.url()), "URLs are unique");
                assert!(!node.name.is_empty() && !node.name.chars().any(char::is_control));
            }
            assert!(file.timeout.is_none_or(|t| !t.is_zero()));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("agents file /nonexistent/gpusel-fuzz/agents.toml"));
            if let Some((line, col)) = e.at {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{e:?}"
                );
                assert!(col >= 1, "{e:?}");
            }
        }
    }
});
