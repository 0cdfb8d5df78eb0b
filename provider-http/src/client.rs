//! The HTTP client: one connection pool shared by every request, a connect
//! timeout, a deadline on the whole exchange, and a cap on the body.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client as Pool;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::endpoint::{Endpoint, SNAPSHOT_PATH};
use crate::error::HttpError;
use crate::parse::Remote;
use crate::token::Token;

/// Limits on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How long the TCP connection may take.
    pub connect_timeout: Duration,
    /// How long the whole exchange may take, connection included.
    pub timeout: Duration,
    /// The largest body accepted, in bytes.
    pub max_body: usize,
}

/// The default limit on a whole request: an agent answers from memory in
/// milliseconds, so this allows for a slow network, not a slow agent.
pub const DEFAULT_TIMEOUT: Duration = gpusel_core::config::DEFAULT_HTTP_TIMEOUT;
/// The default limit on making the connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = gpusel_core::config::DEFAULT_HTTP_CONNECT_TIMEOUT;
/// The default cap on a body. A snapshot of 16 GPUs with a thousand processes
/// and their command lines is under 1 MiB; anything this large is not ours.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// An HTTP/1.1 client for gpusel agents. Cheap to clone; clones share one
/// pool of kept-alive connections, so a master polling many agents every
/// few seconds opens each connection once. Requests need a Tokio runtime
/// with I/O and time enabled.
#[derive(Clone, Debug)]
pub struct Client {
    pool: Pool<HttpConnector, Empty<Bytes>>,
    settings: Settings,
}

impl Client {
    /// A client with these limits.
    pub fn new(settings: Settings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let pool = Pool::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(2)
            .build(connector);
        Client { pool, settings }
    }

    /// The limits in force.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The snapshot and the agent's status, as the agent sent them.
    pub async fn fetch(
        &self,
        endpoint: &Endpoint,
        token: Option<&Token>,
    ) -> Result<Remote, HttpError> {
        let body = self.get(endpoint, SNAPSHOT_PATH, token).await?;
        crate::parse::snapshot(&body, endpoint.url())
    }

    /// The snapshot of an nvgpu agent (its `GET /gpu_status`), its host the
    /// URL's: see [`crate::nvgpu`].
    pub async fn fetch_nvgpu(
        &self,
        endpoint: &Endpoint,
        token: Option<&Token>,
    ) -> Result<gpusel_core::Snapshot, HttpError> {
        let body = self.get(endpoint, crate::nvgpu::PATH, token).await?;
        let url = format!("{}{}", endpoint.url(), crate::nvgpu::PATH);
        crate::nvgpu::snapshot(&body, &url, endpoint.host())
    }

    /// The body of `GET path` under `endpoint`, which must answer 200 within
    /// the timeout and send at most the body limit.
    pub async fn get(
        &self,
        endpoint: &Endpoint,
        path: &str,
        token: Option<&Token>,
    ) -> Result<Bytes, HttpError> {
        let uri = endpoint.uri(path)?;
        let url = uri.to_string();
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.exchange(endpoint, uri, token)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout { url, timeout }),
        }
    }

    async fn exchange(
        &self,
        endpoint: &Endpoint,
        uri: hyper::Uri,
        token: Option<&Token>,
    ) -> Result<Bytes, HttpError> {
        let url = uri.to_string();
        let mut request = Request::get(uri)
            .header(USER_AGENT, concat!("gpusel/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, token.header());
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| HttpError::Transport {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .pool
            .request(request)
            .await
            .map_err(|e| self.request_failed(endpoint, &url, &e))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(HttpError::Unauthorized {
                url,
                status: status.to_string(),
                token: token.map(|t| t.path().to_path_buf()),
            });
        }
        let limit = if status == StatusCode::OK {
            self.settings.max_body
        } else {
            // An error page is worth one line, not megabytes.
            4096
        };
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if status == StatusCode::OK && declared.is_some_and(|n| n > limit as u64) {
            return Err(HttpError::TooLarge { url, limit });
        }
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = Limited::new(response.into_body(), limit).collect().await;
        if status != StatusCode::OK {
            let detail = match (status.is_redirection(), location) {
                (true, Some(to)) => format!(
                    "redirects to {}; redirects are not followed, give that URL",
                    printable(&to)
                ),
                _ => body
                    .map(|b| {
                        let b = b.to_bytes();
                        first_line(
                            crate::parse::agent_error(&b)
                                .as_deref()
                                .map_or(&b[..], str::as_bytes),
                        )
                    })
                    .unwrap_or_default(),
            };
            return Err(HttpError::Status {
                url,
                status: status.to_string(),
                detail,
            });
        }
        match body {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(HttpError::TooLarge { url, limit })
            }
            Err(e) => Err(HttpError::Transport {
                url,
                reason: chain(e.as_ref()),
            }),
        }
    }

    fn request_failed(
        &self,
        endpoint: &Endpoint,
        url: &str,
        e: &hyper_util::client::legacy::Error,
    ) -> HttpError {
        let io = io_cause(e);
        if e.is_connect() {
            let url = endpoint.url().to_string();
            return match io.map(std::io::Error::kind) {
                Some(std::io::ErrorKind::ConnectionRefused) => HttpError::Refused {
                    url,
                    authority: endpoint.authority().to_string(),
                },
                Some(std::io::ErrorKind::TimedOut) => HttpError::ConnectTimeout {
                    url,
                    timeout: self.settings.connect_timeout,
                },
                _ => HttpError::Connect {
                    url,
                    reason: chain(e),
                },
            };
        }
        HttpError::Transport {
            url: url.to_string(),
            reason: chain(e),
        }
    }
}

/// The first I/O error among the causes of `e`.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

/// `e` and its causes, `: `-separated, without repeats (hyper's errors often
/// repeat their cause in their own message).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// The first line of an error body, printable and short: it ends up on a
/// terminal and in a web page, and the server may be hostile.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    printable(
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default(),
    )
}

fn printable(text: &str) -> String {
    const MAX: usize = 200;
    let mut clean = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // A terminal escape (`ESC [ ... letter`) goes whole, not just its ESC.
            let mut rest = chars.clone();
            if rest.next() == Some('[') {
                let end = rest.position(|c| ('@'..='~').contains(&c));
                if let Some(skip) = end {
                    chars.nth(skip + 1);
                }
            }
        } else if !c.is_control() {
            clean.push(c);
        }
    }
    if clean.chars().count() > MAX {
        clean = clean.chars().take(MAX).collect();
        clean.push('…');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_error_body_becomes_one_short_printable_line(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let line = first_line(&body);
            proptest::prop_assert!(line.chars().count() <= 201);
            proptest::prop_assert!(!line.chars().any(char::is_control), "{:?}", line);
        }
    }

    #[test]
    fn error_bodies_are_cut_to_one_clean_line() {
        assert_eq!(first_line(b"\n  no snapshot yet \nmore"), "no snapshot yet");
        assert_eq!(first_line(b"a\x1b[31mred\x1b[0m"), "ared");
        assert_eq!(first_line(b"bell\x07 and \x1b"), "bell and ");
        let long = first_line(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), 201);
        assert!(long.ends_with('…'));
    }
}
