//! Failures a person can see: `lever serve` warns of channels whose variables are unset,
//! `/v1/alerts` shows what became of each alert's delivery, and `/metrics` has request
//! latency by route, spend and tokens by tenant and policy, and failures by channel.

use super::served::Served;
use super::server::{receiver, requests};
use std::time::{Duration, Instant};

#[test]
fn a_channel_reading_an_unset_variable_is_named_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), "file:ev");
    for warning in [
        "lever: warning: channel `ops` (webhook) reads `url` from env(\"OPS_WEBHOOK_URL\"), which is unset",
        "lever: warning: channel `ops` (webhook) reads `secret` from env(\"OPS_WEBHOOK_SECRET\"), which is unset",
        "lever: warning: channel `llmops` (slack) reads `url` from env(\"SLACK_LLMOPS_URL\"), which is unset",
    ] {
        assert!(
            served.said.contains(warning),
            "no `{warning}` in:\n{}",
            served.said
        );
    }
    // With the variables set, nothing is said of them.
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::with_channels(tmp.path(), 9, &[]);
    assert!(!served.said.contains("which is unset"), "{}", served.said);
}

/// The feed entry of the run's breach alert to `channel`, once `done` says it is settled.
fn settled(
    served: &Served,
    channel: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = served.get("/v1/alerts?channel=*");
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let found = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["channel"] == channel && a["kind"] == "breach")
            .cloned();
        if let Some(a) = found.filter(|a| done(&a["delivery"])) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no settled delivery to {channel}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_feed_shows_each_delivery_and_metrics_show_latency_spend_and_failures() {
    // The webhook refuses its first request (500), then takes the retry.
    let (port, _seen) = receiver(1);
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::with_channels(tmp.path(), port, &[]);
    for (path, body) in requests() {
        assert_eq!(served.post(&path, &body).0, 200, "{path}");
    }
    let ops = settled(&served, "ops", |d| d["state"] == "delivered");
    assert_eq!(
        ops["delivery"],
        serde_json::json!({"state": "delivered", "attempts": 2, "status": 200, "last_error": null})
    );
    assert_eq!(
        (ops["run_id"].as_str(), ops["seq"].as_u64()),
        (Some("support-42"), Some(13))
    );
    // No [smtp] relay: the email alert failed for good, and says why.
    let oncall = settled(&served, "oncall", |d| d["state"] != "pending");
    assert_eq!(oncall["delivery"]["state"], "failed");
    assert_eq!(
        oncall["delivery"]["last_error"],
        "no [smtp] relay is configured"
    );
    // The in-app feed is its own delivery.
    let (_, text) = served.get("/v1/alerts");
    let ui: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ui["alerts"][0]["delivery"]["state"], "in_app");

    let (_, metrics) = served.get("/metrics");
    let has = |line: &str| {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        )
    };
    // 13 steps of the example: 14 requests to the steps route in all, none slower than 2.5 s.
    has(
        "lever_request_seconds_bucket{route=\"/v1/runs/{id}/steps\",method=\"POST\",le=\"2.5\"} 13",
    );
    has("lever_request_seconds_count{route=\"/v1/runs/{id}/steps\",method=\"POST\"} 13");
    has("lever_request_seconds_count{route=\"/v1/runs\",method=\"POST\"} 1");
    // Every step's cost and tokens, counted under each policy bound to the run: $5.40 to
    // the breach, and the refused step's $0.45, which counts as every refused step does.
    has("lever_spend_usd_total{tenant=\"acme\",policy=\"support_budget\"} 5.85");
    has("lever_spend_usd_total{tenant=\"acme\",policy=\"tenant_default\"} 5.85");
    has("lever_tokens_total{tenant=\"acme\",policy=\"support_budget\",direction=\"input\"} 15600");
    has("lever_alert_delivery_failures_total{channel=\"ops\"} 1");
    has("lever_alert_delivery_failures_total{channel=\"oncall\"} 1");
    assert!(!metrics.contains("support-42"), "a run id in a label");
}
