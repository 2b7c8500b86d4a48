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
