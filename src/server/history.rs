//! What an auditor reads besides a run's state: a run's chain verified by the server
//! (`GET /v1/runs/{id}/verify`, as `lever evidence verify --run`), and the deploy history
//! with `lever diff` of each deploy (`GET /v1/deploys`).

use super::routes::{error, unavailable};
use super::runs::stored_artifact;
use super::*;
use crate::evidence::audit;

fn json_answer(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /v1/runs/{id}/verify`: every record of the run's chain checked (content hashes,
/// positions and links), with the head an auditor cites; a chain that fails says where.
pub(super) async fn verify_run(State(s): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let run = id.clone();
    let checked = s
        .read_store(move |store| {
            let verdict = audit::verify(store, Some(&run), None)?;
            let chain = store.read_chain(&ChainId::Run(run))?;
            Ok((verdict, chain.last().map(|h| (h.n, h.hash))))
        })
        .await;
    match checked {
        Err(why) => unavailable(&why),
        Ok((_, None)) => error(StatusCode::NOT_FOUND, &format!("no evidence of run `{id}`")),
        Ok((Ok(v), Some((n, hash)))) => json_answer(&serde_json::json!({
            "run_id": id,
            "verified": true,
            "records": v.records,
            "head": {"n": n, "hash": crate::base::hash::hex(&hash)},
        })),
        Ok((Err(problem), Some((n, hash)))) => json_answer(&serde_json::json!({
            "run_id": id,
            "verified": false,
            "problem": problem.to_string(),
            "head": {"n": n, "hash": crate::base::hash::hex(&hash)},
        })),
    }
}

/// The most deploys `GET /v1/deploys` answers with.
const MOST_DEPLOYS: usize = 100;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeploysQuery {
    limit: Option<usize>,
}

/// `GET /v1/deploys?limit=N`: the newest deploys (20 by default), newest first, each with
/// who, when, the old and new artifact ids, the key that signed it, and `lever diff`'s
/// text of the two artifacts as the store holds them.
pub(super) async fn deploys(
    State(s): State<Arc<Server>>,
    axum::extract::Query(q): axum::extract::Query<DeploysQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(20);
    if !(1..=MOST_DEPLOYS).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("`limit` must be a number from 1 to {MOST_DEPLOYS}"),
        );
    }
    let load = s.load;
    let listed = s
        .read_store(move |store| {
            let mut records = store.read_recent(RecordKind::Deploy, limit)?;
            records.reverse();
            Ok(records
                .iter()
                .map(|r| described(store, load, r))
                .collect::<Vec<_>>())
        })
        .await;
    match listed {
        Ok(list) => json_answer(&serde_json::json!({ "deploys": list })),
        Err(why) => unavailable(&why),
    }
}

/// A deploy record's body with its record hash and the diff of its two artifacts.
fn described(
    store: &mut dyn EvidenceStore,
    load: crate::compile::load::LoadOptions,
    r: &crate::evidence::Stored,
) -> serde_json::Value {
    let body = &r.record.body;
    let id = |field: &str| body.get(field).and_then(|v| v.as_str()).map(str::to_string);
    let diff = match (id("from"), id("to")) {
        (Some(from), Some(to)) => stored_artifact(store, load, &from).and_then(|old| {
            let new = stored_artifact(store, load, &to)?;
            Ok(crate::author::diff::text(&crate::author::diff::diff(
                &old, &new,
            )))
        }),
        _ => Err("the deploy record names no artifacts".to_string()),
    };
    let mut out = body.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("hash".into(), crate::base::hash::hex(&r.hash).into());
        match diff {
            Ok(text) => map.insert("diff".into(), text.into()),
            Err(why) => map.insert("diff_error".into(), why.into()),
        };
    }
    out
}
