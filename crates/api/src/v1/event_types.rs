//! Event types: `/api/v1/event-type`.

use super::{list_out, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query, bool_param, double_option};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::{EventTypeInput, EventTypePatch};
use switchyard_store::{EventType, Order};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/event-type", get(list).post(create))
        .route(
            "/api/v1/event-type/{name}",
            get(fetch).put(upsert).patch(patch).delete(remove),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypeIn {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    schemas: Option<Value>,
    feature_flags: Option<Vec<String>>,
    feature_flag: Option<String>,
    group_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypePatchIn {
    description: Option<String>,
    archived: Option<bool>,
    deprecated: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    schemas: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double_option")]
    feature_flags: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    group_name: Option<Option<String>>,
}

fn event_type_out(et: &EventType) -> Value {
    json!({
        "name": et.name,
        "description": et.description,
        "archived": et.archived,
        "deprecated": et.deprecated,
        "schemas": et.schemas,
        "featureFlags": et.feature_flags,
        "featureFlag": et.feature_flags.as_ref().and_then(|f| f.first()),
        "groupName": et.group_name,
        "createdAt": ts(et.created_at),
        "updatedAt": ts(et.updated_at),
    })
}

impl From<EventTypeIn> for EventTypeInput {
    fn from(input: EventTypeIn) -> Self {
        EventTypeInput {
            description: input.description,
            archived: input.archived,
            deprecated: input.deprecated,
            schemas: input.schemas,
            // Older SDKs send one `featureFlag`.
            feature_flags: input
                .feature_flags
                .or_else(|| input.feature_flag.map(|f| vec![f])),
            group_name: input.group_name,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    page: PageQuery,
    include_archived: Option<String>,
}

async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let include_archived = bool_param("include_archived", &q.include_archived, false)?;
    let page = state
        .engine
        .list_event_types(&q.page.page(Order::Ascending)?, include_archived)
        .await?;
    Ok(Json(list_out(page, event_type_out)))
}

async fn create(
    State(state): State<AppState>,
    Body(mut input): Body<EventTypeIn>,
) -> ApiResult<Response> {
    let name = input
        .name
        .take()
        .ok_or_else(|| ApiError::field("name", "missing field `name`"))?;
    let et = state.engine.create_event_type(&name, input.into()).await?;
    Ok((StatusCode::CREATED, Json(event_type_out(&et))).into_response())
}

async fn fetch(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(event_type_out(&state.engine.event_type(&name).await?)))
}

async fn upsert(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(input): Body<EventTypeIn>,
) -> ApiResult<Response> {
    let (et, created) = state.engine.upsert_event_type(&name, input.into()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(event_type_out(&et))).into_response())
}

async fn patch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(input): Body<EventTypePatchIn>,
) -> ApiResult<Json<Value>> {
    let patch = EventTypePatch {
        description: input.description,
        archived: input.archived,
        deprecated: input.deprecated,
        schemas: input.schemas,
        feature_flags: input.feature_flags,
        group_name: input.group_name,
    };
    Ok(Json(event_type_out(
        &state.engine.patch_event_type(&name, patch).await?,
    )))
}

#[derive(Deserialize)]
struct DeleteQuery {
    expunge: Option<String>,
}

/// Archives the event type; `expunge=true` deletes it for good.
async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let expunge = bool_param("expunge", &q.expunge, false)?;
    state.engine.delete_event_type(&name, expunge).await?;
    Ok(StatusCode::NO_CONTENT)
}
