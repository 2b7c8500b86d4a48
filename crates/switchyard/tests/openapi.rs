//! The OpenAPI document served at `/api/v1/openapi.json` against the
//! routes the server answers: every operation carries its schemas, every
//! documented operation is routed (and no other method on its path), and
//! no route is left out of the document.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Routes the server answers that the document shows under another path,
/// or not at all, each with its reason.
const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[
    ("/api/v1/openapi.json", "the document itself"),
    (
        "/ingest/{token}/",
        "ingest.receive with an empty path suffix",
    ),
    (
        "/ingest/{token}/{*rest}",
        "ingest.receive with a path suffix, forwarded to destinations",
    ),
];

/// String literals in the api crate that start like a route but are not
/// one (prefix tests on request paths).
const NOT_ROUTES: &[&str] = &[
    "/ingest/",
    "/ingest/api/",
    // The access route table's prefixes and its unit tests' request paths
    // (`api/src/access.rs`).
    "/api/v1/auth/",
    "/api/v1/operational-webhook/",
    "/api/v1/something-new",
    "/api/v1/app/my%20app/endpoint/ep_1",
    "/api/v1/app/%FF/endpoint/x",
];

async fn document(server: &Server) -> Value {
    let (status, doc) = server.client().get("/api/v1/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    doc
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            out.push((path.clone(), method.clone(), op.clone()));
        }
    }
    out
}

/// `path` with each `{param}` filled in with a value no resource has.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                let name = seg.trim_matches(|c| c == '{' || c == '}' || c == '*');
                format!("probe_{name}")
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends a malformed JSON body to `method path` with the admin token.
/// Returns the status and the JSON answer.
async fn probe(server: &Server, method: &str, path: &str) -> (u16, Value) {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
    let resp = reqwest::Client::new()
        .request(method, format!("{}{}", server.url, concrete(path)))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"")
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn read_a_body(status: u16, answer: &Value) -> bool {
    status == 422
        && answer["detail"][0]["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("malformed JSON"))
}

/// The router's own 404 (no route), as opposed to a handler's.
fn no_route(status: u16, answer: &Value) -> bool {
    status == 404 && answer["detail"] == "route not found"
}

fn schema_of(content: &Value) -> Vec<&Value> {
    content
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, media)| media.get("schema"))
        .collect()
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_carries_its_request_and_response_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let doc = document(&server).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let name = format!("{} {path}", method.to_uppercase());
        match op["operationId"].as_str() {
            Some(id) if ids.insert(id.to_owned()) => {}
            other => problems.push(format!("{name}: operationId {other:?} missing or repeated")),
        }
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        if !responses.keys().any(|s| s.starts_with('2')) {
            problems.push(format!("{name}: no success response"));
        }
        for (status, response) in &responses {
            let bodiless = status == "204" || method == "head";
            if !bodiless && schema_of(&response["content"]).is_empty() {
                problems.push(format!("{name}: response {status} has no schema"));
            }
        }
        if !responses.keys().any(|s| s.starts_with('5')) {
            problems.push(format!("{name}: no error response"));
        }
        for param in path.split('/').filter_map(|s| s.strip_prefix('{')) {
            let param = param.trim_end_matches('}');
            let documented = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "path" && p["name"] == param && p.get("schema").is_some());
            if !documented {
                problems.push(format!("{name}: path parameter {param} is not documented"));
            }
        }
        // Whether the handler reads a body: a malformed one is refused
        // before anything else is looked at.
        let documented_body = !op["requestBody"].is_null();
        if documented_body && schema_of(&op["requestBody"]["content"]).is_empty() {
            problems.push(format!("{name}: request body has no schema"));
        }
        let (status, answer) = probe(&server, &method, &path).await;
        let reads_json = read_a_body(status, &answer);
        if reads_json && !documented_body {
            problems.push(format!(
                "{name}: reads a JSON body the document does not show"
            ));
        }
        if documented_body && !reads_json && path != "/ingest/{token}" {
            problems.push(format!(
                "{name}: documents a JSON body it does not read ({status} {answer})"
            ));
        }
    }
    let mut all_refs = Vec::new();
    refs(&doc["paths"], &mut all_refs);
    refs(&doc["components"], &mut all_refs);
    for r in all_refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        if doc["components"]["schemas"].get(name).is_none() {
            problems.push(format!("dangling reference {r}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn the_document_and_the_routes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let doc = document(&server).await;
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, method, _) in operations(&doc) {
        documented.entry(path).or_default().insert(method);
    }
    let mut problems = Vec::new();
    // Every documented operation is routed, and no other method of the five
    // on its path is.
    for (path, methods) in &documented {
        for method in METHODS {
            let (status, answer) = probe(&server, method, path).await;
            let routed = status != 405 && !no_route(status, &answer);
            match (methods.contains(method), routed) {
                (true, false) => problems.push(format!(
                    "{} {path} is documented but not routed ({status} {answer})",
                    method.to_uppercase()
                )),
                (false, true) => problems.push(format!(
                    "{} {path} is routed ({status}) but not documented",
                    method.to_uppercase()
                )),
                _ => {}
            }
        }
    }
    for (route, why) in UNDOCUMENTED_ROUTES {
        let method = if route.starts_with("/ingest/") {
            "post"
        } else {
            "get"
        };
        let (status, answer) = probe(&server, method, route).await;
        if status == 405 || no_route(status, &answer) {
            problems.push(format!(
                "{route} ({why}) is not routed any more: drop it from the list"
            ));
        }
    }
    // Every route the api crate names is documented: routes are registered
    // from the handlers' annotations, so a path written anywhere else is a
    // route the document would miss.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let starts = text
            .match_indices("\"/api/")
            .chain(text.match_indices("\"/ingest/"));
        for (at, _) in starts {
            let rest = &text[at + 1..];
            let literal = &rest[..rest.find('"').unwrap_or(rest.len())];
            if literal.contains(' ') || NOT_ROUTES.contains(&literal) {
                continue;
            }
            let known = documented.contains_key(literal)
                || UNDOCUMENTED_ROUTES.iter().any(|(r, _)| *r == literal);
            if !known {
                problems.push(format!(
                    "{}: \"{literal}\" is not in the document",
                    file.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
