//! Secrets at rest: whether the configured keys fit what the database holds,
//! checked at start, and re-sealing everything under the current key.
//!
//! The database keeps a canary, a known text sealed under the key that last
//! sealed everything (setting [`CANARY_SETTING`]; empty while secrets are
//! plain). A node whose keys cannot open it would fail every delivery and
//! every ingest, so it refuses to start instead, naming the key it lacks.

use switchyard_core::sealing::Keyring;
use switchyard_store::{SealedCount, Store, StoreError};

/// The setting holding the canary: sealed [`CANARY_TEXT`], or empty.
pub const CANARY_SETTING: &str = "encryption_canary";
const CANARY_TEXT: &str = "switchyard secrets canary";
const CANARY_PLACE: &str = "settings.encryption_canary";

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
    /// A key seals new and changed secrets. `reseal_pending`: some may be
    /// plain or under an older key until `switchyard reseal-secrets` runs
    /// (always true the first time a key is given).
    Sealing { reseal_pending: bool },
}

/// Checks `keys` against the canary and against every stored secret's key
/// (one scan of the secret columns), and records a first key's canary.
///
/// Errors: [`EncryptionError::KeyMissing`] when secrets were sealed and no
/// key is given; [`EncryptionError::WrongKey`] when a stored value is sealed
/// with a key not given (a key dropped before `reseal-secrets` moved
/// everything off it, or a wrong key).
pub async fn check_encryption(
    store: &dyn Store,
    keys: &Keyring,
) -> Result<EncryptionState, EncryptionError> {
    let state = check_canary(store, keys).await?;
    let counts = store.sealed_counts().await?;
    if let Some(missing) = unheld(keys, &counts) {
        return Err(if keys.seals() {
            EncryptionError::WrongKey(missing)
        } else {
            EncryptionError::KeyMissing(missing)
        });
    }
    Ok(match state {
        EncryptionState::Plain => EncryptionState::Plain,
        EncryptionState::Sealing { reseal_pending } => EncryptionState::Sealing {
            reseal_pending: reseal_pending || !not_current(keys, &counts).is_empty(),
        },
    })
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

async fn check_canary(
    store: &dyn Store,
    keys: &Keyring,
) -> Result<EncryptionState, EncryptionError> {
    let canary = store
        .get_setting(CANARY_SETTING)
        .await?
        .filter(|c| !c.is_empty());
    match (keys.seals(), canary) {
        (false, None) => Ok(EncryptionState::Plain),
        (false, Some(canary)) => Err(EncryptionError::KeyMissing(
            opened(keys, &canary).err().unwrap_or_default(),
        )),
        (true, None) => {
            // A node of an older run may be sealing at the same time: the
            // first canary written stands, and is checked like any other.
            if !store
                .init_setting(CANARY_SETTING, &keys.seal(CANARY_PLACE, CANARY_TEXT))
                .await?
            {
                return Box::pin(check_canary(store, keys)).await;
            }
            Ok(EncryptionState::Sealing {
                reseal_pending: true,
            })
        }
        (true, Some(canary)) => {
            opened(keys, &canary).map_err(EncryptionError::WrongKey)?;
            Ok(EncryptionState::Sealing {
                reseal_pending: !keys.is_current(&canary),
            })
        }
    }
}

fn opened(keys: &Keyring, canary: &str) -> Result<(), String> {
    match keys.open(CANARY_PLACE, canary) {
        Ok(text) if text == CANARY_TEXT => Ok(()),
        Ok(_) => Err("the stored canary holds another text".into()),
        Err(e) => Err(format!("the stored canary: {e}")),
    }
}

/// Re-seals every stored secret under the current (first) key, plain ones
/// included, then the canary. Run with the new key first and the old ones
/// after it; afterwards the old keys may be dropped. Returns how many values
/// were rewritten.
///
/// Errors: [`EncryptionError::KeyMissing`] without a key;
/// [`EncryptionError::WrongKey`] when the keys do not open the canary
/// (checked before anything is written); a secret that no key opens.
pub async fn reseal_secrets(store: &dyn Store, keys: &Keyring) -> Result<u64, EncryptionError> {
    if !keys.seals() {
        return Err(EncryptionError::KeyMissing(
            "re-sealing needs the key to seal with".into(),
        ));
    }
    let canary = store
        .get_setting(CANARY_SETTING)
        .await?
        .filter(|c| !c.is_empty());
    if let Some(canary) = &canary {
        opened(keys, canary).map_err(EncryptionError::WrongKey)?;
    }
    let changed = store.reseal_secrets().await?;
    store
        .replace_setting(CANARY_SETTING, &keys.seal(CANARY_PLACE, CANARY_TEXT))
        .await?;
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
