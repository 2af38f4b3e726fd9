//! The web console at `/ui`: a framework-free page whose files are embedded in the binary
//! (no CDN, no build step). It reads and acts through the same `/v1` routes as any client,
//! with the token a person pastes into it, which it keeps in the tab's memory alone.

use super::*;

/// The console's files: path under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "",
        "text/html; charset=utf-8",
        include_str!("console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("console/app.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("console/dom.js"),
    ),
    (
        "runs.js",
        "text/javascript; charset=utf-8",
        include_str!("console/runs.js"),
    ),
    (
        "run.js",
        "text/javascript; charset=utf-8",
        include_str!("console/run.js"),
    ),
    (
        "act.js",
        "text/javascript; charset=utf-8",
        include_str!("console/act.js"),
    ),
    (
        "alerts.js",
        "text/javascript; charset=utf-8",
        include_str!("console/alerts.js"),
    ),
    (
        "policies.js",
        "text/javascript; charset=utf-8",
        include_str!("console/policies.js"),
    ),
];

/// Scripts, styles and requests from this server alone; no frames, no forms that post
/// elsewhere, no referrer that could carry a run id away.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console's routes (`[ui] enabled`, the default).
pub(super) fn routes(s: &Arc<Server>) -> Router<Arc<Server>> {
    if !s.settings.console {
        return Router::new();
    }
    Router::new()
        .route("/ui", get(|| async { asset("") }))
        .route("/ui/", get(|| async { asset("") }))
        .route("/ui/config.json", get(config))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

fn asset(path: &str) -> Response {
    let Some((_, kind, text)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return super::routes::error(StatusCode::NOT_FOUND, &format!("no route /ui/{path}"));
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, *kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        *text,
    )
        .into_response()
}

/// `GET /ui/config.json`: whether reads need a token (so the page asks for one first).
async fn config(State(s): State<Arc<Server>>) -> Response {
    let body = serde_json::json!({
        "require_token": !s.settings.public_reads,
        "version": env!("CARGO_PKG_VERSION"),
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}
