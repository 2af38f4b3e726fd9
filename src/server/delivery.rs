//! The alert delivery worker (DESIGN §8): `webhook` (JSON POST, signed), `slack`
//! (incoming-webhook JSON) and `email` (SMTP, see [`super::email`]), on a thread of its own, so that a dead channel never slows
//! evaluation. Alerts reach it only after their evidence is durable (the alert records are
//! the outbox). Each attempt is recorded as an `alert_delivery` record in the store chain;
//! a failed attempt is retried with exponential backoff (0.5 s doubling, at most 30 s
//! apart) up to [`ATTEMPTS`] times.
//!
//! Webhook signature: `Lever-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, the secret being the channel's `secret` argument.

use super::email::SmtpRelay;
use crate::base::lang::ArgValue;
use crate::base::lang::ChannelKind;
use crate::compile::bytecode::ChannelDesc;
use crate::evidence::{Record, RecordKind};
use hmac::{Hmac, Mac};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Attempts per alert.
pub const ATTEMPTS: u32 = 6;

/// One alert to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: ChannelDesc,
    /// What the receiver gets: the alert, its run, seq, time and artifact.
    pub payload: serde_json::Value,
    pub artifact: String,
}

/// A channel argument's value, `env("VAR")` resolved now; `None` when it is not given.
fn optional_arg(channel: &ChannelDesc, name: &str) -> Result<Option<String>, String> {
    match channel.args.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
        Some(ArgValue::Str(s)) => Ok(Some(s.clone())),
        Some(ArgValue::Env(var)) => std::env::var(var).map(Some).map_err(|_| {
            format!(
                "channel `{}`: environment variable {var} is not set",
                channel.name
            )
        }),
        Some(ArgValue::List(_)) => Err(format!("channel `{}`: `{name}` is a list", channel.name)),
        None => Ok(None),
    }
}

/// A required channel argument's value.
fn arg(channel: &ChannelDesc, name: &str) -> Result<String, String> {
    optional_arg(channel, name)?
        .ok_or_else(|| format!("channel `{}` has no `{name}`", channel.name))
}

/// The `Lever-Signature` header value of a body.
pub fn signature(secret: &str, t: u64, body: &str) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(format!("{t}.{body}").as_bytes());
    format!(
        "t={t},v1={}",
        crate::evidence::chain::hex(&mac.finalize().into_bytes())
    )
}

/// The alert as one readable line (Slack's text, an email's first line).
fn summary(p: &serde_json::Value) -> String {
    format!(
        "Lever: {} of `{}` ({} v{}) in run `{}` at seq {}: observed {} of {}",
        p["kind"].as_str().unwrap_or("").to_uppercase(),
        p["limit"].as_str().unwrap_or(""),
        p["policy"].as_str().unwrap_or(""),
        p["version"],
        p["run_id"].as_str().unwrap_or(""),
        p["seq"],
        p["observed"].as_str().unwrap_or("?"),
        p["limit_value"].as_str().unwrap_or("?"),
    )
}

/// An email channel's message: its `subject` (or the alert's own), the summary line and
/// the alert's fields.
fn email(relay: Option<&SmtpRelay>, d: &Delivery) -> Result<u16, (String, bool)> {
    let relay = relay.ok_or_else(|| ("no [smtp] relay is configured".to_string(), true))?;
    let to: Vec<String> = match d.channel.args.iter().find(|(k, _)| k == "to") {
        Some((_, ArgValue::List(list))) => list.clone(),
        _ => {
            return Err((
                format!("channel `{}` has no `to` list", d.channel.name),
                true,
            ));
        }
    };
    let from = optional_arg(&d.channel, "from").map_err(|e| (e, true))?;
    let line = summary(&d.payload);
    let subject = optional_arg(&d.channel, "subject")
        .map_err(|e| (e, true))?
        .unwrap_or_else(|| line.clone());
    let details = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
    super::email::send(
        relay,
        super::email::Email {
            from: from.as_deref(),
            to: &to,
            subject: &subject,
            // Mail lines end in CRLF (RFC 5322).
            text: format!("{line}\n\n{details}\n").replace('\n', "\r\n"),
        },
    )
}

/// One attempt: `Ok(status)` for a 2xx answer (an email: the relay's reply code), `Err`
/// with why otherwise. A `permanent` error (a missing argument) is not retried.
fn attempt(
    agent: &ureq::Agent,
    relay: Option<&SmtpRelay>,
    d: &Delivery,
) -> Result<u16, (String, bool)> {
    let body = match d.channel.kind {
        ChannelKind::Webhook => d.payload.to_string(),
        ChannelKind::Slack => serde_json::json!({ "text": summary(&d.payload) }).to_string(),
        ChannelKind::Email => return email(relay, d),
    };
    let url = arg(&d.channel, "url").map_err(|e| (e, true))?;
    let mut req = agent.post(&url).header("content-type", "application/json");
    if d.channel.kind == ChannelKind::Webhook {
        let secret = arg(&d.channel, "secret").map_err(|e| (e, true))?;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        req = req.header("lever-signature", &signature(&secret, t, &body));
    }
    match req.send(body.as_str()) {
        Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(r) => Err((format!("HTTP {}", r.status().as_u16()), false)),
        Err(e) => Err((e.to_string(), false)),
    }
}

/// Runs until every sender is gone and nothing is left to retry. `record` stores an
/// attempt's record (without waiting for it).
pub fn worker(
    jobs: mpsc::Receiver<Delivery>,
    relay: Option<SmtpRelay>,
    metrics: &super::Metrics,
    record: impl Fn(Record),
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    // (due, attempt number, delivery)
    let mut queue: Vec<(Instant, u32, Delivery)> = Vec::new();
    // Retries still waiting when the server stops are dropped: their alerts stay in the
    // evidence, with every attempt made so far.
    let mut open = true;
    while open {
        let wait = queue
            .iter()
            .map(|(due, _, _)| due.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match jobs.recv_timeout(wait) {
            Ok(d) => queue.push((Instant::now(), 1, d)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = queue.drain(..).partition(|(at, _, _)| *at <= now);
        queue = later;
        for (_, n, d) in due {
            let result = attempt(&agent, relay.as_ref(), &d);
            metrics.delivery(d.channel.kind.name(), result.is_ok());
            let mut body = d.payload.clone();
            if let Some(map) = body.as_object_mut() {
                map.insert("attempt".into(), n.into());
                map.insert("delivered".into(), result.is_ok().into());
                match &result {
                    Ok(status) => map.insert("status".into(), (*status).into()),
                    Err((why, _)) => map.insert("error".into(), why.clone().into()),
                };
                map.insert(
                    "at".into(),
                    crate::base::format::timestamp(super::deploy::now_ns()).into(),
                );
            }
            record(Record {
                kind: RecordKind::AlertDelivery,
                artifact: d.artifact.clone(),
                run_id: None,
                seq: 0,
                index: n,
                body,
            });
            if let Err((_, permanent)) = result
                && !permanent
                && n < ATTEMPTS
            {
                let backoff =
                    Duration::from_millis(500 << (n - 1).min(6)).min(Duration::from_secs(30));
                queue.push((Instant::now() + backoff, n + 1, d));
            }
        }
    }
}
