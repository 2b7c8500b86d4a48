//! The embedded backend: one SQLite file in WAL mode, one group-committing
//! writer thread and a small pool of reader connections.

mod apps;
mod attempts;
mod broker_sources;
mod checkpoint;
mod cluster;
mod deliveries;
mod endpoints;
mod event_types;
mod messages;
mod settings;
mod sources;
mod tokens;
mod writer;

use crate::query::{self, Arg, Dialect, Query};
use crate::rows::*;
use crate::*;
use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, OpenFlags, Row, ToSql, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use switchyard_core::sealing::Keyring;
use tokio::sync::Semaphore;
use writer::Writer;

const READERS: usize = 4;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: survives a killed process; the last
    /// commits can be lost only if the machine itself loses power.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is fsynced.
    Full,
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    /// Held for the store's life: one process per database file.
    _lock: Arc<std::fs::File>,
    /// Seals and opens the secret columns (`rows::SEALED`).
    keys: Arc<Keyring>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

/// Page cache per connection, in KiB: the writer keeps the hot tail of every
/// index; readers and the checkpointer need little.
const WRITER_CACHE_KIB: u32 = 16_384;

const READER_CACHE_KIB: u32 = 4_096;

fn open(path: &Path, durability: Durability, cache_kib: u32) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF;
         PRAGMA cache_size=-{cache_kib}; PRAGMA temp_store=MEMORY;"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Schema steps in order; the database's `user_version` counts those applied.
const MIGRATIONS: [&str; 12] = [
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
    include_str!("schema5.sql"),
    include_str!("schema6.sql"),
    include_str!("schema7.sql"),
    include_str!("schema8.sql"),
    include_str!("schema9.sql"),
    include_str!("schema10.sql"),
    include_str!("schema11.sql"),
    include_str!("schema12.sql"),
];

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Database(format!(
            "the database has schema version {version}, newer than this binary ({SCHEMA_VERSION})"
        )));
    }
    for (done, step) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        conn.execute_batch(&format!(
            "BEGIN; {step} PRAGMA user_version = {done}; COMMIT;"
        ))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub fn open(path: impl Into<PathBuf>, durability: Durability) -> Result<Self> {
        let path = path.into();
        let lock = lock_database(&path)?;
        let conn = open(&path, durability, WRITER_CACHE_KIB)?;
        migrate(&conn)?;
        // Only this process uses the file, so leases left by an earlier one
        // are void; the next lease call takes them all afresh.
        conn.execute_batch("UPDATE leases SET node_id = NULL, expires_at = 0;")?;
        // Checkpoints run on their own thread; the writer only copies the
        // last frames when the log must rewind (see `checkpoint`).
        conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        let rewind = checkpoint::RewindRequest::default();
        checkpoint::start(open(&path, durability, READER_CACHE_KIB)?, rewind.clone());
        Ok(Self {
            writer: Writer::start(conn, rewind),
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(READERS),
            }),
            _lock: Arc::new(lock),
            keys: Arc::new(Keyring::plain()),
        })
    }

    /// Seals secrets with `keys` from now on (see [`Keyring`]); without
    /// this they are stored plain.
    pub fn with_keyring(mut self, keys: Arc<Keyring>) -> Self {
        self.keys = keys;
        self
    }

    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let _permit = readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("reader pool closed".into()))?;
        let pool = readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => open(&pool.path, Durability::Normal, READER_CACHE_KIB)?,
            };
            let result = work(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }

    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write(work).await
    }

    /// For the hot paths, whose jobs fail only when the database does.
    async fn write_fast<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.writer.write_unisolated(work).await
    }
}

/// Two processes writing one SQLite file would each believe they own every
/// partition; the second is refused instead.
fn lock_database(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another switchyard process (use PostgreSQL to run several nodes)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

// ---- row mapping -----------------------------------------------------------

/// A payload as SQLite keeps it: TEXT when it is UTF-8, so the database stays
/// readable with the `sqlite3` shell and older rows need no migration; BLOB
/// otherwise.
pub(crate) fn payload_value(bytes: &[u8]) -> rusqlite::types::ToSqlOutput<'_> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    ToSqlOutput::Borrowed(match std::str::from_utf8(bytes) {
        Ok(text) => ValueRef::Text(text.as_bytes()),
        Err(_) => ValueRef::Blob(bytes),
    })
}

impl Columns for Row<'_> {
    fn opt_text(&self, column: &str) -> Result<Option<String>> {
        Ok(self.get(column)?)
    }

    fn opt_bytes(&self, column: &str) -> Result<Option<bytes::Bytes>> {
        use rusqlite::types::ValueRef;
        // Payloads that are UTF-8 are stored as TEXT (as every version
        // before byte payloads did), others as BLOB.
        Ok(match self.get_ref(column)? {
            ValueRef::Null => None,
            ValueRef::Text(b) | ValueRef::Blob(b) => Some(bytes::Bytes::copy_from_slice(b)),
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{column} has type {}",
                    other.data_type()
                )));
            }
        })
    }

    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.get(column)?)
    }
}

/// SQLite's way with the shared listings: numbered `?N` placeholders, and
/// its JSON functions where PostgreSQL has arrays and `jsonb`.
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    fn one_of(q: &mut Query<Self>, column: &str, values: &[String]) {
        let placeholders: Vec<String> = values
            .iter()
            .map(|v| q.bind(Arg::Text(v.clone())))
            .collect();
        q.push(&format!(" AND {column} IN ({})", placeholders.join(",")));
    }

    fn json_array_has(q: &mut Query<Self>, column: &str, value: &str) {
        let p = q.bind(Arg::Text(value.to_owned()));
        q.push(&format!(
            " AND EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {p})"
        ));
    }
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Arg::Text(v) => v.to_sql(),
            Arg::Int2(v) => v.to_sql(),
            Arg::Int8(v) => v.to_sql(),
            // SQLite has no arrays: a list travels as JSON text, for json_each.
            Arg::TextArray(v) => serde_json::to_string(v)
                .map(ToSqlOutput::from)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
        }
    }
}

impl SqliteStore {
    /// Runs one of the shared listings on a reader.
    async fn list<T: Send + 'static>(
        &self,
        q: Query<Sqlite>,
        map: impl Fn(&Row) -> Result<T> + Send + 'static,
    ) -> Result<Vec<T>> {
        self.read(move |conn| query_all(conn, q.sql(), params_from_iter(q.args()), map))
            .await
    }
}

fn query_all<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    mut map: impl FnMut(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row of a query, if any (the twin of the PostgreSQL `fetch_one`).
fn query_first<T>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    map: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    rows.next()?.map(map).transpose()
}

fn unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn conflict_or(e: rusqlite::Error, what: &str) -> StoreError {
    if unique_violation(&e) {
        StoreError::Conflict(what.into())
    } else {
        e.into()
    }
}
