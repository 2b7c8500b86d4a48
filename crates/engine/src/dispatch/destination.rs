//! Where a delivery goes. HTTP (the pooled, SSRF-guarded client) is one
//! kind; broker destinations will be others, each registered for the URL
//! schemes it serves. Dispatch signs, picks the destination by the endpoint
//! URL's scheme, sends, and records the attempt whatever the kind.

use reqwest::header::HeaderMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// One attempt's request: the endpoint URL (with any forwarded path), the
/// signed headers and the body, lent without copying, and the endpoint's
/// id and credentials.
pub struct Delivery<'a> {
    pub url: &'a str,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub endpoint: &'a str,
    pub auth: &'a switchyard_core::endpoint_auth::EndpointAuth,
}

/// What an attempt got back.
#[derive(Debug, Clone)]
pub struct SendResult {
    /// The response status; 0 when none was received (refused, timed out,
    /// connection failed).
    pub status: u16,
    /// The start of the response body, or why there was none.
    pub body: String,
    /// A `Retry-After` the destination asked for.
    pub retry_after: Option<Duration>,
    pub duration: Duration,
}

impl SendResult {
    /// An attempt that never reached the destination.
    pub fn failed(reason: impl Into<String>) -> Self {
        SendResult {
            status: 0,
            body: reason.into(),
            retry_after: None,
            duration: Duration::ZERO,
        }
    }
}

/// A boxed future, so destinations can be held as trait objects.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendResult> + Send + 'a>>;

/// A kind of destination. Implementations bound their own work (timeouts,
/// response sizes) and never panic on what the other side does.
pub trait Destination: Send + Sync {
    /// Sends one attempt. A 2xx status finishes the delivery; anything else
    /// schedules a retry.
    fn send<'a>(&'a self, delivery: Delivery<'a>) -> SendFuture<'a>;
}

/// The destinations known to this node, by URL scheme.
#[derive(Clone, Default)]
pub struct Destinations {
    by_scheme: Vec<(&'static str, Arc<dyn Destination>)>,
}

impl Destinations {
    /// Serves `schemes` with `destination` (a later registration of a scheme
    /// replaces an earlier one).
    pub fn register(&mut self, schemes: &[&'static str], destination: Arc<dyn Destination>) {
        for &scheme in schemes {
            self.by_scheme.retain(|(s, _)| *s != scheme);
            self.by_scheme.push((scheme, destination.clone()));
        }
    }

    /// The destination for a URL's scheme (matched in any case).
    pub fn for_url(&self, url: &str) -> Option<&dyn Destination> {
        let scheme = url.split_once(':')?.0;
        self.by_scheme
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(scheme))
            .map(|(_, d)| d.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u16);

    impl Destination for Fixed {
        fn send<'a>(&'a self, _: Delivery<'a>) -> SendFuture<'a> {
            let status = self.0;
            Box::pin(async move {
                SendResult {
                    status,
                    body: String::new(),
                    retry_after: None,
                    duration: Duration::ZERO,
                }
            })
        }
    }

    #[tokio::test]
    async fn destinations_are_picked_by_scheme() {
        let mut all = Destinations::default();
        all.register(&["http", "https"], Arc::new(Fixed(200)));
        all.register(&["amqp"], Arc::new(Fixed(202)));
        let send = |url: &'static str| {
            let all = all.clone();
            async move {
                let d = all.for_url(url)?;
                Some(
                    d.send(Delivery {
                        url,
                        headers: HeaderMap::new(),
                        body: bytes::Bytes::new(),
                        endpoint: "ep_test",
                        auth: &Default::default(),
                    })
                    .await
                    .status,
                )
            }
        };
        assert_eq!(send("HTTPS://x/").await, Some(200));
        assert_eq!(send("amqp://q").await, Some(202));
        assert_eq!(send("ftp://x/").await, None);
    }
}
