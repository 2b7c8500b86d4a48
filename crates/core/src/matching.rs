//! Which endpoints a message goes to.

/// An endpoint receives a message when it is enabled, its event-type filter (if
/// any) names the message's type (patterns may use `*` wildcards), and — when the endpoint lists channels — the
/// message carries at least one of them.
pub fn endpoint_matches(
    disabled: bool,
    filter_types: Option<&[String]>,
    endpoint_channels: Option<&[String]>,
    event_type: &str,
    message_channels: &[String],
) -> bool {
    if disabled {
        return false;
    }
    if let Some(types) = filter_types
        && !types
            .iter()
            .any(|t| crate::filter::event_type_matches(t, event_type))
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

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn filters() {
        let types = v(&["a", "b"]);
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
            prop_assert!(endpoint_matches(false, None, None, &t, &ch));
            prop_assert!(!endpoint_matches(true, None, None, &t, &ch));
            let only = vec![t.clone()];
            prop_assert!(endpoint_matches(false, Some(&only), None, &t, &ch));
        }
    }
}
