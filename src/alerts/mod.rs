//! Alerts after judging: the outbox worker that delivers stored alert records and records
//! every attempt (`outbox`), one attempt to a webhook, Slack or email channel (`channel`,
//! `email`), and the in-app feed (`feed`).
//!
//! Stands on the runtime (decisions) and the evidence store (alert records are the outbox);
//! knows nothing of the server that feeds it.

pub mod channel;
pub mod email;
pub mod feed;
pub mod outbox;
