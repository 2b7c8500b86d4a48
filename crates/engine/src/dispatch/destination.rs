//! Where a delivery goes. HTTP (the pooled, SSRF-guarded client) is one
//! kind; broker destinations are others, each registered for the URL
//! schemes it serves. Dispatch signs, picks the destination by the endpoint
//! URL's scheme, sends, and records the attempt whatever the kind, so
//! filters, retries, the circuit breaker, resend and recover are the same
//! for every kind.
//!
//! A broker destination is one type implementing [`Destination`] (its URL
//! rules in [`Destination::check_url`], its sending in [`Destination::send`])
//! and one [`Destinations::register`] call, which the binary makes through
//! [`crate::EngineConfig::destinations`]: the engine knows no broker. It
//! reaches its server only through [`Egress`], which applies the network
//! policy, the delivery timeout, TLS trust and the egress proxy as HTTP
//! deliveries have them.

use reqwest::header::HeaderMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use super::egress::{Egress, EgressIo, EgressStream};

/// One attempt's request: the endpoint URL (with any forwarded path for
/// http), the signed headers (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`, `content-type`, then the endpoint's custom headers
/// and any forwarded ones) and the body, lent without copying, the
/// endpoint's id and credentials, and the way out to the network.
pub struct Delivery<'a> {
    pub url: &'a str,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    pub endpoint: &'a str,
    pub auth: &'a switchyard_core::endpoint_auth::EndpointAuth,
    pub egress: &'a Egress,
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
    /// schedules a retry (status 0 with the reason when the destination
    /// gave no answer: refused by the network policy, unreachable, timed
    /// out, an error reply).
    fn send<'a>(&'a self, delivery: Delivery<'a>) -> SendFuture<'a>;

    /// Refuses a URL of this destination's schemes that can never be
    /// delivered to, with why (shown as a 422 on `url` when an endpoint's
    /// URL is set). It has passed [`switchyard_core::EndpointUrl`]'s rules
    /// (a host, no user info, no fragment); what its path and query mean is
    /// for the destination to check. Accepts everything by default.
    fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let _ = url;
        Ok(())
    }
}

/// A URL scheme a destination serves, and whether its traffic is encrypted
/// (https-only mode, `SWITCHYARD_HTTPS_ONLY`, delivers only to those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// Lowercase, as in `redis`.
    pub name: &'static str,
    pub tls: bool,
}

impl Scheme {
    /// A scheme whose connections are not encrypted (`http`, `redis`).
    pub const fn plain(name: &'static str) -> Self {
        Self { name, tls: false }
    }

    /// A scheme whose connections are TLS (`https`, `rediss`).
    pub const fn tls(name: &'static str) -> Self {
        Self { name, tls: true }
    }
}

/// The destinations known to this node, by URL scheme.
#[derive(Clone, Default)]
pub struct Destinations {
    by_scheme: Vec<(Scheme, Arc<dyn Destination>)>,
}

/// Lists the schemes served.
impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.by_scheme.iter().map(|(s, _)| s.name))
            .finish()
    }
}

impl Destinations {
    /// Serves `schemes` with `destination` (a later registration of a scheme
    /// replaces an earlier one; the engine registers `http` and `https`
    /// last, so no broker can take them).
    pub fn register(&mut self, schemes: &[Scheme], destination: Arc<dyn Destination>) {
        for &scheme in schemes {
            self.by_scheme
                .retain(|(s, _)| !s.name.eq_ignore_ascii_case(scheme.name));
            self.by_scheme.push((scheme, destination.clone()));
        }
    }

    fn entry(&self, url: &str) -> Option<&(Scheme, Arc<dyn Destination>)> {
        let scheme = url.split_once(':')?.0;
        self.by_scheme
            .iter()
            .find(|(s, _)| s.name.eq_ignore_ascii_case(scheme))
    }

    /// The destination for a URL's scheme (matched in any case).
    pub fn for_url(&self, url: &str) -> Option<&dyn Destination> {
        self.entry(url).map(|(_, d)| d.as_ref())
    }

    /// Whether the URL's scheme is registered as encrypted.
    pub fn is_tls(&self, url: &str) -> bool {
        self.entry(url).is_some_and(|(s, _)| s.tls)
    }

    /// The schemes served besides `http` and `https`, which endpoint URLs
    /// may use ([`switchyard_core::EndpointUrl::parse_for`]).
    pub fn broker_schemes(&self) -> Vec<&'static str> {
        self.by_scheme
            .iter()
            .map(|(s, _)| s.name)
            .filter(|n| !n.eq_ignore_ascii_case("http") && !n.eq_ignore_ascii_case("https"))
            .collect()
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
        all.register(
            &[Scheme::plain("http"), Scheme::tls("https")],
            Arc::new(Fixed(200)),
        );
        all.register(&[Scheme::plain("amqp")], Arc::new(Fixed(202)));
        assert_eq!(all.broker_schemes(), ["amqp"]);
        assert!(all.is_tls("HTTPS://x/") && !all.is_tls("amqp://q") && !all.is_tls("ftp://x"));
        let egress = Egress::for_tests();
        let send = |url: &'static str| {
            let all = all.clone();
            let egress = egress.clone();
            async move {
                let d = all.for_url(url)?;
                Some(
                    d.send(Delivery {
                        url,
                        headers: HeaderMap::new(),
                        body: bytes::Bytes::new(),
                        endpoint: "ep_test",
                        auth: &Default::default(),
                        egress: &egress,
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

/// The seam as a broker destination uses it: registered through
/// `EngineConfig::destinations`, its URLs checked when set, and its
/// deliveries made, signed and recorded like HTTP ones.
#[cfg(test)]
mod seam {
    use super::*;
    use crate::{
        AcceptEventType, AcceptInput, AppInput, EndpointInput, EndpointPatch, EngineConfig,
        EngineError, PayloadDocument,
    };
    use std::sync::Mutex;
    use switchyard_core::MessageEventType;
    use switchyard_core::netguard::NetworkPolicy;
    use switchyard_store::{AttemptFilter, DeliveryStatus, PageRequest};

    /// What a delivery handed over: URL, headers, body.
    type Handed = (String, Vec<(String, String)>, bytes::Bytes);

    /// Needs `?topic=`; records what it was handed and answers 200 with
    /// the topic, or fails while `down`.
    #[derive(Default)]
    struct FakeBroker {
        seen: Mutex<Vec<Handed>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Destination for FakeBroker {
        fn send<'a>(&'a self, d: Delivery<'a>) -> SendFuture<'a> {
            Box::pin(async move {
                if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                    return SendResult::failed("fake broker: connection refused");
                }
                let headers = d
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                self.seen
                    .lock()
                    .unwrap()
                    .push((d.url.to_owned(), headers, d.body.clone()));
                SendResult {
                    status: 200,
                    body: "entry-1".into(),
                    retry_after: None,
                    duration: Duration::ZERO,
                }
            })
        }

        fn check_url(&self, url: &url::Url) -> Result<(), String> {
            url.query_pairs()
                .any(|(k, _)| k == "topic")
                .then_some(())
                .ok_or_else(|| "a fake destination names its topic".to_owned())
        }
    }

    async fn engine(https_only: bool) -> (Arc<crate::Engine>, tempfile::TempDir, Arc<FakeBroker>) {
        let fake = Arc::new(FakeBroker::default());
        let mut destinations = Destinations::default();
        destinations.register(&[Scheme::plain("fake"), Scheme::tls("fakes")], fake.clone());
        // A broker cannot take http away from the HTTP client.
        destinations.register(&[Scheme::tls("http")], fake.clone());
        let (engine, dir) = crate::test_engine_with(EngineConfig {
            destinations,
            https_only,
            network_policy: NetworkPolicy::parse("10.1.0.0/16").unwrap(),
            poll_interval: Duration::from_millis(10),
            retry_schedule: switchyard_core::retry::RetrySchedule::new(vec![]),
            ..EngineConfig::default()
        })
        .await;
        (engine, dir, fake)
    }

    async fn app(engine: &crate::Engine) -> String {
        let (app, _) = engine
            .create_app(
                AppInput {
                    name: "a".into(),
                    ..AppInput::default()
                },
                false,
            )
            .await
            .unwrap();
        app.id.to_string()
    }

    fn refusal(r: Result<impl std::fmt::Debug, EngineError>) -> String {
        match r {
            Err(EngineError::Invalid { field, message }) if field == "url" => message,
            other => panic!("expected a refused url, got {other:?}"),
        }
    }

    fn input(url: &str) -> EndpointInput {
        EndpointInput {
            url: url.into(),
            ..EndpointInput::default()
        }
    }

    #[tokio::test]
    async fn broker_urls_are_checked_when_set() {
        let (engine, _dir, _) = engine(false).await;
        let app = app(&engine).await;
        let create = |url: &'static str| engine.create_endpoint(&app, input(url));
        assert!(refusal(create("amqp://h/?topic=t").await).contains("fake://, fakes://"));
        assert!(refusal(create("fake://u:p@h/?topic=t").await).contains("http-auth"));
        assert!(refusal(create("fake://h/").await).contains("names its topic"));
        for literal in ["fake://127.0.0.1/?topic=t", "fake://[::1]/?topic=t"] {
            assert!(
                refusal(create(literal).await).contains("SWITCHYARD_ALLOWED_NETWORKS"),
                "{literal}"
            );
        }
        assert!(create("fake://10.1.2.3:99/?topic=t").await.is_ok());
        // Names are judged at delivery, on what they resolve to.
        let ep = create("fake://broker.internal/?topic=t").await.unwrap();
        let patched = engine
            .patch_endpoint(
                &app,
                ep.id.as_str(),
                EndpointPatch {
                    url: Some("fake://broker.internal/".into()),
                    ..Default::default()
                },
            )
            .await;
        assert!(refusal(patched).contains("names its topic"));
        assert!(create("http://example.com/hook").await.is_ok());
    }

    #[tokio::test]
    async fn https_only_mode_takes_only_encrypted_broker_schemes() {
        let (engine, _dir, _) = engine(true).await;
        let app = app(&engine).await;
        let e = refusal(
            engine
                .create_endpoint(&app, input("fake://h/?topic=t"))
                .await,
        );
        assert!(
            e.contains("SWITCHYARD_HTTPS_ONLY") && e.contains("fake://"),
            "{e}"
        );
        assert!(
            refusal(engine.create_endpoint(&app, input("http://h/")).await).contains("https URL")
        );
        assert!(
            engine
                .create_endpoint(&app, input("fakes://h/?topic=t"))
                .await
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_deliveries_are_signed_and_recorded() {
        let (engine, _dir, fake) = engine(false).await;
        let app = app(&engine).await;
        let mut with_header = input("fake://broker.internal:9/?topic=t");
        with_header.headers = Some([("x-tenant".to_owned(), "acme".to_owned())].into());
        let ep = engine.create_endpoint(&app, with_header).await.unwrap();
        fake.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let send = || {
            engine.accept(AcceptInput {
                app_id: switchyard_core::AppId::from_trusted(app.clone()),
                event_type: AcceptEventType::Provider(MessageEventType::from_provider("a.b")),
                event_id: None,
                channels: None,
                tags: None,
                payload: bytes::Bytes::from_static(b"{\"n\":1}"),
                idempotency_key: None,
                forward: None,
                document: PayloadDocument::Json,
            })
        };
        let msg = send().await.unwrap().message;
        let attempts = || async {
            engine
                .list_attempts(&AttemptFilter {
                    endpoint_id: Some(ep.id.clone()),
                    page: PageRequest {
                        limit: 10,
                        ..PageRequest::default()
                    },
                    ..AttemptFilter::default()
                })
                .await
                .unwrap()
                .data
        };
        let mut listed = Vec::new();
        for _ in 0..500 {
            listed = attempts().await;
            if !listed.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, DeliveryStatus::Fail);
        assert_eq!(listed[0].response_status_code, 0);
        assert_eq!(listed[0].response, "fake broker: connection refused");
        // Back up: resend goes through the same destination.
        fake.down.store(false, std::sync::atomic::Ordering::SeqCst);
        engine.resend(&msg, &ep.id).await.unwrap();
        for _ in 0..500 {
            listed = attempts().await;
            if listed.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ok = listed
            .iter()
            .find(|a| a.status == DeliveryStatus::Success)
            .expect("a successful attempt");
        assert_eq!(
            (ok.response_status_code, ok.response.as_str()),
            (200, "entry-1")
        );
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let (url, headers, body) = &seen[0];
        assert_eq!(url, "fake://broker.internal:9/?topic=t");
        assert_eq!(&body[..], b"{\"n\":1}");
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("webhook-id"), msg.id.as_str());
        assert!(get("webhook-signature").starts_with("v1,"));
        assert_eq!(get("content-type"), "application/json");
        assert_eq!(get("x-tenant"), "acme");
    }
}
