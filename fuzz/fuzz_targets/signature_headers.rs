//! Incoming-webhook verification with hostile requests: the Standard
//! Webhooks header parser and verifier (`signing`), and every provider's
//! check through the path ingest takes (`source::compile`, then
//! `Plan::verify`, the handshake, the event type and the dedupe id), for
//! every source type. Nothing here may panic, whatever the headers, body,
//! URL, clock or configuration.
//!
//! An input is text, so that seeds can be written by hand:
//!
//! ```text
//! {"config": {...}, "settings": {...}, "retired": [["secret", 1700000000000]], "nowMs": 1700000000000, "url": "https://...", "tolerance": 300}
//! Header-Name: value
//! Other-Header: value
//!
//! body bytes (the rest of the input)
//! ```
//!
//! The first line (any part of it may be missing or invalid) configures
//! every source type at once: keys a provider does not read are ignored, so
//! one config can hold `secret`, `header`, `username`, `password`, `key`...

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_core::providers;
use switchyard_core::signing::{self, EndpointSecret};
use switchyard_core::source::{compile, document_of};
use switchyard_core::verify::Incoming;

struct Request {
    meta: Value,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Splits an input into its meta line, header lines and body; header lines
/// that are not UTF-8 are read lossily (a header value reaches ingest as
/// text).
fn split(data: &[u8]) -> Request {
    let (meta, mut rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let meta = serde_json::from_slice(meta).unwrap_or(Value::Null);
    let mut headers = Vec::new();
    loop {
        let Some(i) = rest.iter().position(|&b| b == b'\n') else {
            // No blank line: all of it is header lines, the body is empty.
            if !rest.is_empty() {
                headers.push(header_line(rest));
            }
            rest = &[];
            break;
        };
        let line = &rest[..i];
        rest = &rest[i + 1..];
        if line.is_empty() {
            break;
        }
        headers.push(header_line(line));
    }
    Request {
        meta,
        headers,
        body: rest.to_vec(),
    }
}

fn header_line(line: &[u8]) -> (String, String) {
    let line = String::from_utf8_lossy(line);
    match line.split_once(':') {
        Some((name, value)) => (
            name.to_owned(),
            value.trim_start_matches([' ', '\t']).to_owned(),
        ),
        None => (line.into_owned(), String::new()),
    }
}

fuzz_target!(|data: &[u8]| {
    let request = split(data);
    let meta = &request.meta;
    let config = meta.get("config").cloned().unwrap_or(Value::Null);
    let settings = meta.get("settings").cloned().unwrap_or(Value::Null);
    let retired: Vec<(String, u64)> = meta
        .get("retired")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    Some((item.get(0)?.as_str()?.to_owned(), item.get(1)?.as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let now_ms = meta.get("nowMs").and_then(Value::as_u64).unwrap_or(0);
    let url = meta.get("url").and_then(Value::as_str).unwrap_or("");
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = request.body.as_slice();
    // As ingest computes it.
    let now_secs = (now_ms / 1000) as i64;

    standard_webhooks(meta, &config, &retired, &headers, body, now_secs);

    let content_type = Incoming {
        headers: &headers,
        body,
        url,
        now_secs,
    }
    .header("content-type");
    let document = document_of(content_type, body).ok().flatten();
    for kind in providers::kinds() {
        // A config or settings the API would refuse is never stored, so it
        // never meets a request.
        let Ok(plan) = compile(kind, &config, &settings) else {
            continue;
        };
        let plan = plan.with_retired_secrets(retired.iter().map(|(s, at)| (s.as_str(), *at)));
        // As ingest builds the URL a scheme like Twilio's signs.
        let url = match &plan.signed_url {
            Some(base) => match url.split_once('?') {
                Some((_, query)) => format!("{base}?{query}"),
                None => base.clone(),
            },
            None => url.to_owned(),
        };
        let incoming = Incoming {
            headers: &headers,
            body,
            url: &url,
            now_secs,
        };
        let _ = plan.verify(&incoming, now_ms);
        if let Some(document) = &document {
            let _ = plan.challenge(document);
        }
        let _ = plan.event_type(&incoming, document.as_ref());
        let _ = plan.dedupe_id(&incoming, document.as_ref());
    }
});

/// The Standard Webhooks headers and verifier on their own, with any
/// tolerance, and a signature made here must verify.
fn standard_webhooks(
    meta: &Value,
    config: &Value,
    retired: &[(String, u64)],
    headers: &[(&str, &str)],
    body: &[u8],
    now_secs: i64,
) {
    let incoming = Incoming {
        headers,
        body,
        url: "",
        now_secs,
    };
    let tolerance = meta.get("tolerance").and_then(Value::as_i64).unwrap_or(300);
    let texts = config
        .get("secret")
        .and_then(Value::as_str)
        .into_iter()
        .chain(retired.iter().map(|(s, _)| s.as_str()));
    let mut keys = Vec::new();
    for text in texts {
        let strict = EndpointSecret::parse(text);
        let lenient = EndpointSecret::parse_any_length(text);
        assert!(
            strict.is_err() || strict == lenient,
            "a secret the strict parse takes is read the same leniently"
        );
        if let Ok(key) = lenient {
            keys.push(key);
        }
    }
    let Some((id, timestamp, signature)) = signing::signature_headers(|name| incoming.header(name))
    else {
        return;
    };
    let _ = signing::verify(&keys, id, timestamp, signature, body, now_secs, tolerance);
    // Signing and verifying agree for any id, time and body.
    if let (Some(key), Ok(ts)) = (keys.first(), timestamp.parse::<i64>()) {
        let own = key.sign(id, ts, body);
        let header = format!("{signature} {own}");
        assert_eq!(
            signing::verify(&keys, id, &ts.to_string(), &header, body, ts, 0),
            Ok(()),
            "a signature made with the key verifies"
        );
    }
}
