//! Domain types and pure logic shared by every Switchyard crate: prefixed ids,
//! validated names, Standard Webhooks signing, retry math, endpoint matching and
//! the network guard, incoming-webhook providers (one module each) and their
//! shared signature primitives, the
//! strict JSON parse payload decisions are made on, and the checked ingest
//! path suffix. Nothing here performs I/O, so all of it is unit- and
//! property-testable.

pub mod breaker;
pub mod clock;
pub mod endpoint_auth;
pub mod envelope;
pub mod filter;
pub mod forward;
pub mod ids;
pub mod json;
pub mod matching;
pub mod names;
pub mod netguard;
pub mod providers;
pub mod retry;
pub mod schema;
pub mod sealing;
pub mod signing;
pub mod source;
pub mod timefmt;
pub mod verify;

pub use ids::*;
pub use names::*;

/// An error's message followed by those of its causes that the message
/// leaves out ("error performing TLS handshake" alone does not say that the
/// certificate was the problem).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let s = inner.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = inner.source();
    }
    text
}
