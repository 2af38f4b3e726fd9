//! The HTTP face of the server: routes, request bodies, who may call what, and answers
//! that are JSON whatever goes wrong.

use super::feed::alerts;
use super::*;

/// A request body: its fields with their JSON text kept exactly (DESIGN §3: a number is
/// read from its text, never through a float).
pub(super) type Body = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// A value as a body field.
pub(super) fn raw(v: &serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| {
        serde_json::value::to_raw_value(&serde_json::Value::Null).unwrap_or_default()
    })
}

/// A body field's value, for comparisons (never used to rewrite a number).
pub(super) fn value(r: &serde_json::value::RawValue) -> serde_json::Value {
    serde_json::from_str(r.get()).unwrap_or_default()
}

/// A 503 answer while the evidence store is down: retry after a second.
pub(super) fn unavailable(why: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// A 200 answer with a JSON body.
pub(super) fn json_answer(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error answer: a status and a JSON `{"error": ...}` body.
pub(super) fn error(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": why }).to_string(),
    )
        .into_response()
}

impl Server {
    /// Every route, with who may call it, the body limits and the request timeout; every
    /// error answer is JSON.
    pub(crate) fn router(self: &Arc<Self>) -> Router {
        use axum::extract::DefaultBodyLimit;
        use axum::middleware::{from_fn, from_fn_with_state, map_response_with_state};
        let s = &self.settings;
        let ingest = Router::new()
            .route("/v1/runs", post(run_start))
            .route("/v1/runs/{id}/steps", post(step))
            .route("/v1/runs/{id}/end", post(run_end))
            .route_layer(from_fn_with_state(Arc::clone(self), require_ingest));
        let bodies = Router::new()
            .route("/v1/runs/{id}/overrides", post(override_request))
            .route("/v1/runs/{id}/overrides/{oid}/approvals", post(approval))
            .merge(ingest)
            .layer(DefaultBodyLimit::max(s.max_body_bytes))
            .route_layer(from_fn(require_json));
        let reads = Router::new()
            .route("/v1/policies", get(policies))
            .route("/v1/runs/{id}/evidence", get(evidence))
            .route("/v1/runs/{id}/verify", get(super::history::verify_run))
            .route("/v1/deploys", get(super::history::deploys))
            .route("/v1/runs/{id}", get(super::runs::run_status))
            .route("/v1/runs", get(super::runs::runs))
            .route("/v1/alerts", get(alerts))
            .route_layer(from_fn_with_state(Arc::clone(self), require_read));
        let deploys = Router::new()
            .route("/v1/artifacts", axum::routing::put(put_artifact))
            .layer(DefaultBodyLimit::max(s.max_artifact_bytes));
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .merge(bodies)
            .merge(reads)
            .merge(deploys)
            .merge(super::console::routes(self))
            .route_layer(from_fn_with_state(Arc::clone(self), timed))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                s.request_timeout,
            ))
            .layer(map_response_with_state(Arc::clone(self), json_errors))
            .with_state(Arc::clone(self))
    }
}

/// Times a request to a route (its template, never its path: run ids stay out of labels).
async fn timed(
    State(s): State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The route's template is shared, not copied: a clone of it is a reference count.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if let Some(mut l) = s.metrics.labelled() {
        let route = route.as_ref().map_or("unmatched", |m| m.as_str());
        l.request(method.as_str(), route, started.elapsed());
    }
    response
}

async fn not_found(uri: axum::http::Uri) -> Response {
    error(StatusCode::NOT_FOUND, &format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Rewrites an error answer that is not JSON (a body too large, a timeout) as JSON.
async fn json_errors(State(s): State<Arc<Server>>, response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let why = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the body is larger than the server takes ([server] max_body_bytes = {}, max_artifact_bytes = {})",
            s.settings.max_body_bytes, s.settings.max_artifact_bytes
        ),
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request took longer than [server] request_timeout ({:?})",
            s.settings.request_timeout
        ),
        _ => {
            let (_, body) = response.into_parts();
            let text = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&text).trim().to_string();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text
            }
        }
    };
    error(status, &why)
}

/// A body must be JSON: a request that says it is something else is refused (415).
async fn require_json(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let kind = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
    match kind {
        Some(k) if !k.starts_with("application/json") => {
            let answer = error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("the body must be JSON (content-type: application/json), not {k}"),
            );
            refuse_after_reading(request, 1 << 20, answer).await
        }
        _ => next.run(request).await,
    }
}

/// Reads (evidence, alerts, policies) need a token with the `read` role, unless
/// `[server] public_reads` opens them.
async fn require_read(
    State(s): State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if s.settings.public_reads {
        return next.run(request).await;
    }
    match authenticate(&s, request.headers()) {
        Ok(p) if p.may_read() => next.run(request).await,
        Ok(p) => error(
            StatusCode::FORBIDDEN,
            &format!("{} may not read: the token has no `read` role", p.actor),
        ),
        Err(r) => r.into_response(),
    }
}

/// Run starts, steps and run ends need a token with the `ingest` role when `[server]
/// require_ingest_token` is set.
async fn require_ingest(
    State(s): State<Arc<Server>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !s.settings.require_ingest_token {
        return next.run(request).await;
    }
    let answer = match authenticate(&s, request.headers()) {
        Ok(p) if p.may_ingest() => return next.run(request).await,
        Ok(p) => error(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not send run events: the token has no `ingest` role",
                p.actor
            ),
        ),
        Err(r) => r.into_response(),
    };
    refuse_after_reading(request, s.settings.max_body_bytes, answer).await
}

/// Answers a refused request once its body is read, so that the connection stays usable
/// for the client's next request.
async fn refuse_after_reading(
    request: axum::extract::Request,
    limit: usize,
    answer: Response,
) -> Response {
    let _ = axum::body::to_bytes(request.into_body(), limit).await;
    answer
}

/// A request refused before it is judged: its status and why.
pub(super) struct Refusal(pub(super) StatusCode, pub(super) String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// A request body as a JSON object, or the 400 answer.
pub(super) fn parse_body(body: &[u8]) -> Result<Body, Refusal> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("the body is not UTF-8: {e}"),
        ));
    }
    let text = String::from_utf8_lossy(body);
    match crate::runtime::event::object_fields(&text) {
        Ok(map) => Ok(map),
        Err((true, why)) => Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid_field: {why}"),
        )),
        Err(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object".into(),
        )),
        Err((false, why)) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {why}"),
        )),
    }
}

/// Sets a field the path gives (DESIGN §6: a body that gives another value is 422).
pub(super) fn from_path(
    event: &mut Body,
    field: &str,
    value: serde_json::Value,
) -> Result<(), Refusal> {
    if let Some(given) = event.get(field).map(|r| self::value(r))
        && given != value
    {
        return Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body's `{field}` {given} is not the path's {value}"),
        ));
    }
    event.insert(field.to_string(), raw(&value));
    Ok(())
}

/// The principal of a request, or the 401 answer.
pub(super) fn authenticate<'a>(
    s: &'a Server,
    headers: &axum::http::HeaderMap,
) -> Result<&'a Principal, Refusal> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    s.tokens.principal(given).ok_or_else(|| {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer ...)".into(),
        )
    })
}

/// Replaces what a body says of who is asking with the token's principal; returns what
/// the body claimed that differs, for the evidence.
pub(super) fn impose(
    event: &mut Body,
    who: &Principal,
    fields: &[&str],
) -> Option<serde_json::Value> {
    let mut claimed = serde_json::Map::new();
    let actor = serde_json::Value::from(who.actor.clone());
    let roles = serde_json::Value::from(who.roles.clone());
    for field in fields {
        let Some(value) = event.remove(*field).map(|r| self::value(&r)) else {
            continue;
        };
        let differs = match *field {
            "actor" => value != actor,
            "roles" => value != roles,
            _ => value != serde_json::Value::Array(Vec::new()),
        };
        if differs {
            claimed.insert((*field).to_string(), value);
        }
    }
    event.insert("actor".into(), raw(&actor));
    if fields.contains(&"roles") {
        event.insert("roles".into(), raw(&roles));
    }
    if fields.contains(&"approvals") {
        event.insert(
            "approvals".into(),
            raw(&serde_json::Value::Array(Vec::new())),
        );
    }
    (!claimed.is_empty())
        .then(|| serde_json::json!({"claimed": claimed, "actor": actor, "roles": roles}))
}

/// The principal and the parsed body of an authenticated request.
pub(super) fn authenticated(
    s: &Server,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<(Principal, Body), Refusal> {
    let who = authenticate(s, headers)?.clone();
    Ok((who, parse_body(body)?))
}

async fn override_request(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (who, mut event) = match authenticated(&s, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let mismatch = impose(&mut event, &who, &["actor", "roles", "approvals"]);
    s.judge("override", Some(&id), &body, Ok(event), mismatch)
        .await
}

async fn approval(
    State(s): State<Arc<Server>>,
    Path((id, oid)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (who, mut event) = match authenticated(&s, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Ok(request) = oid.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "the override in the path must be the request's seq, a positive integer",
        );
    };
    if let Err(r) = from_path(&mut event, "override", request.into()) {
        return r.into_response();
    }
    let mismatch = impose(&mut event, &who, &["actor", "roles"]);
    s.judge("approval", Some(&id), &body, Ok(event), mismatch)
        .await
}

/// `PUT /v1/artifacts`: an admin deploys a built artifact (its bytes as the body).
async fn put_artifact(
    State(s): State<Arc<Server>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match authenticate(&s, &headers) {
        Ok(p) => p.clone(),
        Err(r) => return r.into_response(),
    };
    if !who.admin {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not deploy: the token is not an admin token",
                who.actor
            ),
        );
    }
    let signature = headers
        .get("lever-artifact-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let place = "the Lever-Artifact-Signature header";
    let loaded =
        crate::compile::load::load_signed(body.to_vec(), signature.as_deref(), place, s.load);
    let artifact = match loaded {
        Ok(a) => a,
        Err(e) => {
            let why = format!("not deployed: {e}");
            let server = Arc::clone(&s);
            let (actor, reason) = (who.actor.clone(), e.to_string());
            let recorded =
                tokio::task::spawn_blocking(move || server.record_refusal(&actor, &reason)).await;
            if !matches!(recorded, Ok(Ok(()))) {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{why}; and the refusal could not be recorded"),
                );
            }
            return error(StatusCode::UNPROCESSABLE_ENTITY, &why);
        }
    };
    let server = Arc::clone(&s);
    let deployed = tokio::task::spawn_blocking(move || server.deploy(artifact, &who.actor)).await;
    match deployed {
        Ok(Ok(body)) => json_answer(&body),
        Ok(Err(r)) => r.into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the deploy task failed"),
    }
}

async fn run_start(State(s): State<Arc<Server>>, body: axum::body::Bytes) -> Response {
    s.event("run_start", None, &body).await
}

async fn step(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    s.event("step", Some(&id), &body).await
}

async fn run_end(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    s.event("run_end", Some(&id), &body).await
}

/// `GET /v1/runs/{id}/evidence`: the run's chain as JSONL, read through the server's own
/// reading handle on a blocking thread, never the writer's.
async fn evidence(State(s): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let chain = ChainId::Run(id.clone());
    match s.read_store(move |store| store.read_chain(&chain)).await {
        Ok(records) if records.is_empty() => {
            error(StatusCode::NOT_FOUND, &format!("no evidence of run `{id}`"))
        }
        Ok(records) => {
            let mut body = Vec::new();
            for r in records {
                body.extend_from_slice(&r.to_bytes());
                body.push(b'\n');
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                body,
            )
                .into_response()
        }
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoliciesQuery {
    artifact: Option<String>,
}

/// `GET /v1/policies`: the active artifact's policies, or with `?artifact=ID` those of an
/// artifact this server has loaded (one its runs are judged by).
async fn policies(
    State(s): State<Arc<Server>>,
    axum::extract::Query(q): axum::extract::Query<PoliciesQuery>,
) -> Response {
    let Ok(replay) = s.replay.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the runtime lock is poisoned",
        );
    };
    let engine = match &q.artifact {
        None => replay.current_engine(),
        Some(id) => match replay.engine_of(id) {
            Some(e) => Some(e),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("artifact {id} is not loaded by this server (read a run of it first)"),
                );
            }
        },
    };
    let Some(engine) = engine else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no artifact is loaded");
    };
    let artifact = engine.artifact();
    let json = crate::compile::disasm::json(artifact);
    let body = serde_json::json!({
        "artifact": artifact.id,
        "engine": format!("{:?}", engine.kind()).to_lowercase(),
        "policies": json.get("policies").cloned().unwrap_or_default(),
    });
    json_answer(&body)
}

/// `GET /healthz`: 200 `ok`, or 503 while the evidence store is unavailable.
async fn healthz(State(s): State<Arc<Server>>) -> Response {
    if s.metrics.store_down() {
        let why = format!(
            "degraded: the evidence store is unavailable; {} records queued\n",
            s.metrics.queued()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn metrics_text(State(s): State<Arc<Server>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
