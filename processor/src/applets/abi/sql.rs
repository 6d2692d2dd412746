//! The project's SQL database: `ws_set_sql_db` executes a statement,
//! `ws_get_sql_db` runs a query and answers a JSON array of rows. The request
//! format and the authorizer that keeps applets off internal tables are in
//! `applets::db`.

use wasmtime::Linker;
use wattstream_abi::imports::{ENV, WS_GET_SQL_DB, WS_SET_SQL_DB};
use wattstream_abi::{Level, Status};

use super::memory::{C, READ_MAX, read, write_out};
use crate::applets::db::SqlRequest;
use crate::applets::state::{Effect, HostState};

pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(ENV, WS_SET_SQL_DB, |mut c: C<'_>, ptr: i32, len: i32| -> i32 {
        let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
            return Status::FromVmFailed.code();
        };
        let Ok(req) = SqlRequest::parse(&bytes) else {
            c.data_mut()
                .log(Level::Error.name(), b"ws_set_sql_db: not a SQL request");
            return Status::Failed.code();
        };
        if !c.data_mut().room_for(Effect::Sql) {
            return Status::Failed.code();
        }
        let limit = c.data().applet_limits.sql_ms;
        let result = c.data_mut().db_mut().exec(&req, limit);
        match result {
            Ok(n) => {
                c.data_mut().effects.sql.push((req.statement, n));
                Status::Ok.code()
            }
            Err(e) => {
                c.data_mut()
                    .log(Level::Error.name(), format!("ws_set_sql_db: {e}").as_bytes());
                Status::Failed.code()
            }
        }
    })?;

    linker.func_wrap(
        ENV,
        WS_GET_SQL_DB,
        |mut c: C<'_>, ptr: i32, len: i32, out_ptr: i32, out_len: i32| {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return Ok(Status::FromVmFailed.code());
            };
            let Ok(req) = SqlRequest::parse(&bytes) else {
                return Ok(Status::Failed.code());
            };
            let limit = c.data().applet_limits.sql_ms;
            let result = c.data_mut().db_mut().query(&req, limit);
            match result {
                Ok(rows) => write_out(&mut c, &rows, out_ptr, out_len),
                Err(e) => {
                    c.data_mut()
                        .log(Level::Error.name(), format!("ws_get_sql_db: {e}").as_bytes());
                    Ok(Status::Failed.code())
                }
            }
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, wat};
    use super::*;

    const CREATE: &[u8] = br#"{"statement":"CREATE TABLE t (n INTEGER)","params":[]}"#;
    const INSERT: &[u8] = br#"{"statement":"INSERT INTO t VALUES (?)","params":[{"int64":5}]}"#;
    const SELECT: &[u8] = br#"{"statement":"SELECT n FROM t","params":[]}"#;
    const INTERNAL: &[u8] = br#"{"statement":"SELECT * FROM _ws_credits","params":[]}"#;

    #[test]
    fn statements_run_queries_answer_rows_and_internal_tables_are_refused() {
        let data = [
            (0u32, CREATE),
            (200, INSERT),
            (400, SELECT),
            (600, INTERNAL),
            (800, b"nope"),
        ];
        let mut g = Guest::new(
            &wat(&[(ENV, WS_SET_SQL_DB, 2), (ENV, WS_GET_SQL_DB, 4)], &data),
            link,
        );
        let len = |b: &[u8]| b.len() as i32;
        assert_eq!(g.call(WS_SET_SQL_DB, &[0, len(CREATE)]), 0);
        assert_eq!(g.call(WS_SET_SQL_DB, &[200, len(INSERT)]), 0);
        assert_eq!(g.call(WS_GET_SQL_DB, &[400, len(SELECT), 100, 104]), 0);
        assert_eq!(g.out(), br#"[{"n":5}]"#);
        assert_eq!(g.state().effects.sql.len(), 2);
        assert_eq!(
            g.call(WS_GET_SQL_DB, &[600, len(INTERNAL), 100, 104]),
            Status::Failed.code()
        );
        assert_eq!(g.call(WS_SET_SQL_DB, &[800, 4]), Status::Failed.code());
        assert_eq!(g.call(WS_SET_SQL_DB, &[65535, 4]), Status::FromVmFailed.code());
    }
}
