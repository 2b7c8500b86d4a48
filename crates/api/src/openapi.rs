//! The OpenAPI 3.1 document of the v1 and ingest APIs, served at `/api/v1/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

/// (method, path, operationId, success status, summary)
const OPERATIONS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "get",
        "/api/v1/health",
        "v1.health.get",
        "204",
        "Health check",
    ),
    (
        "get",
        "/api/v1/app",
        "v1.application.list",
        "200",
        "List applications",
    ),
    (
        "post",
        "/api/v1/app",
        "v1.application.create",
        "201",
        "Create an application (get_if_exists=true returns an existing uid)",
    ),
    (
        "get",
        "/api/v1/app/{app_id}",
        "v1.application.get",
        "200",
        "Get an application by id or uid",
    ),
    (
        "put",
        "/api/v1/app/{app_id}",
        "v1.application.update",
        "200",
        "Update or create an application",
    ),
    (
        "patch",
        "/api/v1/app/{app_id}",
        "v1.application.patch",
        "200",
        "Partially update an application",
    ),
    (
        "delete",
        "/api/v1/app/{app_id}",
        "v1.application.delete",
        "204",
        "Delete an application and all its data",
    ),
    (
        "get",
        "/api/v1/event-type",
        "v1.event-type.list",
        "200",
        "List event types",
    ),
    (
        "post",
        "/api/v1/event-type",
        "v1.event-type.create",
        "201",
        "Create an event type, optionally with JSON Schemas per version",
    ),
    (
        "get",
        "/api/v1/event-type/{event_type_name}",
        "v1.event-type.get",
        "200",
        "Get an event type",
    ),
    (
        "put",
        "/api/v1/event-type/{event_type_name}",
        "v1.event-type.update",
        "200",
        "Update or create an event type",
    ),
    (
        "patch",
        "/api/v1/event-type/{event_type_name}",
        "v1.event-type.patch",
        "200",
        "Partially update an event type",
    ),
    (
        "delete",
        "/api/v1/event-type/{event_type_name}",
        "v1.event-type.delete",
        "204",
        "Archive an event type (expunge=true deletes it)",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/endpoint",
        "v1.endpoint.list",
        "200",
        "List endpoints",
    ),
    (
        "post",
        "/api/v1/app/{app_id}/endpoint",
        "v1.endpoint.create",
        "201",
        "Create an endpoint",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        "v1.endpoint.get",
        "200",
        "Get an endpoint by id or uid",
    ),
    (
        "put",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        "v1.endpoint.update",
        "200",
        "Update or create an endpoint",
    ),
    (
        "patch",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        "v1.endpoint.patch",
        "200",
        "Partially update an endpoint",
    ),
    (
        "delete",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}",
        "v1.endpoint.delete",
        "204",
        "Delete an endpoint",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret",
        "v1.endpoint.get-secret",
        "200",
        "Get the signing secret",
    ),
    (
        "post",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate",
        "v1.endpoint.rotate-secret",
        "200",
        "Rotate the signing secret; the old one signs too for gracePeriodSeconds (default 86400)",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
        "v1.endpoint.get-headers",
        "200",
        "Get custom headers (sensitive ones redacted)",
    ),
    (
        "put",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
        "v1.endpoint.update-headers",
        "204",
        "Replace custom headers",
    ),
    (
        "patch",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers",
        "v1.endpoint.patch-headers",
        "204",
        "Add, change or delete custom headers",
    ),
    (
        "post",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover",
        "v1.endpoint.recover",
        "202",
        "Re-send failed messages since a time",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats",
        "v1.endpoint.get-stats",
        "200",
        "Delivery counts by status",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/msg",
        "v1.message.list",
        "200",
        "List messages, newest first",
    ),
    (
        "post",
        "/api/v1/app/{app_id}/msg",
        "v1.message.create",
        "202",
        "Create a message and fan it out to matching endpoints",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/msg/{msg_id}",
        "v1.message.get",
        "200",
        "Get a message by id or eventId",
    ),
    (
        "delete",
        "/api/v1/app/{app_id}/msg/{msg_id}/content",
        "v1.message.expunge-content",
        "204",
        "Delete a message's payload",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}",
        "v1.message-attempt.list-by-endpoint",
        "200",
        "List attempts to an endpoint",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/attempt/msg/{msg_id}",
        "v1.message-attempt.list-by-msg",
        "200",
        "List attempts of a message",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}",
        "v1.message-attempt.get",
        "200",
        "Get one attempt",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint",
        "v1.message-attempt.list-attempted-destinations",
        "200",
        "Endpoints a message was sent to, with delivery status",
    ),
    (
        "get",
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg",
        "v1.message-attempt.list-attempted-messages",
        "200",
        "Messages sent to an endpoint, with delivery status",
    ),
    (
        "post",
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend",
        "v1.message-attempt.resend",
        "202",
        "Send a message to an endpoint again now",
    ),
    (
        "post",
        "/ingest/{token}",
        "ingest.receive",
        "200",
        "Provider posts a webhook (verified by the source's scheme; any path suffix and query are passed on)",
    ),
    (
        "get",
        "/ingest/api/v1/source",
        "ingest.source.list",
        "200",
        "List sources",
    ),
    (
        "post",
        "/ingest/api/v1/source",
        "ingest.source.create",
        "201",
        "Create a source (type, config, Switchyard settings)",
    ),
    (
        "get",
        "/ingest/api/v1/source/{source_id}",
        "ingest.source.get",
        "200",
        "Get a source by id or uid",
    ),
    (
        "put",
        "/ingest/api/v1/source/{source_id}",
        "ingest.source.upsert",
        "200",
        "Create or replace a source",
    ),
    (
        "delete",
        "/ingest/api/v1/source/{source_id}",
        "ingest.source.delete",
        "204",
        "Delete a source with its destinations and events",
    ),
    (
        "post",
        "/ingest/api/v1/source/{source_id}/token/rotate",
        "ingest.source.rotate-token",
        "200",
        "New ingest URL; the old one works for 48 hours",
    ),
    (
        "post",
        "/ingest/api/v1/source/{source_id}/secret/rotate",
        "ingest.source.rotate-secret",
        "200",
        "New verification secret; the old one verifies for the grace period",
    ),
    (
        "get",
        "/ingest/api/v1/source/{source_id}/stats",
        "ingest.source.stats",
        "200",
        "Accepted, duplicate and rejected requests, with the last rejection reason",
    ),
    (
        "get",
        "/ingest/api/v1/source/{source_id}/endpoint",
        "ingest.endpoint.list",
        "200",
        "List a source's destinations",
    ),
    (
        "post",
        "/ingest/api/v1/source/{source_id}/endpoint",
        "ingest.endpoint.create",
        "201",
        "Add a destination (url, filterTypes with wildcards, payloadFilter, headers, secret)",
    ),
    (
        "get",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}",
        "ingest.endpoint.get",
        "200",
        "Get a destination",
    ),
    (
        "put",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}",
        "ingest.endpoint.upsert",
        "200",
        "Create or replace a destination",
    ),
    (
        "patch",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}",
        "ingest.endpoint.patch",
        "200",
        "Change some fields of a destination",
    ),
    (
        "delete",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}",
        "ingest.endpoint.delete",
        "204",
        "Delete a destination",
    ),
    (
        "get",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/secret",
        "ingest.endpoint.get-secret",
        "200",
        "A destination's signing secret",
    ),
    (
        "post",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/secret/rotate",
        "ingest.endpoint.rotate-secret",
        "200",
        "Rotate a destination's signing secret",
    ),
    (
        "get",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/headers",
        "ingest.endpoint.get-headers",
        "200",
        "A destination's custom headers",
    ),
    (
        "put",
        "/ingest/api/v1/source/{source_id}/endpoint/{endpoint_id}/headers",
        "ingest.endpoint.update-headers",
        "204",
        "Replace a destination's custom headers",
    ),
];

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

pub async fn document() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for (method, path, op_id, status, summary) in OPERATIONS {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "operationId": op_id,
            "summary": summary,
            "parameters": path_params(path),
            "responses": {
                *status: { "description": "Success" },
                "401": { "description": "Missing or invalid token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/HttpError" } } } },
                "404": { "description": "Not found", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/HttpError" } } } },
                "413": { "description": "Body too large", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/HttpError" } } } },
                "422": { "description": "Validation error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/HTTPValidationError" } } } },
            },
        });
        // The ingest route is authenticated by each source's own verifier.
        if *path != "/api/v1/health" && *path != "/ingest/{token}" {
            op["security"] = json!([{ "HTTPBearer": [] }]);
        }
        entry[*method] = op;
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Webhook gateway; the v1 API follows the Svix v1 REST API so Svix SDKs work unchanged.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "HTTPBearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "HttpError": { "type": "object", "required": ["code", "detail"], "properties": { "code": { "type": "string" }, "detail": { "type": "string" } } },
                "HTTPValidationError": { "type": "object", "properties": { "detail": { "type": "array", "items": { "type": "object", "properties": { "loc": { "type": "array", "items": { "type": "string" } }, "msg": { "type": "string" }, "type": { "type": "string" } } } } } },
            },
        },
    }))
}
