#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A secret column that does not open with the configured keys (the
    /// key that sealed it is not configured, or the value was altered).
    #[error("secret does not open: {0}")]
    Sealed(String),
    /// A value the database cannot hold (PostgreSQL text refuses U+0000);
    /// the request's fault, not the server's.
    #[error("value cannot be stored: {0}")]
    Unrepresentable(String),
    /// A conditional write found the row changed since it was read (or
    /// gone); the change is to be made again on what is stored now.
    #[error("{0} changed meanwhile")]
    Stale(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::CannotOpen
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let unavailable = match e.code() {
            // No server answer at all: the connection is gone or never was.
            None => true,
            Some(code) => {
                code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::TOO_MANY_CONNECTIONS,
                        SqlState::READ_ONLY_SQL_TRANSACTION,
                    ]
                    .contains(code)
            }
        };
        if matches!(
            e.code(),
            Some(c) if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *c == SqlState::UNTRANSLATABLE_CHARACTER
        ) {
            return StoreError::Unrepresentable(switchyard_core::error_chain(&e));
        }
        if unavailable {
            StoreError::Unavailable(switchyard_core::error_chain(&e))
        } else {
            StoreError::Database(switchyard_core::error_chain(&e))
        }
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        // Every pool error means no usable connection: the server is down,
        // refusing connections, or too slow to hand one out.
        StoreError::Unavailable(switchyard_core::error_chain(&e))
    }
}
