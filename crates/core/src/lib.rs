//! Domain types and pure logic shared by every Switchyard crate: prefixed ids,
//! validated names, Standard Webhooks signing, retry math, endpoint matching and
//! the network guard, and provider signature checks for incoming webhooks. Nothing here performs I/O, so all of it is unit- and
//! property-testable.

pub mod filter;
pub mod ids;
pub mod matching;
pub mod names;
pub mod netguard;
pub mod retry;
pub mod signing;
pub mod source;
pub mod timefmt;
pub mod verify;

pub use ids::*;
pub use names::*;
