//! Event-type JSON Schemas with hostile schemas and payloads, as the engine
//! takes them: `SchemaPlan::analyse` (which refuses schemas whose checks
//! cannot be bounded), the validator compiled from a schema it accepts,
//! then for a payload `SchemaPlan::cost` under the engine's budget and, when
//! the cost is within it, the validation itself.
//!
//! Nothing here may panic, and since a stored schema is applied to every
//! message of its type, nothing may take unbounded time or memory either:
//! run it with `-rss_limit_mb` and `-timeout` (scripts/fuzz does), so that a
//! schema the plan accepts but the validator chokes on, or a payload the
//! cost model underrates, is a finding.
//!
//! An input is two JSON texts one after the other: the schema, then the
//! payload (`{"type": "object"} {"a": 1}`). Input that does not start with
//! JSON is skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_core::json::parse_document;
use switchyard_core::schema::{EVALUATION_BUDGET, SchemaPlan};

fuzz_target!(|data: &[u8]| {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let Some(Ok(schema)) = values.next() else {
        return;
    };
    let rest = &data[values.byte_offset()..];
    // The engine compiles only what the plan accepts.
    let Ok(plan) = SchemaPlan::analyse(&schema) else {
        return;
    };
    let Ok(validator) = jsonschema::validator_for(&schema) else {
        return;
    };
    let Ok(payload) = parse_document(rest) else {
        return;
    };
    if plan.cost(&payload, EVALUATION_BUDGET).is_err() {
        return;
    }
    let _ = validator.iter_errors(&payload).next();
});
