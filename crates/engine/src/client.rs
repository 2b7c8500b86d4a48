//! The shared delivery HTTP client: keep-alive pools, a cap on connections per
//! host, no redirects, bounded response reads, and the SSRF guard applied to
//! every resolved address (so DNS rebinding cannot slip past it).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::HeaderMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_core::error_chain;
use switchyard_core::netguard::NetworkPolicy;
use switchyard_core::retry::parse_retry_after;
use tokio::sync::Semaphore;

/// At most this much of a response body is kept in the attempt log.
pub const MAX_RESPONSE_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct DeliveryClientConfig {
    pub timeout: Duration,
    pub max_connections_per_host: usize,
    pub policy: NetworkPolicy,
}

pub(crate) struct SendResult {
    /// 0 when no HTTP response was received.
    pub status: u16,
    pub body: String,
    pub retry_after: Option<Duration>,
    pub duration: Duration,
}

fn blocked_message(ip: IpAddr) -> String {
    format!(
        "blocked by the SSRF guard: {ip} is an internal address (allow its range with SWITCHYARD_ALLOWED_NETWORKS)"
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
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if allowed.is_empty() {
                let reason = match resolved.first() {
                    Some(addr) => blocked_message(addr.ip()),
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
        // Literal addresses never reach the resolver, so they are checked here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.policy.permits(ip)
        {
            return failed(blocked_message(ip));
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
