//! Applet SQL on PostgreSQL (`ws_set_sql_db` / `ws_get_sql_db`), kept inside
//! the project by privileges rather than by a statement filter:
//!
//! - Each project has a role of its own (`NOLOGIN`) owning a schema of its own,
//!   `ws_applet_NAME`, where its tables live. It has no privilege on anything
//!   else: not the host's `_ws_*` tables (schema `ws_project_NAME`), not the
//!   stream, registry or ledger, not another project.
//! - A statement runs inside a `SECURITY DEFINER` function that role owns, so
//!   it has the role's privileges, and PostgreSQL refuses `SET ROLE` and
//!   `set_config('role', …)` there: the statement cannot become the
//!   processor's user. One statement per call (as on SQLite), and
//!   transaction control is refused inside a function.
//! - The host takes back what a statement may leave on the session: after
//!   each call it sets the batch's `search_path` again (with `pg_temp` last),
//!   so a table or function an applet made cannot stand in for a host one;
//!   after each batch it resets the session and drops temporary tables and
//!   advisory locks (`applets::lease`).
//! - Limits: `statement_timeout` from the applet's `sql_ms`, at most
//!   [`MAX_ROWS`] rows and [`MAX_RESULT_BYTES`] bytes of JSON, statements of
//!   at most [`MAX_SQL_LENGTH`] bytes.
//!
//! Parameters (`?` in order, as W3bstream's SDKs write them, or `$1`, `$2`,
//! …) are inlined as typed literals (so `?` is never the JSON operator here): the statement is the applet's own SQL
//! either way, so a literal can only change what the applet could have
//! written itself.

use sha2::{Digest, Sha256};

use super::db::{DbError, MAX_RESULT_BYTES, MAX_ROWS, MAX_SQL_LENGTH, Param, SqlRequest};
use crate::store::sql::{Sql, SqlError, Val};

/// The schema of a project's own tables.
pub fn schema(project: &str) -> String {
    format!("\"ws_applet_{project}\"")
}

/// The project's role: roles are per cluster, so the database is in the name
/// (hashed: names stop at 63 bytes).
fn role(database: &str, project: &str) -> String {
    let h = Sha256::new()
        .chain_update(database.as_bytes())
        .chain_update([0])
        .chain_update(project.as_bytes())
        .finalize();
    format!("ws_applet_{}", hex::encode(&h[..12]))
}

/// Makes the project's role, schema and the two functions statements run in
/// (call under the definitions lock).
pub fn ensure(c: &dyn Sql, project: &str) -> Result<(), SqlError> {
    let database = c
        .row("SELECT current_database()", &[])?
        .map(|r| r[0].text(0).map(str::to_string))
        .transpose()?
        .unwrap_or_default();
    let role = role(&database, project);
    let exists = c
        .row(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ?1",
            &[role.as_str().into()],
        )?
        .is_some();
    if !exists {
        c.batch(&format!("CREATE ROLE {role} NOLOGIN"))?;
    }
    let s = schema(project);
    c.batch(&format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {role};
         CREATE OR REPLACE FUNCTION {s}.ws_exec(q text) RETURNS bigint
           LANGUAGE plpgsql SECURITY DEFINER SET search_path = {s}, pg_temp
           AS $f$ DECLARE n bigint; BEGIN EXECUTE q; GET DIAGNOSTICS n = ROW_COUNT; RETURN n; END $f$;
         DROP FUNCTION IF EXISTS {s}.ws_query(text, bigint);
         CREATE FUNCTION {s}.ws_query(q text, max_rows bigint) RETURNS SETOF json
           LANGUAGE plpgsql SECURITY DEFINER SET search_path = {s}, pg_temp
           AS $f$ BEGIN RETURN QUERY EXECUTE 'SELECT pg_catalog.to_json(t) FROM (' || q || ') AS t LIMIT ' || max_rows; END $f$;
         ALTER FUNCTION {s}.ws_exec(text) OWNER TO {role};
         ALTER FUNCTION {s}.ws_query(text, bigint) OWNER TO {role};
         REVOKE ALL ON FUNCTION {s}.ws_exec(text), {s}.ws_query(text, bigint) FROM PUBLIC;"
    ))
}

/// Executes an applet statement; the rows it changed.
pub fn exec(c: &dyn Sql, project: &str, req: &SqlRequest, limit_ms: u64) -> Result<usize, DbError> {
    let q = inline(req)?;
    let n = guarded(c, limit_ms, || {
        c.row(
            &format!("SELECT {}.ws_exec(?1)", schema(project)),
            &[q.as_str().into()],
        )
    })?;
    Ok(n.map_or(Ok(0), |r| r[0].int(0))?.max(0) as usize)
}

/// Runs an applet query; a JSON array of row objects.
pub fn query(c: &dyn Sql, project: &str, req: &SqlRequest, limit_ms: u64) -> Result<Vec<u8>, DbError> {
    let q = inline(req)?;
    let rows = guarded(c, limit_ms, || {
        c.rows(
            &format!("SELECT {}.ws_query(?1, ?2)::text", schema(project)),
            &[q.as_str().into(), Val::Int(MAX_ROWS as i64 + 1)],
        )
    })?;
    if rows.len() > MAX_ROWS {
        return Err(DbError::Request(format!(
            "the result has more than {MAX_ROWS} rows"
        )));
    }
    let mut out = Vec::with_capacity(2 + rows.len() * 32);
    out.push(b'[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r[0].text(0)?.as_bytes());
        if out.len() > MAX_RESULT_BYTES {
            return Err(DbError::Request(format!(
                "the result is larger than {MAX_RESULT_BYTES} bytes"
            )));
        }
    }
    out.push(b']');
    Ok(out)
}

/// Runs `f` under the statement deadline, in a savepoint of its own so a
/// failed statement leaves the call's transaction usable (the call decides
/// what to do with the error).
fn guarded<T>(c: &dyn Sql, limit_ms: u64, f: impl FnOnce() -> Result<T, SqlError>) -> Result<T, DbError> {
    c.batch(&format!(
        "SAVEPOINT applet_sql; SET LOCAL statement_timeout = {}",
        limit_ms.max(1)
    ))?;
    let out = f();
    match &out {
        Ok(_) => c.batch("SET LOCAL statement_timeout = 0; RELEASE applet_sql")?,
        Err(_) => c.batch("ROLLBACK TO applet_sql; RELEASE applet_sql")?,
    }
    Ok(out?)
}

/// The statement with `$n` replaced by its parameter as a literal, outside
/// quoted strings, quoted identifiers, dollar quotes and comments.
pub fn inline(req: &SqlRequest) -> Result<String, DbError> {
    let sql = req.statement.as_str();
    if sql.len() > MAX_SQL_LENGTH as usize {
        return Err(DbError::Request(format!(
            "statements stop at {MAX_SQL_LENGTH} bytes"
        )));
    }
    let params = literals(req)?;
    let b = sql.as_bytes();
    let (mut out, mut i) = (String::with_capacity(sql.len()), 0);
    let mut next = 0; // the `?` placeholders, in order
    while i < b.len() {
        let start = i;
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i, b[i]),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2),
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = (i + 1..b.len())
                    .find(|&j| !b[j].is_ascii_digit())
                    .unwrap_or(b.len());
                let n: usize = sql[i + 1..end].parse().map_err(|_| bad_param(&sql[i..end]))?;
                let lit = n
                    .checked_sub(1)
                    .and_then(|k| params.get(k))
                    .ok_or_else(|| bad_param(&sql[i..end]))?;
                out.push_str(lit);
                i = end;
                continue;
            }
            b'$' => {
                // A dollar quote: $tag$ … $tag$.
                let tag_end = (i + 1..b.len()).find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'));
                match tag_end {
                    Some(e) if b[e] == b'$' => {
                        let tag = &b[i..=e];
                        i = find(b, e + 1, tag).map_or(b.len(), |p| p + tag.len());
                    }
                    _ => i += 1,
                }
            }
            b'?' => {
                out.push_str(params.get(next).ok_or_else(|| bad_param("?"))?);
                next += 1;
                i += 1;
                continue;
            }
            b';' if !sql[i + 1..].trim().is_empty() => {
                return Err(DbError::Request("one statement per call".into()));
            }
            _ => i += 1,
        }
        out.push_str(&sql[start..i]);
    }
    Ok(out)
}

fn bad_param(p: &str) -> DbError {
    DbError::Request(format!("{p}: no such parameter"))
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    (from..=b.len().saturating_sub(needle.len())).find(|&j| b[j..].starts_with(needle))
}

/// The end of the quoted run starting at `i` (`''` or `""` inside continue it).
fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// The request's parameters as PostgreSQL literals.
fn literals(req: &SqlRequest) -> Result<Vec<String>, DbError> {
    req.typed_params()?
        .into_iter()
        .map(|p| {
            Ok(match p {
                Param::Int(i) => i.to_string(),
                Param::Real(f) if f.is_finite() => format!("{f:?}::float8"),
                Param::Real(f) => return Err(DbError::Request(format!("parameter float64: {f}"))),
                Param::Text(t) => text(&t),
                Param::Bool(b) => (if b { "TRUE" } else { "FALSE" }).into(),
                Param::Bytes(b) => format!("'\\x{}'::bytea", hex::encode(b)),
            })
        })
        .collect()
}

/// A string literal that means `s` whatever `standard_conforming_strings` is:
/// `E'…'` with quotes and backslashes escaped. NUL cannot be in PostgreSQL
/// text, so it is refused.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for ch in s.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(ch),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn req(statement: &str, params: serde_json::Value) -> SqlRequest {
        SqlRequest::parse(
            serde_json::json!({"statement": statement, "params": params})
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn parameters_become_literals_only_where_they_are_parameters() {
        let r = req(
            "INSERT INTO t VALUES ($1, $2, $3, '$1', \"$2\", $$ $3 $$, $q$ $1 $q$) -- $1\n/* $2 */ RETURNING $4",
            serde_json::json!([{"int64": 7}, {"string": "it's \\ here"}, {"bytes": "AAE="}, {"bool": true}]),
        );
        assert_eq!(
            inline(&r).unwrap(),
            "INSERT INTO t VALUES (7, E'it''s \\\\ here', '\\x0001'::bytea, '$1', \"$2\", $$ $3 $$, $q$ $1 $q$) -- $1\n/* $2 */ RETURNING TRUE"
        );
        assert!(inline(&req("SELECT $2", serde_json::json!([{"int64": 1}]))).is_err());
        assert!(inline(&req("SELECT $0", serde_json::json!([{"int64": 1}]))).is_err());
        assert!(inline(&req("SELECT 1; DROP TABLE t", serde_json::json!([]))).is_err());
        assert!(inline(&req("SELECT ';'; ", serde_json::json!([]))).is_ok());
        assert_eq!(
            inline(&req(
                "VALUES (?, ?, '?')",
                serde_json::json!([{"int64": 1}, {"string": "x"}])
            ))
            .unwrap(),
            "VALUES (1, E'x', '?')"
        );
        assert!(inline(&req("VALUES (?)", serde_json::json!([]))).is_err());
    }
}

#[cfg(test)]
#[path = "pg_sql_tests.rs"]
mod attacks;
