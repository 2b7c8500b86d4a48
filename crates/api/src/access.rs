//! The route table of access control: which [`Action`] each route is, and
//! which application it names. The rule that decides is
//! `switchyard_engine::access::Grant::allows`; an unknown route is
//! [`Action::Admin`], so a route added without a row here is closed to
//! every token but the admin token (and the token-scope test, which walks
//! the OpenAPI document, fails on it).

use axum::http::Method;
use switchyard_engine::access::Action;

/// The action of a request to the route `template` (as routed, e.g.
/// `/api/v1/app/{app_id}/msg`).
pub(crate) fn action_of(method: &Method, template: &str) -> Action {
    let read = *method == Method::GET || *method == Method::HEAD;
    // Signing secrets, custom headers (which often carry credentials) and
    // endpoint credentials (shown without their secrets, but still how the
    // endpoint is reached).
    let shows_credentials = ["/secret", "/headers", "/oauth", "/mtls", "/http-auth"]
        .iter()
        .any(|end| template.ends_with(end));
    if let Some(rest) = template.strip_prefix("/api/v1/auth/") {
        return match rest {
            "logout" | "whoami" => Action::Session,
            "app-portal-access/{app_id}" | "app/{app_id}/expire-all" => Action::GlobalWrite,
            _ => Action::Admin,
        };
    }
    if let Some(rest) = template.strip_prefix("/api/v1/app/{app_id}") {
        return match (read, rest) {
            (true, _) if shows_credentials => Action::SecretRead,
            (true, _) => Action::AppRead,
            (false, "") => Action::AppWrite,
            (false, r) if r.ends_with("/secret/rotate") => Action::SecretWrite,
            (false, r) if r.ends_with("/resend") || r.ends_with("/recover") => Action::AttemptWrite,
            (false, "/msg") | (false, "/msg/{msg_id}/content") => Action::MessageWrite,
            (false, r) if r.starts_with("/endpoint") => Action::EndpointWrite,
            _ => Action::Admin,
        };
    }
    if template.starts_with("/api/v1/event-type") {
        return if read {
            Action::EventTypeRead
        } else {
            Action::GlobalWrite
        };
    }
    // Broker sources: settings are shown without passwords, and the
    // rejected log holds message bodies, as message reads do; but a change
    // makes the nodes connect where it says, with the node's own
    // credentials (SQS without keys uses the node's), so only the admin
    // token may make one.
    if template.starts_with("/api/v1/broker-source") {
        return if read {
            Action::GlobalRead
        } else {
            Action::Admin
        };
    }
    // Sources hold their provider secrets in their config; any secret.
    let shows_secret = shows_credentials
        || template == "/ingest/api/v1/source"
        || template == "/ingest/api/v1/source/{source_id}";
    let known = template == "/api/v1/app"
        || template == "/api/v1/cluster"
        || template.starts_with("/api/v1/operational-webhook/")
        || template.starts_with("/ingest/api/v1/source");
    match (known, read, shows_secret) {
        (false, _, _) => Action::Admin,
        (true, true, true) => Action::SecretRead,
        (true, true, false) => Action::GlobalRead,
        (true, false, _) => Action::GlobalWrite,
    }
}

/// The application key (`{app_id}`, id or uid, percent-decoded) of a
/// request path routed by `template`; `None` when the template names none
/// or the segment is not UTF-8.
pub(crate) fn app_key_of(template: &str, path: &str) -> Option<String> {
    let at = template.split('/').position(|s| s == "{app_id}")?;
    let raw = path.split('/').nth(at)?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_actions() {
        let cases = [
            (
                Method::GET,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
                Action::SecretRead,
            ),
            (
                Method::POST,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
                Action::SecretWrite,
            ),
            (Method::GET, "/api/v1/app/{app_id}/msg", Action::AppRead),
            (
                Method::GET,
                "/api/v1/broker-source/{source_id}/rejected",
                Action::GlobalRead,
            ),
            (Method::POST, "/api/v1/broker-source", Action::Admin),
            (
                Method::POST,
                "/api/v1/broker-source/{source_id}/pause",
                Action::Admin,
            ),
            (
                Method::GET,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
                Action::SecretRead,
            ),
            (
                Method::GET,
                "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/headers",
                Action::SecretRead,
            ),
            (
                Method::POST,
                "/api/v1/app/{app_id}/msg",
                Action::MessageWrite,
            ),
            (Method::DELETE, "/api/v1/app/{app_id}", Action::AppWrite),
            (
                Method::PATCH,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
                Action::EndpointWrite,
            ),
            (
                Method::POST,
                "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
                Action::AttemptWrite,
            ),
            (Method::GET, "/api/v1/event-type", Action::EventTypeRead),
            (Method::POST, "/api/v1/event-type", Action::GlobalWrite),
            (
                Method::GET,
                "/ingest/api/v1/source/{source_id}",
                Action::SecretRead,
            ),
            (
                Method::GET,
                "/ingest/api/v1/source/{source_id}/stats",
                Action::GlobalRead,
            ),
            (Method::GET, "/api/v1/auth/api-token", Action::Admin),
            (Method::POST, "/api/v1/auth/logout", Action::Session),
            (Method::GET, "/api/v1/something-new", Action::Admin),
            (
                Method::GET,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/oauth",
                Action::SecretRead,
            ),
            (
                Method::PUT,
                "/api/v1/app/{app_id}/endpoint/{endpoint_id}/mtls",
                Action::EndpointWrite,
            ),
            (
                Method::GET,
                "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/http-auth",
                Action::SecretRead,
            ),
        ];
        for (method, template, want) in cases {
            assert_eq!(action_of(&method, template), want, "{method} {template}");
        }
    }

    #[test]
    fn the_app_key_is_read_where_the_template_has_it() {
        let t = "/api/v1/app/{app_id}/endpoint/{endpoint_id}";
        assert_eq!(
            app_key_of(t, "/api/v1/app/my%20app/endpoint/ep_1").as_deref(),
            Some("my app")
        );
        assert_eq!(app_key_of("/api/v1/app", "/api/v1/app"), None);
        assert_eq!(app_key_of(t, "/api/v1/app/%FF/endpoint/x"), None);
    }
}
