//! TLS to PostgreSQL, read from the database URL the way libpq reads it.
//!
//! - `sslmode=disable` never encrypts.
//! - `prefer` (the default) encrypts when the server offers it. `require`
//!   refuses a server that doesn't. Neither checks the server's certificate,
//!   which is libpq's meaning of both.
//! - `verify-ca` checks the certificate chain, and `verify-full` also checks
//!   that the certificate names the host. Both check against `sslrootcert` (a
//!   PEM file) or, without it, the Mozilla roots.
//!
//! tokio-postgres knows only the first three modes. The other two, and
//! `sslrootcert`, are taken out of the URL here, before it parses the rest.

use crate::{Result, StoreError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Encrypt without checking who answers (disable, prefer, require).
    Nothing,
    Chain,
    ChainAndHost,
}

/// Parses a database URL (`postgres://…` or `key=value …`) into the
/// connection settings and the TLS connector its `sslmode` asks for.
pub(crate) fn parse(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect)> {
    let (config, check, root_file) = settings(url)?;
    Ok((
        config,
        MakeRustlsConnect::new(client_config(check, root_file)?),
    ))
}

/// The connection settings alone, with the two libpq-only settings apart.
pub(crate) fn settings(url: &str) -> Result<(tokio_postgres::Config, Check, Option<String>)> {
    let (rest, taken) = take_libpq_only(url);
    let mut check = Check::Nothing;
    let mut root_file = None;
    for (key, value) in taken {
        match (key.as_str(), value.as_str()) {
            ("sslmode", "verify-ca") => check = Check::Chain,
            ("sslmode", "verify-full") => check = Check::ChainAndHost,
            ("sslrootcert", path) => root_file = Some(path.to_owned()),
            _ => {}
        }
    }
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
    if check != Check::Nothing {
        config.ssl_mode(SslMode::Require);
    }
    Ok((config, check, root_file))
}

fn invalid(message: String) -> StoreError {
    StoreError::Unavailable(format!("database TLS: {message}"))
}

fn client_config(check: Check, root_file: Option<String>) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?;
    let chain = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndHost => Some(
            WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root_file.as_deref())?),
                provider.clone(),
            )
            .build()
            .map_err(|e| invalid(e.to_string()))?,
        ),
    };
    let verifier = Arc::new(CertificateCheck {
        algorithms: provider.signature_verification_algorithms,
        chain,
        host_too: check == Check::ChainAndHost,
    });
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn roots(root_file: Option<&str>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(path) = root_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("cannot read sslrootcert {path}: {e}")))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(invalid(format!(
            "sslrootcert {path} holds no usable certificate"
        )));
    }
    Ok(roots)
}

/// Takes the settings tokio-postgres would refuse (`sslmode=verify-ca`,
/// `sslmode=verify-full`, `sslrootcert`) out of a URL's query string or a
/// key=value string; everything else stays for tokio-postgres to read.
fn take_libpq_only(url: &str) -> (String, Vec<(String, String)>) {
    let libpq_only = |key: &str, value: &str| {
        key == "sslrootcert" || (key == "sslmode" && matches!(value, "verify-ca" | "verify-full"))
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (base, params) = match (is_url, url.split_once('?')) {
        (true, Some((base, query))) => (Some(base), query),
        (true, None) => return (url.to_owned(), Vec::new()),
        (false, _) => (None, url),
    };
    let separator = |c: char| if is_url { c == '&' } else { c.is_whitespace() };
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for param in params.split(separator).filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some((k, v)) if libpq_only(k, v) => taken.push((k.to_owned(), v.to_owned())),
            _ => kept.push(param),
        }
    }
    let rest = match base {
        Some(base) if kept.is_empty() => base.to_owned(),
        Some(base) => format!("{base}?{}", kept.join("&")),
        None => kept.join(" "),
    };
    (rest, taken)
}

/// What `sslmode` asks of the server's certificate: nothing (libpq's `prefer`
/// and `require` encrypt whoever holds it), a trusted chain (`verify-ca`), or
/// a trusted chain naming the host (`verify-full`). The handshake signatures
/// are checked in every mode, so the session key belongs to the certificate
/// the server showed.
#[derive(Debug)]
struct CertificateCheck {
    algorithms: WebPkiSupportedAlgorithms,
    chain: Option<Arc<WebPkiServerVerifier>>,
    host_too: bool,
}

impl ServerCertVerifier for CertificateCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.host_too => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_only_modes_and_root_files_are_taken_out_of_the_url() {
        let (rest, taken) = take_libpq_only(
            "postgres://u@h:5432/db?application_name=x&sslmode=verify-full&sslrootcert=/ca.pem",
        );
        assert_eq!(rest, "postgres://u@h:5432/db?application_name=x");
        assert_eq!(
            taken,
            vec![
                ("sslmode".into(), "verify-full".into()),
                ("sslrootcert".into(), "/ca.pem".into())
            ]
        );
        let (rest, taken) =
            take_libpq_only("host=h sslmode=verify-ca sslrootcert=/ca.pem dbname=d");
        assert_eq!(rest, "host=h dbname=d");
        assert_eq!(
            taken,
            vec![
                ("sslmode".into(), "verify-ca".into()),
                ("sslrootcert".into(), "/ca.pem".into())
            ]
        );
        // The modes tokio-postgres knows stay where they are.
        let (rest, taken) = take_libpq_only("postgres://h/d?sslmode=require");
        assert_eq!(rest, "postgres://h/d?sslmode=require");
        assert!(taken.is_empty());
        let (rest, taken) = take_libpq_only("host=h sslmode=require dbname=d");
        assert_eq!(rest, "host=h sslmode=require dbname=d");
        assert!(taken.is_empty());
    }

    #[test]
    fn modes_map_to_what_tokio_postgres_enforces() {
        let mode = |url: &str| parse(url).map(|(c, _)| c.get_ssl_mode());
        assert_eq!(mode("postgres://h/d").unwrap(), SslMode::Prefer);
        assert_eq!(
            mode("postgres://h/d?sslmode=disable").unwrap(),
            SslMode::Disable
        );
        assert_eq!(
            mode("postgres://h/d?sslmode=require").unwrap(),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://h/d?sslmode=verify-ca").unwrap(),
            SslMode::Require
        );
        assert_eq!(
            mode("host=h sslmode=verify-full").unwrap(),
            SslMode::Require
        );
        assert!(mode("postgres://h/d?sslmode=sometimes").is_err());
        let missing = parse("postgres://h/d?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.contains("sslrootcert /nonexistent.pem"),
            "{missing}"
        );
    }
}
