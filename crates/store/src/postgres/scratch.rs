//! Scratch databases for tests (the `testing` cargo feature): each test that
//! needs PostgreSQL gets a database of its own on the test server, dropped
//! when the test ends.

use super::{describe_url, tls};
use crate::Result;
use std::time::Duration;

/// The PostgreSQL server the test suites use: `SWITCHYARD_TEST_POSTGRES_URL`,
/// by default the local one.
pub fn test_server_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A scratch database on the test server, dropped (with any connections
/// still open to it) when this value is dropped, panic or not.
pub struct ScratchDatabase {
    url: String,
    name: String,
    admin: String,
}

impl ScratchDatabase {
    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run on a runtime's thread, where blocking on async work is
        // refused: the database is dropped from a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_scratch_database(&admin, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop scratch database {}: {e}", self.name);
        }
    }
}

/// A fresh scratch database on the test server, for one test; it is dropped
/// when the returned value is. Tests calling this carry
/// `#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]`, so they
/// run only when asked (`--include-ignored`, nextest's `--run-ignored all`),
/// which `scripts/test` does once the server answers; a run without it
/// reports them as ignored or skipped. Once asked to run, an unreachable
/// server is a failure naming it, never a silent pass.
pub async fn test_database() -> ScratchDatabase {
    let admin = test_server_url();
    match create_scratch_database(&admin).await {
        Ok(url) => {
            let name = url
                .split('?')
                .next()
                .and_then(|base| base.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            ScratchDatabase { url, name, admin }
        }
        Err(e) => panic!(
            "this test needs PostgreSQL at {} and it is unreachable: {e}\n\
             (scripts/test runs the PostgreSQL tests only when the server answers; \
             set SWITCHYARD_TEST_POSTGRES_URL to use another server)",
            describe_url(&admin)
        ),
    }
}

async fn drop_scratch_database(admin_url: &str, name: &str) -> Result<()> {
    let (mut config, tls) = tls::parse(admin_url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await?;
    driver.abort();
    Ok(())
}

/// Creates an empty, uniquely named database next to the one `admin_url`
/// points at and returns its URL; the test suites give each test its own.
/// Scratch databases left by earlier runs (older than an hour) are dropped.
async fn create_scratch_database(admin_url: &str) -> Result<String> {
    let (mut config, tls) = tls::parse(admin_url)?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(connection);
    let now = switchyard_core::timefmt::now_ms() / 1000;
    let stale = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'switchyard_scratch_%'",
            &[],
        )
        .await?;
    for row in stale {
        let name: String = row.try_get(0)?;
        let born = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if born + 3_600 < now {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
    let name = format!("switchyard_scratch_{now}_{:08x}", rand_suffix());
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    driver.abort();
    Ok(with_database(admin_url, &name))
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// The same connection URL with another database name.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_is_replaced_or_added() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "y"),
            "postgresql://h/y?sslmode=disable"
        );
    }
}
