//! Event-type JSON Schemas, compiled once and cached until the type changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Default)]
pub(crate) struct SchemaCache {
    compiled: RwLock<HashMap<String, Option<Arc<jsonschema::Validator>>>>,
}

impl SchemaCache {
    pub fn get(&self, name: &str) -> Option<Option<Arc<jsonschema::Validator>>> {
        self.compiled.read().ok()?.get(name).cloned()
    }

    pub fn put(&self, name: &str, validator: Option<Arc<jsonschema::Validator>>) {
        if let Ok(mut map) = self.compiled.write() {
            map.insert(name.to_owned(), validator);
        }
    }

    pub fn invalidate(&self, name: &str) {
        if let Ok(mut map) = self.compiled.write() {
            map.remove(name);
        }
    }

    pub fn invalidate_all(&self) {
        if let Ok(mut map) = self.compiled.write() {
            map.clear();
        }
    }
}

/// The schema of the highest version in an event type's `schemas` map.
pub(crate) fn latest_schema(schemas: &serde_json::Value) -> Option<&serde_json::Value> {
    schemas
        .as_object()?
        .iter()
        .max_by_key(|(version, _)| version.parse::<u64>().unwrap_or(0))
        .map(|(_, schema)| schema)
}

/// Compiles a schema, reporting why it is unusable.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}
