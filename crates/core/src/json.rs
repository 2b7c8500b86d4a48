//! The one JSON parse every decision about a payload is made on.
//!
//! Payloads are stored and delivered as the bytes the producer sent, while
//! schemas, payload filters and event-type/dedupe pointers look at a parsed
//! copy. `serde_json` keeps the *last* of duplicate object keys and many
//! receivers keep the *first*, so with duplicates the copy that was checked
//! and the data a receiver reads can differ. RFC 8259 §4 says names within
//! an object "SHOULD be unique" and leaves the meaning of duplicates to each
//! implementation; Switchyard refuses them instead of picking one.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why bytes are not a document decisions can be made on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// An object names the same key twice.
    #[error(transparent)]
    DuplicateKey(#[from] DuplicateKey),
    /// Not JSON, or nested deeper than `serde_json`'s limit of 128 levels;
    /// the text is `serde_json`'s message with line and column.
    #[error("malformed JSON: {0}")]
    Syntax(String),
}

/// An object key given more than once, found at `path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("duplicate key '{}' at {}", self.key(), self.pointer())]
pub struct DuplicateKey {
    /// Object keys and array indices (as decimal text) from the document's
    /// root down to the repeated key, which is the last element.
    pub path: Vec<String>,
}

impl DuplicateKey {
    /// The repeated key.
    pub fn key(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or("")
    }

    /// The place of the second occurrence as an RFC 6901 JSON pointer.
    pub fn pointer(&self) -> String {
        self.path
            .iter()
            .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
            .collect()
    }
}

/// Parses one JSON text (RFC 8259) into a [`Value`], refusing duplicate
/// object keys at any depth. Apart from that the result is what
/// `serde_json::from_slice::<Value>` gives, nesting limit (128) included.
///
/// # Errors
/// [`DocumentError::DuplicateKey`] naming the first repeated key met in
/// document order; [`DocumentError::Syntax`] for anything that is not one
/// JSON value (trailing text included).
pub fn parse_document(bytes: &[u8]) -> Result<Value, DocumentError> {
    let mut state = State::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict { state: &mut state }.deserialize(&mut de);
    if let Some(path) = state.duplicate {
        return Err(DuplicateKey { path }.into());
    }
    let value = parsed.map_err(|e| DocumentError::Syntax(e.to_string()))?;
    de.end().map_err(|e| DocumentError::Syntax(e.to_string()))?;
    Ok(value)
}

#[derive(Default)]
struct State {
    /// Where the parse is: keys and indices from the root.
    path: Vec<String>,
    /// Set when a duplicate stopped the parse (serde's error type cannot
    /// carry the path, so it is left here).
    duplicate: Option<Vec<String>>,
}

struct Strict<'a> {
    state: &'a mut State,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let state = self.state;
        let mut items = Vec::new();
        loop {
            state.path.push(items.len().to_string());
            let item = seq.next_element_seed(Strict { state: &mut *state })?;
            state.path.pop();
            match item {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let state = self.state;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            state.path.push(key);
            if object.contains_key(state.path.last().map_or("", String::as_str)) {
                state.duplicate = Some(state.path.clone());
                return Err(de::Error::custom("duplicate object key"));
            }
            let value = map.next_value_seed(Strict { state: &mut *state })?;
            let key = state.path.pop().unwrap_or_default();
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn duplicate(text: &str) -> Vec<String> {
        match parse_document(text.as_bytes()) {
            Err(DocumentError::DuplicateKey(d)) => d.path,
            other => panic!("{text}: expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(duplicate(r#"{"a":"evil","a":1}"#), ["a"]);
        assert_eq!(duplicate(r#"{"x":{"y":{"b":1,"b":1}}}"#), ["x", "y", "b"]);
        assert_eq!(
            duplicate(r#"{"items":[{"id":1},{"id":2,"n":0,"id":3}]}"#),
            ["items", "1", "id"]
        );
        assert_eq!(duplicate(r#"[[{"k":null,"k":null}]]"#), ["0", "0", "k"]);
        // Escapes are resolved before keys are compared.
        assert_eq!(duplicate(r#"{"a":1,"\u0061":2}"#), ["a"]);
        let d = DuplicateKey {
            path: vec!["a/b".into(), "c~d".into()],
        };
        assert_eq!(d.pointer(), "/a~1b/c~0d");
        assert_eq!(d.to_string(), "duplicate key 'c~d' at /a~1b/c~0d");
    }

    #[test]
    fn the_same_key_in_sibling_objects_is_fine() {
        let doc = parse_document(br#"{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":2}]}"#).unwrap();
        assert_eq!(doc["c"][1]["k"], 2);
    }

    #[test]
    fn not_json_is_a_syntax_error() {
        for text in ["", "{", "{\"a\":1} x", "nope", "{\"a\":1,}"] {
            assert!(
                matches!(
                    parse_document(text.as_bytes()),
                    Err(DocumentError::Syntax(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded_without_exhausting_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse_document(deep.as_bytes()),
            Err(DocumentError::Syntax(_))
        ));
        let ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_document(ok.as_bytes()).is_ok());
    }

    #[test]
    fn numbers_parse_as_serde_json_parses_them() {
        let text = r#"[0,-1,1.5,-2.5e-3,18446744073709551615,-9223372036854775808,1e400]"#;
        let strict = parse_document(text.as_bytes()).ok();
        let plain = serde_json::from_str::<Value>(text).ok();
        assert_eq!(strict, plain);
        assert_eq!(
            parse_document(br#"{"n":18446744073709551615}"#).unwrap(),
            json!({"n": u64::MAX})
        );
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn documents_without_duplicates_parse_as_serde_json_does(v in any_json()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(parse_document(text.as_bytes()).ok(), serde_json::from_str::<Value>(&text).ok());
        }
    }
}
