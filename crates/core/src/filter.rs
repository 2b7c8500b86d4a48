//! Payload filters: a small JSON language deciding whether an event goes to a
//! destination, and event-type patterns with `*` wildcards.
//!
//! A filter is a JSON object of one of these forms (`path` is a JSON pointer,
//! RFC 6901, into the event body):
//!
//! | form | true when |
//! |---|---|
//! | `{"path": "/type", "eq": "invoice.paid"}` | the value equals (numbers compare by value) |
//! | `{"path": "/type", "ne": "x"}` | the value is missing or differs |
//! | `{"path": "/currency", "in": ["usd", "eur"]}` | the value equals one of the list |
//! | `{"path": "/amount", "gt": 100}` (also `gte`, `lt`, `lte`) | the value is a number and compares so |
//! | `{"path": "/customer", "exists": true}` | the pointer resolves (to anything, `null` included) |
//! | `{"and": [f, …]}`, `{"or": [f, …]}`, `{"not": f}` | as in logic; `and: []` is true, `or: []` false |

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq(String, Value),
    Ne(String, Value),
    In(String, Vec<Value>),
    Compare(String, Comparison, f64),
    Exists(String, bool),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// Filters deeper than this are refused, so a hostile filter cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

impl Filter {
    /// Parses a filter, naming the offending place (as a JSON pointer into the
    /// filter) when it is not valid.
    pub fn parse(value: &Value) -> Result<Filter, String> {
        parse_at(value, "", 0)
    }

    pub fn matches(&self, event: &Value) -> bool {
        match self {
            Filter::Eq(path, want) => event.pointer(path).is_some_and(|v| same(v, want)),
            Filter::Ne(path, want) => !event.pointer(path).is_some_and(|v| same(v, want)),
            Filter::In(path, options) => event
                .pointer(path)
                .is_some_and(|v| options.iter().any(|o| same(v, o))),
            Filter::Compare(path, op, bound) => event
                .pointer(path)
                .and_then(Value::as_f64)
                .is_some_and(|v| match op {
                    Comparison::Gt => v > *bound,
                    Comparison::Gte => v >= *bound,
                    Comparison::Lt => v < *bound,
                    Comparison::Lte => v <= *bound,
                }),
            Filter::Exists(path, want) => event.pointer(path).is_some() == *want,
            Filter::And(all) => all.iter().all(|f| f.matches(event)),
            Filter::Or(any) => any.iter().any(|f| f.matches(event)),
            Filter::Not(inner) => !inner.matches(event),
        }
    }
}

/// Equality where 1 and 1.0 are the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn parse_at(value: &Value, at: &str, depth: usize) -> Result<Filter, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: filters nest at most {MAX_DEPTH} deep"));
    }
    let Some(object) = value.as_object() else {
        return Err(format!("{}: a filter must be an object", or_root(at)));
    };
    let list = |key: &str, v: &Value| -> Result<Vec<Filter>, String> {
        let items = v
            .as_array()
            .ok_or_else(|| format!("{at}/{key}: must be a list of filters"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, f)| parse_at(f, &format!("{at}/{key}/{i}"), depth + 1))
            .collect()
    };
    if object.len() == 1 {
        let (key, v) = object.iter().next().ok_or("empty filter")?;
        match key.as_str() {
            "and" => return Ok(Filter::And(list("and", v)?)),
            "or" => return Ok(Filter::Or(list("or", v)?)),
            "not" => {
                return Ok(Filter::Not(Box::new(parse_at(
                    v,
                    &format!("{at}/not"),
                    depth + 1,
                )?)));
            }
            _ => {}
        }
    }
    let path = match object.get("path") {
        Some(Value::String(p)) if p.is_empty() || p.starts_with('/') => p.clone(),
        Some(_) => {
            return Err(format!(
                "{at}/path: must be a JSON pointer such as \"/data/object/amount\""
            ));
        }
        None => {
            return Err(format!(
                "{}: expected \"and\", \"or\", \"not\" or a \"path\" with one operator",
                or_root(at)
            ));
        }
    };
    let operators: Vec<(&String, &Value)> = object.iter().filter(|(k, _)| *k != "path").collect();
    let [(op, operand)] = operators.as_slice() else {
        return Err(format!(
            "{}: give exactly one of eq, ne, in, gt, gte, lt, lte, exists",
            or_root(at)
        ));
    };
    let number = |name: &str| {
        operand
            .as_f64()
            .ok_or_else(|| format!("{at}/{name}: must be a number"))
    };
    Ok(match op.as_str() {
        "eq" => Filter::Eq(path, (*operand).clone()),
        "ne" => Filter::Ne(path, (*operand).clone()),
        "in" => Filter::In(
            path,
            operand
                .as_array()
                .ok_or_else(|| format!("{at}/in: must be a list"))?
                .clone(),
        ),
        "gt" => Filter::Compare(path, Comparison::Gt, number("gt")?),
        "gte" => Filter::Compare(path, Comparison::Gte, number("gte")?),
        "lt" => Filter::Compare(path, Comparison::Lt, number("lt")?),
        "lte" => Filter::Compare(path, Comparison::Lte, number("lte")?),
        "exists" => Filter::Exists(
            path,
            operand
                .as_bool()
                .ok_or_else(|| format!("{at}/exists: must be true or false"))?,
        ),
        other => return Err(format!("{at}/{other}: unknown operator")),
    })
}

fn or_root(at: &str) -> &str {
    if at.is_empty() { "filter" } else { at }
}

/// Whether an event type matches a pattern in which `*` stands for any run
/// of characters (`invoice.*` matches `invoice.paid` and `invoice.payment.failed`).
pub fn event_type_matches(pattern: &str, event_type: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = event_type.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"type": "invoice.paid", "data": {"amount": 1500, "currency": "usd", "note": null}})
    }

    fn check(filter: Value) -> bool {
        Filter::parse(&filter)
            .expect("valid filter")
            .matches(&event())
    }

    #[test]
    fn each_operator() {
        assert!(check(json!({"path": "/type", "eq": "invoice.paid"})));
        assert!(check(json!({"path": "/data/amount", "eq": 1500.0})));
        assert!(check(json!({"path": "/missing", "ne": 1})));
        assert!(check(
            json!({"path": "/data/currency", "in": ["eur", "usd"]})
        ));
        assert!(check(json!({"path": "/data/amount", "gte": 1500})));
        assert!(!check(json!({"path": "/data/amount", "gt": 1500})));
        assert!(check(json!({"path": "/data/amount", "lt": 2000.5})));
        assert!(!check(json!({"path": "/data/currency", "lte": 10})));
        assert!(check(json!({"path": "/data/note", "exists": true})));
        assert!(check(json!({"path": "/data/x", "exists": false})));
        assert!(check(json!({"and": [
            {"path": "/type", "eq": "invoice.paid"},
            {"or": [{"path": "/data/amount", "lt": 10}, {"not": {"path": "/data/currency", "eq": "eur"}}]}
        ]})));
        assert!(check(json!({"and": []})));
        assert!(!check(json!({"or": []})));
    }

    #[test]
    fn bad_filters_name_the_place() {
        let err = |f: Value| Filter::parse(&f).unwrap_err();
        assert!(err(json!({"and": [{"path": "/a", "gt": "x"}]})).starts_with("/and/0/gt"));
        assert!(err(json!({"path": "a", "eq": 1})).starts_with("/path"));
        assert!(err(json!({"path": "/a", "eq": 1, "ne": 2})).contains("exactly one"));
        assert!(err(json!({"path": "/a", "like": 1})).starts_with("/like"));
        assert!(err(json!([1])).starts_with("filter"));
        let mut deep = json!({"path": "/a", "exists": true});
        for _ in 0..40 {
            deep = json!({ "not": deep });
        }
        assert!(err(deep).contains("nest"));
    }

    #[test]
    fn wildcards() {
        assert!(event_type_matches("invoice.*", "invoice.paid"));
        assert!(event_type_matches("invoice.*", "invoice.payment.failed"));
        assert!(!event_type_matches("invoice.*", "invoices.paid"));
        assert!(event_type_matches("*", "anything"));
        assert!(event_type_matches("*.paid", "invoice.paid"));
        assert!(event_type_matches("a*b*c", "a-x-b-y-c"));
        assert!(!event_type_matches("a*b*c", "a-c"));
        assert!(event_type_matches("exact", "exact"));
        assert!(!event_type_matches("exact", "exactly"));
        assert!(!event_type_matches("ab*ba", "aba"));
    }

    fn leaf() -> impl Strategy<Value = Value> {
        let path = prop::sample::select(vec![
            "/type",
            "/data/amount",
            "/data/currency",
            "/data/note",
            "/nope",
        ]);
        (path, 0..6u8, -3000i64..3000).prop_map(|(p, op, n)| match op {
            0 => json!({"path": p, "eq": n}),
            1 => json!({"path": p, "ne": "usd"}),
            2 => json!({"path": p, "in": [n, "usd"]}),
            3 => json!({"path": p, "gt": n}),
            4 => json!({"path": p, "lte": n}),
            _ => json!({"path": p, "exists": n % 2 == 0}),
        })
    }

    fn filter() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({ "and": v })),
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({ "or": v })),
                inner.prop_map(|f| json!({ "not": f })),
            ]
        })
    }

    proptest! {
        #[test]
        fn logic_laws_hold(f in filter(), g in filter(), amount in -3000i64..3000) {
            let e = json!({"type": "t", "data": {"amount": amount, "currency": "usd"}});
            let pf = Filter::parse(&f).unwrap();
            let pg = Filter::parse(&g).unwrap();
            let m = |v: Value| Filter::parse(&v).unwrap().matches(&e);
            prop_assert_eq!(m(json!({"not": {"not": f.clone()}})), pf.matches(&e));
            prop_assert_eq!(m(json!({"and": [f.clone(), g.clone()]})), pf.matches(&e) && pg.matches(&e));
            prop_assert_eq!(m(json!({"or": [f.clone(), g.clone()]})), pf.matches(&e) || pg.matches(&e));
            // De Morgan.
            prop_assert_eq!(
                m(json!({"not": {"and": [f.clone(), g.clone()]}})),
                m(json!({"or": [{"not": f.clone()}, {"not": g}]}))
            );
            let excluded_middle = m(json!({"or": [f.clone(), {"not": f}]}));
            prop_assert!(excluded_middle);
        }

        #[test]
        fn comparisons_agree_with_numbers(amount in -1.0e6f64..1.0e6, bound in -1.0e6f64..1.0e6) {
            let e = json!({"amount": amount});
            let m = |op: &str| {
                let mut f = serde_json::Map::new();
                f.insert("path".into(), json!("/amount"));
                f.insert(op.into(), json!(bound));
                Filter::parse(&Value::Object(f)).unwrap().matches(&e)
            };
            prop_assert_eq!(m("gt"), amount > bound);
            prop_assert_eq!(m("gte"), amount >= bound);
            prop_assert_eq!(m("lt"), amount < bound);
            prop_assert_eq!(m("lte"), amount <= bound);
            prop_assert_eq!(m("gt") || m("lte"), true);
        }

        #[test]
        fn a_wildcard_prefix_matches_whatever_follows(prefix in "[a-z.]{0,8}", rest in "[a-z.]{0,8}") {
            let pattern = format!("{prefix}*");
            let event_type = format!("{prefix}{rest}");
            prop_assert!(event_type_matches(&pattern, &event_type));
            prop_assert!(event_type_matches(&event_type, &event_type));
        }
    }
}
