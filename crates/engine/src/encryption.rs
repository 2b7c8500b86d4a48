//! Secrets at rest: whether the configured keys fit what the database holds,
//! checked at start, and re-sealing everything under the current key.
//!
//! The database keeps a canary, a known text sealed under the key that last
//! sealed everything (setting [`CANARY_SETTING`]; empty while secrets are
//! plain). A node whose keys cannot open it would fail every delivery and
//! every ingest, so it refuses to start instead, naming the key it lacks.

use switchyard_core::sealing::Keyring;
use switchyard_store::{Store, StoreError};

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

/// Checks `keys` against the canary, and records a first key's canary.
///
/// Errors: [`EncryptionError::KeyMissing`] when secrets were sealed and no
/// key is given; [`EncryptionError::WrongKey`] when no given key opens them.
pub async fn check_encryption(
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
                return Box::pin(check_encryption(store, keys)).await;
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
    Ok(changed)
}
