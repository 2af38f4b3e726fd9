//! `GET /v1/alerts`: the in-app alert feed ([`crate::alerts::feed`]).

use super::routes::{error, json_answer};
use super::*;
use crate::alerts::feed::FEED;

/// `GET /v1/alerts?channel=ui&limit=N`: the newest delivered alerts of a channel, newest
/// first (the in-app notification feed).
pub(super) async fn alerts(
    State(s): State<Arc<Server>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let channel = q.get("channel").map_or("ui", String::as_str);
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=FEED).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`limit` must be a number from 1 to {FEED}"),
            );
        }
    };
    let Ok(feed) = s.feed.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the feed lock is poisoned",
        );
    };
    let list = feed.newest(channel, limit);
    json_answer(&serde_json::json!({ "channel": channel, "alerts": list }))
}
