//! Go ipfs-cluster's RPC served to the other peers (go-libp2p-gorpc on
//! [`gorpc::PROTOCOL`]), so that Go peers in the cluster get this peer's real answers in
//! `ipfs-cluster-ctl peers ls`, `status`, `recover`, `health graph`, `ipfs gc` and `add`.
//!
//! Each call is a stream of its own, served in a task of its own (at most
//! [`MAX_CALLS`] at once; more are reset). Who may call what is Go's `DefaultRPCPolicy`
//! ([`gorpc::access`]): open methods for any peer of the swarm, trusted ones for the
//! `consensus.crdt.trusted_peers` (and this peer), none of the closed ones. The answers
//! come from the same places as the REST API's local views: the peer task's commands
//! and the IPFS daemon.
//!
//! [`Client`] makes the same calls on other peers: the peer requests the node sends go to
//! peers that speak only this RPC (Go peers) as the calls Go would make.

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use pinfold_core::codec::gorpc::api::{self, NodeWithMeta};
use pinfold_core::codec::gorpc::{
    self, Access, FrameReader, GorpcError, ResponseHeader, ServiceId,
};
use pinfold_core::codec::msgpack::{Limits, Value};
use pinfold_core::codec::peer_request::{Connections, PeerRequest, PeerResponse, StatusSummary};
use pinfold_core::crdt::Trust;
use pinfold_core::net::peer_request::REPO_GC_TIMEOUT;
use pinfold_core::rest::Id;
use pinfold_core::tracker::{DaemonPins, PinInfo, StatusFilter};
use tokio::sync::Semaphore;

use super::{repo_gc, Command, PeerHandle};
use crate::api::rest;

/// Calls served at once; a call beyond them is reset.
pub const MAX_CALLS: usize = 256;

/// How long a caller may take to send each value of its call.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a call needs to be answered.
pub struct Server {
    pub handle: PeerHandle,
    pub trust: Trust,
    pub peername: String,
}

/// Serves the calls arriving on `incoming` until the swarm stops.
pub async fn serve(mut incoming: libp2p_stream::IncomingStreams, server: Arc<Server>) {
    let calls = Arc::new(Semaphore::new(MAX_CALLS));
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(permit) = calls.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many RPC calls at once: one refused");
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = server.serve_call(peer, stream).await {
                tracing::debug!(%peer, %error, "RPC call ended with an error");
            }
        });
    }
}

/// Why a call could not be served to its end.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("the stream failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the caller sent nothing for {0:?}")]
    Timeout(Duration),
    #[error("the caller closed the stream before its call was whole")]
    Closed,
    #[error(transparent)]
    Frame(#[from] GorpcError),
}

/// One call's stream: values read as they arrive, frames written whole.
struct CallStream {
    stream: Stream,
    reader: FrameReader,
    ended: bool,
    /// How long the other side may stay silent.
    read_timeout: Duration,
}

impl CallStream {
    /// The caller's next value; `None` once it closed its side.
    async fn next_value(&mut self) -> Result<Option<Value>, CallError> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some((value, bytes)) = self.reader.next_frame()? {
                if tracing::enabled!(tracing::Level::TRACE) {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    tracing::trace!(frame = hex, "RPC value received");
                }
                return Ok(Some(value));
            }
            if self.ended {
                return if self.reader.has_partial() {
                    Err(CallError::Closed)
                } else {
                    Ok(None)
                };
            }
            let read = tokio::time::timeout(self.read_timeout, self.stream.read(&mut buffer))
                .await
                .map_err(|_| CallError::Timeout(self.read_timeout))??;
            if read == 0 {
                self.ended = true;
            } else {
                self.reader.push(&buffer[..read]);
            }
        }
    }

    async fn reply(&mut self, header: &ResponseHeader, body: &Value) -> Result<(), CallError> {
        self.stream.write_all(&header.frame(body)).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn close(mut self) -> Result<(), CallError> {
        self.stream.close().await?;
        Ok(())
    }
}

impl Server {
    fn allows(&self, caller: PeerId, service: &ServiceId) -> bool {
        match gorpc::access(service) {
            Access::Open => true,
            Access::Trusted => caller == self.handle.local || self.trust.trusts(&caller),
            Access::Closed => false,
        }
    }

    async fn serve_call(&self, caller: PeerId, stream: Stream) -> Result<(), CallError> {
        let mut call = CallStream {
            stream,
            reader: FrameReader::new(Limits::RPC_ARGUMENT),
            ended: false,
            read_timeout: READ_TIMEOUT,
        };
        let first = call.next_value().await?.ok_or(CallError::Closed)?;
        let service = ServiceId::from_value(&first)?;
        tracing::debug!(%caller, %service, "RPC call");
        if !self.allows(caller, &service) {
            tracing::debug!(%caller, %service, "RPC call refused: Go's policy does not let this peer call it");
            call.reply(&ResponseHeader::denied(&service), &Value::Nil)
                .await?;
            return call.close().await;
        }
        if gorpc::is_streaming(&service) {
            self.serve_stream(&service, &mut call).await?;
        } else {
            let argument = call.next_value().await?.ok_or(CallError::Closed)?;
            let (header, body) = match self.unary(&service, &argument).await {
                Some(Ok(body)) => (ResponseHeader::ok(&service), body),
                Some(Err(error)) => (
                    ResponseHeader::failed(&service, error, gorpc::ErrorType::NonRpc),
                    Value::Nil,
                ),
                None => (ResponseHeader::unknown(&service), Value::Nil),
            };
            call.reply(&header, &body).await?;
        }
        call.close().await
    }

    /// A unary method's reply, or why it failed; `None` for a method not served here.
    async fn unary(&self, service: &ServiceId, argument: &Value) -> Option<Result<Value, String>> {
        let cid = || api::cid_from_value(argument, "Cid").map_err(|e| e.to_string());
        Some(match (service.name.as_str(), service.method.as_str()) {
            ("Cluster", "ID") => self.id().await.map(|id| api::id_value(&id)),
            ("Cluster", "Version") => Ok(api::version_value(env!("CARGO_PKG_VERSION"))),
            ("Cluster", "PeerAdd") => self.peer_added(argument).await,
            ("Cluster", "PeerRemove") => self.remove_peer(argument).await,
            ("PinTracker", "Status") => match cid() {
                Ok(cid) => self.status(cid, false).await,
                Err(error) => Err(error),
            },
            ("PinTracker", "Recover") | ("Cluster", "RecoverLocal") => match cid() {
                Ok(cid) => self.status(cid, true).await,
                Err(error) => Err(error),
            },
            ("Cluster", "RepoGCLocal") => {
                let gc = repo_gc(
                    self.handle.ipfs.as_ref(),
                    self.handle.local,
                    self.peername.clone(),
                )
                .await;
                Ok(api::repo_gc_value(&gc))
            }
            ("IPFSConnector", "SwarmPeers") => match &self.handle.ipfs {
                Some(ipfs) => ipfs
                    .swarm_peers()
                    .await
                    .map(|peers| Value::Array(peers.iter().map(api::peer_value).collect()))
                    .map_err(|e| e.to_string()),
                None => Ok(Value::Array(Vec::new())),
            },
            ("IPFSConnector", "RepoStat") => match &self.handle.ipfs {
                Some(ipfs) => ipfs
                    .repo_stat()
                    .await
                    .map(|stat| api::repo_stat_value(stat.repo_size, stat.storage_max))
                    .map_err(|e| e.to_string()),
                None => Err(NO_DAEMON.to_owned()),
            },
            _ => return None,
        })
    }

    /// Serves a streaming method: reads the caller's arguments to their end, answering
    /// as they come (`BlockStream`) or once they are in.
    async fn serve_stream(
        &self,
        service: &ServiceId,
        call: &mut CallStream,
    ) -> Result<(), CallError> {
        match (service.name.as_str(), service.method.as_str()) {
            ("IPFSConnector", "BlockStream") => {
                while let Some(value) = call.next_value().await? {
                    if let Err(error) = self.store_block(&value).await {
                        return Self::fail(service, call, error).await;
                    }
                }
                Ok(())
            }
            ("Cluster", "IDStream") => {
                while call.next_value().await?.is_some() {}
                match self.id().await {
                    Ok(id) => {
                        call.reply(&ResponseHeader::ok(service), &api::id_value(&id))
                            .await
                    }
                    Err(error) => Self::fail(service, call, error).await,
                }
            }
            ("Cluster", "Peers") => {
                while call.next_value().await?.is_some() {}
                match self.peer_ids().await {
                    Ok(ids) => {
                        for id in ids {
                            call.reply(&ResponseHeader::ok(service), &api::id_value(&id))
                                .await?;
                        }
                        Ok(())
                    }
                    Err(error) => Self::fail(service, call, error).await,
                }
            }
            ("PinTracker", "StatusAll") => {
                let mut filter = StatusFilter::ALL;
                while let Some(value) = call.next_value().await? {
                    filter = api::filter_from_value(&value)?;
                }
                self.stream_statuses(service, call, filter, false).await
            }
            ("Cluster", "RecoverAllLocal") => {
                while call.next_value().await?.is_some() {}
                self.stream_statuses(service, call, StatusFilter::ERROR, true)
                    .await
            }
            _ => {
                call.reply(&ResponseHeader::unknown(service), &Value::Nil)
                    .await
            }
        }
    }

    /// Ends a call with the method's error, as Go does: the error header and nil.
    async fn fail(
        service: &ServiceId,
        call: &mut CallStream,
        error: String,
    ) -> Result<(), CallError> {
        let header = ResponseHeader::failed(service, error, gorpc::ErrorType::NonRpc);
        call.reply(&header, &Value::Nil).await
    }

    async fn id(&self) -> Result<Id, String> {
        rest::own_id(&self.handle).await.map_err(|e| e.message)
    }

    /// The peerset as `Cluster.Peers` lists it: this peer whole, the others by id and name.
    async fn peer_ids(&self) -> Result<Vec<Id>, String> {
        rest::peer_ids(&self.handle).await.map_err(|e| e.message)
    }

    /// `Cluster.PeerAdd`, which a peer calls on the peer it joins through. Under Raft the
    /// joining peer becomes a Raft peer once the cluster commits it; under CRDT consensus
    /// the peerset is whoever pings, so there is nothing to add. The answer is the joining
    /// peer's own `Cluster.ID`, asked back as Go asks it.
    async fn peer_added(&self, argument: &Value) -> Result<Value, String> {
        let joining = api::peer_from_value(argument, "peer.ID").map_err(|e| e.to_string())?;
        self.handle
            .ask(|reply| Command::AddPeer {
                peer: joining,
                reply,
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let id = self.handle.rpc.id(joining).await?;
        Ok(api::id_value(&id))
    }

    /// Removes a peer from the cluster (its pins re-allocated to the others), as a trusted
    /// peer that leaves asks.
    async fn remove_peer(&self, argument: &Value) -> Result<Value, String> {
        let peer = api::peer_from_value(argument, "peer.ID").map_err(|e| e.to_string())?;
        let moved = self
            .handle
            .ask(|reply| Command::RemovePeer { peer, reply })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        tracing::info!(%peer, moved, "a peer left the cluster: its pins were re-allocated");
        Ok(api::empty())
    }

    /// This peer's status of `cid`, after re-queueing it if in error with `recover`.
    async fn status(&self, cid: Cid, recover: bool) -> Result<Value, String> {
        let daemon = rest::daemon_status(&self.handle, &cid).await;
        let infos = self
            .handle
            .ask(|reply| Command::Status {
                cids: vec![(cid, daemon)],
                recover,
                reply,
            })
            .await
            .map_err(|e| e.to_string())?;
        let info = infos
            .into_iter()
            .next()
            .ok_or_else(|| format!("no status of {cid}"))?;
        Ok(api::pin_info_value(&info))
    }

    /// This peer's statuses of every pin that passes `filter`, a reply each, page by
    /// page; with `recover`, those in error are re-queued first.
    async fn stream_statuses(
        &self,
        service: &ServiceId,
        call: &mut CallStream,
        filter: StatusFilter,
        recover: bool,
    ) -> Result<(), CallError> {
        let daemon = if filter.needs_daemon_pins() {
            match rest::daemon_pins(&self.handle).await {
                Ok(daemon) => daemon,
                Err(error) => return Self::fail(service, call, error.message).await,
            }
        } else {
            Arc::new(DaemonPins::new())
        };
        let mut after = None;
        loop {
            let page = self
                .handle
                .ask(|reply| Command::Statuses {
                    after,
                    daemon: daemon.clone(),
                    filter,
                    reply,
                })
                .await;
            let (infos, next): (Vec<PinInfo>, Option<Cid>) = match page {
                Ok(page) => page,
                Err(error) => return Self::fail(service, call, error.to_string()).await,
            };
            let infos = if recover && !infos.is_empty() {
                let answers =
                    rest::answers_from(&daemon, &infos.iter().map(|i| i.cid).collect::<Vec<_>>());
                match self
                    .handle
                    .ask(|reply| Command::Status {
                        cids: answers,
                        recover: true,
                        reply,
                    })
                    .await
                {
                    Ok(infos) => infos,
                    Err(error) => return Self::fail(service, call, error.to_string()).await,
                }
            } else {
                infos
            };
            for info in &infos {
                call.reply(&ResponseHeader::ok(service), &api::pin_info_value(info))
                    .await?;
            }
            match next {
                Some(cid) => after = Some(cid),
                None => return Ok(()),
            }
        }
    }

    /// Puts a block an adder streamed into this peer's IPFS daemon.
    async fn store_block(&self, value: &Value) -> Result<(), String> {
        let node = NodeWithMeta::from_value(value).map_err(|e| e.to_string())?;
        let ipfs = self.handle.ipfs.as_ref().ok_or(NO_DAEMON)?;
        ipfs.block_put(&node.cid, node.data)
            .await
            .map_err(|e| e.to_string())
    }
}

const NO_DAEMON: &str = "this peer has no IPFS daemon (its role pins nothing)";

/// Calls on other peers' RPC, for the peers that speak Go ipfs-cluster's RPC and not
/// pinfold's peer requests (Go peers), and for `/peers`.
#[derive(Clone)]
pub struct Client {
    control: libp2p_stream::Control,
}

/// How long a streaming call may take to reach its peer: a dial to a peer that is gone
/// may otherwise wait for its slowest transport's timeout.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a status or id call may take, as Go waits for them.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

impl Client {
    pub fn new(control: libp2p_stream::Control) -> Self {
        Self { control }
    }

    /// A call's stream to `peer`, whose answer may take up to `timeout`.
    async fn open(&mut self, peer: PeerId, timeout: Duration) -> Result<CallStream, String> {
        let stream = self
            .control
            .open_stream(peer, libp2p::StreamProtocol::new(gorpc::PROTOCOL))
            .await
            .map_err(|e| format!("could not open an RPC stream: {e}"))?;
        Ok(CallStream {
            stream,
            reader: FrameReader::new(Limits::RPC_REPLY),
            ended: false,
            read_timeout: timeout,
        })
    }

    /// A unary call of `service` on `peer` with `argument`: its reply, or why none came.
    pub async fn call(
        &self,
        peer: PeerId,
        service: ServiceId,
        argument: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let mut client = self.clone();
        let call = async move {
            let mut call = client.open(peer, timeout).await?;
            let frame = gorpc::request_frame(&service, Some(&argument));
            call.stream
                .write_all(&frame)
                .await
                .map_err(|e| e.to_string())?;
            call.stream.flush().await.map_err(|e| e.to_string())?;
            // Unary calls keep the write side open: Go cancels a call whose caller closed it.
            let reply = read_reply(&mut call)
                .await?
                .ok_or("the peer closed the stream without a reply")?;
            let _ = call.close().await;
            Ok(reply)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }

    /// A streaming call of `service` on `peer`: sends `arguments`, closes its side, and
    /// hands each reply to `on_reply` as it comes, until the peer closes (or `on_reply`
    /// fails).
    pub async fn stream(
        &self,
        peer: PeerId,
        service: ServiceId,
        arguments: Vec<Value>,
        timeout: Duration,
        mut on_reply: impl FnMut(Value) -> Result<(), String> + Send,
    ) -> Result<(), String> {
        let mut client = self.clone();
        let call = async move {
            let mut call = client.open(peer, timeout).await?;
            let mut frame = gorpc::request_frame(&service, None);
            for argument in &arguments {
                pinfold_core::codec::msgpack::encode(argument, &mut frame);
            }
            call.stream
                .write_all(&frame)
                .await
                .map_err(|e| e.to_string())?;
            call.stream.close().await.map_err(|e| e.to_string())?;
            while let Some(reply) = read_reply(&mut call).await? {
                on_reply(reply)?;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }

    /// A streaming call of `service` on `peer` whose arguments are sent as `arguments`
    /// gives them; it fails when `peer` cannot be reached within [`OPEN_TIMEOUT`], or takes
    /// nothing or says nothing for `stall`.
    /// Ends once the peer closed, with its error if it sent one (`BlockStream` answers
    /// nothing else).
    pub async fn stream_from(
        &self,
        peer: PeerId,
        service: ServiceId,
        mut arguments: impl futures::Stream<Item = Value> + Unpin + Send,
        stall: Duration,
    ) -> Result<(), String> {
        let stalled = || format!("{peer} took nothing for {stall:?}");
        let mut client = self.clone();
        let mut call = tokio::time::timeout(OPEN_TIMEOUT, client.open(peer, stall))
            .await
            .map_err(|_| format!("could not reach {peer} within {OPEN_TIMEOUT:?}"))??;
        let mut frame = gorpc::request_frame(&service, None);
        loop {
            tokio::time::timeout(stall, call.stream.write_all(&frame))
                .await
                .map_err(|_| stalled())?
                .map_err(|e| e.to_string())?;
            let Some(argument) = arguments.next().await else {
                break;
            };
            frame.clear();
            pinfold_core::codec::msgpack::encode(&argument, &mut frame);
        }
        tokio::time::timeout(stall, call.stream.close())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(stall, async {
            while read_reply(&mut call).await?.is_some() {}
            Ok(())
        })
        .await
        .map_err(|_| stalled())?
    }

    /// `peer`'s `Cluster.ID`.
    pub async fn id(&self, peer: PeerId) -> Result<Id, String> {
        let reply = self
            .call(
                peer,
                ServiceId::new("Cluster", "ID"),
                api::empty(),
                CALL_TIMEOUT,
            )
            .await?;
        api::id_from_value(&reply).map_err(|e| e.to_string())
    }

    /// Asks `peer` to add `added` to its cluster (`Cluster.PeerAdd`), as a peer that joins
    /// through it asks.
    pub async fn peer_add(&self, peer: PeerId, added: PeerId) -> Result<(), String> {
        self.call(
            peer,
            ServiceId::new("Cluster", "PeerAdd"),
            api::peer_value(&added),
            CALL_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Asks `peer` to remove `removed` from the cluster (`Cluster.PeerRemove`).
    pub async fn peer_remove(&self, peer: PeerId, removed: PeerId) -> Result<(), String> {
        self.call(
            peer,
            ServiceId::new("Cluster", "PeerRemove"),
            api::peer_value(&removed),
            CALL_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// `peer`'s daemon's repository size and its maximum (`IPFSConnector.RepoStat`).
    pub async fn repo_stat(&self, peer: PeerId) -> Result<(u64, u64), String> {
        let reply = self
            .call(
                peer,
                ServiceId::new("IPFSConnector", "RepoStat"),
                api::empty(),
                CALL_TIMEOUT,
            )
            .await?;
        api::repo_stat_from_value(&reply).map_err(|e| e.to_string())
    }

    /// The answer to a peer request, asked over Go ipfs-cluster's RPC instead.
    pub async fn answer(&self, peer: PeerId, request: PeerRequest) -> PeerResponse {
        let answer = match request {
            PeerRequest::Statuses { cids, recover } => self.statuses(peer, cids, recover).await,
            PeerRequest::Connections => self.connections(peer).await,
            PeerRequest::Summary => self.summary(peer).await,
            PeerRequest::RepoGc => self
                .call(
                    peer,
                    ServiceId::new("Cluster", "RepoGCLocal"),
                    api::empty(),
                    REPO_GC_TIMEOUT,
                )
                .await
                .and_then(|reply| api::repo_gc_from_value(&reply).map_err(|e| e.to_string()))
                .map(PeerResponse::RepoGc),
            PeerRequest::Snapshot => Err("Go ipfs-cluster peers serve no snapshots".to_owned()),
            PeerRequest::Ancestors { .. } => {
                Err("Go ipfs-cluster peers serve delta blocks over bitswap only".to_owned())
            }
        };
        answer.unwrap_or_else(PeerResponse::Error)
    }

    async fn statuses(
        &self,
        peer: PeerId,
        cids: Vec<Cid>,
        recover: bool,
    ) -> Result<PeerResponse, String> {
        let method = if recover { "Recover" } else { "Status" };
        let replies: Vec<Result<Value, String>> = futures::stream::iter(cids)
            .map(|cid| {
                self.call(
                    peer,
                    ServiceId::new("PinTracker", method),
                    api::cid_value(Some(&cid)),
                    CALL_TIMEOUT,
                )
            })
            .buffered(CONCURRENT_CALLS)
            .collect()
            .await;
        let infos = replies
            .into_iter()
            .map(|reply| api::pin_info_from_value(&reply?).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PeerResponse::Statuses(infos))
    }

    async fn connections(&self, peer: PeerId) -> Result<PeerResponse, String> {
        let mut ids = Vec::new();
        self.stream(
            peer,
            ServiceId::new("Cluster", "Peers"),
            Vec::new(),
            CALL_TIMEOUT,
            |reply| {
                ids.push(api::id_from_value(&reply).map_err(|e| e.to_string())?);
                Ok(())
            },
        )
        .await?;
        let own = ids.iter().find(|id| id.id == peer.to_base58());
        let ipfs_id = own.and_then(|id| id.ipfs.id.parse().ok());
        let ipfs_peers = match ipfs_id {
            Some(_) => {
                let reply = self
                    .call(
                        peer,
                        ServiceId::new("IPFSConnector", "SwarmPeers"),
                        api::empty(),
                        CALL_TIMEOUT,
                    )
                    .await?;
                api::peers_from_value(&reply, "[]peer.ID").map_err(|e| e.to_string())?
            }
            None => Vec::new(),
        };
        Ok(PeerResponse::Connections(Connections {
            cluster_peers: ids
                .iter()
                .filter(|id| id.id != peer.to_base58() && id.error.is_empty())
                .filter_map(|id| id.id.parse().ok())
                .collect(),
            ipfs_id,
            ipfs_peers,
        }))
    }

    async fn summary(&self, peer: PeerId) -> Result<PeerResponse, String> {
        // Counted as the statuses come: a Go peer sends one per pin of the pinset.
        let mut summary = StatusSummary::default();
        self.stream(
            peer,
            ServiceId::new("PinTracker", "StatusAll"),
            vec![Value::Int(0)],
            REPO_GC_TIMEOUT,
            |reply| {
                let info = api::pin_info_from_value(&reply).map_err(|e| e.to_string())?;
                summary.count(info.short.status);
                Ok(())
            },
        )
        .await?;
        Ok(PeerResponse::Summary(summary))
    }
}

/// Calls in flight at once to one peer for a page of statuses.
const CONCURRENT_CALLS: usize = 16;

/// The next reply of a call: `None` once the peer closed cleanly; the peer's error as an
/// error.
async fn read_reply(call: &mut CallStream) -> Result<Option<Value>, String> {
    let Some(header) = call.next_value().await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let header = ResponseHeader::from_value(&header).map_err(|e| e.to_string())?;
    let body = call
        .next_value()
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(Value::Nil);
    if !header.error.is_empty() {
        return Err(header.error);
    }
    Ok(Some(body))
}
