//! `GET /api/v1/cluster`: the nodes sharing this database and the partitions
//! each one dispatches (a Switchyard extension; Svix has no equivalent).

use crate::AppState;
use crate::error::ApiResult;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use switchyard_core::timefmt::format_ms;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster))
}

/// This node's view of the cluster.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ClusterOut {
    /// The node that answered.
    node_id: String,
    /// How many partitions deliveries are spread over.
    partitions: u16,
    /// How long a node's lease on its partitions lasts without a heartbeat.
    lease_ttl_ms: u64,
    /// How many partitions the answering node dispatches now.
    owned_partitions: usize,
    nodes: Vec<NodeOut>,
}

/// A node that has a heartbeat on record.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NodeOut {
    node_id: String,
    /// Where the node serves its API.
    address: String,
    /// Whether its last heartbeat is within the lease TTL.
    live: bool,
    #[schema(format = DateTime)]
    started_at: String,
    #[schema(format = DateTime)]
    last_heartbeat_at: String,
    partition_count: usize,
    /// The partitions whose lease it holds.
    partitions: Vec<u16>,
}

/// The nodes sharing this database and the partitions each one dispatches.
#[utoipa::path(get, path = "/api/v1/cluster", operation_id = "v1.cluster.get",
    responses((status = 200, description = "The cluster as this node sees it", body = ClusterOut)))]
async fn cluster(State(state): State<AppState>) -> ApiResult<Json<ClusterOut>> {
    let now = state.engine.now_ms();
    let config = state.engine.cluster_config();
    let ttl = config.lease_ttl.as_millis() as u64;
    let nodes = state.engine.cluster_nodes(now).await?;
    let nodes = nodes
        .into_iter()
        .map(|n| NodeOut {
            live: n.heartbeat_at + ttl >= now,
            started_at: format_ms(n.started_at),
            last_heartbeat_at: format_ms(n.heartbeat_at),
            partition_count: n.partitions.len(),
            node_id: n.node_id,
            address: n.address,
            partitions: n.partitions,
        })
        .collect();
    Ok(Json(ClusterOut {
        node_id: config.node_id.clone(),
        partitions: switchyard_core::PARTITIONS,
        lease_ttl_ms: ttl,
        owned_partitions: state.engine.owned_partitions().len(),
        nodes,
    }))
}
