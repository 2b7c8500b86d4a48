//! Applications: `/api/v1/app`.

use super::{AppPath, ListResponse, created_status, ts};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{Body, PageQuery, Path, Query, bool_param, double_option};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard_engine::{AppInput, AppPatch};
use switchyard_store::{Application, Metadata, Order};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(fetch, upsert, patch, remove))
}

/// An application: create, replace, or create with a message.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"name": "Acme", "uid": "acme", "metadata": {"plan": "pro"}})))]
pub(crate) struct ApplicationIn {
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    /// A unique name of your choosing; the API takes it wherever it takes
    /// the id. It may not start like an id (`app_`, `ep_`, ...).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    pub uid: Option<String>,
    /// Deprecated name of `throttleRate`, which wins when both are sent.
    #[schema(deprecated, minimum = 1, maximum = 65535)]
    pub rate_limit: Option<u32>,
    /// Deliveries per second to each of this application's endpoints that
    /// sets none of its own; deliveries over it wait their turn.
    #[schema(minimum = 1, maximum = 65535)]
    pub throttle_rate: Option<u32>,
    /// Free-form string pairs of your own: at most 100, 16 KiB together.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub metadata: Option<Metadata>,
}

/// A partial change: an absent field stays as it is, `null` clears `uid`
/// and `throttleRate`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ApplicationPatch {
    #[schema(min_length = 1, max_length = 256)]
    name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,256}$")]
    uid: Option<Option<String>>,
    /// Deprecated name of `throttleRate`, which wins when both are sent.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(deprecated, minimum = 1, maximum = 65535)]
    rate_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(minimum = 1, maximum = 65535)]
    throttle_rate: Option<Option<u32>>,
    /// Free-form string pairs of your own: at most 100, 16 KiB together.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Metadata>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationOut {
    /// `app_…`
    id: String,
    #[schema(required = true)]
    uid: Option<String>,
    name: String,
    /// The same as `throttleRate`, under its older name.
    #[schema(required = true)]
    rate_limit: Option<u32>,
    #[schema(required = true)]
    throttle_rate: Option<u32>,
    /// Free-form string pairs of your own.
    #[schema(value_type = BTreeMap<String, String>)]
    metadata: Metadata,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

impl ApplicationOut {
    pub(crate) fn new(app: &Application) -> Self {
        ApplicationOut {
            id: app.id.as_str().to_owned(),
            uid: app.uid.as_deref().map(str::to_owned),
            name: app.name.clone(),
            rate_limit: app.rate_limit,
            throttle_rate: app.rate_limit,
            metadata: app.metadata.clone(),
            created_at: ts(app.created_at),
            updated_at: ts(app.updated_at),
        }
    }
}

impl From<ApplicationIn> for AppInput {
    fn from(input: ApplicationIn) -> Self {
        AppInput {
            name: input.name,
            uid: input.uid,
            rate_limit: input.throttle_rate.or(input.rate_limit),
            metadata: input.metadata,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// With a `uid` that exists already: answer 200 with that application
    /// instead of a 409.
    #[param(value_type = Option<bool>)]
    get_if_exists: Option<String>,
}

/// List applications.
#[utoipa::path(get, path = "/api/v1/app", operation_id = "v1.application.list",
    params(PageQuery),
    responses((status = 200, description = "One page, oldest first", body = ListResponse<ApplicationOut>)))]
async fn list(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ListResponse<ApplicationOut>>> {
    let page = state.engine.list_apps(&q.page(Order::Ascending)?).await?;
    Ok(Json(ListResponse::of(page, ApplicationOut::new)))
}

/// Create an application (get_if_exists=true returns an existing uid).
#[utoipa::path(post, path = "/api/v1/app", operation_id = "v1.application.create",
    params(CreateQuery),
    request_body = ApplicationIn,
    responses(
        (status = 201, description = "Created", body = ApplicationOut),
        (status = 200, description = "`get_if_exists`: the application with this uid", body = ApplicationOut),
    ))]
async fn create(
    State(state): State<AppState>,
    Query(q): Query<CreateQuery>,
    Body(input): Body<ApplicationIn>,
) -> ApiResult<Response> {
    let get_if_exists = bool_param("get_if_exists", &q.get_if_exists, false)?;
    let (app, created) = state.engine.create_app(input.into(), get_if_exists).await?;
    Ok((created_status(created), Json(ApplicationOut::new(&app))).into_response())
}

/// Get an application by id or uid.
#[utoipa::path(get, path = "/api/v1/app/{app_id}", operation_id = "v1.application.get",
    params(AppPath),
    responses((status = 200, description = "The application", body = ApplicationOut)))]
async fn fetch(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
) -> ApiResult<Json<ApplicationOut>> {
    Ok(Json(ApplicationOut::new(
        &state.engine.app(&p.app_id).await?,
    )))
}

/// Update or create an application.
#[utoipa::path(put, path = "/api/v1/app/{app_id}", operation_id = "v1.application.update",
    params(AppPath),
    request_body = ApplicationIn,
    responses(
        (status = 200, description = "Replaced", body = ApplicationOut),
        (status = 201, description = "Created with this uid", body = ApplicationOut),
    ))]
async fn upsert(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Body(input): Body<ApplicationIn>,
) -> ApiResult<Response> {
    let (app, created) = state.engine.upsert_app(&p.app_id, input.into()).await?;
    Ok((created_status(created), Json(ApplicationOut::new(&app))).into_response())
}

/// Partially update an application.
#[utoipa::path(patch, path = "/api/v1/app/{app_id}", operation_id = "v1.application.patch",
    params(AppPath),
    request_body = ApplicationPatch,
    responses((status = 200, description = "Updated", body = ApplicationOut)))]
async fn patch(
    State(state): State<AppState>,
    Path(p): Path<AppPath>,
    Body(input): Body<ApplicationPatch>,
) -> ApiResult<Json<ApplicationOut>> {
    let patch = AppPatch {
        name: input.name,
        uid: input.uid,
        rate_limit: super::either_name(input.throttle_rate, input.rate_limit),
        metadata: input.metadata,
    };
    Ok(Json(ApplicationOut::new(
        &state.engine.patch_app(&p.app_id, patch).await?,
    )))
}

/// Delete an application and all its data.
#[utoipa::path(delete, path = "/api/v1/app/{app_id}", operation_id = "v1.application.delete",
    params(AppPath),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(state): State<AppState>, Path(p): Path<AppPath>) -> ApiResult<StatusCode> {
    state.engine.delete_app(&p.app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
