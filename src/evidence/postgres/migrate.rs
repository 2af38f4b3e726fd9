//! `lever evidence migrate`: the one step that creates or alters a PostgreSQL store, run as
//! the schema's owner. It applies the versioned migrations, and creates (or keeps) two
//! roles: a *writer* that may only INSERT and SELECT evidence (what `lever serve` and
//! `lever run` connect as), and an *auditor* that may only SELECT (what `lever evidence
//! verify` needs). Neither owns anything, so neither can disable a trigger, replace the
//! trigger function, or drop the schema. Nothing else in Lever creates or alters a table.

use super::{MIGRATIONS, PgStore, error_text, split_schema};
use crate::evidence::StoreError;
use postgres::{Client, NoTls};
use std::collections::HashSet;

/// The roles a migration grants to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// INSERT and SELECT on the evidence.
    pub writer: String,
    /// SELECT on the evidence.
    pub auditor: String,
}

impl Roles {
    /// `<schema>_writer` and `<schema>_auditor`.
    pub fn for_schema(schema: &str) -> Roles {
        Roles {
            writer: format!("{schema}_writer"),
            auditor: format!("{schema}_auditor"),
        }
    }
}

fn identifier(name: &str) -> Result<String, String> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(format!("\"{name}\""))
    } else {
        Err(format!(
            "role {name:?} must be a lowercase identifier (a-z, 0-9, _)"
        ))
    }
}

/// The schema's name without quotes.
pub(crate) fn schema_name(url: &str) -> Result<String, StoreError> {
    let (_, quoted) = split_schema(url)?;
    Ok(quoted.trim_matches('"').to_string())
}

/// Creates or upgrades the store at `url` as its owner; `roles` (when given) are created
/// if missing and granted what they need. Returns what was done, a line each.
pub fn migrate(url: &str, roles: Option<&Roles>) -> Result<Vec<String>, StoreError> {
    let (conn, s) = split_schema(url)?;
    let db = |e: postgres::Error| StoreError::database(url, error_text(&e));
    let mut client = Client::connect(&conn, NoTls).map_err(db)?;
    let mut tx = client.transaction().map_err(db)?;
    // One migrator at a time per schema, across processes.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("lever-migrate-{s}")],
    )
    .map_err(db)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version int PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE OR REPLACE FUNCTION {s}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION 'lever evidence is append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                 USING ERRCODE = 'insufficient_privilege';
         END $$;"
    ))
    .map_err(db)?;
    let applied: HashSet<i32> = tx
        .query(&format!("SELECT version FROM {s}.schema_migrations"), &[])
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    if applied.is_empty() {
        tx.batch_execute(&format!(
            "CREATE TRIGGER migrations_append_only BEFORE UPDATE OR DELETE ON {s}.schema_migrations
                 FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
             CREATE TRIGGER migrations_no_truncate BEFORE TRUNCATE ON {s}.schema_migrations
                 FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
             ALTER TABLE {s}.schema_migrations ENABLE ALWAYS TRIGGER migrations_append_only;
             ALTER TABLE {s}.schema_migrations ENABLE ALWAYS TRIGGER migrations_no_truncate;"
        ))
        .map_err(db)?;
    }
    for (version, description, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(&sql.replace("{s}", &s)).map_err(db)?;
        tx.execute(
            &format!("INSERT INTO {s}.schema_migrations (version, description) VALUES ($1, $2)"),
            &[version, description],
        )
        .map_err(db)?;
        done.push(format!("applied migration {version}: {description}"));
    }
    if let Some(roles) = roles {
        done.extend(grant(&mut tx, &s, roles).map_err(|e| StoreError::database(url, e))?);
    }
    tx.commit().map_err(db)?;
    if done.is_empty() {
        done.push(format!("schema {s} is up to date"));
    }
    Ok(done)
}

/// Creates the roles if missing, and grants each exactly what it needs.
fn grant(
    tx: &mut postgres::Transaction<'_>,
    s: &str,
    roles: &Roles,
) -> Result<Vec<String>, String> {
    let writer = identifier(&roles.writer)?;
    let auditor = identifier(&roles.auditor)?;
    let mut done = Vec::new();
    for (name, quoted) in [(&roles.writer, &writer), (&roles.auditor, &auditor)] {
        let exists = tx
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[name])
            .map_err(|e| error_text(&e))?
            .is_some();
        if !exists {
            tx.batch_execute(&format!("CREATE ROLE {quoted} LOGIN"))
                .map_err(|e| {
                    format!(
                        "creating role {name}: {} (create it yourself, then migrate again)",
                        error_text(&e)
                    )
                })?;
            done.push(format!("created role {name}"));
        }
    }
    tx.batch_execute(&format!(
        "REVOKE ALL ON SCHEMA {s} FROM PUBLIC;
         GRANT USAGE ON SCHEMA {s} TO {writer}, {auditor};
         GRANT SELECT, INSERT ON {s}.records TO {writer};
         GRANT SELECT, INSERT, UPDATE ON {s}.budgets TO {writer};
         GRANT SELECT ON {s}.records, {s}.budgets, {s}.schema_migrations TO {writer}, {auditor};"
    ))
    .map_err(|e| error_text(&e))?;
    done.push(format!(
        "granted {} INSERT and SELECT (and UPDATE of budget counters), {} SELECT",
        roles.writer, roles.auditor
    ));
    Ok(done)
}

impl PgStore {
    /// Checks that the store is migrated to this build's version; warns when the
    /// connection's role owns the schema or is a superuser (it could rewrite evidence).
    pub(super) fn check_schema(&mut self, warn_power: bool) -> Result<(), StoreError> {
        let s = self.schema.clone();
        let latest = MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
        let row = self.client.query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations"),
            &[],
        );
        let version: i32 = match row {
            Ok(r) => r.get(0),
            Err(e)
                if e.as_db_error()
                    .is_some_and(|d| matches!(d.code().code(), "42P01" | "3F000")) =>
            {
                return Err(self.db(format!(
                    "there is no evidence store in schema {s}: create it with `lever evidence migrate --evidence URL`, as the schema's owner"
                )));
            }
            Err(e) => return Err(self.db(error_text(&e))),
        };
        if version < latest {
            return Err(self.db(format!(
                "the store in schema {s} is at version {version}, this build needs {latest}: run `lever evidence migrate --evidence URL` as the schema's owner"
            )));
        }
        if warn_power {
            self.warn_if_powerful()?;
        }
        Ok(())
    }

    fn warn_if_powerful(&mut self) -> Result<(), StoreError> {
        let name = self.schema.trim_matches('"').to_string();
        let row = self
            .client
            .query_one(
                "SELECT current_user::text, r.rolsuper,
                        coalesce((SELECT pg_get_userbyid(n.nspowner) = current_user
                                  FROM pg_namespace n WHERE n.nspname = $1), false)
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[&name],
            )
            .map_err(|e| self.db(error_text(&e)))?;
        let (user, superuser, owner): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        if superuser || owner {
            let what = if superuser {
                "a superuser"
            } else {
                "the schema's owner"
            };
            eprintln!(
                "lever: warning: the evidence store is written as {user}, {what}: it can disable the append-only triggers and rewrite evidence; connect as the writer role `lever evidence migrate` creates ({name}_writer)"
            );
        }
        Ok(())
    }
}
