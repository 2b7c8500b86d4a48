//! TLS for deliveries and token requests, in one place: which roots are
//! trusted (the Mozilla roots of `webpki-roots`, plus any CA certificates
//! from `SWITCHYARD_DELIVERY_CA_FILE`), and an endpoint's client
//! certificate for mTLS. Both the direct client and the egress-proxy client
//! are built from [`client_config`].

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest PEM identity accepted for mTLS: a key and a chain of a few
/// certificates fit easily.
pub const MAX_IDENTITY_BYTES: usize = 64 * 1024;

/// The roots a delivery trusts: the Mozilla roots and `extra_pem`'s
/// certificates (a PEM bundle). Errors say what in the bundle is wrong.
pub fn roots(extra_pem: Option<&str>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate cannot be trusted: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("holds no PEM certificate".into());
        }
    }
    Ok(Arc::new(roots))
}

/// Checks a PEM bundle of CA certificates to trust for deliveries.
pub fn check_ca_bundle(pem: &str) -> Result<(), String> {
    roots(Some(pem)).map(|_| ())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client identity read from PEM: the certificate chain (leaf first) and
/// the private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Reads an mTLS identity and checks that the key is the leaf
/// certificate's. Errors say what is missing or wrong, never the key.
pub(crate) fn parse_identity(pem: &str) -> Result<Identity, String> {
    if pem.len() > MAX_IDENTITY_BYTES {
        return Err(format!("is longer than {MAX_IDENTITY_BYTES} bytes"));
    }
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned())?;
    let identity = Identity { chain, key };
    // Building a config checks that the key matches the certificate.
    rustls::sign::CertifiedKey::from_der(
        identity.chain.clone(),
        identity.key.clone_key(),
        &provider(),
    )
    .map_err(|e| format!("cannot be used: {e}"))?;
    Ok(identity)
}

/// Checks a PEM identity and returns the hex SHA-256 of its leaf
/// certificate's DER (what the API shows in its place).
pub fn check_identity(pem: &str) -> Result<String, String> {
    let identity = parse_identity(pem)?;
    Ok(hex::encode(Sha256::digest(identity.chain[0].as_ref())))
}

/// A client configuration trusting `roots`, presenting `identity` when
/// given, offering `alpn` (`h2`, `http/1.1`) in order.
pub(crate) fn client_config(
    roots: Arc<RootCertStore>,
    identity: Option<&str>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(pem) => {
            let id = parse_identity(pem)?;
            builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| format!("the mTLS identity cannot be used: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_without_a_key_or_certificate_are_refused() {
        assert!(
            check_identity("")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        assert!(
            check_identity("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        let huge = "A".repeat(MAX_IDENTITY_BYTES + 1);
        assert!(check_identity(&huge).unwrap_err().contains("longer"));
        // The bundled roots are certificates without keys.
        assert!(roots(Some("garbage")).unwrap_err().contains("no PEM"));
    }

    #[test]
    fn the_built_in_roots_are_trusted() {
        assert!(roots(None).unwrap().len() > 100);
        assert!(client_config(roots(None).unwrap(), None, &[b"h2"]).is_ok());
    }
}
