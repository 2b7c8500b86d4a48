//! The shared delivery HTTP client: keep-alive pools, a cap on connections per
//! host, no redirects, bounded response reads, and the SSRF guard applied to
//! every address a delivery connects to: each resolved address (so DNS
//! rebinding cannot slip past it) and each literal address in the URL.
//!
//! The client never uses a proxy: reqwest would otherwise take one from
//! `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` (either case), and then connect
//! to the proxy's address while the proxy, not the guard, decided where the
//! delivery went.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::error_chain;
use switchyard_core::netguard::{NetworkPolicy, Refusal};
use switchyard_core::retry::parse_retry_after;
use tokio::sync::Semaphore;

use super::destination::{Delivery, Destination, SendFuture, SendResult};

/// At most this much of a response body is kept in the attempt log.
pub const MAX_RESPONSE_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct DeliveryClientConfig {
    pub timeout: Duration,
    pub max_connections_per_host: usize,
    pub policy: NetworkPolicy,
}

fn blocked_message(refusal: &Refusal) -> String {
    format!(
        "blocked by the SSRF guard: {refusal}; allow its range with SWITCHYARD_ALLOWED_NETWORKS to deliver there"
    )
}

struct GuardedResolver {
    policy: NetworkPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
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
                let reason = match first_refusal {
                    Some(refusal) => blocked_message(&refusal),
                    None => format!("{} did not resolve to any address", name.as_str()),
                };
                return Err(reason.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

pub(crate) struct DeliveryClient {
    http: reqwest::Client,
    policy: NetworkPolicy,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl DeliveryClient {
    pub fn new(config: &DeliveryClientConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(config.max_connections_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                policy: config.policy.clone(),
            }))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            policy: config.policy.clone(),
            per_host: config.max_connections_per_host.max(1),
            hosts: Mutex::new(HashMap::new()),
        })
    }

    fn host_permits(&self, key: &str) -> Arc<Semaphore> {
        let mut hosts = match self.hosts.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        hosts
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }

    pub async fn send(&self, url: &str, headers: HeaderMap, body: bytes::Bytes) -> SendResult {
        let started = Instant::now();
        let failed = |reason: String| SendResult {
            status: 0,
            body: reason,
            retry_after: None,
            duration: started.elapsed(),
        };
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("invalid endpoint url: {e}")),
        };
        // Literal addresses never reach the resolver, so they are checked
        // here. The URL parser has already turned every IPv4 spelling
        // (`2130706433`, `0x7f.1`, `127.1`) into an address, and refuses IPv6
        // zones, so no other literal form reaches the connector.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Err(refusal) = self.policy.check(ip)
        {
            return failed(blocked_message(&refusal));
        }
        let host_key = format!(
            "{}:{}",
            parsed.host_str().unwrap_or(""),
            parsed.port_or_known_default().unwrap_or(0)
        );
        let permits = self.host_permits(&host_key);
        let Ok(_permit) = permits.acquire().await else {
            return failed("connection limiter closed".into());
        };
        let started = Instant::now();
        let response = match self
            .http
            .post(parsed)
            .headers(headers)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_timeout() {
                    format!("timed out: {}", error_chain(&e))
                } else {
                    error_chain(&e)
                };
                return SendResult {
                    status: 0,
                    body: reason,
                    retry_after: None,
                    duration: started.elapsed(),
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let mut response = response;
        let mut kept: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if kept.len() >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        SendResult {
            status,
            body: String::from_utf8_lossy(&kept).into_owned(),
            retry_after,
            duration: started.elapsed(),
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
        })
        .unwrap()
    }

    async fn send(client: &DeliveryClient, url: &str) -> SendResult {
        client
            .send(url, HeaderMap::new(), bytes::Bytes::from_static(b"{}"))
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
}
