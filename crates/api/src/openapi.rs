//! The OpenAPI 3.1 document of the v1 and ingest APIs, served at
//! `/api/v1/openapi.json`.
//!
//! Each operation comes from its handler's `#[utoipa::path]` annotation,
//! with the schemas of the very types the handler parses and returns, and
//! the routers register handlers through those annotations (utoipa-axum's
//! `routes!`), so a route and its entry cannot disagree. This module adds
//! what the operations share: the admin token, the error responses and the
//! `Idempotency-Key` header of POSTs.

use crate::error::{HttpErrorOut, ValidationErrorOut};
use std::collections::BTreeMap;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, HttpMethod, OpenApi, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::{PartialSchema, ToSchema};

/// The security scheme of every route but health, the document and the
/// provider-facing ingest route.
const BEARER: &str = "HTTPBearer";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Switchyard API",
        description = "Webhook gateway; the v1 API follows the Svix v1 REST API so Svix SDKs work unchanged.",
    ),
    components(schemas(HttpErrorOut, ValidationErrorOut))
)]
struct ApiDoc;

/// The document's frame: info, and the error schemas every operation uses.
pub fn base() -> OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// Marks every operation of `doc` as needing the admin token.
pub fn require_token(doc: &mut OpenApi) {
    for (_, op) in operations(doc) {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    }
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
}

/// Adds to every operation the errors it can answer (unless its handler
/// documents that status itself) and, to the admin API's POSTs, the
/// `Idempotency-Key` header.
pub fn add_shared_parts(doc: &mut OpenApi) {
    for (method, op) in operations(doc) {
        let authed = op.security.is_some();
        let has_path_params = op.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.parameter_in == ParameterIn::Path,
            RefOr::Ref(_) => false,
        });
        let has_query = op.parameters.iter().flatten().any(|p| match p {
            RefOr::T(p) => p.parameter_in == ParameterIn::Query,
            RefOr::Ref(_) => false,
        });
        let has_body = op.request_body.is_some();
        let post = method == HttpMethod::Post;
        // Token routes answer with new tokens, which are never kept, so a
        // key cannot replay them (`v1::auth_router`).
        let replayable = !op
            .operation_id
            .as_deref()
            .is_some_and(|id| id.starts_with("v1.authentication."));
        if authed && post && replayable {
            op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(
                ParameterBuilder::new()
                    .name("idempotency-key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "1 to 256 visible ASCII characters; a repeat of a POST with the same key \
                         within 24 hours gets the first one's answer instead of acting again",
                    ))
                    .schema(Some(String::schema()))
                    .build(),
            ));
        }
        let mut errors: Vec<(&str, &str)> = Vec::new();
        if has_path_params || has_body || (authed && post) {
            errors.push((
                "400",
                "A path parameter, the body or the Idempotency-Key could not be read",
            ));
        }
        if authed {
            errors.push(("401", "Missing, unknown, expired or revoked token"));
            errors.push((
                "403",
                "The token does not reach this: another application's, read-only, or without the capability",
            ));
        }
        if has_path_params {
            errors.push(("404", "Not found"));
        }
        if authed && method != HttpMethod::Get {
            errors.push(("409", "Conflicts with what is stored (a uid in use, ...)"));
        }
        if has_body {
            errors.push(("413", "Body too large"));
        }
        if has_body || has_query {
            errors.push(("422", "Validation error"));
        }
        errors.push(("500", "Internal error"));
        errors.push(("503", "The database is unavailable; nothing was stored"));
        for (status, description) in errors {
            let schema = if status == "422" {
                ValidationErrorOut::name()
            } else {
                HttpErrorOut::name()
            };
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            Content::new(Some(RefOr::<Schema>::Ref(Ref::from_schema_name(schema)))),
                        )
                        .into()
                });
        }
    }
}

/// Links each creating POST's answer to the operations on what it created
/// (OpenAPI links): the new resource's id (or name) fills that
/// resource's path parameter, and the POST's own path parameters fill
/// theirs. Clients and tools such as schemathesis follow them.
pub fn add_links(doc: &mut OpenApi) {
    let mut ops: Vec<(String, HttpMethod, String)> = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            (HttpMethod::Get, &item.get),
            (HttpMethod::Put, &item.put),
            (HttpMethod::Post, &item.post),
            (HttpMethod::Delete, &item.delete),
            (HttpMethod::Patch, &item.patch),
        ] {
            if let Some(id) = op.as_ref().and_then(|op| op.operation_id.clone()) {
                ops.push((path.clone(), method, id));
            }
        }
    }
    let schemas = doc
        .components
        .as_ref()
        .map(|c| c.schemas.clone())
        .unwrap_or_default();
    for (path, item) in doc.paths.paths.iter_mut() {
        let Some(create) = item.post.as_mut() else {
            continue;
        };
        // The parameter naming what this POST creates: the one the paths
        // right below it add (`/app` → `/app/{app_id}`).
        let below = format!("{path}/{{");
        let Some(created) = ops.iter().find_map(|(p, _, _)| {
            let rest = p.strip_prefix(&below)?;
            Some(rest.split('}').next()?.to_owned())
        }) else {
            continue;
        };
        let own = path_params(path);
        for (status, response) in create.responses.responses.iter_mut() {
            if status != "201" && status != "202" {
                continue;
            }
            let RefOr::T(response) = response else {
                continue;
            };
            let Some(field) = created_key(response, &schemas) else {
                continue;
            };
            for (target, _, id) in &ops {
                let params = path_params(target);
                let reachable = params.contains(&created.as_str())
                    && params.iter().all(|p| *p == created || own.contains(p));
                if target == path || !reachable {
                    continue;
                }
                let mut link = LinkBuilder::new().operation_id(id);
                for p in params {
                    let value = if p == created {
                        format!("$response.body#/{field}")
                    } else {
                        format!("$request.path.{p}")
                    };
                    link = link.parameter(p, value);
                }
                response.links.insert(id.clone(), RefOr::T(link.build()));
            }
        }
    }
}

/// The names of `path`'s parameters, in order.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The field of a creating POST's answer that names what it created: `id`,
/// or `name` for a resource named by its name (event types).
fn created_key(
    response: &utoipa::openapi::Response,
    schemas: &BTreeMap<String, RefOr<Schema>>,
) -> Option<&'static str> {
    let RefOr::T(content) = response.content.get("application/json")? else {
        return None;
    };
    let RefOr::Ref(reference) = content.schema.as_ref()? else {
        return None;
    };
    let name = reference.ref_location.rsplit('/').next()?;
    let RefOr::T(Schema::Object(object)) = schemas.get(name)? else {
        return None;
    };
    ["id", "name"]
        .into_iter()
        .find(|key| object.properties.contains_key(*key))
}

/// Every operation of `doc` with its method.
fn operations(doc: &mut OpenApi) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
            (HttpMethod::Options, item.options.as_mut()),
            (HttpMethod::Head, item.head.as_mut()),
            (HttpMethod::Patch, item.patch.as_mut()),
            (HttpMethod::Trace, item.trace.as_mut()),
        ]
        .into_iter()
        .filter_map(|(method, op)| op.map(|op| (method, op)))
    })
}
