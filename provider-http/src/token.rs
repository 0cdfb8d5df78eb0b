//! Bearer tokens, read from files: a token on a command line or in a URL
//! would be visible to every user of the machine (`ps`, `/proc/PID/cmdline`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::HttpError;

/// Longer than any token a person or `openssl rand` makes; a file larger
/// than this was named by mistake.
const MAX_TOKEN_FILE: u64 = 4096;

/// What to do about a token file that cannot be used.
const HOW: &str = "write one line of at least 16 printable characters, e.g. `openssl rand -hex 32 > FILE`, the same token the agent serves with";

/// A bearer token and the file it came from: the one token type of the
/// agent (`gpusel serve --token-file`) and of its clients (the `http://`
/// provider, the master's agents file), read by one rule so that a file
/// one side accepts the other does too. `Debug` never shows the token.
#[derive(Clone)]
pub struct Token {
    secret: Vec<u8>,
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
    /// The shortest token accepted: shorter ones can be guessed.
    pub const MIN_LEN: usize = 16;

    /// Reads the token from `path`: its first line without surrounding
    /// whitespace (so a line end does not count, and a comment may follow
    /// on later lines), one word of printable ASCII as HTTP headers require,
    /// at least [`Token::MIN_LEN`] characters, from a file of at most 4 KiB.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HttpError> {
        let path = path.as_ref();
        let bad = |reason: String| HttpError::TokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = gpusel_core::read_regular_file(path, MAX_TOKEN_FILE).map_err(|e| {
            bad(match e {
                gpusel_core::FileReadError::NotAFile { kind } => format!(
                    "it is {kind}, not a regular file; name the file that holds the token"
                ),
                gpusel_core::FileReadError::TooLarge { .. } => format!(
                    "it is too long for a token file (at most {MAX_TOKEN_FILE} bytes); name the file that holds only the token"
                ),
                e => format!("cannot read it: {e}; check the path and its permissions"),
            })
        })?;
        Self::parse(&text, path)
    }

    /// The token in `text`, the content of the file `path` (named in the
    /// error), by the rule of [`Token::from_file`].
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, HttpError> {
        let bad = |problem: String| HttpError::TokenFile {
            path: path.to_path_buf(),
            reason: format!("{problem}; {HOW}"),
        };
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.trim_ascii();
        if line.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if !line.iter().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "a token is one word of printable ASCII (no spaces, no control or non-ASCII characters)".into(),
            ));
        }
        if line.len() < Self::MIN_LEN {
            return Err(bad(format!(
                "its token of {} characters is too short to resist guessing",
                line.len()
            )));
        }
        Ok(Token {
            secret: line.to_vec(),
            path: path.to_path_buf(),
        })
    }

    /// The file the token was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `candidate` is the token, in time that does not depend on
    /// where they differ (an agent checking a client's token).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.secret.ct_eq(candidate).into()
    }

    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        // Checked printable ASCII in `parse`.
        format!("Bearer {}", String::from_utf8_lossy(&self.secret))
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
        let (_dir, path) = file(b"  s3cr3t-Token_0123456\n# from openssl rand\n");
        let token = Token::from_file(&path).unwrap();
        assert_eq!(token.header(), "Bearer s3cr3t-Token_0123456");
        assert!(token.matches(b"s3cr3t-Token_0123456"));
        assert!(!token.matches(b"s3cr3t-Token_0123457"));
        assert!(!token.matches(b"s3cr3t-Token_012345"));
        assert_eq!(token.path(), path);
        assert!(
            !format!("{token:?}").contains("s3cr3t"),
            "Debug leaks the token"
        );
    }

    #[test]
    fn unusable_files_say_what_to_do() {
        let cases: [(&[u8], &str); 5] = [
            (b"\n", "it is empty"),
            (b"two words 0123456789", "one word of printable ASCII"),
            (b"bell\x070123456789abcdef", "one word of printable ASCII"),
            (b"\xff\xfe0123456789abcdef", "non-ASCII"),
            (b"short\n0123456789abcdef", "5 characters is too short"),
        ];
        for (text, want) in cases {
            let (_dir, path) = file(text);
            let e = Token::from_file(&path).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("token file") && e.contains("openssl rand"),
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
