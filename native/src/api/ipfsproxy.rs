//! The IPFS proxy API (`api.ipfsproxy`, 127.0.0.1:9095), as Go ipfs-cluster's
//! `api/ipfsproxy`: the IPFS daemon's RPC API, where `pin/add`, `pin/rm`, `pin/ls`,
//! `pin/update`, `add`, `repo/stat`, `repo/gc`, and `block/put` and `dag/put` with
//! `pin=true`, act on the cluster and answer in the daemon's shapes; every other request
//! goes to the daemon as it came, and its answer comes back as it went (trailers
//! included). A Kubo client pins through the cluster by pointing at it:
//! `ipfs --api /ip4/127.0.0.1/tcp/9095 pin add CID`.
//!
//! The cluster's answers carry the daemon's CORS headers for the request's origin (asked
//! with the same preflight), the daemon's `Access-Control-Expose-Headers` and the headers
//! of `extract_headers_extra`, read from `extract_headers_path` and kept for
//! `extract_headers_ttl`, as Go's do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use cid::Cid;
use futures::stream::{self, StreamExt};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pinfold_core::pin::{Pin, PinMode};
use pinfold_core::rest::{AddedOutput, PinOptions};
use serde_json::json;

use super::add::{add_files, AddRequest};
use super::rest::{
    cluster_repo_gc, line, lines_with_trailer, pin_in_cluster, unpin_in_cluster, ApiError,
};
use crate::config::IpfsProxySection;
use crate::peer::{Command, PeerHandle, PAGE};

/// The longest answer of the daemon to a `block/put` or `dag/put` that the proxy reads to
/// pin what it put.
const MAX_PUT_ANSWER: usize = 16 << 20;

/// How long the daemon may take to answer the proxy's own requests for headers.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(5);

/// An error as the daemon's RPC API gives one (go-ipfs-cmds):
/// `{"Message": ..., "Code": 0, "Type": "error"}`, 500; a malformed request is 400 with
/// code 1 (the client's error). Never 404, which Kubo's clients read as "command not found".
#[derive(Debug)]
struct CmdsError {
    status: StatusCode,
    message: String,
}

impl CmdsError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<ApiError> for CmdsError {
    fn from(error: ApiError) -> Self {
        if error.status == StatusCode::BAD_REQUEST {
            Self::bad_request(error.message)
        } else {
            Self::new(error.message)
        }
    }
}

impl From<crate::peer::CommandError> for CmdsError {
    fn from(error: crate::peer::CommandError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for CmdsError {
    fn into_response(self) -> Response {
        let code = u8::from(self.status == StatusCode::BAD_REQUEST);
        let body = json!({ "Message": self.message, "Code": code, "Type": "error" });
        (self.status, Json(body)).into_response()
    }
}

type CmdsResult<T> = Result<T, CmdsError>;

/// Marks an answer that is the daemon's own, which keeps its headers.
#[derive(Clone, Copy)]
struct PassedThrough;

/// The daemon's RPC API, as the proxy talks to it.
struct Daemon {
    client: Client<HttpConnector, Body>,
    /// `http://host:port`.
    base: String,
    extracted: ExtractedHeaders,
}

/// Headers of the daemon's answers copied into the cluster's, read from one route and
/// kept for a while.
struct ExtractedHeaders {
    names: Vec<HeaderName>,
    path: String,
    ttl: Duration,
    kept: Mutex<Option<(Instant, HeaderMap)>>,
}

/// The proxy's state: the peer it acts through and the daemon it passes requests to.
pub struct Proxy {
    peer: PeerHandle,
    daemon: Daemon,
}

impl Proxy {
    /// A proxy for `peer` in front of the daemon whose RPC API is at `daemon_url`
    /// (`http://host:port`).
    pub fn new(
        peer: PeerHandle,
        daemon_url: String,
        config: &IpfsProxySection,
    ) -> anyhow::Result<Self> {
        let mut names = vec![header::ACCESS_CONTROL_EXPOSE_HEADERS];
        for name in &config.extract_headers_extra {
            names.push(name.parse().map_err(|e| {
                anyhow::anyhow!("api.ipfsproxy.extract_headers_extra: {name:?}: {e}")
            })?);
        }
        if !config.extract_headers_path.starts_with('/') {
            anyhow::bail!(
                "api.ipfsproxy.extract_headers_path {:?} is not a path (such as /api/v0/version)",
                config.extract_headers_path
            );
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            peer,
            daemon: Daemon {
                client,
                base: daemon_url,
                extracted: ExtractedHeaders {
                    names,
                    path: config.extract_headers_path.clone(),
                    ttl: config.extract_headers_ttl.0,
                    kept: Mutex::new(None),
                },
            },
        })
    }
}

/// The proxy's routes: the cluster's commands, everything else passed to the daemon.
pub fn router(proxy: Arc<Proxy>) -> Router {
    // Go takes these for GET, POST and PUT; other methods (preflights) go to the daemon.
    let cluster = |handler: MethodRouter<Arc<Proxy>>| handler.fallback(pass);
    let methods = MethodFilter::GET
        .or(MethodFilter::POST)
        .or(MethodFilter::PUT);
    let hijacked = Router::new()
        .route("/api/v0/pin/add", cluster(on(methods, pin_add)))
        .route("/api/v0/pin/add/{arg}", cluster(on(methods, pin_add)))
        .route("/api/v0/pin/rm", cluster(on(methods, pin_rm)))
        .route("/api/v0/pin/rm/{arg}", cluster(on(methods, pin_rm)))
        .route("/api/v0/pin/ls", cluster(on(methods, pin_ls)))
        .route("/api/v0/pin/ls/{arg}", cluster(on(methods, pin_ls)))
        .route("/api/v0/pin/update", cluster(on(methods, pin_update)))
        .route("/api/v0/add", cluster(on(methods, add)))
        .route("/api/v0/repo/stat", cluster(on(methods, repo_stat)))
        .route("/api/v0/repo/gc", cluster(on(methods, repo_gc)))
        .route("/api/v0/block/put", cluster(on(methods, block_put)))
        .route("/api/v0/dag/put", cluster(on(methods, dag_put)))
        .route_layer(axum::middleware::from_fn_with_state(
            proxy.clone(),
            daemon_headers,
        ));
    hijacked.fallback(pass).with_state(proxy)
}

/// Serves the proxy on `listener` until it fails.
pub async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>) -> std::io::Result<()> {
    crate::api::tls::serve(listener, router(proxy), None).await
}

/// Passes the request to the daemon; its answer comes back as it is.
async fn pass(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    match proxy.daemon.forward(request, None).await {
        Ok(mut response) => {
            response.extensions_mut().insert(PassedThrough);
            response
        }
        Err(error) => error.into_response(),
    }
}

/// Gives the cluster's answers the daemon's headers, as Go's proxy does: CORS for the
/// request's origin, the extracted headers, then JSON and the proxy's `Server`.
async fn daemon_headers(State(proxy): State<Arc<Proxy>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if !matches!(method, Method::GET | Method::POST | Method::PUT) {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if response.extensions().get::<PassedThrough>().is_some() {
        return response;
    }
    let daemon = &proxy.daemon;
    let headers = response.headers_mut();
    if let Some(origin) = origin {
        match daemon.cors_headers(&path, &method, origin).await {
            Ok(cors) => headers.extend(cors),
            Err(error) => tracing::debug!(%error, "no CORS headers from the IPFS daemon"),
        }
    }
    headers.extend(daemon.extracted_headers().await);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("pinfold/ipfsproxy/", env!("CARGO_PKG_VERSION"))),
    );
    response
}

/// Headers that concern one connection, never passed on (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Drops the hop-by-hop headers, and those `Connection` names. `TE: trailers` stays, as
/// it says the client reads trailers (Go's reverse proxy keeps it too).
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
        .collect();
    let trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("trailers")));
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

impl Daemon {
    /// Sends `request` on to the daemon, with `query` instead of its own when given.
    async fn forward(&self, request: Request, query: Option<String>) -> CmdsResult<Response> {
        let (mut parts, body) = request.into_parts();
        let target = match query {
            Some(query) => format!("{}{}?{query}", self.base, parts.uri.path()),
            None => format!(
                "{}{}",
                self.base,
                parts.uri.path_and_query().map_or("/", |p| p.as_str())
            ),
        };
        parts.uri = target
            .parse::<Uri>()
            .map_err(|e| CmdsError::bad_request(format!("{target}: {e}")))?;
        drop_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        let answer = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(|e| CmdsError {
                status: StatusCode::BAD_GATEWAY,
                message: format!("the IPFS daemon at {} did not answer: {e}", self.base),
            })?;
        let (mut parts, body) = answer.into_parts();
        // The daemon's `Trailer` stays: it names the trailers that follow the body.
        let trailer = parts.headers.remove(header::TRAILER);
        drop_hop_by_hop(&mut parts.headers);
        if let Some(trailer) = trailer {
            parts.headers.insert(header::TRAILER, trailer);
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// A request of the proxy's own to the daemon, its answer's headers only.
    async fn headers_of(&self, request: axum::http::Request<Body>) -> Result<HeaderMap, String> {
        let answer = tokio::time::timeout(HEADERS_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {HEADERS_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(answer.headers().clone())
    }

    /// The daemon's CORS headers for a request from `origin`, from its answer to the same
    /// preflight.
    async fn cors_headers(
        &self,
        path: &str,
        method: &Method,
        origin: HeaderValue,
    ) -> Result<HeaderMap, String> {
        let preflight = axum::http::Request::builder()
            .method(Method::OPTIONS)
            .uri(format!("{}{path}", self.base))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, method.as_str())
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let answer = self.headers_of(preflight).await?;
        let mut cors = HeaderMap::new();
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::VARY,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ] {
            for value in answer.get_all(&name) {
                cors.append(name.clone(), value.clone());
            }
        }
        Ok(cors)
    }

    /// The extracted headers: those kept, or read again once they are older than the TTL.
    async fn extracted_headers(&self) -> HeaderMap {
        let extracted = &self.extracted;
        let stale = |at: &Instant| extracted.ttl.is_zero() || at.elapsed() >= extracted.ttl;
        if let Some((at, headers)) = extracted.kept.lock().expect("never poisoned").as_ref() {
            if !stale(at) {
                return headers.clone();
            }
        }
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri(format!("{}{}", self.base, extracted.path))
            .body(Body::empty())
            .expect("a valid request");
        match self.headers_of(request).await {
            Ok(answer) => {
                let mut headers = HeaderMap::new();
                for name in &extracted.names {
                    for value in answer.get_all(name) {
                        headers.append(name.clone(), value.clone());
                    }
                }
                *extracted.kept.lock().expect("never poisoned") =
                    Some((Instant::now(), headers.clone()));
                headers
            }
            Err(error) => {
                tracing::debug!(%error, path = %extracted.path, "no headers from the IPFS daemon");
                HeaderMap::new()
            }
        }
    }
}

/// A request's query, every pair in order (Kubo repeats `arg`).
type Pairs = Vec<(String, String)>;

/// The last value of `key`.
fn option<'a>(query: &'a Pairs, key: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean option as Kubo reads one: absent is `default`, present and empty is true.
fn flag(query: &Pairs, key: &str, default: bool) -> CmdsResult<bool> {
    match option(query, key) {
        None => Ok(default),
        Some("" | "true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(CmdsError::bad_request(format!(
            "option {key:?}: {other:?} is not a boolean"
        ))),
    }
}

/// Every `arg` of the query, in order.
fn arguments(query: &Pairs) -> Vec<&str> {
    query
        .iter()
        .filter(|(k, _)| k == "arg")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The query with `arg` added when the path carries one: the argument of a
/// `pin/add/{arg}`, `pin/rm/{arg}` or `pin/ls/{arg}` request, a form Go's proxy accepts too.
fn with_path_argument(mut query: Pairs, path: Option<Path<String>>) -> Pairs {
    if let Some(Path(argument)) = path {
        query.push(("arg".to_owned(), argument));
    }
    query
}

/// The CID a Kubo argument names: a CID, `/ipfs/CID`, or a path the daemon resolves.
async fn target(peer: &PeerHandle, argument: &str) -> CmdsResult<Cid> {
    if let Ok(cid) = argument.parse() {
        return Ok(cid);
    }
    let path = if argument.starts_with('/') {
        argument.to_owned()
    } else {
        format!("/ipfs/{argument}")
    };
    if let Some(cid) = path
        .strip_prefix("/ipfs/")
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
    {
        return Ok(cid);
    }
    let ipfs = peer.ipfs.as_ref().ok_or_else(|| {
        CmdsError::bad_request(format!(
            "{argument}: this peer has no IPFS daemon to resolve paths with; give a CID"
        ))
    })?;
    ipfs.resolve(&path)
        .await
        .map_err(|e| CmdsError::new(format!("could not resolve {argument}: {e}")))
}

/// The pin options in a Kubo query: the cluster's own (`replication-min`, `name`, ...),
/// with the mode from Go's `type`, else Kubo's `recursive`.
fn pin_options(query: &Pairs) -> CmdsResult<PinOptions> {
    let pairs = query
        .iter()
        .filter(|(k, _)| k != "arg" && k != "mode")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let mut options =
        PinOptions::from_query(pairs).map_err(|e| CmdsError::bad_request(e.to_string()))?;
    options.mode = match option(query, "type").filter(|t| !t.is_empty()) {
        Some(text) => Some(
            text.parse::<PinMode>()
                .map_err(|e| CmdsError::bad_request(e.to_string()))?,
        ),
        None if !flag(query, "recursive", true)? => Some(PinMode::Direct),
        None => None,
    };
    Ok(options)
}

/// Kubo's `{"Pins": [...]}`.
fn pins_answer(cids: &[Cid]) -> Response {
    let pins: Vec<String> = cids.iter().map(Cid::to_string).collect();
    Json(json!({ "Pins": pins })).into_response()
}

/// `pin/add`: pins each argument in the cluster, with the pin options of the query.
async fn pin_add(
    State(proxy): State<Arc<Proxy>>,
    path: Option<Path<String>>,
    Query(query): Query<Pairs>,
) -> CmdsResult<Response> {
    let query = with_path_argument(query, path);
    let targets = arguments(&query);
    if targets.is_empty() {
        return Err(CmdsError::bad_request("argument \"ipfs-path\" is required"));
    }
    let options = pin_options(&query)?;
    let peer = &proxy.peer;
    let mut pinned = Vec::with_capacity(targets.len());
    for argument in targets {
        let cid = target(peer, argument).await?;
        let pin = pin_in_cluster(peer, options.to_pin(cid, peer.clock.now())).await?;
        pinned.push(pin.cid);
    }
    Ok(pins_answer(&pinned))
}

/// `pin/rm`: unpins each argument from the cluster.
async fn pin_rm(
    State(proxy): State<Arc<Proxy>>,
    path: Option<Path<String>>,
    Query(query): Query<Pairs>,
) -> CmdsResult<Response> {
    let query = with_path_argument(query, path);
    let targets = arguments(&query);
    if targets.is_empty() {
        return Err(CmdsError::bad_request("argument \"ipfs-path\" is required"));
    }
    let peer = &proxy.peer;
    let mut unpinned = Vec::with_capacity(targets.len());
    for argument in targets {
        let cid = target(peer, argument).await?;
        let pin = unpin_in_cluster(peer, cid).await?;
        unpinned.push(pin.cid);
    }
    Ok(pins_answer(&unpinned))
}

/// Kubo's `pin ls` types; the cluster's pins are recursive or direct, never indirect.
fn listed_mode(query: &Pairs) -> CmdsResult<Option<Option<PinMode>>> {
    match option(query, "type").unwrap_or("all") {
        "" | "all" => Ok(Some(None)),
        "recursive" => Ok(Some(Some(PinMode::Recursive))),
        "direct" => Ok(Some(Some(PinMode::Direct))),
        "indirect" => Ok(None),
        other => Err(CmdsError::bad_request(format!(
            "invalid type '{other}', must be one of {{direct, indirect, recursive, all}}"
        ))),
    }
}

/// One pin as `pin ls` lists it: its type, and its name when `names` asks for it.
fn listed(pin: &Pin, names: bool) -> serde_json::Map<String, serde_json::Value> {
    let mut entry = serde_json::Map::new();
    entry.insert("Type".into(), pin.mode().as_str().into());
    if names && !pin.name.is_empty() {
        entry.insert("Name".into(), pin.name.clone().into());
    }
    entry
}

/// `pin ls --stream`'s line for `pin`.
fn listed_line(pin: &Pin, names: bool) -> Result<Vec<u8>, ApiError> {
    let mut entry = listed(pin, names);
    entry.insert("Cid".into(), pin.cid.to_string().into());
    line(&entry)
}

/// `pin/ls`: the cluster's pins (or those of the arguments, which must be pinned) as
/// Kubo lists them: `{"Keys": {cid: {"Type"}}}`, or one `{"Cid", "Type"}` per line with
/// `stream`; `type` filters and `names` adds the pins' names.
async fn pin_ls(
    State(proxy): State<Arc<Proxy>>,
    path: Option<Path<String>>,
    Query(query): Query<Pairs>,
) -> CmdsResult<Response> {
    let query = with_path_argument(query, path);
    let stream = flag(&query, "stream", false)? || flag(&query, "s", false)?;
    let names = flag(&query, "names", false)? || flag(&query, "n", false)?;
    let mode = listed_mode(&query)?;
    let wanted = move |pin: &Pin| mode.is_some_and(|m| m.is_none_or(|m| m == pin.mode()));
    let peer = proxy.peer.clone();
    let targets = arguments(&query);
    if !targets.is_empty() {
        let mut pins = Vec::with_capacity(targets.len());
        for argument in targets {
            let cid = target(&peer, argument).await?;
            match peer.ask(|reply| Command::GetPin { cid, reply }).await? {
                Some(pin) if wanted(&pin) => pins.push(pin),
                _ => return Err(CmdsError::new(format!("path '{argument}' is not pinned"))),
            }
        }
        if stream {
            let lines: Vec<_> = pins.iter().map(|p| listed_line(p, names)).collect();
            return Ok(lines_with_trailer(stream::iter(lines)));
        }
        let keys: BTreeMap<String, _> = pins
            .iter()
            .map(|p| (p.cid.to_string(), listed(p, names)))
            .collect();
        return Ok(Json(json!({ "Keys": keys })).into_response());
    }
    let pages = stream::unfold(Some(None), move |after: Option<Option<Cid>>| {
        let peer = peer.clone();
        async move {
            let after = after?;
            match peer
                .ask(|reply| Command::Pins {
                    after,
                    limit: PAGE,
                    reply,
                })
                .await
            {
                Ok(pins) => {
                    let next = (pins.len() == PAGE)
                        .then(|| pins.last().map(|p| Some(p.cid)))
                        .flatten();
                    Some((Ok(pins), next))
                }
                Err(error) => Some((Err(ApiError::from(error)), None)),
            }
        }
    });
    if stream {
        let lines = pages.flat_map(move |page| {
            let lines: Vec<_> = match page {
                Ok(pins) => pins
                    .iter()
                    .filter(|p| wanted(p))
                    .map(|p| listed_line(p, names))
                    .collect(),
                Err(error) => vec![Err(error)],
            };
            stream::iter(lines)
        });
        return Ok(lines_with_trailer(lines));
    }
    let mut keys = serde_json::Map::new();
    let mut pages = std::pin::pin!(pages);
    while let Some(page) = pages.next().await {
        for pin in page?.iter().filter(|p| wanted(p)) {
            keys.insert(pin.cid.to_string(), listed(pin, names).into());
        }
    }
    Ok(Json(json!({ "Keys": keys })).into_response())
}

/// `pin/update FROM TO`: pins TO with FROM's options and allocations (the cluster's pin
/// update), then unpins FROM unless `unpin=false`.
async fn pin_update(
    State(proxy): State<Arc<Proxy>>,
    Query(query): Query<Pairs>,
) -> CmdsResult<Response> {
    let (from, to) = match arguments(&query)[..] {
        [] => return Err(CmdsError::bad_request("argument \"from-path\" is required")),
        [_] => return Err(CmdsError::bad_request("argument \"to-path\" is required")),
        [from, to, ..] => (from, to),
    };
    let unpin = flag(&query, "unpin", true)?;
    let peer = &proxy.peer;
    let from = target(peer, from).await?;
    let to = target(peer, to).await?;
    let mut pin = PinOptions::default().to_pin(to, peer.clock.now());
    pin.pin_update = Some(from);
    let pin = pin_in_cluster(peer, pin).await?;
    if unpin && from != pin.cid {
        unpin_in_cluster(peer, from).await?;
    }
    Ok(pins_answer(&[from, pin.cid]))
}

/// `add`: the files are added as the REST API's `/add` adds them (to the allocated
/// peers' daemons, the root pinned in the cluster unless `pin=false`), each answered as
/// Kubo's `add` does: `{"Name", "Hash", "Size"}`.
async fn add(
    State(proxy): State<Arc<Proxy>>,
    Query(query): Query<Pairs>,
    headers: HeaderMap,
    body: Body,
) -> CmdsResult<Response> {
    if flag(&query, "only-hash", false)? {
        return Err(CmdsError::new(
            "only-hash is not supported when adding to cluster",
        ));
    }
    let mut options: HashMap<String, String> = query.iter().cloned().collect();
    if !flag(&query, "pin", true)? {
        options.insert("no-pin".into(), "true".into());
    }
    if flag(&query, "trickle", false)? {
        options.insert("layout".into(), "trickle".into());
    }
    let peer = proxy.peer.clone();
    let request = AddRequest::from_query(&options, peer.clock.now())?;
    let outputs = add_files(peer, request, &headers, body).await?;
    let lines = outputs.map(|output| output.and_then(|o| line(&kubo_added(&o))));
    Ok(lines_with_trailer(lines))
}

/// An added file or directory as Kubo's `add` answers it.
fn kubo_added(output: &AddedOutput) -> serde_json::Value {
    let mut added = json!({ "Name": output.name, "Hash": output.cid });
    if output.size != 0 {
        added["Size"] = output.size.to_string().into();
    }
    added
}

/// `repo/stat`: the sizes of every peer's daemon's repository, added up (a peer that
/// does not answer is left out, as in Go).
async fn repo_stat(State(proxy): State<Arc<Proxy>>) -> CmdsResult<Response> {
    let peer = &proxy.peer;
    let peers = peer.ask(|reply| Command::Peers { reply }).await?;
    let stats = peers.iter().map(|p| async move {
        let stat = if p.id == peer.local {
            match &peer.ipfs {
                Some(ipfs) => ipfs
                    .repo_stat()
                    .await
                    .map(|s| (s.repo_size, s.storage_max))
                    .map_err(|e| e.to_string()),
                None => Err("this peer has no IPFS daemon".to_owned()),
            }
        } else {
            peer.rpc.repo_stat(p.id).await
        };
        stat.map_err(|error| tracing::warn!(peer = %p.id, %error, "repo/stat left a peer out"))
    });
    let (mut repo_size, mut storage_max) = (0u64, 0u64);
    for (size, max) in futures::future::join_all(stats).await.into_iter().flatten() {
        repo_size = repo_size.saturating_add(size);
        storage_max = storage_max.saturating_add(max);
    }
    Ok(Json(json!({ "RepoSize": repo_size, "StorageMax": storage_max })).into_response())
}

/// `repo/gc`: a garbage collection of every peer's daemon, one `{"Key": {"/": cid}}` per
/// block removed; the errors go on the `X-Stream-Error` trailer, or on their own lines
/// (`{"Error"}`) with `stream-errors`.
async fn repo_gc(
    State(proxy): State<Arc<Proxy>>,
    Query(query): Query<Pairs>,
) -> CmdsResult<Response> {
    let stream_errors = flag(&query, "stream-errors", false)?;
    let global = cluster_repo_gc(&proxy.peer, false).await?;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for gc in global.peer_map.values() {
        if !gc.error.is_empty() {
            let error = format!("{}: {}", gc.peer, gc.error);
            if stream_errors {
                lines.push(line(&json!({ "Error": error })));
            } else {
                errors.push(error);
            }
        }
        for key in &gc.keys {
            let mut entry = serde_json::Map::new();
            if let Some(cid) = key.key {
                entry.insert("Key".into(), json!({ "/": cid.to_string() }));
            }
            if !key.error.is_empty() {
                if stream_errors {
                    entry.insert("Error".into(), key.error.clone().into());
                } else {
                    errors.push(key.error.clone());
                }
            }
            if !entry.is_empty() {
                lines.push(line(&entry));
            }
        }
    }
    if !errors.is_empty() {
        lines.push(Err(ApiError::internal(errors.join("; "))));
    }
    Ok(lines_with_trailer(stream::iter(lines)))
}

/// Where a put's answer names what it put: `block/put`'s `{"Key": cid}`, `dag/put`'s
/// `{"Cid": {"/": cid}}`.
fn put_cid(answer: &serde_json::Value) -> Option<Cid> {
    answer
        .get("Key")
        .and_then(|k| k.as_str())
        .or_else(|| {
            answer
                .get("Cid")
                .and_then(|c| c.get("/"))
                .and_then(|c| c.as_str())
        })
        .and_then(|text| text.parse().ok())
}

/// `block/put` and `dag/put` with `pin=true`: the daemon puts the data without pinning
/// it, then the cluster pins each CID put, with the cluster's defaults. The daemon's
/// answer comes back line for line; pins that failed are named on the `X-Stream-Error`
/// trailer. Without `pin=true` the request is the daemon's alone.
async fn put_and_pin(proxy: Arc<Proxy>, query: Pairs, request: Request) -> CmdsResult<Response> {
    if !flag(&query, "pin", false)? {
        return Ok(pass(State(proxy), request).await);
    }
    let unpinned: Vec<(&str, &str)> = query
        .iter()
        .filter(|(k, _)| k != "pin")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("pin", "false")])
        .collect();
    let unpinned =
        serde_urlencoded::to_string(unpinned).map_err(|e| CmdsError::bad_request(e.to_string()))?;
    let answer = proxy.daemon.forward(request, Some(unpinned)).await?;
    if answer.status() != StatusCode::OK {
        return Ok(answer);
    }
    let body = http_body_util::Limited::new(answer.into_body(), MAX_PUT_ANSWER)
        .collect()
        .await
        .map_err(|e| CmdsError::new(format!("could not read the IPFS daemon's answer: {e}")))?
        .to_bytes();
    let peer = &proxy.peer;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for value in serde_json::Deserializer::from_slice(&body).into_iter::<serde_json::Value>() {
        let value = value
            .map_err(|e| CmdsError::new(format!("the IPFS daemon's answer is not JSON: {e}")))?;
        match put_cid(&value) {
            Some(cid) => {
                let pin = PinOptions::default().to_pin(cid, peer.clock.now());
                if let Err(error) = pin_in_cluster(peer, pin).await {
                    errors.push(format!("{cid}: {}", error.message));
                }
            }
            None => errors.push(format!("the IPFS daemon's answer names no CID: {value}")),
        }
        lines.push(line(&value));
    }
    if !errors.is_empty() {
        lines.push(Err(ApiError::internal(errors.join("; "))));
    }
    Ok(lines_with_trailer(stream::iter(lines)))
}

async fn block_put(
    State(proxy): State<Arc<Proxy>>,
    Query(query): Query<Pairs>,
    request: Request,
) -> CmdsResult<Response> {
    put_and_pin(proxy, query, request).await
}

async fn dag_put(
    State(proxy): State<Arc<Proxy>>,
    Query(query): Query<Pairs>,
    request: Request,
) -> CmdsResult<Response> {
    put_and_pin(proxy, query, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Pairs {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubo_s_options_read_as_kubo_reads_them() {
        let query = pairs(&[
            ("arg", "a"),
            ("recursive", "false"),
            ("arg", "b"),
            ("s", ""),
        ]);
        assert_eq!(arguments(&query), ["a", "b"]);
        assert!(flag(&query, "s", false).unwrap());
        assert!(!flag(&query, "recursive", true).unwrap());
        assert!(flag(&query, "absent", true).unwrap());
        assert_eq!(pin_options(&query).unwrap().mode, Some(PinMode::Direct));
        let go = pairs(&[("type", "recursive"), ("recursive", "false")]);
        assert_eq!(pin_options(&go).unwrap().mode, Some(PinMode::Recursive));
        let named = pairs(&[("name", "photos"), ("replication-min", "2")]);
        let options = pin_options(&named).unwrap();
        assert_eq!(options.name.as_deref(), Some("photos"));
        assert_eq!(options.replication_min, Some(2));
        assert_eq!(options.mode, None);
        let error = flag(&pairs(&[("pin", "maybe")]), "pin", false).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn pin_ls_types_are_kubo_s() {
        let of = |t: &str| listed_mode(&pairs(&[("type", t)]));
        assert_eq!(of("all").unwrap(), Some(None));
        assert_eq!(of("direct").unwrap(), Some(Some(PinMode::Direct)));
        assert_eq!(of("indirect").unwrap(), None);
        assert!(of("other")
            .unwrap_err()
            .message
            .contains("must be one of {direct, indirect, recursive, all}"));
        assert_eq!(listed_mode(&Vec::new()).unwrap(), Some(None));
    }

    #[test]
    fn puts_name_their_cids_in_kubo_s_two_shapes() {
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        assert_eq!(
            put_cid(&json!({ "Key": cid, "Size": 3 }))
                .unwrap()
                .to_string(),
            cid
        );
        assert_eq!(
            put_cid(&json!({ "Cid": { "/": cid } }))
                .unwrap()
                .to_string(),
            cid
        );
        assert_eq!(put_cid(&json!({ "Size": 3 })), None);
    }

    #[test]
    fn added_files_answer_in_kubo_s_shape() {
        let output = AddedOutput {
            name: "a.txt".into(),
            cid: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into(),
            bytes: 0,
            size: 12,
            allocations: vec!["12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK".into()],
        };
        assert_eq!(
            kubo_added(&output),
            json!({ "Name": "a.txt", "Hash": output.cid, "Size": "12" })
        );
    }

    #[test]
    fn errors_are_go_ipfs_cmds_errors_and_never_404() {
        let not_found = CmdsError::from(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "gone".into(),
        });
        assert_eq!(not_found.status, StatusCode::INTERNAL_SERVER_ERROR);
        let response = CmdsError::bad_request("argument \"ipfs-path\" is required").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_but_trailers_asked_for_stay() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        drop_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers[header::TE], "trailers");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    }
}
