//! Bounds on everything a client can make large that is stored and then
//! read, copied or sent again (custom headers go out with every delivery,
//! metadata with every read, filters run on every message). Each is
//! checked where the value enters (the engine's services), and a value over
//! it is refused with [`EngineError::Invalid`] naming the field and the
//! limit, which the API answers with 422.
//!
//! The request body's own size is bounded before any of this
//! (`SWITCHYARD_MAX_PAYLOAD_BYTES`), and JSON nesting by the parser (127
//! levels), so these bound what a body within those can store.

use crate::EngineError;
use std::collections::BTreeMap;

/// Custom headers an endpoint may have.
pub const MAX_CUSTOM_HEADERS: usize = 50;
/// Bytes of an endpoint's custom headers, names and values together: what
/// every delivery to it carries besides its own.
pub const MAX_CUSTOM_HEADER_BYTES: usize = 16 * 1024;
/// Entries of an application's, endpoint's or source's metadata.
pub const MAX_METADATA_ENTRIES: usize = 100;
/// Bytes of metadata, keys and values together.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Entries of an endpoint's `filterTypes` (event types or patterns).
pub const MAX_FILTER_TYPES: usize = 256;
/// Bytes of an endpoint's payload filter as JSON (its depth is bounded by
/// `switchyard_core::filter`).
pub const MAX_PAYLOAD_FILTER_BYTES: usize = 16 * 1024;
/// Tags on a message.
pub const MAX_TAGS: usize = 20;
/// Characters of a description (endpoints, event types).
pub const MAX_DESCRIPTION_CHARS: usize = 4_096;
/// Bytes of an event type's `schemas` as JSON (all versions together): each
/// is compiled and checked against every message of the type.
pub const MAX_SCHEMAS_BYTES: usize = 256 * 1024;
/// Feature flags of an event type, and characters of each (as Svix).
pub const MAX_FEATURE_FLAGS: usize = 25;
pub const MAX_FEATURE_FLAG_CHARS: usize = 256;
/// Bytes of a source's `config` and of its `settings`, each as JSON: every
/// source is held in memory to route provider requests.
pub const MAX_SOURCE_JSON_BYTES: usize = 64 * 1024;
/// Sources an installation may have (each is held in memory).
pub const MAX_SOURCES: usize = 10_000;
/// Endpoints an application may have, unless configured otherwise
/// (`SWITCHYARD_MAX_ENDPOINTS_PER_APP`).
pub const DEFAULT_MAX_ENDPOINTS_PER_APP: usize = 1_000;

/// Rotated-out endpoint secrets in their grace period at once: each signs
/// every delivery beside the current one. Svix allows 10 too.
pub const MAX_RETIRED_SECRETS: usize = 10;

/// A rotation that keeps the current secret in its grace: refused when
/// [`MAX_RETIRED_SECRETS`] are already there, saying when the first ends.
pub(crate) fn check_retired_secrets<S>(
    retired: &[switchyard_store::RetiredSecret<S>],
) -> Result<(), EngineError> {
    if retired.len() < MAX_RETIRED_SECRETS {
        return Ok(());
    }
    let next = retired.iter().map(|r| r.expires_at).min().unwrap_or(0);
    Err(over(
        "key",
        format!(
            "at most {MAX_RETIRED_SECRETS} rotated-out secrets may be in their grace period; the next one ends at {} (or rotate with gracePeriodSeconds 0)",
            switchyard_core::timefmt::format_ms(next)
        ),
    ))
}

fn over(field: &str, what: String) -> EngineError {
    EngineError::invalid(field, what)
}

/// Custom headers: at most [`MAX_CUSTOM_HEADERS`], and
/// [`MAX_CUSTOM_HEADER_BYTES`] together.
pub(crate) fn check_header_sizes(headers: &BTreeMap<String, String>) -> Result<(), EngineError> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(over(
            "headers",
            format!(
                "has {} headers; at most {MAX_CUSTOM_HEADERS} are allowed",
                headers.len()
            ),
        ));
    }
    let bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_CUSTOM_HEADER_BYTES {
        return Err(over(
            "headers",
            format!("holds {bytes} bytes; at most {MAX_CUSTOM_HEADER_BYTES} are allowed"),
        ));
    }
    Ok(())
}

/// Metadata: at most [`MAX_METADATA_ENTRIES`] entries and
/// [`MAX_METADATA_BYTES`] together.
pub(crate) fn check_metadata(
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<(), EngineError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(over(
            "metadata",
            format!(
                "has {} entries; at most {MAX_METADATA_ENTRIES} are allowed",
                metadata.len()
            ),
        ));
    }
    // As stored: JSON, where a control character takes six bytes.
    let bytes = json_len(metadata);
    if bytes > MAX_METADATA_BYTES {
        return Err(over(
            "metadata",
            format!("holds {bytes} bytes; at most {MAX_METADATA_BYTES} are allowed"),
        ));
    }
    Ok(())
}

fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |b| b.len())
}

/// A text of at most `max` characters.
pub(crate) fn check_chars(field: &str, text: &str, max: usize) -> Result<(), EngineError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(over(
            field,
            format!("has {chars} characters; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// A JSON value of at most `max` bytes as stored.
pub(crate) fn check_json_bytes(
    field: &str,
    value: &serde_json::Value,
    max: usize,
) -> Result<(), EngineError> {
    let bytes = json_len(value);
    if bytes > max {
        return Err(over(
            field,
            format!("is {bytes} bytes as JSON; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// Feature flags: at most [`MAX_FEATURE_FLAGS`], each 1 to
/// [`MAX_FEATURE_FLAG_CHARS`] of `a-zA-Z0-9-_.` (Svix's pattern).
pub(crate) fn check_feature_flags(flags: Option<&[String]>) -> Result<(), EngineError> {
    let Some(flags) = flags else {
        return Ok(());
    };
    check_count("featureFlags", flags.len(), MAX_FEATURE_FLAGS)?;
    for flag in flags {
        let ok = !flag.is_empty()
            && flag.len() <= MAX_FEATURE_FLAG_CHARS
            && flag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(over(
                "featureFlags",
                format!(
                    "each must be 1 to {MAX_FEATURE_FLAG_CHARS} characters of letters, digits, '-', '_' and '.'"
                ),
            ));
        }
    }
    Ok(())
}

/// A list of at most `max` entries.
pub(crate) fn check_count(field: &str, len: usize, max: usize) -> Result<(), EngineError> {
    if len > max {
        return Err(over(
            field,
            format!("has {len} entries; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// A payload filter of at most [`MAX_PAYLOAD_FILTER_BYTES`] as JSON.
pub(crate) fn check_payload_filter_size(filter: &serde_json::Value) -> Result<(), EngineError> {
    let bytes = json_len(filter);
    if bytes > MAX_PAYLOAD_FILTER_BYTES {
        return Err(over(
            "payloadFilter",
            format!("is {bytes} bytes as JSON; at most {MAX_PAYLOAD_FILTER_BYTES} are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<(), EngineError>) -> String {
        match r {
            Err(EngineError::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn each_limit_is_inclusive_and_named() {
        let headers = |n: usize, len: usize| -> BTreeMap<String, String> {
            (0..n)
                .map(|i| (format!("x-h{i}"), "v".repeat(len)))
                .collect()
        };
        assert!(check_header_sizes(&headers(MAX_CUSTOM_HEADERS, 1)).is_ok());
        assert!(
            field(check_header_sizes(&headers(MAX_CUSTOM_HEADERS + 1, 1)))
                .starts_with("headers: has 51")
        );
        assert!(field(check_header_sizes(&headers(2, 9_000))).contains("at most 16384"));
        let meta = |n: usize, len: usize| -> BTreeMap<String, String> {
            (0..n).map(|i| (format!("k{i}"), "v".repeat(len))).collect()
        };
        assert!(check_metadata(Some(&meta(MAX_METADATA_ENTRIES, 1))).is_ok());
        assert!(
            field(check_metadata(Some(&meta(MAX_METADATA_ENTRIES + 1, 1)))).starts_with("metadata")
        );
        assert!(field(check_metadata(Some(&meta(2, 9_000)))).contains("bytes"));
        assert!(check_count("tags", MAX_TAGS, MAX_TAGS).is_ok());
        assert!(field(check_count("tags", MAX_TAGS + 1, MAX_TAGS)).starts_with("tags: has 21"));
        let small = serde_json::json!({"a": 1});
        assert!(check_payload_filter_size(&small).is_ok());
        let big = serde_json::json!({"a": "x".repeat(MAX_PAYLOAD_FILTER_BYTES)});
        assert!(field(check_payload_filter_size(&big)).starts_with("payloadFilter"));
    }
}
