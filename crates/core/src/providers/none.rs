//! No verification (`none`): every request is accepted, for senders that
//! sign nothing or sources reachable only from a trusted network. The
//! ingest URL's token is then the only secret. No config, no secret.

use super::{Provider, Verify};
use crate::source::FieldError;
use crate::verify::{Incoming, Rejection};
use serde_json::{Map, Value};

#[derive(Debug)]
pub struct Unverified;

/// Accepts every request.
#[derive(Debug)]
struct AcceptAll;

impl Provider for Unverified {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn parse(&self, _config: &Map<String, Value>) -> Result<Box<dyn Verify>, FieldError> {
        Ok(Box::new(AcceptAll))
    }

    fn secret_field(&self) -> Option<&'static str> {
        None
    }
}

impl Verify for AcceptAll {
    fn secret(&self) -> Option<&str> {
        None
    }

    fn verify(
        &self,
        _secrets: &[&str],
        _incoming: &Incoming<'_>,
        _tolerance_secs: Option<i64>,
    ) -> Result<(), Rejection> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Defaults;
    use crate::providers::testing::{incoming, object};
    use serde_json::json;

    #[test]
    fn everything_is_accepted_and_nothing_is_secret() {
        assert_eq!(Unverified.defaults(), Defaults::plain());
        assert_eq!(Unverified.secret_field(), None);
        let v = Unverified
            .parse(&object(json!({"anything": 1})))
            .expect("config");
        assert_eq!(v.secret(), None);
        assert_eq!(v.verify(&[], &incoming(&[], b"x", "", 0), Some(1)), Ok(()));
    }
}
