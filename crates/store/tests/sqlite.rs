//! The storage conformance suite on SQLite (`switchyard_store::conformance`),
//! a fresh database file per check, and what only SQLite has: reopening the
//! file.

use switchyard_store::conformance::{self, Backend};
use switchyard_store::prelude::*;
use switchyard_store::sqlite::{Durability, SqliteStore};

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    // Sealed, so every check also round-trips the secret columns through
    // encryption (the end-to-end tests run plain).
    let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal)
        .expect("open sqlite")
        .with_keyring(conformance::test_keyring());
    Backend::new("sqlite", store, dir)
}

switchyard_store::conformance_suite!(sqlite());

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let app_id = {
        let s = SqliteStore::open(&path, Durability::Normal).unwrap();
        s.insert_app(conformance::app(Some("keep"), 1))
            .await
            .unwrap()
            .id
    };
    let s = SqliteStore::open(&path, Durability::Full).unwrap();
    assert_eq!(s.get_app("keep").await.unwrap().unwrap().id, app_id);
}

#[tokio::test]
async fn secrets_are_sealed_and_resealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    conformance::settings::secrets_are_sealed_and_resealed("sqlite", |keys| {
        let path = path.clone();
        async move {
            let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
                SqliteStore::open(&path, Durability::Normal)
                    .unwrap()
                    .with_keyring(std::sync::Arc::new(keys)),
            );
            store
        }
    })
    .await;
}
