//! Event types: every read and change, with their rules (name syntax,
//! bounded schemas, archive on delete, the schema cache and the notice to
//! other nodes) in one place for every entry point.

use crate::{Engine, EngineError, limits, schema};
use serde_json::Value;
use switchyard_core::EventTypeName;
use switchyard_store::{EventType, Page, PageRequest};

/// An event type's settable fields (create and upsert).
#[derive(Debug, Clone, Default)]
pub struct EventTypeInput {
    pub description: String,
    pub archived: bool,
    pub deprecated: bool,
    /// Version (`"1"`, `"2"`, ...) → JSON Schema; `None` or `null`: none. The
    /// highest version checks payloads; each must pass
    /// [`switchyard_core::schema::SchemaPlan::analyse`] and compile.
    pub schemas: Option<Value>,
    pub feature_flags: Option<Vec<String>>,
    pub group_name: Option<String>,
}

/// A partial change: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct EventTypePatch {
    pub description: Option<String>,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    pub schemas: Option<Option<Value>>,
    pub feature_flags: Option<Option<Vec<String>>>,
    pub group_name: Option<Option<String>>,
}

/// Checks a `schemas` map: an object of version → schema, each within the
/// bounds of [`switchyard_core::schema::SchemaPlan::analyse`] and compiling.
/// `null` means no schemas.
///
/// Errors: [`EngineError::Invalid`] naming `schemas` or `schemas.<version>`.
fn check_schemas(schemas: Option<&Value>) -> Result<(), EngineError> {
    let Some(schemas) = schemas.filter(|s| !s.is_null()) else {
        return Ok(());
    };
    limits::check_json_bytes("schemas", schemas, limits::MAX_SCHEMAS_BYTES)?;
    let map = schemas.as_object().ok_or_else(|| {
        EngineError::invalid(
            "schemas",
            "must be an object mapping versions to JSON Schemas",
        )
    })?;
    for (version, schema) in map {
        schema::compile(schema)
            .map_err(|e| EngineError::invalid(format!("schemas.{version}"), e))?;
    }
    Ok(())
}

/// A group name: at most 256 characters (as Svix).
fn check_group_name(group: Option<&str>) -> Result<(), EngineError> {
    match group {
        Some(g) => limits::check_chars("groupName", g, 256),
        None => Ok(()),
    }
}

fn parse_name(name: &str) -> Result<EventTypeName, EngineError> {
    EventTypeName::parse(name).map_err(|e| EngineError::invalid("name", e.to_string()))
}

fn build(
    name: EventTypeName,
    input: EventTypeInput,
    created_at: Option<u64>,
    now: u64,
) -> Result<EventType, EngineError> {
    check_schemas(input.schemas.as_ref())?;
    limits::check_chars(
        "description",
        &input.description,
        limits::MAX_DESCRIPTION_CHARS,
    )?;
    limits::check_feature_flags(input.feature_flags.as_deref())?;
    check_group_name(input.group_name.as_deref())?;
    Ok(EventType {
        name,
        description: input.description,
        archived: input.archived,
        deprecated: input.deprecated,
        schemas: input.schemas.filter(|s| !s.is_null()),
        feature_flags: input.feature_flags,
        group_name: input.group_name,
        created_at: created_at.unwrap_or(now),
        updated_at: now,
    })
}

impl Engine {
    /// A page of event types by name; archived ones only when asked.
    pub async fn list_event_types(
        &self,
        page: &PageRequest,
        include_archived: bool,
    ) -> Result<Page<EventType>, EngineError> {
        Ok(self.store.list_event_types(page, include_archived).await?)
    }

    /// An event type by name.
    ///
    /// Errors: [`EngineError::NotFound`] when there is none.
    pub async fn event_type(&self, name: &str) -> Result<EventType, EngineError> {
        // No event type can have a name that does not parse.
        let Ok(name) = EventTypeName::parse(name) else {
            return Err(EngineError::NotFound("event type"));
        };
        self.store
            .get_event_type(&name)
            .await?
            .ok_or(EngineError::NotFound("event type"))
    }

    /// Creates an event type.
    ///
    /// Errors: an invalid name or schema; a name already taken (store conflict).
    pub async fn create_event_type(
        &self,
        name: &str,
        input: EventTypeInput,
    ) -> Result<EventType, EngineError> {
        let et = self
            .store
            .insert_event_type(build(parse_name(name)?, input, None, self.now_ms())?)
            .await?;
        self.event_type_changed(&et.name);
        Ok(et)
    }

    /// Replaces or creates an event type; returns whether it was created.
    pub async fn upsert_event_type(
        &self,
        name: &str,
        input: EventTypeInput,
    ) -> Result<(EventType, bool), EngineError> {
        let name = parse_name(name)?;
        let existing = self.store.get_event_type(&name).await?;
        let created = existing.is_none();
        let et = build(name, input, existing.map(|e| e.created_at), self.now_ms())?;
        let et = self.store.put_event_type(et).await?;
        self.event_type_changed(&et.name);
        Ok((et, created))
    }

    /// Changes the given fields of an event type.
    pub async fn patch_event_type(
        &self,
        name: &str,
        patch: EventTypePatch,
    ) -> Result<EventType, EngineError> {
        let mut et = self.event_type(name).await?;
        if let Some(d) = patch.description {
            limits::check_chars("description", &d, limits::MAX_DESCRIPTION_CHARS)?;
            et.description = d;
        }
        if let Some(a) = patch.archived {
            et.archived = a;
        }
        if let Some(d) = patch.deprecated {
            et.deprecated = d;
        }
        if let Some(s) = patch.schemas {
            check_schemas(s.as_ref())?;
            et.schemas = s.filter(|s| !s.is_null());
        }
        if let Some(f) = patch.feature_flags {
            limits::check_feature_flags(f.as_deref())?;
            et.feature_flags = f;
        }
        if let Some(g) = patch.group_name {
            check_group_name(g.as_deref())?;
            et.group_name = g;
        }
        et.updated_at = self.now_ms();
        let et = self.store.put_event_type(et).await?;
        self.event_type_changed(&et.name);
        Ok(et)
    }

    /// Archives an event type (Svix's delete), or with `expunge` deletes it
    /// for good.
    pub async fn delete_event_type(&self, name: &str, expunge: bool) -> Result<(), EngineError> {
        let mut et = self.event_type(name).await?;
        let name = et.name.clone();
        if expunge {
            self.store.delete_event_type(&name).await?;
        } else {
            et.archived = true;
            et.updated_at = self.now_ms();
            self.store.put_event_type(et).await?;
        }
        self.event_type_changed(&name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(r: Result<EventType, EngineError>) -> String {
        match r {
            Err(EngineError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn names_and_schemas_are_checked() {
        let with = |schemas: Value| EventTypeInput {
            schemas: Some(schemas),
            ..EventTypeInput::default()
        };
        assert!(matches!(
            parse_name("bad name"),
            Err(EngineError::Invalid { field, .. }) if field == "name"
        ));
        let t = || parse_name("t").unwrap();
        assert_eq!(field(build(t(), with(json!([1])), None, 0)), "schemas");
        assert_eq!(
            field(build(
                t(),
                with(json!({"3": {"allOf": [{"$ref": "#"}]}})),
                None,
                0
            )),
            "schemas.3"
        );
        let et = build(t(), with(Value::Null), Some(5), 0).unwrap();
        assert_eq!((et.schemas, et.created_at), (None, 5));
    }
}
