//! `GET /api/v1/cluster`: the nodes sharing this database and the partitions
//! each one dispatches (a Switchyard extension; Svix has no equivalent).

use crate::AppState;
use crate::error::ApiResult;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use switchyard_core::timefmt::{format_ms, now_ms};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/cluster", get(cluster))
}

async fn cluster(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let now = now_ms();
    let config = state.engine.cluster_config();
    let ttl = config.lease_ttl.as_millis() as u64;
    let nodes = state.engine.cluster_nodes(now).await?;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            json!({
                "nodeId": n.node_id,
                "address": n.address,
                "live": n.heartbeat_at + ttl >= now,
                "startedAt": format_ms(n.started_at),
                "lastHeartbeatAt": format_ms(n.heartbeat_at),
                "partitionCount": n.partitions.len(),
                "partitions": n.partitions,
            })
        })
        .collect();
    Ok(Json(json!({
        "nodeId": config.node_id,
        "partitions": switchyard_core::PARTITIONS,
        "leaseTtlMs": ttl,
        "ownedPartitions": state.engine.owned_partitions().len(),
        "nodes": nodes,
    })))
}
