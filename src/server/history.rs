//! What an auditor reads besides a run's state: a run's chain verified by the server
//! (`GET /v1/runs/{id}/verify`, as `lever evidence verify --run`), and the deploy history
//! with `lever diff` of each deploy (`GET /v1/deploys`).

use super::routes::{error, json_answer, unavailable};
use super::runs::stored_artifact;
use super::*;
use crate::evidence::audit;

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

/// `lever diff` of each deploy already described, by its record's hash. A stored deploy
/// never changes, and its diff loads (and so compiles) two artifacts: once is enough.
#[derive(Default)]
pub(super) struct Diffs(Mutex<std::collections::HashMap<[u8; 32], String>>);

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
    let (load, diffs) = (s.load, Arc::clone(&s.diffs));
    let listed = s
        .read_store(move |store| {
            let mut records = store.read_recent(RecordKind::Deploy, limit)?;
            records.reverse();
            Ok(records
                .iter()
                .map(|r| described(store, load, &diffs, r))
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
    diffs: &Diffs,
    r: &crate::evidence::Stored,
) -> serde_json::Value {
    let known = diffs
        .0
        .lock()
        .ok()
        .and_then(|d| d.get(&r.hash).cloned())
        .map(Ok);
    let diff = known.unwrap_or_else(|| {
        let diff = diff_of(store, load, &r.record.body);
        // A failed read may pass: only a diff made is kept.
        if let (Ok(text), Ok(mut d)) = (&diff, diffs.0.lock()) {
            d.insert(r.hash, text.clone());
        }
        diff
    });
    let mut out = r.record.body.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("hash".into(), crate::base::hash::hex(&r.hash).into());
        match diff {
            Ok(text) => map.insert("diff".into(), text.into()),
            Err(why) => map.insert("diff_error".into(), why.into()),
        };
    }
    out
}

/// `lever diff` of a deploy's `from` and `to` artifacts, as the store holds them.
fn diff_of(
    store: &mut dyn EvidenceStore,
    load: crate::compile::load::LoadOptions,
    body: &serde_json::Value,
) -> Result<String, String> {
    let id = |field: &str| body.get(field).and_then(|v| v.as_str());
    let (Some(from), Some(to)) = (id("from"), id("to")) else {
        return Err("the deploy record names no artifacts".to_string());
    };
    let old = stored_artifact(store, load, from)?;
    let new = stored_artifact(store, load, to)?;
    Ok(crate::author::diff::text(&crate::author::diff::diff(
        &old, &new,
    )))
}
