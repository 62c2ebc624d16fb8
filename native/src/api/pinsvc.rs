//! The IPFS Pinning Services API v1.0.0 over the cluster's pins (ipfs-cluster's
//! `pinsvcapi`, on 127.0.0.1:9097 by default): `GET/POST /pins`, `GET/POST/DELETE
//! /pins/{requestid}`, `POST /token` and `GET /health`, behind the same basic auth and
//! bearer tokens as the REST API. As in ipfs-cluster, the request id is the CID.
//!
//! A pin's status is read from every peer's view of it: `failed` when a peer is in error,
//! else `queued` when one has it queued, else `pinning`, else `pinned`; a CID no peer
//! pins (or only unpins) is not a pin of this service. Lists are newest first, of every
//! status unless `status` names some (Go v1.1.6's default; the spec's is `pinned`), at
//! most `limit` (default 10, at most 1000) of `count` matches.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cid::Cid;
use libp2p::Multiaddr;
use pinfold_core::pin::{Pin, UnixTime};
use pinfold_core::tracker::{GlobalPinInfo, StatusFilter, TrackerStatus};
use serde::Deserialize;
use serde_json::json;

use crate::api::auth::{Credentials, ErrorShape};
use crate::api::rest::{self as api, ApiError};
use crate::peer::{Command, CommandError, PeerHandle};

/// Results a list may return at once.
pub const MAX_LIMIT: usize = 1000;
/// Results a list returns when it names no limit.
pub const DEFAULT_LIMIT: usize = 10;
/// Longest pin name the spec allows.
pub const MAX_NAME: usize = 255;
/// Largest request body: a pin's JSON, with room for many origins and much metadata.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A pin's status in this API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinningStatus {
    Queued,
    Pinning,
    Pinned,
    Failed,
}

impl PinningStatus {
    pub const ALL: [PinningStatus; 4] = [
        PinningStatus::Queued,
        PinningStatus::Pinning,
        PinningStatus::Pinned,
        PinningStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PinningStatus::Queued => "queued",
            PinningStatus::Pinning => "pinning",
            PinningStatus::Pinned => "pinned",
            PinningStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Queued, Self::Pinning, Self::Pinned, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// The status of a pin from every peer's view of it (ipfs-cluster's order: an error
    /// anywhere first, then queued, pinning, pinned); `None` when no peer pins it.
    pub fn of(global: &GlobalPinInfo) -> Option<Self> {
        use TrackerStatus::{ClusterError, PinError, UnpinError};
        let statuses: Vec<TrackerStatus> = global.peer_map.values().map(|s| s.status).collect();
        if statuses
            .iter()
            .any(|s| matches!(s, ClusterError | PinError | UnpinError))
        {
            Some(PinningStatus::Failed)
        } else if statuses.contains(&TrackerStatus::PinQueued) {
            Some(PinningStatus::Queued)
        } else if statuses.contains(&TrackerStatus::Pinning) {
            Some(PinningStatus::Pinning)
        } else if statuses.contains(&TrackerStatus::Pinned) {
            Some(PinningStatus::Pinned)
        } else {
            None
        }
    }
}

/// An error in this API's shape.
struct PinsvcError(StatusCode, String);

impl IntoResponse for PinsvcError {
    fn into_response(self) -> Response {
        ErrorShape::PinningService.response(self.0, &self.1)
    }
}

impl From<ApiError> for PinsvcError {
    fn from(error: ApiError) -> Self {
        Self(error.status, error.message)
    }
}

impl From<CommandError> for PinsvcError {
    fn from(error: CommandError) -> Self {
        ApiError::from(error).into()
    }
}

fn bad_request(message: impl Into<String>) -> PinsvcError {
    PinsvcError(StatusCode::BAD_REQUEST, message.into())
}

type PinsvcResult<T> = Result<T, PinsvcError>;

/// The API's routes over a peer, behind `credentials`.
pub fn router(peer: PeerHandle, credentials: Credentials) -> Router {
    let token = Router::new()
        .route("/token", post(crate::api::auth::token))
        .with_state(credentials.clone());
    Router::new()
        .route("/pins", get(list).post(add))
        .route(
            "/pins/{requestid}",
            get(status).post(replace).delete(remove),
        )
        .route("/health", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(peer)
        .merge(token)
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            crate::api::auth::require,
        ))
}

/// Serves the API until the listener fails, over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    peer: PeerHandle,
    credentials: Credentials,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let app = router(peer, credentials);
    crate::api::tls::serve(listener, app, tls).await
}

/// ipfs-cluster's notes on every status.
fn info() -> serde_json::Value {
    json!({
        "source": "IPFS cluster API",
        "warning1": "CID used for requestID. Conflicts possible",
        "warning2": "experimental",
    })
}

/// The `pin` object of a status.
fn pin_object(
    cid: &Cid,
    name: &str,
    origins: &[Multiaddr],
    meta: &BTreeMap<String, String>,
) -> serde_json::Value {
    let mut pin = json!({ "cid": cid.to_string() });
    if !name.is_empty() {
        pin["name"] = json!(name);
    }
    if !origins.is_empty() {
        pin["origins"] = json!(origins.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    }
    if !meta.is_empty() {
        pin["meta"] = json!(meta);
    }
    pin
}

/// A status from the cluster's view of a pin: its peers' IPFS addresses as delegates.
fn status_of(global: &GlobalPinInfo, status: PinningStatus) -> serde_json::Value {
    let delegates: Vec<String> = global
        .peer_map
        .values()
        .flat_map(|s| s.ipfs_peer_addresses.iter().map(|a| a.to_string()))
        .collect();
    json!({
        "requestid": global.cid.to_string(),
        "status": status.as_str(),
        "created": created_text(global.created),
        "pin": pin_object(&global.cid, &global.name, &global.origins, &global.metadata),
        "delegates": delegates,
        "info": info(),
    })
}

fn created_text(created: Option<UnixTime>) -> String {
    created
        .and_then(|t| t.to_rfc3339())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned())
}

/// The request id as a CID.
fn request_cid(text: &str) -> PinsvcResult<Cid> {
    text.parse()
        .map_err(|e| bad_request(format!("error decoding requestID: {text:?}: {e}")))
}

/// The cluster's view of one CID.
async fn global_status(peer: &PeerHandle, cid: Cid) -> PinsvcResult<GlobalPinInfo> {
    let daemon = api::daemon_status(peer, &cid).await;
    Ok(
        api::cluster_statuses(peer, vec![(cid, daemon)], false, false)
            .await?
            .pop()
            .expect("one CID in, one view out"),
    )
}

async fn status(
    State(peer): State<PeerHandle>,
    Path(requestid): Path<String>,
) -> PinsvcResult<Response> {
    let cid = request_cid(&requestid)?;
    let global = global_status(&peer, cid).await?;
    match PinningStatus::of(&global) {
        Some(status) => Ok(Json(status_of(&global, status)).into_response()),
        None => Err(PinsvcError(StatusCode::NOT_FOUND, "pin not found".into())),
    }
}

/// The body of `POST /pins`: the spec's `Pin`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    cid: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
}

/// A request body as read, or why it could not be (too large, cut short).
type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The cluster pin a request body asks for, taken at `now` (the cluster's time).
fn pin_from_body(body: Body, now: UnixTime) -> PinsvcResult<Pin> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            PinsvcError(
                status,
                format!("request body too large: a pin is at most {MAX_BODY_BYTES} bytes of JSON"),
            )
        } else {
            PinsvcError(status, rejection.body_text())
        }
    })?;
    let body: PinBody = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("error decoding request body: {e}")))?;
    let cid = api::parse_cid(&body.cid)?;
    let name = body.name.unwrap_or_default();
    if name.chars().count() > MAX_NAME {
        return Err(bad_request(format!(
            "pin name is over {MAX_NAME} characters"
        )));
    }
    let origins = body
        .origins
        .unwrap_or_default()
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .map_err(|e| bad_request(format!("origins {a:?}: {e}")))
        })
        .collect::<PinsvcResult<Vec<_>>>()?;
    let mut pin = Pin::new(cid, now);
    pin.name = name;
    pin.origins = origins;
    pin.metadata = body.meta.unwrap_or_default();
    Ok(pin)
}

/// The answer to a new pin: queued, with the allocated peers' daemons (every peer's for a
/// pin everywhere) as delegates.
async fn queued(peer: &PeerHandle, pin: &Pin) -> PinsvcResult<Response> {
    let peers = peer.ask(|reply| Command::Peers { reply }).await?;
    let delegates: Vec<String> = peers
        .iter()
        .filter(|p| pin.allocations.is_empty() || pin.allocations.contains(&p.id))
        .flat_map(|p| p.ipfs_addresses.iter().map(|a| a.to_string()))
        .collect();
    let body = json!({
        "requestid": pin.cid.to_string(),
        "status": PinningStatus::Queued.as_str(),
        "created": created_text(pin.timestamp),
        "pin": pin_object(&pin.cid, &pin.name, &pin.origins, &pin.metadata),
        "delegates": delegates,
        "info": info(),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn add(State(peer): State<PeerHandle>, body: Body) -> PinsvcResult<Response> {
    let pin = api::pin_in_cluster(&peer, pin_from_body(body, peer.clock.now())?).await?;
    queued(&peer, &pin).await
}

/// Replaces the pin `requestid` with the body's: the new pin is added, then the old one
/// removed (unless they are the same CID).
async fn replace(
    State(peer): State<PeerHandle>,
    Path(requestid): Path<String>,
    body: Body,
) -> PinsvcResult<Response> {
    let old = request_cid(&requestid)?;
    let mut pin = pin_from_body(body, peer.clock.now())?;
    if peer
        .ask(|reply| Command::GetPin { cid: old, reply })
        .await?
        .is_none()
    {
        return Err(PinsvcError(StatusCode::NOT_FOUND, "pin not found".into()));
    }
    if pin.cid != old {
        pin.pin_update = None;
    }
    let pin = api::pin_in_cluster(&peer, pin).await?;
    if pin.cid != old {
        api::unpin_in_cluster(&peer, old).await?;
    }
    queued(&peer, &pin).await
}

async fn remove(
    State(peer): State<PeerHandle>,
    Path(requestid): Path<String>,
) -> PinsvcResult<StatusCode> {
    let cid = request_cid(&requestid)?;
    if peer
        .ask(|reply| Command::GetPin { cid, reply })
        .await?
        .is_none()
    {
        return Err(PinsvcError(StatusCode::NOT_FOUND, "pin not found".into()));
    }
    api::unpin_in_cluster(&peer, cid).await?;
    Ok(StatusCode::ACCEPTED)
}

/// How `name` is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    Exact,
    Iexact,
    Partial,
    Ipartial,
}

/// A list's filters (the spec's query parameters).
struct Filters {
    cids: Vec<Cid>,
    name: Option<(String, Match)>,
    statuses: Vec<PinningStatus>,
    before: Option<UnixTime>,
    after: Option<UnixTime>,
    limit: usize,
    meta: BTreeMap<String, String>,
}

impl Filters {
    fn from_query(query: &HashMap<String, String>) -> PinsvcResult<Self> {
        let cids = match query.get("cid") {
            Some(text) => text
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| {
                    c.parse()
                        .map_err(|e| bad_request(format!("error decoding cid {c}: {e}")))
                })
                .collect::<PinsvcResult<_>>()?,
            None => Vec::new(),
        };
        let strategy = match query.get("match").map(String::as_str) {
            None | Some("") | Some("exact") => Match::Exact,
            Some("iexact") => Match::Iexact,
            Some("partial") => Match::Partial,
            Some("ipartial") => Match::Ipartial,
            Some(other) => {
                return Err(bad_request(format!(
                    "match {other:?}: use exact, iexact, partial or ipartial"
                )))
            }
        };
        let name = match query.get("name") {
            Some(name) if name.chars().count() > MAX_NAME => {
                return Err(bad_request(format!(
                    "error in 'name' query param: longer than {MAX_NAME} characters"
                )))
            }
            Some(name) if !name.is_empty() => Some((name.clone(), strategy)),
            _ => None,
        };
        let statuses = match query.get("status").filter(|s| !s.is_empty()) {
            Some(text) => text
                .split(',')
                .map(|s| {
                    PinningStatus::parse(s.trim()).ok_or_else(|| {
                        bad_request(format!(
                            "error decoding 'status' query param: {s:?} is not queued, pinning, pinned or failed"
                        ))
                    })
                })
                .collect::<PinsvcResult<_>>()?,
            // As Go v1.1.6 does (the spec says `pinned`): clients written for Go's
            // service, `ipfs pin remote ls` among them, name the statuses they want.
            None => PinningStatus::ALL.to_vec(),
        };
        let time = |key: &str| -> PinsvcResult<Option<UnixTime>> {
            match query.get(key) {
                Some(text) => UnixTime::parse_rfc3339(text)
                    .map_err(|e| {
                        bad_request(format!("error decoding '{key}' query param: {text}: {e}"))
                    })
                    .map(|t| t.or(Some(UnixTime(0)))),
                None => Ok(None),
            }
        };
        let limit = match query.get("limit") {
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(bad_request(format!(
                        "error parsing 'limit' query param: {text:?} is not a number from 1 to {MAX_LIMIT}"
                    )))
                }
            },
            None => DEFAULT_LIMIT,
        };
        let meta = match query.get("meta") {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                bad_request(format!(
                    "error unmarshalling 'meta' query param: {text}: {e}"
                ))
            })?,
            None => BTreeMap::new(),
        };
        Ok(Self {
            cids,
            name,
            statuses,
            before: time("before")?,
            after: time("after")?,
            limit,
            meta,
        })
    }

    /// The pin's status when the filters let it through.
    fn admit(&self, global: &GlobalPinInfo) -> Option<PinningStatus> {
        let status = PinningStatus::of(global)?;
        if !self.statuses.contains(&status) {
            return None;
        }
        let created = global.created.unwrap_or(UnixTime(0));
        if self.before.is_some_and(|before| created >= before)
            || self.after.is_some_and(|after| created <= after)
        {
            return None;
        }
        if let Some((name, strategy)) = &self.name {
            let matched = match strategy {
                Match::Exact => &global.name == name,
                Match::Iexact => global.name.to_lowercase() == name.to_lowercase(),
                Match::Partial => global.name.contains(name.as_str()),
                Match::Ipartial => global.name.to_lowercase().contains(&name.to_lowercase()),
            };
            if !matched {
                return None;
            }
        }
        self.meta
            .iter()
            .all(|(k, v)| global.metadata.get(k) == Some(v))
            .then_some(status)
    }
}

/// The newest `limit` admitted statuses, newest first, and how many were admitted.
struct Newest {
    limit: usize,
    count: usize,
    /// (created, CID text, status): a min-heap through `Reverse`.
    kept: BinaryHeap<std::cmp::Reverse<(UnixTime, String, OrderedValue)>>,
}

/// A status JSON, ordered by nothing (ties in the heap are broken by the CID before it).
struct OrderedValue(serde_json::Value);

impl PartialEq for OrderedValue {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrderedValue {}
impl PartialOrd for OrderedValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrderedValue {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Newest {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            count: 0,
            kept: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, global: &GlobalPinInfo, status: PinningStatus) {
        self.count += 1;
        let key = (
            global.created.unwrap_or(UnixTime(0)),
            global.cid.to_string(),
        );
        if self.kept.len() == self.limit {
            match self.kept.peek() {
                Some(std::cmp::Reverse((created, cid, _))) if (created, cid) < (&key.0, &key.1) => {
                    self.kept.pop();
                }
                _ => return,
            }
        }
        self.kept.push(std::cmp::Reverse((
            key.0,
            key.1,
            OrderedValue(status_of(global, status)),
        )));
    }

    fn into_answer(self) -> serde_json::Value {
        let mut kept: Vec<_> = self.kept.into_iter().map(|r| r.0).collect();
        kept.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
        json!({
            "count": self.count,
            "results": kept.into_iter().map(|(_, _, v)| v.0).collect::<Vec<_>>(),
        })
    }
}

async fn list(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> PinsvcResult<Response> {
    let filters = Filters::from_query(&query)?;
    let mut newest = Newest::new(filters.limit);
    let mut offer_all = |globals: Vec<GlobalPinInfo>| {
        for global in &globals {
            if let Some(status) = filters.admit(global) {
                newest.offer(global, status);
            }
        }
    };
    let daemon = api::daemon_pins(&peer).await?;
    if !filters.cids.is_empty() {
        for chunk in filters.cids.chunks(crate::peer::PAGE) {
            let answers = api::answers_from(&daemon, chunk);
            offer_all(api::cluster_statuses(&peer, answers, false, false).await?);
        }
    } else {
        let mut after = None;
        loop {
            let (infos, next) =
                api::status_page(&peer, after, Arc::clone(&daemon), StatusFilter::ALL).await?;
            offer_all(api::with_peer_views(&peer, infos, false).await?);
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(Json(newest.into_answer()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinfold_core::tracker::{PinInfo, PinInfoShort};

    fn peer(seed: u8) -> libp2p::PeerId {
        let key = libp2p::identity::ed25519::SecretKey::try_from_bytes([seed; 32]).unwrap();
        libp2p::identity::PublicKey::from(libp2p::identity::ed25519::Keypair::from(key).public())
            .to_peer_id()
    }

    fn global(statuses: &[TrackerStatus]) -> GlobalPinInfo {
        let cid: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
            .parse()
            .unwrap();
        let pin = Pin::new(cid, UnixTime(1_700_000_000));
        let mut infos = statuses.iter().enumerate().map(|(n, status)| {
            PinInfo::of_pin(
                &pin,
                peer(n as u8 + 1),
                PinInfoShort {
                    status: *status,
                    ..PinInfoShort::default()
                },
            )
        });
        let mut global = GlobalPinInfo::new(infos.next().unwrap());
        for info in infos {
            global.add(info);
        }
        global
    }

    #[test]
    fn the_status_is_the_most_telling_of_the_peers_views() {
        use TrackerStatus::*;
        let of = |s: &[TrackerStatus]| PinningStatus::of(&global(s));
        assert_eq!(of(&[Pinned, Remote, PinError]), Some(PinningStatus::Failed));
        assert_eq!(of(&[Pinned, ClusterError]), Some(PinningStatus::Failed));
        assert_eq!(
            of(&[Pinned, PinQueued, Pinning]),
            Some(PinningStatus::Queued)
        );
        assert_eq!(of(&[Pinned, Pinning, Remote]), Some(PinningStatus::Pinning));
        assert_eq!(of(&[Pinned, Remote]), Some(PinningStatus::Pinned));
        assert_eq!(of(&[Remote, Unpinned]), None);
        assert_eq!(of(&[Unpinning]), None);
    }

    #[test]
    fn lists_keep_the_newest_and_count_them_all() {
        let mut newest = Newest::new(2);
        for (n, seconds) in [30u64, 10, 50, 20].into_iter().enumerate() {
            let mut g = global(&[TrackerStatus::Pinned]);
            g.created = Some(UnixTime(seconds));
            g.name = format!("pin {n}");
            newest.offer(&g, PinningStatus::Pinned);
        }
        let answer = newest.into_answer();
        assert_eq!(answer["count"], 4);
        let names: Vec<&str> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["pin"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pin 2", "pin 0"]);
    }

    #[test]
    fn filters_read_the_spec_parameters_and_refuse_bad_ones() {
        let query = |pairs: &[(&str, &str)]| {
            Filters::from_query(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let defaults = query(&[]).ok().unwrap();
        assert_eq!(defaults.statuses, PinningStatus::ALL);
        assert_eq!(defaults.limit, DEFAULT_LIMIT);
        let some = query(&[
            ("status", "queued,failed"),
            ("name", "Photo"),
            ("match", "ipartial"),
            ("meta", r#"{"app":"x"}"#),
            ("after", "2020-01-01T00:00:00Z"),
            ("limit", "1000"),
        ])
        .ok()
        .unwrap();
        assert_eq!(
            some.statuses,
            [PinningStatus::Queued, PinningStatus::Failed]
        );
        assert_eq!(some.name, Some(("Photo".into(), Match::Ipartial)));
        assert_eq!(some.meta["app"], "x");
        assert_eq!(some.after, Some(UnixTime(1_577_836_800)));
        for bad in [
            ("status", "lost"),
            ("limit", "0"),
            ("limit", "1001"),
            ("match", "fuzzy"),
            ("meta", "[1]"),
            ("before", "yesterday"),
            ("cid", "nope"),
        ] {
            assert!(query(&[bad]).is_err(), "{bad:?}");
        }
        let mut g = global(&[TrackerStatus::Pinned]);
        g.name = "Holiday photos".into();
        g.metadata.insert("app".into(), "x".into());
        g.created = Some(UnixTime(1_600_000_000));
        assert_eq!(
            query(&[
                ("name", "PHOTO"),
                ("match", "ipartial"),
                ("meta", r#"{"app":"x"}"#)
            ])
            .ok()
            .unwrap()
            .admit(&g),
            Some(PinningStatus::Pinned)
        );
        assert_eq!(
            query(&[("name", "photo"), ("match", "exact")])
                .ok()
                .unwrap()
                .admit(&g),
            None
        );
        assert_eq!(
            query(&[("before", "2020-01-01T00:00:00Z")])
                .ok()
                .unwrap()
                .admit(&g),
            None
        );
        assert_eq!(query(&[("status", "failed")]).ok().unwrap().admit(&g), None);
    }
}
