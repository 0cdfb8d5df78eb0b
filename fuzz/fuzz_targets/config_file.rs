//! The config file (`/etc/gpusel/config.toml`, `~/.config/gpusel/config.toml`):
//! `Config::merge_file`, then `gpusel config`'s rows.
#![no_main]
use std::path::Path;

use gpusel_core::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = Config::default();
    let path = Path::new("/etc/gpusel/config.toml");
    match config.merge_file(path, text) {
        Ok(()) => {
            let rows = config.rows();
            assert!(!rows.is_empty());
            // Merging the same file twice is the same as once, but for the bans.
            let before = config.bans.len();
            config.merge_file(path, text).expect("it merged once");
            assert_eq!(config.bans.len(), before * 2);
        }
        Err(ConfigError::File {
            path: p,
            at,
            message,
            ..
        }) => {
            assert_eq!(p, path);
            assert!(!message.is_empty());
            if let Some((line, col)) = at {
                assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
                assert!(col >= 1);
            }
        }
        Err(e) => panic!("a file's text only fails as that file: {e}"),
    }
});
