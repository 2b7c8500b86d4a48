//! Deliveries through an egress proxy (`SWITCHYARD_EGRESS_PROXY`), with the
//! SSRF guard still deciding where they go.
//!
//! A proxy asked for `CONNECT hooks.example.com:443` resolves the name
//! itself, so a name that resolved to a public address for the guard could
//! resolve to an internal one for the proxy a moment later. Here Switchyard
//! resolves the name, keeps only the addresses the guard allows, and asks
//! the proxy for a tunnel to that address literal (`CONNECT
//! 203.0.113.7:443`); TLS inside the tunnel still names the host (SNI and
//! certificate check). Plain-http endpoints are tunnelled the same way, so
//! the proxy never picks the address. Only `http://` proxies are supported
//! (the tunnel's own traffic is TLS when the endpoint is https).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use switchyard_core::netguard::NetworkPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http::judged_addrs;

/// Longest answer a proxy may give to `CONNECT` before the tunnel opens.
const MAX_CONNECT_RESPONSE: usize = 8 * 1024;

/// An egress proxy: where it listens and its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `host:port` of the proxy.
    pub address: String,
    /// `Proxy-Authorization` value (`Basic …`) from the URL's user info.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("address", &self.address)
            .field("authorization", &self.authorization.is_some())
            .finish()
    }
}

impl ProxyConfig {
    /// Reads `http://[user:password@]host:port` (percent-encoded user info;
    /// port 80 when absent). Any other scheme, a path or a query is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "the scheme must be http (an http proxy that tunnels with CONNECT), not {}",
                url.scheme()
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("a proxy URL has no path, query or fragment".into());
        }
        let host = url.host_str().ok_or("the URL names no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let decode =
            |s: &str| percent_decode(s).ok_or("the user info is not valid percent-encoded UTF-8");
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(switchyard_core::endpoint_auth::basic_credentials(
                &decode(url.username())?,
                &decode(url.password().unwrap_or(""))?,
            ))
        };
        Ok(Self {
            address: format!("{host}:{port}"),
            authorization,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Opens a tunnel through the proxy to an address the guard allowed: a
/// `tower` service from the request URI to the tunnelled stream, which
/// `hyper-rustls` wraps in TLS for https.
#[derive(Clone)]
pub(crate) struct Tunnel {
    proxy: ProxyConfig,
    policy: NetworkPolicy,
    connect_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Tunnel {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("the URL names no host")?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let targets = judged_addrs(&this.policy, host, port).await?;
            let opened = tokio::time::timeout(this.connect_timeout, this.open(&targets)).await;
            match opened {
                Ok(result) => result.map(TokioIo::new),
                Err(_) => Err(format!(
                    "the egress proxy {} did not open a tunnel within {} s",
                    this.proxy.address,
                    this.connect_timeout.as_secs()
                )
                .into()),
            }
        })
    }
}

impl Tunnel {
    /// Tunnels through `proxy` to addresses the caller judged, giving up on
    /// a proxy silent for `connect_timeout`.
    pub(crate) fn new(
        proxy: &ProxyConfig,
        policy: &NetworkPolicy,
        connect_timeout: Duration,
    ) -> Self {
        Tunnel {
            proxy: proxy.clone(),
            policy: policy.clone(),
            connect_timeout,
        }
    }

    /// How long opening a tunnel may take.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A tunnel to the first target the proxy reaches.
    pub(crate) async fn open(&self, targets: &[SocketAddr]) -> Result<TcpStream, BoxError> {
        let mut last = String::new();
        for target in targets.iter().take(3) {
            match self.open_to(*target).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last.into())
    }

    async fn open_to(&self, target: SocketAddr) -> Result<TcpStream, String> {
        let mut stream = TcpStream::connect(&self.proxy.address).await.map_err(|e| {
            format!(
                "the egress proxy {} is unreachable: {e}",
                self.proxy.address
            )
        })?;
        let _ = stream.set_nodelay(true);
        // `SocketAddr` displays IPv6 in brackets, as the request target needs.
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.proxy.authorization {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("the egress proxy {} closed: {e}", self.proxy.address))?;
        let mut answer = Vec::with_capacity(256);
        let mut buf = [0u8; 1024];
        let head_end = loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("the egress proxy {} closed: {e}", self.proxy.address))?;
            if n == 0 {
                return Err(format!(
                    "the egress proxy {} closed the connection without answering CONNECT {target}",
                    self.proxy.address
                ));
            }
            answer.extend_from_slice(&buf[..n]);
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if answer.len() > MAX_CONNECT_RESPONSE {
                return Err(format!(
                    "the egress proxy {} answered CONNECT with more than {MAX_CONNECT_RESPONSE} bytes of headers",
                    self.proxy.address
                ));
            }
        };
        let status_line = String::from_utf8_lossy(&answer[..head_end])
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>();
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok());
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            return Err(format!(
                "the egress proxy {} refused CONNECT {target}: {status_line}",
                self.proxy.address
            ));
        }
        // The client speaks first (TLS or HTTP), so nothing may follow yet.
        if answer.len() > head_end {
            return Err(format!(
                "the egress proxy {} sent data before the tunnel was used",
                self.proxy.address
            ));
        }
        Ok(stream)
    }
}

pub(crate) type ProxiedClient = Client<hyper_rustls::HttpsConnector<Tunnel>, Full<Bytes>>;

/// A pooled HTTP/1.1 client whose every connection is a [`Tunnel`].
pub(crate) fn client(
    proxy: &ProxyConfig,
    policy: &NetworkPolicy,
    tls: rustls::ClientConfig,
    timeout: Duration,
    per_host: usize,
) -> ProxiedClient {
    let tunnel = Tunnel {
        proxy: proxy.clone(),
        policy: policy.clone(),
        // Shorter than the request's own timeout, so a silent proxy is
        // named as such.
        connect_timeout: timeout.mul_f64(0.8).min(Duration::from_secs(10)),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tunnel);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(per_host)
        .build(connector)
}

/// What came back through the proxy: status, headers, at most `keep` bytes
/// of the body (the rest is not read), and why the body stopped short.
pub(crate) async fn post(
    client: &ProxiedClient,
    url: &url::Url,
    headers: http::HeaderMap,
    body: Bytes,
    keep: usize,
) -> Result<(u16, http::HeaderMap, Vec<u8>, Option<String>), String> {
    let uri: http::Uri = url
        .as_str()
        .parse()
        .map_err(|e| format!("invalid URL: {e}"))?;
    let mut request = http::Request::post(uri)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    *request.headers_mut() = headers;
    let response = client
        .request(request)
        .await
        .map_err(|e| switchyard_core::error_chain(&e))?;
    let status = response.status().as_u16();
    let (parts, mut body) = response.into_parts();
    let mut kept = Vec::new();
    let mut body_error = None;
    while kept.len() < keep {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = keep - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(e)) => {
                body_error = Some(format!(
                    "reading the body failed: {}",
                    switchyard_core::error_chain(&e)
                ));
                break;
            }
            None => break,
        }
    }
    Ok((status, parts.headers, kept, body_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_read_strictly() {
        let p = ProxyConfig::parse("http://u%3Ax:p%40ss@proxy.internal:3128").unwrap();
        assert_eq!(p.address, "proxy.internal:3128");
        assert_eq!(
            p.authorization.as_deref(),
            Some(switchyard_core::endpoint_auth::basic_credentials("u:x", "p@ss").as_str())
        );
        assert_eq!(
            ProxyConfig::parse("http://proxy").unwrap().address,
            "proxy:80"
        );
        assert_eq!(
            ProxyConfig::parse("http://[::1]:8080/").unwrap().address,
            "[::1]:8080"
        );
        for bad in [
            "https://proxy:443",
            "socks5://proxy:1080",
            "http://proxy:3128/path",
            "http://proxy:3128?x=1",
            "proxy:3128",
        ] {
            assert!(ProxyConfig::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{p:?}").contains("Basic"));
    }
}
