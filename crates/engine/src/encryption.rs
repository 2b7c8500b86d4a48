//! Secrets at rest: whether the configured keys fit what the database holds,
//! checked at start, and re-sealing everything under the current key.
//!
//! Every sealed value names the key that sealed it, so one scan of the
//! secret columns (`sealed_counts`) says which keys the database needs. A
//! node lacking one would fail every delivery and ingest that touches such
//! a value, so it refuses to start instead, naming the key it lacks.

use switchyard_core::sealing::Keyring;
use switchyard_store::{SealedCount, Store, StoreError};

/// Why a node must not start with its keys.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error(
        "no SWITCHYARD_ENCRYPTION_KEY is set ({0}); set the key the stored secrets were encrypted with"
    )]
    KeyMissing(String),
    #[error(
        "SWITCHYARD_ENCRYPTION_KEY does not decrypt the stored secrets: {0}; give the key they were encrypted with (a new key goes first, the old one after it, until `switchyard reseal-secrets` has run)"
    )]
    WrongKey(String),
    #[error(
        "{changed} values re-encrypted, but {left} remain (written during the pass by a node that still encrypts with another key): give every node the new key first, then run reseal-secrets again; keep the older keys until it succeeds"
    )]
    NotDone { changed: u64, left: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a start found, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionState {
    /// No key: secrets are stored plain (worth a warning).
    Plain,
    /// A key seals new and changed secrets. `reseal_pending`: some are
    /// plain or under an older key until `switchyard reseal-secrets` runs.
    Sealing { reseal_pending: bool },
}

/// Checks `keys` against every stored secret's key (one scan of the
/// secret columns).
///
/// Errors: [`EncryptionError::KeyMissing`] when secrets were sealed and no
/// key is given; [`EncryptionError::WrongKey`] when a stored value is sealed
/// with a key not given (a key dropped before `reseal-secrets` moved
/// everything off it, or a wrong key).
pub async fn check_encryption(
    store: &dyn Store,
    keys: &Keyring,
) -> Result<EncryptionState, EncryptionError> {
    let counts = store.sealed_counts().await?;
    check_held(keys, &counts)?;
    Ok(if keys.seals() {
        EncryptionState::Sealing {
            reseal_pending: !not_current(keys, &counts).is_empty(),
        }
    } else {
        EncryptionState::Plain
    })
}

/// Refuses keys that lack one the stored values were sealed with.
fn check_held(keys: &Keyring, counts: &[SealedCount]) -> Result<(), EncryptionError> {
    match unheld(keys, counts) {
        None => Ok(()),
        Some(missing) if keys.seals() => Err(EncryptionError::WrongKey(missing)),
        Some(missing) => Err(EncryptionError::KeyMissing(missing)),
    }
}

/// What is sealed with keys `keys` lacks, said for the operator; `None`
/// when there is nothing.
fn unheld(keys: &Keyring, counts: &[SealedCount]) -> Option<String> {
    let missing: Vec<String> = counts
        .iter()
        .filter_map(|c| {
            let id = c.key_id.as_deref()?;
            (!keys.holds(id)).then(|| format!("{} values of {} with key {id}", c.count, c.column))
        })
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "stored secrets are sealed with keys it lacks: {}",
            missing.join(", ")
        )
    })
}

/// Values not sealed with the current key (plain ones included).
fn not_current(keys: &Keyring, counts: &[SealedCount]) -> Vec<String> {
    counts
        .iter()
        .filter(|c| c.key_id.as_deref() != keys.current_key_id())
        .map(|c| {
            format!(
                "{} values of {} {}",
                c.count,
                c.column,
                c.key_id
                    .as_deref()
                    .map_or("stored plain".to_owned(), |k| format!("with key {k}"))
            )
        })
        .collect()
}

/// Re-seals every stored secret under the current (first) key, plain ones
/// included. Run with the new key first and the old ones after it;
/// afterwards the old keys may be dropped. Returns how many values were
/// rewritten.
///
/// Errors: [`EncryptionError::KeyMissing`] without a key;
/// [`EncryptionError::WrongKey`] when the keys lack one a stored value was
/// sealed with (checked before anything is written);
/// [`EncryptionError::NotDone`] when values not under the current key are
/// left after the pass.
pub async fn reseal_secrets(store: &dyn Store, keys: &Keyring) -> Result<u64, EncryptionError> {
    if !keys.seals() {
        return Err(EncryptionError::KeyMissing(
            "re-sealing needs the key to seal with".into(),
        ));
    }
    check_held(keys, &store.sealed_counts().await?)?;
    let changed = store.reseal_secrets().await?;
    // A node still sealing with another key wrote some during the pass.
    let left = not_current(keys, &store.sealed_counts().await?);
    if !left.is_empty() {
        return Err(EncryptionError::NotDone {
            changed,
            left: left.join(", "),
        });
    }
    Ok(changed)
}
