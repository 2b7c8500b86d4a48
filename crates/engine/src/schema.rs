//! Event-type JSON Schemas: checked with [`SchemaPlan::analyse`] before they
//! are compiled, compiled once and cached until the type changes, and applied
//! to a payload only when [`SchemaPlan::cost`] says the check is bounded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use switchyard_core::schema::{EVALUATION_BUDGET, SchemaPlan, SchemaRefusal};

/// A usable schema: its compiled validator and the plan that bounds it.
pub(crate) struct CompiledSchema {
    pub plan: SchemaPlan,
    pub validator: jsonschema::Validator,
}

/// What the cache knows of an event type's latest schema.
#[derive(Clone)]
pub(crate) enum SchemaState {
    /// No event type, or no schema: payloads are not checked.
    None,
    Usable(Arc<CompiledSchema>),
    /// Stored before the current rules (or by another version) and refused
    /// now: messages of this type are refused until the type is updated.
    Refused(Arc<str>),
}

/// Event types whose schema state a node keeps; past it, the cache starts
/// over (a compile per event type in use afterwards).
const SCHEMA_CACHE_ENTRIES: usize = 4_096;

#[derive(Default)]
pub(crate) struct SchemaCache {
    compiled: RwLock<HashMap<String, SchemaState>>,
}

impl SchemaCache {
    pub fn get(&self, name: &str) -> Option<SchemaState> {
        self.compiled.read().ok()?.get(name).cloned()
    }

    pub fn put(&self, name: &str, state: SchemaState) {
        if let Ok(mut map) = self.compiled.write() {
            // Every event type a message names is remembered, registered or
            // not, and clients choose the names: without a bound, messages
            // with ever new names would grow this without end.
            if map.len() >= SCHEMA_CACHE_ENTRIES && !map.contains_key(name) {
                map.clear();
            }
            map.insert(name.to_owned(), state);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.compiled.read().map_or(0, |m| m.len())
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

/// Checks a schema against the bounds of [`SchemaPlan::analyse`], then
/// compiles it; the error says why it is unusable.
pub(crate) fn compile(schema: &serde_json::Value) -> Result<CompiledSchema, String> {
    let plan = SchemaPlan::analyse(schema).map_err(|SchemaRefusal(reason)| reason)?;
    let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    Ok(CompiledSchema { plan, validator })
}

/// Checks whose bound is above this run on a blocking-capable thread, so a
/// long check does not hold up the other requests of its worker.
const INLINE_BUDGET: u64 = 20_000;

/// Outcome of checking one payload.
pub(crate) enum Verdict {
    Valid,
    /// The first violation: the payload location (a JSON pointer) and why.
    Invalid {
        path: String,
        reason: String,
    },
    /// The check would exceed [`EVALUATION_BUDGET`]; not attempted.
    TooCostly(String),
}

impl CompiledSchema {
    pub fn check(&self, payload: &serde_json::Value) -> Verdict {
        let cost = match self.plan.cost(payload, EVALUATION_BUDGET) {
            Ok(cost) => cost,
            Err(over) => return Verdict::TooCostly(over.to_string()),
        };
        let run = || match self.validator.iter_errors(payload).next() {
            None => Verdict::Valid,
            Some(error) => Verdict::Invalid {
                path: error.instance_path().to_string(),
                reason: error.to_string(),
            },
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if cost > INLINE_BUDGET && multi_thread {
            tokio::task::block_in_place(run)
        } else {
            run()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_whatever_names_messages_use() {
        let cache = SchemaCache::default();
        for i in 0..3 * SCHEMA_CACHE_ENTRIES {
            cache.put(&format!("made.up.{i}"), SchemaState::None);
            assert!(cache.len() <= SCHEMA_CACHE_ENTRIES);
        }
        assert!(
            cache
                .get(&format!("made.up.{}", 3 * SCHEMA_CACHE_ENTRIES - 1))
                .is_some()
        );
    }
    use serde_json::{Value, json};

    fn nested(depth: usize) -> Value {
        let mut payload = json!({});
        for _ in 0..depth {
            payload = json!({"a": payload});
        }
        payload
    }

    #[test]
    fn the_issue_schema_is_refused_before_it_is_compiled() {
        let err = compile(&json!({"allOf": [{"$ref": "#"}]}))
            .err()
            .unwrap_or_default();
        assert!(err.contains("cycle"), "{err}");
    }

    #[test]
    fn a_check_past_the_budget_is_not_attempted() {
        // Exponential in the payload's depth inside the validator.
        let schema = json!({"allOf": [{"properties": {"a": {"$ref": "#"}}},
                                       {"properties": {"a": {"$ref": "#"}}, "additionalProperties": false}]});
        let compiled = compile(&schema).unwrap();
        assert!(matches!(compiled.check(&nested(4)), Verdict::Valid));
        assert!(matches!(compiled.check(&nested(40)), Verdict::TooCostly(_)));
        let bad = json!({"a": {"a": {"b": 1}}});
        match compiled.check(&bad) {
            Verdict::Invalid { path, .. } => assert_eq!(path, "/a/a"),
            _ => panic!("an unevaluated member must be reported"),
        }
    }

    /// Compiling a chain of 500 distinct references overflowed a 2 MiB
    /// stack (a tokio worker's) with `jsonschema` 0.26 and aborted the server.
    #[test]
    fn a_long_chain_of_references_compiles_on_a_worker_sized_stack() {
        let mut defs = serde_json::Map::new();
        defs.insert("d0".into(), json!({"type": "integer"}));
        for i in 1..=500 {
            let below = format!("#/$defs/d{}", i - 1);
            defs.insert(
                format!("d{i}"),
                json!({"properties": {"a": {"$ref": below}}}),
            );
        }
        let schema = json!({"$defs": defs, "$ref": "#/$defs/d500"});
        let mut payload = json!(1);
        for _ in 0..120 {
            payload = json!({"a": payload});
        }
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let compiled = compile(&schema).map_err(|e| e.to_string())?;
                match compiled.check(&payload) {
                    Verdict::Valid => Ok(()),
                    _ => Err("a valid payload was refused".to_owned()),
                }
            })
            .unwrap();
        assert_eq!(worker.join().ok(), Some(Ok(())));
    }

    /// A target referenced from many places is compiled once: 1,000
    /// references to a 2,000-property definition took 2-3 GB with
    /// `jsonschema` 0.26, which compiled a copy per reference.
    #[test]
    fn a_definition_referenced_many_times_is_checked_quickly() {
        let big: serde_json::Map<String, Value> = (0..2000)
            .map(|i| (format!("p{i}"), json!({"type": "integer"})))
            .collect();
        let props: serde_json::Map<String, Value> = (0..1000)
            .map(|i| (format!("r{i}"), json!({"$ref": "#/$defs/big"})))
            .collect();
        let schema = json!({"$defs": {"big": {"properties": big}}, "properties": props});
        let compiled = compile(&schema).unwrap();
        let payload: serde_json::Map<String, Value> = (0..1000)
            .map(|i| (format!("r{i}"), json!({"p1": 1})))
            .collect();
        assert!(matches!(
            compiled.check(&Value::Object(payload)),
            Verdict::Valid
        ));
    }
}
