//! Typed, prefixed, time-sortable identifiers.
//!
//! An id is `<prefix>_<22 base62 chars>` encoding 48 bits of Unix milliseconds
//! followed by 80 random bits. Fixed width plus an ASCII-ordered alphabet means
//! ids sort by creation time, which list pagination relies on.

use std::fmt;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LEN: usize = 22;

fn encode_base62(mut value: u128) -> String {
    let mut out = [b'0'; BODY_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    // Every byte comes from ALPHABET, which is ASCII.
    out.iter().map(|&b| b as char).collect()
}

/// The last id value this process made, so that ids made within one
/// millisecond still sort in the order they were made: a client that creates
/// two messages in a row lists them newest first.
static LAST: std::sync::Mutex<u128> = std::sync::Mutex::new(0);

fn new_body(unix_ms: u64) -> String {
    let time = (unix_ms as u128 & ((1u128 << 48) - 1)) << 80;
    let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let value = if *last >> 80 == time >> 80 {
        // Same millisecond: step past the previous id by a random amount, so
        // the order holds and the next id still can't be guessed.
        *last + 1 + (random & 0xFFFF_FFFF)
    } else {
        time | random
    };
    // Ids made for an earlier time (imports, tests) don't move the mark back.
    *last = (*last).max(value);
    drop(last);
    encode_base62(value)
}

/// The smallest id body created at `unix_ms`; used to turn a time bound into an id bound.
pub fn id_floor_for_time(prefix: &str, unix_ms: u64) -> String {
    format!(
        "{prefix}_{}",
        encode_base62((unix_ms as u128 & ((1u128 << 48) - 1)) << 80)
    )
}

fn is_body(s: &str) -> bool {
    s.len() == BODY_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(
            Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self::generate_at(crate::timefmt::now_ms())
            }

            pub fn generate_at(unix_ms: u64) -> Self {
                Self(format!("{}_{}", $prefix, new_body(unix_ms)))
            }

            /// Accepts only well-formed ids of this kind; anything else may be a uid.
            pub fn parse(s: &str) -> Option<Self> {
                let body = s.strip_prefix($prefix)?.strip_prefix('_')?;
                is_body(body).then(|| Self(s.to_owned()))
            }

            /// For values read back from our own store, which only ever holds ids we generated.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(AppId, "app");
prefixed_id!(EndpointId, "ep");
prefixed_id!(MessageId, "msg");
prefixed_id!(AttemptId, "atmpt");
prefixed_id!(TaskId, "qtask");
prefixed_id!(SourceId, "src");
prefixed_id!(TokenId, "key");
prefixed_id!(BrokerSourceId, "bsrc");
prefixed_id!(RejectionId, "brej");

/// Number of dispatch partitions; fixed for the life of a database because it
/// is stored on every delivery row.
pub const PARTITIONS: u16 = 256;

/// The dispatch partition of an endpoint (FNV-1a of its id), so that one owner
/// handles all deliveries of an endpoint.
pub fn partition_of(endpoint: &EndpointId) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in endpoint.as_str().bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(PARTITIONS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_in_one_millisecond_sort_in_the_order_they_were_made() {
        // Far in the future, so tests running beside this one in the same
        // process (making ids for now) can't move the mark past it.
        let at = 200_000_000_000_000;
        let made: Vec<MessageId> = (0..1_000).map(|_| MessageId::generate_at(at)).collect();
        let mut sorted = made.clone();
        sorted.sort();
        assert_eq!(made, sorted);
        // A later millisecond still sorts after, an earlier one before.
        assert!(MessageId::generate_at(at + 1) > made[999]);
        assert!(MessageId::generate_at(at - 1) < made[0]);
    }

    #[test]
    fn ids_round_trip_and_reject_other_kinds() {
        let id = MessageId::generate();
        assert!(id.as_str().starts_with("msg_"));
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(AppId::parse(id.as_str()), None);
        assert_eq!(MessageId::parse("msg_short"), None);
        assert_eq!(MessageId::parse("msg_!!!!!!!!!!!!!!!!!!!!!!"), None);
    }

    #[test]
    fn ids_sort_by_time() {
        let a = MessageId::generate_at(1_000);
        let b = MessageId::generate_at(1_001);
        assert!(a < b);
        assert!(id_floor_for_time("msg", 1_001).as_str() <= b.as_str());
        assert!(id_floor_for_time("msg", 1_001).as_str() > a.as_str());
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        let id = EndpointId::generate();
        assert_eq!(partition_of(&id), partition_of(&id.clone()));
        assert!(partition_of(&id) < PARTITIONS);
    }
}
