//! Which endpoints a message goes to.

use crate::names::{Channel, EventTypePattern};

/// An endpoint receives a message when it is enabled, its event-type filter (if
/// any) names the message's type (patterns may use `*` wildcards), and — when the endpoint lists channels — the
/// message carries at least one of them.
pub fn endpoint_matches(
    disabled: bool,
    filter_types: Option<&[EventTypePattern]>,
    endpoint_channels: Option<&[Channel]>,
    event_type: &str,
    message_channels: &[Channel],
) -> bool {
    if disabled {
        return false;
    }
    if let Some(types) = filter_types
        && !types.iter().any(|t| t.matches(event_type))
    {
        return false;
    }
    match endpoint_channels {
        Some(wanted) if !wanted.is_empty() => message_channels
            .iter()
            .any(|c| wanted.iter().any(|w| w == c)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn types(items: &[&str]) -> Vec<EventTypePattern> {
        items
            .iter()
            .map(|s| EventTypePattern::parse(s).unwrap())
            .collect()
    }

    fn v(items: &[&str]) -> Vec<Channel> {
        items.iter().map(|s| Channel::parse(s).unwrap()).collect()
    }

    #[test]
    fn filters() {
        let types = types(&["a", "b"]);
        let chans = v(&["eu"]);
        assert!(endpoint_matches(false, None, None, "x", &[]));
        assert!(!endpoint_matches(true, None, None, "x", &[]));
        assert!(endpoint_matches(false, Some(&types), None, "a", &[]));
        assert!(!endpoint_matches(false, Some(&types), None, "c", &[]));
        assert!(!endpoint_matches(false, None, Some(&chans), "a", &[]));
        assert!(endpoint_matches(
            false,
            None,
            Some(&chans),
            "a",
            &v(&["us", "eu"])
        ));
        assert!(!endpoint_matches(
            false,
            None,
            Some(&chans),
            "a",
            &v(&["us"])
        ));
    }

    proptest! {
        #[test]
        fn unfiltered_enabled_endpoints_take_everything(t in "[a-z.]{1,20}", ch in proptest::collection::vec("[a-z]{1,5}", 0..4)) {
            let ch: Vec<Channel> = ch.iter().map(|c| Channel::parse(c).unwrap()).collect();
            prop_assert!(endpoint_matches(false, None, None, &t, &ch));
            prop_assert!(!endpoint_matches(true, None, None, &t, &ch));
            let only = types(&[&t]);
            prop_assert!(endpoint_matches(false, Some(&only), None, &t, &ch));
        }
    }
}
