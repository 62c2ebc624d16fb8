//! The running peer: one task that drives the cluster [`Node`] (which owns the replica on
//! its redb file, the monitor, the pin tracker and every cluster decision) with the swarm,
//! the IPFS daemon and the API. It feeds the node what happens, with the time, and carries
//! out the node's effects. Everything else (the REST API, IPFS calls) runs in other tasks
//! and talks to it through bounded channels.

pub mod bandwidth;
pub mod circuits;
pub mod dht;
pub mod gorpc;
mod leave;
pub mod mdns;
pub mod peerstore;
mod raft;
pub mod snapshots;
pub mod swarm;

pub use raft::RaftStatus;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use cid::Cid;
use futures::StreamExt;
use libp2p::gossipsub;
use libp2p::identity::Keypair;
use libp2p::metrics::Recorder as _;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{identify, relay, Multiaddr, PeerId, Swarm};
use pinfold_core::allocator::AllocatorConfig;
use pinfold_core::codec::metric::Metric;
use pinfold_core::codec::peer_request::{
    Connections, PeerRequest, PeerResponse, StatusSummary, REPO_GC_PROTOCOL,
};
use pinfold_core::crdt::{self, BatchConfig, Replica};
use pinfold_core::informer::{DiskMetric, RepoStat};
use pinfold_core::monitor;
use pinfold_core::net::peer_request::{self, Handling};
use pinfold_core::net::pnet_guard::WrongSecret;
use pinfold_core::net::pubsub::{self, ClusterTopics};
use pinfold_core::net::{bitswap, psk_gate};
use pinfold_core::node::{
    self, Answer, DaemonTask, Effect, Gathered, GatheringId, GossipVerdict, InformerSettings,
    IpfsIdentity, Node, NodeConfig, NodeRole, Periods, Question, RequestId, SnapshotPolicy, Topic,
};
pub use pinfold_core::node::{CommandError, DaemonAnswer, SyncState, PAGE};
use pinfold_core::pin::{Pin, UnixTime};
use pinfold_core::repo_gc::RepoGc;
use pinfold_core::tracker::{
    DaemonPins, OpId, OperationKind, PeerIdentity, PinInfo, PinTracker, StatusFilter,
    TrackerConfig, TrackerStatus,
};
use tokio::sync::{mpsc, oneshot, watch};

use self::circuits::CircuitListens;
use self::peerstore::Peerstore;
use self::snapshots::SnapshotRecord;
use self::swarm::{BehaviourEvent, Gated, GatedEvent, SwarmSettings, WRONG_SECRET};
use crate::config::{Role, ServiceConfig, PEERSTORE_FILE, PINSET_FILE, WEBRTC_CERTIFICATE_FILE};
use crate::ipfs::{pin_type_name, Health, Ipfs, IpfsClient, IpfsConfig, IpfsError, IpfsId};
use crate::metrics::PeerMetrics;
use crate::store::RedbStore;

/// Commands the API tasks may queue at once.
pub const COMMAND_QUEUE: usize = 256;
/// Most commands a write group takes (see [`Peer::on_writes`]): its pins and unpins, and
/// the reads answered on the way.
const MAX_WRITE_GROUP: usize = 256;

/// Unix time in milliseconds (the replica's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix time in nanoseconds (the tracker's and monitor's clock).
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The cluster's time (core's `Node::cluster_time`) for the API tasks: how far this
/// host's clock is from it, as of the node's last tick. New pins take their timestamp
/// and `expire-in` from it, so that a host whose clock is off sets the expiry the others
/// would.
#[derive(Clone, Default)]
pub struct ClusterClock(Arc<AtomicI64>);

impl ClusterClock {
    /// Unix seconds in the cluster's time.
    pub fn now(&self) -> UnixTime {
        let nanos = now_nanos().saturating_add(self.0.load(Ordering::Relaxed));
        UnixTime((nanos.max(0) / 1_000_000_000) as u64)
    }

    fn set(&self, cluster_time: i64, now: i64) {
        self.0
            .store(cluster_time.saturating_sub(now), Ordering::Relaxed);
    }
}

/// What the peer says about itself (`/id`).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub id: PeerId,
    pub peername: String,
    pub addresses: Vec<Multiaddr>,
    pub cluster_peers: Vec<PeerId>,
    /// The known addresses of the other peers, each ending in `/p2p/<peer>`.
    pub cluster_peers_addresses: Vec<Multiaddr>,
    pub ipfs: Option<IpfsId>,
    pub ipfs_error: Option<String>,
    pub role: Role,
}

/// A peer of the peerset.
#[derive(Clone, Debug)]
pub struct PeerSummary {
    pub id: PeerId,
    pub name: String,
    /// Whether this peer takes its writes (`crdt.trusted_peers`).
    pub trusted: bool,
    /// Its IPFS daemon's swarm addresses.
    pub ipfs_addresses: Vec<Multiaddr>,
}

/// Requests from the API to the peer task; each carries its reply channel.
pub enum Command {
    AddPin {
        pin: Box<Pin>,
        reply: oneshot::Sender<Result<Pin, CommandError>>,
    },
    /// Unpins `cid`; for the root of a sharded add, with the pins `cluster_dag_links`
    /// names (its cluster DAG's links: see `Node::remove_pin`).
    RemovePin {
        cid: Cid,
        cluster_dag_links: Vec<Cid>,
        reply: oneshot::Sender<Result<Pin, CommandError>>,
    },
    /// Where an adder puts the blocks of content to pin with `template`'s options.
    AddDestinations {
        template: Box<Pin>,
        reply: oneshot::Sender<Result<Vec<PeerId>, CommandError>>,
    },
    GetPin {
        cid: Cid,
        reply: oneshot::Sender<Option<Pin>>,
    },
    /// A page of pins after `after`.
    Pins {
        after: Option<Cid>,
        limit: usize,
        reply: oneshot::Sender<Vec<Pin>>,
    },
    /// This peer's statuses of these CIDs, given the daemon's answer for each; with
    /// `recover`, after re-queueing those in error.
    Status {
        cids: Vec<(Cid, DaemonAnswer)>,
        recover: bool,
        reply: oneshot::Sender<Vec<PinInfo>>,
    },
    /// A page of statuses of pins after `after` (with the next cursor).
    Statuses {
        after: Option<Cid>,
        daemon: Arc<DaemonPins>,
        filter: StatusFilter,
        reply: oneshot::Sender<(Vec<PinInfo>, Option<Cid>)>,
    },
    /// This peer's statuses of a page of pins after `after`, counted (with the next cursor).
    StatusCounts {
        after: Option<Cid>,
        daemon: Arc<DaemonPins>,
        reply: oneshot::Sender<(StatusSummary, Option<Cid>)>,
    },
    /// The other peers' views of these CIDs (at most
    /// [`pinfold_core::codec::peer_request::MAX_CIDS`]), after each recovered them if `recover`;
    /// a peer that does not answer gets a `cluster_error` view of each.
    PeerStatuses {
        cids: Vec<Cid>,
        recover: bool,
        reply: oneshot::Sender<Vec<PinInfo>>,
    },
    /// Every other peer's garbage collection of its IPFS daemon's repository (or why it
    /// gave none); this peer's is the caller's to run.
    PeersRepoGc {
        reply: oneshot::Sender<Vec<RepoGc>>,
    },
    /// Every peer's connections: this peer's cluster connections (its daemon's are the
    /// caller's to ask), then each other peer's answer or why it gave none.
    Connections {
        reply: oneshot::Sender<Vec<(PeerId, Result<Connections, String>)>>,
    },
    /// Forgets a peer: re-allocates the pins allocated to it to other peers and drops its
    /// metrics, so that it leaves the peerset until it pings again (ipfs-cluster's peer
    /// removal under CRDT consensus). Replies with how many pins moved.
    RemovePeer {
        peer: PeerId,
        reply: oneshot::Sender<Result<usize, CommandError>>,
    },
    /// Adds `peer` to the cluster: under Raft, to the Raft peers once the cluster
    /// commits it; under CRDT consensus there is nothing to do.
    AddPeer {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// Where Raft stands; `None` under CRDT consensus.
    RaftStatus {
        reply: oneshot::Sender<Option<RaftStatus>>,
    },
    Info {
        reply: oneshot::Sender<PeerInfo>,
    },
    /// The peerset, from its ping metrics.
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    Sync {
        reply: oneshot::Sender<SyncState>,
    },
    /// The latest alerts, newest first.
    Alerts {
        reply: oneshot::Sender<Vec<monitor::Alert>>,
    },
    /// The latest live metrics of a name (all names when empty).
    Metrics {
        name: String,
        reply: oneshot::Sender<Vec<Metric>>,
    },
}

impl Command {
    /// Whether the command reads the peerset and metrics only, nothing a write group
    /// changes: it is answered at once, without ending the group it arrives in.
    fn reads_peers_only(&self) -> bool {
        matches!(
            self,
            Command::AddDestinations { .. }
                | Command::Info { .. }
                | Command::Peers { .. }
                | Command::Alerts { .. }
                | Command::Metrics { .. }
        )
    }
}

/// A handle to a running peer, for the API.
#[derive(Clone)]
pub struct PeerHandle {
    pub commands: mpsc::Sender<Command>,
    pub ipfs: Option<Ipfs>,
    pub local: PeerId,
    /// Calls on other peers over Go ipfs-cluster's RPC.
    pub rpc: gorpc::Client,
    pub clock: ClusterClock,
    /// The swarm's bytes by protocol.
    pub bandwidth: Arc<bandwidth::Bandwidth>,
}

impl PeerHandle {
    /// Sends a command and waits for its reply.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)
    }
}

/// Why a background task could not finish a daemon operation or answer another peer; its
/// text is what the pin's status or the other peer shows.
#[derive(Clone, Debug, thiserror::Error)]
enum TaskError {
    #[error(transparent)]
    Ipfs(#[from] IpfsError),
    #[error("could not list the IPFS daemon's pins: {0}")]
    DaemonPins(IpfsError),
    #[error("operation cancelled")]
    Cancelled,
    #[error("the peer is shutting down")]
    ShuttingDown,
    #[error("ask for a garbage collection over {REPO_GC_PROTOCOL}")]
    RepoGcProtocol,
}

/// What background tasks report to the peer task.
enum Background {
    OpDone {
        cid: Cid,
        id: OpId,
        result: Result<(), TaskError>,
    },
    /// Peers' addresses mDNS found on the local network.
    Discovered(Vec<Multiaddr>),
    /// The informers' inputs: the daemon's repository figures and pin count.
    Informers {
        stat: Option<RepoStat>,
        pins: Option<u64>,
    },
    IpfsId(IpfsId),
    /// The daemon's pin list for a recover sweep.
    Recover(DaemonPins),
    /// A peer's status request, with the daemon's pins it needs (or why they are missing).
    AnswerStatus {
        cids: Vec<Cid>,
        recover: bool,
        daemon: Result<Arc<DaemonPins>, IpfsError>,
        channel: request_response::ResponseChannel<PeerResponse>,
    },
    /// A peer's connections request, with the daemon's peers (or why they are missing).
    AnswerConnections {
        ipfs_peers: Result<Vec<PeerId>, IpfsError>,
        channel: request_response::ResponseChannel<PeerResponse>,
    },
    /// Another peer's summary request, counted (or why it could not be).
    AnswerSummary {
        summary: Result<StatusSummary, TaskError>,
        channel: request_response::ResponseChannel<PeerResponse>,
    },
    /// Another peer's garbage collection request, carried out on the daemon (or why not).
    AnswerRepoGc {
        gc: Result<RepoGc, TaskError>,
        channel: request_response::ResponseChannel<PeerResponse>,
    },
    /// Cluster peers' addresses a connected peer gave.
    PeerAddresses(Vec<Multiaddr>),
    /// The answer to the node's request `id`, asked over Go ipfs-cluster's RPC.
    RpcAnswer {
        id: RequestId,
        answer: PeerResponse,
    },
}

/// The two request-response exchanges a gathering's requests go over: quick questions, and
/// repository garbage collections (which may take hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Exchange {
    PeerRequest,
    RepoGc,
}

/// A reply awaited from a gathering.
enum Reply {
    Statuses(oneshot::Sender<Vec<PinInfo>>),
    Connections(oneshot::Sender<Vec<(PeerId, Result<Connections, String>)>>),
    RepoGc(oneshot::Sender<Vec<RepoGc>>),
}

/// The turn of the event loop.
const TICK: Duration = Duration::from_millis(250);

/// Bound on background reports waiting.
const BACKGROUND_QUEUE: usize = 1024;

/// Everything needed to start a peer.
pub struct PeerOptions {
    pub dir: PathBuf,
    pub config: ServiceConfig,
    pub key: Keypair,
    /// Extra addresses to dial at start (`--bootstrap`).
    pub bootstrap: Vec<Multiaddr>,
    /// What to record for the Prometheus endpoint, when it is on.
    pub metrics: Option<PeerMetrics>,
}

/// The peer task's state.
pub struct Peer {
    dir: PathBuf,
    config: ServiceConfig,
    swarm: Swarm<Gated>,
    node: Node<RedbStore>,
    ipfs: Option<Ipfs>,
    topics: ClusterTopics,
    commands: mpsc::Receiver<Command>,
    /// Its own commands, for background work that reads the pinset page by page.
    commands_tx: mpsc::Sender<Command>,
    background_tx: mpsc::Sender<Background>,
    background: mpsc::Receiver<Background>,
    cancels: HashMap<OpId, oneshot::Sender<()>>,
    peerstore: Peerstore,
    /// Connections this peer dialed, so that a failed secret proof on one reads as a failed
    /// dial.
    dialed: HashSet<ConnectionId>,
    circuits: CircuitListens,
    metrics: Option<PeerMetrics>,
    /// The node's requests in flight, by the exchange and id the swarm gave them.
    requests: HashMap<(Exchange, OutboundRequestId), RequestId>,
    replies: HashMap<GatheringId, Reply>,
    rpc: gorpc::Client,
    /// The cluster's time, read by the API.
    clock: ClusterClock,
    /// Peers that speak Go ipfs-cluster's RPC and not pinfold's peer requests (from
    /// identify): the node's requests to them go over the RPC.
    rpc_only: HashSet<PeerId>,
    /// How long the node's last tick took: snapshots are made in ticks, so this times them.
    last_tick: Duration,
    /// This peer's listen addresses, for mDNS to announce (when it runs).
    listening: Option<watch::Sender<Vec<Multiaddr>>>,
    /// The swarm's bytes by protocol, whose rates the ticks sample.
    bandwidth: Arc<bandwidth::Bandwidth>,
    /// Under Raft consensus: its store and the answers waiting for commits.
    raft: Option<raft::RaftDriver>,
}

impl Peer {
    /// Opens the store and builds the swarm; returns the peer and a handle for the API.
    pub async fn start(options: PeerOptions) -> anyhow::Result<(Self, PeerHandle)> {
        let PeerOptions {
            dir,
            config,
            key,
            bootstrap,
            metrics,
        } = options;
        config.validate()?;
        let local = key.public().to_peer_id();
        let role = config.cluster.role;
        let secret = config.secret()?;
        if secret.is_none() {
            tracing::warn!("cluster.secret is empty: the swarm runs without a private network");
        }
        let settings = SwarmSettings {
            secret,
            webrtc: Some(swarm::load_or_create_certificate(
                &dir.join(WEBRTC_CERTIFICATE_FILE),
            )?),
            dial_timeout: config
                .cluster
                .dial_peer_timeout
                .0
                .max(Duration::from_secs(1)),
            max_connections: config.cluster.max_connections,
            relay: config.relay.enabled.then_some(swarm::RelayLimits {
                max_reservations: config.relay.max_reservations,
                max_circuits: config.relay.max_circuits,
                max_circuit_duration: config.relay.max_circuit_duration.0,
                max_circuit_bytes: config.relay.max_circuit_bytes,
            }),
            bandwidth: Some(bandwidth::Bandwidth::new()),
            raft: config.consensus.raft.is_some(),
        };
        let mut swarm = swarm::build(key, &settings)?;
        let (circuits, direct) = CircuitListens::split(&config.cluster.listen_multiaddress)?;
        // As go-libp2p does, an address whose transport this build lacks (a Go
        // `service.json` lists QUIC) is passed over, with a warning, if another listens.
        let mut unsupported = Vec::new();
        let mut listening = 0;
        for address in &direct {
            match swarm.listen_on(address.clone()) {
                Ok(_) => listening += 1,
                Err(libp2p::TransportError::MultiaddrNotSupported(_)) => {
                    unsupported.push(address.to_string())
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("could not listen on {address}"))
                }
            }
        }
        if !unsupported.is_empty() {
            if listening == 0 && circuits.relays().next().is_none() {
                anyhow::bail!(
                    "cluster.listen_multiaddress: no transport pinfold has ({} are not supported: use /tcp, /tcp/…/ws or /udp/…/webrtc-direct)",
                    unsupported.join(", ")
                );
            }
            tracing::warn!(
                addresses = unsupported.join(", "),
                "cluster.listen_multiaddress: no transport for these, not listening on them"
            );
        }
        for (relay, address) in circuits.relays() {
            if let Err(error) = swarm.dial(address.clone()) {
                tracing::warn!(%relay, %address, %error, "could not dial the relay to listen through");
            }
        }
        for address in &config.cluster.announce_multiaddress {
            swarm.add_external_address(address.clone());
        }
        let topics = ClusterTopics::new(&config.consensus.crdt.cluster_name);
        topics.subscribe(&mut swarm.behaviour_mut().inner_mut().gossipsub)?;

        let mut store = RedbStore::open(&dir.join(PINSET_FILE))?;
        store.compact_if_sparse()?;
        let trust = config.trust()?;
        let crdt_config = crdt::Config {
            trust: trust.clone(),
            // Under Raft the log orders and batches the writes: each applied batch is one
            // local delta.
            batch: if config.consensus.raft.is_none()
                && config.consensus.crdt.batching.max_batch_size > 0
                && config.consensus.crdt.batching.max_batch_age.millis() > 0
            {
                BatchConfig::new(
                    config.consensus.crdt.batching.max_batch_size,
                    config.consensus.crdt.batching.max_batch_age.millis(),
                )
            } else {
                BatchConfig::OFF
            },
            rebroadcast_interval_ms: config.consensus.crdt.rebroadcast_interval.millis().max(100),
            repair_interval_ms: config.consensus.crdt.repair_interval.millis().max(1000),
            fetch_timeout_ms: 30_000,
            seed: u64::from_le_bytes(local.to_bytes()[2..10].try_into().expect("8 bytes")),
            ..crdt::Config::default()
        };
        let replica = Replica::open(store, crdt_config).await?;

        let ipfs = if role.pins() {
            let h = &config.ipfs_connector.ipfshttp;
            Some(Arc::new(IpfsClient::new(
                &h.node_multiaddress,
                IpfsConfig {
                    request_timeout: h.ipfs_request_timeout.0,
                    pin_stall_timeout: h.pin_timeout.0,
                    unpin_timeout: h.unpin_timeout.0,
                },
            )?))
        } else {
            None
        };
        let tracker = if role.pins() {
            let s = &config.pin_tracker.stateless;
            Some(PinTracker::new(
                TrackerConfig {
                    max_pin_queue_size: s.max_pin_queue_size,
                    concurrent_pins: s.concurrent_pins,
                    priority_pin_max_age_secs: s.priority_pin_max_age.0.as_secs(),
                    priority_pin_max_retries: s.priority_pin_max_retries,
                    retry_base_delay_ms: s.retry_base_delay.millis(),
                    retry_max_delay_ms: s.retry_max_delay.millis(),
                },
                PeerIdentity::new(local, config.cluster.peername.clone()),
            )?)
        } else {
            None
        };
        let snapshot = SnapshotRecord::read(&dir)?.and_then(|r| r.root.parse::<Cid>().ok());
        let bootstrap_peers: Vec<PeerId> = bootstrap
            .iter()
            .filter_map(|a| match a.iter().last() {
                Some(Protocol::P2p(peer)) => Some(peer),
                _ => None,
            })
            .collect();
        let mut node = Node::new(
            node_config(&config, local, trust),
            replica,
            tracker,
            snapshot,
            now_nanos(),
        )
        .await?;
        let mut raft_join = false;
        let raft = match raft::open(&config, &dir, &node, !bootstrap_peers.is_empty()).await? {
            Some((driver, consensus, join)) => {
                node = node.with_raft(consensus);
                raft_join = join;
                Some(driver)
            }
            None => None,
        };
        if snapshot.is_some() && node.latest_snapshot().is_none() {
            tracing::warn!("the recorded snapshot is not in the store: a new one will be made");
        }

        let peerstore = Peerstore::load(&dir.join(PEERSTORE_FILE))?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (background_tx, background) = mpsc::channel(BACKGROUND_QUEUE);
        let rpc = swarm.behaviour().inner().gorpc.new_control();
        let handle = PeerHandle {
            commands: commands_tx,
            ipfs: ipfs.clone(),
            local,
            rpc: gorpc::Client::new(rpc.clone()),
            clock: ClusterClock::default(),
            bandwidth: settings.bandwidth.clone().expect("counted above"),
        };
        let mut peer = Self {
            dir,
            config,
            swarm,
            node,
            ipfs,
            topics,
            commands,
            commands_tx: handle.commands.clone(),
            background_tx,
            background,
            cancels: HashMap::new(),
            peerstore,
            dialed: HashSet::new(),
            circuits,
            metrics,
            requests: HashMap::new(),
            replies: HashMap::new(),
            rpc: handle.rpc.clone(),
            clock: handle.clock.clone(),
            rpc_only: HashSet::new(),
            last_tick: Duration::ZERO,
            listening: None,
            bandwidth: handle.bandwidth.clone(),
            raft,
        };
        if raft_join {
            tokio::spawn(raft::ask_to_join(
                handle.rpc.clone(),
                local,
                bootstrap_peers,
            ));
        }
        peer.start_mdns();
        let mut dial: Vec<Multiaddr> = peer.config.cluster.peer_addresses.clone();
        dial.extend(bootstrap);
        dial.extend(peer.peerstore.addresses());
        let now = now_nanos();
        for address in dial {
            if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
                peer.node.dial(address, now);
            } else {
                tracing::warn!(%address, "cannot dial an address without /p2p/<peer id>");
            }
        }
        let rpc_calls = rpc
            .clone()
            .accept(libp2p::StreamProtocol::new(
                pinfold_core::codec::gorpc::PROTOCOL,
            ))
            .context("could not serve Go ipfs-cluster's RPC")?;
        tokio::spawn(gorpc::serve(
            rpc_calls,
            Arc::new(gorpc::Server {
                handle: handle.clone(),
                trust: peer.config.trust()?,
                peername: peer.config.cluster.peername.clone(),
            }),
        ));
        Ok((peer, handle))
    }

    /// Starts mDNS discovery unless `cluster.mdns_interval` is 0.
    fn start_mdns(&mut self) {
        let interval = self.config.cluster.mdns_interval.0;
        if interval.is_zero() {
            return;
        }
        let (listening, addresses) = watch::channel(Vec::new());
        let (local, found) = (self.node.local(), self.background_tx.clone());
        tokio::spawn(async move {
            if let Err(error) =
                mdns::run(local, interval, addresses, found, Background::Discovered).await
            {
                tracing::warn!(%error, "mDNS discovery is off (set cluster.mdns_interval to 0 to say so)");
            }
        });
        self.listening = Some(listening);
    }

    /// Hands mDNS this peer's listen addresses, after they changed.
    fn listening_changed(&self) {
        if let Some(listening) = &self.listening {
            let _ = listening.send(self.swarm.listeners().cloned().collect());
        }
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.node.local()
    }

    /// Refreshes the metrics that are read rather than counted.
    fn refresh_metrics(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if let Some(tracker) = self.node.tracker() {
            metrics.pin_queued.set(tracker.pin_queue_size() as i64);
            for (gauge, status) in [
                (&metrics.pinning, TrackerStatus::Pinning),
                (&metrics.pin_error, TrackerStatus::PinError),
            ] {
                let count = tracker.operations(StatusFilter::of(&[status])).count();
                gauge.set(count as i64);
            }
        }
        if let Some(ipfs) = &self.ipfs {
            let (adds, errors) = ipfs.pin_add_counts();
            metrics.pin_add.set(adds as i64);
            metrics.pin_add_errors.set(errors as i64);
            if let Some(count) = ipfs.pin_count() {
                metrics.ipfs_pins.set(count);
            }
        }
        metrics
            .peers
            .set(self.node.peerset(now_nanos()).len() as i64);
        let progress = self.node.replica().progress();
        metrics.crdt_heads.set(progress.heads as i64);
        metrics.crdt_height.set(progress.height as i64);
        metrics.crdt_pending_blocks.set(progress.pending as i64);
        metrics.crdt_merged_deltas.set(progress.merged as i64);
        let bitswap = self.swarm.behaviour().inner().bitswap.stats();
        metrics
            .bitswap_wants_received
            .set(bitswap.wants_received as i64);
        metrics
            .bitswap_dropped_messages
            .set(bitswap.dropped_messages as i64);
        metrics
            .bitswap_refused_streams
            .set(bitswap.refused_streams as i64);
        metrics.refresh_resident_memory();
    }

    /// Runs until `shutdown` resolves, then commits pending writes and saves the peerstore.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(
            self.config
                .observations
                .metrics
                .reporting_interval
                .0
                .max(Duration::from_millis(100)),
        );
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await?,
                Some(command) = self.commands.recv() => self.on_command(command).await?,
                Some(report) = self.background.recv() => self.on_background(report).await?,
                _ = tick.tick() => self.on_tick().await?,
                _ = report.tick(), if self.metrics.is_some() => self.refresh_metrics(),
                // Merge work (part of a snapshot chunk, a delta of an ancestors run) goes
                // one turn at a time, between the other events.
                _ = tokio::task::yield_now(), if self.node.has_work() => {
                    self.node.work(now_nanos()).await?;
                }
                _ = &mut shutdown => break,
            }
            self.apply_effects().await?;
        }
        tracing::info!("shutting down: committing pending writes");
        self.node.commit(now_nanos()).await?;
        self.apply_effects().await?;
        if self.config.cluster.leave_on_shutdown {
            self.leave_cluster().await?;
        }
        for cancel in self.cancels.drain().map(|(_, c)| c) {
            let _ = cancel.send(());
        }
        self.peerstore.save()?;
        Ok(())
    }

    async fn on_tick(&mut self) -> anyhow::Result<()> {
        self.bandwidth.sample(std::time::Instant::now());
        let external = self.swarm.external_addresses().cloned().collect();
        self.node.set_external_addresses(external);
        let started = std::time::Instant::now();
        let now = now_nanos();
        self.node.tick(now).await?;
        self.clock.set(self.node.cluster_time(now), now);
        if let Some(ask) = self.node.address_lookup(now) {
            let (client, report) = (self.rpc.clone(), self.background_tx.clone());
            tokio::spawn(async move {
                match client.id(ask).await {
                    Ok(id) => {
                        let addresses = id
                            .cluster_peers_addresses
                            .iter()
                            .filter_map(|a| a.parse().ok())
                            .collect();
                        let _ = report.send(Background::PeerAddresses(addresses)).await;
                    }
                    Err(error) => {
                        tracing::debug!(peer = %ask, %error, "could not ask for the peers' addresses")
                    }
                }
            });
        }
        self.last_tick = started.elapsed();
        if let Err(error) = self.peerstore.save() {
            tracing::warn!(%error, "could not save the peerstore");
        }
        if self.node.is_synced() {
            // A sync leaves much of the file free (pages its commits replaced): compacted
            // once the store is quiet, not at the next start. Other tasks go on
            // meanwhile; this loop waits.
            let store = self.node.store_mut();
            if let Err(error) = tokio::task::block_in_place(|| store.compact_if_grown()) {
                tracing::warn!(%error, "could not compact the pinset store");
            }
        }
        Ok(())
    }

    // ----- the node's effects -----------------------------------------------------------

    /// Carries out the node's effects until it has none left.
    async fn apply_effects(&mut self) -> anyhow::Result<()> {
        while let Some(effect) = self.node.poll_effect() {
            match effect {
                Effect::Publish { topic, data } => self.publish(topic, data),
                Effect::Bitswap(task) => {
                    let bitswap = &mut self.swarm.behaviour_mut().inner_mut().bitswap;
                    let refused = bitswap.carry_out(task);
                    self.node.on_fetch_refused(refused, now_nanos()).await?;
                }
                Effect::Dial { peer, addresses } => {
                    let dial = match peer {
                        Some(peer) => libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                            .addresses(addresses)
                            .build(),
                        None => match addresses.into_iter().next() {
                            Some(address) => address.into(),
                            None => continue,
                        },
                    };
                    if let Err(error) = self.swarm.dial(dial) {
                        tracing::debug!(?peer, %error, "dial failed");
                    }
                }
                Effect::AddressLearned { peer, address } => {
                    self.swarm.add_peer_address(peer, address.clone());
                    self.peerstore.add(peer, address);
                }
                Effect::Request { id, peer, request } if self.rpc_only.contains(&peer) => {
                    let (client, report) = (self.rpc.clone(), self.background_tx.clone());
                    tokio::spawn(async move {
                        let answer = client.answer(peer, request).await;
                        let _ = report.send(Background::RpcAnswer { id, answer }).await;
                    });
                }
                Effect::Request { id, peer, request } => {
                    let behaviour = self.swarm.behaviour_mut().inner_mut();
                    let (exchange, sent) = match request {
                        PeerRequest::RepoGc => (
                            Exchange::RepoGc,
                            behaviour.repo_gc.send_request(&peer, request),
                        ),
                        other => (
                            Exchange::PeerRequest,
                            behaviour.peer_requests.send_request(&peer, other),
                        ),
                    };
                    self.requests.insert((exchange, sent), id);
                }
                Effect::Gathered { id, gathered } => self.reply(id, gathered),
                // Pin events are off: the gauge below reads the node's count.
                Effect::Pinset(_) => {}
                Effect::StartOperation(dispatch) => self.start_operation(*dispatch),
                Effect::CancelOperation(id) => {
                    if let Some(cancel) = self.cancels.remove(&id) {
                        let _ = cancel.send(());
                    }
                }
                Effect::Daemon(task) => self.carry_out(task),
                Effect::Peer { peer, joined } => {
                    tracing::debug!(%peer, joined, "the peerset changed");
                }
                Effect::Sync(_) => {}
                Effect::Problem { message, .. } => tracing::warn!("{message}"),
                Effect::Alert(alert) => {
                    tracing::info!(peer = %alert.metric.peer, metric = %alert.metric.name, "metric expired: peer may be down");
                }
                Effect::SnapshotMade(made) => {
                    let offer = made.offer;
                    let record = SnapshotRecord {
                        root: offer.root.to_string(),
                        height: offer.height,
                        keys: offer.keys,
                        created_ms: now_ms(),
                    };
                    if let Err(error) = record.write(&self.dir) {
                        tracing::warn!("could not record the pinset snapshot: {error:#}");
                    }
                    tracing::info!(root = %offer.root, height = offer.height, keys = offer.keys,
                        removed_blocks = made.removed_blocks,
                        elapsed_ms = self.last_tick.as_millis() as u64, "made a pinset snapshot");
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.pins.set(self.node.pin_count() as i64);
        }
        self.apply_raft_effects()
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        let topic = self.topics.topic(topic);
        match self
            .swarm
            .behaviour_mut()
            .inner_mut()
            .gossipsub
            .publish(topic.clone(), data)
        {
            Ok(_) => {}
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                tracing::trace!(topic = %topic, "nobody subscribed yet; published later");
            }
            Err(error) => tracing::debug!(topic = %topic, %error, "publish failed"),
        }
    }

    fn reply(&mut self, id: GatheringId, gathered: Gathered) {
        match (self.replies.remove(&id), gathered) {
            (Some(Reply::Statuses(reply)), Gathered::Statuses(infos)) => {
                let _ = reply.send(infos);
            }
            (Some(Reply::Connections(reply)), Gathered::Connections(links)) => {
                let _ = reply.send(links);
            }
            (Some(Reply::RepoGc(reply)), Gathered::RepoGc(results)) => {
                let _ = reply.send(results);
            }
            _ => {}
        }
    }

    // ----- the IPFS daemon ----------------------------------------------------------------

    /// Runs a pin operation on the daemon in its own task; it reports back when done.
    fn start_operation(&mut self, dispatch: pinfold_core::tracker::Dispatch) {
        let Some(ipfs) = self.ipfs.clone() else {
            return;
        };
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.cancels.insert(dispatch.id, cancel);
        let report = self.background_tx.clone();
        tokio::spawn(async move {
            let cid = dispatch.pin.cid;
            let work = async {
                match dispatch.kind {
                    OperationKind::Pin => ipfs.pin(&dispatch.pin).await,
                    // A pin allocated elsewhere is unpinned as the type it has; a pin
                    // that left the pinset as either.
                    OperationKind::Remote => {
                        ipfs.unpin(&cid, &[pin_type_name(&dispatch.pin)]).await
                    }
                    OperationKind::Unpin => ipfs.unpin(&cid, &["recursive", "direct"]).await,
                }
            };
            let result = tokio::select! {
                result = work => result.map_err(TaskError::from),
                _ = cancelled => Err(TaskError::Cancelled),
            };
            if let Err(error) = &result {
                tracing::warn!(%cid, kind = ?dispatch.kind, %error, "IPFS operation failed; it is retried");
            } else {
                tracing::debug!(%cid, kind = ?dispatch.kind, "IPFS operation done");
            }
            let _ = report
                .send(Background::OpDone {
                    cid,
                    id: dispatch.id,
                    result,
                })
                .await;
        });
    }

    /// Does the node's work on the daemon in a task of its own.
    fn carry_out(&mut self, task: DaemonTask) {
        let Some(ipfs) = self.ipfs.clone() else {
            return;
        };
        let report = self.background_tx.clone();
        tokio::spawn(async move {
            match task {
                DaemonTask::ReadId => {
                    if let Ok(id) = ipfs.id().await {
                        let _ = report.send(Background::IpfsId(id)).await;
                    }
                }
                DaemonTask::ReadInformerInputs { count_pins } => {
                    let stat = ipfs.repo_stat().await.ok();
                    let pins = if count_pins {
                        daemon_pin_count(&ipfs).await
                    } else {
                        None
                    };
                    let _ = report.send(Background::Informers { stat, pins }).await;
                }
                DaemonTask::ListPinsForRecover => match ipfs.pin_ls_all("recursive").await {
                    Ok(pins) => {
                        let _ = report.send(Background::Recover(pins)).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "recover sweep skipped: could not list the daemon's pins")
                    }
                },
                // ipfs-cluster's ConnectSwarms: pins find their content without a DHT.
                DaemonTask::ConnectSwarms(addresses) => {
                    for address in addresses {
                        if let Err(error) = ipfs.swarm_connect(&address).await {
                            tracing::debug!(%address, %error, "could not connect the IPFS daemon to a peer's daemon");
                        }
                    }
                }
            }
        });
    }

    // ----- events ---------------------------------------------------------------------

    async fn on_background(&mut self, report: Background) -> anyhow::Result<()> {
        let now = now_nanos();
        match report {
            Background::OpDone { cid, id, result } => {
                self.cancels.remove(&id);
                self.node
                    .operation_done(cid, id, result.map_err(|e| e.to_string()), now);
            }
            Background::PeerAddresses(addresses) => {
                self.node.on_peer_addresses(addresses, now_nanos());
            }
            Background::Discovered(addresses) => self.node.on_discovered(addresses),
            Background::RpcAnswer { id, answer } => {
                self.node.on_response(id, Ok(answer), now_nanos()).await?;
            }
            Background::Informers { stat, pins } => {
                let disk = self.node.publish_informers(stat, pins, now);
                if let (Some(recorded), Some(disk)) = (&self.metrics, disk) {
                    if disk.valid {
                        recorded.informer_disk.set(disk.weight);
                    }
                }
            }
            Background::IpfsId(id) => self.node.set_ipfs(IpfsIdentity {
                peer: Some(id.peer),
                addresses: id.addresses,
            }),
            Background::Recover(daemon) => {
                self.node.recover_all(&daemon, now).await?;
            }
            Background::AnswerStatus {
                cids,
                recover,
                daemon,
                channel,
            } => {
                let answers = cids
                    .into_iter()
                    .map(|cid| {
                        let answer = match &daemon {
                            Ok(pins) => Ok(pins.get(&cid)),
                            Err(error) => Err(error.to_string()),
                        };
                        (cid, answer)
                    })
                    .collect();
                let infos = self.node.statuses_of(answers, recover, now).await?;
                self.respond(channel, PeerResponse::Statuses(infos));
            }
            Background::AnswerRepoGc { gc, channel } => {
                let response =
                    gc.map_or_else(|e| PeerResponse::Error(e.to_string()), PeerResponse::RepoGc);
                self.respond(channel, response);
            }
            Background::AnswerSummary { summary, channel } => {
                let response = summary.map_or_else(
                    |e| PeerResponse::Error(e.to_string()),
                    PeerResponse::Summary,
                );
                self.respond(channel, response);
            }
            Background::AnswerConnections {
                ipfs_peers,
                channel,
            } => {
                let response = match ipfs_peers {
                    Ok(ipfs_peers) => {
                        PeerResponse::Connections(self.node.connections(ipfs_peers, now))
                    }
                    Err(error) => PeerResponse::Error(error.to_string()),
                };
                self.respond(channel, response);
            }
        }
        Ok(())
    }

    /// Answers a request of either exchange: a response channel answers the request it came
    /// with, whichever exchange's behaviour sends it.
    fn respond(
        &mut self,
        channel: request_response::ResponseChannel<PeerResponse>,
        response: PeerResponse,
    ) {
        let status = &mut self.swarm.behaviour_mut().inner_mut().peer_requests;
        let _ = status.send_response(channel, response);
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<GatedEvent>) -> anyhow::Result<()> {
        if let Some(metrics) = &self.metrics {
            metrics.libp2p.record(&event);
        }
        let local = self.node.local();
        let now = now_nanos();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                // Relay reservations carry the external addresses: without any, clients
                // could not be reached through this peer.
                if self.config.cluster.announce_multiaddress.is_empty() {
                    self.swarm.add_external_address(address.clone());
                }
                tracing::info!(address = %with_peer_id(&address, local), "listening");
                self.listening_changed();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if self.config.cluster.announce_multiaddress.is_empty() {
                    self.swarm.remove_external_address(&address);
                }
                self.listening_changed();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
                if endpoint.is_dialer() {
                    self.dialed.insert(connection_id);
                }
                self.node.on_connected(peer_id, now);
                self.circuits.on_connected(peer_id, &mut self.swarm);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(address) = self.circuits.on_listener_closed(listener_id) {
                    match reason {
                        Ok(()) => {
                            tracing::info!(%address, "the relay reservation ended; listening again when the relay is back")
                        }
                        Err(error) => {
                            tracing::warn!(%address, %error, "the relay refused or lost the reservation; listening again when the relay is back")
                        }
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.dialed.remove(&connection_id);
                if num_established == 0 {
                    tracing::debug!(peer = %peer_id, "disconnected");
                    self.node.on_disconnected(peer_id, now);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let wrong_secret = matches!(&error, DialError::Transport(errors) if errors.iter().any(|(_, e)| looks_like_wrong_secret(e)));
                if wrong_secret {
                    tracing::error!(peer = ?peer_id, "{WRONG_SECRET}");
                } else {
                    tracing::debug!(peer = ?peer_id, %error, "dial failed");
                }
            }
            SwarmEvent::Behaviour(psk_gate::Event::Inner(event)) => {
                self.on_behaviour_event(event).await?
            }
            SwarmEvent::Behaviour(psk_gate::Event::Proven { peer, .. }) => {
                tracing::debug!(%peer, "the WebRTC connection proved the cluster secret");
            }
            SwarmEvent::Behaviour(psk_gate::Event::Rejected {
                peer,
                connection,
                reason,
            }) => {
                if let Some(metrics) = &self.metrics {
                    metrics.psk_rejections.inc();
                }
                if self.dialed.remove(&connection) {
                    tracing::error!(%peer, "{WRONG_SECRET}: {reason}");
                } else {
                    tracing::warn!(%peer, "closed a connection that did not prove the cluster secret: {reason}");
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) -> anyhow::Result<()> {
        if let Some(metrics) = &self.metrics {
            match &event {
                BehaviourEvent::Gossipsub(e) => metrics.libp2p.record(e),
                BehaviourEvent::Identify(e) => metrics.libp2p.record(e),
                BehaviourEvent::Ping(e) => metrics.libp2p.record(e),
                BehaviourEvent::Relay(e) => metrics.libp2p.record(e),
                BehaviourEvent::DhtWan(e) | BehaviourEvent::DhtLan(e) => metrics.libp2p.record(e),
                _ => {}
            }
        }
        let now = now_nanos();
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let verdict = match self.topics.sort(&message) {
                    Some((author, topic)) => {
                        self.node
                            .on_gossip(topic, author, message.data, now)
                            .await?
                    }
                    None => GossipVerdict::Reject,
                };
                let gossipsub = &mut self.swarm.behaviour_mut().inner_mut().gossipsub;
                pubsub::report_verdict(gossipsub, &message_id, &propagation_source, verdict);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            }) => {
                tracing::debug!(peer = %peer_id, ?failed_messages, "gossip to a slow peer was dropped");
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(topic) = self.topics.of(&topic) {
                    self.node.on_subscribed(peer_id, topic);
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                tracing::debug!(
                    peer = %peer_id,
                    agent = ?info.agent_version,
                    protocol_version = ?info.protocol_version,
                    "identified"
                );
                let speaks = |protocol: &str| info.protocols.iter().any(|p| p.as_ref() == protocol);
                if speaks(pinfold_core::codec::gorpc::PROTOCOL)
                    && !speaks(pinfold_core::codec::peer_request::PROTOCOL)
                {
                    self.rpc_only.insert(peer_id);
                } else {
                    self.rpc_only.remove(&peer_id);
                }
                let behaviour = self.swarm.behaviour_mut().inner_mut();
                dht::learn(&mut behaviour.dht_wan, peer_id, &info);
                dht::learn(&mut behaviour.dht_lan, peer_id, &info);
                self.node.on_identified(peer_id, info.listen_addrs, now);
            }
            BehaviourEvent::Bitswap(bitswap::Event::Block { cid, data, .. }) => {
                self.node.on_block(cid, data, now).await?;
            }
            BehaviourEvent::Bitswap(bitswap::Event::Unavailable { cid }) => {
                self.node.on_block_unavailable(cid, now).await?;
            }
            BehaviourEvent::Bitswap(bitswap::Event::Wanted { peer, wants }) => {
                self.node.on_wanted(peer, wants).await?;
            }
            BehaviourEvent::PeerRequests(event) => {
                self.on_peer_request(Exchange::PeerRequest, event).await?
            }
            BehaviourEvent::RepoGc(event) => self.on_peer_request(Exchange::RepoGc, event).await?,
            BehaviourEvent::Raft(event) => self.on_raft_event(event).await?,
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "reserved a slot on a relay: peers reach this one through it")
            }
            _ => {}
        }
        Ok(())
    }

    /// A request or answer of either exchange. Garbage collections are answered over
    /// [`Exchange::RepoGc`] only, whose timeout allows for them.
    async fn on_peer_request(
        &mut self,
        exchange: Exchange,
        event: peer_request::Event,
    ) -> anyhow::Result<()> {
        let (request_id, answer) = match peer_request::handling(event) {
            Handling::Asked { request, channel } => {
                match self.node.on_request(request).await? {
                    Answer::Now(response) => self.respond(channel, response),
                    Answer::FromDaemon(request) => {
                        self.answer_from_daemon(exchange, request, channel)
                    }
                }
                return Ok(());
            }
            Handling::Answered { id, answer } => (id, answer),
            Handling::Nothing => return Ok(()),
        };
        if let Some(id) = self.requests.remove(&(exchange, request_id)) {
            self.node.on_response(id, answer, now_nanos()).await?;
        }
        Ok(())
    }

    /// Answers a request that needs the IPFS daemon, in a task of its own.
    fn answer_from_daemon(
        &mut self,
        exchange: Exchange,
        request: PeerRequest,
        channel: request_response::ResponseChannel<PeerResponse>,
    ) {
        let report = self.background_tx.clone();
        let ipfs = self.ipfs.clone();
        let commands = self.commands_tx.clone();
        let (local, peername) = (self.node.local(), self.config.cluster.peername.clone());
        tokio::spawn(async move {
            let answer = match request {
                PeerRequest::RepoGc => Background::AnswerRepoGc {
                    gc: match exchange {
                        Exchange::RepoGc => Ok(repo_gc(ipfs.as_ref(), local, peername).await),
                        Exchange::PeerRequest => Err(TaskError::RepoGcProtocol),
                    },
                    channel,
                },
                PeerRequest::Statuses { cids, recover } => Background::AnswerStatus {
                    cids,
                    recover,
                    daemon: recent_daemon_pins(ipfs.as_ref()).await,
                    channel,
                },
                PeerRequest::Connections => {
                    let ipfs_peers = match ipfs {
                        Some(ipfs) => ipfs.swarm_peers().await,
                        None => Ok(Vec::new()),
                    };
                    Background::AnswerConnections {
                        ipfs_peers,
                        channel,
                    }
                }
                PeerRequest::Summary => Background::AnswerSummary {
                    summary: summarize(&commands, ipfs.as_ref()).await,
                    channel,
                },
                // The node answers these itself.
                PeerRequest::Snapshot | PeerRequest::Ancestors { .. } => return,
            };
            let _ = report.send(answer).await;
        });
    }

    /// Pins and unpins `first` and the writes queued right behind it as one write group
    /// (at most [`MAX_WRITE_GROUP`] commands): one disk flush for them all, then every
    /// answer. Commands that read the peerset only are answered on the way; returns the
    /// command that ended the group, if any.
    async fn on_writes(&mut self, first: Command) -> anyhow::Result<Option<Command>> {
        let now = now_nanos();
        self.node.begin_write_group();
        let mut replies = Vec::new();
        let mut next = Some(first);
        let mut rest = None;
        let mut taken = 0;
        while let Some(command) = next.take() {
            taken += 1;
            match command {
                Command::AddPin { pin, reply } => {
                    replies.push((reply, self.node.add_pin(*pin, now).await));
                }
                Command::RemovePin {
                    cid,
                    cluster_dag_links,
                    reply,
                } => {
                    let removed = self.node.remove_pin(cid, &cluster_dag_links, now).await;
                    replies.push((reply, removed));
                }
                read if read.reads_peers_only() => Box::pin(self.on_command(read)).await?,
                other => {
                    rest = Some(other);
                    break;
                }
            }
            if taken < MAX_WRITE_GROUP {
                next = self.commands.try_recv().ok();
            }
        }
        let flushed = self.node.end_write_group(now).await;
        let proposal = self.node.take_proposal();
        for (reply, result) in replies {
            let result = match &flushed {
                Ok(()) => result,
                Err(error) => result.and(Err(CommandError::Store(error.to_string()))),
            };
            self.answer_write(&proposal, reply, result);
        }
        Ok(rest)
    }

    async fn on_command(&mut self, command: Command) -> anyhow::Result<()> {
        let now = now_nanos();
        match command {
            Command::AddPin { .. } | Command::RemovePin { .. } => {
                // `rest` is not a write, nor are the reads answered inside the group: the
                // recursion goes one level deep.
                if let Some(rest) = self.on_writes(command).await? {
                    Box::pin(self.on_command(rest)).await?;
                }
            }
            Command::AddDestinations { template, reply } => {
                let _ = reply.send(self.node.add_destinations(*template, now));
            }
            Command::GetPin { cid, reply } => {
                let _ = reply.send(self.node.pin(&cid).await?);
            }
            Command::Pins {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.node.pins(after.as_ref(), limit).await?);
            }
            Command::Status {
                cids,
                recover,
                reply,
            } => {
                let _ = reply.send(self.node.statuses_of(cids, recover, now).await?);
            }
            Command::Statuses {
                after,
                daemon,
                filter,
                reply,
            } => {
                let page = self
                    .node
                    .status_page(after.as_ref(), &daemon, filter)
                    .await?;
                let _ = reply.send(page);
            }
            Command::StatusCounts {
                after,
                daemon,
                reply,
            } => {
                let _ = reply.send(self.node.count_page(after.as_ref(), &daemon).await?);
            }
            Command::PeerStatuses {
                cids,
                recover,
                reply,
            } => {
                let question = Question::Statuses { cids, recover };
                let id = self.node.ask_peers(question, None, now);
                self.replies.insert(id, Reply::Statuses(reply));
            }
            Command::PeersRepoGc { reply } => {
                let id = self.node.ask_peers(Question::RepoGc, None, now);
                self.replies.insert(id, Reply::RepoGc(reply));
            }
            Command::Connections { reply } => {
                let own = self.node.connections(Vec::new(), now);
                let local = Gathered::Connections(vec![(self.node.local(), Ok(own))]);
                let id = self.node.ask_peers(Question::Connections, Some(local), now);
                self.replies.insert(id, Reply::Connections(reply));
            }
            Command::RemovePeer { peer, reply } => {
                // Under Raft, as in Go: its pins are re-allocated, then it leaves the Raft
                // peers, in one proposal.
                self.node.begin_write_group();
                let result = self
                    .node
                    .remove_peer(peer, now)
                    .await
                    .and_then(|moved| self.node.remove_raft_peer(peer).map(|()| moved));
                self.node.end_write_group(now).await?;
                let proposal = self.node.take_proposal();
                self.answer_write(&proposal, reply, result);
            }
            Command::AddPeer { peer, reply } => {
                self.node.begin_write_group();
                let result = self.node.add_raft_peer(peer);
                self.node.end_write_group(now).await?;
                let proposal = self.node.take_proposal();
                self.answer_write(&proposal, reply, result);
            }
            Command::RaftStatus { reply } => {
                let _ = reply.send(self.raft_status());
            }
            Command::Alerts { reply } => {
                let _ = reply.send(self.node.alerts().cloned().collect());
            }
            Command::Info { reply } => {
                let ipfs_error = match self.ipfs.as_ref().map(|i| i.health()) {
                    Some(Health::Down { error, .. }) => Some(error),
                    _ => None,
                };
                let local = self.node.local();
                let ipfs = self.node.ipfs();
                let _ = reply.send(PeerInfo {
                    id: local,
                    peername: self.config.cluster.peername.clone(),
                    addresses: self
                        .swarm
                        .listeners()
                        .map(|a| with_peer_id(a, local))
                        .collect(),
                    cluster_peers: self.node.peerset(now),
                    cluster_peers_addresses: self.node.member_addresses(now),
                    ipfs: ipfs.peer.map(|peer| IpfsId {
                        peer,
                        addresses: ipfs.addresses.clone(),
                    }),
                    ipfs_error,
                    role: self.config.cluster.role,
                });
            }
            Command::Peers { reply } => {
                let trust = &self.node.config().trust;
                let peers = self
                    .node
                    .monitor()
                    .latest_metrics(monitor::PING_METRIC, now)
                    .into_iter()
                    .map(|ping| {
                        let info = monitor::PingInfo::of(&ping).unwrap_or_default();
                        PeerSummary {
                            id: ping.peer,
                            trusted: trust.trusts(&ping.peer),
                            ipfs_addresses: info
                                .ipfs_addresses
                                .iter()
                                .filter_map(|a| a.parse().ok())
                                .collect(),
                            name: info.peer_name,
                        }
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Sync { reply } => {
                let _ = reply.send(self.node.sync_state());
            }
            Command::Metrics { name, reply } => {
                let _ = reply.send(self.node.metrics(&name, now));
            }
        }
        Ok(())
    }
}

/// The node's configuration from the peer's.
fn node_config(config: &ServiceConfig, local: PeerId, trust: crdt::Trust) -> NodeConfig {
    let cluster = &config.cluster;
    let informers = &config.informer;
    let at_least = |d: Duration, min: Duration| d.max(min).as_millis() as u64;
    NodeConfig {
        local,
        peername: cluster.peername.clone(),
        role: match cluster.role {
            Role::Full => NodeRole::Full,
            Role::Relay => NodeRole::Relay,
            Role::Follower => NodeRole::Follower,
        },
        trust,
        allocator: AllocatorConfig {
            allocate_by: config.allocator.balanced.allocate_by.clone(),
            replication_factor_min: cluster.replication_factor_min,
            replication_factor_max: cluster.replication_factor_max,
            pin_only_on_trusted_peers: cluster.pin_only_on_trusted_peers,
            pin_only_on_untrusted_peers: cluster.pin_only_on_untrusted_peers,
        },
        periods: Periods {
            ping: cluster.monitor_ping_interval.millis(),
            // Half the shortest TTL, so that no informer's metric expires between two.
            informers: at_least(
                informers
                    .numpin
                    .as_ref()
                    .map_or(informers.disk.metric_ttl.0, |n| {
                        n.metric_ttl.0.min(informers.disk.metric_ttl.0)
                    })
                    / 2,
                Duration::from_millis(100),
            ),
            recover: at_least(cluster.pin_recover_interval.0, Duration::from_secs(1)),
            expiry: at_least(cluster.state_sync_interval.0, Duration::from_secs(1)),
            connect_swarms: at_least(
                config.ipfs_connector.ipfshttp.connect_swarms_delay.0,
                Duration::from_secs(1),
            ),
        },
        informers: Some(InformerSettings {
            disk: if informers.disk.metric_type == "reposize" {
                DiskMetric::RepoSize
            } else {
                DiskMetric::FreeSpace
            },
            disk_ttl_ms: informers.disk.metric_ttl.millis(),
            tags: informers.tags.tags.clone(),
            tags_ttl_ms: informers.tags.metric_ttl.millis(),
            pinqueue_bucket: informers.pinqueue.weight_bucket_size,
            pinqueue_ttl_ms: informers.pinqueue.metric_ttl.millis(),
            numpin_ttl_ms: informers.numpin.as_ref().map(|n| n.metric_ttl.millis()),
        }),
        // Under Raft, Raft's own snapshots bring new peers up to date.
        snapshots: if config.consensus.raft.is_some() {
            SnapshotPolicy::NEVER
        } else {
            SnapshotPolicy {
                every: config.consensus.crdt.snapshot_every,
                min_interval_ms: config.consensus.crdt.snapshot_min_interval.millis(),
            }
        },
        bootstrap_from_snapshot: config.consensus.raft.is_none(),
        max_connections: usize::MAX,
        dialable: is_dialable,
        repinning: !cluster.disable_repinning,
    }
}

/// The daemon's recursive pins, kept current (see [`IpfsClient::recent_recursive_pins`]),
/// for answering other peers' status requests; none for a peer without a daemon (a relay).
async fn recent_daemon_pins(ipfs: Option<&Ipfs>) -> Result<Arc<DaemonPins>, IpfsError> {
    match ipfs {
        Some(ipfs) => ipfs.recent_recursive_pins().await,
        None => Ok(Arc::new(DaemonPins::new())),
    }
}

/// A garbage collection of this peer's daemon's repository, as its answer reads; a peer
/// without a daemon (a relay) has nothing to collect and says so.
/// The daemon's recursive pins: the count kept since its last full listing, or a new
/// listing's when there is none yet.
async fn daemon_pin_count(ipfs: &Ipfs) -> Option<u64> {
    if let Some(count) = ipfs.pin_count() {
        return u64::try_from(count).ok();
    }
    match ipfs.pin_ls_all("recursive").await {
        Ok(pins) => Some(pins.len() as u64),
        Err(error) => {
            tracing::debug!(%error, "the numpin informer could not list the daemon's pins");
            None
        }
    }
}

pub(crate) async fn repo_gc(ipfs: Option<&Ipfs>, peer: PeerId, peername: String) -> RepoGc {
    match ipfs {
        Some(ipfs) => match ipfs.repo_gc().await {
            Ok(keys) => RepoGc::collected(peer, peername, keys),
            Err(error) => RepoGc::failed(peer, peername, error.to_string()),
        },
        None => RepoGc::failed(
            peer,
            peername,
            "this peer has no IPFS daemon (its role pins nothing)".into(),
        ),
    }
}

/// This peer's statuses of the whole pinset, counted a page per command so that the event
/// loop goes on between pages. A relay pins nothing: its pins are all `remote`.
async fn summarize(
    commands: &mpsc::Sender<Command>,
    ipfs: Option<&Ipfs>,
) -> Result<StatusSummary, TaskError> {
    let daemon = recent_daemon_pins(ipfs)
        .await
        .map_err(TaskError::DaemonPins)?;
    let (mut summary, mut after) = (StatusSummary::default(), None);
    loop {
        let (reply, answer) = oneshot::channel();
        let command = Command::StatusCounts {
            after,
            daemon: daemon.clone(),
            reply,
        };
        commands
            .send(command)
            .await
            .map_err(|_| TaskError::ShuttingDown)?;
        let (page, next) = answer.await.map_err(|_| TaskError::ShuttingDown)?;
        summary.add(&page);
        match next {
            Some(cid) => after = Some(cid),
            None => return Ok(summary),
        }
    }
}

/// `address` ending in `/p2p/<peer>`; circuit addresses through a relay already do.
fn with_peer_id(address: &Multiaddr, peer: PeerId) -> Multiaddr {
    address.clone().with_p2p(peer).unwrap_or_else(|other| other)
}

/// Addresses worth keeping for a redial: not relay circuits or unspecified addresses.
fn is_dialable(address: &Multiaddr) -> bool {
    !address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) && !node::is_unspecified(address)
}

/// A handshake that fails inside pnet or Noise: what a different secret produces.
fn looks_like_wrong_secret(error: &libp2p::TransportError<std::io::Error>) -> bool {
    let libp2p::TransportError::Other(error) = error else {
        return false;
    };
    if WrongSecret::is_cause_of(error) {
        return true;
    }
    let mut text = error.to_string().to_lowercase();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push(' ');
        text.push_str(&inner.to_string().to_lowercase());
        source = inner.source();
    }
    text.contains("noise")
        || text.contains("handshake")
        || text.contains("decrypt")
        || text.contains("multistream")
        || text.contains("protocol negotiation")
        || text.contains("timeout")
        || text.contains("unexpected end of file")
}
