//! Alerts after judging: the outbox worker that delivers stored alert records and records
//! every attempt (`outbox`), one attempt to a webhook, Slack or email channel (`channel`,
//! `email`), and the in-app feed (`feed`).
//!
//! Stands on the runtime (decisions) and the evidence store (alert records are the outbox);
//! knows nothing of the server that feeds it.

pub(crate) mod channel;
pub(crate) mod email;
pub(crate) mod feed;
pub(crate) mod outbox;
