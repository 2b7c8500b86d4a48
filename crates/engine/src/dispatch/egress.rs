//! The way out for destinations that open their own connections (brokers):
//! the same network policy as HTTP deliveries, judged on every resolved
//! address (so DNS rebinding fails too) and on address literals; the same
//! timeout; TLS trusting the same roots (Mozilla's and
//! `SWITCHYARD_DELIVERY_CA_FILE`); and the egress proxy when one is set
//! (`SWITCHYARD_EGRESS_PROXY`: a `CONNECT` tunnel to the address the
//! policy allowed, never to the name).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_core::netguard::NetworkPolicy;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::http::judged_addrs;
use super::proxy::{ProxyConfig, Tunnel};
use super::tls;

/// A byte stream to a destination's server.
pub trait EgressIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> EgressIo for T {}

/// A connection [`Egress::connect`] opened (TLS when asked for).
pub type EgressStream = Box<dyn EgressIo>;

/// Addresses tried, in order, before a connection fails.
const MAX_ADDRS_TRIED: usize = 3;

/// How a destination reaches the network (cheap to clone).
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Inner>,
}

struct Inner {
    policy: NetworkPolicy,
    timeout: Duration,
    tls: tokio_rustls::TlsConnector,
    tunnel: Option<Tunnel>,
}

impl Egress {
    /// Built by the dispatcher from the engine's delivery settings.
    pub(crate) fn new(
        policy: &NetworkPolicy,
        timeout: Duration,
        extra_roots_pem: Option<&str>,
        proxy: Option<&ProxyConfig>,
    ) -> Result<Self, String> {
        let roots = tls::roots(extra_roots_pem)?;
        let config = tls::client_config(roots, None, &[])?;
        Ok(Self {
            inner: Arc::new(Inner {
                policy: policy.clone(),
                timeout,
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
                tunnel: proxy.map(|p| Tunnel::new(p, policy, connect_timeout(timeout))),
            }),
        })
    }

    /// The engine's delivery timeout (`SWITCHYARD_REQUEST_TIMEOUT`): one
    /// attempt, connecting included, should end within it.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The addresses of `host` (a name, or an address literal, IPv6 with or
    /// without brackets) the network policy lets a delivery reach, with
    /// `port`; an error naming the refusal when there are none.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        judged_addrs(&self.inner.policy, host, port).await
    }

    /// A connection to `host:port` at an address the policy allows
    /// (through the egress proxy when one is set), wrapped in TLS checked
    /// against `host` when `tls`. Bounded by [`Self::timeout`]; errors say
    /// why, ready for an attempt's log.
    pub async fn connect(&self, host: &str, port: u16, tls: bool) -> Result<EgressStream, String> {
        let inner = &self.inner;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let opened = tokio::time::timeout(inner.timeout, async {
            let addrs = self.addresses(bare, port).await?;
            let tcp = match &inner.tunnel {
                Some(tunnel) => tokio::time::timeout(tunnel.connect_timeout(), tunnel.open(&addrs))
                    .await
                    .map_err(|_| "the egress proxy did not open a tunnel in time".to_owned())?
                    .map_err(|e| e.to_string())?,
                None => direct(&addrs, connect_timeout(inner.timeout)).await?,
            };
            let _ = tcp.set_nodelay(true);
            if !tls {
                return Ok(Box::new(tcp) as EgressStream);
            }
            let name = rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|e| format!("{bare} cannot be checked by TLS: {e}"))?;
            let stream = inner
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {bare} failed: {e}"))?;
            Ok(Box::new(stream) as EgressStream)
        })
        .await;
        match opened {
            Ok(result) => result,
            Err(_) => Err(format!(
                "timed out: no connection to {host}:{port} within {} ms",
                inner.timeout.as_millis()
            )),
        }
    }

    /// An egress for unit tests: loopback allowed, a 2 s timeout.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        let policy = NetworkPolicy::parse("127.0.0.0/8").expect("a valid range");
        Self::new(&policy, Duration::from_secs(2), None, None).expect("the built-in roots")
    }
}

/// Shorter than the whole attempt's timeout, so an unreachable server is
/// named as such.
fn connect_timeout(timeout: Duration) -> Duration {
    timeout.mul_f64(0.8).min(Duration::from_secs(10))
}

/// A TCP connection to the first of `addrs` that answers.
async fn direct(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs.iter().take(MAX_ADDRS_TRIED) {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = format!("connecting to {addr} failed: {e}"),
            Err(_) => {
                last = format!(
                    "connecting to {addr} timed out after {} ms",
                    timeout.as_millis()
                )
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_only_where_the_policy_allows() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = Egress::new(
            &NetworkPolicy::default(),
            Duration::from_secs(2),
            None,
            None,
        )
        .unwrap();
        for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "::1"] {
            let refused = closed.connect(host, port, false).await.err().unwrap();
            assert!(
                refused.contains("blocked by the SSRF guard"),
                "{host}: {refused}"
            );
        }
        let open = Egress::for_tests();
        assert!(open.connect("127.0.0.1", port, false).await.is_ok());
        assert!(open.connect("localhost", port, false).await.is_ok());
        drop(listener);
        let refused = open.connect("127.0.0.1", port, false).await.err().unwrap();
        assert!(refused.contains("connecting to 127.0.0.1"), "{refused}");
    }
}
