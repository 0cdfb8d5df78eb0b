//! How `gpusel serve` is set up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::AgentError;

/// The port `gpusel serve` listens on by default: next to dcgm-exporter's
/// 9400 in the exporters' range, and free of the well-known ones.
pub const DEFAULT_PORT: u16 = 9477;

/// Everything the server needs besides the provider.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen. `127.0.0.1` unless the operator chooses to expose it.
    pub listen: SocketAddr,
    /// How often to take a snapshot.
    pub interval: Duration,
    /// The lease directory whose leases are shown.
    pub lock_dir: PathBuf,
    /// Required from every client except `/healthz`, when set.
    pub token: Option<Token>,
    /// Serve process command lines (and lease holders' full commands).
    /// Off by default: arguments can hold secrets.
    pub expose_cmdline: bool,
    /// The longest a request may take, headers included, before it is cut off.
    pub request_timeout: Duration,
    /// The most connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl ServeOptions {
    /// The defaults, listening on `listen`: a snapshot every 2 s, leases from
    /// [`gpu_core::DEFAULT_LOCK_DIR`], no token, no command lines.
    pub fn new(listen: SocketAddr) -> Self {
        ServeOptions {
            listen,
            interval: Duration::from_secs(2),
            lock_dir: PathBuf::from(gpu_core::DEFAULT_LOCK_DIR),
            token: None,
            expose_cmdline: false,
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The bearer token clients must send, read from a file so that it never
/// shows in `ps` or the shell history.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    /// The shortest token accepted: shorter ones can be guessed.
    pub const MIN_LEN: usize = 16;

    /// Reads the token from the first line of `path`, without its line end.
    pub fn from_file(path: &Path) -> Result<Self, AgentError> {
        let text = std::fs::read(path).map_err(|source| AgentError::TokenRead {
            path: path.to_path_buf(),
            source,
        })?;
        Token::parse(&text).map_err(|problem| AgentError::TokenInvalid {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// The token in `text`: its first line, trimmed.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.trim_ascii();
        if line.is_empty() {
            return Err("is empty".into());
        }
        if line.iter().any(|b| !b.is_ascii_graphic()) {
            return Err("holds spaces, control or non-ASCII characters".into());
        }
        if line.len() < Self::MIN_LEN {
            return Err(format!(
                "holds a token of {} characters, too short to resist guessing",
                line.len()
            ));
        }
        Ok(Token(line.to_vec()))
    }

    /// Whether `candidate` is the token, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(candidate).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_rules() {
        let t = Token::parse(b"  0123456789abcdef0123\nignored\n").unwrap();
        assert!(t.matches(b"0123456789abcdef0123"));
        assert!(!t.matches(b"0123456789abcdef0124"));
        assert!(!t.matches(b"0123456789abcdef012"));
        assert!(Token::parse(b"\n").unwrap_err().contains("empty"));
        assert!(Token::parse(b"short").unwrap_err().contains("too short"));
        assert!(
            Token::parse(b"with a space in the middle")
                .unwrap_err()
                .contains("spaces")
        );
        assert_eq!(format!("{t:?}"), "Token(<hidden>)");
    }
}
