//! The shared Standard Webhooks / Svix signature vectors, checked with our verifier.

use switchyard_core::signing::{EndpointSecret, verify};

fn vectors() -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/signatures.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn header<'a>(v: &'a serde_json::Value, names: &[&str]) -> &'a str {
    let headers = v["headers"].as_object().expect("headers");
    for name in names {
        for (k, val) in headers {
            if k.eq_ignore_ascii_case(name) {
                return val.as_str().unwrap_or("");
            }
        }
    }
    ""
}

#[test]
fn standard_webhooks_and_svix_vectors() {
    let (mut checked, mut skipped) = (0, 0);
    for v in vectors() {
        let scheme = v["scheme"].as_str().unwrap();
        if scheme != "standard-webhooks" && scheme != "svix" {
            continue;
        }
        let secret = v["secret"].as_str().unwrap();
        let name = v["name"].as_str().unwrap();
        if secret.starts_with("whpk_") {
            // Asymmetric v1a signatures: Switchyard signs with v1 only.
            skipped += 1;
            continue;
        }
        let expected_valid = v["expected"] == "valid";
        let verdict = match EndpointSecret::parse_any_length(secret) {
            Err(_) => false,
            Ok(key) => verify(
                &[key],
                header(&v, &["webhook-id", "svix-id"]),
                header(&v, &["webhook-timestamp", "svix-timestamp"]),
                header(&v, &["webhook-signature", "svix-signature"]),
                v["body"].as_str().unwrap().as_bytes(),
                v["now"].as_i64().unwrap(),
                v["tolerance_s"].as_i64().unwrap_or(i64::MAX / 4),
            )
            .is_ok(),
        };
        assert_eq!(verdict, expected_valid, "vector {name}: {}", v["note"]);
        checked += 1;
    }
    println!("checked {checked} vectors, skipped {skipped} v1a (ed25519) vectors");
    assert!(
        checked >= 10,
        "expected the shared vectors to include HMAC cases"
    );
}
