//! The Svix-compatible v1 API, one file per resource: its request and
//! response types, its handlers (each annotated with its OpenAPI
//! operation) and its routes.

mod applications;
mod attempts;
mod auth;
mod broker_sources;
mod cluster;
pub(crate) mod endpoint_auth;
pub(crate) mod endpoints;
mod event_types;
mod messages;
mod operational;

use crate::AppState;
use crate::error::ApiResult;
use serde::{Deserialize, Serialize};
use switchyard_core::timefmt::format_ms;
use switchyard_store::{Application, Endpoint, Page};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(applications::router())
        .merge(event_types::router())
        .merge(endpoints::router())
        .merge(endpoint_auth::router())
        .merge(attempts::router())
        .merge(cluster::router())
        .merge(operational::router())
        .merge(broker_sources::router())
}

/// Token routes: their answers carry new tokens, which must not be kept
/// (only hashes are), so these are mounted outside the replaying
/// idempotency layer; a repeated POST makes another token.
pub fn auth_router() -> OpenApiRouter<AppState> {
    auth::router()
}

/// Message routes: message creation records its `Idempotency-Key` in the
/// same transaction as the message, so these are mounted outside the
/// replaying idempotency layer.
pub fn messages_router() -> OpenApiRouter<AppState> {
    messages::router()
}

pub(crate) async fn find_app(state: &AppState, key: &str) -> ApiResult<Application> {
    Ok(state.engine.app(key).await?)
}

pub(crate) async fn find_endpoint(
    state: &AppState,
    app: &Application,
    key: &str,
) -> ApiResult<Endpoint> {
    Ok(state.engine.endpoint_in(app, key).await?)
}

/// One page of a listing (`ListResponse_…` in the Svix API).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListResponse<T> {
    pub data: Vec<T>,
    /// Where the next page starts (pass it back as `iterator`).
    #[schema(required = true)]
    pub iterator: Option<String>,
    /// Always `null`: listings are walked forwards only.
    #[schema(required = true)]
    pub prev_iterator: Option<String>,
    /// Whether this is the last page.
    pub done: bool,
}

impl<T> ListResponse<T> {
    /// A store page with each item rendered for the API.
    pub(crate) fn of<S>(page: Page<S>, render: impl FnMut(&S) -> T) -> Self {
        ListResponse {
            data: page.data.iter().map(render).collect(),
            iterator: page.iterator,
            prev_iterator: None,
            done: page.done,
        }
    }

    /// As [`ListResponse::of`], leaving out the items `render` has nothing for.
    pub(crate) fn of_some<S>(page: Page<S>, render: impl FnMut(&S) -> Option<T>) -> Self {
        ListResponse {
            data: page.data.iter().filter_map(render).collect(),
            iterator: page.iterator,
            prev_iterator: None,
            done: page.done,
        }
    }
}

/// 201 for something new, 200 for something that was there.
pub(crate) fn created_status(created: bool) -> axum::http::StatusCode {
    if created {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    }
}

/// An RFC 3339 UTC timestamp with milliseconds, as the API shows times.
pub(crate) fn ts(ms: u64) -> String {
    format_ms(ms)
}

/// A list of names as the API shows them.
pub(crate) fn texts<T: std::fmt::Display>(names: Option<&[T]>) -> Option<Vec<String>> {
    names.map(|v| v.iter().map(ToString::to_string).collect())
}

/// A PATCH field the Svix API takes under two names (`eventTypes` and
/// `filterTypes`, `throttleRate` and `rateLimit`): a value under either wins
/// over a null under the other; a null alone clears; absent under both
/// leaves the field as it is.
pub(crate) fn either_name<T>(
    first: Option<Option<T>>,
    second: Option<Option<T>>,
) -> Option<Option<T>> {
    match (first, second) {
        (Some(Some(v)), _) | (_, Some(Some(v))) => Some(Some(v)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[test]
fn a_value_under_either_name_wins_over_a_null() {
    assert_eq!(either_name(Some(None), Some(Some(1))), Some(Some(1)));
    assert_eq!(either_name(Some(Some(2)), Some(None)), Some(Some(2)));
    assert_eq!(either_name(Some(Some(2)), Some(Some(1))), Some(Some(2)));
    assert_eq!(either_name::<u8>(None, Some(None)), Some(None));
    assert_eq!(either_name::<u8>(None, None), None);
}

/// `{app_id}`: an application's id (`app_…`) or uid.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AppPath {
    /// The application's id (`app_…`) or uid.
    pub app_id: String,
}

/// `{app_id}/…/{endpoint_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EndpointPath {
    /// The application's id (`app_…`) or uid.
    pub app_id: String,
    /// The endpoint's id (`ep_…`) or uid.
    pub endpoint_id: String,
}

/// `{app_id}/…/{msg_id}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct MessagePath {
    /// The application's id (`app_…`) or uid.
    pub app_id: String,
    /// The message's id (`msg_…`) or its `eventId`.
    pub msg_id: String,
}
