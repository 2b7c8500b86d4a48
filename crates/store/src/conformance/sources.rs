//! Incoming-webhook sources: their application, uids, token rotation, request counts, forwarded requests, deletion.

use super::*;

pub(super) fn source(app: &AppId, uid: Option<&str>, at: u64) -> Source {
    Source {
        id: switchyard_core::SourceId::generate_at(at),
        uid: uid.map(test_uid),
        name: "stripe".into(),
        kind: "stripe".into(),
        config: serde_json::json!({"secret": "whsec_x"}),
        settings: serde_json::json!({"maxBodyBytes": 2048}),
        metadata: Default::default(),
        app_id: app.clone(),
        token: format!("tok{at}"),
        retired_tokens: vec![],
        retired_secrets: vec![],
        created_at: at,
        updated_at: at,
    }
}

/// A source is stored with its application (or neither, on a uid conflict),
/// found by id or uid, rotated, counted, passes forwarded requests on to
/// claimed deliveries, and takes its application along when deleted.
pub async fn sources_own_their_application_and_count_requests(b: Backend) {
    let s = b.store.as_ref();
    let backing = app(Some("src-app"), 1);
    let src = s
        .insert_source(source(&backing.id, Some("stripe-prod"), 1), backing.clone())
        .await
        .unwrap();
    assert_eq!(
        s.get_source(src.id.as_str()).await.unwrap().as_ref(),
        Some(&src),
        "{}",
        b.name
    );
    assert_eq!(
        s.get_source("stripe-prod").await.unwrap().as_ref(),
        Some(&src)
    );
    assert!(s.get_app(backing.id.as_str()).await.unwrap().is_some());
    let other = app(None, 2);
    assert!(
        matches!(
            s.insert_source(source(&other.id, Some("stripe-prod"), 2), other.clone())
                .await,
            Err(StoreError::Conflict(_))
        ),
        "{}: a uid is unique, and the failed insert leaves no application behind",
        b.name
    );
    assert!(
        s.get_app(other.id.as_str()).await.unwrap().is_none(),
        "{}",
        b.name
    );

    let mut changed = src.clone();
    changed.retired_tokens.push(RetiredSecret {
        secret: changed.token.clone(),
        expires_at: 99,
    });
    changed.token = "rotated".into();
    changed.retired_secrets.push(RetiredSecret {
        secret: "whsec_old".into(),
        expires_at: 98,
    });
    s.update_source(changed.clone()).await.unwrap();
    assert_eq!(s.all_sources().await.unwrap(), vec![changed.clone()]);
    let listed = s
        .list_sources(&page(10, None, Order::Ascending))
        .await
        .unwrap();
    assert_eq!(listed.data.len(), 1);

    s.add_source_stats(vec![(
        src.id.clone(),
        SourceStats {
            accepted: 3,
            duplicates: 1,
            rejected: 2,
            last_rejection: Some("no signature matches".into()),
            last_rejection_at: Some(50),
        },
    )])
    .await
    .unwrap();
    s.add_source_stats(vec![(
        src.id.clone(),
        SourceStats {
            accepted: 1,
            ..Default::default()
        },
    )])
    .await
    .unwrap();
    let stats = s.source_stats(&src.id).await.unwrap().unwrap();
    assert_eq!(
        (stats.accepted, stats.duplicates, stats.rejected),
        (4, 1, 2),
        "{}",
        b.name
    );
    assert_eq!(
        stats.last_rejection.as_deref(),
        Some("no signature matches")
    );
    assert_eq!(stats.last_rejection_at, Some(50));

    // What an ingested message passes on is stored with it and handed
    // to the dispatcher with each claimed delivery.
    let mut ep = endpoint(&backing.id, None, 3);
    ep.payload_filter = Some(serde_json::json!({"path": "/amount", "gt": 10}));
    let ep = s.insert_endpoint(ep).await.unwrap();
    assert_eq!(
        s.get_endpoint(&backing.id, ep.id.as_str()).await.unwrap(),
        Some(ep.clone())
    );
    let now = switchyard_core::timefmt::now_ms();
    let mut m = message(&backing.id, now - 5, Some("evt_1"));
    m.forward = Some(Forward {
        headers: vec![("stripe-signature".into(), "t=1,v1=ab".into())],
        path: "/sub?x=1".into(),
    });
    let m = created(accept(s, m, None, std::slice::from_ref(&ep.id)).await);
    assert_eq!(
        s.get_message(&backing.id, "evt_1")
            .await
            .unwrap()
            .unwrap()
            .forward,
        m.forward
    );
    let task = s.claim_due(now, 10, &ALL).await.unwrap().remove(0);
    assert_eq!(task.forward.as_deref(), m.forward.as_ref(), "{}", b.name);

    assert!(s.delete_source(&src.id).await.unwrap());
    assert!(s.get_source(src.id.as_str()).await.unwrap().is_none());
    assert!(
        s.get_app(backing.id.as_str()).await.unwrap().is_none(),
        "{}",
        b.name
    );
    assert!(
        s.get_message(&backing.id, m.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.delete_source(&src.id).await.unwrap());
}
