//! The Prometheus endpoint (`observations.metrics`, off by default): `GET /metrics` in the
//! OpenMetrics text format, with ipfs-cluster's metric names (prefix `ipfscluster_`, so
//! existing dashboards keep working), pinfold's own (`pinfold_`), libp2p's (`libp2p_`) and
//! the process's resident memory.
//!
//! ipfs-cluster exports `pins/pin_add` and `pins/pin_add_errors` as counters without the
//! `_total` suffix OpenMetrics requires of counters; they are gauges here, so that the names
//! stay the same. They only grow.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The OpenMetrics text content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the peer records; cheap to clone (every metric is shared).
#[derive(Clone)]
pub struct PeerMetrics {
    /// `ipfscluster_pins`: pins in the shared pinset.
    pub pins: Gauge,
    /// `ipfscluster_pins_pin_queued`, `_pinning`, `_pin_error`: this peer's pin operations.
    pub pin_queued: Gauge,
    pub pinning: Gauge,
    pub pin_error: Gauge,
    /// `ipfscluster_pins_ipfs_pins`: recursive pins on the IPFS daemon.
    pub ipfs_pins: Gauge,
    /// `ipfscluster_pins_pin_add`, `_pin_add_errors`: `pin/add` requests and failures.
    pub pin_add: Gauge,
    pub pin_add_errors: Gauge,
    /// `ipfscluster_informer_disk`: the disk informer's last weight.
    pub informer_disk: Gauge,
    /// `pinfold_peers`: peers with a live ping metric, this one included.
    pub peers: Gauge,
    /// `pinfold_crdt_heads`, `_height`, `_pending_blocks`, `_merged_deltas`.
    pub crdt_heads: Gauge,
    pub crdt_height: Gauge,
    pub crdt_pending_blocks: Gauge,
    pub crdt_merged_deltas: Gauge,
    /// `pinfold_bitswap_wants_received`, `_dropped_messages`, `_refused_streams`: since
    /// the peer started.
    pub bitswap_wants_received: Gauge,
    pub bitswap_dropped_messages: Gauge,
    pub bitswap_refused_streams: Gauge,
    /// `pinfold_psk_rejections_total`: connections closed for not proving the secret.
    pub psk_rejections: Counter,
    /// `process_resident_memory_bytes`.
    pub resident_memory: Gauge,
    /// The swarm's and its behaviours' metrics.
    pub libp2p: Arc<libp2p::metrics::Metrics>,
}

impl PeerMetrics {
    /// Registers every metric in a new registry.
    pub fn new() -> (Self, Registry) {
        let mut registry = Registry::default();
        let metrics = Self {
            pins: Gauge::default(),
            pin_queued: Gauge::default(),
            pinning: Gauge::default(),
            pin_error: Gauge::default(),
            ipfs_pins: Gauge::default(),
            pin_add: Gauge::default(),
            pin_add_errors: Gauge::default(),
            informer_disk: Gauge::default(),
            peers: Gauge::default(),
            crdt_heads: Gauge::default(),
            crdt_height: Gauge::default(),
            crdt_pending_blocks: Gauge::default(),
            crdt_merged_deltas: Gauge::default(),
            bitswap_wants_received: Gauge::default(),
            bitswap_dropped_messages: Gauge::default(),
            bitswap_refused_streams: Gauge::default(),
            psk_rejections: Counter::default(),
            resident_memory: Gauge::default(),
            libp2p: Arc::new(libp2p::metrics::Metrics::new(&mut registry)),
        };
        let cluster = registry.sub_registry_with_prefix("ipfscluster");
        for (name, help, gauge) in [
            ("pins", "Total number of cluster pins", &metrics.pins),
            (
                "pins_pin_queued",
                "Current number of pins queued for pinning",
                &metrics.pin_queued,
            ),
            (
                "pins_pinning",
                "Current number of pins currently pinning",
                &metrics.pinning,
            ),
            (
                "pins_pin_error",
                "Current number of pins in pin_error state",
                &metrics.pin_error,
            ),
            (
                "pins_ipfs_pins",
                "Current number of items pinned on IPFS",
                &metrics.ipfs_pins,
            ),
            (
                "pins_pin_add",
                "Total number of IPFS pin requests",
                &metrics.pin_add,
            ),
            (
                "pins_pin_add_errors",
                "Total number of failed pin requests",
                &metrics.pin_add_errors,
            ),
            (
                "informer_disk",
                "The metric value weight issued by disk informer",
                &metrics.informer_disk,
            ),
        ] {
            cluster.register(name, help, gauge.clone());
        }
        let own = registry.sub_registry_with_prefix("pinfold");
        for (name, help, gauge) in [
            (
                "peers",
                "Cluster peers with a live ping metric, this one included",
                &metrics.peers,
            ),
            ("crdt_heads", "Heads of the CRDT DAG", &metrics.crdt_heads),
            (
                "crdt_height",
                "Greatest height of the CRDT DAG's heads",
                &metrics.crdt_height,
            ),
            (
                "crdt_pending_blocks",
                "DAG blocks known and not yet merged",
                &metrics.crdt_pending_blocks,
            ),
            (
                "crdt_merged_deltas",
                "Deltas merged since the peer started",
                &metrics.crdt_merged_deltas,
            ),
            (
                "bitswap_wants_received",
                "Block wants other peers sent since the peer started",
                &metrics.bitswap_wants_received,
            ),
            (
                "bitswap_dropped_messages",
                "Bitswap messages dropped since the peer started: their peer's queue full, or sending failed twice",
                &metrics.bitswap_dropped_messages,
            ),
            (
                "bitswap_refused_streams",
                "Inbound bitswap streams refused since the peer started, a connection having its most open",
                &metrics.bitswap_refused_streams,
            ),
        ] {
            own.register(name, help, gauge.clone());
        }
        own.register(
            "psk_rejections",
            "Connections closed for not proving the cluster secret (WebRTC, relayed)",
            metrics.psk_rejections.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            metrics.resident_memory.clone(),
        );
        (metrics, registry)
    }

    /// Reads the process's resident memory (Linux; left unchanged elsewhere).
    pub fn refresh_resident_memory(&self) {
        if let Some(bytes) = resident_bytes() {
            self.resident_memory.set(bytes as i64);
        }
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    match encode(&mut text, &registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("could not encode the metrics: {error}"),
        ),
    }
}

/// Binds the endpoint, so that a taken port stops the daemon at start.
pub async fn listen(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("could not listen for Prometheus on {address} (observations.metrics.prometheus_endpoint)")
        })?;
    tracing::info!(%address, "Prometheus metrics at /metrics");
    Ok(listener)
}

/// Serves `GET /metrics` from `registry` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, registry: Registry) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry));
    axum::serve(listener, app).await?;
    Ok(())
}
