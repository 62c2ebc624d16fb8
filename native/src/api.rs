//! The REST API, on ipfs-cluster's routes and JSON shapes: `/id`, `/version`, `/peers`,
//! `/pins`, `/pins/{cid}` (GET, POST with ipfs-cluster's query options, DELETE),
//! `/pins/{cid}/recover`, `/allocations`, `/allocations/{cid}` and
//! `/monitor/metrics/{name}`, plus `/state/crdt` (heads, height, sync progress). Lists stream one JSON object per line, page by page, so a
//! million pins never sit in memory at once. Statuses are the cluster's (every peer asked
//! over the status exchange), or this peer's own with `?local=true`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cid::Cid;
use futures::stream::{self, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use pinfold_core::pin::{Pin, PinMode};
use pinfold_core::tracker::{DaemonPins, GlobalPinInfo, PinInfo, StatusFilter};
use serde_json::json;

use crate::auth::Credentials;
use crate::peer::{Command, CommandError, PeerHandle, PAGE};

/// The RPC protocol version ipfs-cluster v1.1 reports in `/id`.
pub const RPC_PROTOCOL_VERSION: &str = "/ipfscluster/1.1/rpc";

/// An error in ipfs-cluster's shape: `{"code": N, "message": "..."}`.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let status = match error {
            CommandError::ReadOnly(_) => StatusCode::FORBIDDEN,
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CommandError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            Json(json!({"code": self.status.as_u16(), "message": self.message})),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn parse_cid(text: &str) -> ApiResult<Cid> {
    text.parse()
        .map_err(|e| ApiError::bad_request(format!("error decoding Cid {text:?}: {e}")))
}

/// The socket address of an `/ip4|ip6/.../tcp/N` multiaddress.
pub fn socket_addr(address: &Multiaddr) -> Result<SocketAddr, String> {
    let mut ip = None;
    let mut port = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            other => return Err(format!("{address}: {other} is not supported here")),
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => Ok(SocketAddr::new(ip, port)),
        _ => Err(format!(
            "{address} does not name an IP address and a TCP port"
        )),
    }
}

/// The API's routes over a peer, behind `credentials` (open when there are none).
pub fn router(peer: PeerHandle, credentials: Credentials) -> Router {
    let token = Router::new()
        .route("/token", post(crate::auth::token))
        .with_state(credentials.clone());
    Router::new()
        .route("/id", get(id))
        .route("/version", get(version))
        .route("/peers", get(peers))
        .route("/pins", get(list_statuses))
        .route("/pins/{cid}", get(status).post(pin).delete(unpin))
        .route("/pins/{cid}/recover", post(recover))
        .route("/allocations", get(allocations))
        .route("/allocations/{cid}", get(allocation))
        .route("/monitor/metrics", get(metric_names))
        .route("/health/alerts", get(alerts))
        .route("/monitor/metrics/{name}", get(metrics))
        .route("/state/crdt", get(crdt_state))
        .with_state(peer)
        .merge(token)
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            crate::auth::require,
        ))
}

/// Serves the API until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    peer: PeerHandle,
    credentials: Credentials,
) -> std::io::Result<()> {
    axum::serve(listener, router(peer, credentials)).await
}

async fn id(State(peer): State<PeerHandle>) -> ApiResult<Json<serde_json::Value>> {
    let info = peer.ask(|reply| Command::Info { reply }).await?;
    let ipfs = match &info.ipfs {
        Some(id) => json!({
            "id": id.peer.to_string(),
            "addresses": id.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "error": info.ipfs_error.clone().unwrap_or_default(),
        }),
        None => {
            json!({"id": "", "addresses": [], "error": info.ipfs_error.clone().unwrap_or_default()})
        }
    };
    Ok(Json(json!({
        "id": info.id.to_string(),
        "addresses": info.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "cluster_peers": info.cluster_peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "cluster_peers_addresses": [],
        "version": env!("CARGO_PKG_VERSION"),
        "commit": "",
        "rpc_protocol_version": RPC_PROTOCOL_VERSION,
        "error": "",
        "ipfs": ipfs,
        "peername": info.peername,
    })))
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// ipfs-cluster's trailer for an error that cut a streamed list short.
const STREAM_ERROR: &str = "X-Stream-Error";

/// A page of a streamed list: its lines and the cursor after it (`None` at the end).
type Page = Result<(Vec<Vec<u8>>, Option<Cid>), String>;

/// A streamed list, one JSON value per line, read page by page through `fetch(after)`. A
/// page that fails ends the list with the `X-Stream-Error` trailer naming the reason, as
/// ipfs-cluster's API does, so that a client can tell a cut list from a complete one.
fn streamed<F, Fut>(fetch: F) -> Response
where
    F: Fn(Option<Cid>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Page> + Send + 'static,
{
    use axum::body::Bytes;
    use http_body::Frame;
    let fetch = Arc::new(fetch);
    let frames = stream::unfold(Some(None), move |cursor: Option<Option<Cid>>| {
        let fetch = fetch.clone();
        async move {
            let after = cursor?;
            Some(match fetch(after).await {
                Ok((lines, next)) => {
                    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = lines
                        .into_iter()
                        .map(|l| Ok(Frame::data(Bytes::from(l))))
                        .collect();
                    (stream::iter(frames), next.map(Some))
                }
                Err(error) => {
                    tracing::warn!(%error, "a streamed list was cut short");
                    let mut trailers = axum::http::HeaderMap::new();
                    let value =
                        axum::http::HeaderValue::from_str(&error.replace(['\r', '\n'], " "))
                            .unwrap_or_else(|_| {
                                axum::http::HeaderValue::from_static("internal error")
                            });
                    trailers.insert(STREAM_ERROR, value);
                    (stream::iter(vec![Ok(Frame::trailers(trailers))]), None)
                }
            })
        }
    })
    .flatten();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::TRAILER, STREAM_ERROR),
        ],
        Body::new(http_body_util::StreamBody::new(frames)),
    )
        .into_response()
}

fn line(value: &impl serde::Serialize) -> Result<Vec<u8>, String> {
    let mut bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

async fn peers(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    let peers = peer.ask(|reply| Command::Peers { reply }).await?;
    let lines: Result<Vec<Vec<u8>>, String> = peers
        .iter()
        .map(|(id, name)| line(&json!({"id": id.to_string(), "peername": name, "error": ""})))
        .collect();
    let page = lines.map(|lines| (lines, None));
    Ok(streamed(move |_| std::future::ready(page.clone())))
}

/// The daemon's pin list, for status listings.
async fn daemon_pins(peer: &PeerHandle) -> ApiResult<Arc<DaemonPins>> {
    match &peer.ipfs {
        Some(ipfs) => ipfs
            .pin_ls_all("recursive")
            .await
            .map(Arc::new)
            .map_err(|e| ApiError {
                status: StatusCode::BAD_GATEWAY,
                message: e.to_string(),
            }),
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

/// Refuses query parameters a route does not take, naming them.
fn only_parameters(query: &HashMap<String, String>, known: &[&str]) -> ApiResult<()> {
    match query.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!(
            "unknown query parameter {unknown:?}; this route takes: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The cluster's views of `local`'s CIDs: this peer's, merged with every other peer's.
async fn with_peer_views(peer: &PeerHandle, local: Vec<PinInfo>) -> ApiResult<Vec<GlobalPinInfo>> {
    let cids: Vec<Cid> = local.iter().map(|i| i.cid).collect();
    let others = peer
        .ask(|reply| Command::PeerStatuses { cids, reply })
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

async fn list_statuses(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    only_parameters(&query, &["filter", "local"])?;
    let filter = match query.get("filter") {
        Some(text) if !text.is_empty() => {
            StatusFilter::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
        _ => StatusFilter::ALL,
    };
    let local = local_only(&query)?;
    // Cluster-wide, a pin is listed when any peer's status passes the filter, so each
    // page is read whole and filtered once every view is in.
    let page_filter = if local { filter } else { StatusFilter::ALL };
    let daemon = if page_filter.needs_daemon_pins() {
        daemon_pins(&peer).await?
    } else {
        Arc::new(DaemonPins::new())
    };
    Ok(streamed(move |after| {
        let peer = peer.clone();
        let daemon = daemon.clone();
        async move {
            let (infos, next) = peer
                .ask(|reply| Command::Statuses {
                    after,
                    daemon,
                    filter: page_filter,
                    reply,
                })
                .await
                .map_err(|e| e.to_string())?;
            let globals = if local {
                infos.into_iter().map(GlobalPinInfo::new).collect()
            } else {
                with_peer_views(&peer, infos).await.map_err(|e| e.message)?
            };
            let lines = globals
                .iter()
                .filter(|g| local || g.matches(filter))
                .map(line)
                .collect::<Result<Vec<_>, String>>()?;
            Ok((lines, next))
        }
    }))
}

/// The daemon's answer for one CID, as the tracker takes it.
async fn daemon_status(
    peer: &PeerHandle,
    cid: &Cid,
) -> Result<Option<pinfold_core::tracker::IpfsPinType>, String> {
    match &peer.ipfs {
        Some(ipfs) => ipfs
            .pin_ls(cid, "recursive")
            .await
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

async fn status(
    State(peer): State<PeerHandle>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    only_parameters(&query, &["local"])?;
    let cid = parse_cid(&cid)?;
    let daemon = daemon_status(&peer, &cid).await;
    let info = peer
        .ask(|reply| Command::Status { cid, daemon, reply })
        .await?;
    let global = if local_only(&query)? {
        GlobalPinInfo::new(info)
    } else {
        with_peer_views(&peer, vec![info])
            .await?
            .pop()
            .expect("one view in, one out")
    };
    Ok(Json(global).into_response())
}

async fn recover(State(peer): State<PeerHandle>, Path(cid): Path<String>) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    let daemon = daemon_status(&peer, &cid).await;
    let info = peer
        .ask(|reply| Command::Recover { cid, daemon, reply })
        .await?;
    Ok(Json(GlobalPinInfo::new(info)).into_response())
}

/// A pin from ipfs-cluster's POST /pins/{cid} query options.
fn pin_from_query(cid: Cid, query: &HashMap<String, String>) -> ApiResult<Pin> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut pin = Pin::new(cid, pinfold_core::pin::UnixTime(seconds));
    let number = |key: &str, text: &str| -> ApiResult<i32> {
        text.parse().map_err(|_| {
            ApiError::bad_request(format!("parameter {key}: {text:?} is not a number"))
        })
    };
    for (key, value) in query {
        match key.as_str() {
            "name" => pin.name = value.clone(),
            "replication" => {
                let n = number(key, value)?;
                pin.replication_factor_min = n;
                pin.replication_factor_max = n;
            }
            "replication-min" => pin.replication_factor_min = number(key, value)?,
            "replication-max" => pin.replication_factor_max = number(key, value)?,
            "mode" => {
                pin.max_depth = match value.as_str() {
                    "recursive" | "" => PinMode::Recursive.max_depth(),
                    "direct" => PinMode::Direct.max_depth(),
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "mode {other:?}: use recursive or direct"
                        )))
                    }
                }
            }
            "user-allocations" => {
                pin.user_allocations = value
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.parse::<PeerId>().map_err(|e| {
                            ApiError::bad_request(format!("user-allocations {p:?}: {e}"))
                        })
                    })
                    .collect::<ApiResult<_>>()?
            }
            "origins" => {
                pin.origins = value
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(|a| {
                        a.parse::<Multiaddr>()
                            .map_err(|e| ApiError::bad_request(format!("origins {a:?}: {e}")))
                    })
                    .collect::<ApiResult<_>>()?
            }
            meta if meta.starts_with("meta-") => {
                pin.metadata
                    .insert(meta["meta-".len()..].to_owned(), value.clone());
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok(pin)
}

async fn pin(
    State(peer): State<PeerHandle>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    let pin = Box::new(pin_from_query(cid, &query)?);
    let pin = peer.ask(|reply| Command::AddPin { pin, reply }).await??;
    Ok(Json(pin).into_response())
}

async fn unpin(State(peer): State<PeerHandle>, Path(cid): Path<String>) -> ApiResult<Response> {
    let cid = parse_cid(&cid)?;
    let pin = peer
        .ask(|reply| Command::RemovePin { cid, reply })
        .await??;
    Ok(Json(pin).into_response())
}

async fn allocations(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    Ok(streamed(move |after| {
        let peer = peer.clone();
        async move {
            let pins = peer
                .ask(|reply| Command::Pins {
                    after,
                    limit: PAGE,
                    reply,
                })
                .await
                .map_err(|e| e.to_string())?;
            let next = (pins.len() == PAGE)
                .then(|| pins.last().map(|p| p.cid))
                .flatten();
            let lines = pins.iter().map(line).collect::<Result<Vec<_>, String>>()?;
            Ok((lines, next))
        }
    }))
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

/// Where this peer's CRDT stands: heads, height, blocks pending and merged (pinfold's own).
async fn crdt_state(State(peer): State<PeerHandle>) -> ApiResult<Response> {
    let info = peer.ask(|reply| Command::Sync { reply }).await?;
    Ok(Json(info).into_response())
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
        let response = streamed(move |after| {
            std::future::ready(match after {
                None => Ok((vec![b"{\"n\":1}\n".to_vec()], Some(cid))),
                Some(_) => Err("the peer is shutting down".to_owned()),
            })
        });
        assert_eq!(response.headers()[header::TRAILER], STREAM_ERROR);
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(trailers[STREAM_ERROR], "the peer is shutting down");
        assert_eq!(collected.to_bytes().as_ref(), b"{\"n\":1}\n");
    }

    #[tokio::test]
    async fn a_complete_list_has_no_stream_error() {
        let response = streamed(|_| std::future::ready(Ok((vec![b"1\n".to_vec()], None))));
        let collected = response.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes().as_ref(), b"1\n");
    }
}
