//! Payload filters with hostile definitions and events: `Filter::parse` on
//! any JSON value (as the API reads an endpoint's `payloadFilter`), then
//! `matches` against any event document (parsed as the engine parses a
//! payload, duplicate keys refused). Also the event-type wildcard matcher
//! when both values are strings. Nothing here may panic.
//!
//! An input is two JSON texts one after the other: the filter, then the
//! event (`{"path": "/type", "eq": "a"} {"type": "a"}`). Input that does
//! not start with JSON is skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_core::filter::{Filter, event_type_matches};
use switchyard_core::json::parse_document;

fuzz_target!(|data: &[u8]| {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let Some(Ok(filter)) = values.next() else {
        return;
    };
    let rest = &data[values.byte_offset()..];
    let event = parse_document(rest).ok();

    if let Ok(parsed) = Filter::parse(&filter)
        && let Some(event) = &event
    {
        let matched = parsed.matches(event);
        // Negation is exact: a `not` around any filter flips the answer.
        if let Ok(negated) = Filter::parse(&serde_json::json!({ "not": filter })) {
            assert_eq!(negated.matches(event), !matched, "not flips {filter}");
        }
    }

    if let (Value::String(pattern), Some(Value::String(event_type))) = (&filter, &event) {
        let matched = event_type_matches(pattern, event_type);
        if !pattern.contains('*') {
            assert_eq!(matched, pattern == event_type, "{pattern:?} {event_type:?}");
        }
        let plain = event_type.replace('*', "");
        assert!(
            event_type_matches(&plain, &plain),
            "{plain:?} matches itself"
        );
        assert!(
            event_type_matches("*", event_type),
            "* matches {event_type:?}"
        );
    }
});
