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
    let (mut checked, mut skipped) = (0, 0);
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
        if secret.starts_with("whpk_") {
            skipped += 1;
            continue;
        }
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
    println!("checked {checked} provider vectors, skipped {skipped} v1a (ed25519) vectors");
    assert!(checked >= 55, "only {checked} vectors checked");
}
