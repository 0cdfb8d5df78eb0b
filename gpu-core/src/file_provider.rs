//! `file:PATH`: replays a snapshot in gpusel's own JSON schema, re-read on
//! every call (so a test can change GPU state while gpusel waits).
//!
//! Only regular files are read, and at most [`MAX_SNAPSHOT_FILE`] bytes of
//! them: a FIFO would block the reader for good, `/dev/zero` would never
//! end.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::model::Snapshot;
use crate::provider::{GpuInfoProvider, ProviderError};

/// Reads snapshots written by `gpusel list --json` (or by hand) from a file.
#[derive(Debug, Clone)]
pub struct FileProvider {
    path: PathBuf,
    name: String,
}

impl FileProvider {
    /// A provider reading `path`. Nothing is read until [`snapshot`](GpuInfoProvider::snapshot).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = format!("file:{}", path.display());
        FileProvider { path, name }
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Largest snapshot file read: 16 MiB, the HTTP provider's body cap
/// (`DEFAULT_MAX_BODY`), so that a snapshot an agent may serve can also be
/// replayed from a file. gpusel writes about 2 KiB per GPU.
pub const MAX_SNAPSHOT_FILE: u64 = 16 << 20;

/// Reads the snapshot file at `path`: a regular file of at most
/// [`MAX_SNAPSHOT_FILE`] bytes of UTF-8. It is opened without blocking (a
/// FIFO with no writer would block the open itself) and checked before
/// anything is read.
pub fn read_snapshot_file(path: &Path) -> Result<String, ProviderError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source| ProviderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        let kind = if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a file"
        };
        return Err(ProviderError::NotAFile {
            path: path.to_path_buf(),
            kind: kind.into(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SNAPSHOT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SNAPSHOT_FILE {
        return Err(ProviderError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_SNAPSHOT_FILE,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Parses and validates a snapshot from JSON text; `source` names it in errors.
pub fn parse_snapshot(text: &str, source: &Path) -> Result<Snapshot, ProviderError> {
    let snapshot: Snapshot = serde_json::from_str(text).map_err(|e| ProviderError::Parse {
        path: source.to_path_buf(),
        message: e.to_string(),
    })?;
    snapshot.validated(source.display().to_string())
}

#[async_trait]
impl GpuInfoProvider for FileProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn snapshot(&self) -> Result<Snapshot, ProviderError> {
        let text = read_snapshot_file(&self.path)?;
        parse_snapshot(&text, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_name_the_file_and_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = FileProvider::new(dir.path().join("nope.json"));
        let e = missing.snapshot().await.unwrap_err().to_string();
        assert!(e.contains("nope.json") && e.contains("No such file"), "{e}");
        assert!(!e.contains("--provider"), "the CLI names its flag: {e}");

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"gpus\": [").unwrap();
        let e = FileProvider::new(&bad)
            .snapshot()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a gpusel snapshot") && e.contains("line 1"),
            "{e}"
        );

        let future = dir.path().join("future.json");
        std::fs::write(
            &future,
            r#"{"schema_version": 9, "host": "h", "time": "2026-01-01T00:00:00Z", "provider": "x", "gpus": []}"#,
        )
        .unwrap();
        let e = FileProvider::new(&future)
            .snapshot()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("version 9") && e.contains("upgrade gpusel"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // No writer: a blocking open or read would never return.
        let e = FileProvider::new(&fifo).snapshot().await.unwrap_err();
        assert!(matches!(e, ProviderError::NotAFile { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("fifo") && e.contains("FIFO (named pipe), not a regular file"),
            "{e}"
        );

        let e = FileProvider::new("/dev/zero")
            .snapshot()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero") && e.contains("a character device"),
            "{e}"
        );
        let e = FileProvider::new(dir.path())
            .snapshot()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("a directory"), "{e}");

        let big = dir.path().join("big.json");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_SNAPSHOT_FILE + 1).unwrap();
        let e = FileProvider::new(&big).snapshot().await.unwrap_err();
        assert!(
            matches!(
                e,
                ProviderError::TooLarge {
                    limit: MAX_SNAPSHOT_FILE,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
    }

    #[tokio::test]
    async fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut snap = Snapshot::new("node1", "test");
        snap.time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        snap.gpus.push(crate::model::Gpu::new(0, "GPU-0", "T4"));
        let path = dir.path().join("s.json");
        std::fs::write(&path, serde_json::to_string(&snap).unwrap()).unwrap();
        assert_eq!(FileProvider::new(&path).snapshot().await.unwrap(), snap);
    }

    proptest::proptest! {
        #[test]
        fn bad_json_is_an_error_never_a_panic(text in "\\PC{0,200}") {
            let _ = parse_snapshot(&text, Path::new("x.json"));
        }

        #[test]
        fn truncated_or_mutated_snapshots_never_panic(cut in 0usize..4000, byte in 0u8..128, at in 0usize..4000) {
            let example = include_str!("../../examples/lab-8xa100.json");
            let mut bytes = example.as_bytes()[..cut.min(example.len())].to_vec();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_snapshot(&text, Path::new("x.json"));
        }
    }

    #[test]
    fn the_bundled_examples_are_valid() {
        for text in [
            include_str!("../../examples/lab-8xa100.json"),
            include_str!("../../examples/mig-2xh100.json"),
        ] {
            let snap = parse_snapshot(text, Path::new("example")).unwrap();
            for gpu in &snap.gpus {
                if let (Some(t), Some(u), Some(f)) =
                    (gpu.memory_total, gpu.memory_used, gpu.memory_free)
                {
                    let reserved = gpu.memory_reserved.unwrap_or(0);
                    assert_eq!(t, u + f + reserved, "GPU {} memory adds up", gpu.index);
                }
            }
        }
    }
}
