//! The API reaches state only through the engine's services (DESIGN.md §6):
//! it holds no `Store` and calls none of its methods. The engine no longer
//! hands its store out, so this guards against one being threaded in again.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_api_crate_calls_no_store_method() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        !files.is_empty(),
        "no sources found under {}",
        src.display()
    );
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.contains(".store()") || names_the_store_trait(line) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the api crate must go through engine services, not the store:\n{}",
        found.join("\n")
    );
}

/// Whether the line names the store: `Store`, one of the traits it is
/// composed of (`AppStore`, `EndpointStore`, ...), a backend (`SqliteStore`)
/// — any whole identifier ending in `Store` — or the store's `prelude`.
/// `StoreError`, `StoredResponse` and the `EngineError::Store` variant are
/// data the engine passes on, and may be named.
fn names_the_store_trait(line: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let names_a_store = line.match_indices("Store").any(|(at, _)| {
        let after = line[at + "Store".len()..].chars().next();
        !after.is_some_and(ident) && !line[..at].ends_with("EngineError::")
    });
    names_a_store || line.contains("switchyard_store::prelude")
}

#[test]
fn store_names_are_recognised() {
    for named in [
        "use switchyard_store::Store;",
        "fn f(s: &dyn AppStore) {}",
        "use switchyard_store::{EndpointStore, Page};",
        "let s = SqliteStore::open(p);",
        "use switchyard_store::prelude::*;",
    ] {
        assert!(names_the_store_trait(named), "{named}");
    }
    for allowed in [
        "Err(EngineError::Store(e)) => {}",
        "use switchyard_store::{StoreError, StoredResponse};",
        "let restored = 1;",
    ] {
        assert!(!names_the_store_trait(allowed), "{allowed}");
    }
}
