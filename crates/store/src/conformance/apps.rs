//! Applications: uids, pagination in both orders, update and delete.

use super::*;

/// An application is found by id and by its unique uid, listed page by page
/// in both orders, renamed, and deleted once.
pub async fn applications_crud_uid_and_pagination(b: Backend) {
    let s = b.store.as_ref();
    let a = s.insert_app(app(Some("acme"), 1_000)).await.unwrap();
    assert!(
        matches!(
            s.insert_app(app(Some("acme"), 1_001)).await,
            Err(StoreError::Conflict(_))
        ),
        "{}",
        b.name
    );
    assert_eq!(s.get_app("acme").await.unwrap().unwrap().id, a.id);
    assert_eq!(
        s.get_app(a.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .uid
            .as_ref()
            .map(Uid::as_str),
        Some("acme")
    );
    for i in 0..4 {
        s.insert_app(app(None, 2_000 + i)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut it = None;
    loop {
        let p = s.list_apps(&page(2, it, Order::Ascending)).await.unwrap();
        assert!(p.data.len() <= 2);
        seen.extend(p.data.iter().map(|a| a.id.clone()));
        if p.done {
            break;
        }
        it = p.iterator;
    }
    assert_eq!(seen.len(), 5, "{}", b.name);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let desc = s
        .list_apps(&page(10, None, Order::Descending))
        .await
        .unwrap();
    assert_eq!(desc.data.first().map(|a| &a.id), seen.last());
    let mut changed = a.clone();
    changed.name = "renamed".into();
    s.update_app(changed).await.unwrap();
    assert_eq!(s.get_app("acme").await.unwrap().unwrap().name, "renamed");
    assert!(s.delete_app(&a.id).await.unwrap());
    assert!(s.get_app("acme").await.unwrap().is_none());
    assert!(!s.delete_app(&a.id).await.unwrap());
}
