//! A PostgreSQL database of its own for each test, dropped when the test ends.
//! The server is the one `scripts/test.sh` makes sure of; its address comes
//! from `WATTSTREAM_TEST_POSTGRES` (default `postgres://root@127.0.0.1:5432/postgres`).
//! A test that needs PostgreSQL and cannot reach it fails, naming the address:
//! it never passes without having run.

use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The server tests connect to (a maintenance database on it).
pub fn admin_url() -> String {
    std::env::var("WATTSTREAM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".into())
}

pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    pub async fn create() -> TestDb {
        let admin = admin_url();
        let name = format!(
            "ws_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} (WATTSTREAM_TEST_POSTGRES): {e}; scripts/test.sh starts one")
            });
        tokio::spawn(conn);
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            client.batch_execute(&sql).await.expect("create a test database");
        }
        let url = replace_dbname(&admin, &name);
        TestDb { url, name }
    }
}

/// `admin` with its database replaced by `name` (URL or key=value form).
fn replace_dbname(admin: &str, name: &str) -> String {
    if admin.starts_with("postgres://") || admin.starts_with("postgresql://") {
        let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
        let scheme_end = base.find("://").expect("scheme") + 3;
        let path = base[scheme_end..].find('/').map(|i| scheme_end + i);
        let root = path.map_or(base, |i| &base[..i]);
        match query {
            Some(q) => format!("{root}/{name}?{q}"),
            None => format!("{root}/{name}"),
        }
    } else {
        let kept: Vec<&str> = admin
            .split_whitespace()
            .filter(|kv| !kv.starts_with("dbname="))
            .collect();
        format!("{} dbname={name}", kept.join(" "))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (admin_url(), self.name.clone());
        // A runtime of its own: the test's may be gone or inside a drop.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}
