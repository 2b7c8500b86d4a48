//! The shared delivery HTTP client: keep-alive pools, a cap on connections per
//! host, no redirects, bounded response reads, and the SSRF guard applied to
//! every address a delivery connects to: each resolved address (so DNS
//! rebinding cannot slip past it) and each literal address in the URL.
//!
//! It also applies an endpoint's credentials ([`EndpointAuth`]): a fixed
//! `Authorization`, an OAuth 2.0 access token (fetched through this same
//! client, so the guard, the proxy and the timeouts apply to the token
//! request too), or a TLS client certificate (a client per identity).
//!
//! The client never uses the environment's proxy: reqwest would otherwise
//! take one from `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` (either case),
//! and then connect to the proxy's address while the proxy, not the guard,
//! decided where the delivery went. An egress proxy is configured explicitly
//! and goes through [`super::proxy`], which keeps the guard in charge.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::endpoint_auth::{
    AccessToken, EndpointAuth, OauthClientCredentials, parse_token_response,
};
use switchyard_core::error_chain;
use switchyard_core::netguard::{NetworkPolicy, Refusal};
use switchyard_core::retry::parse_retry_after;
use tokio::sync::Semaphore;

use super::destination::{Delivery, Destination, SendFuture, SendResult};
use super::oauth::Tokens;
use super::proxy::{self, ProxyConfig};
use super::tls;

/// At most this much of a response body is kept in the attempt log.
pub const MAX_RESPONSE_BYTES: usize = 4096;
/// At most this much of a token endpoint's answer is read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;
/// mTLS identities whose clients are kept; past this they are built anew.
const MAX_IDENTITY_CLIENTS: usize = 1_000;

/// How deliveries are made.
#[derive(Debug, Clone, Default)]
pub struct DeliveryClientConfig {
    pub timeout: Duration,
    pub max_connections_per_host: usize,
    pub policy: NetworkPolicy,
    /// CA certificates (PEM) trusted besides the Mozilla roots
    /// (`SWITCHYARD_DELIVERY_CA_FILE`).
    pub extra_roots_pem: Option<String>,
    /// Every delivery and token request through this proxy
    /// (`SWITCHYARD_EGRESS_PROXY`).
    pub proxy: Option<ProxyConfig>,
    /// Token requests to http URLs are refused, as deliveries are.
    pub https_only: bool,
}

fn blocked_message(refusal: &Refusal) -> String {
    format!(
        "blocked by the SSRF guard: {refusal}; allow its range with SWITCHYARD_ALLOWED_NETWORKS to deliver there"
    )
}

/// The addresses of `host` (a name or an address literal) the guard lets a
/// delivery reach, with `port`; an error when there are none, naming the
/// first refusal.
pub(crate) async fn judged_addrs(
    policy: &NetworkPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("dns error: {host}: {e}"))?
            .collect(),
    };
    let mut allowed: Vec<SocketAddr> = Vec::with_capacity(resolved.len());
    let mut first_refusal = None;
    for addr in resolved {
        match policy.check(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    if allowed.is_empty() {
        return Err(match first_refusal {
            Some(refusal) => blocked_message(&refusal),
            None => format!("{host} did not resolve to any address"),
        });
    }
    Ok(allowed)
}

struct GuardedResolver {
    policy: NetworkPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let allowed = judged_addrs(&policy, name.as_str(), 0).await?;
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// One way out: straight (reqwest, with the guarded resolver) or through
/// the egress proxy's tunnels.
enum Transport {
    Direct(reqwest::Client),
    Proxied(Box<proxy::ProxiedClient>),
}

/// What a request got back: status, `Retry-After`, and the start of the
/// body.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    /// Why the body stopped short, when it did (a timeout, a reset).
    body_error: Option<String>,
}

impl Transport {
    fn new(config: &DeliveryClientConfig, identity: Option<&str>) -> Result<Self, String> {
        let roots = tls::roots(config.extra_roots_pem.as_deref())?;
        if let Some(proxy) = &config.proxy {
            // Tunnels carry HTTP/1.1; hyper-rustls sets the ALPN for it
            // (and refuses a config that already has one).
            let tls = tls::client_config(roots, identity, &[])?;
            return Ok(Transport::Proxied(Box::new(proxy::client(
                proxy,
                &config.policy,
                tls,
                config.timeout,
                config.max_connections_per_host,
            ))));
        }
        let tls = tls::client_config(roots, identity, &[b"h2", b"http/1.1"])?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(config.max_connections_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(GuardedResolver {
                policy: config.policy.clone(),
            }))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Transport::Direct(http))
    }

    /// POSTs `body`, keeping at most `keep` bytes of the answer's body.
    async fn post(
        &self,
        url: reqwest::Url,
        mut headers: HeaderMap,
        body: bytes::Bytes,
        keep: usize,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let retry_after = |headers: &HeaderMap| {
            headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
        };
        match self {
            Transport::Direct(http) => {
                let mut response = match http.post(url).headers(headers).body(body).send().await {
                    Ok(r) => r,
                    Err(e) if e.is_timeout() => {
                        return Err(format!("timed out: {}", error_chain(&e)));
                    }
                    Err(e) => return Err(error_chain(&e)),
                };
                let status = response.status().as_u16();
                let retry_after = retry_after(response.headers());
                let mut kept: Vec<u8> = Vec::new();
                let mut body_error = None;
                while kept.len() < keep {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            let room = keep - kept.len();
                            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            body_error = Some(if e.is_timeout() {
                                format!("timed out reading the body: {}", error_chain(&e))
                            } else {
                                format!("reading the body failed: {}", error_chain(&e))
                            });
                            break;
                        }
                    }
                }
                Ok(Answer {
                    status,
                    retry_after,
                    body: kept,
                    body_error,
                })
            }
            Transport::Proxied(client) => {
                headers
                    .entry(reqwest::header::USER_AGENT)
                    .or_insert(HeaderValue::from_static(USER_AGENT));
                let sent = proxy::post(client, &url, headers, body, keep);
                match tokio::time::timeout(timeout, sent).await {
                    Ok(Ok((status, headers, body, body_error))) => Ok(Answer {
                        status,
                        retry_after: retry_after(&headers),
                        body,
                        body_error,
                    }),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(format!(
                        "timed out: no answer within {} ms",
                        timeout.as_millis()
                    )),
                }
            }
        }
    }
}

const USER_AGENT: &str = concat!("Switchyard/", env!("CARGO_PKG_VERSION"));

pub(crate) struct DeliveryClient {
    config: DeliveryClientConfig,
    plain: Transport,
    /// Clients presenting an endpoint's certificate, by identity.
    with_identity: Mutex<HashMap<[u8; 32], Arc<Transport>>>,
    tokens: Tokens,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl DeliveryClient {
    pub fn new(config: &DeliveryClientConfig) -> Result<Self, String> {
        Ok(Self {
            config: config.clone(),
            plain: Transport::new(config, None)?,
            with_identity: Mutex::new(HashMap::new()),
            tokens: Tokens::default(),
            per_host: config.max_connections_per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        })
    }

    fn host_permits(&self, key: &str) -> Arc<Semaphore> {
        locked(&self.hosts)
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }

    /// The client presenting `auth`'s certificate, or the plain one.
    fn transport(&self, auth: &EndpointAuth) -> Result<TransportRef<'_>, String> {
        let Some(mtls) = &auth.mtls else {
            return Ok(TransportRef::Plain(&self.plain));
        };
        let key = mtls.fingerprint();
        if let Some(t) = locked(&self.with_identity).get(&key) {
            return Ok(TransportRef::Shared(t.clone()));
        }
        let built = Arc::new(
            Transport::new(&self.config, Some(&mtls.pem))
                .map_err(|e| format!("the endpoint's mTLS identity cannot be used: {e}"))?,
        );
        let mut clients = locked(&self.with_identity);
        if clients.len() >= MAX_IDENTITY_CLIENTS {
            clients.clear();
        }
        Ok(TransportRef::Shared(
            clients.entry(key).or_insert(built).clone(),
        ))
    }

    /// A parsed URL the guard does not refuse outright (address literals
    /// never reach the resolver, so they are judged here), in https-only
    /// mode only https.
    fn checked_url(&self, url: &str, what: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid {what} url: {e}"))?;
        // The URL parser has already turned every IPv4 spelling
        // (`2130706433`, `0x7f.1`, `127.1`) into an address, and refuses IPv6
        // zones, so no other literal form reaches the connector.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Err(refusal) = self.config.policy.check(ip)
        {
            return Err(blocked_message(&refusal));
        }
        Ok(parsed)
    }

    /// Asks the token endpoint for an access token (RFC 6749 §4.4).
    async fn fetch_token(
        &self,
        transport: &Transport,
        oauth: &OauthClientCredentials,
    ) -> Result<AccessToken, String> {
        let url = self.checked_url(&oauth.token_url, "token")?;
        if self.config.https_only && url.scheme() != "https" {
            return Err("https-only mode (SWITCHYARD_HTTPS_ONLY) refuses an http token URL".into());
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &oauth.extra_headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        if let Some(basic) = oauth.token_request_authorization() {
            let value = HeaderValue::from_str(&basic).map_err(|e| e.to_string())?;
            headers.insert(AUTHORIZATION, value);
        }
        let answer = transport
            .post(
                url,
                headers,
                oauth.token_request_form().into(),
                MAX_TOKEN_RESPONSE_BYTES,
                self.config.timeout,
            )
            .await?;
        if let Some(error) = answer.body_error {
            return Err(format!("HTTP {}, then {error}", answer.status));
        }
        if !(200..300).contains(&answer.status) {
            let text: String = String::from_utf8_lossy(&answer.body)
                .chars()
                .take(500)
                .collect();
            return Err(format!("HTTP {}: {text}", answer.status));
        }
        parse_token_response(&answer.body)
    }

    /// Sends one delivery with the endpoint's credentials.
    pub async fn send(
        &self,
        url: &str,
        mut headers: HeaderMap,
        body: bytes::Bytes,
        endpoint: &str,
        auth: &EndpointAuth,
    ) -> SendResult {
        let started = Instant::now();
        let failed = |reason: String| SendResult {
            status: 0,
            body: reason,
            retry_after: None,
            duration: started.elapsed(),
        };
        let parsed = match self.checked_url(url, "endpoint") {
            Ok(u) => u,
            Err(e) => return failed(e),
        };
        let transport = match self.transport(auth) {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        let host_key = format!(
            "{}:{}",
            parsed.host_str().unwrap_or(""),
            parsed.port_or_known_default().unwrap_or(0)
        );
        // Credentials replace any custom `Authorization`.
        let mut oauth_token = None;
        if let Some(http_auth) = &auth.http {
            match HeaderValue::from_str(&http_auth.header_value()) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
                Err(_) => {
                    return failed("the endpoint's credentials are not a valid header".into());
                }
            }
        } else if let Some(oauth) = &auth.oauth {
            let token = self
                .tokens
                .get(endpoint, oauth, || self.fetch_token(&transport, oauth))
                .await;
            match token.and_then(|t| {
                HeaderValue::from_str(&format!("Bearer {t}"))
                    .map(|v| (t, v))
                    .map_err(|e| e.to_string())
            }) {
                Ok((token, mut value)) => {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                    oauth_token = Some(token);
                }
                Err(reason) => {
                    return failed(format!(
                        "OAuth2 token request to {} failed: {reason}",
                        shown_url(&oauth.token_url)
                    ));
                }
            }
        }
        let permits = self.host_permits(&host_key);
        let Ok(_permit) = permits.acquire().await else {
            return failed("connection limiter closed".into());
        };
        let started = Instant::now();
        match transport
            .post(
                parsed,
                headers,
                body,
                MAX_RESPONSE_BYTES,
                self.config.timeout,
            )
            .await
        {
            Ok(answer) => {
                if answer.status == 401
                    && let Some(token) = &oauth_token
                {
                    self.tokens.refused(endpoint, token).await;
                }
                SendResult {
                    status: answer.status,
                    body: String::from_utf8_lossy(&answer.body).into_owned(),
                    retry_after: answer.retry_after,
                    duration: started.elapsed(),
                }
            }
            Err(reason) => SendResult {
                status: 0,
                body: reason,
                retry_after: None,
                duration: started.elapsed(),
            },
        }
    }
}

/// A token URL as attempts show it: without its query, which may hold a
/// key (attempts are readable by tokens that may not read credentials).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "the token URL".into(),
    }
}

/// The plain transport, or a shared one presenting a certificate.
enum TransportRef<'a> {
    Plain(&'a Transport),
    Shared(Arc<Transport>),
}

impl std::ops::Deref for TransportRef<'_> {
    type Target = Transport;
    fn deref(&self) -> &Transport {
        match self {
            TransportRef::Plain(t) => t,
            TransportRef::Shared(t) => t,
        }
    }
}

/// HTTP(S) delivery through the guarded client.
impl Destination for DeliveryClient {
    fn send<'a>(&'a self, delivery: Delivery<'a>) -> SendFuture<'a> {
        Box::pin(DeliveryClient::send(
            self,
            delivery.url,
            delivery.headers,
            delivery.body,
            delivery.endpoint,
            delivery.auth,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allowed: &str) -> DeliveryClient {
        DeliveryClient::new(&DeliveryClientConfig {
            timeout: Duration::from_secs(2),
            max_connections_per_host: 2,
            policy: NetworkPolicy::parse(allowed).unwrap(),
            ..Default::default()
        })
        .unwrap()
    }

    async fn send(client: &DeliveryClient, url: &str) -> SendResult {
        client
            .send(
                url,
                HeaderMap::new(),
                bytes::Bytes::from_static(b"{}"),
                "ep_test",
                &EndpointAuth::default(),
            )
            .await
    }

    #[tokio::test]
    async fn every_spelling_of_an_internal_address_is_refused_before_connecting() {
        // A listener on loopback that must see nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let guarded = client("");
        for url in [
            format!("http://127.0.0.1:{port}/x"),
            // IPv4 spellings the URL parser turns into 127.0.0.1.
            format!("http://2130706433:{port}/x"),
            format!("http://0x7f.1:{port}/x"),
            format!("http://0177.0.0.1:{port}/x"),
            format!("http://127.1:{port}/x"),
            format!("http://0x7f000001:{port}/x"),
            // Names, which go through the guarded resolver.
            format!("http://localhost:{port}/x"),
            format!("http://LOCALHOST:{port}/x"),
            // IPv6 spellings of loopback and of addresses carrying it.
            format!("http://[::1]:{port}/x"),
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            format!("http://[::ffff:7f00:1]:{port}/x"),
            format!("http://[64:ff9b::127.0.0.1]:{port}/x"),
            format!("http://[::127.0.0.1]:{port}/x"),
            format!("http://[2002:7f00:1::1]:{port}/x"),
            format!("http://[fe80::1]:{port}/x"),
            format!("https://[64:ff9b::169.254.169.254]:{port}/x"),
        ] {
            let result = send(&guarded, &url).await;
            assert_eq!(result.status, 0, "{url}");
            assert!(
                result.body.contains("blocked by the SSRF guard"),
                "{url}: {}",
                result.body
            );
        }
        // Whether `localhost.` resolves depends on the machine's resolver;
        // when it does, the guard judges what it resolves to.
        let dotted = send(&guarded, &format!("http://localhost.:{port}/x")).await;
        assert_eq!(dotted.status, 0);
        assert!(
            dotted.body.contains("blocked by the SSRF guard") || dotted.body.contains("dns error"),
            "{}",
            dotted.body
        );
        assert!(
            listener.accept().is_err(),
            "a refused delivery reached the listener"
        );
    }

    #[tokio::test]
    async fn refusals_name_what_was_judged() {
        let result = send(&client(""), "http://[64:ff9b::127.0.0.1]:9/").await;
        assert!(
            result
                .body
                .contains("64:ff9b::7f00:1 carries 127.0.0.1, which is in 127.0.0.0/8"),
            "{}",
            result.body
        );
    }

    #[tokio::test]
    async fn an_ipv6_zone_is_never_sent() {
        let result = send(&client("fe80::/10"), "http://[fe80::1%25lo]/").await;
        assert_eq!(result.status, 0);
        assert!(
            result.body.starts_with("invalid endpoint url"),
            "{}",
            result.body
        );
    }

    #[tokio::test]
    async fn allowed_spellings_of_loopback_are_delivered() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        let allowed = client("127.0.0.0/8");
        for url in [
            format!("http://127.1:{port}/x"),
            format!("http://2130706433:{port}/x"),
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            format!("http://localhost:{port}/x"),
        ] {
            let result = send(&allowed, &url).await;
            assert_eq!(result.status, 204, "{url}: {}", result.body);
        }
    }

    /// A CONNECT proxy on loopback that records each request head and
    /// tunnels (or answers `refuse` when given).
    async fn connect_proxy(refuse: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    log.lock().unwrap().push(head);
                    if let Some(answer) = refuse {
                        let _ = conn.write_all(answer.as_bytes()).await;
                        return;
                    }
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                });
            }
        });
        (address, seen)
    }

    async fn receiver() -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        port
    }

    fn proxied(allowed: &str, proxy: &str) -> DeliveryClient {
        DeliveryClient::new(&DeliveryClientConfig {
            timeout: Duration::from_secs(5),
            max_connections_per_host: 2,
            policy: NetworkPolicy::parse(allowed).unwrap(),
            proxy: Some(ProxyConfig::parse(proxy).unwrap()),
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_proxy_is_asked_for_the_address_the_guard_allowed_never_the_name() {
        let port = receiver().await;
        let (proxy, seen) = connect_proxy(None).await;
        let client = proxied("127.0.0.0/8", &format!("http://user:p%40ss@{proxy}"));
        let result = send(&client, &format!("http://localhost:{port}/hook")).await;
        assert_eq!(result.status, 202, "{}", result.body);
        assert_eq!(result.body, "ok");
        let heads = seen.lock().unwrap().clone();
        assert_eq!(heads.len(), 1);
        assert!(
            heads[0].starts_with(&format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n")),
            "{}",
            heads[0]
        );
        let credentials = switchyard_core::endpoint_auth::basic_credentials("user", "p@ss");
        assert!(heads[0].contains(&format!("Proxy-Authorization: {credentials}\r\n")));
    }

    #[tokio::test]
    async fn what_the_guard_refuses_never_reaches_the_proxy() {
        let (proxy, seen) = connect_proxy(None).await;
        let client = proxied("", &format!("http://{proxy}"));
        for url in [
            "http://localhost:9/x",
            "http://127.0.0.1:9/x",
            "https://[::ffff:127.0.0.1]:9/x",
        ] {
            let result = send(&client, url).await;
            assert_eq!(result.status, 0);
            assert!(
                result.body.contains("blocked by the SSRF guard"),
                "{url}: {}",
                result.body
            );
        }
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refusing_proxy_fails_the_attempt_with_its_answer() {
        let port = receiver().await;
        let (proxy, _) = connect_proxy(Some("HTTP/1.1 403 Forbidden\r\n\r\n")).await;
        let client = proxied("127.0.0.0/8", &format!("http://{proxy}"));
        let result = send(&client, &format!("http://127.0.0.1:{port}/")).await;
        assert_eq!(result.status, 0);
        assert!(
            result.body.contains("refused CONNECT 127.0.0.1:")
                && result.body.contains("403 Forbidden"),
            "{}",
            result.body
        );
    }
}

/// Review findings (issue 13, endpoint authentication).
#[cfg(test)]
mod review {
    use super::*;
    use switchyard_core::endpoint_auth::{OauthAuthMethod, OauthClientCredentials};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Finding: a token endpoint that sends its headers and then stalls in
    /// the body hits the request timeout, but the body loop takes the
    /// timeout error for the end of the body, so the attempt says "the
    /// response is not JSON: EOF while parsing" instead of naming the
    /// timeout.
    #[tokio::test]
    async fn a_token_endpoint_stalling_in_its_body_is_reported_as_a_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{\"access")
                        .await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                });
            }
        });
        let client = DeliveryClient::new(&DeliveryClientConfig {
            timeout: Duration::from_secs(1),
            max_connections_per_host: 2,
            policy: NetworkPolicy::parse("127.0.0.0/8").unwrap(),
            ..Default::default()
        })
        .unwrap();
        let auth = EndpointAuth {
            oauth: Some(OauthClientCredentials {
                token_url: format!("http://127.0.0.1:{port}/token"),
                client_id: "id".into(),
                client_secret: Some("s".into()),
                auth_method: OauthAuthMethod::ClientSecretPost,
                scopes: vec![],
                extra_params: Default::default(),
                extra_headers: Default::default(),
            }),
            ..Default::default()
        };
        let result = client
            .send(
                "http://127.0.0.1:9/",
                HeaderMap::new(),
                bytes::Bytes::new(),
                "ep_review",
                &auth,
            )
            .await;
        assert_eq!(result.status, 0);
        assert!(result.body.contains("timed out"), "{}", result.body);
    }
}
