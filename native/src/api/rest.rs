//! The REST API, on ipfs-cluster v1.1.6's routes, query options and JSON shapes: `/id`,
//! `/version`, `/peers` (GET, DELETE `/peers/{id}`), `/pins` (with `filter`, `local`,
//! `cids`), `/pins/{cid}` (GET, POST with ipfs-cluster's pin options, DELETE), path pins
//! (`/pins/{ipfs|ipns|ipld}/{path}`), `/pins/{cid}/recover`, `/pins/recover`, `/add`,
//! `/allocations`, `/allocations/{cid}`, `/health`, `/health/graph`, `/health/alerts`,
//! `/health/bandwidth`,
//! `/monitor/metrics`, `/monitor/metrics/{name}` and `/token`, plus `/state/crdt` (heads,
//! height, sync progress) and, when it is on, `/follow/template.json` for followers. Lists stream one JSON object per line, page by page, so a million
//! pins never sit in memory at once. Statuses are the cluster's (every peer asked over the
//! peer requests), or this peer's own with `?local=true`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cid::Cid;
use futures::stream::{self, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use pinfold_core::codec::cluster_dag;
use pinfold_core::pin::UnixTime;
use pinfold_core::pin::{Pin, PinType};
use pinfold_core::repo_gc::GlobalRepoGc;
use pinfold_core::rest::{ConnectGraph, ErrorBody, Id, IpfsId, PinOptions, Version};
use pinfold_core::tracker::{DaemonPins, GlobalPinInfo, PinInfo, StatusFilter};
use serde_json::json;

use crate::api::auth::Credentials;
use crate::config::{RestApiSection, ServiceConfig};
use crate::peer::{Command, CommandError, DaemonAnswer, PeerHandle, PAGE};

/// The RPC protocol of Go ipfs-cluster v1.1.6 (`version.RPCProtocol`), which `/id`
/// reports: it is not tied to the release.
pub const RPC_PROTOCOL_VERSION: &str = "/ipfscluster/1.0/rpc";

/// An error in ipfs-cluster's shape: `{"code": N, "message": "..."}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    pub(crate) fn bad_gateway(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            message: message.into(),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let status = match error {
            CommandError::ReadOnly => StatusCode::FORBIDDEN,
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CommandError::Store(_) | CommandError::Stopped => StatusCode::INTERNAL_SERVER_ERROR,
            CommandError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self {
            status,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                code: self.status.as_u16(),
                message: self.message,
            }),
        )
            .into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn parse_cid(text: &str) -> ApiResult<Cid> {
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("error decoding Cid {text:?}: {e}")))
}

/// The API's routes over a peer, behind `credentials` (open when there are none), with the
/// CORS policy of `config`, and the follower template when it serves one.
pub fn router(peer: PeerHandle, credentials: Credentials, config: &ServiceConfig) -> Router {
    let peer_for_dashboard = peer.clone();
    let token = Router::new()
        .route("/token", post(crate::api::auth::token))
        .with_state(credentials.clone());
    // Served without credentials: followers need nothing but its URL.
    let template: Router = if config.api.restapi.serve_follow_template {
        Router::new()
            .route("/follow/template.json", get(follow_template))
            .with_state((peer.clone(), Arc::new(config.for_follower())))
    } else {
        Router::new()
    };
    Router::new()
        .route("/id", get(id))
        .route("/version", get(version))
        .route("/peers", get(peers).post(add_peer))
        .route("/peers/{peer}", delete(remove_peer))
        .route("/pins", get(list_statuses))
        .route("/pins/recover", post(recover_all))
        .route("/pins/{cid}", get(status).post(pin).delete(unpin))
        .route("/pins/{cid}/recover", post(recover))
        .route("/pins/ipfs/{*path}", post(pin_path).delete(unpin_path))
        .route("/pins/ipns/{*path}", post(pin_path).delete(unpin_path))
        .route("/pins/ipld/{*path}", post(pin_path).delete(unpin_path))
        .route("/add", post(super::add::add))
        .route("/allocations", get(allocations))
        .route("/allocations/{cid}", get(allocation))
        .route("/health", get(health))
        .route("/health/graph", get(graph))
        .route("/ipfs/gc", post(repo_gc))
        .route("/health/alerts", get(alerts))
        .route("/health/bandwidth", get(bandwidth))
        .route("/monitor/metrics", get(metric_names))
        .route("/monitor/metrics/{name}", get(metrics))
        .route("/state/crdt", get(crdt_state))
        .route("/state/raft", get(raft_state))
        .with_state(peer)
        .merge(token)
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            crate::api::auth::require,
        ))
        .merge(template)
        .merge(dashboard(peer_for_dashboard, config))
        .layer(cors(&config.api.restapi))
}

/// Where the dashboard is served.
pub const DASHBOARD_PATH: &str = "/ui/";

/// The built dashboard at `/ui/` and what it needs to join this peer's swarm at
/// `/ui/connect.json`, both without credentials; empty when `dashboard_dir` is unset.
fn dashboard(peer: PeerHandle, config: &ServiceConfig) -> Router {
    let Some(dir) = &config.api.restapi.dashboard_dir else {
        return Router::new();
    };
    let files = tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true);
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::permanent(DASHBOARD_PATH) }),
        )
        .route("/ui/connect.json", get(dashboard_connect))
        .nest_service("/ui/", files)
        .with_state((peer, Arc::new(config.clone())))
}

/// The dashboard's connection defaults: this peer's addresses a browser can dial
/// (WebSocket and webrtc-direct), the cluster name and whom to trust. Never the secret.
async fn dashboard_connect(
    State((peer, config)): State<(PeerHandle, Arc<ServiceConfig>)>,
) -> ApiResult<Json<serde_json::Value>> {
    let info = peer.ask(|reply| Command::Info { reply }).await?;
    let browser_dialable = |address: &Multiaddr| {
        address
            .iter()
            .any(|p| matches!(p, Protocol::Ws(_) | Protocol::WebRTCDirect))
    };
    let bootstrap: Vec<String> = info
        .addresses
        .iter()
        .filter(|a| browser_dialable(a))
        .map(|a| a.to_string())
        .collect();
    let configured = &config.consensus.crdt.trusted_peers;
    let trusted: Vec<String> = if configured.iter().any(|p| p == "*") {
        vec!["*".to_owned()]
    } else {
        let mut peers = configured.clone();
        peers.push(info.id.to_string());
        peers
    };
    Ok(Json(json!({
        "cluster": config.consensus.crdt.cluster_name,
        "peer": info.id.to_string(),
        "peername": info.peername,
        "bootstrap": bootstrap,
        "trusted_peers": trusted,
    })))
}

/// The configuration a `pinfold follow` follower runs with: this cluster's, made a
/// follower's, with this peer's swarm addresses to join through.
async fn follow_template(
    State((peer, template)): State<(PeerHandle, Arc<ServiceConfig>)>,
) -> ApiResult<Response> {
    let info = peer.ask(|reply| Command::Info { reply }).await?;
    let mut template = (*template).clone();
    template.cluster.peer_addresses = info.addresses;
    Ok(Json(template).into_response())
}

/// ipfs-cluster's CORS settings as a layer. A `*` origin with credentials allowed answers
/// with the request's own origin, as browsers accept no wildcard then.
fn cors(config: &RestApiSection) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let values = |texts: &[String]| -> Vec<axum::http::HeaderValue> {
        texts.iter().filter_map(|t| t.parse().ok()).collect()
    };
    let origins = if config.cors_allowed_origins.iter().any(|o| o == "*") {
        if config.cors_allow_credentials {
            AllowOrigin::mirror_request()
        } else {
            AllowOrigin::any()
        }
    } else {
        AllowOrigin::list(values(&config.cors_allowed_origins))
    };
    let methods: Vec<axum::http::Method> = config
        .cors_allowed_methods
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    let headers: Vec<header::HeaderName> = config
        .cors_allowed_headers
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    let exposed: Vec<header::HeaderName> = config
        .cors_exposed_headers
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(exposed)
        .allow_credentials(config.cors_allow_credentials)
        .max_age(config.cors_max_age.0)
}

/// Serves the API until the listener fails, over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    peer: PeerHandle,
    credentials: Credentials,
    config: &ServiceConfig,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let app = router(peer, credentials, config);
    crate::api::tls::serve(listener, app, tls).await
}

async fn id(State(peer): State<PeerHandle>) -> ApiResult<Json<Id>> {
    Ok(Json(own_id(&peer).await?))
}

/// This peer's `/id`.
pub(crate) async fn own_id(peer: &PeerHandle) -> ApiResult<Id> {
    let info = peer.ask(|reply| Command::Info { reply }).await?;
    let strings = |items: &[Multiaddr]| items.iter().map(Multiaddr::to_string).collect();
    Ok(Id {
        id: info.id.to_string(),
        addresses: strings(&info.addresses),
        cluster_peers: info.cluster_peers.iter().map(PeerId::to_string).collect(),
        cluster_peers_addresses: strings(&info.cluster_peers_addresses),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rpc_protocol_version: RPC_PROTOCOL_VERSION.to_owned(),
        ipfs: IpfsId {
            id: info
                .ipfs
                .as_ref()
                .map(|id| id.peer.to_string())
                .unwrap_or_default(),
            addresses: info
                .ipfs
                .as_ref()
                .map(|id| strings(&id.addresses))
                .unwrap_or_default(),
            error: info.ipfs_error.clone().unwrap_or_default(),
        },
        peername: info.peername,
        ..Id::default()
    })
}

async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// ipfs-cluster's trailer for an error that cut a streamed list short.
const STREAM_ERROR: &str = "X-Stream-Error";

/// A page of a streamed list: its lines and the cursor of the next page (`None` at the end).
type Page<C> = ApiResult<(Vec<Vec<u8>>, Option<C>)>;

/// A streamed list, one JSON value per line, read page by page through `fetch(cursor)`
/// from `first` on, answered as [`stream_lines`] does.
async fn streamed<C, F, Fut>(first: C, fetch: F) -> Response
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Page<C>> + Send + 'static,
{
    let fetch = Arc::new(fetch);
    let lines = stream::unfold(Some(first), move |cursor: Option<C>| {
        let fetch = fetch.clone();
        async move {
            let cursor = cursor?;
            Some(match fetch(cursor).await {
                Ok((lines, next)) => (
                    stream::iter(lines.into_iter().map(Ok).collect::<Vec<_>>()),
                    next,
                ),
                Err(error) => (stream::iter(vec![Err(error)]), None),
            })
        }
    })
    .flatten();
    stream_lines(lines).await
}

/// A streamed answer of lines, as ipfs-cluster's API gives one: 204 with no body when
/// there are none, the error answer when the first fails, else [`lines_with_trailer`].
pub(crate) async fn stream_lines(
    lines: impl futures::Stream<Item = ApiResult<Vec<u8>>> + Send + 'static,
) -> Response {
    let mut lines = Box::pin(lines);
    match lines.next().await {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(Err(error)) => error.into_response(),
        Some(Ok(first)) => {
            lines_with_trailer(stream::once(std::future::ready(Ok(first))).chain(lines))
        }
    }
}

/// 200 and `lines` as they come, ended by the `X-Stream-Error` trailer: empty when every
/// line came, else why the rest did not.
pub(crate) fn lines_with_trailer(
    lines: impl futures::Stream<Item = ApiResult<Vec<u8>>> + Send + 'static,
) -> Response {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, HeaderValue};
    use http_body::Frame;
    let lines = Box::pin(lines);
    let trailer = |error: &str| {
        let value = HeaderValue::from_str(&error.replace(['\r', '\n'], " "))
            .unwrap_or_else(|_| HeaderValue::from_static("internal error"));
        let mut trailers = HeaderMap::new();
        trailers.insert(STREAM_ERROR, value);
        Frame::trailers(trailers)
    };
    // Each line as a data frame until one fails; then, or at the end, the trailer.
    let frames = stream::unfold(Some(lines), move |lines| async move {
        let mut lines = lines?;
        Some(match lines.next().await {
            Some(Ok(line)) => (Frame::data(Bytes::from(line)), Some(lines)),
            Some(Err(error)) => {
                let error = error.message;
                tracing::warn!(%error, "a streamed answer was cut short");
                (trailer(&error), None)
            }
            None => (trailer(""), None),
        })
    });
    let frames = frames.map(Ok::<_, std::convert::Infallible>);
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::TRAILER, STREAM_ERROR),
        ],
        Body::new(http_body_util::StreamBody::new(frames)),
    )
        .into_response()
}

pub(crate) fn line(value: &impl serde::Serialize) -> ApiResult<Vec<u8>> {
    let mut bytes = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("could not write a line: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The cluster's peers, each as its `/id` shows it, asked over Go ipfs-cluster's RPC
/// (`Cluster.ID`) as Go peers ask; a peer that does not answer is listed with its name
/// and the error.
pub(crate) async fn peer_ids(peer: &PeerHandle) -> ApiResult<Vec<Id>> {
    let peers = peer.ask(|reply| Command::Peers { reply }).await?;
    let own = own_id(peer).await?;
    let ids = peers.iter().map(|p| {
        let own = own.clone();
        async move {
            if p.id == peer.local {
                return own;
            }
            peer.rpc.id(p.id).await.unwrap_or_else(|error| Id {
                id: p.id.to_string(),
                peername: p.name.clone(),
                error,
                ..Id::default()
            })
        }
    });
    Ok(futures::future::join_all(ids).await)
}

async fn peers(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    let lines: ApiResult<Vec<Vec<u8>>> = peer_ids(&peer)
        .await
        .and_then(|ids| ids.iter().map(line).collect());
    let page = lines.map(|lines| (lines, None));
    Ok(streamed((), move |()| std::future::ready(page.clone())).await)
}

/// Adds a peer to the cluster (`{"peer_id": …}`), as Go's `POST /peers`: under Raft it
/// becomes a Raft peer once the cluster commits it (under CRDT consensus the peerset is
/// whoever pings). The answer is the added peer's `/id`.
async fn add_peer(State(peer): State<PeerHandle>, body: axum::body::Bytes) -> ApiResult<Json<Id>> {
    #[derive(serde::Deserialize)]
    struct AddPeer {
        peer_id: String,
    }
    let added: AddPeer = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("error decoding request body"))?;
    let id: PeerId = added
        .peer_id
        .parse()
        .map_err(|_| ApiError::bad_request("error decoding peer_id"))?;
    peer.ask(|reply| Command::AddPeer { peer: id, reply })
        .await??;
    let mut info = peer.rpc.id(id).await.unwrap_or_else(|error| Id {
        id: id.to_string(),
        error,
        ..Id::default()
    });
    if !info.cluster_peers.contains(&peer.local.to_string()) {
        info.cluster_peers.push(peer.local.to_string());
    }
    Ok(Json(info))
}

/// Removes a peer from the cluster: its pins are re-allocated to the others.
async fn remove_peer(
    State(peer): State<PeerHandle>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: PeerId = id
        .parse()
        .map_err(|e| ApiError::bad_request(format!("error decoding peer ID {id:?}: {e}")))?;
    peer.ask(|reply| Command::RemovePeer { peer: id, reply })
        .await??;
    Ok(StatusCode::NO_CONTENT)
}

/// The daemon's pin list, for status listings.
pub(crate) async fn daemon_pins(peer: &PeerHandle) -> ApiResult<Arc<DaemonPins>> {
    match &peer.ipfs {
        Some(ipfs) => ipfs
            .pin_ls_all("recursive")
            .await
            .map(Arc::new)
            .map_err(|e| ApiError::bad_gateway(e.to_string())),
        None => Ok(Arc::new(DaemonPins::new())),
    }
}

/// ipfs-cluster's `local` option: only this peer's view instead of every peer's.
fn local_only(query: &HashMap<String, String>) -> ApiResult<bool> {
    match query.get("local").map(String::as_str) {
        None | Some("false") | Some("") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "parameter local: {other:?} is not true or false"
        ))),
    }
}

/// The cluster's views of `local`'s CIDs: this peer's, merged with every other peer's
/// (after each recovered them, with `recover`).
pub(crate) async fn with_peer_views(
    peer: &PeerHandle,
    local: Vec<PinInfo>,
    recover: bool,
) -> ApiResult<Vec<GlobalPinInfo>> {
    let cids: Vec<Cid> = local.iter().map(|i| i.cid).collect();
    let others = peer
        .ask(|reply| Command::PeerStatuses {
            cids,
            recover,
            reply,
        })
        .await?;
    let mut globals: Vec<GlobalPinInfo> = local.into_iter().map(GlobalPinInfo::new).collect();
    let index: HashMap<Cid, usize> = globals
        .iter()
        .enumerate()
        .map(|(n, g)| (g.cid, n))
        .collect();
    for info in others {
        if let Some(&n) = index.get(&info.cid) {
            globals[n].add(info);
        }
    }
    Ok(globals)
}

/// The statuses of `cids` (each with the daemon's answer for it): this peer's alone when
/// `local`, else the cluster's; `recover` re-queues pins in error first.
pub(crate) async fn cluster_statuses(
    peer: &PeerHandle,
    cids: Vec<(Cid, DaemonAnswer)>,
    local: bool,
    recover: bool,
) -> ApiResult<Vec<GlobalPinInfo>> {
    let infos = peer
        .ask(|reply| Command::Status {
            cids,
            recover,
            reply,
        })
        .await?;
    if local {
        Ok(infos.into_iter().map(GlobalPinInfo::new).collect())
    } else {
        with_peer_views(peer, infos, recover).await
    }
}

/// The daemon's answers for `cids`, from its pin list.
pub(crate) fn answers_from(daemon: &DaemonPins, cids: &[Cid]) -> Vec<(Cid, DaemonAnswer)> {
    cids.iter().map(|c| (*c, Ok(daemon.get(c)))).collect()
}

/// ipfs-cluster's `filter` option (all statuses when absent).
fn status_filter(query: &HashMap<String, String>) -> ApiResult<StatusFilter> {
    match query.get("filter") {
        Some(text) if !text.is_empty() => {
            StatusFilter::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        _ => Ok(StatusFilter::ALL),
    }
}

/// A comma-separated list of CIDs (ipfs-cluster's `cids` option), without repeats.
fn cid_list(text: &str) -> ApiResult<Vec<Cid>> {
    let mut seen = std::collections::HashSet::new();
    let mut cids = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let cid = parse_cid(part)?;
        if seen.insert(cid) {
            cids.push(cid);
        }
    }
    Ok(cids)
}

async fn list_statuses(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let filter = status_filter(&query)?;
    let local = local_only(&query)?;
    if let Some(text) = query.get("cids").filter(|t| !t.trim().is_empty()) {
        let cids = Arc::new(cid_list(text)?);
        let daemon = daemon_pins(&peer).await?;
        return Ok(streamed(0usize, move |start| {
            let (peer, cids, daemon) = (peer.clone(), cids.clone(), daemon.clone());
            async move {
                let end = (start + PAGE).min(cids.len());
                let globals = cluster_statuses(
                    &peer,
                    answers_from(&daemon, &cids[start..end]),
                    local,
                    false,
                )
                .await?;
                let lines = globals
                    .iter()
                    .filter(|g| g.matches(filter))
                    .map(line)
                    .collect::<ApiResult<Vec<_>>>()?;
                Ok((lines, (end < cids.len()).then_some(end)))
            }
        })
        .await);
    }
    // Cluster-wide, a pin is listed when any peer's status passes the filter, so each
    // page is read whole and filtered once every view is in.
    let page_filter = if local { filter } else { StatusFilter::ALL };
    let daemon = if page_filter.needs_daemon_pins() {
        daemon_pins(&peer).await?
    } else {
        Arc::new(DaemonPins::new())
    };
    Ok(streamed(None, move |after| {
        let peer = peer.clone();
        let daemon = daemon.clone();
        async move {
            let (infos, next) = status_page(&peer, after, daemon, page_filter).await?;
            let globals = if local {
                infos.into_iter().map(GlobalPinInfo::new).collect()
            } else {
                with_peer_views(&peer, infos, false).await?
            };
            let lines = globals
                .iter()
                .filter(|g| local || g.matches(filter))
                .map(line)
                .collect::<ApiResult<Vec<_>>>()?;
            Ok((lines, next.map(Some)))
        }
    })
    .await)
}

/// This peer's statuses of a page of the pinset after `after`, those passing `filter`,
/// with the cursor of the next page.
pub(crate) async fn status_page(
    peer: &PeerHandle,
    after: Option<Cid>,
    daemon: Arc<DaemonPins>,
    filter: StatusFilter,
) -> Result<(Vec<PinInfo>, Option<Cid>), CommandError> {
    peer.ask(|reply| Command::Statuses {
        after,
        daemon,
        filter,
        reply,
    })
    .await
}

/// The daemon's answer for one CID, as the tracker takes it.
pub(crate) async fn daemon_status(peer: &PeerHandle, cid: &Cid) -> DaemonAnswer {
    match &peer.ipfs {
        Some(ipfs) => ipfs
            .pin_ls(cid, "recursive")
            .await
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// One CID's status (or its status after recovering it), the cluster's or this peer's.
async fn one_status(
    peer: &PeerHandle,
    cid: &str,
    query: &HashMap<String, String>,
    recover: bool,
) -> ApiResult<Response> {
    let cid = parse_cid(cid)?;
    let local = local_only(query)?;
    let daemon = daemon_status(peer, &cid).await;
    let global = cluster_statuses(peer, vec![(cid, daemon)], local, recover)
        .await?
        .pop()
        .expect("one CID in, one view out");
    Ok(Json(global).into_response())
}

async fn status(
    State(peer): State<PeerHandle>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    one_status(&peer, &cid, &query, false).await
}

async fn recover(
    State(peer): State<PeerHandle>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    one_status(&peer, &cid, &query, true).await
}

/// Recovers every pin in error (on any peer, or on this one with `local`), streaming the
/// statuses of those recovered.
async fn recover_all(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let local = local_only(&query)?;
    let daemon = daemon_pins(&peer).await?;
    let page_filter = if local {
        StatusFilter::ERROR
    } else {
        StatusFilter::ALL
    };
    Ok(streamed(None, move |after| {
        let peer = peer.clone();
        let daemon = daemon.clone();
        async move {
            let (infos, next) = status_page(&peer, after, daemon.clone(), page_filter).await?;
            let in_error: Vec<Cid> = if local {
                infos.iter().map(|i| i.cid).collect()
            } else {
                with_peer_views(&peer, infos, false)
                    .await?
                    .iter()
                    .filter(|g| g.matches(StatusFilter::ERROR))
                    .map(|g| g.cid)
                    .collect()
            };
            let recovered = if in_error.is_empty() {
                Vec::new()
            } else {
                cluster_statuses(&peer, answers_from(&daemon, &in_error), local, true).await?
            };
            let lines = recovered.iter().map(line).collect::<ApiResult<Vec<_>>>()?;
            Ok((lines, next.map(Some)))
        }
    })
    .await)
}

/// A pin of `cid` from ipfs-cluster's pin options in `query`, taken at `now` (the
/// cluster's time).
pub(crate) fn pin_from_query(
    cid: Cid,
    query: &HashMap<String, String>,
    now: UnixTime,
) -> ApiResult<Pin> {
    let options = PinOptions::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(options.to_pin(cid, now))
}

/// Pins `pin` through the peer.
pub(crate) async fn pin_in_cluster(peer: &PeerHandle, pin: Pin) -> ApiResult<Pin> {
    let pin = Box::new(pin);
    Ok(peer.ask(|reply| Command::AddPin { pin, reply }).await??)
}

async fn pin(
    State(peer): State<PeerHandle>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    let pin = pin_from_query(cid, &query, peer.clock.now())?;
    Ok(Json(pin_in_cluster(&peer, pin).await?).into_response())
}

/// The CID an `/ipfs|ipns|ipld/...` path of a path-pin route ends at, resolved by the daemon.
async fn resolve_path(peer: &PeerHandle, uri: &axum::http::Uri) -> ApiResult<Cid> {
    let raw = uri
        .path()
        .strip_prefix("/pins")
        .expect("path routes are under /pins");
    let path = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|e| ApiError::bad_request(format!("{raw} is not UTF-8 once decoded: {e}")))?;
    let path = path.as_ref();
    let ipfs = peer.ipfs.as_ref().ok_or_else(|| {
        ApiError::bad_request("this peer has no IPFS daemon to resolve paths with; pin a CID")
    })?;
    ipfs.resolve(path).await.map_err(|e| match e {
        crate::ipfs::IpfsError::Daemon(message) => {
            ApiError::bad_request(format!("could not resolve {path}: {message}"))
        }
        other => ApiError::bad_gateway(other.to_string()),
    })
}

async fn pin_path(
    State(peer): State<PeerHandle>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let mut pin = pin_from_query(Cid::default(), &query, peer.clock.now())?;
    pin.cid = resolve_path(&peer, &uri).await?;
    Ok(Json(pin_in_cluster(&peer, pin).await?).into_response())
}

async fn unpin_path(State(peer): State<PeerHandle>, uri: axum::http::Uri) -> ApiResult<Response> {
    let cid = resolve_path(&peer, &uri).await?;
    Ok(Json(unpin_in_cluster(&peer, cid).await?).into_response())
}

async fn unpin(State(peer): State<PeerHandle>, Path(cid): Path<String>) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    Ok(Json(unpin_in_cluster(&peer, cid).await?).into_response())
}

/// Unpins `cid` from the cluster. The root of a sharded add (a meta pin) goes with its
/// cluster DAG and shards, whose CIDs are read from the cluster DAG's root block through
/// this peer's daemon, as Go's unpin reads them.
pub(crate) async fn unpin_in_cluster(peer: &PeerHandle, cid: Cid) -> ApiResult<Pin> {
    let pin = peer.ask(|reply| Command::GetPin { cid, reply }).await?;
    let cluster_dag_links = match pin {
        Some(pin) if pin.pin_type == PinType::Meta => {
            let cluster_dag = pin.reference.ok_or_else(|| {
                ApiError::bad_request(format!("the meta pin {cid} references no cluster DAG"))
            })?;
            let ipfs = peer.ipfs.as_ref().ok_or_else(|| {
                ApiError::bad_request(
                    "unpinning sharded content reads its cluster DAG, and this peer has no IPFS daemon: ask a peer that has one",
                )
            })?;
            let block = ipfs.block_get(&cluster_dag).await.map_err(|e| {
                ApiError::bad_gateway(format!("error reading clusterDAG block from ipfs: {e}"))
            })?;
            cluster_dag::links(&block).map_err(|e| {
                ApiError::bad_gateway(format!("error parsing clusterDAG block: {e}"))
            })?
        }
        _ => Vec::new(),
    };
    Ok(peer
        .ask(|reply| Command::RemovePin {
            cid,
            cluster_dag_links,
            reply,
        })
        .await??)
}

/// `/allocations`' `filter`: the pin types listed, comma-separated (`pin`, `meta-pin`,
/// `clusterdag-pin`, `shard-pin`, `all`); `None` lists every type, as an absent filter.
fn pin_type_filter(query: &HashMap<String, String>) -> ApiResult<Option<Vec<PinType>>> {
    let mut types = Vec::new();
    for name in query.get("filter").map_or("", String::as_str).split(',') {
        match name.trim() {
            "" | "all" => return Ok(None),
            name => match PinType::from_name(name) {
                PinType::Bad => return Err(ApiError::bad_request("invalid filter value")),
                pin_type => types.push(pin_type),
            },
        }
    }
    Ok(Some(types))
}

async fn allocations(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let types = pin_type_filter(&query)?;
    Ok(streamed(None, move |after| {
        let peer = peer.clone();
        let types = types.clone();
        async move {
            let pins = peer
                .ask(|reply| Command::Pins {
                    after,
                    limit: PAGE,
                    reply,
                })
                .await?;
            let next = (pins.len() == PAGE)
                .then(|| pins.last().map(|p| Some(p.cid)))
                .flatten();
            let lines = pins
                .iter()
                .filter(|pin| types.as_ref().is_none_or(|t| t.contains(&pin.pin_type)))
                .map(line)
                .collect::<ApiResult<Vec<_>>>()?;
            Ok((lines, next))
        }
    })
    .await)
}

async fn allocation(
    State(peer): State<PeerHandle>,
    Path(cid): Path<String>,
) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    match peer.ask(|reply| Command::GetPin { cid, reply }).await? {
        Some(pin) => Ok(Json(pin).into_response()),
        None => Err(CommandError::NotFound(cid).into()),
    }
}

/// Where this peer's CRDT stands (pinfold's own): heads, height, blocks pending and in flight,
/// merged, pins, whether it is synced, and the snapshot it started from.
async fn crdt_state(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    let info = peer.ask(|reply| Command::Sync { reply }).await?;
    Ok(Json(info).into_response())
}

/// Where Raft stands at this peer: the leader, the term and the Raft peers.
async fn raft_state(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    match peer.ask(|reply| Command::RaftStatus { reply }).await? {
        Some(status) => Ok(Json(status).into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "this peer runs CRDT consensus (see /state/crdt)".into(),
        }),
    }
}

/// Liveness: the API answers.
async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// ipfs-cluster's `POST /ipfs/gc`: a garbage collection of every peer's IPFS daemon's
/// repository (only this peer's with `local=true`), at once, as a `GlobalRepoGC`. A peer that
/// fails or does not answer is listed with its error.
async fn repo_gc(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<GlobalRepoGc>> {
    Ok(Json(cluster_repo_gc(&peer, local_only(&query)?).await?))
}

/// A garbage collection of every peer's IPFS daemon's repository (only this peer's when
/// `local`), at once. A peer that fails or does not answer is listed with its error.
pub(crate) async fn cluster_repo_gc(peer: &PeerHandle, local: bool) -> ApiResult<GlobalRepoGc> {
    let info = peer.ask(|reply| Command::Info { reply }).await?;
    let own = crate::peer::repo_gc(peer.ipfs.as_ref(), peer.local, info.peername);
    let (own, others) = if local {
        (own.await, Vec::new())
    } else {
        let others = peer.ask(|reply| Command::PeersRepoGc { reply });
        let (own, others) = tokio::join!(own, others);
        (own, others?)
    };
    let mut global = GlobalRepoGc::default();
    for gc in others.into_iter().chain([own]) {
        global.add(gc);
    }
    Ok(global)
}

/// ipfs-cluster's connectivity graph: which cluster peers each peer is connected to, which
/// peers each IPFS daemon is connected to, and whose writes this peer trusts.
async fn graph(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    use std::collections::BTreeMap;
    let own_ipfs_peers = match &peer.ipfs {
        Some(ipfs) => ipfs.swarm_peers().await.map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    };
    let links = peer.ask(|reply| Command::Connections { reply }).await?;
    let peers = peer.ask(|reply| Command::Peers { reply }).await?;
    let mut names = BTreeMap::new();
    let mut trust = BTreeMap::new();
    for p in &peers {
        names.insert(p.id.to_string(), p.name.clone());
        trust.insert(p.id.to_string(), p.trusted);
    }
    let (mut cluster_links, mut ipfs_links, mut cluster_to_ipfs) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (id, connections) in links {
        let connections = match connections {
            Ok(mut c) if id == peer.local => match &own_ipfs_peers {
                Ok(ipfs_peers) => {
                    c.ipfs_peers = ipfs_peers.clone();
                    c
                }
                Err(error) => {
                    tracing::debug!(%error, "the graph lacks this daemon's links");
                    c
                }
            },
            Ok(c) => c,
            Err(error) => {
                tracing::debug!(peer = %id, %error, "the graph lacks a peer's links");
                continue;
            }
        };
        let strings = |ids: &[PeerId]| ids.iter().map(PeerId::to_string).collect::<Vec<_>>();
        cluster_links.insert(id.to_string(), strings(&connections.cluster_peers));
        if let Some(ipfs_id) = connections.ipfs_id {
            cluster_to_ipfs.insert(id.to_string(), ipfs_id.to_string());
            ipfs_links.insert(ipfs_id.to_string(), strings(&connections.ipfs_peers));
        }
    }
    Ok(Json(ConnectGraph {
        cluster_id: peer.local.to_string(),
        id_to_peername: names,
        ipfs_links,
        cluster_links,
        cluster_trust_links: trust,
        cluster_to_ipfs,
    })
    .into_response())
}

/// The bytes this peer's swarm sent and received by libp2p protocol, with their rates
/// (Go's `BandwidthByProtocol`).
async fn bandwidth(State(peer): State<PeerHandle>) -> Response {
    Json(peer.bandwidth.by_protocol()).into_response()
}

/// The latest alerts this peer raised (metrics that expired), newest first.
async fn alerts(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    let alerts = peer.ask(|reply| Command::Alerts { reply }).await?;
    Ok(Json(alerts).into_response())
}

/// The names of the metrics this peer holds live ones of.
async fn metric_names(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    let metrics = peer
        .ask(|reply| Command::Metrics {
            name: String::new(),
            reply,
        })
        .await?;
    let names: std::collections::BTreeSet<String> = metrics.into_iter().map(|m| m.name).collect();
    Ok(Json(names).into_response())
}

async fn metrics(State(peer): State<PeerHandle>, Path(name): Path<String>) -> ApiResult<Response> {
    let metrics = peer.ask(|reply| Command::Metrics { name, reply }).await?;
    Ok(Json(metrics).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_failed_page_ends_the_list_with_the_stream_error_trailer() {
        let cid: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
            .parse()
            .unwrap();
        let response = streamed(None, move |after| {
            std::future::ready(match after {
                None => Ok((vec![b"{\"n\":1}\n".to_vec()], Some(Some(cid)))),
                Some(_) => Err(CommandError::Stopped.into()),
            })
        })
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::TRAILER], STREAM_ERROR);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers[STREAM_ERROR], CommandError::Stopped.to_string());
        assert_eq!(collected.to_bytes().as_ref(), b"{\"n\":1}\n");
    }

    /// Go sets the trailer, empty, on a whole list too.
    #[tokio::test]
    async fn a_complete_list_ends_with_an_empty_stream_error() {
        let response = streamed((), |()| {
            std::future::ready(Ok((vec![b"1\n".to_vec(), b"2\n".to_vec()], None)))
        })
        .await;
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers[STREAM_ERROR], "");
        assert_eq!(collected.to_bytes().as_ref(), b"1\n2\n");
    }

    /// As Go's `StreamResponse`: no lines is 204, a first page that fails is its error.
    #[tokio::test]
    async fn an_empty_list_is_no_content_and_a_failed_start_an_error() {
        let empty = streamed((), |()| std::future::ready(Ok((Vec::new(), None)))).await;
        assert_eq!(empty.status(), StatusCode::NO_CONTENT);
        let collected = empty.into_body().collect().await.unwrap();
        assert!(collected.to_bytes().is_empty());
        let failed = streamed((), |()| {
            std::future::ready(Err::<(Vec<Vec<u8>>, Option<()>), _>(ApiError::bad_gateway(
                "the daemon is down",
            )))
        })
        .await;
        assert_eq!(failed.status(), StatusCode::BAD_GATEWAY);
        let body = failed.into_body().collect().await.unwrap().to_bytes();
        let error: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(error.message, "the daemon is down");
    }
}
