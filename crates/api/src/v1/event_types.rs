//! Event types: `/api/v1/event-type`.

use super::{ListResponse, created_status, ts};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PageQuery, Path, Query, bool_param, double_option};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_engine::{EventTypeInput, EventTypePatch};
use switchyard_store::{EventType, Order};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, upsert, patch, remove))
}

/// An event type: create (with `name`) or replace (named by the path).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"name": "invoice.paid", "description": "An invoice was paid"})))]
struct EventTypeIn {
    /// Required on create; on replace the path names the event type.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    deprecated: bool,
    /// Version (`"1"`, ...) → JSON Schema of the payload; messages of this
    /// type are checked against the newest.
    #[schema(value_type = Option<Object>)]
    schemas: Option<Value>,
    feature_flags: Option<Vec<String>>,
    /// Older SDKs' single feature flag; `featureFlags` wins when both are sent.
    #[schema(deprecated)]
    feature_flag: Option<String>,
    group_name: Option<String>,
}

/// A partial change: an absent field stays as it is, `null` clears the
/// nullable ones.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EventTypePatchIn {
    description: Option<String>,
    archived: Option<bool>,
    deprecated: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    schemas: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double_option")]
    feature_flags: Option<Option<Vec<String>>>,
    /// Older SDKs' single feature flag (`null` clears them);
    /// `featureFlags` wins when both are sent.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(deprecated)]
    feature_flag: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    group_name: Option<Option<String>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct EventTypeOut {
    name: String,
    description: String,
    archived: bool,
    deprecated: bool,
    #[schema(value_type = Option<Object>, required = true)]
    schemas: Option<Value>,
    #[schema(required = true)]
    feature_flags: Option<Vec<String>>,
    /// The first of `featureFlags`, for older SDKs.
    #[schema(required = true)]
    feature_flag: Option<String>,
    #[schema(required = true)]
    group_name: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl EventTypeOut {
    pub(crate) fn new(et: &EventType) -> Self {
        EventTypeOut {
            name: et.name.to_string(),
            description: et.description.clone(),
            archived: et.archived,
            deprecated: et.deprecated,
            schemas: et.schemas.clone(),
            feature_flags: et.feature_flags.clone(),
            feature_flag: et.feature_flags.as_ref().and_then(|f| f.first().cloned()),
            group_name: et.group_name.clone(),
            created_at: ts(et.created_at),
            updated_at: ts(et.updated_at),
        }
    }
}

impl From<EventTypeIn> for EventTypeInput {
    fn from(input: EventTypeIn) -> Self {
        EventTypeInput {
            description: input.description,
            archived: input.archived,
            deprecated: input.deprecated,
            schemas: input.schemas,
            feature_flags: input
                .feature_flags
                .or_else(|| input.feature_flag.map(|f| vec![f])),
            group_name: input.group_name,
        }
    }
}

/// `{event_type_name}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct EventTypePath {
    /// The event type's name (`invoice.paid`).
    event_type_name: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Whether archived event types are listed too (default false).
    #[param(value_type = Option<bool>)]
    include_archived: Option<String>,
}

/// List event types.
#[utoipa::path(get, path = "/api/v1/event-type", operation_id = "v1.event-type.list",
    params(PageQuery, ListQuery),
    responses((status = 200, description = "One page, by name", body = ListResponse<EventTypeOut>)))]
async fn list(
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<ListResponse<EventTypeOut>>> {
    let include_archived = bool_param("include_archived", &q.include_archived, false)?;
    let page = state
        .engine
        .list_event_types(&page.page(Order::Ascending)?, include_archived)
        .await?;
    Ok(Json(ListResponse::of(page, EventTypeOut::new)))
}

/// Create an event type, optionally with JSON Schemas per version.
#[utoipa::path(post, path = "/api/v1/event-type", operation_id = "v1.event-type.create",
    request_body = EventTypeIn,
    responses((status = 201, description = "Created", body = EventTypeOut)))]
async fn create(
    State(state): State<AppState>,
    Body(mut input): Body<EventTypeIn>,
) -> ApiResult<Response> {
    let name = input
        .name
        .take()
        .ok_or_else(|| ApiError::field("name", "missing field `name`"))?;
    let et = state.engine.create_event_type(&name, input.into()).await?;
    Ok((StatusCode::CREATED, Json(EventTypeOut::new(&et))).into_response())
}

/// Get an event type.
#[utoipa::path(get, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.get",
    params(EventTypePath),
    responses((status = 200, description = "The event type", body = EventTypeOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<EventTypePath>,
) -> ApiResult<Json<EventTypeOut>> {
    Ok(Json(EventTypeOut::new(
        &state.engine.event_type(&p.event_type_name).await?,
    )))
}

/// Update or create an event type.
#[utoipa::path(put, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.update",
    params(EventTypePath),
    request_body = EventTypeIn,
    responses(
        (status = 200, description = "Replaced", body = EventTypeOut),
        (status = 201, description = "Created", body = EventTypeOut),
    ))]
async fn upsert(
    State(state): State<AppState>,
    Path(p): Path<EventTypePath>,
    Body(input): Body<EventTypeIn>,
) -> ApiResult<Response> {
    let (et, created) = state
        .engine
        .upsert_event_type(&p.event_type_name, input.into())
        .await?;
    Ok((created_status(created), Json(EventTypeOut::new(&et))).into_response())
}

/// Partially update an event type.
#[utoipa::path(patch, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.patch",
    params(EventTypePath),
    request_body = EventTypePatchIn,
    responses((status = 200, description = "Updated", body = EventTypeOut)))]
async fn patch(
    State(state): State<AppState>,
    Path(p): Path<EventTypePath>,
    Body(input): Body<EventTypePatchIn>,
) -> ApiResult<Json<EventTypeOut>> {
    let feature_flag = input.feature_flag.map(|f| f.map(|f| vec![f]));
    let patch = EventTypePatch {
        description: input.description,
        archived: input.archived,
        deprecated: input.deprecated,
        schemas: input.schemas,
        feature_flags: input.feature_flags.or(feature_flag),
        group_name: input.group_name,
    };
    Ok(Json(EventTypeOut::new(
        &state
            .engine
            .patch_event_type(&p.event_type_name, patch)
            .await?,
    )))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete the event type for good instead of archiving it.
    #[param(value_type = Option<bool>)]
    expunge: Option<String>,
}

/// Archive an event type (expunge=true deletes it).
#[utoipa::path(delete, path = "/api/v1/event-type/{event_type_name}", operation_id = "v1.event-type.delete",
    params(EventTypePath, DeleteQuery),
    responses((status = 204, description = "Archived or deleted")))]
async fn remove(
    State(state): State<AppState>,
    Path(p): Path<EventTypePath>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let expunge = bool_param("expunge", &q.expunge, false)?;
    state
        .engine
        .delete_event_type(&p.event_type_name, expunge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
