//! Applications: `/api/v1/app`.

use super::{list_out, ts};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, PageQuery, Path, Query, bool_param, double_option};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::{AppInput, AppPatch};
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

impl From<ApplicationIn> for AppInput {
    fn from(input: ApplicationIn) -> Self {
        AppInput {
            name: input.name,
            uid: input.uid,
            rate_limit: input.rate_limit,
            metadata: input.metadata,
        }
    }
}

#[derive(Deserialize)]
struct CreateQuery {
    get_if_exists: Option<String>,
}

async fn list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> ApiResult<Json<Value>> {
    let page = state.engine.list_apps(&q.page(Order::Ascending)?).await?;
    Ok(Json(list_out(page, app_out)))
}

async fn create(
    State(state): State<AppState>,
    Query(q): Query<CreateQuery>,
    Body(input): Body<ApplicationIn>,
) -> ApiResult<Response> {
    let get_if_exists = bool_param("get_if_exists", &q.get_if_exists, false)?;
    let (app, created) = state.engine.create_app(input.into(), get_if_exists).await?;
    Ok((created_status(created), Json(app_out(&app))).into_response())
}

fn created_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn fetch(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(app_out(&state.engine.app(&app_id).await?)))
}

async fn upsert(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Body(input): Body<ApplicationIn>,
) -> ApiResult<Response> {
    let (app, created) = state.engine.upsert_app(&app_id, input.into()).await?;
    Ok((created_status(created), Json(app_out(&app))).into_response())
}

async fn patch(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
    Body(input): Body<ApplicationPatch>,
) -> ApiResult<Json<Value>> {
    let patch = AppPatch {
        name: input.name,
        uid: input.uid,
        rate_limit: input.rate_limit,
        metadata: input.metadata,
    };
    Ok(Json(app_out(
        &state.engine.patch_app(&app_id, patch).await?,
    )))
}

async fn remove(
    State(state): State<AppState>,
    Path(app_id): Path<String>,
) -> ApiResult<StatusCode> {
    state.engine.delete_app(&app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
