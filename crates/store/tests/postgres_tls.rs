//! `sslmode` in the database URL, against the machine's PostgreSQL.

use switchyard_store::Application;
use switchyard_store::postgres::{PgOptions, PgStore, test_database};
use switchyard_store::prelude::*;

fn with(url: &str, params: &str) -> String {
    let joint = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joint}{params}")
}

async fn plain(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &with(url, "sslmode=disable&application_name=tls-test"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("plain connection");
    tokio::spawn(connection);
    client
}

async fn connect(url: String) -> Result<PgStore, String> {
    let mut options = PgOptions::new(url);
    options.connect_timeout = std::time::Duration::from_secs(5);
    PgStore::connect(&options).await.map_err(|e| e.to_string())
}

#[tokio::test]
#[ignore = "needs PostgreSQL (SWITCHYARD_TEST_POSTGRES_URL)"]
async fn the_database_url_sslmode_is_honoured() {
    let db = test_database().await;
    let url = db.url().to_owned();
    let admin = plain(&url).await;
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    // A test that ran must have checked something: a server without TLS is
    // a failure naming what is missing, not a silent pass.
    assert_eq!(
        ssl, "on",
        "this test needs a PostgreSQL server with ssl = on (Debian's default)"
    );

    let store = connect(with(&url, "sslmode=require"))
        .await
        .expect("sslmode=require connects");
    store
        .insert_app(Application {
            id: switchyard_core::AppId::generate_at(1),
            uid: None,
            name: "tls".into(),
            rate_limit: None,
            metadata: Default::default(),
            created_at: 1,
            updated_at: 1,
        })
        .await
        .expect("a write over TLS");
    let row = admin
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false)
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.datname = current_database() AND a.application_name = 'switchyard'",
            &[],
        )
        .await
        .unwrap();
    let (connections, all_encrypted): (i64, bool) = (row.get(0), row.get(1));
    assert!(connections > 0, "the store's connections are listed");
    assert!(all_encrypted, "every store connection is encrypted");

    // The local server's certificate is not signed by a public root.
    let refused = connect(with(&url, "sslmode=verify-full"))
        .await
        .err()
        .expect("verify-full refuses an unknown issuer");
    assert!(refused.contains("certificate"), "{refused}");

    // Trusting the server's own certificate satisfies verify-ca.
    let cert_file: String = admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        std::fs::metadata(&cert_file).is_ok(),
        "the verify-ca part needs the server's certificate {cert_file} readable here"
    );
    connect(with(
        &url,
        &format!("sslmode=verify-ca&sslrootcert={cert_file}"),
    ))
    .await
    .expect("verify-ca with the server's certificate as root");
}
