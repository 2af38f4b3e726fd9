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
use super::email::{Security, SmtpRelay};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    smtp: Option<SmtpEntry>,
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
    /// delivered ("no [smtp] relay is configured").
    pub smtp: Option<SmtpRelay>,
}

impl Config {
    /// Reads a config file; `origin` names it in errors. Every environment variable it
    /// names must be set.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, String> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
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
        Ok(Config { tokens, smtp })
    }
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
    }
}
