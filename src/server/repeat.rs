//! A retried step: a step whose `idempotency_key` its run already accepted is not judged
//! again. It is answered with the decision stored for it, read back from the store, and
//! nothing is written.

use super::routes::error;
use super::*;

/// A decision's fields in the order a decision is printed in.
const ORDER: [&str; 12] = [
    "run_id", "seq", "ts", "event", "action", "reason", "signals", "alerts", "budgets", "override",
    "snapshot", "artifact",
];

impl Server {
    /// The answer to a step of run `id` whose key the run accepted at `seq`: the stored
    /// decision, marked `Idempotent-Replayed: true`.
    pub(super) async fn repeated(&self, id: &str, seq: u64) -> Response {
        let chain = ChainId::Run(id.to_string());
        let found = self
            .read_store(move |store| {
                Ok(store
                    .read_chain(&chain)?
                    .into_iter()
                    .find(|s| s.record.kind == RecordKind::Decision && s.record.seq == seq))
            })
            .await;
        match found {
            Ok(Some(stored)) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (
                        header::HeaderName::from_static("idempotent-replayed"),
                        "true",
                    ),
                ],
                answer(&stored.record.body),
            )
                .into_response(),
            Ok(None) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the decision of run `{id}` at seq {seq} is not in the store yet: retry"),
            ),
            Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        }
    }
}

/// A stored decision record's body as the decision the step was answered with: its input
/// and prompt left out, the fields in printing order.
fn answer(body: &serde_json::Value) -> String {
    let mut out = String::from("{");
    for key in ORDER {
        let Some(value) = body.get(key) else { continue };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_body_answers_in_printing_order_without_its_input() {
        let body = serde_json::json!({
            "action": "continue", "alerts": [], "artifact": "blake3:a", "event": "step",
            "input": {"type": "step"}, "prompt": "hi", "reason": null, "run_id": "r",
            "seq": 2, "signals": [], "snapshot": "blake3:s", "ts": "2026-01-20T10:00:00Z",
        });
        assert_eq!(
            super::answer(&body),
            r#"{"run_id":"r","seq":2,"ts":"2026-01-20T10:00:00Z","event":"step","action":"continue","reason":null,"signals":[],"alerts":[],"snapshot":"blake3:s","artifact":"blake3:a"}"#
        );
    }
}
