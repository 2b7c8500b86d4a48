//! Finds and reads `shared/vectors/signatures.json`; included by the core
//! vector test and the end-to-end ingest vector test.

pub fn vectors() -> Vec<serde_json::Value> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the signature vectors at {}: {e}\n\
             They live in shared/vectors/signatures.json beside the checkout \
             (`../shared` next to the repository, as CI lays it out); set \
             SWITCHYARD_VECTORS=/path/to/signatures.json to use another copy.",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("vectors are JSON")
}

/// `SWITCHYARD_VECTORS` when set, else `shared/vectors/signatures.json`
/// beside the repository's checkout.
fn vectors_path() -> std::path::PathBuf {
    match std::env::var_os("SWITCHYARD_VECTORS") {
        Some(p) if !p.is_empty() => p.into(),
        // crates/<crate> -> crates -> the checkout -> the folder holding it.
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(3)
            .unwrap_or(std::path::Path::new("/"))
            .join("shared/vectors/signatures.json"),
    }
}
