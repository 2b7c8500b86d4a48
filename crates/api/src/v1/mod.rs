//! The Svix-compatible v1 API, one file per resource.

mod applications;
mod attempts;
mod cluster;
pub(crate) mod endpoints;
mod event_types;
mod messages;

use crate::AppState;
use crate::error::ApiResult;
use axum::Router;
use serde_json::Value;
use switchyard_core::timefmt::format_ms;
use switchyard_store::{Application, Endpoint, Page};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(applications::router())
        .merge(event_types::router())
        .merge(endpoints::router())
        .merge(attempts::router())
        .merge(cluster::router())
}

/// Message routes: message creation records its `Idempotency-Key` in the
/// same transaction as the message, so these are mounted outside the
/// replaying idempotency layer.
pub fn messages_router() -> Router<AppState> {
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

pub(crate) fn list_out<T>(page: Page<T>, render: impl Fn(&T) -> Value) -> Value {
    serde_json::json!({
        "data": page.data.iter().map(render).collect::<Vec<_>>(),
        "iterator": page.iterator,
        "prevIterator": null,
        "done": page.done,
    })
}

pub(crate) fn ts(ms: u64) -> String {
    format_ms(ms)
}

pub(crate) fn parse_channels(
    field: &str,
    channels: Option<Vec<String>>,
) -> ApiResult<Option<Vec<String>>> {
    Ok(switchyard_engine::parse_channels(field, channels)?)
}
