//! The server's TOML config file (`lever serve --config FILE`): bearer tokens, and the SMTP
//! relay that `email` channels are sent through. Secrets are given by environment variable.
//!
//! ```toml
//! [[tokens]]
//! token_env = "LEVER_TOKEN_BOB"
//! actor = "bob@example.com"
//! roles = ["sre-oncall"]
//!
//! [smtp]
//! host = "smtp.example.com"
//! port = 587                      # default: 587 for starttls, 465 for tls, 25 for none
//! tls = "starttls"                # "starttls" (default), "tls" or "none"
//! username = "lever"
//! password_env = "LEVER_SMTP_PASSWORD"
//! from = "lever@example.com"      # for email channels that do not name a `from`
//! ```

use super::auth::{TokenEntry, Tokens};
use crate::alerts::email::{Security, SmtpRelay};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    smtp: Option<SmtpEntry>,
    #[serde(default)]
    server: Settings,
    trust: Option<TrustEntry>,
    checkpoint: Option<CheckpointSettings>,
    ui: Option<UiEntry>,
}

/// `[ui]`: the web console at `/ui`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UiEntry {
    /// Serve the console (default true).
    #[serde(default = "yes")]
    enabled: bool,
    /// Reads need a token with the `read` role (default: unless `[server] public_reads`).
    require_token: Option<bool>,
}

fn yes() -> bool {
    true
}

/// `[checkpoint]`: signed checkpoints of the evidence log, taken by the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    /// How often (`"10m"`).
    #[serde(deserialize_with = "duration")]
    pub interval: std::time::Duration,
    /// The secret key that signs them (`lever keygen`).
    pub key: std::path::PathBuf,
    /// The log's name, the note's first line.
    #[serde(default = "default_origin")]
    pub origin: String,
}

fn default_origin() -> String {
    "lever-evidence".into()
}

/// `[trust]`: the public keys whose signatures artifacts must carry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustEntry {
    keys: Vec<std::path::PathBuf>,
}

/// A duration in the config: `"10s"`, `"500ms"`, `"2m"`.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::runtime::event::parse_duration(&text)
        .and_then(|ns| u64::try_from(ns).ok())
        .map(std::time::Duration::from_nanos)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a duration such as \"10s\""))
        })
}

/// The `[server]` table: who may read and ingest, and the limits and timeouts that keep
/// the server answering (every one documented in docs/security.md with its default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Evidence, alerts and run state readable without a token (a warning at start).
    pub public_reads: bool,
    /// Run starts and steps need a token with the `ingest` role.
    pub require_ingest_token: bool,
    /// The largest request body (and event line).
    pub max_body_bytes: usize,
    /// The largest artifact a `PUT /v1/artifacts` takes.
    pub max_artifact_bytes: usize,
    /// How long a client has to send a request's headers.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: std::time::Duration,
    /// How long an idle keep-alive connection is kept.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: std::time::Duration,
    /// How long a request may take, body and evidence included.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: std::time::Duration,
    /// Connections served at once; past it, new ones get a 503.
    pub max_connections: usize,
    /// Bytes of evidence that may wait for an unavailable store.
    pub outage_queue_bytes: usize,
    /// The spill file that makes those records durable.
    pub spill: std::path::PathBuf,
    /// `[ui] enabled`: the web console is served at `/ui`.
    #[serde(skip)]
    pub console: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            public_reads: false,
            require_ingest_token: false,
            max_body_bytes: 1 << 20,
            max_artifact_bytes: 64 << 20,
            header_read_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            request_timeout: std::time::Duration::from_secs(30),
            max_connections: 512,
            outage_queue_bytes: 256 << 20,
            spill: std::path::PathBuf::from("lever-spill/outage.spill"),
            console: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpEntry {
    host: String,
    port: Option<u16>,
    #[serde(default)]
    tls: Security,
    username: Option<String>,
    password_env: Option<String>,
    from: Option<String>,
}

/// A server's configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub tokens: Tokens,
    /// Where `email` channels are sent; without it, email alerts are recorded as not
    /// delivered ("no smtp relay is configured").
    pub smtp: Option<SmtpRelay>,
    pub server: Settings,
    /// `[trust] keys`: public key files or directories (relative to the working directory).
    pub trust: Vec<std::path::PathBuf>,
    /// `[checkpoint]`: when the server takes signed checkpoints, and with which key.
    pub checkpoint: Option<CheckpointSettings>,
}

impl Config {
    /// Reads a config file; `origin` names it in errors. Every environment variable it
    /// names must be set.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| toml_error(text, origin, &e))?;
        let tokens = Tokens::from_entries(file.tokens, origin)?;
        let smtp = match file.smtp {
            None => None,
            Some(s) => {
                let password = match &s.password_env {
                    None => None,
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        format!(
                            "{origin}: [smtp] password_env: environment variable {var} is not set"
                        )
                    })?),
                };
                if password.is_some() != s.username.is_some() {
                    return Err(format!(
                        "{origin}: [smtp]: give both `username` and `password_env`, or neither"
                    ));
                }
                if let Some(from) = &s.from {
                    from.parse::<lettre::message::Mailbox>()
                        .map_err(|e| format!("{origin}: [smtp] from `{from}`: {e}"))?;
                }
                Some(SmtpRelay {
                    port: s.port.unwrap_or(s.tls.default_port()),
                    host: s.host,
                    security: s.tls,
                    credentials: s.username.zip(password),
                    from: s.from,
                })
            }
        };
        let given = file.trust.is_some();
        let trust = file.trust.map(|t| t.keys).unwrap_or_default();
        if given && trust.is_empty() {
            return Err(format!(
                "{origin}: [trust] keys: name at least one public key"
            ));
        }
        if let Some(c) = &file.checkpoint
            && c.interval < std::time::Duration::from_secs(1)
        {
            return Err(format!("{origin}: [checkpoint] interval: at least 1s"));
        }
        let server = ui_settings(file.server, file.ui, origin)?;
        Ok(Config {
            tokens,
            smtp,
            server,
            trust,
            checkpoint: file.checkpoint,
        })
    }
}

/// The `[server]` settings with `[ui]`'s: `require_token = false` opens reads as
/// `public_reads = true` does (the console then shows evidence without a token), and
/// contradicting `public_reads` is an error.
fn ui_settings(
    mut server: Settings,
    ui: Option<UiEntry>,
    origin: &str,
) -> Result<Settings, String> {
    let Some(ui) = ui else {
        return Ok(server);
    };
    match (ui.require_token, server.public_reads) {
        (Some(true), true) => {
            return Err(format!(
                "{origin}: [ui] require_token = true contradicts [server] public_reads = true, which lets anyone read without a token: remove one of them"
            ));
        }
        (Some(false), _) => server.public_reads = true,
        _ => {}
    }
    server.console = ui.enabled;
    Ok(server)
}

/// A TOML error without the line it quotes: the line may hold a token.
fn toml_error(text: &str, origin: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = text.get(..span.start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(":{line}:{column}")
    });
    format!("{origin}{}: {}", at.unwrap_or_default(), e.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_settings_take_defaults_and_bad_ones_say_why() {
        let c = Config::from_toml("[smtp]\nhost = \"mail.local\"\n", "c.toml").unwrap();
        let relay = c.smtp.unwrap();
        assert_eq!((relay.port, relay.security), (587, Security::Starttls));
        let c = Config::from_toml("[smtp]\nhost = \"m\"\ntls = \"tls\"\n", "c.toml").unwrap();
        assert_eq!(c.smtp.unwrap().port, 465);
        let bad = Config::from_toml("[smtp]\nhost = \"m\"\ntls = \"ssl\"\n", "c.toml");
        assert!(bad.unwrap_err().contains("unknown variant `ssl`"));
        let half = Config::from_toml("[smtp]\nhost = \"m\"\nusername = \"u\"\n", "c.toml");
        assert!(
            half.unwrap_err()
                .contains("both `username` and `password_env`")
        );
        let unset = Config::from_toml(
            "[smtp]\nhost = \"m\"\nusername = \"u\"\npassword_env = \"LEVER_TEST_SURELY_UNSET\"\n",
            "c.toml",
        );
        assert!(
            unset
                .unwrap_err()
                .contains("LEVER_TEST_SURELY_UNSET is not set")
        );
        let from = Config::from_toml(
            "[smtp]\nhost = \"m\"\nfrom = \"not an address\"\n",
            "c.toml",
        );
        assert!(from.unwrap_err().contains("from `not an address`"));
        // A syntax error names the place, never the line: it may hold a token.
        let leaky = Config::from_toml(
            "[[tokens]]\ntoken = \"s3cret-token-value-123\" actor = \"a\"\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(leaky.starts_with("c.toml:2:"), "{leaky}");
        assert!(!leaky.contains("s3cret"), "{leaky}");
    }
}
