//! The shared signature vectors (Standard Webhooks, Svix and ten provider
//! schemes), checked with our verifiers.

#[path = "support/vectors_file.rs"]
mod vectors_file;
use vectors_file::vectors;

/// Every provider vector through the incoming-webhook verifiers: each
/// valid one accepted, each invalid one refused.
#[test]
fn provider_vectors() {
    use switchyard_core::providers::zoom::encrypted_token as zoom_encrypted_token;
    use switchyard_core::verify::Incoming;
    let mut checked = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let scheme_name = v["scheme"].as_str().unwrap();
        let secret = v["secret"].as_str().unwrap();
        let body = v["body"].as_str().unwrap();
        let expected_valid = v["expected"] == "valid";
        if scheme_name == "zoom-url-validation" {
            let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
            let token = parsed["payload"]["plainToken"].as_str().unwrap();
            assert_eq!(
                v["expected_response"]["encryptedToken"].as_str().unwrap(),
                zoom_encrypted_token(secret, token),
                "{name}"
            );
            checked += 1;
            continue;
        }
        let Some(provider) = switchyard_core::providers::find(scheme_name) else {
            panic!("vector {name}: unknown scheme {scheme_name}");
        };
        let config = serde_json::json!({ "secret": secret });
        let verifier = provider
            .parse(config.as_object().unwrap())
            .unwrap_or_else(|e| panic!("vector {name}: {e}"));
        let headers: Vec<(&str, &str)> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, val)| (k.as_str(), val.as_str().unwrap_or("")))
            .collect();
        let incoming = Incoming {
            headers: &headers,
            body: body.as_bytes(),
            url: v["url"].as_str().unwrap_or(""),
            now_secs: v["now"].as_i64().unwrap_or(0),
        };
        let verdict = verifier.verify(&[secret], &incoming, v["tolerance_s"].as_i64());
        assert_eq!(
            verdict.is_ok(),
            expected_valid,
            "vector {name} ({scheme_name}): got {verdict:?}; {}",
            v["note"]
        );
        // Rotation: the right secret among others still verifies.
        if expected_valid {
            assert!(
                verifier
                    .verify(
                        &["not-the-secret", secret],
                        &incoming,
                        v["tolerance_s"].as_i64()
                    )
                    .is_ok(),
                "{name}"
            );
        }
        checked += 1;
    }
    println!("checked {checked} provider vectors, v1a (ed25519) ones included");
    assert_eq!(checked, vectors().len(), "every vector is checked");
}

/// The vectors that carry an ed25519 signing key: signing their message
/// with it gives their `v1a` signature exactly (ed25519 is deterministic),
/// and the key shows as the vector's `whpk_` public key.
#[test]
fn ed25519_vectors_are_what_we_sign() {
    use switchyard_core::signing::{EndpointSecret, SignatureScheme};
    let mut signed = 0;
    for v in vectors() {
        let (Some(key), Some("valid")) = (v["signing_key"].as_str(), v["expected"].as_str()) else {
            continue;
        };
        let name = v["name"].as_str().unwrap();
        let secret = EndpointSecret::parse(key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(secret.scheme(), SignatureScheme::Ed25519);
        assert_eq!(secret.to_secret_text(), key, "{name}: stored as given");
        let headers = &v["headers"];
        let signature = secret.sign(
            headers["webhook-id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
            v["body"].as_str().unwrap().as_bytes(),
        );
        let expected = headers["webhook-signature"].as_str().unwrap();
        assert!(
            expected.split(' ').any(|entry| entry == signature),
            "{name}: signed {signature}, the vector has {expected}"
        );
        if v["secret"].as_str().unwrap().starts_with("whpk_") {
            assert_eq!(secret.to_verifier_text(), v["secret"].as_str().unwrap());
        }
        signed += 1;
    }
    assert!(signed >= 1, "no vector carries an ed25519 signing key");
}
