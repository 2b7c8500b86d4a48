//! Managing incoming-webhook sources: create (with the application that
//! holds their destinations), replace, delete, ingest-token and secret
//! rotation, with the checks and the cache and cluster notices, in one place.
//! The request path (verify, accept) is [`crate::sources`].

use crate::apps::parse_uid;
use crate::{Engine, EngineError, limits};
use serde_json::{Value, json};
use switchyard_core::source::{FieldError, compile, provider};
use switchyard_core::{AppId, SourceId, Uid};
use switchyard_store::{Application, Metadata, Page, PageRequest, RetiredSecret, Source};

/// How long a rotated-out ingest token keeps working, and how many may be
/// alive at once (as the Svix Ingest API documents).
const TOKEN_GRACE_MS: u64 = 48 * 3600 * 1000;
const MAX_RETIRED_TOKENS: usize = 3;
/// Default grace period of a rotated-out source secret, in seconds.
pub const DEFAULT_SECRET_GRACE_SECS: u64 = 24 * 3600;
/// Longest grace period of a rotated-out source secret, in seconds.
pub const MAX_SECRET_GRACE_SECS: u64 = 7 * 24 * 3600;

/// A source's settable fields (create and replace), in Switchyard's own
/// form (`kind` is the verifier's name, e.g. `stripe` or `basic-auth`).
#[derive(Debug, Clone, Default)]
pub struct SourceInput {
    /// 1 to 256 characters.
    pub name: String,
    pub uid: Option<String>,
    pub metadata: Option<Metadata>,
    /// The verifier: see `switchyard_core::providers::PROVIDERS`.
    pub kind: String,
    /// The verifier's configuration (an object, or `null` for none). A
    /// `retiredSecrets` key, as stored configs once held, is read as the
    /// source's retired secrets.
    pub config: Value,
    /// Switchyard's options (see `switchyard_core::source`).
    pub settings: Value,
}

/// A new secret issued by [`Engine::rotate_source_secret`].
#[derive(Debug, Clone)]
pub struct RotatedSecret {
    /// The config field it went into (`secret`, `password`, `key`, ...).
    pub field: &'static str,
    pub secret: String,
}

fn new_token() -> String {
    hex::encode(rand::random::<[u8; 20]>())
}

fn object_or_empty(v: Value) -> Value {
    if v.is_null() { json!({}) } else { v }
}

impl From<FieldError> for EngineError {
    /// The field's path as the dotted name the API reports (`config.secret`,
    /// `settings.eventType[0].pointer`).
    fn from(e: FieldError) -> Self {
        EngineError::invalid(e.path.to_string(), e.problem)
    }
}

/// Checks a source's name, type, config and settings together.
fn check(input: &SourceInput) -> Result<(), EngineError> {
    if input.name.trim().is_empty() || input.name.len() > 256 {
        return Err(EngineError::invalid("name", "must be 1 to 256 characters"));
    }
    if !input.config.is_object() && !input.config.is_null() {
        return Err(EngineError::invalid("config", "must be an object"));
    }
    limits::check_json_bytes("config", &input.config, limits::MAX_SOURCE_JSON_BYTES)?;
    limits::check_json_bytes("settings", &input.settings, limits::MAX_SOURCE_JSON_BYTES)?;
    compile(&input.kind, &input.config, &input.settings)?;
    Ok(())
}

impl Engine {
    /// A page of sources.
    pub async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>, EngineError> {
        Ok(self.store.list_sources(page).await?)
    }

    /// A source by id or uid.
    ///
    /// Errors: [`EngineError::NotFound`] when there is none.
    pub async fn source(&self, key: &str) -> Result<Source, EngineError> {
        self.store
            .get_source(key)
            .await?
            .ok_or(EngineError::NotFound("source"))
    }

    async fn save_source(&self, mut source: Source) -> Result<Source, EngineError> {
        source.updated_at = self.now_ms();
        let source = self.store.update_source(source).await?;
        self.sources_changed();
        Ok(source)
    }

    /// Creates a source and, in the same commit, the application that holds
    /// its destinations (its uid is the source id).
    pub async fn create_source(
        &self,
        input: SourceInput,
        uid: Option<String>,
    ) -> Result<Source, EngineError> {
        check(&input)?;
        // Checked before the insert: sources are created rarely, and a few
        // over the cap from concurrent creates cost little.
        let count = self.store.all_sources().await?.len();
        if count >= limits::MAX_SOURCES {
            return Err(EngineError::Conflict(format!(
                "there are {count} sources; at most {} are allowed",
                limits::MAX_SOURCES
            )));
        }
        let mut config = object_or_empty(input.config);
        let retired_secrets = Source::take_legacy_retired_secrets(&mut config);
        let now = self.now_ms();
        let id = SourceId::generate_at(now);
        let app = Application {
            id: AppId::generate_at(now),
            uid: Some(Uid::of_source(&id)),
            name: format!("source {}", input.name),
            rate_limit: None,
            metadata: Metadata::new(),
            created_at: now,
            updated_at: now,
        };
        let source = Source {
            id,
            uid: parse_uid("uid", uid.or(input.uid))?,
            name: input.name,
            kind: input.kind,
            config,
            settings: object_or_empty(input.settings),
            metadata: {
                crate::limits::check_metadata(input.metadata.as_ref())?;
                input.metadata.unwrap_or_default()
            },
            app_id: app.id.clone(),
            token: new_token(),
            retired_tokens: Vec::new(),
            retired_secrets,
            created_at: now,
            updated_at: now,
        };
        let source = self.store.insert_source(source, app).await?;
        self.sources_changed();
        Ok(source)
    }

    /// Replaces the source named by `key`, or creates it with `key` as its
    /// uid (a key shaped like a source id must exist). Retired secrets of a
    /// source that keeps its type stay valid. Returns whether it was created.
    pub async fn upsert_source(
        &self,
        key: &str,
        input: SourceInput,
    ) -> Result<(Source, bool), EngineError> {
        let Some(mut source) = self.store.get_source(key).await? else {
            // Anything shaped like a source id must exist; other keys are uids.
            if key
                .strip_prefix(SourceId::PREFIX)
                .is_some_and(|rest| rest.starts_with('_'))
            {
                return Err(EngineError::NotFound("source"));
            }
            return Ok((self.create_source(input, Some(key.to_owned())).await?, true));
        };
        check(&input)?;
        let mut config = object_or_empty(input.config);
        // Retired secrets a rotation made stay with a source that keeps its
        // type; any the input carries under the old config key count otherwise.
        let given = Source::take_legacy_retired_secrets(&mut config);
        if source.kind != input.kind || source.retired_secrets.is_empty() {
            source.retired_secrets = given;
        }
        source.uid = parse_uid("uid", input.uid)?.or(source.uid);
        source.name = input.name;
        source.kind = input.kind;
        source.config = config;
        source.settings = object_or_empty(input.settings);
        crate::limits::check_metadata(input.metadata.as_ref())?;
        source.metadata = input.metadata.unwrap_or_default();
        Ok((self.save_source(source).await?, false))
    }

    /// Deletes a source with its application, destinations and messages.
    pub async fn delete_source(&self, key: &str) -> Result<(), EngineError> {
        let source = self.source(key).await?;
        self.store.delete_source(&source.id).await?;
        self.sources_changed();
        self.app_changed(&source.app_id);
        Ok(())
    }

    /// Issues a new ingest token; the old one keeps working for 48 hours, and
    /// at most three may be retired at once.
    ///
    /// Errors: [`EngineError::Conflict`] when three are already retired.
    pub async fn rotate_source_token(&self, key: &str) -> Result<Source, EngineError> {
        let mut source = self.source(key).await?;
        let now = self.now_ms();
        source.retired_tokens.retain(|t| t.expires_at > now);
        if source.retired_tokens.len() >= MAX_RETIRED_TOKENS {
            return Err(EngineError::Conflict(format!(
                "the token was rotated {MAX_RETIRED_TOKENS} times in the last 48 hours; wait for an old one to expire"
            )));
        }
        let old = std::mem::replace(&mut source.token, new_token());
        source.retired_tokens.push(RetiredSecret {
            secret: old,
            expires_at: now + TOKEN_GRACE_MS,
        });
        self.save_source(source).await
    }

    /// Replaces the source's verification secret (the password for
    /// basic-auth, the key for api-key) with `secret` or a generated one; the
    /// old one keeps verifying for `grace_secs` ([`DEFAULT_SECRET_GRACE_SECS`]
    /// when `None`, at most [`MAX_SECRET_GRACE_SECS`]).
    ///
    /// Errors: an invalid grace or secret; [`EngineError::Conflict`] for a
    /// source type without a secret.
    pub async fn rotate_source_secret(
        &self,
        key: &str,
        secret: Option<String>,
        grace_secs: Option<u64>,
    ) -> Result<RotatedSecret, EngineError> {
        let grace = grace_secs.unwrap_or(DEFAULT_SECRET_GRACE_SECS);
        if grace > MAX_SECRET_GRACE_SECS {
            return Err(EngineError::invalid(
                "gracePeriodSeconds",
                format!("must be at most {MAX_SECRET_GRACE_SECS} seconds"),
            ));
        }
        let mut source = self.source(key).await?;
        let provider = provider(&source.kind)?;
        let Some(field) = provider.secret_field() else {
            return Err(EngineError::Conflict(format!(
                "sources of type {} have no secret",
                source.kind
            )));
        };
        let new_secret = match secret {
            Some(s) if !s.is_empty() => s,
            Some(_) => {
                return Err(EngineError::invalid("secret", "must not be empty"));
            }
            None => provider.generate_secret(),
        };
        let now = self.now_ms();
        let Some(config) = source.config.as_object_mut() else {
            return Err(EngineError::Conflict(
                "the source's config is not an object".into(),
            ));
        };
        source.retired_secrets.retain(|r| r.expires_at > now);
        let old = config.insert(field.into(), Value::String(new_secret.clone()));
        if grace > 0
            && let Some(Value::String(old)) = old
        {
            source.retired_secrets.push(RetiredSecret {
                secret: old,
                expires_at: now + grace * 1000,
            });
        }
        // The new secret is the request's `secret` field, not `config.secret`.
        compile(&source.kind, &source.config, &source.settings).map_err(|e| {
            let path = e.path.below("config").unwrap_or(e.path);
            EngineError::invalid(path.to_string(), e.problem)
        })?;
        self.save_source(source).await?;
        Ok(RotatedSecret {
            field,
            secret: new_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upsert_creates_by_uid_unless_the_key_is_shaped_like_an_id() {
        let (engine, _dir) = crate::test_engine().await;
        let input = || SourceInput {
            name: "n".into(),
            kind: "none".into(),
            ..SourceInput::default()
        };
        // A uid that merely starts like the prefix is a uid.
        let (made, created) = engine.upsert_source("src-github", input()).await.unwrap();
        assert!(created);
        assert_eq!(made.uid.as_deref(), Some("src-github"));
        let (again, created) = engine.upsert_source("src-github", input()).await.unwrap();
        assert!(!created);
        assert_eq!(again.id, made.id);
        assert!(matches!(
            engine
                .upsert_source("src_0000000000000000000000000", input())
                .await,
            Err(EngineError::NotFound("source"))
        ));
        // The source's application holds its destinations.
        assert!(engine.find_app(made.id.as_str()).await.unwrap().is_some());
        assert!(matches!(
            engine
                .rotate_source_secret(made.id.as_str(), None, None)
                .await,
            Err(EngineError::Conflict(_))
        ));
    }

    fn api_key(key: &str) -> SourceInput {
        SourceInput {
            name: "n".into(),
            kind: "api-key".into(),
            config: json!({"header": "X-Key", "key": key}),
            ..SourceInput::default()
        }
    }

    /// Whether the source's compiled plan takes `key` now.
    async fn accepts(engine: &Engine, id: &str, key: &str) -> bool {
        let source = engine.find_source(id).await.unwrap().unwrap();
        let headers = [("x-key", key)];
        let request = switchyard_core::verify::Incoming {
            headers: &headers,
            body: b"",
            url: "",
            now_secs: 0,
        };
        source.plan.verify(&request, engine.now_ms()).is_ok()
    }

    /// A rotation retires the old secret into the source's own field, not
    /// into its config; it verifies until its grace ends, and a replace that
    /// keeps the type keeps it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotated_secrets_are_a_field_of_the_source() {
        let (engine, _dir) = crate::test_engine().await;
        let made = engine.create_source(api_key("one"), None).await.unwrap();
        let rotated = engine
            .rotate_source_secret(made.id.as_str(), Some("two".into()), Some(60))
            .await
            .unwrap();
        assert_eq!((rotated.field, rotated.secret.as_str()), ("key", "two"));
        let stored = engine.source(made.id.as_str()).await.unwrap();
        assert_eq!(stored.config, json!({"header": "X-Key", "key": "two"}));
        assert_eq!(stored.retired_secrets.len(), 1);
        assert_eq!(stored.retired_secrets[0].secret, "one");
        assert!(accepts(&engine, made.id.as_str(), "one").await);
        assert!(accepts(&engine, made.id.as_str(), "two").await);

        let (kept, _) = engine
            .upsert_source(made.id.as_str(), api_key("two"))
            .await
            .unwrap();
        assert_eq!(kept.retired_secrets, stored.retired_secrets);
        let mut other = api_key("x");
        other.kind = "basic-auth".into();
        other.config = json!({"username": "u", "password": "p"});
        let (changed, _) = engine.upsert_source(made.id.as_str(), other).await.unwrap();
        assert!(changed.retired_secrets.is_empty(), "a new type drops them");

        // Without grace the old secret stops at once.
        engine
            .upsert_source(made.id.as_str(), api_key("three"))
            .await
            .unwrap();
        engine
            .rotate_source_secret(made.id.as_str(), Some("four".into()), Some(0))
            .await
            .unwrap();
        assert!(!accepts(&engine, made.id.as_str(), "three").await);
        assert!(accepts(&engine, made.id.as_str(), "four").await);
    }

    /// A row written before retired secrets had a column keeps them in its
    /// config; it loads with them as the typed field and verifies with them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn legacy_rows_are_migrated_on_read() {
        let (engine, _dir) = crate::test_engine().await;
        let made = engine.create_source(api_key("new"), None).await.unwrap();
        let mut legacy = made.clone();
        legacy.config = json!({"header": "X-Key", "key": "new",
            "retiredSecrets": [{"secret": "old", "expiresAt": engine.now_ms() + 60_000}]});
        engine.store.update_source(legacy).await.unwrap();
        engine.sources_changed();
        let loaded = engine.source(made.id.as_str()).await.unwrap();
        assert_eq!(loaded.config, json!({"header": "X-Key", "key": "new"}));
        assert_eq!(loaded.retired_secrets.len(), 1);
        assert!(accepts(&engine, made.id.as_str(), "old").await);
        assert!(!accepts(&engine, made.id.as_str(), "older").await);
        // The next write stores them in their own column.
        engine
            .rotate_source_secret(made.id.as_str(), Some("newer".into()), Some(60))
            .await
            .unwrap();
        let rotated = engine.source(made.id.as_str()).await.unwrap();
        let retired: Vec<&str> = rotated
            .retired_secrets
            .iter()
            .map(|r| r.secret.as_str())
            .collect();
        assert_eq!(retired, ["old", "new"]);
    }

    /// A refused definition names its field as the API reports it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_name_the_field() {
        let (engine, _dir) = crate::test_engine().await;
        let mut input = api_key("p");
        input.settings = json!({"eventType": [{"pointer": "/a"}, {"header": ""}]});
        match engine.create_source(input, None).await {
            Err(EngineError::Invalid { field, message }) => {
                assert_eq!(field, "settings.eventType[1].header");
                assert_eq!(message, "must be a string of 1 to 256 characters");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let svix = SourceInput {
            name: "n".into(),
            kind: "svix".into(),
            config: json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
            ..SourceInput::default()
        };
        let made = engine.create_source(svix, None).await.unwrap();
        match engine
            .rotate_source_secret(made.id.as_str(), Some("plain".into()), None)
            .await
        {
            Err(EngineError::Invalid { field, message }) => {
                assert_eq!(field, "secret", "the request's field, not the config's");
                assert_eq!(message, "must be a whsec_ secret (base64 after the prefix)");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let generated = engine
            .rotate_source_secret(made.id.as_str(), None, None)
            .await
            .unwrap();
        assert!(generated.secret.starts_with("whsec_"));
    }
}
