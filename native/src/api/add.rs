//! `/add`, as Go ipfs-cluster's single (unsharded) adder: the destinations are allocated
//! first, the files are added through this peer's IPFS daemon, the blocks are streamed to
//! the other destinations' daemons over `IPFSConnector.BlockStream` (pinfold and Go peers
//! alike), then the root is pinned in the cluster on those destinations. A destination
//! that fails is left out, as long as one holds the blocks.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cid::Cid;
use futures::stream::{self, StreamExt, TryStreamExt};
use libp2p::PeerId;
use pinfold_core::codec::gorpc::api::NodeWithMeta;
use pinfold_core::codec::gorpc::ServiceId;
use pinfold_core::codec::msgpack::Value;
use pinfold_core::pin::{Pin, UnixTime};
use pinfold_core::rest::AddedOutput;
use tokio::sync::mpsc;

use super::rest::{line, pin_from_query, pin_in_cluster, stream_lines, ApiError, ApiResult};
use crate::ipfs::{Added, Ipfs, IpfsError};
use crate::peer::{Command, PeerHandle};

/// Go's `adder.ErrBlockAdder`: no destination took the blocks.
const NO_DESTINATION_TOOK_THE_BLOCKS: &str = "failed to put block on all destinations";

/// Blocks queued for one destination before the slowest holds the others back.
const BLOCKS_QUEUED_PER_DESTINATION: usize = 16;

/// How long a destination may take nothing before it is left out.
const DESTINATION_STALL: Duration = Duration::from_secs(30);

/// `/add`'s options handed to the daemon's `add`, by their ipfs-cluster name.
const ADD_OPTIONS_FOR_DAEMON: [&str; 5] = [
    "chunker",
    "raw-leaves",
    "cid-version",
    "hash",
    "wrap-with-directory",
];

/// What an add asks for, from ipfs-cluster's `/add` options.
#[derive(Clone, Debug)]
pub(crate) struct AddRequest {
    /// Add the files without pinning the root in the cluster.
    no_pin: bool,
    /// Put the blocks on this peer's daemon only.
    local: bool,
    /// The body is a CAR file, imported whole, instead of files.
    car: bool,
    /// The options handed to the daemon's `add`.
    daemon_query: Vec<(&'static str, String)>,
    /// The pin of the root, but for its CID.
    template: Pin,
}

impl AddRequest {
    /// The add `query` asks for, taken at `now` (the cluster's time). `recursive`, `hidden`,
    /// `progress` and `quiet` change nothing here: the client chooses the files, and the
    /// daemon adds on this peer and answers as it goes.
    pub(crate) fn from_query(query: &HashMap<String, String>, now: UnixTime) -> ApiResult<Self> {
        let flag = |key: &str| -> ApiResult<bool> {
            match query.get(key).map(String::as_str) {
                None | Some("false") => Ok(false),
                Some("true") | Some("") => Ok(true),
                Some(other) => Err(ApiError::bad_request(format!(
                    "parameter {key}: {other:?} is not true or false"
                ))),
            }
        };
        if flag("shard")? {
            return Err(ApiError::bad_request(
                "sharding is not supported: add without shard=true",
            ));
        }
        let car = match query.get("format").map(String::as_str) {
            None | Some("") | Some("unixfs") => false,
            Some("car") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "format {other:?} is not supported: use unixfs or car"
                )))
            }
        };
        let mut daemon_query: Vec<(&'static str, String)> = ADD_OPTIONS_FOR_DAEMON
            .iter()
            .filter_map(|key| query.get(*key).map(|v| (*key, v.clone())))
            .collect();
        if flag("nocopy")? {
            if car {
                return Err(ApiError::bad_request(
                    "nocopy adds files by reference: a CAR file's blocks are imported, add it without nocopy",
                ));
            }
            daemon_query.push(("nocopy", "true".to_owned()));
        }
        match query.get("layout").map(String::as_str) {
            None | Some("") | Some("balanced") => {}
            Some("trickle") => daemon_query.push(("trickle", "true".to_owned())),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "layout {other:?}: use balanced or trickle"
                )))
            }
        }
        Ok(Self {
            no_pin: flag("no-pin")?,
            local: flag("local")?,
            car,
            daemon_query,
            template: pin_from_query(Cid::default(), query, now)?,
        })
    }
}

/// `/add`: adds the files of a multipart body as [`add_files`] does, streaming one
/// ipfs-cluster `AddedOutput` per line; with `stream-channels=false`, one JSON array of
/// them, sent once the root is pinned, as Go's adder gives it.
pub(crate) async fn add(
    State(peer): State<PeerHandle>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let request = AddRequest::from_query(&query, peer.clock.now())?;
    let stream_channels = query.get("stream-channels").map(String::as_str) != Some("false");
    let outputs = add_files(peer, request, &headers, body).await?;
    if stream_channels {
        return Ok(stream_lines(outputs.map(|output| output.and_then(|o| line(&o)))).await);
    }
    let outputs: Vec<AddedOutput> = outputs.try_collect().await?;
    Ok(Json(outputs).into_response())
}

/// Adds the files of a multipart body through this peer's IPFS daemon, giving one
/// `AddedOutput` per file and directory as the daemon adds them, then pins the root in the
/// cluster with the request's pin options (unless `no_pin`); the root comes last, with its
/// allocations. With `car` the body is a CAR file with one root, imported whole. The
/// blocks go to the destinations allocated before the add (every peer that pins, with
/// replication -1); with `local`, to this peer only, which then replaces the last
/// allocation unless user allocations are set.
pub(crate) async fn add_files(
    peer: PeerHandle,
    request: AddRequest,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<impl futures::Stream<Item = ApiResult<AddedOutput>> + Send + 'static> {
    let AddRequest {
        no_pin,
        local,
        car,
        daemon_query,
        mut template,
    } = request;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("multipart/form-data"))
        .ok_or_else(|| {
            ApiError::bad_request("/add takes a multipart/form-data body with the files to add")
        })?
        .to_owned();
    let ipfs = peer
        .ipfs
        .clone()
        .ok_or_else(|| ApiError::bad_request("this peer has no IPFS daemon to add files to"))?;
    let destinations = {
        let template = Box::new(template.clone());
        peer.ask(|reply| Command::AddDestinations { template, reply })
            .await??
    };
    let (destinations, remotes) = placement(peer.local, destinations, local, &template);
    if template.replication_factor_min >= 0 {
        template.allocations = destinations.clone();
    }
    let added = if car {
        let root = import_car(&ipfs, body, content_type).await?;
        let only = Added {
            name: String::new(),
            cid: root,
            size: 0,
        };
        stream::iter([Ok(only)]).boxed()
    } else {
        let upload = reqwest::Body::wrap_stream(body.into_data_stream());
        ipfs.add(upload, content_type, &daemon_query)
            .await
            .map_err(daemon_error)?
            .boxed()
    };
    let output = |added: &Added, allocations: &[PeerId]| AddedOutput {
        name: added.name.clone(),
        cid: added.cid.to_string(),
        bytes: 0,
        size: added.size,
        allocations: allocations.iter().map(PeerId::to_string).collect(),
    };
    // Every entry but the last goes out as it comes; the last is the root, sent once pinned.
    Ok(stream::unfold(
        (Box::pin(added), None::<Added>, false),
        move |(mut added, mut held, done)| {
            let (peer, template, ipfs) = (peer.clone(), template.clone(), ipfs.clone());
            let (destinations, remotes) = (destinations.clone(), remotes.clone());
            async move {
                if done {
                    return None;
                }
                loop {
                    match added.next().await {
                        Some(Ok(next)) => {
                            if let Some(previous) = held.replace(next) {
                                return Some((Ok(output(&previous, &[])), (added, held, false)));
                            }
                        }
                        Some(Err(error)) => {
                            let error = ApiError::bad_gateway(error.to_string());
                            return Some((Err(error), (added, None, true)));
                        }
                        None => break,
                    }
                }
                let root = held?;
                if let Err(error) =
                    place_blocks(&peer, &ipfs, root.cid, &destinations, &remotes).await
                {
                    return Some((Err(error), (added, None, true)));
                }
                let result = if no_pin {
                    Ok(output(&root, &[]))
                } else {
                    let pin = Pin {
                        cid: root.cid,
                        ..template
                    };
                    match pin_in_cluster(&peer, pin).await {
                        Ok(pin) => Ok(output(&root, &pin.allocations)),
                        Err(error) => Err(ApiError {
                            message: format!(
                                "added {} but could not pin it: {}",
                                root.cid, error.message
                            ),
                            ..error
                        }),
                    }
                };
                Some((result, (added, None, true)))
            }
        },
    ))
}

/// How much of a CAR upload is kept to read its header: the multipart part's headers, then
/// the CAR header, which names the roots and comes first.
const CAR_HEAD_BYTES: usize = 64 * 1024;

/// What the daemon refused is the client's to mend (400); a daemon that failed otherwise
/// is a bad gateway (502).
fn daemon_error(error: IpfsError) -> ApiError {
    match error {
        IpfsError::Daemon(message) => ApiError::bad_request(message),
        other => ApiError::bad_gateway(other.to_string()),
    }
}

/// Streams a CAR upload (multipart, the file first) into the daemon, keeping its first
/// bytes to read the root from the header: the root the cluster pins, which must be the
/// only one, as ipfs-cluster requires (the daemon names roots only when it pins them).
async fn import_car(ipfs: &Ipfs, body: Body, content_type: String) -> ApiResult<Cid> {
    let head = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = head.clone();
    let upload = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            let mut head = kept.lock().expect("never poisoned");
            let room = CAR_HEAD_BYTES.saturating_sub(head.len());
            head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
        chunk
    });
    ipfs.import_car(reqwest::Body::wrap_stream(upload), content_type)
        .await
        .map_err(daemon_error)?;
    let head = head.lock().expect("never poisoned");
    // The file's bytes start after the first part's headers.
    let file = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| &head[at + 4..])
        .ok_or_else(|| ApiError::bad_request("the upload has no file part"))?;
    let roots = crate::car::roots(file).map_err(|e| ApiError::bad_request(e.to_string()))?;
    match roots.as_slice() {
        [root] => Ok(*root),
        other => Err(ApiError::bad_request(format!(
            "the CAR file names {} roots: it needs exactly one, the DAG to pin \
             (its blocks are in the daemon, unpinned)",
            other.len()
        ))),
    }
}

/// Where the blocks go: the destinations the pin is allocated to (with `local`, this peer
/// replacing the last unless user allocations are set, as Go's adder does), and the
/// remote ones among them that the blocks are streamed to (none with `local`).
fn placement(
    this: PeerId,
    mut destinations: Vec<PeerId>,
    local: bool,
    template: &Pin,
) -> (Vec<PeerId>, Vec<PeerId>) {
    if !local {
        let remotes = destinations
            .iter()
            .copied()
            .filter(|p| *p != this)
            .collect();
        return (destinations, remotes);
    }
    if !destinations.contains(&this) && template.user_allocations.is_empty() {
        match destinations.last_mut() {
            Some(last) => *last = this,
            None => destinations.push(this),
        }
    }
    (destinations, Vec::new())
}

/// Puts the blocks of `root`'s DAG, which this peer's daemon holds, on the daemons of
/// `remotes`; fails when none of `destinations` holds them at the end (this peer counts
/// when it is one).
async fn place_blocks(
    peer: &PeerHandle,
    ipfs: &Ipfs,
    root: Cid,
    destinations: &[PeerId],
    remotes: &[PeerId],
) -> ApiResult<()> {
    if destinations.is_empty() {
        return Err(ApiError::internal(format!(
            "{NO_DESTINATION_TOOK_THE_BLOCKS}: no peer to allocate {root} to"
        )));
    }
    if remotes.is_empty() {
        return Ok(());
    }
    let failed = stream_blocks(peer, ipfs, root, remotes).await?;
    for (destination, error) in &failed {
        tracing::warn!(%root, %destination, %error, "could not put the added blocks on a destination");
    }
    let local_holds = destinations.contains(&peer.local);
    if !local_holds && failed.len() == remotes.len() {
        let reasons: Vec<String> = failed.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        return Err(ApiError::internal(format!(
            "{NO_DESTINATION_TOOK_THE_BLOCKS} ({})",
            reasons.join("; ")
        )));
    }
    Ok(())
}

/// Streams the blocks of `root`'s DAG from this peer's daemon to each of `remotes` over
/// `IPFSConnector.BlockStream`, all at once, at the pace of the slowest that still takes
/// them; returns those that failed, with why.
async fn stream_blocks(
    peer: &PeerHandle,
    ipfs: &Ipfs,
    root: Cid,
    remotes: &[PeerId],
) -> ApiResult<Vec<(PeerId, String)>> {
    let mut senders = Vec::with_capacity(remotes.len());
    let mut calls = Vec::with_capacity(remotes.len());
    for &remote in remotes {
        let (sender, receiver) = mpsc::channel::<Value>(BLOCKS_QUEUED_PER_DESTINATION);
        let rpc = peer.rpc.clone();
        calls.push(tokio::spawn(async move {
            let blocks = Box::pin(stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|block| (block, receiver))
            }));
            let service = ServiceId::new("IPFSConnector", "BlockStream");
            (
                remote,
                rpc.stream_from(remote, service, blocks, DESTINATION_STALL)
                    .await,
            )
        }));
        senders.push(sender);
    }
    let exported = ipfs.dag_export(&root).await;
    let mut local_error = None;
    match exported {
        Err(error) => local_error = Some(error),
        Ok(blocks) => {
            let mut blocks = std::pin::pin!(blocks);
            while let Some(block) = blocks.next().await {
                let (cid, data) = match block {
                    Ok(block) => block,
                    Err(error) => {
                        local_error = Some(error);
                        break;
                    }
                };
                let value = NodeWithMeta {
                    cumulative_size: data.len() as u64,
                    data,
                    cid,
                }
                .to_value();
                // A destination that stalls or ended its call is dropped from the rest.
                let mut next = 0;
                while next < senders.len() {
                    let sent =
                        tokio::time::timeout(DESTINATION_STALL, senders[next].send(value.clone()));
                    if matches!(sent.await, Ok(Ok(()))) {
                        next += 1;
                    } else {
                        senders.swap_remove(next);
                    }
                }
                if senders.is_empty() {
                    break;
                }
            }
        }
    }
    if let Some(error) = local_error {
        // Dropping the senders unfinished would end the calls as if every block were sent.
        for call in &calls {
            call.abort();
        }
        return Err(ApiError::bad_gateway(format!(
            "could not read the added blocks of {root} from this peer's IPFS daemon: {error}"
        )));
    }
    drop(senders);
    let mut failed = Vec::new();
    for (remote, call) in remotes.iter().zip(calls) {
        match call.await {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(error))) => failed.push((*remote, error)),
            Err(error) => failed.push((*remote, error.to_string())),
        }
    }
    Ok(failed)
}
