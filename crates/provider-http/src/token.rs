//! Bearer tokens, read from files: a token on a command line or in a URL
//! would be visible to every user of the machine (`ps`, `/proc/PID/cmdline`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::HttpError;

/// Longer than any token a person or `openssl rand` makes; a file larger
/// than this was named by mistake.
const MAX_TOKEN_FILE: u64 = 4096;

/// A bearer token and the file it came from. `Debug` never shows the token.
#[derive(Clone)]
pub struct Token {
    secret: String,
    path: PathBuf,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Reads the token from `path`: the file's content without surrounding
    /// whitespace (so a trailing newline does not count). It must be one
    /// word of printable ASCII, as HTTP headers require.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HttpError> {
        let path = path.as_ref();
        let bad = |reason: String| HttpError::TokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            bad(format!(
                "cannot read it: {e}; check the path and its permissions"
            ))
        })?;
        if !meta.is_file() {
            return Err(bad(
                "not a regular file; name the file that holds the token".into(),
            ));
        }
        if meta.len() > MAX_TOKEN_FILE {
            return Err(bad(format!(
                "{} bytes is too long for a token (at most {MAX_TOKEN_FILE}); name the file that holds only the token",
                meta.len()
            )));
        }
        let text = std::fs::read(path)
            .map_err(|e| bad(format!("cannot read it: {e}; check its permissions")))?;
        let text = String::from_utf8(text)
            .map_err(|_| bad("not text; a token is printable ASCII".into()))?;
        Self::parse(text.trim(), path).map_err(bad)
    }

    fn parse(secret: &str, path: &Path) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("it is empty; write the agent's token into it".into());
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "a token is one word of printable ASCII (no spaces, no control characters)".into(),
            );
        }
        Ok(Token {
            secret: secret.to_string(),
            path: path.to_path_buf(),
        })
    }

    /// The file the token was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn trailing_newline_is_not_part_of_the_token() {
        let (_dir, path) = file(b"s3cr3t-Token_1\n");
        let token = Token::from_file(&path).unwrap();
        assert_eq!(token.header(), "Bearer s3cr3t-Token_1");
        assert_eq!(token.path(), path);
        assert!(
            !format!("{token:?}").contains("s3cr3t"),
            "Debug leaks the token"
        );
    }

    #[test]
    fn unusable_files_say_what_to_do() {
        let cases: [(&[u8], &str); 4] = [
            (b"\n", "it is empty"),
            (b"two words", "one word of printable ASCII"),
            (b"bell\x07", "one word of printable ASCII"),
            (b"\xff\xfe", "not text"),
        ];
        for (text, want) in cases {
            let (_dir, path) = file(text);
            let e = Token::from_file(&path).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("token file"),
                "{text:?}: {e}"
            );
        }
        let (_dir, path) = file(&vec![b'a'; 5000]);
        assert!(
            Token::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("too long")
        );
        let e = Token::from_file("/nonexistent/token")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read it") && e.contains("/nonexistent/token"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Token::from_file(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
    }
}
