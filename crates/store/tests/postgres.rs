//! The storage conformance suite on PostgreSQL (`switchyard_store::conformance`),
//! a fresh database per check on the server at `SWITCHYARD_TEST_POSTGRES_URL`
//! (default: the local one). The tests are `#[ignore]`d unless asked for:
//! `scripts/test` asks when the server answers, fails under `CI=true` when it
//! does not, and otherwise leaves them reported as ignored/skipped. Once
//! asked, an unreachable server fails each test, naming it.

use switchyard_store::conformance::Backend;
use switchyard_store::postgres::{PgOptions, PgStore, test_database};

async fn postgres() -> Backend {
    let db = test_database().await;
    let store = PgStore::connect(&PgOptions::new(db.url().to_owned()))
        .await
        .expect("connect to scratch database")
        // Sealed, so every check also round-trips the secret columns
        // through encryption (the end-to-end tests run plain).
        .with_keyring(switchyard_store::conformance::test_keyring());
    // The scratch database is dropped after the store, when the check ends.
    Backend::new("postgres", store, db)
}

switchyard_store::conformance_suite!(
    postgres().await,
    #[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
);

#[tokio::test]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn secrets_are_sealed_and_resealed() {
    let db = test_database().await;
    let url = db.url().to_owned();
    switchyard_store::conformance::settings::secrets_are_sealed_and_resealed("postgres", |keys| {
        let url = url.clone();
        async move {
            let store: std::sync::Arc<dyn switchyard_store::Store> = std::sync::Arc::new(
                PgStore::connect(&PgOptions::new(url))
                    .await
                    .expect("connect to scratch database")
                    .with_keyring(std::sync::Arc::new(keys)),
            );
            store
        }
    })
    .await;
}
