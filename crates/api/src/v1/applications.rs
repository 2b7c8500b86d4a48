//! Applications: `/api/v1/app`.

use super::{check_rate_limit, find_app, list_out, parse_uid, ts};
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
use switchyard_core::AppId;
use switchyard_core::timefmt::now_ms;
use switchyard_store::{Application, Metadata, Order};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/app", get(list).post(create))
        .route(
            "/api/v1/app/{app_id}",
            get(fetch).put(upsert).patch(patch).delete(remove),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationIn {
    pub name: String,
    pub uid: Option<String>,
    #[serde(alias = "throttleRate")]
    pub rate_limit: Option<u32>,
    pub metadata: Option<Metadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationPatch {
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    uid: Option<Option<String>>,
    #[serde(default, alias = "throttleRate", deserialize_with = "double_option")]
    rate_limit: Option<Option<u32>>,
    metadata: Option<Metadata>,
}

pub(crate) fn app_out(app: &Application) -> Value {
    json!({
        "id": app.id,
        "uid": app.uid,
        "name": app.name,
        "rateLimit": app.rate_limit,
        "throttleRate": app.rate_limit,
        "metadata": app.metadata,
        "createdAt": ts(app.created_at),
        "updatedAt": ts(app.updated_at),
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::field("name", "must not be empty"));
    }
    if name.len() > 256 {
        return Err(ApiError::field("name", "must be at most 256 characters"));
    }
    Ok(())
}

/// Builds a new application from the request, checking every field.
pub(crate) fn new_app(
    input: ApplicationIn,
    uid_override: Option<String>,
) -> ApiResult<Application> {
    check_name(&input.name)?;
    let now = now_ms();
    Ok(Application {
        id: AppId::generate_at(now),
        uid: parse_uid("uid", uid_override.or(input.uid))?,
        name: input.name,
        rate_limit: check_rate_limit("rateLimit", input.rate_limit)?,
        metadata: input.metadata.unwrap_or_default(),
        created_at: now,
        updated_at: now,
    })
}

#[derive(Deserialize)]
struct CreateQuery {
    get_if_exists: Option<String>,
}

async fn list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Json<Value>> {
    let page = state
        .engine
        .store()
        .list_apps(&q.page(Order::Ascending)?)
        .await?;
    Ok(Json(list_out(page, app_out)))
}

async fn create(
    State(state): State<AppState>,
    Query(q): Query<CreateQuery>,
    Body(input): Body<ApplicationIn>,
) -> ApiResult<Response> {
    let get_if_exists = bool_param("get_if_exists", &q.get_if_exists, false)?;
    if get_if_exists
        && let Some(uid) = &input.uid
        && let Some(existing) = state.engine.store().get_app(uid).await?
    {
        return Ok((StatusCode::OK, Json(app_out(&existing))).into_response());
    }
    let app = new_app(input, None)?;
    let app = state.engine.store().insert_app(app).await?;
    Ok((StatusCode::CREATED, Json(app_out(&app))).into_response())
}

async fn fetch(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(app_out(&find_app(&state, &app_id).await?)))
}

async fn upsert(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Body(input): Body<ApplicationIn>,
) -> ApiResult<Response> {
    match state.engine.store().get_app(&app_id).await? {
        Some(mut app) => {
            check_name(&input.name)?;
            app.name = input.name;
            app.uid = parse_uid("uid", input.uid)?.or(app.uid);
            app.rate_limit = check_rate_limit("rateLimit", input.rate_limit)?;
            app.metadata = input.metadata.unwrap_or_default();
            app.updated_at = now_ms();
            let app = state.engine.store().update_app(app).await?;
            state.engine.app_changed(&app.id);
            Ok(Json(app_out(&app)).into_response())
        }
        None if AppId::parse(&app_id).is_some() => Err(ApiError::not_found("application")),
        None => {
            let app = new_app(input, Some(app_id))?;
            let app = state.engine.store().insert_app(app).await?;
            Ok((StatusCode::CREATED, Json(app_out(&app))).into_response())
        }
    }
}

async fn patch(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Body(input): Body<ApplicationPatch>,
) -> ApiResult<Json<Value>> {
    let mut app = find_app(&state, &app_id).await?;
    if let Some(name) = input.name {
        check_name(&name)?;
        app.name = name;
    }
    if let Some(uid) = input.uid {
        app.uid = parse_uid("uid", uid)?;
    }
    if let Some(rate) = input.rate_limit {
        app.rate_limit = check_rate_limit("rateLimit", rate)?;
    }
    if let Some(metadata) = input.metadata {
        app.metadata = metadata;
    }
    app.updated_at = now_ms();
    let app = state.engine.store().update_app(app).await?;
    state.engine.app_changed(&app.id);
    Ok(Json(app_out(&app)))
}

async fn remove(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> ApiResult<StatusCode> {
    let app = find_app(&state, &app_id).await?;
    state.engine.store().delete_app(&app.id).await?;
    state.engine.app_changed(&app.id);
    Ok(StatusCode::NO_CONTENT)
}
