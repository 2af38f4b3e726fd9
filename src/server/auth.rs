//! Bearer tokens: each maps to an actor and roles in the server's TOML config. The role
//! `read` may read evidence, alerts and run state (`[server] public_reads` opens them to
//! everyone); the role `ingest` may start runs and send steps when `[server]
//! require_ingest_token` is set; `admin` tokens may deploy, and read.
//!
//! ```toml
//! [[tokens]]
//! token_env = "LEVER_TOKEN_BOB"     # or: token = "..." (not recommended)
//! actor = "bob@example.com"
//! roles = ["sre-oncall"]
//! admin = false                     # admin tokens may deploy artifacts
//! ```
//!
//! Tokens are compared in constant time, against every configured token.

use serde::Deserialize;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenEntry {
    token: Option<String>,
    token_env: Option<String>,
    actor: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub actor: String,
    pub roles: Vec<String>,
    pub admin: bool,
}

impl Principal {
    /// May read evidence, alerts and run state.
    pub(crate) fn may_read(&self) -> bool {
        self.admin || self.roles.iter().any(|r| r == "read")
    }

    /// May start runs and send steps when ingest needs a token.
    pub(crate) fn may_ingest(&self) -> bool {
        self.roles.iter().any(|r| r == "ingest")
    }
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(Vec<u8>, Principal)>,
}

impl Tokens {
    /// The `[[tokens]]` of a config file; a token given by `token_env` must be set.
    pub(super) fn from_entries(tokens: Vec<TokenEntry>, origin: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for (i, t) in tokens.into_iter().enumerate() {
            let token = match (t.token, t.token_env) {
                (Some(token), None) => token,
                (None, Some(var)) => std::env::var(&var).map_err(|_| {
                    format!(
                        "{origin}: tokens[{i}] ({}): environment variable {var} is not set",
                        t.actor
                    )
                })?,
                _ => {
                    return Err(format!(
                        "{origin}: tokens[{i}] ({}): give exactly one of `token` and `token_env`",
                        t.actor
                    ));
                }
            };
            if token.len() < 16 {
                return Err(format!(
                    "{origin}: tokens[{i}] ({}): a token must be at least 16 characters",
                    t.actor
                ));
            }
            if let Some((_, other)) = entries
                .iter()
                .find(|(known, _): &&(Vec<u8>, Principal)| known.as_slice() == token.as_bytes())
            {
                return Err(format!(
                    "{origin}: tokens[{i}] ({}) has the same token as the one of {}: every token must name one actor",
                    t.actor, other.actor
                ));
            }
            entries.push((
                token.into_bytes(),
                Principal {
                    actor: t.actor,
                    roles: t.roles,
                    admin: t.admin,
                },
            ));
        }
        Ok(Tokens { entries })
    }

    /// The principal of an `Authorization` header value, if it is a known bearer token.
    pub(crate) fn principal(&self, authorization: Option<&str>) -> Option<&Principal> {
        let given = authorization?.strip_prefix("Bearer ")?.trim().as_bytes();
        // Compare with every token, so that the time taken does not say which matched.
        let mut found = None;
        for (token, principal) in &self.entries {
            if bool::from(token.as_slice().ct_eq(given)) {
                found = Some(principal);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str, origin: &str) -> Result<Tokens, String> {
        super::super::Config::from_toml(text, origin).map(|c| c.tokens)
    }

    #[test]
    fn tokens_map_to_actors_and_bad_configs_say_why() {
        let t = from_toml(
            "[[tokens]]\ntoken = \"0123456789abcdef\"\nactor = \"bob\"\nroles = [\"sre\"]\n",
            "c.toml",
        )
        .unwrap();
        let p = t.principal(Some("Bearer 0123456789abcdef")).unwrap();
        assert_eq!(
            (p.actor.as_str(), p.roles.as_slice()),
            ("bob", &["sre".to_string()][..])
        );
        assert!(t.principal(Some("Bearer 0123456789abcdeX")).is_none());
        assert!(t.principal(Some("0123456789abcdef")).is_none());
        assert!(t.principal(None).is_none());
        let short = from_toml("[[tokens]]\ntoken = \"x\"\nactor = \"a\"\n", "c.toml");
        assert!(short.unwrap_err().contains("at least 16"));
        let unset = from_toml(
            "[[tokens]]\ntoken_env = \"LEVER_TEST_SURELY_UNSET_VAR\"\nactor = \"a\"\n",
            "c.toml",
        );
        assert!(
            unset
                .unwrap_err()
                .contains("LEVER_TEST_SURELY_UNSET_VAR is not set")
        );
        let unknown = from_toml(
            "[[tokens]]\ntoken = \"0123456789abcdef\"\nactor = \"a\"\nrole = \"x\"\n",
            "c.toml",
        );
        assert!(unknown.unwrap_err().contains("unknown field"));
        let twice = from_toml(
            "[[tokens]]\ntoken = \"0123456789abcdef\"\nactor = \"a\"\n[[tokens]]\ntoken = \"0123456789abcdef\"\nactor = \"b\"\n",
            "c.toml",
        );
        assert!(
            twice
                .unwrap_err()
                .contains("the same token as the one of a")
        );
    }
}
