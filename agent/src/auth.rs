//! The optional bearer token.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::options::Token;

/// Lets a request through when no token is set, or when it carries the token
/// as `Authorization: Bearer TOKEN` (scripts, Prometheus' `authorization`
/// setting) or as the password of HTTP Basic auth (browsers, which ask for
/// it and resend it, so the dashboard works with a token too; any user name).
pub async fn check(token: Option<Arc<Token>>, request: Request, next: Next) -> Response {
    match token {
        Some(token) if !authorized(&token, request.headers()) => unauthorized(),
        _ => next.run(request).await,
    }
}

fn authorized(token: &Token, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let (scheme, credentials) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], value[i + 1..].trim_ascii()),
        None => return false,
    };
    if scheme.eq_ignore_ascii_case(b"bearer") {
        token.matches(credentials)
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(i) => token.matches(&decoded[i + 1..]),
            None => false,
        }
    } else {
        false
    }
}

fn unauthorized() -> Response {
    let body = serde_json::to_vec(&gpusel_core::AgentError {
        error: "this gpusel agent needs its token: send `Authorization: Bearer TOKEN` (curl -H), or give it as the password when the browser asks".into(),
    })
    .unwrap_or_default();
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="gpusel""#),
    );
    headers.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="gpusel", charset="UTF-8""#),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let token = Token::parse(b"0123456789abcdef", std::path::Path::new("token")).unwrap();
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            authorized(&token, &h)
        };
        assert!(with("Bearer 0123456789abcdef"));
        assert!(with("bearer  0123456789abcdef "));
        assert!(!with("Bearer 0123456789abcdeF"));
        assert!(!with("Token 0123456789abcdef"));
        let basic = base64::engine::general_purpose::STANDARD.encode("me:0123456789abcdef");
        assert!(with(&format!("Basic {basic}")));
        let wrong = base64::engine::general_purpose::STANDARD.encode("0123456789abcdef:x");
        assert!(!with(&format!("Basic {wrong}")));
        assert!(!with("Basic !!!"));
        assert!(!authorized(&token, &HeaderMap::new()));
    }
}
