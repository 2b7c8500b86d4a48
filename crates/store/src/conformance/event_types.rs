//! Event types: conflicts, archiving, listing with and without the archived.

use super::*;

/// An event type name is taken once; archived types are listed only when
/// asked for; schemas come back as stored; a delete removes the type.
pub async fn event_types_archive_and_list(b: Backend) {
    let s = b.store.as_ref();
    let et = EventType {
        name: EventTypeName::from_trusted("user.created".into()),
        description: "d".into(),
        archived: false,
        deprecated: false,
        schemas: Some(serde_json::json!({"1": {"type": "object"}})),
        feature_flags: None,
        group_name: None,
        created_at: 1,
        updated_at: 1,
    };
    s.insert_event_type(et.clone()).await.unwrap();
    assert!(matches!(
        s.insert_event_type(et.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    let mut archived = et.clone();
    archived.archived = true;
    s.put_event_type(archived).await.unwrap();
    let visible = s
        .list_event_types(&page(10, None, Order::Ascending), false)
        .await
        .unwrap();
    assert!(visible.data.is_empty(), "{}", b.name);
    let all = s
        .list_event_types(&page(10, None, Order::Ascending), true)
        .await
        .unwrap();
    assert_eq!(all.data.len(), 1);
    assert_eq!(
        s.get_event_type(&et.name).await.unwrap().unwrap().schemas,
        et.schemas
    );
    assert!(s.delete_event_type(&et.name).await.unwrap());
    assert!(s.get_event_type(&et.name).await.unwrap().is_none());
}
