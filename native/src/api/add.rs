//! `/add`, as Go ipfs-cluster's single (unsharded) adder: the destinations are allocated
//! first, the files are added through this peer's IPFS daemon, the blocks are streamed to
//! the other destinations' daemons over `IPFSConnector.BlockStream` (pinfold and Go peers
//! alike), then the root is pinned in the cluster on those destinations. A destination
//! that fails is left out, as long as one holds the blocks.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cid::Cid;
use futures::stream::{self, StreamExt, TryStreamExt};
use libp2p::PeerId;
use pinfold_core::pin::{Pin, UnixTime};
use pinfold_core::rest::AddedOutput;

use super::block_fanout::place_blocks;
use super::rest::{line, pin_from_query, pin_in_cluster, stream_lines, ApiError, ApiResult};
use super::sharded_add::shard_dag;
use crate::ipfs::{Added, Ipfs, IpfsError};
use crate::peer::{Command, PeerHandle};

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
    /// Spread the DAG over the cluster in shards of the template's `shard_size`.
    shard: bool,
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
        let shard = flag("shard")?;
        if shard && flag("local")? {
            return Err(ApiError::bad_request(
                "local puts every block on this peer, shard spreads them over the cluster: use one",
            ));
        }
        if shard && flag("no-pin")? {
            return Err(ApiError::bad_request(
                "a sharded add is pinned shard by shard: add without no-pin",
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
            shard,
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
        shard,
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
    let placement = if shard {
        Placement::Sharded
    } else {
        let destinations = {
            let template = Box::new(template.clone());
            peer.ask(|reply| Command::AddDestinations { template, reply })
                .await??
        };
        let (destinations, remotes) = placement(peer.local, destinations, local, &template);
        if template.replication_factor_min >= 0 {
            template.allocations = destinations.clone();
        }
        Placement::Single {
            destinations,
            remotes,
            no_pin,
        }
    };
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
    // Every entry but the last goes out as it comes; the last is the root, sent once pinned.
    let outputs = stream::unfold(
        (Box::pin(added), None::<Added>, false),
        move |(mut added, mut held, done)| {
            let (peer, template, ipfs) = (peer.clone(), template.clone(), ipfs.clone());
            let placement = placement.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match added.next().await {
                        Some(Ok(next)) => {
                            if let Some(previous) = held.replace(next) {
                                let output = vec![Ok(output(&previous, &[]))];
                                return Some((output, (added, held, false)));
                            }
                        }
                        Some(Err(error)) => {
                            let error = ApiError::bad_gateway(error.to_string());
                            return Some((vec![Err(error)], (added, None, true)));
                        }
                        None => break,
                    }
                }
                let root = held?;
                let outputs = finish_add(&peer, &ipfs, root, template, placement).await;
                Some((outputs, (added, None, true)))
            }
        },
    );
    Ok(outputs.flat_map(stream::iter))
}

/// Where an add's blocks go.
#[derive(Clone)]
enum Placement {
    /// All of them to `destinations`, streamed to the `remotes` among them; the root is
    /// pinned there unless `no_pin`.
    Single {
        destinations: Vec<PeerId>,
        remotes: Vec<PeerId>,
        no_pin: bool,
    },
    /// Spread in shards, each allocated on its own.
    Sharded,
}

fn output(added: &Added, allocations: &[PeerId]) -> AddedOutput {
    AddedOutput {
        name: added.name.clone(),
        cid: added.cid.to_string(),
        bytes: 0,
        size: added.size,
        allocations: allocations.iter().map(PeerId::to_string).collect(),
    }
}

/// Places the blocks of the added `root` and pins it with `template`'s options: the
/// outputs that end the add, the root's last.
async fn finish_add(
    peer: &PeerHandle,
    ipfs: &Ipfs,
    root: Added,
    template: Pin,
    placement: Placement,
) -> Vec<ApiResult<AddedOutput>> {
    let (destinations, remotes, no_pin) = match placement {
        Placement::Sharded => {
            return match shard_dag(peer, ipfs, root.cid, &template).await {
                Ok(outputs) => outputs
                    .into_iter()
                    .chain([output(&root, &[])])
                    .map(Ok)
                    .collect(),
                Err(error) => vec![Err(error)],
            }
        }
        Placement::Single {
            destinations,
            remotes,
            no_pin,
        } => (destinations, remotes, no_pin),
    };
    if let Err(error) = place_blocks(peer, ipfs, root.cid, &destinations, &remotes).await {
        return vec![Err(error)];
    }
    if no_pin {
        return vec![Ok(output(&root, &[]))];
    }
    let pin = Pin {
        cid: root.cid,
        ..template
    };
    vec![match pin_in_cluster(peer, pin).await {
        Ok(pin) => Ok(output(&root, &pin.allocations)),
        Err(error) => Err(ApiError {
            message: format!("added {} but could not pin it: {}", root.cid, error.message),
            ..error
        }),
    }]
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
