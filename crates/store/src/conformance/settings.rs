//! Settings and idempotency records.

use super::*;

/// A setting is stored once by `init_setting` and then replaced; an
/// idempotency record is read back and purged by age.
pub async fn settings_and_idempotency_records(b: Backend) {
    let s = b.store.as_ref();
    assert!(s.init_setting("k", "v1").await.unwrap());
    assert!(!s.init_setting("k", "v2").await.unwrap(), "{}", b.name);
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v1"));
    s.replace_setting("k", "v3").await.unwrap();
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v3"));
    let r = StoredResponse {
        status: 201,
        body: "{}".into(),
        created_at: 100,
    };
    s.save_idempotent_response("key", r.clone()).await.unwrap();
    assert_eq!(s.idempotent_response("key").await.unwrap(), Some(r));
    assert_eq!(s.purge_idempotency(101).await.unwrap(), 1);
    assert_eq!(s.idempotent_response("key").await.unwrap(), None);
}

/// Secrets sealed under one key open only with it; a store holding the new
/// key and the old one opens both and re-seals everything under the new
/// one, after which the old key is no longer needed. `open` makes a store on
/// one and the same database with the given keys (each one is dropped before
/// the next is opened, as SQLite allows one process per file).
pub async fn secrets_are_sealed_and_resealed<F, Fut>(name: &str, open: F)
where
    F: Fn(switchyard_core::sealing::Keyring) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    use switchyard_core::sealing::Keyring;
    let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
    let ring = |keys: &[&str]| Keyring::parse(&keys.join(",")).expect("test keys");
    let backing = app(Some("sealed-app"), 1);
    let mut ep = endpoint(&backing.id, None, 1);
    ep.retired_secrets = vec![RetiredSecret {
        secret: EndpointSecret::generate(),
        expires_at: 5,
    }];
    // Endpoint credentials are a sealed column too.
    ep.auth = switchyard_core::endpoint_auth::EndpointAuth {
        http: Some(switchyard_core::endpoint_auth::HttpAuth::Bearer {
            token: "bearer-token".into(),
        }),
        oauth: None,
        mtls: Some(switchyard_core::endpoint_auth::MtlsIdentity {
            pem: "-----BEGIN PRIVATE KEY-----".into(),
            certificate_sha256: "00".into(),
        }),
    };
    let src_app = app(None, 2);
    let src = super::sources::source(&src_app.id, None, 2);
    let other_src_app = app(None, 3);
    let mut plain_src = super::sources::source(&other_src_app.id, None, 3);
    plain_src.token = "plain-token".into();
    {
        // A value stored before any key stays readable once there is one.
        let s = open(Keyring::plain()).await;
        s.insert_source(plain_src.clone(), other_src_app.clone())
            .await
            .unwrap();
    }
    {
        let s = open(ring(&[&old])).await;
        s.insert_app(backing.clone()).await.unwrap();
        s.insert_endpoint(ep.clone()).await.unwrap();
        s.insert_source(src.clone(), src_app.clone()).await.unwrap();
        assert_eq!(
            s.get_endpoint(&backing.id, ep.id.as_str()).await.unwrap(),
            Some(ep.clone()),
            "{name}"
        );
        assert_eq!(
            s.get_source(plain_src.id.as_str()).await.unwrap(),
            Some(plain_src.clone()),
            "{name}"
        );
    }
    for keys in [vec![new.as_str()], vec![]] {
        let s = open(ring(&keys)).await;
        assert!(
            matches!(
                s.get_endpoint(&backing.id, ep.id.as_str()).await,
                Err(StoreError::Sealed(_))
            ),
            "{name}: keys {keys:?} do not open what the old key sealed"
        );
        assert!(matches!(
            s.get_source(src.id.as_str()).await,
            Err(StoreError::Sealed(_))
        ));
    }
    {
        let s = open(ring(&[&new, &old])).await;
        assert_eq!(
            s.get_endpoint(&backing.id, ep.id.as_str()).await.unwrap(),
            Some(ep.clone()),
            "{name}: the old key still opens"
        );
        // Four endpoint columns and four of each of the two sources.
        assert_eq!(s.reseal_secrets().await.unwrap(), 12, "{name}");
        assert_eq!(s.reseal_secrets().await.unwrap(), 0, "{name}: done once");
    }
    let s = open(ring(&[&new])).await;
    assert_eq!(
        s.get_endpoint(&backing.id, ep.id.as_str()).await.unwrap(),
        Some(ep.clone()),
        "{name}: the new key alone opens everything"
    );
    assert_eq!(
        s.get_source(src.id.as_str()).await.unwrap(),
        Some(src.clone())
    );
    assert_eq!(
        s.get_source(plain_src.id.as_str()).await.unwrap(),
        Some(plain_src.clone())
    );
    assert_eq!(s.all_sources().await.unwrap().len(), 2);
}
