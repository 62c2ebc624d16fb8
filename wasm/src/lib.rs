//! JavaScript bindings of pinfold (wasm-bindgen): the cluster codecs, and on wasm32 the
//! light follower ([`api`]) with its WebSocket transport and swarm.
//!
//! Thin by design: each function converts JS values, calls the core, and turns a typed
//! error into a JS `Error` whose message says what to fix.

#[cfg(target_arch = "wasm32")]
pub mod api;
#[cfg(target_arch = "wasm32")]
pub mod error_code;
#[cfg(target_arch = "wasm32")]
mod follower;
#[cfg(target_arch = "wasm32")]
mod idb;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(target_arch = "wasm32")]
mod swarm;
#[cfg(target_arch = "wasm32")]
pub mod websocket;

use pinfold_core::codec::metric::Metric;
use pinfold_core::codec::pubsub::{crdt_topic, DEFAULT_CLUSTER_NAME};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::pin::Pin;
use wasm_bindgen::prelude::*;

/// The pubsub topic of a cluster's CRDT heads (`ipfs-cluster` when no name is given).
#[wasm_bindgen(js_name = clusterTopic)]
pub fn cluster_topic(cluster_name: Option<String>) -> String {
    crdt_topic(cluster_name.as_deref().unwrap_or(DEFAULT_CLUSTER_NAME))
}

/// Validates a cluster secret (64 hex characters or a swarm.key file's text) and returns
/// it normalised to 64 lowercase hex characters.
#[wasm_bindgen(js_name = normalizeClusterSecret)]
pub fn normalize_cluster_secret(secret: &str) -> Result<String, JsError> {
    let parsed = if secret.trim_start().starts_with("/key/") {
        ClusterSecret::from_key_file(secret.as_bytes())
    } else {
        ClusterSecret::from_hex(secret)
    };
    Ok(parsed.map_err(|e| JsError::new(&e.to_string()))?.to_hex())
}

/// Decodes a CRDT state value (protobuf `api.pb.Pin`) into ipfs-cluster's pin JSON.
#[wasm_bindgen(js_name = pinJsonFromStateValue)]
pub fn pin_json_from_state_value(value: &[u8]) -> Result<String, JsError> {
    let pin = Pin::from_state_value(value).map_err(|e| JsError::new(&e.to_string()))?;
    serde_json::to_string(&pin).map_err(|e| JsError::new(&e.to_string()))
}

/// Decodes a `monitor.metrics` message (msgpack `api.Metric`) into the REST API's metric JSON.
#[wasm_bindgen(js_name = metricJsonFromMsgpack)]
pub fn metric_json_from_msgpack(message: &[u8]) -> Result<String, JsError> {
    let metric = Metric::from_msgpack(message).map_err(|e| JsError::new(&e.to_string()))?;
    serde_json::to_string(&metric).map_err(|e| JsError::new(&e.to_string()))
}
