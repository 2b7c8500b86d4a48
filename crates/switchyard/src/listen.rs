//! `switchyard listen`: a small receiver for trying Switchyard out. It prints
//! every request it gets and, given the endpoint's secret, whether the
//! Standard Webhooks signature verifies (with the same code Switchyard signs
//! with), so a newcomer can watch a signed delivery arrive.

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use switchyard_core::signing::{self, EndpointSecret};

#[derive(clap::Args)]
pub struct ListenArgs {
    /// Port to listen on, on 127.0.0.1 only (0: any free port).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// The endpoint's signing secret (`whsec_...`) or ed25519 public key (`whpk_...`), from
    /// `GET /api/v1/app/{app}/endpoint/{endpoint}/secret`): each delivery's
    /// signature is checked and one that does not verify is answered 401.
    #[arg(long, env = "SWITCHYARD_LISTEN_SECRET")]
    secret: Option<String>,
}

/// Seconds a signed timestamp may be off by: the Standard Webhooks default.
const TOLERANCE_SECS: i64 = 300;
/// Bodies longer than this are cut short when printed.
const MAX_PRINTED_BODY: usize = 4096;

pub async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let secret = args
        .secret
        .as_deref()
        .map(EndpointSecret::parse_any_length)
        .transpose()
        .context("--secret must be the endpoint's whsec_ secret or whpk_ public key")?
        .map(Arc::new);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    let check = if secret.is_some() {
        "signatures checked with the given secret"
    } else {
        "signatures not checked: pass --secret whsec_... to check them"
    };
    println!("switchyard listen: receiving on http://{bound} ({check}); Ctrl-C stops");
    let app = Router::new().fallback(move |method, uri, headers, body| {
        let secret = secret.clone();
        async move { receive(secret.as_deref(), method, uri, headers, body) }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn receive(
    secret: Option<&EndpointSecret>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = (switchyard_core::timefmt::now_ms() / 1000) as i64;
    let (report, status) = describe(secret, &method, &uri, &headers, &body, now);
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) must not stop the receiver.
    let _ = writeln!(out, "{report}");
    let _ = out.flush();
    status
}

/// The printed report of one request and the status to answer it with:
/// 204, or 401 when a secret was given and the signature does not verify.
fn describe(
    secret: Option<&EndpointSecret>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> (String, StatusCode) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    // svix-server names the same headers svix-*; either family is read.
    let family = ["webhook", "svix"]
        .into_iter()
        .find(|f| get(&format!("{f}-id")).is_some())
        .unwrap_or("webhook");
    let id = get(&format!("{family}-id"));
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut line = format!("{method} {path}");
    line.push_str(&format!("  {family}-id: {}", id.unwrap_or("(none)")));
    let event_type = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|doc| {
            ["type", "eventType", "event_type"]
                .iter()
                .find_map(|k| doc.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        });
    if let Some(t) = event_type {
        line.push_str(&format!("  type: {t}"));
    }
    let status = match secret {
        None => {
            line.push_str("  signature: not checked");
            StatusCode::NO_CONTENT
        }
        Some(secret) => {
            let verdict = match signing::signature_headers(get) {
                Some((id, ts, sig)) => signing::verify(
                    std::slice::from_ref(secret),
                    id,
                    ts,
                    sig,
                    body,
                    now_secs,
                    TOLERANCE_SECS,
                )
                .map_err(|e| e.to_string()),
                None => Err(format!("missing {family}-id, -timestamp or -signature")),
            };
            match verdict {
                Ok(()) => {
                    line.push_str("  signature: verified");
                    StatusCode::NO_CONTENT
                }
                Err(why) => {
                    line.push_str(&format!("  signature: NOT VERIFIED ({why})"));
                    StatusCode::UNAUTHORIZED
                }
            }
        }
    };
    let text = String::from_utf8_lossy(body);
    let shown: String = text.chars().take(MAX_PRINTED_BODY).collect();
    line.push('\n');
    line.push_str(&shown);
    if shown.len() < text.len() {
        line.push_str(&format!("… ({} bytes in all)", body.len()));
    }
    (line, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::try_from(*k).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn reports_the_delivery_and_its_signature() {
        let secret = EndpointSecret::generate();
        let body = br#"{"type":"invoice.paid","invoice":42}"#;
        let sig = secret.sign("msg_1", 1_000, body);
        let uri: Uri = "/webhooks?x=1".parse().unwrap();
        for family in ["webhook", "svix"] {
            let h = headers(&[
                (&format!("{family}-id"), "msg_1"),
                (&format!("{family}-timestamp"), "1000"),
                (&format!("{family}-signature"), &sig),
            ]);
            let (report, status) = describe(Some(&secret), &Method::POST, &uri, &h, body, 1_000);
            assert_eq!(status, StatusCode::NO_CONTENT, "{report}");
            assert!(report.starts_with("POST /webhooks?x=1"), "{report}");
            assert!(report.contains(&format!("{family}-id: msg_1")), "{report}");
            assert!(report.contains("type: invoice.paid"), "{report}");
            assert!(report.contains("signature: verified"), "{report}");
            assert!(
                report.ends_with(std::str::from_utf8(body).unwrap()),
                "{report}"
            );

            let other = EndpointSecret::generate();
            let (report, status) = describe(Some(&other), &Method::POST, &uri, &h, body, 1_000);
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(report.contains("signature: NOT VERIFIED"), "{report}");
        }
        let (report, status) = describe(None, &Method::POST, &uri, &HeaderMap::new(), b"x", 0);
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(report.contains("signature: not checked"), "{report}");
    }
}
