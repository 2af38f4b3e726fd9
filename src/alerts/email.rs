//! `email` channels: a plain-text message through the SMTP relay of the server's config
//! (`[smtp]`), over STARTTLS, implicit TLS (rustls: no system OpenSSL) or, for a relay on
//! the same host, plain SMTP.

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use serde::Deserialize;
use std::time::Duration;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain SMTP upgraded with STARTTLS, which must succeed.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS at all: only for a relay on the same host.
    None,
}

impl Security {
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

/// The relay every email channel is sent through.
#[derive(Debug, Clone)]
pub struct SmtpRelay {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// The sender when a channel names no `from`.
    pub from: Option<String>,
}

impl SmtpRelay {
    fn transport(&self) -> Result<SmtpTransport, String> {
        let builder = match self.security {
            Security::Starttls => SmtpTransport::starttls_relay(&self.host),
            Security::Tls => SmtpTransport::relay(&self.host),
            Security::None => Ok(SmtpTransport::builder_dangerous(&self.host)),
        }
        .map_err(|e| format!("SMTP relay `{}`: {e}", self.host))?;
        let mut builder = builder
            .port(self.port)
            .timeout(Some(Duration::from_secs(10)));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

/// What to send: sender, recipients, subject and text.
pub(crate) struct Email<'a> {
    pub from: Option<&'a str>,
    pub to: &'a [String],
    pub subject: &'a str,
    pub text: String,
}

/// Sends one message; `Ok` with the relay's reply code. `Err((why, permanent))`: a
/// permanent error (a bad address, a 5xx reply) is not worth retrying.
pub(crate) fn send(relay: &SmtpRelay, email: Email<'_>) -> Result<u16, (String, bool)> {
    let permanent = |why: String| (why, true);
    let from = email
        .from
        .or(relay.from.as_deref())
        .ok_or_else(|| permanent("the channel has no `from` and [smtp] sets none".into()))?;
    let mailbox = |text: &str| -> Result<Mailbox, (String, bool)> {
        text.parse()
            .map_err(|e| permanent(format!("address `{text}`: {e}")))
    };
    let mut message = Message::builder()
        .from(mailbox(from)?)
        .subject(email.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in email.to {
        message = message.to(mailbox(to)?);
    }
    let message = message
        .body(email.text)
        .map_err(|e| permanent(e.to_string()))?;
    let transport = relay.transport().map_err(permanent)?;
    match transport.send(&message) {
        Ok(reply) => Ok(u16::from(reply.code())),
        Err(e) => Err((e.to_string(), e.is_permanent())),
    }
}
