//! Agent URLs: `http://host:port[/prefix]`.

use hyper::Uri;

use crate::error::HttpError;

/// The path of the snapshot under an agent's base URL.
pub const SNAPSHOT_PATH: &str = "/api/v1/snapshot";

/// Where an agent listens: scheme `http`, a host, an optional port and an
/// optional path prefix (an agent behind a reverse proxy at `/gpus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
    authority: String,
}

impl Endpoint {
    /// Parses an agent URL. A trailing `/` and a trailing
    /// `/api/v1/snapshot` (a URL copied from a browser) are dropped.
    /// Credentials in the URL are refused: a command line is visible to
    /// every user of the machine, so tokens travel in files.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let given = url.trim();
        let shown = redact(given);
        let bad = |reason: &str| HttpError::BadUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        let scheme_end = given
            .find("://")
            .ok_or_else(|| bad("no http:// in front"))?;
        let scheme = given.get(..scheme_end).unwrap_or_default();
        if scheme.eq_ignore_ascii_case("https") {
            return Err(HttpError::Https { url: shown });
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(bad(&format!("scheme {scheme:?} is not http")));
        }
        if given.contains('#') {
            return Err(bad("a URL with a #fragment is not an agent's address"));
        }
        let uri: Uri = given
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&format!("{e}")))?;
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials do not belong in a URL (every user can read a command line); put the token in a file and name it in GPUSEL_HTTP_TOKEN_FILE",
            ));
        }
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        // `port()` is None for a port that is not a u16, so look at the text.
        let text = authority.as_str();
        let port_given = text.rsplit_once(']').map_or(text, |(_, p)| p).contains(':');
        if port_given && authority.port_u16().is_none_or(|p| p == 0) {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        if uri.query().is_some() {
            return Err(bad("a URL with a ?query is not an agent's address"));
        }
        let mut path = uri.path().trim_end_matches('/');
        path = path.strip_suffix(SNAPSHOT_PATH).unwrap_or(path);
        let path = path.trim_end_matches('/');
        let authority = authority.as_str().to_ascii_lowercase();
        let base = format!("http://{authority}{path}");
        // The base must stay a valid URI once an API path is added.
        join(&base, SNAPSHOT_PATH).map_err(|reason| bad(&reason))?;
        Ok(Endpoint { base, authority })
    }

    /// The normalized base URL, e.g. `http://gpu-node-1:9477`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `host:port` as written (the port may be implied).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host of the URL, without its port: what people call their
    /// nodes (`gpu-node-1`, `10.0.0.7`, `[::1]`).
    pub fn host(&self) -> &str {
        match self.authority.rsplit_once(':') {
            Some((host, port))
                if !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => &self.authority,
        }
    }

    /// The URI of `path` (starting with `/`) under this agent.
    pub fn uri(&self, path: &str) -> Result<Uri, HttpError> {
        join(&self.base, path).map_err(|reason| HttpError::BadUrl {
            url: format!("{}{path}", self.base),
            reason,
        })
    }
}

/// `url` with any `user:password@` replaced by `***@`, so an error never
/// repeats a secret onto a terminal or into a log.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest.get(..end).and_then(|authority| authority.rfind('@')) {
        Some(at) => format!("{scheme}://***{}", rest.get(at..).unwrap_or_default()),
        None => url.to_string(),
    }
}

fn join(base: &str, path: &str) -> Result<Uri, String> {
    format!("{base}{path}")
        .parse::<Uri>()
        .map_err(|e| e.to_string())
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(s: &str) -> String {
        Endpoint::parse(s).unwrap().url().to_string()
    }

    fn err(s: &str) -> String {
        Endpoint::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn normal_forms() {
        assert_eq!(url("http://node1:9477"), "http://node1:9477");
        assert_eq!(url(" HTTP://Node1:9477/ "), "http://node1:9477");
        assert_eq!(url("http://node1:9477/gpus/"), "http://node1:9477/gpus");
        assert_eq!(
            url("http://node1:9477/api/v1/snapshot"),
            "http://node1:9477",
            "a copied API URL still names the agent"
        );
        assert_eq!(url("http://[::1]:9477"), "http://[::1]:9477");
        assert_eq!(url("http://node1"), "http://node1");
        let e = Endpoint::parse("http://10.0.0.7:9477/gpus").unwrap();
        assert_eq!(e.authority(), "10.0.0.7:9477");
        assert_eq!(
            e.uri(SNAPSHOT_PATH).unwrap().to_string(),
            "http://10.0.0.7:9477/gpus/api/v1/snapshot"
        );
    }

    #[test]
    fn refusals_say_why() {
        assert!(err("node1:9477").contains("no http:// in front"));
        assert!(err("ftp://node1").contains("scheme \"ftp\" is not http"));
        assert!(err("https://node1:9477").contains("https is not supported"));
        let e = err("http://user:secret@node1:9477/x");
        assert!(e.contains("credentials do not belong"), "{e}");
        assert!(e.starts_with("\"http://***@node1:9477/x\""), "{e}");
        assert!(err("http://node1:9477/?x=1").contains("?query"));
        assert!(err("http://node1:9477/#top").contains("#fragment"));
        assert!(err("http://").contains("is not an agent URL"));
        assert!(err("http://node1:99999").contains("the port is not a number"));
        assert!(err("http://node1:0").contains("the port is not a number"));
        assert!(err("http://node1:").contains("the port is not a number"));
        assert!(err("http://no de").contains("write http://HOST:PORT"));
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_without_panic(s in "\\PC*") {
            if let Ok(e) = Endpoint::parse(&s) {
                prop_assert!(e.url().starts_with("http://"));
                prop_assert!(e.uri(SNAPSHOT_PATH).is_ok());
            }
        }

        #[test]
        fn url_like_strings_never_panic(host in "[a-z0-9.:\\[\\]@%-]{0,20}", path in "[ -~]{0,20}") {
            let _ = Endpoint::parse(&format!("http://{host}{path}"));
        }
    }
}
