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
use switchyard_core::EventTypeName;
use switchyard_core::timefmt::now_ms;
use switchyard_engine::Engine;
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
struct EventTypePatch {
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

fn check_schemas(schemas: &Option<Value>) -> ApiResult<()> {
    match schemas {
        Some(Value::Null) | None => Ok(()),
        Some(s) => Engine::validate_schemas(s).map_err(|(field, e)| ApiError::field(&field, e)),
    }
}

fn build(name: String, input: EventTypeIn, created_at: Option<u64>) -> ApiResult<EventType> {
    EventTypeName::parse(&name).map_err(|e| ApiError::field("name", e.to_string()))?;
    check_schemas(&input.schemas)?;
    let now = now_ms();
    Ok(EventType {
        name,
        description: input.description,
        archived: input.archived,
        deprecated: input.deprecated,
        schemas: input.schemas.filter(|s| !s.is_null()),
        feature_flags: input
            .feature_flags
            .or_else(|| input.feature_flag.map(|f| vec![f])),
        group_name: input.group_name,
        created_at: created_at.unwrap_or(now),
        updated_at: now,
    })
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
        .store()
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
    let et = build(name, input, None)?;
    let et = state.engine.store().insert_event_type(et).await?;
    state.engine.event_type_changed(&et.name);
    Ok((StatusCode::CREATED, Json(event_type_out(&et))).into_response())
}

async fn find(state: &AppState, name: &str) -> ApiResult<EventType> {
    state
        .engine
        .store()
        .get_event_type(name)
        .await?
        .ok_or_else(|| ApiError::not_found("event type"))
}

async fn fetch(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(event_type_out(&find(&state, &name).await?)))
}

async fn upsert(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(input): Body<EventTypeIn>,
) -> ApiResult<Response> {
    let existing = state.engine.store().get_event_type(&name).await?;
    let created = existing.is_none();
    let et = build(name, input, existing.map(|e| e.created_at))?;
    let et = state.engine.store().put_event_type(et).await?;
    state.engine.event_type_changed(&et.name);
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
    Body(input): Body<EventTypePatch>,
) -> ApiResult<Json<Value>> {
    let mut et = find(&state, &name).await?;
    if let Some(d) = input.description {
        et.description = d;
    }
    if let Some(a) = input.archived {
        et.archived = a;
    }
    if let Some(d) = input.deprecated {
        et.deprecated = d;
    }
    if let Some(s) = input.schemas {
        check_schemas(&s)?;
        et.schemas = s.filter(|s| !s.is_null());
    }
    if let Some(f) = input.feature_flags {
        et.feature_flags = f;
    }
    if let Some(g) = input.group_name {
        et.group_name = g;
    }
    et.updated_at = now_ms();
    let et = state.engine.store().put_event_type(et).await?;
    state.engine.event_type_changed(&et.name);
    Ok(Json(event_type_out(&et)))
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
    let mut et = find(&state, &name).await?;
    if bool_param("expunge", &q.expunge, false)? {
        state.engine.store().delete_event_type(&name).await?;
    } else {
        et.archived = true;
        et.updated_at = now_ms();
        state.engine.store().put_event_type(et).await?;
    }
    state.engine.event_type_changed(&name);
    Ok(StatusCode::NO_CONTENT)
}
