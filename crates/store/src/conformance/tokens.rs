//! API tokens and app-portal sessions: found by hash, listed by kind,
//! expired one by one or per application and session, purged.

use super::*;
use switchyard_core::TokenId;

fn token(kind: TokenKind, app: Option<&AppId>, session: Option<&str>, at: u64) -> ApiToken {
    ApiToken {
        id: TokenId::generate_at(at),
        kind,
        name: format!("t{at}"),
        token_sha256: format!("{at:064x}"),
        censored: "syk_abc…".into(),
        app_id: app.cloned(),
        read_only: at.is_multiple_of(2),
        capabilities: Some(vec!["ViewBase".into()]),
        session_id: session.map(str::to_owned),
        created_at: at,
        expires_at: None,
    }
}

/// Every token operation, as the auth service uses them.
pub async fn tokens_are_found_by_hash_listed_and_expired(b: Backend) {
    let s = b.store.as_ref();
    let app = AppId::generate_at(1);
    let api = s
        .insert_token(token(TokenKind::Api, None, None, 1))
        .await
        .unwrap();
    let api2 = s
        .insert_token(token(TokenKind::Api, Some(&app), None, 2))
        .await
        .unwrap();
    let p1 = s
        .insert_token(token(TokenKind::AppPortal, Some(&app), Some("alice"), 3))
        .await
        .unwrap();
    let p2 = s
        .insert_token(token(TokenKind::AppPortal, Some(&app), Some("bob"), 4))
        .await
        .unwrap();
    assert!(
        matches!(
            s.insert_token(token(TokenKind::Api, None, None, 1)).await,
            Err(StoreError::Conflict(_))
        ),
        "{}: one row per token value",
        b.name
    );
    assert_eq!(
        s.token_by_hash(&api.token_sha256).await.unwrap(),
        Some(api.clone()),
        "{}",
        b.name
    );
    assert_eq!(s.get_token(&p1.id).await.unwrap(), Some(p1.clone()));
    assert_eq!(s.token_by_hash(&"f".repeat(64)).await.unwrap(), None);

    let page = PageRequest {
        limit: 1,
        iterator: None,
        order: Order::Ascending,
    };
    let first = s.list_tokens(TokenKind::Api, &page).await.unwrap();
    assert_eq!(first.data, vec![api.clone()], "{}", b.name);
    assert!(!first.done);
    let next = PageRequest {
        iterator: first.iterator,
        ..page
    };
    let second = s.list_tokens(TokenKind::Api, &next).await.unwrap();
    assert_eq!(second.data, vec![api2.clone()]);
    assert!(
        second.done,
        "{}: portal sessions are not API tokens",
        b.name
    );

    // Expiring only brings an expiry forward.
    assert!(s.expire_token(&api.id, 100).await.unwrap());
    assert!(s.expire_token(&api.id, 500).await.unwrap());
    assert_eq!(
        s.get_token(&api.id).await.unwrap().unwrap().expires_at,
        Some(100)
    );
    assert!(!s.expire_token(&TokenId::generate_at(9), 1).await.unwrap());

    // Per session, then the whole application; API tokens are left alone.
    let alice = ["alice".to_owned()];
    assert_eq!(
        s.expire_app_tokens(&app, Some(&alice), 200).await.unwrap(),
        1
    );
    assert_eq!(s.get_token(&p2.id).await.unwrap().unwrap().expires_at, None);
    assert_eq!(s.expire_app_tokens(&app, None, 300).await.unwrap(), 2);
    assert_eq!(
        s.get_token(&p1.id).await.unwrap().unwrap().expires_at,
        Some(200)
    );
    assert_eq!(
        s.get_token(&p2.id).await.unwrap().unwrap().expires_at,
        Some(300)
    );
    assert_eq!(
        s.get_token(&api2.id).await.unwrap().unwrap().expires_at,
        None
    );

    assert_eq!(s.purge_tokens(250).await.unwrap(), 2, "{}", b.name);
    assert_eq!(
        s.get_token(&p2.id).await.unwrap().map(|t| t.id),
        Some(p2.id)
    );
    assert_eq!(s.get_token(&api.id).await.unwrap(), None);
}
