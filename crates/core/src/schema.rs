//! Bounds on user-supplied JSON Schemas (event-type schemas).
//!
//! A stored schema is evaluated against every message of its event type, so a
//! client that can create an event type can make the server do unbounded work
//! unless both the schema and each evaluation are bounded. The validator
//! itself (the `jsonschema` crate) has no budget, so this module models the
//! work it will do:
//!
//! - [`SchemaPlan::analyse`] refuses, when an event type is created or
//!   updated, a schema that is too big or too deep, whose references loop
//!   without descending into the payload (`{"allOf":[{"$ref":"#"}]}` applies
//!   itself to the same value forever), whose references leave the document,
//!   that applies more than [`MAX_APPLICATIONS_PER_VALUE`] subschemas to one
//!   value, or whose patterns need backtracking or together compile to more
//!   than [`MAX_PATTERNS_BYTES`].
//! - [`SchemaPlan::cost`] computes, before a payload is validated, an upper
//!   bound of the number of (subschema, value) evaluations the validator will
//!   make, walking the payload once. A payload whose bound exceeds the budget
//!   is refused without being validated: a schema that recurses with the
//!   payload (`{"properties":{"a":{"$ref":"#"}},"unevaluatedProperties":false}`)
//!   is fine for shallow payloads and exponential for deep ones.
//!
//! The model follows the applicators of JSON Schema 2020-12 (§10 "A Vocabulary
//! for Applying Subschemas", §11 "unevaluated" keywords) and the older drafts'
//! spellings (`definitions`, `dependencies`, array `items`, `additionalItems`,
//! `$recursiveRef`). Every applicator is assumed to run (no short-circuit),
//! and a keyword with a condition (`patternProperties`, `if`) is assumed to
//! apply, so the bound is never below the real work.

use regex_automata::meta;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Most subschemas (objects or booleans in schema positions) one schema may hold.
pub const MAX_SUBSCHEMAS: usize = 5_000;
/// Deepest nesting of subschemas within the schema document.
pub const MAX_DEPTH: usize = 64;
/// Most subschema applications to a single payload value (through `$ref`,
/// `allOf`, `anyOf`, `oneOf`, `not`, `if`/`then`/`else`, dependent schemas,
/// counted with multiplicity).
pub const MAX_APPLICATIONS_PER_VALUE: u64 = 10_000;
/// Work units one payload check may cost: one unit per (subschema, value)
/// evaluation, plus the size of the value for keywords that read it whole
/// (`pattern`, `format`, `enum`, `const`, `uniqueItems`, lengths, content),
/// plus the entries the validator walks for every object whatever it holds
/// (`properties`, `required`, the dependency keywords), plus each `enum`
/// value compared. Measured with `jsonschema` 0.61 at opt-level 1 at 8-20 ns
/// a unit in the shapes that cost most: about 0.2 s of one core at most.
pub const EVALUATION_BUDGET: u64 = 10_000_000;

/// Longest chain of subschemas applied to one value (`$ref` to `$ref` to
/// ...): the validator recurses once per link.
pub const MAX_IN_PLACE_CHAIN: usize = 128;
/// Deepest recursion a payload check may need: the payload's depth plus, at
/// each level, the longest in-place chain applied there. 2,400 levels were
/// measured to fit a 2 MiB thread stack; this keeps a wide margin.
pub const MAX_EVALUATION_DEPTH: usize = 1_000;

/// Why a schema is refused; the text names the schema location (a JSON
/// pointer into the schema) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaRefusal(pub String);

/// A payload whose check would exceed [`EVALUATION_BUDGET`] or
/// [`MAX_EVALUATION_DEPTH`]; the text says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OverBudget(pub String);

#[derive(Default, Debug)]
struct Node {
    /// Subschemas applied to the same value, with multiplicity.
    in_place: Vec<usize>,
    /// `properties`: applied to the member of that name.
    named: HashMap<String, usize>,
    /// `patternProperties`, `additionalProperties`, `unevaluatedProperties`:
    /// assumed to apply to every member.
    any_member: Vec<usize>,
    /// `propertyNames`: applied to each member name (a string).
    member_names: Vec<usize>,
    /// `prefixItems` and array-form `items`: applied to the item at that index.
    indexed: Vec<(usize, usize)>,
    /// `items`, `additionalItems`, `unevaluatedItems`, `contains`.
    any_item: Vec<usize>,
    /// Holds a keyword whose cost grows with the size of the value.
    reads_whole_value: bool,
    /// Work per evaluation of an object that grows with the schema rather
    /// than the value: `required` and the dependency keywords are walked
    /// entry by entry whatever the object holds.
    per_object: u64,
    /// Entries of `properties`: the validator may look each up in a
    /// non-empty object.
    properties_len: u64,
    /// `enum`: the number of listed values and their total weight (as
    /// [`value_sizes`] counts it). The validator compares the value with each
    /// in turn, each comparison costing at most the smaller of the two.
    enum_items: u64,
    enum_weight: u64,
}

/// A schema that passed [`SchemaPlan::analyse`], with the graph used to bound
/// the cost of each payload check.
#[derive(Debug)]
pub struct SchemaPlan {
    nodes: Vec<Node>,
    root: usize,
    /// Position of each node in a topological order of the in-place graph
    /// (parents first).
    rank: Vec<usize>,
    /// Cost of applying a node and its in-place closure to one value that has
    /// no children (used for member names).
    leaf_cost: Vec<u64>,
    /// Longest in-place chain from each node, itself included.
    chain: Vec<usize>,
}

/// A pending `$ref`-like keyword of a node, resolved once every anchor is known.
enum PendingRef {
    Ref(String),
    /// `$dynamicRef` / `$recursiveRef`: may land on the root or on any
    /// dynamic anchor, so every one of them is an edge.
    Dynamic,
}

/// The root is the first node made.
const ROOT: usize = 0;

struct Builder<'a> {
    doc: &'a Value,
    root_id: Option<String>,
    draft4: bool,
    index: HashMap<String, usize>,
    nodes: Vec<Node>,
    pointers: Vec<String>,
    pending: Vec<(usize, String, PendingRef)>,
    anchors: HashMap<String, usize>,
    dynamic_anchors: Vec<usize>,
    queue: Vec<(String, usize)>,
    /// Compiled size of the patterns checked so far.
    pattern_bytes: usize,
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn child_pointer(parent: &str, token: &str) -> String {
    format!("{parent}/{}", escape(token))
}

fn shown(pointer: &str) -> String {
    format!("#{pointer}")
}

impl<'a> Builder<'a> {
    /// The node at `pointer`, walking it the first time it is seen.
    fn node(&mut self, pointer: String, depth: usize) -> Result<usize, SchemaRefusal> {
        if let Some(&i) = self.index.get(&pointer) {
            return Ok(i);
        }
        if self.nodes.len() >= MAX_SUBSCHEMAS {
            return Err(SchemaRefusal(format!(
                "the schema has more than {MAX_SUBSCHEMAS} subschemas"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(SchemaRefusal(format!(
                "{}: subschemas are nested more than {MAX_DEPTH} deep",
                shown(&pointer)
            )));
        }
        let i = self.nodes.len();
        self.nodes.push(Node::default());
        self.pointers.push(pointer.clone());
        self.index.insert(pointer.clone(), i);
        self.queue.push((pointer, depth));
        Ok(i)
    }

    /// Patterns must be regular: the `regex` crate matches them in time
    /// linear in the input. Look-around and back-references (which the
    /// validator would run with a backtracking engine) are refused, and so
    /// is a pattern past [`MAX_PATTERN_BYTES`] or one that takes the
    /// schema's patterns past [`MAX_PATTERNS_BYTES`] together. Compiled
    /// with the engine under the `regex` crate, which tells the compiled
    /// size.
    fn check_pattern(&mut self, pattern: &str, here: &str) -> Result<(), SchemaRefusal> {
        let compiled = meta::Builder::new()
            .configure(meta::Config::new().nfa_size_limit(Some(MAX_PATTERN_BYTES)))
            .build(pattern)
            .map_err(|e| {
                let reason = match (e.syntax_error(), e.size_limit()) {
                    (Some(syntax), _) => syntax
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_owned(),
                    (None, Some(_)) => "the pattern is too large".to_owned(),
                    _ => e.to_string(),
                };
                SchemaRefusal(format!(
                    "{}: pattern '{pattern}' is not supported ({reason}); patterns are matched in linear time, without look-around or back-references",
                    shown(here)
                ))
            })?;
        self.pattern_bytes = self.pattern_bytes.saturating_add(compiled.memory_usage());
        if self.pattern_bytes > MAX_PATTERNS_BYTES {
            return Err(SchemaRefusal(format!(
                "{}: the schema's patterns together compile to more than {} MiB; use fewer or simpler patterns",
                shown(here),
                MAX_PATTERNS_BYTES >> 20
            )));
        }
        Ok(())
    }

    fn walk_pending(&mut self) -> Result<(), SchemaRefusal> {
        while let Some((pointer, depth)) = self.queue.pop() {
            let i = self.index[&pointer];
            self.walk(i, &pointer, depth)?;
        }
        Ok(())
    }

    fn walk(&mut self, i: usize, pointer: &str, depth: usize) -> Result<(), SchemaRefusal> {
        let doc = self.doc;
        let value = doc
            .pointer(pointer)
            .ok_or_else(|| SchemaRefusal(format!("{}: no such location", shown(pointer))))?;
        let map = match value {
            Value::Bool(_) => return Ok(()),
            Value::Object(map) => map,
            _ => {
                return Err(SchemaRefusal(format!(
                    "{}: a schema must be an object or a boolean",
                    shown(pointer)
                )));
            }
        };
        let at = |kw: &str| child_pointer(pointer, kw);
        let mut node = Node::default();
        for (keyword, value) in map {
            let here = at(keyword);
            match keyword.as_str() {
                "$ref" => match value.as_str() {
                    Some(r) => self.pending.push((i, here, PendingRef::Ref(r.to_owned()))),
                    None => {
                        return Err(SchemaRefusal(format!("{}: must be a string", shown(&here))));
                    }
                },
                "$dynamicRef" | "$recursiveRef" => {
                    self.pending.push((i, here, PendingRef::Dynamic));
                }
                "$dynamicAnchor" | "$recursiveAnchor" => self.dynamic_anchors.push(i),
                "$anchor" => {
                    if let Some(name) = value.as_str() {
                        self.anchors.insert(name.to_owned(), i);
                    }
                }
                "$id" => self.identify(i, pointer, &here, value)?,
                "id" if self.draft4 => self.identify(i, pointer, &here, value)?,
                "allOf" | "anyOf" | "oneOf" => {
                    for j in 0..array_len(value, &here)? {
                        let c = self.node(child_pointer(&here, &j.to_string()), depth + 1)?;
                        node.in_place.push(c);
                    }
                }
                "not" | "if" | "then" | "else" => {
                    node.in_place.push(self.node(here, depth + 1)?);
                }
                "dependentSchemas" | "dependencies" => {
                    node.per_object += object_of(value, &here)?.len() as u64;
                    for (name, dep) in object_of(value, &here)? {
                        // `dependencies` also takes arrays of names (no subschema).
                        if dep.is_object() || dep.is_boolean() {
                            node.in_place
                                .push(self.node(child_pointer(&here, name), depth + 1)?);
                        }
                    }
                }
                "properties" => {
                    node.properties_len += object_of(value, &here)?.len() as u64;
                    for name in object_of(value, &here)?.keys() {
                        let c = self.node(child_pointer(&here, name), depth + 1)?;
                        node.named.insert(name.clone(), c);
                    }
                }
                "patternProperties" => {
                    for name in object_of(value, &here)?.keys() {
                        self.check_pattern(name, &here)?;
                        let c = self.node(child_pointer(&here, name), depth + 1)?;
                        node.any_member.push(c);
                    }
                }
                "additionalProperties" | "unevaluatedProperties" => {
                    node.any_member.push(self.node(here, depth + 1)?);
                }
                "propertyNames" => node.member_names.push(self.node(here, depth + 1)?),
                "items" | "prefixItems" if value.is_array() => {
                    for j in 0..array_len(value, &here)? {
                        let c = self.node(child_pointer(&here, &j.to_string()), depth + 1)?;
                        node.indexed.push((j, c));
                    }
                }
                "items" | "additionalItems" | "unevaluatedItems" | "contains" => {
                    node.any_item.push(self.node(here, depth + 1)?);
                }
                "$defs" | "definitions" => {
                    for name in object_of(value, &here)?.keys() {
                        self.node(child_pointer(&here, name), depth + 1)?;
                    }
                }
                "pattern" => {
                    if let Some(p) = value.as_str() {
                        self.check_pattern(p, &here)?;
                    }
                    node.reads_whole_value = true;
                }
                "required" | "dependentRequired" => {
                    let entries = match value {
                        Value::Array(items) => items.len(),
                        Value::Object(map) => map.len(),
                        _ => 0,
                    };
                    node.per_object += entries as u64;
                }
                "enum" => {
                    node.reads_whole_value = true;
                    if let Value::Array(items) = value {
                        node.enum_items = items.len() as u64;
                        node.enum_weight = items
                            .iter()
                            .map(|item| value_sizes(item).get(0).copied().unwrap_or(1))
                            .fold(0u64, u64::saturating_add);
                    }
                }
                "format" | "minLength" | "maxLength" | "contentEncoding" | "contentMediaType"
                | "uniqueItems" | "const" => node.reads_whole_value = true,
                _ => {}
            }
        }
        self.nodes[i] = node;
        Ok(())
    }

    /// `$id` at the root names the document; below it, only the draft-7
    /// anchor form (`"#name"`) is taken: an embedded resource would change
    /// the base that `#/...` references resolve against.
    fn identify(
        &mut self,
        i: usize,
        pointer: &str,
        here: &str,
        value: &Value,
    ) -> Result<(), SchemaRefusal> {
        let Some(id) = value.as_str() else {
            return Ok(());
        };
        if let Some(anchor) = id.strip_prefix('#') {
            self.anchors.insert(anchor.to_owned(), i);
            return Ok(());
        }
        if pointer.is_empty() {
            return Ok(());
        }
        Err(SchemaRefusal(format!(
            "{}: embedded schema resources ($id below the root) are not supported; use $defs and #/... references",
            shown(here)
        )))
    }

    fn resolve(&mut self, here: &str, reference: &str) -> Result<usize, SchemaRefusal> {
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let same_document = base.is_empty()
            || self
                .root_id
                .as_deref()
                .is_some_and(|id| id.trim_end_matches('#') == base);
        if !same_document {
            return Err(SchemaRefusal(format!(
                "{}: reference '{reference}' leaves the schema; only references within it are supported (#, #/json/pointer, #anchor)",
                shown(here)
            )));
        }
        // A URI fragment (RFC 3986 §3.5): percent-decoded before it is read
        // as a JSON pointer or an anchor name.
        let fragment = percent_encoding::percent_decode_str(fragment)
            .decode_utf8_lossy()
            .into_owned();
        if fragment.is_empty() {
            return Ok(ROOT);
        }
        if fragment.starts_with('/') {
            let target = self.doc.pointer(&fragment);
            if !target.is_some_and(|t| t.is_object() || t.is_boolean()) {
                return Err(SchemaRefusal(format!(
                    "{}: reference '{reference}' does not point to a schema",
                    shown(here)
                )));
            }
            // Canonical form, so two spellings of one place are one node.
            let depth = fragment.matches('/').count();
            return self.node(canonical_pointer(&fragment), depth);
        }
        self.anchors.get(&fragment).copied().ok_or_else(|| {
            SchemaRefusal(format!(
                "{}: reference '{reference}' names no anchor of this schema",
                shown(here)
            ))
        })
    }
}

fn array_len(value: &Value, here: &str) -> Result<usize, SchemaRefusal> {
    value
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| SchemaRefusal(format!("{}: must be an array of schemas", shown(here))))
}

fn object_of<'v>(
    value: &'v Value,
    here: &str,
) -> Result<&'v serde_json::Map<String, Value>, SchemaRefusal> {
    value
        .as_object()
        .ok_or_else(|| SchemaRefusal(format!("{}: must be an object", shown(here))))
}

/// Re-escapes each token of a JSON pointer (RFC 6901) so that equal
/// locations have equal strings.
fn canonical_pointer(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|t| escape(&t.replace("~1", "/").replace("~0", "~")))
        .fold(String::new(), |mut acc, t| {
            acc.push('/');
            acc.push_str(&t);
            acc
        })
}

/// Most compiled size of one pattern.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// Most compiled size of all the patterns of one schema together (`pattern`
/// and `patternProperties`, each occurrence counted). The validator compiles
/// every one when the schema is compiled and keeps them while the schema is
/// in use, so the bound of one pattern alone lets [`MAX_SUBSCHEMAS`] of them
/// take gigabytes: 5,000 patterns of `.{1000}` took 6.9 GB and 50 s to
/// compile with `jsonschema` 0.61. Ordinary patterns take 1 to 60 KB each
/// (`^[a-z0-9_-]+$` 1.5 KB, a Unicode `\d{4}` 40 KB).
pub const MAX_PATTERNS_BYTES: usize = 16 << 20;

impl SchemaPlan {
    /// Checks a schema and builds its plan.
    ///
    /// Errors: a [`SchemaRefusal`] naming the location, for a schema with
    /// more than [`MAX_SUBSCHEMAS`] subschemas or nested deeper than
    /// [`MAX_DEPTH`]; a reference that leaves the document or points to
    /// nothing; an embedded `$id` resource; a cycle of subschemas applied to
    /// the same value; more than [`MAX_APPLICATIONS_PER_VALUE`] applications
    /// to one value; a pattern that is not regular, and patterns that
    /// together compile to more than [`MAX_PATTERNS_BYTES`].
    pub fn analyse(schema: &Value) -> Result<SchemaPlan, SchemaRefusal> {
        let draft4 = schema
            .get("$schema")
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("draft-04") || s.contains("draft-03"));
        let root_id = schema
            .get(if draft4 { "id" } else { "$id" })
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut b = Builder {
            doc: schema,
            root_id,
            draft4,
            index: HashMap::new(),
            nodes: Vec::new(),
            pointers: Vec::new(),
            pending: Vec::new(),
            anchors: HashMap::new(),
            dynamic_anchors: Vec::new(),
            queue: Vec::new(),
            pattern_bytes: 0,
        };
        let root = b.node(String::new(), 0)?;
        debug_assert_eq!(root, ROOT);
        b.walk_pending()?;
        // References may reach places not walked yet (anything the pointer
        // names), which may hold references of their own.
        while let Some((i, here, pending)) = b.pending.pop() {
            match pending {
                PendingRef::Ref(r) => {
                    let target = b.resolve(&here, &r)?;
                    b.walk_pending()?;
                    b.nodes[i].in_place.push(target);
                }
                PendingRef::Dynamic => {
                    let mut targets = vec![root];
                    targets.extend(b.dynamic_anchors.iter().copied());
                    b.nodes[i].in_place.extend(targets);
                }
            }
        }
        let rank = in_place_order(&b.nodes, &b.pointers)?;
        let mut leaf_cost = vec![0u64; b.nodes.len()];
        let mut chain = vec![1usize; b.nodes.len()];
        let mut by_rank: Vec<usize> = (0..b.nodes.len()).collect();
        by_rank.sort_by_key(|&n| std::cmp::Reverse(rank[n]));
        for n in by_rank {
            let node = &b.nodes[n];
            let children = node
                .in_place
                .iter()
                .fold(0u64, |acc, &c| acc.saturating_add(leaf_cost[c]));
            leaf_cost[n] = 1u64.saturating_add(children);
            chain[n] = 1 + node.in_place.iter().map(|&c| chain[c]).max().unwrap_or(0);
            if chain[n] > MAX_IN_PLACE_CHAIN {
                return Err(SchemaRefusal(format!(
                    "{}: applies a chain of more than {MAX_IN_PLACE_CHAIN} subschemas to one value (each $ref, allOf, ... is one link)",
                    shown(&b.pointers[n])
                )));
            }
            if leaf_cost[n] > MAX_APPLICATIONS_PER_VALUE {
                return Err(SchemaRefusal(format!(
                    "{}: applies more than {MAX_APPLICATIONS_PER_VALUE} subschemas to one value (through $ref, allOf, anyOf, oneOf, ...)",
                    shown(&b.pointers[n])
                )));
            }
        }
        Ok(SchemaPlan {
            nodes: b.nodes,
            root,
            rank,
            leaf_cost,
            chain,
        })
    }

    /// Number of subschemas in the plan.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the plan has no subschemas (never: the root is one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// An upper bound, in work units, of validating `instance` with this
    /// schema; walks the payload once and stops as soon as `budget` is passed.
    ///
    /// Errors: [`OverBudget`] when the bound exceeds `budget`.
    pub fn cost(&self, instance: &Value, budget: u64) -> Result<u64, OverBudget> {
        let over = OverBudget(format!(
            "checking this payload against the schema would take more than {budget} steps (the schema applies many subschemas to the values of a payload this large or deep)"
        ));
        let sizes = value_sizes(instance);
        let mut spent: u64 = 0;
        let charge = |units: u64, spent: &mut u64| -> Result<(), OverBudget> {
            *spent = spent.saturating_add(units);
            if *spent > budget {
                Err(over.clone())
            } else {
                Ok(())
            }
        };
        // Values in pre-order (the order `value_sizes` numbered them), each
        // with the subschemas applied to it and how many times.
        let mut stack: Vec<Visit> = vec![(instance, 0, vec![(self.root, 1)], 0)];
        let mut counts: HashMap<usize, u64> = HashMap::new();
        let mut seen: HashSet<usize> = HashSet::new();
        while let Some((value, order, applied, depth)) = stack.pop() {
            let depth = depth
                + applied
                    .iter()
                    .map(|&(n, _)| self.chain[n])
                    .max()
                    .unwrap_or(0);
            if depth > MAX_EVALUATION_DEPTH {
                return Err(OverBudget(format!(
                    "checking this payload against the schema would recurse more than {MAX_EVALUATION_DEPTH} levels (the payload's depth times the schema's chains of references)"
                )));
            }
            // The in-place closure with multiplicities, parents before children.
            counts.clear();
            seen.clear();
            let mut reached: Vec<usize> = Vec::new();
            let mut todo: Vec<usize> = applied.iter().map(|&(n, _)| n).collect();
            while let Some(n) = todo.pop() {
                if seen.insert(n) {
                    reached.push(n);
                    charge(1, &mut spent)?;
                    todo.extend(self.nodes[n].in_place.iter().copied());
                }
            }
            reached.sort_by_key(|&n| self.rank[n]);
            for &(n, m) in &applied {
                let c = counts.entry(n).or_insert(0);
                *c = c.saturating_add(m);
            }
            let weight = sizes.get(order).copied().unwrap_or(1);
            let mut members: Vec<(usize, u64)> = Vec::new();
            for &n in &reached {
                let m = counts.get(&n).copied().unwrap_or(0);
                let node = &self.nodes[n];
                let evaluations = m;
                charge(evaluations, &mut spent)?;
                if node.reads_whole_value {
                    charge(evaluations.saturating_mul(weight), &mut spent)?;
                }
                if let Value::Object(map) = value {
                    let walked = if map.is_empty() {
                        node.per_object
                    } else {
                        node.per_object.saturating_add(node.properties_len)
                    };
                    charge(evaluations.saturating_mul(walked), &mut spent)?;
                }
                if node.enum_items > 0 {
                    let comparisons = node
                        .enum_items
                        .saturating_mul(weight)
                        .min(node.enum_weight.saturating_add(node.enum_items));
                    charge(evaluations.saturating_mul(comparisons), &mut spent)?;
                }
                let passed = m;
                for &c in &node.in_place {
                    let e = counts.entry(c).or_insert(0);
                    *e = e.saturating_add(passed);
                }
                members.push((n, passed));
            }
            let mut child_order = order + 1;
            match value {
                Value::Object(map) => {
                    let mut per_child: Vec<Vec<(usize, u64)>> = vec![Vec::new(); map.len()];
                    for &(n, m) in &members {
                        let node = &self.nodes[n];
                        let has_member_keywords = !node.named.is_empty()
                            || !node.any_member.is_empty()
                            || !node.member_names.is_empty();
                        if !has_member_keywords {
                            continue;
                        }
                        for (k, (name, _)) in map.iter().enumerate() {
                            charge(m, &mut spent)?;
                            if let Some(&c) = node.named.get(name) {
                                per_child[k].push((c, m));
                            }
                            per_child[k].extend(node.any_member.iter().map(|&c| (c, m)));
                            for &c in &node.member_names {
                                let key_weight = 1 + name.len() as u64 / 32;
                                charge(
                                    m.saturating_mul(self.leaf_cost[c])
                                        .saturating_mul(key_weight),
                                    &mut spent,
                                )?;
                            }
                        }
                    }
                    let mut children = Vec::with_capacity(map.len());
                    for ((_, child), applied) in map.iter().zip(per_child) {
                        children.push((child, child_order, applied, depth));
                        child_order += sizes_span(&sizes, child_order);
                    }
                    push_children(&mut stack, children);
                }
                Value::Array(items) => {
                    let mut children = Vec::with_capacity(items.len());
                    for (k, child) in items.iter().enumerate() {
                        let mut applied = Vec::new();
                        for &(n, m) in &members {
                            let node = &self.nodes[n];
                            for &(idx, c) in &node.indexed {
                                if idx == k {
                                    applied.push((c, m));
                                }
                            }
                            applied.extend(node.any_item.iter().map(|&c| (c, m)));
                        }
                        charge(1, &mut spent)?;
                        children.push((child, child_order, applied, depth));
                        child_order += sizes_span(&sizes, child_order);
                    }
                    push_children(&mut stack, children);
                }
                _ => {}
            }
        }
        Ok(spent)
    }
}

/// A payload value to visit: the value, its pre-order number, the
/// subschemas applied to it with their multiplicities, and the validator's
/// recursion depth at its parent.
type Visit<'v> = (&'v Value, usize, Vec<(usize, u64)>, usize);

/// Children are visited in document order; values with nothing applied are
/// skipped (the validator never looks at them).
fn push_children<'v>(stack: &mut Vec<Visit<'v>>, children: Vec<Visit<'v>>) {
    for child in children.into_iter().rev() {
        if !child.2.is_empty() {
            stack.push(child);
        }
    }
}

/// For each value of the payload in pre-order: its weight (values in its
/// subtree, plus string bytes / 32) in the first half, and the number of
/// values in its subtree (its span in the pre-order) in the second.
struct Sizes {
    weight: Vec<u64>,
    span: Vec<usize>,
}

impl Sizes {
    fn get(&self, i: usize) -> Option<&u64> {
        self.weight.get(i)
    }
}

fn sizes_span(sizes: &Sizes, i: usize) -> usize {
    sizes.span.get(i).copied().unwrap_or(1)
}

fn value_sizes(instance: &Value) -> Sizes {
    let mut parent: Vec<usize> = Vec::new();
    let mut own: Vec<u64> = Vec::new();
    let mut stack: Vec<(&Value, usize)> = vec![(instance, usize::MAX)];
    while let Some((value, up)) = stack.pop() {
        let me = own.len();
        parent.push(up);
        own.push(match value {
            Value::String(s) => 1 + s.len() as u64 / 32,
            _ => 1,
        });
        match value {
            Value::Object(map) => stack.extend(map.values().rev().map(|v| (v, me))),
            Value::Array(items) => stack.extend(items.iter().rev().map(|v| (v, me))),
            _ => {}
        }
    }
    let mut weight = own;
    let mut span = vec![1usize; weight.len()];
    for i in (1..weight.len()).rev() {
        let p = parent[i];
        weight[p] = weight[p].saturating_add(weight[i]);
        span[p] += span[i];
    }
    Sizes { weight, span }
}

/// A topological rank of the in-place graph, or the cycle that prevents one.
fn in_place_order(nodes: &[Node], pointers: &[String]) -> Result<Vec<usize>, SchemaRefusal> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; nodes.len()];
    let mut finished: Vec<usize> = Vec::with_capacity(nodes.len());
    for start in 0..nodes.len() {
        if state[start] != NEW {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = OPEN;
        while let Some(&mut (n, ref mut next)) = path.last_mut() {
            if let Some(&c) = nodes[n].in_place.get(*next) {
                *next += 1;
                match state[c] {
                    NEW => {
                        state[c] = OPEN;
                        path.push((c, 0));
                    }
                    OPEN => {
                        let from = path.iter().position(|&(p, _)| p == c).unwrap_or(0);
                        let cycle: Vec<String> = path[from..]
                            .iter()
                            .map(|&(p, _)| shown(&pointers[p]))
                            .chain(std::iter::once(shown(&pointers[c])))
                            .collect();
                        return Err(SchemaRefusal(format!(
                            "reference cycle that never descends into the payload: {}",
                            cycle.join(" -> ")
                        )));
                    }
                    _ => {}
                }
            } else {
                state[n] = DONE;
                finished.push(n);
                path.pop();
            }
        }
    }
    // Reverse finishing order is a topological order.
    let mut rank = vec![0usize; nodes.len()];
    for (position, &n) in finished.iter().rev().enumerate() {
        rank[n] = position;
    }
    Ok(rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(schema: Value) -> String {
        match SchemaPlan::analyse(&schema) {
            Err(e) => e.0,
            Ok(_) => panic!("accepted: {schema}"),
        }
    }

    #[test]
    fn references_that_loop_in_place_are_refused() {
        let text = refused(json!({"allOf": [{"$ref": "#"}]}));
        assert!(text.contains("cycle"), "{text}");
        assert!(text.contains("#/allOf/0"), "{text}");
        refused(json!({"$ref": "#"}));
        refused(
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
                       "$ref": "#/$defs/a"}),
        );
        refused(json!({"not": {"$ref": "#"}}));
        refused(json!({"if": {"$ref": "#"}}));
        refused(json!({"dependentSchemas": {"a": {"$ref": "#"}}}));
        refused(json!({"$defs": {"x": {"$anchor": "x", "oneOf": [{"$ref": "#x"}]}}}));
        refused(json!({"$dynamicAnchor": "n", "anyOf": [{"$dynamicRef": "#n"}]}));
        refused(json!({"definitions": {"a": {"$ref": "#/definitions/a"}}}));
        // The same place spelled with an escape is the same place.
        refused(json!({"$defs": {"a/b": {"allOf": [{"$ref": "#/$defs/a~1b"}]}}}));
        // ... and so is one spelled with a percent-escape (a URI fragment).
        refused(json!({"$defs": {"a b": {"not": {"$ref": "#/$defs/a%20b"}}}}));
    }

    #[test]
    fn recursion_through_the_payload_is_allowed() {
        let tree = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#"}}
            }
        });
        let plan = SchemaPlan::analyse(&tree).unwrap();
        let payload = json!({"name": "a", "children": [{"name": "b", "children": []}]});
        assert!(plan.cost(&payload, EVALUATION_BUDGET).is_ok());
    }

    #[test]
    fn references_must_stay_in_the_document() {
        for r in [
            "http://example.com/s.json",
            "other.json#/a",
            "#/nope",
            "#missing",
        ] {
            let text = refused(json!({"$ref": r}));
            assert!(text.contains(r), "{text}");
        }
        refused(json!({"$defs": {"a": {"$id": "http://x/a", "type": "string"}}}));
        // The document's own id, spelled out, is the document.
        let ok = json!({"$id": "https://ex.com/s", "$defs": {"a": {"type": "string"}},
                        "properties": {"x": {"$ref": "https://ex.com/s#/$defs/a"}}});
        SchemaPlan::analyse(&ok).unwrap();
        // Draft-7 anchors.
        let ok = json!({"definitions": {"a": {"$id": "#a", "type": "string"}},
                        "properties": {"x": {"$ref": "#a"}}});
        SchemaPlan::analyse(&ok).unwrap();
    }

    #[test]
    fn size_depth_and_fan_out_are_bounded() {
        let mut deep = json!({"type": "string"});
        for _ in 0..(MAX_DEPTH + 1) {
            deep = json!({"not": deep});
        }
        assert!(refused(deep).contains("nested"));
        let many: serde_json::Map<String, Value> = (0..MAX_SUBSCHEMAS + 1)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        assert!(refused(json!({"properties": many})).contains("subschemas"));
        // Each level applies the one below twice: 2^20 applications per value.
        let mut defs = serde_json::Map::new();
        defs.insert("d0".into(), json!({"type": "object"}));
        for i in 1..=20 {
            let below = format!("#/$defs/d{}", i - 1);
            defs.insert(
                format!("d{i}"),
                json!({"allOf": [{"$ref": below}, {"$ref": below}]}),
            );
        }
        let text = refused(json!({"$defs": defs, "$ref": "#/$defs/d20"}));
        assert!(text.contains("applies more than"), "{text}");
    }

    #[test]
    fn backtracking_patterns_are_refused() {
        refused(json!({"pattern": "^(a+)\\1$"}));
        refused(json!({"pattern": "(?=a)a"}));
        refused(json!({"patternProperties": {"(?<!x)y": {}}}));
        SchemaPlan::analyse(&json!({"pattern": "^[a-z]+(-[a-z]+)*$"})).unwrap();
    }

    /// Each pattern is compiled when the schema is, and kept while it is in
    /// use: 5,000 patterns of `.{1000}` (84 KB of schema, each pattern under
    /// the limit of one) took 6.9 GB and 50 s to compile with `jsonschema`
    /// 0.61, after 20 s in `analyse`.
    #[test]
    fn the_patterns_of_a_schema_are_bounded_together() {
        let many = |pattern: &str, n: usize| -> Value {
            let props: serde_json::Map<String, Value> = (0..n)
                .map(|i| (format!("{pattern}{i}"), json!({})))
                .collect();
            json!({"patternProperties": props})
        };
        SchemaPlan::analyse(&many(".{1000}", 1)).unwrap();
        let text = refused(many(".{1000}", 40));
        assert!(text.contains("patterns together"), "{text}");
        // Spread over `pattern` keywords too.
        let props: serde_json::Map<String, Value> = (0..40)
            .map(|i| (format!("p{i}"), json!({"pattern": format!(".{{1000}}{i}")})))
            .collect();
        let text = refused(json!({"properties": props}));
        assert!(text.contains("patterns together"), "{text}");
        // Ordinary patterns, even many, stay well within it.
        SchemaPlan::analyse(&many("^[a-z0-9_-]+$", 2_000)).unwrap();
        SchemaPlan::analyse(&many("^\\d{4}-\\d{2}-\\d{2}$", 200)).unwrap();
    }

    #[test]
    fn recursion_that_doubles_per_level_is_bounded_per_payload() {
        // Two applicators that both recurse: the validator's work doubles
        // with each level of the payload; fine shallow, refused deep.
        let schema = json!({"allOf": [{"properties": {"a": {"$ref": "#"}}},
                                       {"properties": {"a": {"$ref": "#"}}}]});
        let plan = SchemaPlan::analyse(&schema).unwrap();
        let mut payload = json!({});
        for _ in 0..3 {
            payload = json!({"a": payload});
        }
        assert!(plan.cost(&payload, EVALUATION_BUDGET).is_ok());
        for _ in 0..60 {
            payload = json!({"a": payload});
        }
        let refusal = plan.cost(&payload, EVALUATION_BUDGET).unwrap_err();
        assert!(refusal.0.contains("steps"), "{refusal}");
        // Linear recursion stays cheap however deep.
        let schema = json!({"properties": {"a": {"$ref": "#"}}, "unevaluatedProperties": false});
        let plan = SchemaPlan::analyse(&schema).unwrap();
        assert!(plan.cost(&payload, EVALUATION_BUDGET).is_ok());
    }

    #[test]
    fn the_validators_recursion_is_bounded() {
        // A chain of references applied to one value: one recursion per link.
        let chain = |n: usize| {
            let mut defs = serde_json::Map::new();
            defs.insert("d0".into(), json!({"type": "integer"}));
            for i in 1..=n {
                defs.insert(
                    format!("d{i}"),
                    json!({"$ref": format!("#/$defs/d{}", i - 1)}),
                );
            }
            json!({"$defs": defs, "$ref": format!("#/$defs/d{n}")})
        };
        SchemaPlan::analyse(&chain(100)).unwrap();
        assert!(refused(chain(MAX_IN_PLACE_CHAIN + 1)).contains("chain"));
        // A long chain at every level of a deep payload.
        let mut defs = serde_json::Map::new();
        defs.insert(
            "d0".into(),
            json!({"properties": {"a": {"$ref": "#/$defs/d100"}}}),
        );
        for i in 1..=100 {
            defs.insert(
                format!("d{i}"),
                json!({"$ref": format!("#/$defs/d{}", i - 1)}),
            );
        }
        let plan = SchemaPlan::analyse(&json!({"$defs": defs, "$ref": "#/$defs/d100"})).unwrap();
        let mut payload = json!(1);
        for _ in 0..5 {
            payload = json!({"a": payload});
        }
        assert!(plan.cost(&payload, EVALUATION_BUDGET).is_ok());
        for _ in 0..20 {
            payload = json!({"a": payload});
        }
        let refusal = plan.cost(&payload, EVALUATION_BUDGET).unwrap_err();
        assert!(refusal.0.contains("recurse"), "{refusal}");
    }

    #[test]
    fn cost_grows_with_the_payload_and_stops_at_the_budget() {
        let schema = json!({"type": "array", "items": {"type": "string", "pattern": "^x"}});
        let plan = SchemaPlan::analyse(&schema).unwrap();
        let small = plan
            .cost(&Value::from(vec!["x"; 10]), EVALUATION_BUDGET)
            .unwrap();
        let big = plan
            .cost(&Value::from(vec!["x"; 1000]), EVALUATION_BUDGET)
            .unwrap();
        assert!(big > small * 50, "{small} {big}");
        assert!(plan.cost(&Value::from(vec!["x"; 1000]), 100).is_err());
        // Values no subschema reaches cost nothing.
        let plan = SchemaPlan::analyse(&json!({"type": "object"})).unwrap();
        let wide: serde_json::Map<String, Value> = (0..10_000)
            .map(|i| (format!("k{i}"), json!([1, 2, 3])))
            .collect();
        assert!(plan.cost(&Value::Object(wide), 100).is_ok());
    }

    #[test]
    fn work_that_grows_with_the_schema_is_costed() {
        // The validator compares each item with every listed value and walks
        // `properties` and dependency maps entry by entry for every object:
        // a long list times a long array is quadratic (50,000 x 50,000
        // took 8.8 s in one request).
        let many = |n: usize| -> Vec<Value> { (0..n).map(Value::from).collect() };
        let items = |item: Value| json!({"properties": {"x": {"type": "array", "items": item}}});
        let long_array = |value: Value, n: usize| json!({"x": vec![value; n]});
        let plan = SchemaPlan::analyse(&items(json!({"enum": many(50_000)}))).unwrap();
        assert!(
            plan.cost(&long_array(json!(49_999), 50_000), EVALUATION_BUDGET)
                .is_err()
        );
        assert!(
            plan.cost(&long_array(json!(1), 10), EVALUATION_BUDGET)
                .is_ok()
        );
        let names: serde_json::Map<String, Value> =
            (0..4_000).map(|i| (format!("p{i}"), json!(true))).collect();
        let plan = SchemaPlan::analyse(&items(json!({"properties": names}))).unwrap();
        assert!(
            plan.cost(&long_array(json!({"q": 1}), 20_000), EVALUATION_BUDGET)
                .is_err()
        );
        // Empty objects have nothing to look up.
        assert!(
            plan.cost(&long_array(json!({}), 20_000), EVALUATION_BUDGET)
                .is_ok()
        );
        let deps: serde_json::Map<String, Value> =
            (0..40_000).map(|i| (format!("p{i}"), json!([]))).collect();
        let plan = SchemaPlan::analyse(&items(json!({"dependentRequired": deps}))).unwrap();
        assert!(
            plan.cost(&long_array(json!({}), 20_000), EVALUATION_BUDGET)
                .is_err()
        );
        // A short enum stays cheap.
        let plan = SchemaPlan::analyse(&items(json!({"enum": ["a", "b", "c"]}))).unwrap();
        let cost = plan
            .cost(&long_array(json!("a"), 1_000), EVALUATION_BUDGET)
            .unwrap();
        assert!(cost < 20_000, "{cost}");
    }

    #[test]
    fn ordinary_schemas_pass() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["id", "amount"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "amount": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "customer": {"$ref": "#/$defs/customer"}
            },
            "$defs": {"customer": {"type": "object", "properties": {"email": {"type": "string"}},
                                   "additionalProperties": false}},
            "if": {"properties": {"amount": {"const": 0}}},
            "then": {"required": ["reason"]}
        });
        let plan = SchemaPlan::analyse(&schema).unwrap();
        let payload =
            json!({"id": "x", "amount": 3, "tags": ["a", "b"], "customer": {"email": "e"}});
        let cost = plan.cost(&payload, EVALUATION_BUDGET).unwrap();
        assert!(cost < 200, "{cost}");
        SchemaPlan::analyse(&json!(true)).unwrap();
        SchemaPlan::analyse(
            &json!({"$schema": "http://json-schema.org/draft-04/schema#",
            "id": "http://ex.com/s", "properties": {"a": {"id": "#a"}}}),
        )
        .unwrap();
    }
}
