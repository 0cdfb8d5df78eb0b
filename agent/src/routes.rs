//! The HTTP routes, built from small pieces so that other pages (the
//! master's) can be added beside them with the same protections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use crate::options::Token;
use crate::page;
use crate::state::State;

/// `Content-Type` of the JSON bodies.
pub const JSON: &str = "application/json";

/// The largest request body accepted. Every route is a GET; a body is only
/// ever a mistake or an attack.
pub const MAX_BODY: usize = 1024;

/// The agent's whole router: the token-protected routes, `/healthz` (which
/// needs no token, so that a load balancer can probe it; it says only "ok"
/// or "failing"), and the protections of [`harden`].
pub fn router(state: Arc<State>, request_timeout: Duration) -> Router {
    let token = state.token().cloned();
    let app = protect(agent_routes(), token)
        .route("/healthz", get(healthz))
        .with_state(state);
    harden(app, request_timeout)
}

/// `GET /`, `GET /api/v1/snapshot`, `GET /gpu_status`, `GET /metrics`.
/// Other methods get 405.
pub fn agent_routes() -> Router<Arc<State>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/snapshot", get(snapshot))
        .route(gpusel_http::nvgpu::PATH, get(gpu_status))
        .route("/metrics", get(metrics))
}

/// Requires the token (when set) on every route of `routes`.
pub fn protect<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    token: Option<Token>,
) -> Router<S> {
    let token = token.map(Arc::new);
    routes.route_layer(axum::middleware::from_fn(move |request, next| {
        crate::auth::check(token.clone(), request, next)
    }))
}

/// The protections every route gets: a time limit per request, a body
/// limit, 404 for unknown paths, and headers that keep browsers from
/// caching, sniffing, framing or running anything not in the page.
pub fn harden(app: Router, request_timeout: Duration) -> Router {
    app.fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The pages need their inline style and nothing else: no script,
        // no image, no request anywhere, whatever a GPU or process name holds.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn not_found() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "no such page; the agent serves /, /api/v1/snapshot, /gpu_status, /metrics and /healthz",
    )
}

/// A JSON error body with `status`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&gpusel_core::AgentError {
        error: message.into(),
    })
    .unwrap_or_default();
    (status, [(header::CONTENT_TYPE, JSON)], body).into_response()
}

/// `GET /api/v1/snapshot`: the latest round's JSON (503 before the first
/// good snapshot). The master serves its own snapshot with it too.
pub async fn snapshot(Shared(state): Shared<Arc<State>>) -> Response {
    let round = state.current();
    let status = if round.snapshot.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, JSON)], round.json.clone()).into_response()
}

/// `GET /gpu_status`: the latest snapshot as an nvgpu agent answers, so
/// that an nvgpu master shows this node (see [`gpusel_http::nvgpu`]); its
/// `is_available` is gpusel's rule, not nvgpu's. 503 before the first good
/// snapshot. The master serves its own GPUs with it too.
pub async fn gpu_status(Shared(state): Shared<Arc<State>>) -> Response {
    let round = state.current();
    match &round.snapshot {
        Some(s) => {
            let status =
                gpusel_http::nvgpu::status(s, std::time::SystemTime::now(), state.idle_rules());
            match serde_json::to_vec(&status) {
                Ok(body) => ([(header::CONTENT_TYPE, JSON)], body).into_response(),
                Err(_) => json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the status cannot be written; /api/v1/snapshot has the same data",
                ),
            }
        }
        None => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no GPU snapshot yet; ask again in a moment, or see /api/v1/snapshot for why",
        ),
    }
}

/// OpenMetrics when the client asks for it (Prometheus does), the classic
/// text format otherwise.
async fn metrics(Shared(state): Shared<Arc<State>>, headers: HeaderMap) -> Response {
    let round = state.current();
    let openmetrics = wants_openmetrics(&headers);
    let (content_type, body) = if openmetrics {
        (crate::metrics::OPENMETRICS, round.openmetrics.clone())
    } else {
        (crate::metrics::CLASSIC, round.metrics.clone())
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Whether the client's `Accept` asks for OpenMetrics (Prometheus does);
/// others get the classic text format.
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| contains(v.as_bytes(), b"application/openmetrics-text"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

async fn healthz(Shared(state): Shared<Arc<State>>) -> Response {
    let text = if state.current().status.up {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "failing: the GPUs cannot be read\n",
        )
    };
    (
        text.0,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.1,
    )
        .into_response()
}

async fn dashboard(Shared(state): Shared<Arc<State>>) -> Response {
    let round = state.current();
    match page::dashboard(&round, state.interval(), state.idle_rules()) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the dashboard");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the dashboard cannot be rendered; /api/v1/snapshot has the same data",
            )
        }
    }
}
