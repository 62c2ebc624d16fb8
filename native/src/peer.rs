//! The running peer: one task that owns the swarm, the replica on its redb file, the
//! monitor and the pin tracker, and moves events between them. Everything else (the REST
//! API, IPFS calls) runs in other tasks and talks to it through bounded channels.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use cid::Cid;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::metrics::Recorder as _;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{identify, relay, Multiaddr, PeerId, Swarm};
use pinfold_core::allocator::{self, AllocationRequest, AllocatorConfig, MetricsSet};
use pinfold_core::codec::delta::encode_broadcast;
use pinfold_core::codec::metric::Metric;
use pinfold_core::codec::pubsub::{crdt_topic, METRICS_TOPIC};
use pinfold_core::codec::status::{
    Connections, StatusRequest, StatusResponse, StatusSummary, REPO_GC_PROTOCOL,
};
use pinfold_core::crdt::{self, BatchConfig, Output, PinEvent, Replica};
use pinfold_core::informer::{self, DiskMetric, RepoStat};
use pinfold_core::monitor::{self, Monitor};
use pinfold_core::net::pnet_guard::WrongSecret;
use pinfold_core::net::{bitswap, status};
use pinfold_core::pin::Pin;
use pinfold_core::repo_gc::RepoGc;
use pinfold_core::tracker::{
    DaemonPins, IpfsPinType, OpId, OperationKind, PeerIdentity, PinInfo, PinInfoShort, PinTracker,
    StatusFilter, TrackerAction, TrackerConfig, TrackerStatus,
};
use tokio::sync::{mpsc, oneshot};

use crate::circuits::CircuitListens;
use crate::config::{Role, ServiceConfig, PEERSTORE_FILE, PINSET_FILE, WEBRTC_CERTIFICATE_FILE};
use crate::ipfs::{pin_type_name, Health, Ipfs, IpfsClient, IpfsConfig, IpfsId};
use crate::metrics::PeerMetrics;
use crate::peerstore::Peerstore;
use crate::snapshots::{SnapshotPolicy, Snapshots};
use crate::store::RedbStore;
use crate::swarm::{self, BehaviourEvent, Gated, GatedEvent, SwarmSettings, WRONG_SECRET};
use pinfold_core::net::psk_gate;

/// Commands the API tasks may queue at once.
pub const COMMAND_QUEUE: usize = 256;
/// Pins read from the store per status page.
pub const PAGE: usize = 1000;
// A page of pins is asked of other peers in one status request.
const _: () = assert!(PAGE <= pinfold_core::codec::status::MAX_CIDS);

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

/// Why a command was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    #[error(
        "this peer is a follower (cluster.role) and does not write to the pinset; send writes to a full peer"
    )]
    ReadOnly,
    #[error("{0} is not pinned in the cluster")]
    NotFound(Cid),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

/// What the peer says about itself (`/id`).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub id: PeerId,
    pub peername: String,
    pub addresses: Vec<Multiaddr>,
    pub cluster_peers: Vec<PeerId>,
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

/// Where the CRDT stands (for `state crdt info` and the API).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SyncInfo {
    pub heads: Vec<String>,
    pub height: u64,
    pub pending: usize,
    pub merged: u64,
    pub synced: bool,
}

/// How the IPFS daemon pins a CID, or why it could not tell.
pub type DaemonAnswer = Result<Option<IpfsPinType>, String>;

/// Requests from the API to the peer task; each carries its reply channel.
pub enum Command {
    AddPin {
        pin: Box<Pin>,
        reply: oneshot::Sender<Result<Pin, CommandError>>,
    },
    RemovePin {
        cid: Cid,
        reply: oneshot::Sender<Result<Pin, CommandError>>,
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
    /// [`pinfold_core::codec::status::MAX_CIDS`]), after each recovered them if `recover`;
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
    Info {
        reply: oneshot::Sender<PeerInfo>,
    },
    /// The peerset, from its ping metrics.
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    Sync {
        reply: oneshot::Sender<SyncInfo>,
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

/// A handle to a running peer, for the API.
#[derive(Clone)]
pub struct PeerHandle {
    pub commands: mpsc::Sender<Command>,
    pub ipfs: Option<Ipfs>,
    pub local: PeerId,
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
            .map_err(|_| CommandError::Internal("the peer is shutting down".into()))?;
        answer
            .await
            .map_err(|_| CommandError::Internal("the peer is shutting down".into()))
    }
}

/// What background tasks report to the peer task.
enum Background {
    OpDone {
        cid: Cid,
        id: OpId,
        result: Result<(), String>,
    },
    RepoStat(Option<RepoStat>),
    IpfsId(IpfsId),
    /// The daemon's pin list for a recover sweep.
    Recover(DaemonPins),
    /// A peer's status request, with the daemon's pins it needs (or why they are missing).
    AnswerStatus {
        cids: Vec<Cid>,
        recover: bool,
        daemon: Result<Arc<DaemonPins>, String>,
        channel: request_response::ResponseChannel<StatusResponse>,
    },
    /// A peer's connections request, with the daemon's peers (or why they are missing).
    AnswerConnections {
        ipfs_peers: Result<Vec<PeerId>, String>,
        channel: request_response::ResponseChannel<StatusResponse>,
    },
    /// Another peer asked for the latest snapshot.
    AnswerSnapshot {
        channel: request_response::ResponseChannel<StatusResponse>,
    },
    /// Another peer's summary request, counted (or why it could not be).
    AnswerSummary {
        summary: Result<StatusSummary, String>,
        channel: request_response::ResponseChannel<StatusResponse>,
    },
    /// Another peer's garbage collection request, carried out on the daemon (or why not).
    AnswerRepoGc {
        gc: Result<RepoGc, String>,
        channel: request_response::ResponseChannel<StatusResponse>,
    },
}

/// The two request-response exchanges a gathering's requests go over: quick questions, and
/// repository garbage collections (which may take hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Exchange {
    Status,
    RepoGc,
}

/// Answers being gathered from the other peers: those so far and how many are awaited.
struct Gathering {
    awaiting: usize,
    answers: Answers,
}

enum Answers {
    /// Views of `cids`.
    Statuses {
        cids: Vec<Cid>,
        infos: Vec<PinInfo>,
        reply: oneshot::Sender<Vec<PinInfo>>,
    },
    /// Each peer's connections.
    Connections {
        links: Vec<(PeerId, Result<Connections, String>)>,
        reply: oneshot::Sender<Vec<(PeerId, Result<Connections, String>)>>,
    },
    /// Each peer's garbage collection.
    RepoGc {
        results: Vec<RepoGc>,
        reply: oneshot::Sender<Vec<RepoGc>>,
    },
}

impl Answers {
    fn reply(self) {
        match self {
            Answers::Statuses { infos, reply, .. } => {
                let _ = reply.send(infos);
            }
            Answers::Connections { links, reply } => {
                let _ = reply.send(links);
            }
            Answers::RepoGc { results, reply } => {
                let _ = reply.send(results);
            }
        }
    }
}

/// Alerts kept for `/health/alerts` (ipfs-cluster's alert channel holds as many).
pub const MAX_ALERTS: usize = 256;

/// Swarm addresses a `ping` announces, and that are taken from one.
const MAX_ANNOUNCED_ADDRESSES: usize = 8;

/// Bound on background reports waiting.
const BACKGROUND_QUEUE: usize = 1024;

/// Re-dials a known peer that dropped after this long at first, doubling to the maximum.
const REDIAL_MIN: Duration = Duration::from_secs(1);
const REDIAL_MAX: Duration = Duration::from_secs(60);

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
    config: ServiceConfig,
    local: PeerId,
    role: Role,
    swarm: Swarm<Gated>,
    replica: Replica<RedbStore>,
    tracker: Option<PinTracker>,
    monitor: Monitor,
    ipfs: Option<Ipfs>,
    ipfs_id: Option<IpfsId>,
    allocator: AllocatorConfig,
    trust: crdt::Trust,
    heads_topic: IdentTopic,
    metrics_topic: IdentTopic,
    commands: mpsc::Receiver<Command>,
    /// Its own commands, for background work that reads the pinset page by page.
    commands_tx: mpsc::Sender<Command>,
    background_tx: mpsc::Sender<Background>,
    background: mpsc::Receiver<Background>,
    cancels: HashMap<OpId, oneshot::Sender<()>>,
    peerstore: Peerstore,
    /// Peers to keep connected: when they drop, redial at (time, back-off).
    redial: HashMap<PeerId, (tokio::time::Instant, Duration)>,
    /// Connections this peer dialed, so that a failed secret proof on one reads as a failed
    /// dial.
    dialed: HashSet<ConnectionId>,
    circuits: CircuitListens,
    metrics: Option<PeerMetrics>,
    /// The latest alerts (metrics that expired), newest first, at most [`MAX_ALERTS`].
    alerts: VecDeque<monitor::Alert>,
    /// Requests sent to other peers, by the gathering they belong to.
    status_requests: HashMap<(Exchange, OutboundRequestId), (u64, PeerId)>,
    gatherings: HashMap<u64, Gathering>,
    next_gathering: u64,
    /// Peers whose heads were announced to since they subscribed.
    head_subscribers: HashSet<PeerId>,
    heads_announce_due: bool,
    snapshots: Snapshots,
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
        };
        let mut swarm = swarm::build(key, &settings)?;
        let (circuits, direct) = CircuitListens::split(&config.cluster.listen_multiaddress)
            .map_err(anyhow::Error::msg)?;
        for address in direct {
            swarm
                .listen_on(address.clone())
                .with_context(|| format!("could not listen on {address}"))?;
        }
        for (relay, address) in circuits.relays() {
            if let Err(error) = swarm.dial(address.clone()) {
                tracing::warn!(%relay, %address, %error, "could not dial the relay to listen through");
            }
        }
        for address in &config.cluster.announce_multiaddress {
            swarm.add_external_address(address.clone());
        }
        let heads_topic = IdentTopic::new(crdt_topic(&config.consensus.crdt.cluster_name));
        let metrics_topic = IdentTopic::new(METRICS_TOPIC);
        swarm
            .behaviour_mut()
            .inner_mut()
            .gossipsub
            .subscribe(&heads_topic)?;
        swarm
            .behaviour_mut()
            .inner_mut()
            .gossipsub
            .subscribe(&metrics_topic)?;

        let store = RedbStore::open(&dir.join(PINSET_FILE))?;
        let trust = config.trust()?;
        let crdt_config = crdt::Config {
            trust: trust.clone(),
            batch: if config.consensus.crdt.batching.max_batch_size > 0
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
        let snapshots = Snapshots::open(
            &dir,
            SnapshotPolicy {
                every: config.consensus.crdt.snapshot_every,
                min_interval: config.consensus.crdt.snapshot_min_interval.0,
            },
            &replica,
        )
        .await?;

        let ipfs = if role.pins() {
            let h = &config.ipfs_connector.ipfshttp;
            Some(Arc::new(
                IpfsClient::new(
                    &h.node_multiaddress,
                    IpfsConfig {
                        request_timeout: h.ipfs_request_timeout.0,
                        pin_stall_timeout: h.pin_timeout.0,
                        unpin_timeout: h.unpin_timeout.0,
                    },
                )
                .map_err(|e| anyhow::anyhow!("ipfs_connector.ipfshttp.node_multiaddress: {e}"))?,
            ))
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

        let peerstore = Peerstore::load(&dir.join(PEERSTORE_FILE))?;
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let (background_tx, background) = mpsc::channel(BACKGROUND_QUEUE);
        let allocator = AllocatorConfig {
            allocate_by: config.allocator.balanced.allocate_by.clone(),
            replication_factor_min: config.cluster.replication_factor_min,
            replication_factor_max: config.cluster.replication_factor_max,
            ..AllocatorConfig::default()
        };
        let handle = PeerHandle {
            commands: commands_tx,
            ipfs: ipfs.clone(),
            local,
        };
        let mut peer = Self {
            config,
            local,
            role,
            swarm,
            replica,
            tracker,
            monitor: Monitor::new(),
            ipfs,
            ipfs_id: None,
            allocator,
            trust,
            heads_topic,
            metrics_topic,
            commands,
            commands_tx: handle.commands.clone(),
            background_tx,
            background,
            cancels: HashMap::new(),
            peerstore,
            redial: HashMap::new(),
            dialed: HashSet::new(),
            circuits,
            status_requests: HashMap::new(),
            gatherings: HashMap::new(),
            next_gathering: 0,
            metrics,
            alerts: VecDeque::new(),
            head_subscribers: HashSet::new(),
            heads_announce_due: false,
            snapshots,
        };
        peer.count_pins().await?;
        let mut dial: Vec<Multiaddr> = peer.config.cluster.peer_addresses.clone();
        dial.extend(bootstrap);
        dial.extend(peer.peerstore.addresses());
        for address in dial {
            peer.dial(address);
        }
        Ok((peer, handle))
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Sets `ipfscluster_pins` from the stored pinset; pin events keep it current after.
    async fn count_pins(&mut self) -> anyhow::Result<()> {
        let Some(metrics) = self.metrics.clone() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let count = for_each_page(&self.replica, |_| Ok(())).await?;
        metrics.pins.set(count as i64);
        tracing::info!(pins = count, elapsed = ?started.elapsed(), "counted the pinset for the metrics");
        Ok(())
    }

    /// Refreshes the metrics that are read rather than counted.
    fn refresh_metrics(&self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        if let Some(tracker) = &self.tracker {
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
        let now = now_nanos();
        metrics
            .peers
            .set(self.monitor.peerset(&self.local, now).len() as i64);
        let progress = self.replica.progress();
        metrics.crdt_heads.set(progress.heads as i64);
        metrics.crdt_height.set(progress.height as i64);
        metrics.crdt_pending_blocks.set(progress.pending as i64);
        metrics.crdt_merged_deltas.set(progress.merged as i64);
        metrics.refresh_resident_memory();
    }

    fn dial(&mut self, address: Multiaddr) {
        let Some(Protocol::P2p(peer)) = address.iter().last() else {
            tracing::warn!(%address, "cannot dial an address without /p2p/<peer id>");
            return;
        };
        if peer == self.local {
            return;
        }
        self.swarm.add_peer_address(peer, address.clone());
        self.peerstore.add(peer, address.clone());
        self.redial
            .entry(peer)
            .or_insert((tokio::time::Instant::now(), REDIAL_MIN));
        if let Err(error) = self.swarm.dial(address.clone()) {
            tracing::debug!(%address, %error, "dial failed");
        }
    }

    /// Runs until `shutdown` resolves, then commits pending writes and saves the peerstore.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping = tokio::time::interval(self.config.cluster.monitor_ping_interval.0);
        let informer_period =
            (self.config.informer.disk.metric_ttl.0 / 2).max(Duration::from_millis(100));
        let mut informers = tokio::time::interval(informer_period);
        let mut recover = tokio::time::interval(
            self.config
                .cluster
                .pin_recover_interval
                .0
                .max(Duration::from_secs(1)),
        );
        let mut expiry = tokio::time::interval(
            self.config
                .cluster
                .state_sync_interval
                .0
                .max(Duration::from_secs(1)),
        );
        let connect_period = self
            .config
            .ipfs_connector
            .ipfshttp
            .connect_swarms_delay
            .0
            .max(Duration::from_secs(1));
        let mut connect_swarms =
            tokio::time::interval_at(tokio::time::Instant::now() + connect_period, connect_period);
        let mut report = tokio::time::interval(
            self.config
                .observations
                .metrics
                .reporting_interval
                .0
                .max(Duration::from_millis(100)),
        );
        self.refresh_ipfs_id();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await?,
                Some(command) = self.commands.recv() => self.on_command(command).await?,
                Some(report) = self.background.recv() => self.on_background(report).await?,
                _ = tick.tick() => self.on_tick().await?,
                _ = ping.tick() => self.publish_ping(),
                _ = informers.tick() => self.read_informers(),
                _ = recover.tick() => self.start_recover(),
                _ = expiry.tick() => self.unpin_expired().await?,
                _ = connect_swarms.tick() => self.connect_swarms(),
                _ = report.tick(), if self.metrics.is_some() => self.refresh_metrics(),
                // A loading snapshot merges one chunk per turn, between the other events.
                _ = tokio::task::yield_now(), if self.replica.has_work() => {
                    self.replica.work(now_ms()).await?;
                }
                _ = &mut shutdown => break,
            }
            self.drain_replica().await?;
            self.drive_tracker();
        }
        tracing::info!("shutting down: committing pending writes");
        self.replica.commit(now_ms()).await?;
        self.drain_replica().await?;
        for cancel in self.cancels.drain().map(|(_, c)| c) {
            let _ = cancel.send(());
        }
        self.peerstore.save()?;
        Ok(())
    }

    // ----- the pinset -----------------------------------------------------------------

    /// Carries out the replica's outputs: broadcasts, fetches and pinset changes.
    async fn drain_replica(&mut self) -> anyhow::Result<()> {
        let bitswap = &mut self.swarm.behaviour_mut().inner_mut().bitswap;
        for output in bitswap.drain_replica(&mut self.replica, now_ms()).await? {
            match &output {
                Output::Broadcast(bytes) => self.publish(self.heads_topic.clone(), bytes.clone()),
                _ => self.on_pinset_change(&output),
            }
        }
        Ok(())
    }

    fn on_pinset_change(&mut self, output: &Output) {
        if let Some(metrics) = &self.metrics {
            match output {
                Output::Put { added: true, .. } => {
                    metrics.pins.inc();
                }
                Output::Delete { .. } => {
                    metrics.pins.dec();
                }
                _ => {}
            }
        }
        let Some(event) = PinEvent::from_output(output) else {
            return;
        };
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        let now = now_nanos();
        let result = match event {
            Ok(PinEvent::Pinned(pin)) => tracker.track(*pin, now),
            Ok(PinEvent::Unpinned(cid)) => tracker.untrack(cid, now),
            Err(error) => {
                tracing::warn!(%error, "ignoring a pinset entry that is not a pin");
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "could not queue a pin operation");
        }
    }

    fn publish(&mut self, topic: IdentTopic, data: Vec<u8>) {
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

    // ----- pinning --------------------------------------------------------------------

    fn drive_tracker(&mut self) {
        let (Some(tracker), Some(ipfs)) = (self.tracker.as_mut(), self.ipfs.as_ref()) else {
            return;
        };
        for action in tracker.poll(now_nanos()) {
            match action {
                TrackerAction::Start(dispatch) => {
                    let (cancel, cancelled) = oneshot::channel::<()>();
                    self.cancels.insert(dispatch.id, cancel);
                    let ipfs = ipfs.clone();
                    let report = self.background_tx.clone();
                    tokio::spawn(async move {
                        let cid = dispatch.pin.cid;
                        let work = async {
                            match dispatch.kind {
                                OperationKind::Pin => ipfs.pin(&dispatch.pin).await,
                                // A pin allocated elsewhere is unpinned as the type it
                                // has; a pin that left the pinset as either.
                                OperationKind::Remote => {
                                    ipfs.unpin(&cid, &[pin_type_name(&dispatch.pin)]).await
                                }
                                OperationKind::Unpin => {
                                    ipfs.unpin(&cid, &["recursive", "direct"]).await
                                }
                            }
                        };
                        let result = tokio::select! {
                            result = work => result.map_err(|e| e.to_string()),
                            _ = cancelled => Err("operation cancelled".to_owned()),
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
                TrackerAction::Cancel { id, .. } => {
                    if let Some(cancel) = self.cancels.remove(&id) {
                        let _ = cancel.send(());
                    }
                }
            }
        }
    }

    /// Fetches the daemon's pin list, then re-queues pins in error or missing.
    fn start_recover(&mut self) {
        let Some(ipfs) = self.ipfs.clone() else {
            return;
        };
        let report = self.background_tx.clone();
        tokio::spawn(async move {
            match ipfs.pin_ls_all("recursive").await {
                Ok(pins) => {
                    let _ = report.send(Background::Recover(pins)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "recover sweep skipped: could not list the daemon's pins")
                }
            }
        });
    }

    async fn recover_all(&mut self, daemon: DaemonPins) -> anyhow::Result<()> {
        let now = now_nanos();
        let Some(tracker) = self.tracker.as_mut() else {
            return Ok(());
        };
        let mut queued = 0usize;
        for_each_page(&self.replica, |page| {
            let infos: Vec<(Cid, TrackerStatus)> = tracker
                .statuses(page.iter().cloned(), &daemon, StatusFilter::ERROR)
                .map(|info| (info.cid, info.short.status))
                .collect();
            for (cid, status) in infos {
                let pin = page.iter().find(|p| p.cid == cid).cloned();
                if tracker.recover(cid, status, pin, now)? {
                    queued += 1;
                }
            }
            Ok(())
        })
        .await?;
        if queued > 0 {
            tracing::info!(
                queued,
                "recover: re-queued pins in error or missing on the daemon"
            );
        }
        Ok(())
    }

    /// Connects our IPFS daemon to the other peers' daemons (from their `ping` metrics),
    /// so that pins find their content without a DHT: ipfs-cluster's `ConnectSwarms`.
    fn connect_swarms(&mut self) {
        let Some(ipfs) = self.ipfs.clone() else {
            return;
        };
        let own = self.ipfs_id.as_ref().map(|id| id.peer.to_string());
        let addresses: Vec<Multiaddr> = self
            .pings()
            .filter(|(peer, ping)| *peer != self.local && Some(&ping.ipfs_id) != own.as_ref())
            .flat_map(|(_, ping)| ping.ipfs_addresses)
            .filter_map(|a| a.parse().ok())
            .collect();
        if addresses.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for address in addresses {
                if let Err(error) = ipfs.swarm_connect(&address).await {
                    tracing::debug!(%address, %error, "could not connect the IPFS daemon to a peer's daemon");
                }
            }
        });
    }

    // ----- metrics --------------------------------------------------------------------

    fn refresh_ipfs_id(&self) {
        let Some(ipfs) = self.ipfs.clone() else {
            return;
        };
        let report = self.background_tx.clone();
        tokio::spawn(async move {
            if let Ok(id) = ipfs.id().await {
                let _ = report.send(Background::IpfsId(id)).await;
            }
        });
    }

    fn publish_metric(&mut self, metric: Metric) {
        let bytes = metric.to_msgpack();
        self.monitor.receive(metric, now_nanos());
        self.publish(self.metrics_topic.clone(), bytes);
    }

    fn publish_ping(&mut self) {
        let ipfs_id = self
            .ipfs_id
            .as_ref()
            .map(|id| id.peer.to_string())
            .unwrap_or_default();
        let addresses: Vec<String> = self
            .ipfs_id
            .as_ref()
            .map(|id| id.addresses.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        // Circuit addresses too: followers reach peers through relays (native peers dial
        // only the others, see `learn_addresses`).
        let cluster_addresses: Vec<String> = self
            .swarm
            .external_addresses()
            .filter(|a| !is_unspecified(a))
            .take(MAX_ANNOUNCED_ADDRESSES)
            .map(|a| with_peer_id(a, self.local).to_string())
            .collect();
        let metric = monitor::ping_metric(
            &self.local,
            &monitor::PingInfo {
                peer_name: self.config.cluster.peername.clone(),
                ipfs_id,
                ipfs_addresses: addresses,
                cluster_addresses,
                role: self.config.cluster.role.as_str().to_owned(),
            },
            self.config.cluster.monitor_ping_interval.millis(),
            now_nanos(),
        );
        self.publish_metric(metric);
    }

    /// Asks the daemon for its repository figures; the informers publish when they come.
    fn read_informers(&mut self) {
        let Some(ipfs) = self.ipfs.clone() else {
            return;
        };
        if self.ipfs_id.is_none() {
            self.refresh_ipfs_id();
        }
        let report = self.background_tx.clone();
        tokio::spawn(async move {
            let stat = ipfs.repo_stat().await.ok();
            let _ = report.send(Background::RepoStat(stat)).await;
        });
    }

    /// Publishes the informers' metrics: disk (invalid when the daemon did not answer),
    /// tags and pin queue. A relay publishes none: it is never allocated pins.
    fn publish_informers(&mut self, stat: Option<RepoStat>) {
        let Some(tracker) = self.tracker.as_ref() else {
            return;
        };
        let now = now_nanos();
        let informers = &self.config.informer;
        let kind = if informers.disk.metric_type == "reposize" {
            DiskMetric::RepoSize
        } else {
            DiskMetric::FreeSpace
        };
        let disk = informer::disk_metric(
            kind,
            stat.as_ref(),
            &self.local,
            informers.disk.metric_ttl.millis(),
            now,
        );
        if let (Some(recorded), true) = (&self.metrics, disk.valid) {
            recorded.informer_disk.set(disk.weight);
        }
        let mut metrics = vec![disk];
        metrics.extend(informer::tag_metrics(
            &informers.tags.tags,
            &self.local,
            informers.tags.metric_ttl.millis(),
            now,
        ));
        metrics.push(informer::pinqueue_metric(
            Some(tracker.pin_queue_size()),
            informers.pinqueue.weight_bucket_size,
            &self.local,
            informers.pinqueue.metric_ttl.millis(),
            now,
        ));
        for metric in metrics {
            self.publish_metric(metric);
        }
    }

    fn live_metrics(&self, now: i64) -> MetricsSet {
        self.allocator
            .allocate_by
            .iter()
            .map(|name| (name.clone(), self.monitor.latest_metrics(name, now)))
            .collect()
    }

    // ----- events ---------------------------------------------------------------------

    async fn on_background(&mut self, report: Background) -> anyhow::Result<()> {
        match report {
            Background::OpDone { cid, id, result } => {
                self.cancels.remove(&id);
                if let Some(tracker) = self.tracker.as_mut() {
                    tracker.complete(&cid, id, result, now_nanos());
                }
            }
            Background::RepoStat(stat) => self.publish_informers(stat),
            Background::IpfsId(id) => {
                if let Some(tracker) = self.tracker.as_mut() {
                    tracker.set_ipfs(Some(id.peer), id.addresses.clone());
                }
                self.ipfs_id = Some(id);
            }
            Background::Recover(daemon) => self.recover_all(daemon).await?,
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
                            Err(error) => Err(error.clone()),
                        };
                        (cid, answer)
                    })
                    .collect();
                let infos = self.statuses_of(answers, recover).await?;
                self.respond(channel, StatusResponse::Statuses(infos));
            }
            Background::AnswerSnapshot { channel } => {
                let response = match self.snapshots.latest() {
                    Some(offer) => StatusResponse::Snapshot(offer),
                    None => StatusResponse::Error("no snapshot yet".into()),
                };
                self.respond(channel, response);
            }
            Background::AnswerRepoGc { gc, channel } => {
                let response = gc.map_or_else(StatusResponse::Error, StatusResponse::RepoGc);
                self.respond(channel, response);
            }
            Background::AnswerSummary { summary, channel } => {
                let response = summary.map_or_else(StatusResponse::Error, StatusResponse::Summary);
                self.respond(channel, response);
            }
            Background::AnswerConnections {
                ipfs_peers,
                channel,
            } => {
                let response = match ipfs_peers {
                    Ok(ipfs_peers) => StatusResponse::Connections(Connections {
                        cluster_peers: self.connected_cluster_peers(),
                        ipfs_id: self.ipfs_id.as_ref().map(|id| id.peer),
                        ipfs_peers,
                    }),
                    Err(error) => StatusResponse::Error(error),
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
        channel: request_response::ResponseChannel<StatusResponse>,
        response: StatusResponse,
    ) {
        let status = &mut self.swarm.behaviour_mut().inner_mut().status;
        let _ = status.send_response(channel, response);
    }

    async fn on_tick(&mut self) -> anyhow::Result<()> {
        let now = now_ms();
        self.replica.tick(now).await?;
        if self.role.writes() {
            if let Err(error) = self.snapshots.refresh(&mut self.replica, now).await {
                tracing::warn!("could not make a pinset snapshot: {error:#}");
            }
        }
        if let Err(error) = self.peerstore.save() {
            tracing::warn!(%error, "could not save the peerstore");
        }
        for alert in self.monitor.check(now_nanos()) {
            tracing::info!(peer = %alert.metric.peer, metric = %alert.metric.name, "metric expired: peer may be down");
            self.alerts.push_front(alert);
            self.alerts.truncate(MAX_ALERTS);
        }
        if self.heads_announce_due {
            self.heads_announce_due = false;
            let heads: Vec<Cid> = self.replica.heads().into_iter().map(|(c, _)| c).collect();
            if !heads.is_empty() {
                self.publish(self.heads_topic.clone(), encode_broadcast(&heads));
            }
        }
        let due: Vec<PeerId> = self
            .redial
            .iter()
            .filter(|(peer, (at, _))| {
                *at <= tokio::time::Instant::now() && !self.swarm.is_connected(peer)
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            if let Some((at, backoff)) = self.redial.get_mut(&peer) {
                *at = tokio::time::Instant::now() + *backoff;
                *backoff = (*backoff * 2).min(REDIAL_MAX);
            }
            // The swarm keeps no addresses of peers it never reached: name them.
            let addresses = self.peerstore.addresses_of(&peer);
            let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                .addresses(addresses)
                .build();
            if let Err(error) = self.swarm.dial(dial) {
                tracing::debug!(%peer, %error, "redial failed");
            }
        }
        Ok(())
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<GatedEvent>) -> anyhow::Result<()> {
        if let Some(metrics) = &self.metrics {
            metrics.libp2p.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                // Relay reservations carry the external addresses: without any, clients
                // could not be reached through this peer.
                if self.config.cluster.announce_multiaddress.is_empty() {
                    self.swarm.add_external_address(address.clone());
                }
                tracing::info!(address = %with_peer_id(&address, self.local), "listening");
            }
            SwarmEvent::ExpiredListenAddr { address, .. }
                if self.config.cluster.announce_multiaddress.is_empty() =>
            {
                self.swarm.remove_external_address(&address);
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
                if let Some(entry) = self.redial.get_mut(&peer_id) {
                    entry.1 = REDIAL_MIN;
                }
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
                if num_established > 0 {
                    return Ok(());
                }
                tracing::debug!(peer = %peer_id, "disconnected");
                self.head_subscribers.remove(&peer_id);
                if let Some(entry) = self.redial.get_mut(&peer_id) {
                    entry.0 = tokio::time::Instant::now() + entry.1;
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
                _ => {}
            }
        }
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                let Some(author) = message.source else {
                    return Ok(());
                };
                if message.topic == self.heads_topic.hash() {
                    self.replica
                        .receive_broadcast(&author, &message.data, now_ms())
                        .await?;
                } else if message.topic == self.metrics_topic.hash() {
                    match Metric::from_msgpack(&message.data) {
                        Ok(metric) if metric.peer == author => {
                            if metric.name == monitor::PING_METRIC {
                                self.learn_addresses(&metric);
                            }
                            self.monitor.receive(metric, now_nanos())
                        }
                        Ok(_) => tracing::debug!(%author, "dropped a metric about another peer"),
                        Err(error) => {
                            tracing::debug!(%author, %error, "dropped a malformed metric")
                        }
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })
                if topic == self.heads_topic.hash() && self.head_subscribers.insert(peer_id) =>
            {
                // A peer that just joined learns our heads now, not at the next rebroadcast.
                self.heads_announce_due = true;
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for address in info.listen_addrs {
                    if is_dialable(&address) {
                        self.swarm.add_peer_address(peer_id, address.clone());
                        self.peerstore.add(peer_id, address);
                    }
                }
                self.redial
                    .entry(peer_id)
                    .or_insert((tokio::time::Instant::now(), REDIAL_MIN));
            }
            BehaviourEvent::Bitswap(event) => self.on_bitswap(event).await?,
            BehaviourEvent::Status(event) => self.on_status(Exchange::Status, event),
            BehaviourEvent::RepoGc(event) => self.on_status(Exchange::RepoGc, event),
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

    /// Takes the swarm addresses of a peer's `ping` and keeps that peer connected: peers
    /// that met through one bootstrapper connect to each other, as the status exchange
    /// needs.
    fn learn_addresses(&mut self, ping: &Metric) {
        if ping.peer == self.local || self.swarm.is_connected(&ping.peer) {
            return;
        }
        let Some(info) = monitor::PingInfo::of(ping) else {
            return;
        };
        let addresses = info
            .cluster_addresses
            .iter()
            .take(MAX_ANNOUNCED_ADDRESSES)
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| is_dialable(a) && a.iter().last() == Some(Protocol::P2p(ping.peer)));
        let mut any = false;
        for address in addresses {
            self.swarm.add_peer_address(ping.peer, address.clone());
            self.peerstore.add(ping.peer, address);
            any = true;
        }
        if any {
            self.redial
                .entry(ping.peer)
                .or_insert((tokio::time::Instant::now(), REDIAL_MIN));
        }
    }

    // ----- cluster-wide statuses -----------------------------------------------------------

    /// The other live peers of the peerset.
    fn other_peers(&self) -> Vec<PeerId> {
        self.monitor
            .peerset(&self.local, now_nanos())
            .into_iter()
            .filter(|p| *p != self.local)
            .collect()
    }

    /// Sends `request` to every other peer of the peerset and gathers their answers into
    /// `answers`, which reply once every peer answered or failed.
    fn ask_peers(&mut self, request: StatusRequest, answers: Answers) {
        let peers = self.other_peers();
        if peers.is_empty() {
            answers.reply();
            return;
        }
        let id = self.next_gathering;
        self.next_gathering += 1;
        let exchange = match request {
            StatusRequest::RepoGc => Exchange::RepoGc,
            _ => Exchange::Status,
        };
        for peer in &peers {
            let behaviour = self.swarm.behaviour_mut().inner_mut();
            let sent = match exchange {
                Exchange::Status => behaviour.status.send_request(peer, request.clone()),
                Exchange::RepoGc => behaviour.repo_gc.send_request(peer, request.clone()),
            };
            self.status_requests.insert((exchange, sent), (id, *peer));
        }
        self.gatherings.insert(
            id,
            Gathering {
                awaiting: peers.len(),
                answers,
            },
        );
    }

    /// Takes one peer's answer (or its failure) into its gathering.
    fn gathered(
        &mut self,
        exchange: Exchange,
        request: OutboundRequestId,
        answer: Result<StatusResponse, String>,
    ) {
        let Some((id, peer)) = self.status_requests.remove(&(exchange, request)) else {
            return;
        };
        let peer_name = self.peer_name(&peer);
        let Some(gathering) = self.gatherings.get_mut(&id) else {
            return;
        };
        let answer = answer.and_then(|response| match response {
            StatusResponse::Error(error) => Err(error),
            other => Ok(other),
        });
        match (&mut gathering.answers, answer) {
            (Answers::Statuses { infos, .. }, Ok(StatusResponse::Statuses(theirs))) => {
                infos.extend(theirs.into_iter().filter(|i| i.peer == peer))
            }
            (Answers::Connections { links, .. }, Ok(StatusResponse::Connections(theirs))) => {
                links.push((peer, Ok(theirs)))
            }
            (Answers::RepoGc { results, .. }, Ok(StatusResponse::RepoGc(mut theirs))) => {
                theirs.peer = peer;
                results.push(theirs)
            }
            (answers, answer) => {
                let error = match answer {
                    Err(error) => error,
                    Ok(_) => "the peer answered another question".to_owned(),
                };
                match answers {
                    Answers::Statuses { cids, infos, .. } => {
                        for cid in cids.iter() {
                            infos.push(PinInfo::unanswered(
                                *cid,
                                peer,
                                peer_name.clone(),
                                error.clone(),
                                now_nanos(),
                            ));
                        }
                    }
                    Answers::Connections { links, .. } => links.push((peer, Err(error))),
                    Answers::RepoGc { results, .. } => {
                        results.push(RepoGc::failed(peer, peer_name, error))
                    }
                }
            }
        }
        gathering.awaiting -= 1;
        if gathering.awaiting == 0 {
            let done = self.gatherings.remove(&id).expect("present");
            done.answers.reply();
        }
    }

    /// The cluster peers this peer is connected to.
    fn connected_cluster_peers(&self) -> Vec<PeerId> {
        self.other_peers()
            .into_iter()
            .filter(|p| self.swarm.is_connected(p))
            .collect()
    }

    /// The live `ping` metrics of the peerset, read.
    fn pings(&self) -> impl Iterator<Item = (PeerId, monitor::PingInfo)> {
        self.monitor
            .latest_metrics(monitor::PING_METRIC, now_nanos())
            .into_iter()
            .map(|m| (m.peer, monitor::PingInfo::of(&m).unwrap_or_default()))
    }

    /// A peer's name from its ping metric.
    fn peer_name(&self, peer: &PeerId) -> String {
        self.pings()
            .find(|(p, _)| p == peer)
            .map(|(_, ping)| ping.peer_name)
            .unwrap_or_default()
    }

    /// A request or answer of either exchange. Garbage collections are answered over
    /// [`Exchange::RepoGc`] only, whose timeout allows for them.
    fn on_status(&mut self, exchange: Exchange, event: status::Event) {
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let report = self.background_tx.clone();
                let ipfs = self.ipfs.clone();
                let commands = self.commands_tx.clone();
                let (local, peername) = (self.local, self.config.cluster.peername.clone());
                tokio::spawn(async move {
                    let answer = match request {
                        StatusRequest::RepoGc => Background::AnswerRepoGc {
                            gc: match exchange {
                                Exchange::RepoGc => {
                                    Ok(repo_gc(ipfs.as_ref(), local, peername).await)
                                }
                                Exchange::Status => Err(format!(
                                    "ask for a garbage collection over {REPO_GC_PROTOCOL}"
                                )),
                            },
                            channel,
                        },
                        StatusRequest::Statuses { cids, recover } => Background::AnswerStatus {
                            cids,
                            recover,
                            daemon: recent_daemon_pins(ipfs.as_ref()).await,
                            channel,
                        },
                        StatusRequest::Connections => {
                            let ipfs_peers = match ipfs {
                                Some(ipfs) => ipfs.swarm_peers().await.map_err(|e| e.to_string()),
                                None => Ok(Vec::new()),
                            };
                            Background::AnswerConnections {
                                ipfs_peers,
                                channel,
                            }
                        }
                        StatusRequest::Snapshot => Background::AnswerSnapshot { channel },
                        StatusRequest::Summary => Background::AnswerSummary {
                            summary: summarize(&commands, ipfs.as_ref()).await,
                            channel,
                        },
                    };
                    let _ = report.send(answer).await;
                });
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.gathered(exchange, request_id, Ok(response));
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                let error = match error {
                    request_response::OutboundFailure::UnsupportedProtocols => {
                        "the peer does not answer status requests (not a pinfold peer)".to_owned()
                    }
                    other => format!("the peer did not answer the status request: {other}"),
                };
                self.gathered(exchange, request_id, Err(error));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "could not answer a status request");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    async fn on_bitswap(&mut self, event: bitswap::Event) -> anyhow::Result<()> {
        match event {
            bitswap::Event::Block { cid, data, .. } => {
                self.replica.receive_block(&cid, data, now_ms()).await?;
            }
            bitswap::Event::Unavailable { cid } => {
                self.replica.block_unavailable(&cid, now_ms()).await?;
            }
            bitswap::Event::Wanted { peer, wants } => {
                let (blocks, presences) = bitswap::answer_from(self.replica.store(), wants).await?;
                self.swarm
                    .behaviour_mut()
                    .inner_mut()
                    .bitswap
                    .respond(peer, blocks, presences);
            }
        }
        Ok(())
    }

    async fn on_command(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::AddPin { pin, reply } => {
                let result = self.add_pin(*pin).await;
                let _ = reply.send(result);
            }
            Command::RemovePin { cid, reply } => {
                let result = self.remove_pin(cid).await;
                let _ = reply.send(result);
            }
            Command::GetPin { cid, reply } => {
                let _ = reply.send(self.replica.pin(&cid).await?);
            }
            Command::Pins {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.replica.pins(after.as_ref(), limit).await?);
            }
            Command::Status {
                cids,
                recover,
                reply,
            } => {
                let _ = reply.send(self.statuses_of(cids, recover).await?);
            }
            Command::Statuses {
                after,
                daemon,
                filter,
                reply,
            } => {
                let page = self.replica.pins(after.as_ref(), PAGE).await?;
                let next = next_cursor(&page);
                let infos = match self.tracker.as_ref() {
                    Some(tracker) => tracker.statuses(page, &daemon, filter).collect(),
                    None => Vec::new(),
                };
                let _ = reply.send((infos, next));
            }
            Command::StatusCounts {
                after,
                daemon,
                reply,
            } => {
                let page = self.replica.pins(after.as_ref(), PAGE).await?;
                let next = next_cursor(&page);
                let mut summary = StatusSummary::default();
                match self.tracker.as_ref() {
                    Some(tracker) => tracker
                        .statuses(page, &daemon, StatusFilter::ALL)
                        .for_each(|info| summary.count(info.short.status)),
                    None => page
                        .iter()
                        .for_each(|_| summary.count(TrackerStatus::Remote)),
                }
                let _ = reply.send((summary, next));
            }
            Command::PeerStatuses {
                cids,
                recover,
                reply,
            } => self.ask_peers(
                StatusRequest::Statuses {
                    cids: cids.clone(),
                    recover,
                },
                Answers::Statuses {
                    cids,
                    infos: Vec::new(),
                    reply,
                },
            ),
            Command::PeersRepoGc { reply } => self.ask_peers(
                StatusRequest::RepoGc,
                Answers::RepoGc {
                    results: Vec::new(),
                    reply,
                },
            ),
            Command::Connections { reply } => {
                let own = Connections {
                    cluster_peers: self.connected_cluster_peers(),
                    ipfs_id: self.ipfs_id.as_ref().map(|id| id.peer),
                    ipfs_peers: Vec::new(),
                };
                self.ask_peers(
                    StatusRequest::Connections,
                    Answers::Connections {
                        links: vec![(self.local, Ok(own))],
                        reply,
                    },
                )
            }
            Command::RemovePeer { peer, reply } => {
                let _ = reply.send(self.remove_peer(peer).await);
            }
            Command::Alerts { reply } => {
                let _ = reply.send(self.alerts.iter().cloned().collect());
            }
            Command::Info { reply } => {
                let ipfs_error = match self.ipfs.as_ref().map(|i| i.health()) {
                    Some(Health::Down { error, .. }) => Some(error),
                    _ => None,
                };
                let _ = reply.send(PeerInfo {
                    id: self.local,
                    peername: self.config.cluster.peername.clone(),
                    addresses: self
                        .swarm
                        .listeners()
                        .map(|a| with_peer_id(a, self.local))
                        .collect(),
                    cluster_peers: self.monitor.peerset(&self.local, now_nanos()),
                    ipfs: self.ipfs_id.clone(),
                    ipfs_error,
                    role: self.role,
                });
            }
            Command::Peers { reply } => {
                let peers = self
                    .pings()
                    .map(|(id, ping)| PeerSummary {
                        id,
                        trusted: self.trust.trusts(&id),
                        ipfs_addresses: ping
                            .ipfs_addresses
                            .iter()
                            .filter_map(|a| a.parse().ok())
                            .collect(),
                        name: ping.peer_name,
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Sync { reply } => {
                let progress = self.replica.progress();
                let _ = reply.send(SyncInfo {
                    heads: self
                        .replica
                        .heads()
                        .iter()
                        .map(|(c, _)| c.to_string())
                        .collect(),
                    height: progress.height,
                    pending: progress.pending,
                    merged: progress.merged,
                    synced: self.replica.is_synced(),
                });
            }
            Command::Metrics { name, reply } => {
                let now = now_nanos();
                let names: Vec<String> = if name.is_empty() {
                    self.monitor.metric_names().map(String::from).collect()
                } else {
                    vec![name]
                };
                let metrics = names
                    .iter()
                    .flat_map(|n| self.monitor.latest_metrics(n, now))
                    .collect();
                let _ = reply.send(metrics);
            }
        }
        Ok(())
    }

    /// This peer's status of `cid`. A relay pins nothing: a pin is `remote` there.
    async fn status(&mut self, cid: Cid, daemon: DaemonAnswer) -> anyhow::Result<PinInfo> {
        let pin = self.replica.pin(&cid).await?;
        let now = now_nanos();
        Ok(match self.tracker.as_ref() {
            Some(tracker) => tracker.status(cid, pin.as_ref(), daemon, now),
            None => {
                let status = if pin.is_some() {
                    TrackerStatus::Remote
                } else {
                    TrackerStatus::Unpinned
                };
                let pin = pin.unwrap_or_else(|| Pin::new(cid, pinfold_core::pin::UnixTime(0)));
                PinInfo::of_pin(
                    &pin,
                    self.local,
                    PinInfoShort {
                        peer_name: self.config.cluster.peername.clone(),
                        status,
                        timestamp: Some(now),
                        ..PinInfoShort::default()
                    },
                )
            }
        })
    }

    /// This peer's statuses of `cids`, given the daemon's answer for each; with `recover`,
    /// each pin in error here is re-queued first and its status after is given.
    async fn statuses_of(
        &mut self,
        cids: Vec<(Cid, DaemonAnswer)>,
        recover: bool,
    ) -> anyhow::Result<Vec<PinInfo>> {
        let mut infos = Vec::with_capacity(cids.len());
        for (cid, daemon) in cids {
            if recover {
                let info = self.status(cid, daemon.clone()).await?;
                let pin = self.replica.pin(&cid).await?;
                if let Some(tracker) = self.tracker.as_mut() {
                    tracker.recover(cid, info.short.status, pin, now_nanos())?;
                }
            }
            infos.push(self.status(cid, daemon).await?);
        }
        Ok(infos)
    }

    /// Pins `pin` in the cluster. With `pin_update`, the pin takes the options and the
    /// allocations of the pin it updates (its own name and expiry win when set), as
    /// ipfs-cluster's pin update does; the old pin stays.
    async fn add_pin(&mut self, pin: Pin) -> Result<Pin, CommandError> {
        let mut pin = pin;
        if let Some(from) = pin.pin_update.filter(|from| *from != pin.cid) {
            let existing = self
                .replica
                .pin(&from)
                .await
                .map_err(|e| CommandError::Internal(e.to_string()))?
                .ok_or(CommandError::NotFound(from))?;
            pin = Pin {
                cid: pin.cid,
                timestamp: pin.timestamp,
                pin_update: Some(from),
                name: if pin.name.is_empty() {
                    existing.name.clone()
                } else {
                    pin.name
                },
                expire_at: pin.expire_at.or(existing.expire_at),
                ..existing
            };
        }
        self.allocate_and_pin(pin, &[]).await
    }

    /// Allocates `pin` (keeping its current allocations where it can, never to a peer of
    /// `blacklist`) and writes it to the pinset.
    async fn allocate_and_pin(
        &mut self,
        mut pin: Pin,
        blacklist: &[PeerId],
    ) -> Result<Pin, CommandError> {
        if !self.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        if !self.trust.trusts(&self.local) {
            tracing::warn!("this peer is not in crdt.trusted_peers: other peers ignore its writes");
        }
        let (min, max) = allocator::replication_factors(
            pin.replication_factor_min,
            pin.replication_factor_max,
            &self.allocator,
        )
        .map_err(|e| CommandError::BadRequest(e.to_string()))?;
        pin.replication_factor_min = min;
        pin.replication_factor_max = max;
        let existing = self
            .replica
            .pin(&pin.cid)
            .await
            .map_err(|e| CommandError::Internal(e.to_string()))?;
        let current: Vec<PeerId> = match existing {
            Some(existing) => existing.allocations,
            None => std::mem::take(&mut pin.allocations),
        }
        .into_iter()
        .filter(|p| !blacklist.contains(p))
        .collect();
        let now = now_nanos();
        let metrics = self.live_metrics(now);
        let trust = self.trust.clone();
        pin.allocations = allocator::allocate(
            &AllocationRequest {
                cid: &pin.cid,
                replication_min: min,
                replication_max: max,
                current: &current,
                priority: &pin.user_allocations,
                blacklist,
            },
            &metrics,
            |peer| trust.trusts(peer),
            &self.allocator,
        )
        .map_err(|e| CommandError::BadRequest(e.to_string()))?;
        self.replica
            .add_pin(&pin, now_ms())
            .await
            .map_err(|e| CommandError::Internal(e.to_string()))?;
        tracing::info!(cid = %pin.cid, allocations = ?pin.allocations, "pinned in the cluster");
        Ok(pin)
    }

    /// Re-allocates every pin allocated to `peer` and forgets its metrics.
    async fn remove_peer(&mut self, peer: PeerId) -> Result<usize, CommandError> {
        if !self.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        if peer == self.local {
            return Err(CommandError::BadRequest(
                "a peer cannot remove itself; ask another peer of the cluster".into(),
            ));
        }
        let mut allocated = Vec::new();
        for_each_page(&self.replica, |page| {
            allocated.extend(
                page.iter()
                    .filter(|p| p.allocations.contains(&peer))
                    .cloned(),
            );
            Ok(())
        })
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))?;
        self.monitor.remove_peer(&peer);
        let moved = allocated.len();
        for pin in allocated {
            let cid = pin.cid;
            if let Err(error) = self.allocate_and_pin(pin, &[peer]).await {
                tracing::warn!(%cid, %error, "could not re-allocate a pin of a removed peer");
            }
        }
        tracing::info!(%peer, moved, "peer removed: its pins were re-allocated");
        Ok(moved)
    }

    /// Unpins the pins whose `expire_at` has passed, where this peer is the closest trusted
    /// live peer to the CID (so that one peer does it). Followers and relays leave it to
    /// the trusted peers.
    async fn unpin_expired(&mut self) -> anyhow::Result<()> {
        if !self.role.writes() || !self.trust.trusts(&self.local) {
            return Ok(());
        }
        let now = pinfold_core::pin::UnixTime(now_ms() / 1000);
        let others: Vec<PeerId> = self
            .other_peers()
            .into_iter()
            .filter(|p| self.trust.trusts(p))
            .collect();
        let local = self.local;
        let mut expired = Vec::new();
        for_each_page(&self.replica, |page| {
            expired.extend(
                page.iter()
                    .filter(|p| p.expire_at.is_some_and(|at| at <= now))
                    .filter(|p| allocator::is_closest(&p.cid, &local, &others))
                    .map(|p| p.cid),
            );
            Ok(())
        })
        .await?;
        for cid in expired {
            tracing::info!(%cid, "the pin expired: unpinning it from the cluster");
            if let Err(error) = self.remove_pin(cid).await {
                tracing::warn!(%cid, %error, "could not unpin an expired pin");
            }
        }
        Ok(())
    }

    async fn remove_pin(&mut self, cid: Cid) -> Result<Pin, CommandError> {
        if !self.role.writes() {
            return Err(CommandError::ReadOnly);
        }
        let pin = self
            .replica
            .pin(&cid)
            .await
            .map_err(|e| CommandError::Internal(e.to_string()))?
            .ok_or(CommandError::NotFound(cid))?;
        self.replica
            .remove_pin(&cid, now_ms())
            .await
            .map_err(|e| CommandError::Internal(e.to_string()))?;
        tracing::info!(%cid, "unpinned from the cluster");
        Ok(pin)
    }
}

/// The daemon's recursive pins, kept current (see [`IpfsClient::recent_recursive_pins`]),
/// for answering other peers' status requests; none for a peer without a daemon (a relay).
async fn recent_daemon_pins(ipfs: Option<&Ipfs>) -> Result<Arc<DaemonPins>, String> {
    match ipfs {
        Some(ipfs) => ipfs
            .recent_recursive_pins()
            .await
            .map_err(|e| e.to_string()),
        None => Ok(Arc::new(DaemonPins::new())),
    }
}

/// A garbage collection of this peer's daemon's repository, as its answer reads; a peer
/// without a daemon (a relay) has nothing to collect and says so.
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
) -> Result<StatusSummary, String> {
    let daemon = recent_daemon_pins(ipfs)
        .await
        .map_err(|e| format!("could not list the IPFS daemon's pins: {e}"))?;
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
            .map_err(|_| "the peer is shutting down".to_owned())?;
        let (page, next) = answer
            .await
            .map_err(|_| "the peer is shutting down".to_owned())?;
        summary.add(&page);
        match next {
            Some(cid) => after = Some(cid),
            None => return Ok(summary),
        }
    }
}

/// Calls `each` with every page of the stored pinset, in key order; returns how many pins
/// there were.
pub async fn for_each_page(
    replica: &Replica<RedbStore>,
    mut each: impl FnMut(&[Pin]) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let (mut count, mut after) = (0usize, None);
    loop {
        let page = replica.pins(after.as_ref(), PAGE).await?;
        each(&page)?;
        count += page.len();
        match next_cursor(&page) {
            Some(next) => after = Some(next),
            None => return Ok(count),
        }
    }
}

/// Where the page after a full `PAGE` of pins starts; `None` after the last page.
fn next_cursor(page: &[Pin]) -> Option<Cid> {
    page.last()
        .filter(|_| page.len() == PAGE)
        .map(|pin| pin.cid)
}

/// `address` ending in `/p2p/<peer>`; circuit addresses through a relay already do.
fn with_peer_id(address: &Multiaddr, peer: PeerId) -> Multiaddr {
    address.clone().with_p2p(peer).unwrap_or_else(|other| other)
}

/// Addresses worth keeping for a redial: not relay circuits or unspecified addresses.
fn is_dialable(address: &Multiaddr) -> bool {
    !address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) && !is_unspecified(address)
}

/// An address on 0.0.0.0 or ::, which nobody can dial.
fn is_unspecified(address: &Multiaddr) -> bool {
    address.iter().any(|p| {
        matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
            || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
    })
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
