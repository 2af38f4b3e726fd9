//! One delivery attempt to one channel: `webhook` (JSON POST, signed), `slack`
//! (incoming-webhook JSON) and `email` (SMTP, see [`super::email`]).
//!
//! Webhook signature: `Lever-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, the secret being the channel's `secret` argument. Every request carries
//! `Lever-Delivery-Id`: the same for every attempt of one alert, from any server, so that
//! a receiver can drop a repeat.

use super::email::SmtpRelay;
use crate::base::lang::{ArgValue, ChannelKind};
use crate::compile::bytecode::ChannelDesc;
use hmac::{Hmac, Mac};

/// A warning for every channel argument written `env("VAR")` whose variable is unset in
/// this process: those channels' alerts would fail, each attempt recorded as not delivered.
pub(crate) fn unset_env(channels: &[ChannelDesc]) -> Vec<String> {
    let mut out = Vec::new();
    for c in channels {
        for (arg, value) in &c.args {
            if let ArgValue::Env(var) = value
                && std::env::var_os(var).is_none()
            {
                out.push(format!(
                    "channel `{}` ({}) reads `{arg}` from env(\"{var}\"), which is unset: its alerts are recorded as not delivered until the variable is set",
                    c.name,
                    c.kind.name()
                ));
            }
        }
    }
    out
}

/// One alert to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub channel: ChannelDesc,
    /// What the receiver gets: the alert, its run, seq, time and artifact.
    pub payload: serde_json::Value,
    /// The alert record's id (hex): the `Lever-Delivery-Id` of every attempt.
    pub id: String,
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
pub(crate) fn signature(secret: &str, t: u64, body: &str) -> String {
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
pub(crate) fn attempt(
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
    let mut req = agent
        .post(&url)
        .header("content-type", "application/json")
        .header("lever-delivery-id", &d.id);
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
