//! The agent's request handling: the router of `gpusel serve`
//! (`gpusel_agent::routes::router`: routing by path, the token check of the
//! `Authorization` header, `Accept` for /metrics), behind a token and with
//! a snapshot published. hyper itself is not fuzzed: the input is the
//! request line and headers hyper would hand over.
//!
//! Input: `METHOD TARGET\n` then `Name: value\n` lines.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gpusel_agent::{Published, State, Token};
use gpusel_core::AgentStatus;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &[u8] = b"0123456789abcdef";

fn setup() -> &'static (tokio::runtime::Runtime, Router) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let interval = Duration::from_secs(2);
        let token = Token::parse(TOKEN, std::path::Path::new("token")).unwrap();
        let state = State::new(Published::starting(interval, false), Some(token), interval);
        let text = include_str!("../../examples/lab-8xa100.json");
        let snapshot = gpusel_core::parse_snapshot(text, std::path::Path::new("lab")).unwrap();
        let status = AgentStatus {
            up: true,
            ..Published::starting(interval, false).status
        };
        state.publish(Published::render(
            Some(Arc::new(snapshot)),
            status,
            Duration::from_millis(3),
            0,
        ));
        let router = gpusel_agent::routes::router(Arc::new(state), Duration::from_secs(5));
        (runtime, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = gpusel_fuzz::text(data);
    let mut lines = text.split('\n');
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let mut builder = Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name, value.trim_start());
        }
    }
    let Ok(request) = builder.body(Body::empty()) else {
        return; // hyper would not have parsed it either
    };
    let path = request.uri().path().to_string();
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let (runtime, router) = setup();
    let response = runtime
        .block_on(router.clone().oneshot(request))
        .expect("the router is infallible");
    let status = response.status();
    assert!(
        [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED,
        ]
        .contains(&status),
        "{status} for {text:?}"
    );
    let headers = response.headers();
    assert_eq!(
        headers.get(header::CACHE_CONTROL).unwrap(),
        "no-store",
        "{text:?}"
    );
    assert!(
        headers.contains_key(header::CONTENT_SECURITY_POLICY),
        "{text:?}"
    );
    // Nothing but /healthz answers without the token.
    if status == StatusCode::OK && path != "/healthz" {
        assert!(authorization.is_some(), "a 200 needs the token: {text:?}");
    }
});
