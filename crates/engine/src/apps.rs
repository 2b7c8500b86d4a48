//! Applications: every read and change, with their rules (name and uid
//! checks, upsert by uid, create-on-first-message, cache invalidation and the
//! notice to other nodes) in one place for every entry point.

use crate::{Engine, EngineError};
use switchyard_core::{AppId, Uid};
use switchyard_store::{Application, Metadata, Page, PageRequest, StoreError};

/// An application's settable fields, as a caller gives them (create, upsert,
/// and the `application` of a message that creates its application).
#[derive(Debug, Clone, Default)]
pub struct AppInput {
    /// 1 to 256 characters, not blank.
    pub name: String,
    /// A [`Uid`]: 1 to 256 of `a-zA-Z0-9_.-`, not shaped like an id.
    pub uid: Option<String>,
    /// Messages per second; at least 1 when given.
    pub rate_limit: Option<u32>,
    pub metadata: Option<Metadata>,
}

/// A partial change: `None` leaves a field as it is; for `uid` and
/// `rate_limit`, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    pub name: Option<String>,
    pub uid: Option<Option<String>>,
    pub rate_limit: Option<Option<u32>>,
    pub metadata: Option<Metadata>,
}

/// Longest application name, in bytes.
const MAX_NAME: usize = 256;

fn check_name(name: &str) -> Result<(), EngineError> {
    if name.trim().is_empty() {
        return Err(EngineError::invalid("name", "must not be empty"));
    }
    if name.len() > MAX_NAME {
        return Err(EngineError::invalid(
            "name",
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    Ok(())
}

/// Checks an optional uid, naming `field` when it is not a [`Uid`].
pub fn parse_uid(field: &str, uid: Option<String>) -> Result<Option<Uid>, EngineError> {
    uid.map(|u| Uid::parse(&u).map_err(|e| EngineError::invalid(field, e.to_string())))
        .transpose()
}

/// Highest rate limit, deliveries per second: the Svix API types the field
/// as a 16-bit integer, and so do its Go and Kotlin SDKs, which could not
/// read a larger stored value back.
pub const MAX_RATE_LIMIT: u32 = u16::MAX as u32;

/// A rate limit (applications and endpoints, deliveries per second):
/// absent, or 1 to [`MAX_RATE_LIMIT`].
pub fn check_rate_limit(field: &str, rate: Option<u32>) -> Result<Option<u32>, EngineError> {
    match rate {
        Some(0) => Err(EngineError::invalid(
            field,
            "must be at least 1 message per second",
        )),
        Some(r) if r > MAX_RATE_LIMIT => Err(EngineError::invalid(
            field,
            format!("must be at most {MAX_RATE_LIMIT} messages per second"),
        )),
        other => Ok(other),
    }
}

/// A new application from checked input; `uid` replaces the input's uid
/// (upsert and create-on-first-message name the application by it).
fn new_app(input: AppInput, uid: Option<String>, now: u64) -> Result<Application, EngineError> {
    check_name(&input.name)?;
    crate::limits::check_metadata(input.metadata.as_ref())?;
    Ok(Application {
        id: AppId::generate_at(now),
        uid: parse_uid("uid", uid.or(input.uid))?,
        name: input.name,
        rate_limit: check_rate_limit("rateLimit", input.rate_limit)?,
        metadata: input.metadata.unwrap_or_default(),
        created_at: now,
        updated_at: now,
    })
}

/// Refuses changing, deleting or sending messages to, through the
/// application API, one of the applications Switchyard keeps for itself: a
/// source's (its messages come from the provider, and the source API
/// manages it) or the operational webhooks' (its messages are Switchyard's
/// events; `/api/v1/operational-webhook/endpoint` manages it). Renamed or
/// deleted, their endpoints would silently stop receiving; a message posted
/// there would pass for the provider's or Switchyard's.
fn check_not_managed(app: &Application) -> Result<(), EngineError> {
    let Some(uid) = app.uid.as_ref().map(|u| u.as_str()) else {
        return Ok(());
    };
    if uid == crate::OPERATIONAL_APP_UID {
        return Err(EngineError::Conflict(format!(
            "application {uid} holds Switchyard's operational webhooks; manage its endpoints through /api/v1/operational-webhook/endpoint"
        )));
    }
    if switchyard_core::SourceId::parse(uid).is_some() {
        return Err(EngineError::Conflict(format!(
            "application {uid} holds the destinations of source {uid}; change or delete the source through /ingest/api/v1/source/{uid}"
        )));
    }
    Ok(())
}

impl Engine {
    /// A page of applications, oldest first unless the request says
    /// otherwise. The operational webhooks' application is left out (a
    /// page may then hold one fewer).
    pub async fn list_apps(&self, page: &PageRequest) -> Result<Page<Application>, EngineError> {
        let mut apps = self.store.list_apps(page).await?;
        apps.data.retain(|a| !crate::operational::is_operational(a));
        Ok(apps)
    }

    /// An application by id or uid.
    ///
    /// Errors: [`EngineError::NotFound`] when there is none.
    pub async fn app(&self, id_or_uid: &str) -> Result<Application, EngineError> {
        self.find_app(id_or_uid)
            .await?
            .ok_or(EngineError::NotFound("application"))
    }

    /// Creates an application. With `get_if_exists`, an application that
    /// already has the input's uid is returned instead (and `false`).
    ///
    /// Errors: invalid fields; a uid already taken (store conflict).
    pub async fn create_app(
        &self,
        input: AppInput,
        get_if_exists: bool,
    ) -> Result<(Application, bool), EngineError> {
        if get_if_exists
            && let Some(uid) = &input.uid
            && let Some(existing) = self.store.get_app(uid).await?
        {
            return Ok((existing, false));
        }
        let app = self
            .store
            .insert_app(new_app(input, None, self.now_ms())?)
            .await?;
        Ok((app, true))
    }

    /// Replaces the application named by `key` (id or uid), or creates it
    /// with `key` as its uid when there is none (a key shaped like an id
    /// must exist). Returns whether it was created.
    pub async fn upsert_app(
        &self,
        key: &str,
        input: AppInput,
    ) -> Result<(Application, bool), EngineError> {
        match self.store.get_app(key).await? {
            Some(mut app) => {
                check_not_managed(&app)?;
                let old_rate = app.rate_limit;
                check_name(&input.name)?;
                app.name = input.name;
                app.uid = parse_uid("uid", input.uid)?.or(app.uid);
                app.rate_limit = check_rate_limit("rateLimit", input.rate_limit)?;
                crate::limits::check_metadata(input.metadata.as_ref())?;
                app.metadata = input.metadata.unwrap_or_default();
                app.updated_at = self.now_ms();
                let app = self.store.update_app(app).await?;
                self.app_changed(&app.id);
                if app.rate_limit != old_rate {
                    self.release_held_of_app(&app.id).await?;
                }
                Ok((app, false))
            }
            None if AppId::parse(key).is_some() => Err(EngineError::NotFound("application")),
            None => {
                let app = self
                    .store
                    .insert_app(new_app(input, Some(key.to_owned()), self.now_ms())?)
                    .await?;
                Ok((app, true))
            }
        }
    }

    /// Changes the given fields of an application.
    pub async fn patch_app(&self, key: &str, patch: AppPatch) -> Result<Application, EngineError> {
        let mut app = self.app(key).await?;
        check_not_managed(&app)?;
        let old_rate = app.rate_limit;
        if let Some(name) = patch.name {
            check_name(&name)?;
            app.name = name;
        }
        if let Some(uid) = patch.uid {
            app.uid = parse_uid("uid", uid)?;
        }
        if let Some(rate) = patch.rate_limit {
            app.rate_limit = check_rate_limit("rateLimit", rate)?;
        }
        if let Some(metadata) = patch.metadata {
            crate::limits::check_metadata(Some(&metadata))?;
            app.metadata = metadata;
        }
        app.updated_at = self.now_ms();
        let app = self.store.update_app(app).await?;
        self.app_changed(&app.id);
        if app.rate_limit != old_rate {
            self.release_held_of_app(&app.id).await?;
        }
        Ok(app)
    }

    /// Deletes an application with its endpoints, messages and attempts.
    pub async fn delete_app(&self, key: &str) -> Result<(), EngineError> {
        let app = self.app(key).await?;
        check_not_managed(&app)?;
        self.store.delete_app(&app.id).await?;
        self.app_changed(&app.id);
        Ok(())
    }

    /// The application a message is for: found by id or uid, or, when the
    /// message carries `application` and `key` is a uid (not an id), created
    /// with `key` as its uid. A concurrent first message creating the same
    /// application is not an error: the one that won is used.
    pub async fn app_for_message(
        &self,
        key: &str,
        auto_create: Option<AppInput>,
    ) -> Result<Application, EngineError> {
        if let Some(app) = self.find_app(key).await? {
            check_not_managed(&app)?;
            return Ok(app);
        }
        let Some(input) = auto_create else {
            return Err(EngineError::NotFound("application"));
        };
        if AppId::parse(key).is_some() {
            return Err(EngineError::NotFound("application"));
        }
        match self
            .store
            .insert_app(new_app(input, Some(key.to_owned()), self.now_ms())?)
            .await
        {
            Ok(app) => Ok(app),
            Err(StoreError::Conflict(_)) => self.app(key).await,
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_uids_and_rate_limits_are_checked() {
        let input = |name: &str, uid: Option<&str>, rate: Option<u32>| AppInput {
            name: name.into(),
            uid: uid.map(str::to_owned),
            rate_limit: rate,
            metadata: None,
        };
        let field = |r: Result<Application, EngineError>| match r {
            Err(EngineError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(field(new_app(input(" ", None, None), None, 0)), "name");
        assert_eq!(
            field(new_app(input(&"n".repeat(257), None, None), None, 0)),
            "name"
        );
        assert_eq!(
            field(new_app(input("n", Some("bad uid"), None), None, 0)),
            "uid"
        );
        assert_eq!(
            field(new_app(input("n", None, Some(0)), None, 0)),
            "rateLimit"
        );
        // The Svix SDKs read the field as a 16-bit integer.
        assert_eq!(
            field(new_app(input("n", None, Some(65_536)), None, 0)),
            "rateLimit"
        );
        assert!(new_app(input("n", None, Some(65_535)), None, 0).is_ok());
        let app = new_app(input("n", Some("a"), Some(5)), Some("b".into()), 0).unwrap();
        assert_eq!(
            app.uid.as_deref(),
            Some("b"),
            "the key given wins over the body's uid"
        );
        assert_eq!(app.rate_limit, Some(5));
    }

    fn named(name: &str, uid: Option<&str>) -> AppInput {
        AppInput {
            name: name.into(),
            uid: uid.map(str::to_owned),
            ..AppInput::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rules_hold_without_http() {
        let (engine, _dir) = crate::test_engine().await;
        let (app, created) = engine
            .create_app(named("Acme", Some("acme")), false)
            .await
            .unwrap();
        assert!(created);
        // get_if_exists returns the one with that uid instead of a conflict.
        let (again, created) = engine
            .create_app(named("Other", Some("acme")), true)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, app.id);
        assert!(matches!(
            engine.create_app(named("Other", Some("acme")), false).await,
            Err(EngineError::Store(StoreError::Conflict(_)))
        ));
        // Upsert by uid updates; by an unknown uid creates; by an unknown id is 404.
        let (updated, created) = engine
            .upsert_app("acme", named("Acme 2", None))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(
            (
                updated.id.clone(),
                updated.name.as_str(),
                updated.uid.as_deref()
            ),
            (app.id.clone(), "Acme 2", Some("acme"))
        );
        let (fresh, created) = engine
            .upsert_app("globex", named("Globex", None))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(fresh.uid.as_deref(), Some("globex"));
        let unknown_id = AppId::generate_at(engine.now_ms()).to_string();
        assert!(matches!(
            engine.upsert_app(&unknown_id, named("X", None)).await,
            Err(EngineError::NotFound("application"))
        ));
        // Patch changes what it names; a cleared uid no longer finds it, and
        // the cached lookup sees the change at once.
        let patched = engine
            .patch_app(
                "acme",
                AppPatch {
                    uid: Some(None),
                    rate_limit: Some(Some(7)),
                    ..AppPatch::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((patched.uid, patched.rate_limit), (None, Some(7)));
        assert!(matches!(
            engine.app("acme").await,
            Err(EngineError::NotFound(_))
        ));
        // A first message creates its application from its uid, never from an id.
        let made = engine
            .app_for_message("initech", Some(named("Initech", None)))
            .await
            .unwrap();
        assert_eq!(made.uid.as_deref(), Some("initech"));
        assert_eq!(
            engine.app_for_message("initech", None).await.unwrap().id,
            made.id
        );
        assert!(
            engine
                .app_for_message(&unknown_id, Some(named("I", None)))
                .await
                .is_err()
        );
        assert!(engine.app_for_message("nobody", None).await.is_err());
        engine.delete_app(&made.id.to_string()).await.unwrap();
        assert!(engine.find_app("initech").await.unwrap().is_none());
    }
}
