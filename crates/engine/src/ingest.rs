//! The ingest pipeline, for any entry point that receives a provider's
//! request: verify, check the forwarded path, read the body as a document
//! (refusing what receivers could read differently), answer challenges,
//! extract the event type and dedupe id, accept, and count the outcome.
//!
//! Bodies are forwarded byte for byte, while event type, dedupe id and
//! payload filters read a parsed copy; so that the two cannot disagree, a
//! JSON body (or form `payload` field) that repeats an object key, or that
//! looks like JSON without being strict JSON, is refused, and a repeated form
//! field is an array of all its values (see
//! `switchyard_core::source::document_of`). The path after the token and the
//! query are passed on only in the checked form of
//! `switchyard_core::forward::ForwardPath`.

use crate::{
    AcceptEventType, AcceptInput, Engine, EngineError, IngestOutcome, IngestSource, PayloadDocument,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_core::MessageId;
use switchyard_core::forward::ForwardPath;
use switchyard_core::json::DocumentError;
use switchyard_core::source::{Plan, document_of};
use switchyard_core::verify::{Incoming, Rejection};
use switchyard_store::Forward;

/// Event ids are bounded; a longer provider id is replaced by its digest.
const MAX_EVENT_ID: usize = 256;

/// One provider request, as received.
pub struct IngestRequest<'a> {
    /// Header names and values (values that are not visible ASCII left out).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The URL the provider posted to, as it saw it (URL-signing providers
    /// such as Twilio sign it); the source's `signedUrl` replaces it.
    pub url: &'a str,
    /// The raw path after the ingest token: empty or starting with `/`.
    pub suffix: &'a str,
    /// The raw query, if any.
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

/// What the provider is answered when the request was taken.
#[derive(Debug)]
pub enum IngestReply {
    /// Stored, or a provider's retry of one stored before (`duplicate`).
    Accepted {
        message_id: MessageId,
        duplicate: bool,
    },
    /// A verification handshake (Slack `url_verification`, Zoom
    /// `endpoint.url_validation`): answered with this JSON, not stored.
    Challenge(Value),
}

/// Why a request was not taken: an HTTP-like status (401 signature, 400
/// path, 415 body, 422 document), a short code and a detail. Counted in the
/// source's rejections.
#[derive(Debug)]
pub struct IngestRefusal {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
}

/// An ingest failure: refused (the provider's fault), or the engine's (a
/// store error; the provider should retry).
#[derive(Debug)]
pub enum IngestError {
    Refused(IngestRefusal),
    Engine(EngineError),
}

impl From<EngineError> for IngestError {
    fn from(e: EngineError) -> Self {
        IngestError::Engine(e)
    }
}

impl Engine {
    /// Runs a provider's request through the pipeline (see the module doc).
    /// Nothing is stored unless it returns [`IngestReply::Accepted`] with
    /// `duplicate: false`; a refusal is counted with its reason.
    pub async fn ingest(
        &self,
        source: &IngestSource,
        request: IngestRequest<'_>,
    ) -> Result<IngestReply, IngestError> {
        let id = &source.source.id;
        let now_ms = self.now_ms();
        let refuse = |status: u16, code: &'static str, counted: &str, detail: String| {
            self.count_ingest(id, IngestOutcome::Rejected(counted));
            IngestError::Refused(IngestRefusal {
                status,
                code,
                detail,
            })
        };
        let url = match &source.plan.signed_url {
            Some(base) => match request.query {
                Some(q) => format!("{base}?{q}"),
                None => base.clone(),
            },
            None => request.url.to_owned(),
        };
        let incoming = Incoming {
            headers: request.headers,
            body: request.body,
            url: &url,
            now_secs: (now_ms / 1000) as i64,
        };
        if let Err(rejection) = source.plan.verify(&incoming, now_ms) {
            let reason = rejection.to_string();
            tracing::debug!(source = %id, %reason, "ingest request refused");
            let code = match rejection {
                Rejection::Stale => "timestamp_out_of_tolerance",
                _ => "signature_invalid",
            };
            return Err(refuse(401, code, &reason, reason.clone()));
        }
        // Checked after the signature so a forger learns nothing, and for any
        // correctly signed request too: the signature never covers the path.
        let forward_path = if source.plan.forward_path {
            ForwardPath::parse(request.suffix, request.query).map_err(|e| {
                refuse(
                    400,
                    "invalid_path",
                    &format!("unsafe path: {e}"),
                    format!(
                        "{e}; the path after the ingest URL must stay under the destination's path"
                    ),
                )
            })?
        } else {
            ForwardPath::default()
        };
        let document = document_of(request.content_type, request.body).map_err(|refusal| {
            let reason = refusal.to_string();
            let (code, why) = match refusal {
                DocumentError::DuplicateKey(_) => (
                    "duplicate_key",
                    "the body is forwarded as sent, so routing cannot choose one of the values",
                ),
                DocumentError::Syntax(_) => (
                    "invalid_json",
                    "a body declared as or starting like JSON must be strict JSON (RFC 8259), since lenient parsers would read it differently",
                ),
            };
            refuse(422, code, &reason, format!("{reason}: {why}"))
        })?;
        if let Some(answer) = document.as_ref().and_then(|d| source.plan.challenge(d)) {
            return Ok(IngestReply::Challenge(answer));
        }
        let event_type = source.plan.event_type(&incoming, document.as_ref());
        let event_id = source
            .plan
            .dedupe_id(&incoming, document.as_ref())
            .map(bounded_event_id);
        let mut forward = forward_of(&source.plan, request.headers, &forward_path);
        // Without a Content-Type from the provider, deliveries would carry
        // the default `application/json`; say what the bytes are instead
        // (only where the source passes Content-Type on at all).
        if request.content_type.is_none()
            && document.is_none()
            && source
                .plan
                .forward_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case("content-type"))
        {
            forward
                .headers
                .push(("content-type".into(), "application/octet-stream".into()));
        }
        // Never a 2xx for something not stored: an error here lets the provider retry.
        let accepted = self
            .accept(AcceptInput {
                app_id: source.source.app_id.clone(),
                event_type: AcceptEventType::Provider(event_type),
                event_id,
                channels: None,
                tags: None,
                payload: bytes::Bytes::copy_from_slice(request.body),
                idempotency_key: None,
                forward: Some(forward),
                document: PayloadDocument::Parsed(document),
            })
            .await?;
        self.count_ingest(
            id,
            if accepted.created {
                IngestOutcome::Accepted
            } else {
                IngestOutcome::Duplicate
            },
        );
        Ok(IngestReply::Accepted {
            message_id: accepted.message.id,
            duplicate: !accepted.created,
        })
    }
}

fn bounded_event_id(id: String) -> String {
    if id.len() <= MAX_EVENT_ID {
        id
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

fn forward_of(plan: &Plan, headers: &[(&str, &str)], path: &ForwardPath) -> Forward {
    let headers = headers
        .iter()
        .filter(|(k, _)| {
            plan.forward_headers
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(k))
        })
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Forward {
        headers,
        path: path.to_stored(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SourceInput;
    use serde_json::json;

    fn request<'a>(
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
        suffix: &'a str,
    ) -> IngestRequest<'a> {
        IngestRequest {
            headers,
            body,
            url: "http://gw/ingest/t",
            suffix,
            query: None,
            content_type: Some("application/json"),
        }
    }

    fn refusal(r: Result<IngestReply, IngestError>) -> (u16, &'static str) {
        match r {
            Err(IngestError::Refused(r)) => (r.status, r.code),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The pipeline's rules, without HTTP: verify, path, document, dedupe,
    /// and the counters of each outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pipeline_runs_without_http() {
        let (engine, _dir) = crate::test_engine().await;
        let created = engine
            .create_source(
                SourceInput {
                    name: "s".into(),
                    kind: "api-key".into(),
                    config: json!({"key": "k1"}),
                    settings: json!({"dedupe": {"pointer": "/id"}, "eventType": {"pointer": "/type"}}),
                    ..SourceInput::default()
                },
                None,
            )
            .await
            .unwrap();
        let source = engine.find_source(&created.token).await.unwrap().unwrap();
        let good: &[(&str, &str)] = &[("x-api-key", "k1")];
        let body = br#"{"id":"e1","type":"order.paid"}"#;
        let first = engine
            .ingest(&source, request(good, body, ""))
            .await
            .unwrap();
        let IngestReply::Accepted {
            message_id,
            duplicate: false,
        } = first
        else {
            panic!("expected a new message, got {first:?}");
        };
        let again = engine
            .ingest(&source, request(good, body, "/a"))
            .await
            .unwrap();
        assert!(
            matches!(again, IngestReply::Accepted { duplicate: true, message_id: ref id } if *id == message_id)
        );
        let bad: &[(&str, &str)] = &[("x-api-key", "nope")];
        assert_eq!(
            refusal(engine.ingest(&source, request(bad, body, "")).await).0,
            401
        );
        assert_eq!(
            refusal(
                engine
                    .ingest(&source, request(good, body, "/%2e%2e/admin"))
                    .await
            ),
            (400, "invalid_path")
        );
        assert_eq!(
            refusal(
                engine
                    .ingest(&source, request(good, br#"{"id":"e2","id":"e3"}"#, ""))
                    .await
            ),
            (422, "duplicate_key")
        );
        // A signed body that is not UTF-8 is taken as it is (issue 11: it
        // used to be refused with 415 after its signature had passed).
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><o>Sch\xf6n</o>";
        let xml = IngestRequest {
            content_type: Some("application/xml; charset=ISO-8859-1"),
            ..request(good, latin1, "")
        };
        let Ok(IngestReply::Accepted { message_id, .. }) = engine.ingest(&source, xml).await else {
            panic!("a non-UTF-8 body is accepted");
        };
        let stored = engine
            .message(&created.app_id, message_id.as_str())
            .await
            .unwrap();
        assert_eq!(stored.payload.as_deref(), Some(&latin1[..]));
        engine.flush_counters().await;
        let stats = engine.source_stats(&created.id).await.unwrap().unwrap();
        assert_eq!(
            (stats.accepted, stats.duplicates, stats.rejected),
            (2, 1, 3)
        );
    }
}
