//! The cluster node, written once for native peers and light followers: it owns the
//! replica, the monitor, the pin tracker (on peers that pin), the questions put to other
//! peers, the redial back-off and the snapshot bootstrap, and moves events between them.
//!
//! It is sans-IO in the style of [`Replica`]: the driver (native/'s peer task, wasm/'s
//! follower) feeds it what happened (`on_*` calls and [`Node::tick`]) with the time, and
//! carries out the [`Effect`]s it queues ([`Node::poll_effect`]): publish, dial, send a
//! request, fetch blocks, pin on the IPFS daemon. Only storage is awaited, through the
//! replica's [`Store`]. A full peer and a light follower differ by their [`NodeRole`].

mod catch_up;
#[cfg(feature = "raft")]
mod consensus;
mod gather;
mod pinning;
pub mod plan;
mod redial;
mod snapshots;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::{Multiaddr, Protocol};
use serde::Serialize;

use crate::allocator::{AllocatorConfig, MetricsSet};
use crate::codec::bitswap::WantEntry;
use crate::codec::delta::encode_broadcast;
use crate::codec::metric::Metric;
use crate::codec::peer_request::{Connections, PeerRequest, PeerResponse, SnapshotOffer};
use crate::crdt::{Output, PinEvent, Progress, Replica, ReplicaError, Store, Trust};
use crate::informer::{self, DiskMetric, RepoStat};
use crate::monitor::{self, Alert, Monitor, PingInfo};
use crate::net::bitswap;
use crate::pin::Pin;
use crate::tracker::{Dispatch, OpId, PeerIdentity, PinTracker, TrackerAction};

pub use gather::{Gathered, GatheringId, PeerSummary, Question, RequestId};
pub use pinning::{for_each_page, next_cursor, CommandError, DaemonAnswer, PAGE};
pub use redial::{REDIAL_MAX_MS, REDIAL_MIN_MS};
pub use snapshots::{
    make_snapshot, offer_of, Bootstrap, MadeSnapshot, SnapshotPolicy, BOOTSTRAP_WAIT_MS,
};

#[cfg(feature = "raft")]
pub use consensus::RaftEffect;

use catch_up::CatchUp;
use gather::Gatherings;
use redial::Redial;

/// Alerts kept (ipfs-cluster's alert channel holds as many).
pub const MAX_ALERTS: usize = 256;
/// Swarm addresses a `ping` announces, and that are taken from one.
pub const MAX_ANNOUNCED_ADDRESSES: usize = 8;
/// Addresses kept per peer.
const MAX_ADDRESSES_PER_PEER: usize = 16;
/// The least time between two lookups of peerset members' addresses.
pub const ADDRESS_LOOKUP_MS: u64 = 10_000;

/// What a node is; see each variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// Keeps the pinset, accepts writes (when trusted), pins on its IPFS daemon.
    Full,
    /// Routes for browsers, keeps the pinset to serve it and accepts writes; pins nothing.
    Relay,
    /// Keeps the pinset and pins what is allocated to it; never writes (ipfs-cluster's
    /// follower mode).
    Follower,
    /// A browser or edge follower: follows the trusted peers' heads, starting from a
    /// snapshot; never writes, pins nothing, publishes nothing, answers no questions.
    Light,
}

impl NodeRole {
    /// Its name in the configuration and in `ping` metrics.
    /// The role named `name` (as [`NodeRole::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Full, Self::Relay, Self::Follower, Self::Light]
            .into_iter()
            .find(|role| role.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Full => "full",
            NodeRole::Relay => "relay",
            NodeRole::Follower => "follower",
            NodeRole::Light => "light",
        }
    }

    pub fn writes(self) -> bool {
        matches!(self, NodeRole::Full | NodeRole::Relay)
    }

    pub fn pins(self) -> bool {
        matches!(self, NodeRole::Full | NodeRole::Follower)
    }

    /// Whether it is a peer of the cluster: it publishes its metrics, announces its heads
    /// and answers other peers' questions.
    pub fn is_peer(self) -> bool {
        self != NodeRole::Light
    }
}

/// How often a peer does its periodic work (milliseconds); ignored by light nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periods {
    /// Publishing the `ping` metric; also its time to live.
    pub ping: u64,
    /// Reading the daemon's repository for the informers.
    pub informers: u64,
    /// The recover sweep of pins in error.
    pub recover: u64,
    /// Unpinning expired pins.
    pub expiry: u64,
    /// Connecting the IPFS daemon to the other peers' daemons.
    pub connect_swarms: u64,
}

impl Default for Periods {
    fn default() -> Self {
        Periods {
            ping: 15_000,
            informers: 15_000,
            recover: 3_600_000,
            expiry: 600_000,
            connect_swarms: 30_000,
        }
    }
}

/// What the informers publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InformerSettings {
    pub disk: DiskMetric,
    pub disk_ttl_ms: u64,
    pub tags: std::collections::BTreeMap<String, String>,
    pub tags_ttl_ms: u64,
    pub pinqueue_bucket: u64,
    pub pinqueue_ttl_ms: u64,
    /// The pin count informer's TTL; `None` leaves it off.
    pub numpin_ttl_ms: Option<u64>,
}

/// Everything a node is configured with.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub local: PeerId,
    pub peername: String,
    pub role: NodeRole,
    pub trust: Trust,
    pub allocator: AllocatorConfig,
    pub periods: Periods,
    pub informers: Option<InformerSettings>,
    pub snapshots: SnapshotPolicy,
    /// Whether an empty replica first asks a trusted peer for its snapshot.
    pub bootstrap_from_snapshot: bool,
    /// Peers learned from `ping`s are dialed only while fewer are connected.
    pub max_connections: usize,
    /// The addresses of other peers this node can dial.
    pub dialable: fn(&Multiaddr) -> bool,
    /// Whether a peer's ping alert re-allocates its pins (`cluster.disable_repinning` off).
    pub repinning: bool,
}

/// The two gossip topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The cluster's CRDT heads.
    Heads,
    /// The monitor's metrics.
    Metrics,
}

/// Whether a gossip message may travel on: gossipsub forwards only what the node
/// accepts. Heads of untrusted authors are rejected, as Go ipfs-cluster's topic validator
/// rejects them, so that an untrusted member's flood goes no further than its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GossipVerdict {
    Accept,
    Reject,
}

/// What the node saw in the pinset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinsetChange {
    /// A pin was added (`added`) or changed.
    Pinned {
        pin: Box<Pin>,
        added: bool,
    },
    Unpinned(Cid),
}

/// The kinds of trouble a node reports to its user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A snapshot could not be loaded (the DAG is walked instead).
    Snapshot,
    /// Pinset heads came from a peer that is not trusted, and were ignored.
    UntrustedData,
}

/// Work on the IPFS daemon the driver does for the node, reporting back as each says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonTask {
    /// Read the daemon's id, then [`Node::set_ipfs`].
    ReadId,
    /// Read `repo/stat` and, with `count_pins`, how many pins the daemon holds, then
    /// [`Node::publish_informers`].
    ReadInformerInputs { count_pins: bool },
    /// List the daemon's recursive pins, then [`Node::recover_all`].
    ListPinsForRecover,
    /// Connect the daemon to these addresses of the other peers' daemons.
    ConnectSwarms(Vec<Multiaddr>),
}

/// Something the driver must do.
#[derive(Debug)]
pub enum Effect {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    /// Fetch blocks or answer wants over bitswap ([`bitswap::Behaviour::carry_out`]); give
    /// the blocks it could not ask for (the wantlist is full) to [`Node::on_fetch_refused`].
    Bitswap(bitswap::Task),
    /// Dial `peer` (when known) at `addresses`.
    Dial {
        peer: Option<PeerId>,
        addresses: Vec<Multiaddr>,
    },
    /// A peer's dialable address, to remember.
    AddressLearned {
        peer: PeerId,
        address: Multiaddr,
    },
    /// Send `request` to `peer`; give its answer or failure to [`Node::on_response`].
    Request {
        id: RequestId,
        peer: PeerId,
        request: PeerRequest,
    },
    /// The answers to [`Node::ask_peers`].
    Gathered {
        id: GatheringId,
        gathered: Gathered,
    },
    Pinset(PinsetChange),
    /// Run this operation on the IPFS daemon; report it with [`Node::operation_done`].
    StartOperation(Box<Dispatch>),
    CancelOperation(OpId),
    Daemon(DaemonTask),
    /// A peer joined or left the peerset (its `ping` arrived or expired).
    Peer {
        peer: PeerId,
        joined: bool,
    },
    /// The sync state changed (see [`Node::sync_state`]); checked each tick.
    Sync(SyncState),
    Problem {
        problem: Problem,
        message: String,
    },
    /// A metric expired: its peer may be down.
    Alert(Alert),
    /// A snapshot was made; it is offered from now on.
    SnapshotMade(MadeSnapshot),
}

/// How a node answers a peer's request.
#[derive(Debug)]
pub enum Answer {
    Now(PeerResponse),
    /// The answer needs the IPFS daemon: the driver builds it (see [`Node::statuses_of`],
    /// [`Node::count_page`], [`Node::connections`]).
    FromDaemon(PeerRequest),
}

/// Where the sync stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub heads: Vec<Head>,
    pub height: u64,
    /// Delta blocks known and not yet merged, and requested and not yet received.
    pub pending: usize,
    pub in_flight: usize,
    /// Pending blocks whose every fetch attempt failed, asked for again at the next repair
    /// (`crdt.repair_interval`, an hour by default).
    pub parked: usize,
    /// Deltas merged since the node started.
    pub merged: u64,
    pub pins: u64,
    /// Nothing is left to fetch or merge, and the start (snapshot bootstrap) is over.
    pub synced: bool,
    pub connected_peers: usize,
    /// The snapshot the pinset was loaded from, if any.
    pub snapshot: Option<SnapshotOffer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Head {
    pub cid: String,
    pub height: u64,
}

/// The IPFS daemon's identity, as a peer announces it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpfsIdentity {
    pub peer: Option<PeerId>,
    pub addresses: Vec<Multiaddr>,
}

/// When each periodic task is due next (Unix milliseconds).
#[derive(Default)]
struct Due {
    ping: u64,
    informers: u64,
    recover: u64,
    expiry: u64,
    connect_swarms: u64,
}

/// The node; see the module's documentation.
pub struct Node<S: Store> {
    config: NodeConfig,
    replica: Replica<S>,
    monitor: Monitor,
    tracker: Option<PinTracker>,
    gatherings: Gatherings,
    catch_up: CatchUp,
    redial: Redial,
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    connected: HashSet<PeerId>,
    /// Address lookups asked so far (to take turns among the connected peers) and when
    /// the next may be asked (Unix milliseconds).
    address_lookups: usize,
    next_address_lookup_ms: u64,
    external_addresses: Vec<Multiaddr>,
    ipfs: IpfsIdentity,
    bootstrap: Bootstrap,
    loaded_snapshot: Option<SnapshotOffer>,
    latest_snapshot: Option<SnapshotOffer>,
    last_snapshot_ms: Option<u64>,
    head_subscribers: HashSet<PeerId>,
    heads_announce_due: bool,
    alerts: VecDeque<Alert>,
    peerset: BTreeSet<PeerId>,
    reported: SyncState,
    pins: u64,
    /// Whether the pinset's changes become [`Effect::Pinset`] (see [`Node::set_pin_events`]).
    pin_events: bool,
    untrusted_authors: BTreeSet<PeerId>,
    due: Due,
    effects: VecDeque<Effect>,
    #[cfg(feature = "raft")]
    raft: Option<consensus::NodeRaft>,
}

type StoreResult<T, S> = std::result::Result<T, ReplicaError<<S as Store>::Error>>;

impl<S: Store> Node<S> {
    /// A node over `replica`; `tracker` for roles that pin; `snapshot` is the latest
    /// snapshot this node made before (offered again if its store still holds it).
    pub async fn new(
        config: NodeConfig,
        replica: Replica<S>,
        tracker: Option<PinTracker>,
        snapshot: Option<Cid>,
        now: i64,
    ) -> StoreResult<Self, S> {
        let now_ms = ms(now);
        let pins = replica
            .store()
            .live_keys()
            .await
            .map_err(ReplicaError::Store)?;
        let latest_snapshot = match snapshot {
            Some(root) => offer_of(&replica, root).await?,
            None => None,
        };
        let empty = replica.heads().is_empty() && replica.progress().pending == 0;
        let bootstrap = Bootstrap::new(config.bootstrap_from_snapshot && empty, now_ms);
        let due = Due {
            ping: now_ms,
            informers: now_ms,
            recover: now_ms + config.periods.recover,
            expiry: now_ms + config.periods.expiry,
            connect_swarms: now_ms + config.periods.connect_swarms,
        };
        Ok(Self {
            config,
            replica,
            monitor: Monitor::new(),
            tracker,
            gatherings: Gatherings::default(),
            catch_up: CatchUp::default(),
            redial: Redial::default(),
            address_lookups: 0,
            next_address_lookup_ms: 0,
            addresses: HashMap::new(),
            connected: HashSet::new(),
            external_addresses: Vec::new(),
            ipfs: IpfsIdentity::default(),
            bootstrap,
            loaded_snapshot: None,
            latest_snapshot,
            last_snapshot_ms: None,
            head_subscribers: HashSet::new(),
            heads_announce_due: false,
            alerts: VecDeque::new(),
            peerset: BTreeSet::new(),
            reported: SyncState::default(),
            pins,
            pin_events: false,
            untrusted_authors: BTreeSet::new(),
            due,
            effects: VecDeque::new(),
            #[cfg(feature = "raft")]
            raft: None,
        })
    }

    // ----- what the driver reads ---------------------------------------------------------

    /// The next thing to do, in the order the node decided them.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn local(&self) -> PeerId {
        self.config.local
    }

    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The replica's store, for upkeep that leaves what it holds as it is.
    pub fn store_mut(&mut self) -> &mut S {
        self.replica.store_mut()
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    pub fn tracker(&self) -> Option<&PinTracker> {
        self.tracker.as_ref()
    }

    pub fn ipfs(&self) -> &IpfsIdentity {
        &self.ipfs
    }

    /// The latest alerts, newest first.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter()
    }

    /// The snapshot this node offers.
    pub fn latest_snapshot(&self) -> Option<SnapshotOffer> {
        self.latest_snapshot
    }

    /// The pins in the pinset (live keys).
    pub fn pin_count(&self) -> u64 {
        self.pins
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connected.contains(peer)
    }

    /// The known addresses of `peer`.
    pub fn addresses_of(&self, peer: &PeerId) -> &[Multiaddr] {
        self.addresses.get(peer).map_or(&[], Vec::as_slice)
    }

    /// Whether the replica has a loading snapshot to merge: the driver then calls
    /// [`Node::work`] between other events.
    pub fn has_work(&self) -> bool {
        #[cfg(feature = "raft")]
        if self.raft_has_work() {
            return true;
        }
        self.replica.has_work()
    }

    /// Nothing is left to fetch or merge, and the start (snapshot bootstrap) is over.
    pub fn is_synced(&self) -> bool {
        self.replica.progress().pending == 0 && self.bootstrap.is_done() && !self.replica.has_work()
    }

    pub fn sync_state(&self) -> SyncState {
        let Progress {
            pending,
            in_flight,
            parked,
            merged,
            height,
            ..
        } = self.replica.progress();
        SyncState {
            synced: self.is_synced(),
            heads: self
                .replica
                .heads()
                .into_iter()
                .map(|(cid, height)| Head {
                    cid: cid.to_string(),
                    height,
                })
                .collect(),
            height,
            pending,
            in_flight,
            parked,
            merged,
            pins: self.pins,
            connected_peers: self.connected.len(),
            snapshot: self.loaded_snapshot,
        }
    }

    /// The live peers of the peerset, this one included when it publishes pings.
    pub fn peerset(&self, now: i64) -> Vec<PeerId> {
        self.monitor.peerset(&self.config.local, now)
    }

    /// The cluster's time at this peer's `now` (see [`Monitor::cluster_time`]): what a
    /// pin's `expire-in` counts from, so that a peer whose clock is off sets the same
    /// expiry as the others would.
    pub fn cluster_time(&self, now: i64) -> i64 {
        self.monitor.cluster_time(&self.config.local, now)
    }

    /// The other live peers of the peerset.
    pub fn other_peers(&self, now: i64) -> Vec<PeerId> {
        self.peerset(now)
            .into_iter()
            .filter(|p| *p != self.config.local)
            .collect()
    }

    /// The live peers of the peerset that pin: this one if its role pins, and those whose
    /// ping names a role that pins or none (Go peers).
    pub fn pinning_peers(&self, now: i64) -> Vec<PeerId> {
        let mut peers = self.peers_whose_ping(now, |peer, info| {
            peer != self.config.local
                && (info.role.is_empty()
                    || NodeRole::from_name(&info.role).is_some_and(NodeRole::pins))
        });
        if self.config.role.pins() {
            peers.push(self.config.local);
        }
        peers.sort_by_cached_key(|p| p.to_bytes());
        peers
    }

    /// The peers with a live `ping` for which `wanted` holds, given the ping read.
    fn peers_whose_ping(&self, now: i64, wanted: impl Fn(PeerId, PingInfo) -> bool) -> Vec<PeerId> {
        self.monitor
            .latest_metrics(monitor::PING_METRIC, now)
            .into_iter()
            .filter(|m| PingInfo::of(m).is_some_and(|info| wanted(m.peer, info)))
            .map(|m| m.peer)
            .collect()
    }

    /// The cluster peers this node is connected to.
    pub fn connected_cluster_peers(&self, now: i64) -> Vec<PeerId> {
        self.other_peers(now)
            .into_iter()
            .filter(|p| self.connected.contains(p))
            .collect()
    }

    /// A peer's name, from its latest `ping` (expired or not).
    pub fn peer_name(&self, peer: &PeerId) -> String {
        if *peer == self.config.local {
            return self.config.peername.clone();
        }
        identity_in_ping(&self.monitor, peer).peer_name
    }

    /// The latest `ping` of every peer (expired or not), read.
    pub fn pings(&self) -> Vec<(Metric, PingInfo)> {
        self.monitor
            .latest_metrics(monitor::PING_METRIC, i64::MIN)
            .into_iter()
            .map(|m| {
                let info = PingInfo::of(&m).unwrap_or_default();
                (m, info)
            })
            .collect()
    }

    /// The latest live metrics of `name`, all names when empty.
    pub fn metrics(&self, name: &str, now: i64) -> Vec<Metric> {
        let names: Vec<String> = if name.is_empty() {
            self.monitor.metric_names().map(String::from).collect()
        } else {
            vec![name.to_owned()]
        };
        names
            .iter()
            .flat_map(|n| self.monitor.latest_metrics(n, now))
            .collect()
    }

    fn live_metrics(&self, now: i64) -> MetricsSet {
        self.config
            .allocator
            .allocate_by
            .iter()
            .map(|name| (name.clone(), self.monitor.latest_metrics(name, now)))
            .collect()
    }

    // ----- the pinset --------------------------------------------------------------------

    /// Turns the replica's outputs into effects, tracks the pinset changes on a peer that
    /// pins, and queues the tracker's operations. Called at the end of every event.
    fn drain(&mut self, now: i64) {
        while let Some(output) = self.replica.poll_output() {
            match output {
                Output::Broadcast(data) => {
                    // A light node's heads are the trusted peers' own: it never announces.
                    if self.announces_heads() {
                        self.publish(Topic::Heads, data);
                    }
                }
                Output::Fetch(cids) => self
                    .effects
                    .push_back(Effect::Bitswap(bitswap::Task::Fetch(cids))),
                Output::FetchAncestors { from, known, limit } => {
                    self.ask_ancestors(from, known, limit, now)
                }
                other => self.on_pinset_output(other, now),
            }
        }
        if let Some(tracker) = self.tracker.as_mut() {
            for action in tracker.poll(now) {
                self.effects.push_back(match action {
                    TrackerAction::Start(dispatch) => Effect::StartOperation(dispatch),
                    TrackerAction::Cancel { id, .. } => Effect::CancelOperation(id),
                });
            }
        }
        #[cfg(feature = "raft")]
        self.raft_propose_own(now);
    }

    /// Whether the node announces its pinset heads: a peer does, but not a light node
    /// (its heads are the trusted peers' own), nor a peer under Raft (Raft carries the
    /// writes, and each peer's heads are its own).
    fn announces_heads(&self) -> bool {
        #[cfg(feature = "raft")]
        if self.raft.is_some() {
            return false;
        }
        self.config.role.is_peer()
    }

    /// Counts the live keys, and reads the entry as a pin for the tracker and, when
    /// wanted, for the driver ([`Node::set_pin_events`]).
    fn on_pinset_output(&mut self, output: Output, now: i64) {
        match &output {
            Output::Put { added: true, .. } => self.pins += 1,
            Output::Delete { .. } => self.pins = self.pins.saturating_sub(1),
            _ => {}
        }
        if self.tracker.is_none() && !self.pin_events {
            return;
        }
        let change = match PinEvent::from_output(&output) {
            Some(Ok(PinEvent::Pinned(pin))) => {
                let added = matches!(output, Output::Put { added: true, .. });
                PinsetChange::Pinned { pin, added }
            }
            Some(Ok(PinEvent::Unpinned(cid))) => PinsetChange::Unpinned(cid),
            // Entries that are not pins are left out, as Go's state listing does.
            Some(Err(error)) => {
                tracing::warn!(%error, "ignoring a pinset entry that is not a pin");
                return;
            }
            None => return,
        };
        let Some(tracker) = self.tracker.as_mut() else {
            // Read for the driver alone (see the return above).
            self.effects.push_back(Effect::Pinset(change));
            return;
        };
        // The tracker takes the change; the driver gets a copy only when it asked.
        let event = self.pin_events.then(|| change.clone());
        let result = match change {
            PinsetChange::Pinned { pin, .. } => tracker.track(*pin, now),
            PinsetChange::Unpinned(cid) => tracker.untrack(cid, now),
        };
        if let Err(error) = result {
            tracing::error!(%error, "could not queue a pin operation");
        }
        if let Some(event) = event {
            self.effects.push_back(Effect::Pinset(event));
        }
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) {
        self.effects.push_back(Effect::Publish { topic, data });
    }

    // ----- gossip ------------------------------------------------------------------------

    /// A gossip message from `author`; the verdict says whether gossipsub may pass it on:
    /// heads only from trusted authors, metrics only well formed and about their author.
    pub async fn on_gossip(
        &mut self,
        topic: Topic,
        author: PeerId,
        data: Vec<u8>,
        now: i64,
    ) -> StoreResult<GossipVerdict, S> {
        let verdict = match topic {
            Topic::Heads => self.on_heads(author, data, now).await?,
            Topic::Metrics => match Metric::from_msgpack(&data) {
                Ok(metric) if metric.peer == author => {
                    if metric.name == monitor::PING_METRIC {
                        self.learn_addresses(&metric, now);
                    }
                    self.monitor.receive(metric, now);
                    GossipVerdict::Accept
                }
                Ok(_) => {
                    tracing::debug!(%author, "dropped a metric about another peer");
                    GossipVerdict::Reject
                }
                Err(error) => {
                    tracing::debug!(%author, %error, "dropped a malformed metric");
                    GossipVerdict::Reject
                }
            },
        };
        self.drain(now);
        Ok(verdict)
    }

    async fn on_heads(
        &mut self,
        author: PeerId,
        data: Vec<u8>,
        now: i64,
    ) -> StoreResult<GossipVerdict, S> {
        #[cfg(feature = "raft")]
        if self.raft.is_some() {
            tracing::debug!(%author, "ignored CRDT heads: this cluster runs Raft consensus");
            return Ok(GossipVerdict::Reject);
        }
        if !self.config.trust.trusts(&author) {
            if self.untrusted_authors.insert(author) {
                self.effects.push_back(Effect::Problem {
                    problem: Problem::UntrustedData,
                    message: format!(
                        "ignored the pinset heads of {author}, which is not a trusted peer; \
                         add it to the trusted peers to follow its writes"
                    ),
                });
            }
            return Ok(GossipVerdict::Reject);
        }
        if let Some(data) = self.bootstrap.hold(author, data) {
            self.replica
                .receive_broadcast(&author, &data, ms(now))
                .await?;
        }
        Ok(GossipVerdict::Accept)
    }

    /// `peer` subscribed to `topic`: a peer that just joined learns our heads at the next
    /// tick, not at the next rebroadcast.
    pub fn on_subscribed(&mut self, peer: PeerId, topic: Topic) {
        if topic == Topic::Heads && self.announces_heads() && self.head_subscribers.insert(peer) {
            self.heads_announce_due = true;
        }
    }

    // ----- connections -------------------------------------------------------------------

    /// Dials `address` now; a peer it names is kept connected from then on.
    pub fn dial(&mut self, address: Multiaddr, now: i64) {
        let peer = match address.iter().last() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => None,
        };
        if peer == Some(self.config.local) {
            return;
        }
        if let Some(peer) = peer {
            self.remember(peer, address.clone());
            self.redial.keep(peer, ms(now) + REDIAL_MIN_MS);
        }
        self.effects.push_back(Effect::Dial {
            peer,
            addresses: vec![address],
        });
    }

    /// An address known from before (the driver's saved peerstore); no effect.
    pub fn know_address(&mut self, peer: PeerId, address: Multiaddr) {
        let known = self.addresses.entry(peer).or_default();
        if !known.contains(&address) && known.len() < MAX_ADDRESSES_PER_PEER {
            known.push(address);
        }
    }

    /// Records a dialable address, telling the driver when it is new.
    fn remember(&mut self, peer: PeerId, address: Multiaddr) {
        let known = self.addresses.entry(peer).or_default();
        if known.contains(&address) || known.len() >= MAX_ADDRESSES_PER_PEER {
            return;
        }
        known.push(address.clone());
        self.effects
            .push_back(Effect::AddressLearned { peer, address });
    }

    /// A connection to `peer` became usable (established, or proven when the secret gate
    /// covers it).
    pub fn on_connected(&mut self, peer: PeerId, now: i64) {
        self.connected.insert(peer);
        self.redial.connected(&peer);
        if self.bootstrap.should_ask() && self.config.trust.trusts(&peer) {
            let id = self.gatherings.next_request_id();
            self.bootstrap.asked(peer, id, ms(now));
            self.effects.push_back(Effect::Request {
                id,
                peer,
                request: PeerRequest::Snapshot,
            });
        }
    }

    /// The peerset members this node is not connected to and knows no address of.
    pub fn unaddressed_members(&self, now: i64) -> Vec<PeerId> {
        self.other_peers(now)
            .into_iter()
            .filter(|p| !self.connected.contains(p) && self.addresses_of(p).is_empty())
            .collect()
    }

    /// A connected cluster peer to ask for the addresses of the peers it knows (Go's
    /// `Cluster.ID`, `cluster_peers_addresses`), when some peerset member cannot be dialed
    /// for want of an address ([`Node::unaddressed_members`]): Go peers find such peers
    /// through their DHT, which pinfold does not speak. At most one lookup each
    /// [`ADDRESS_LOOKUP_MS`], taking turns among the connected peers.
    pub fn address_lookup(&mut self, now: i64) -> Option<PeerId> {
        let now_ms = ms(now);
        if now_ms < self.next_address_lookup_ms || self.unaddressed_members(now).is_empty() {
            return None;
        }
        let connected = self.connected_cluster_peers(now);
        let ask = *connected.get(self.address_lookups % connected.len().max(1))?;
        self.address_lookups += 1;
        self.next_address_lookup_ms = now_ms + ADDRESS_LOOKUP_MS;
        Some(ask)
    }

    /// Cluster peers' addresses another peer gave (`/p2p/` last): a peerset member this
    /// node is not connected to is dialed at the first dialable one, and kept connected.
    pub fn on_peer_addresses(&mut self, addresses: Vec<Multiaddr>, now: i64) {
        let members: HashSet<PeerId> = self.other_peers(now).into_iter().collect();
        for address in addresses {
            let Some(Protocol::P2p(peer)) = address.iter().last() else {
                continue;
            };
            if !members.contains(&peer)
                || self.connected.contains(&peer)
                || !(self.config.dialable)(&address)
            {
                continue;
            }
            if self.addresses_of(&peer).is_empty() {
                self.dial(address, now);
            } else {
                self.remember(peer, address);
            }
        }
    }

    /// Addresses of peers found on the local network (mDNS; `/p2p/` last): each peer that
    /// is not this one and not connected is dialed once, at its dialable addresses. Nothing
    /// is kept of them: a peer found this way may belong to another cluster, and one that
    /// does connect is kept as any connected peer is.
    pub fn on_discovered(&mut self, addresses: Vec<Multiaddr>) {
        let mut found: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for address in addresses {
            let Some(Protocol::P2p(peer)) = address.iter().last() else {
                continue;
            };
            if peer == self.config.local
                || self.connected.contains(&peer)
                || !(self.config.dialable)(&address)
            {
                continue;
            }
            match found.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, known)) => known.push(address),
                None => found.push((peer, vec![address])),
            }
        }
        for (peer, addresses) in found {
            self.effects.push_back(Effect::Dial {
                peer: Some(peer),
                addresses,
            });
        }
    }

    /// The known addresses of the other peerset members, each ending in `/p2p/<peer>`:
    /// what this peer's `cluster_peers_addresses` lists.
    pub fn member_addresses(&self, now: i64) -> Vec<Multiaddr> {
        self.other_peers(now)
            .iter()
            .flat_map(|peer| {
                self.addresses_of(peer).iter().map(move |address| {
                    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
                        address.clone()
                    } else {
                        address.clone().with(Protocol::P2p(*peer))
                    }
                })
            })
            .collect()
    }

    /// The last connection to `peer` closed.
    pub fn on_disconnected(&mut self, peer: PeerId, now: i64) {
        self.connected.remove(&peer);
        self.head_subscribers.remove(&peer);
        self.redial.disconnected(&peer, ms(now));
    }

    /// The addresses `peer` listens on (identify): the dialable ones are kept, and so is
    /// the peer.
    pub fn on_identified(&mut self, peer: PeerId, listen_addresses: Vec<Multiaddr>, now: i64) {
        let mut any = false;
        for address in listen_addresses {
            if (self.config.dialable)(&address) {
                self.remember(peer, address);
                any = true;
            }
        }
        if any && self.connected.len() < self.config.max_connections {
            self.redial.keep(peer, ms(now) + REDIAL_MIN_MS);
        }
    }

    /// Whether the pinset's changes are reported as [`Effect::Pinset`] (off at first). Off,
    /// a node that pins nothing reads no pin out of the entries it merges: only the
    /// driver's listeners need them.
    pub fn set_pin_events(&mut self, on: bool) {
        self.pin_events = on;
    }

    /// The addresses this node is reachable at (announced in its `ping`).
    pub fn set_external_addresses(&mut self, addresses: Vec<Multiaddr>) {
        self.external_addresses = addresses;
    }

    /// Takes the cluster addresses of a peer's `ping` and keeps that peer connected: peers
    /// that met through one bootstrapper connect to each other. Its own addresses are
    /// preferred; a relay circuit is a detour for peers that name none.
    fn learn_addresses(&mut self, ping: &Metric, now: i64) {
        let peer = ping.peer;
        if peer == self.config.local
            || self.connected.contains(&peer)
            || self.redial.is_kept(&peer)
            || self.connected.len() >= self.config.max_connections
        {
            return;
        }
        let Some(info) = PingInfo::of(ping) else {
            return;
        };
        let (direct, circuits): (Vec<Multiaddr>, Vec<Multiaddr>) = info
            .cluster_addresses
            .iter()
            .take(MAX_ANNOUNCED_ADDRESSES)
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| (self.config.dialable)(a) && a.iter().last() == Some(Protocol::P2p(peer)))
            .partition(|a| !a.iter().any(|p| p == Protocol::P2pCircuit));
        let addresses = if direct.is_empty() { circuits } else { direct };
        if addresses.is_empty() {
            return;
        }
        for address in addresses {
            self.remember(peer, address);
        }
        self.redial.keep(peer, ms(now));
    }

    // ----- bitswap -----------------------------------------------------------------------

    /// A block bitswap brought: its codec computed `cid` from `data`, so it is not hashed
    /// again.
    pub async fn on_block(&mut self, cid: Cid, data: Vec<u8>, now: i64) -> StoreResult<(), S> {
        self.replica
            .receive_hashed_block(&cid, data, ms(now))
            .await?;
        self.drain(now);
        Ok(())
    }

    /// No peer has `cid`, or the wantlist had no room for it.
    pub async fn on_block_unavailable(&mut self, cid: Cid, now: i64) -> StoreResult<(), S> {
        self.replica.block_unavailable(&cid, ms(now)).await?;
        self.drain(now);
        Ok(())
    }

    /// Blocks of a [`bitswap::Task::Fetch`] that could not be asked for (the wantlist is full):
    /// each is unavailable for now.
    pub async fn on_fetch_refused(&mut self, cids: Vec<Cid>, now: i64) -> StoreResult<(), S> {
        for cid in &cids {
            self.replica.block_unavailable(cid, ms(now)).await?;
        }
        self.drain(now);
        Ok(())
    }

    /// `peer` wants blocks: answered from the replica's store.
    pub async fn on_wanted(&mut self, peer: PeerId, wants: Vec<WantEntry>) -> StoreResult<(), S> {
        let (blocks, presences) = bitswap::answer_from(self.replica.store(), wants)
            .await
            .map_err(ReplicaError::Store)?;
        self.effects
            .push_back(Effect::Bitswap(bitswap::Task::Answer {
                peer,
                blocks,
                presences,
            }));
        Ok(())
    }

    // ----- requests between peers --------------------------------------------------------

    /// How this node answers `request`.
    pub async fn on_request(&self, request: PeerRequest) -> StoreResult<Answer, S> {
        if !self.config.role.is_peer() {
            return Ok(Answer::Now(PeerResponse::Error(
                "a light follower tracks no pins".into(),
            )));
        }
        Ok(match request {
            PeerRequest::Snapshot => Answer::Now(match self.latest_snapshot {
                Some(offer) => PeerResponse::Snapshot(offer),
                None => PeerResponse::Error("no snapshot yet".into()),
            }),
            PeerRequest::Ancestors { from, known, limit } => Answer::Now(PeerResponse::Blocks(
                self.replica.ancestors(&from, &known, limit).await?,
            )),
            other => Answer::FromDaemon(other),
        })
    }

    /// The answer to request `id`, or why none came.
    pub async fn on_response(
        &mut self,
        id: RequestId,
        answer: Result<PeerResponse, String>,
        now: i64,
    ) -> StoreResult<(), S> {
        if self.catch_up.is_answer(id) {
            // A failed or refused request is an empty answer.
            let blocks = match answer {
                Ok(PeerResponse::Blocks(blocks)) => blocks,
                _ => Vec::new(),
            };
            self.replica.receive_ancestors(blocks, ms(now)).await?;
        } else if self.bootstrap.asked_with(id).is_some() {
            let offer = match answer {
                Ok(PeerResponse::Snapshot(offer)) => Some(offer),
                _ => None,
            };
            self.finish_bootstrap(offer, now).await?;
        } else if let Some((id, gathered)) = self.gatherings.answer(
            id,
            answer,
            |peer| identity_in_ping(&self.monitor, peer),
            now,
        ) {
            self.effects.push_back(Effect::Gathered { id, gathered });
        }
        self.drain(now);
        Ok(())
    }

    /// Puts `question` to every other live peer of the peerset; the answers, after
    /// `local` (this node's own part, if any), come as one [`Effect::Gathered`], at once
    /// when there is no peer to ask.
    pub fn ask_peers(
        &mut self,
        question: Question,
        local: Option<Gathered>,
        now: i64,
    ) -> GatheringId {
        let peers = self.other_peers(now);
        let (id, sends, reply) = self.gatherings.start(question, &peers, local);
        for (request_id, peer, request) in sends {
            self.effects.push_back(Effect::Request {
                id: request_id,
                peer,
                request,
            });
        }
        if let Some(gathered) = reply {
            self.effects.push_back(Effect::Gathered { id, gathered });
        }
        id
    }

    /// This node's connections, given its daemon's peers.
    pub fn connections(&self, ipfs_peers: Vec<PeerId>, now: i64) -> Connections {
        Connections {
            cluster_peers: self.connected_cluster_peers(now),
            ipfs_id: self.ipfs.peer,
            ipfs_peers,
        }
    }

    /// Loads the snapshot offered (by the peer asked), then takes the held head
    /// broadcasts: walks from above the snapshot, or through the whole DAG without one.
    async fn finish_bootstrap(
        &mut self,
        offer: Option<SnapshotOffer>,
        now: i64,
    ) -> StoreResult<(), S> {
        let (held, asked) = self.bootstrap.finish();
        if let (Some(offer), Some(peer)) = (offer, asked) {
            match self
                .replica
                .load_snapshot(&peer, &offer.root, ms(now))
                .await
            {
                Ok(()) => self.loaded_snapshot = Some(offer),
                Err(ReplicaError::Store(error)) => return Err(ReplicaError::Store(error)),
                Err(error) => self.effects.push_back(Effect::Problem {
                    problem: Problem::Snapshot,
                    message: format!("could not load the snapshot {}: {error}", offer.root),
                }),
            }
        }
        for (author, data) in held {
            self.replica
                .receive_broadcast(&author, &data, ms(now))
                .await?;
        }
        Ok(())
    }

    // ----- time --------------------------------------------------------------------------

    /// Merges one chunk of a loading snapshot, or carries Raft forward (see
    /// [`Node::has_work`]).
    pub async fn work(&mut self, now: i64) -> StoreResult<(), S> {
        self.replica.work(ms(now)).await?;
        #[cfg(feature = "raft")]
        self.raft_work(now).await?;
        self.drain(now);
        Ok(())
    }

    /// The node's periodic work; call it every 250 ms or so.
    pub async fn tick(&mut self, now: i64) -> StoreResult<(), S> {
        let now_ms = ms(now);
        self.replica.tick(now_ms).await?;
        #[cfg(feature = "raft")]
        {
            self.raft_tick(now);
            self.raft_work(now).await?;
        }
        if self.bootstrap.timed_out(now_ms) {
            self.finish_bootstrap(None, now).await?;
        }
        self.refresh_snapshot(now_ms).await?;
        let mut lost = Vec::new();
        for alert in self.monitor.check(now) {
            if alert.metric.name == monitor::PING_METRIC {
                lost.push(alert.metric.peer);
            }
            self.alerts.push_front(alert.clone());
            self.alerts.truncate(MAX_ALERTS);
            self.effects.push_back(Effect::Alert(alert));
        }
        self.repin_from(&lost, now).await?;
        let peerset: BTreeSet<PeerId> = self
            .peerset(now)
            .into_iter()
            .filter(|p| *p != self.config.local)
            .collect();
        for peer in peerset.difference(&self.peerset) {
            self.effects.push_back(Effect::Peer {
                peer: *peer,
                joined: true,
            });
        }
        for peer in self.peerset.difference(&peerset) {
            self.effects.push_back(Effect::Peer {
                peer: *peer,
                joined: false,
            });
        }
        self.peerset = peerset;
        if std::mem::take(&mut self.heads_announce_due) {
            let heads: Vec<Cid> = self.replica.heads().into_iter().map(|(c, _)| c).collect();
            if !heads.is_empty() {
                self.publish(Topic::Heads, encode_broadcast(&heads));
            }
        }
        for peer in self.redial.due(now_ms) {
            if !self.connected.contains(&peer) {
                self.effects.push_back(Effect::Dial {
                    peer: Some(peer),
                    addresses: self.addresses_of(&peer).to_vec(),
                });
            }
        }
        if self.config.role.is_peer() {
            self.periodic(now).await?;
        }
        let state = self.sync_state();
        if state != self.reported {
            self.reported = state.clone();
            self.effects.push_back(Effect::Sync(state));
        }
        self.drain(now);
        Ok(())
    }

    /// A peer's periodic tasks, each when due.
    async fn periodic(&mut self, now: i64) -> StoreResult<(), S> {
        let now_ms = ms(now);
        let periods = self.config.periods;
        if take_due(&mut self.due.ping, now_ms, periods.ping) {
            self.publish_ping(now);
        }
        if take_due(&mut self.due.expiry, now_ms, periods.expiry) {
            self.unpin_expired(now).await?;
        }
        if !self.config.role.pins() {
            return Ok(());
        }
        if take_due(&mut self.due.informers, now_ms, periods.informers) {
            if self.ipfs.peer.is_none() {
                self.effects.push_back(Effect::Daemon(DaemonTask::ReadId));
            }
            let count_pins = self
                .config
                .informers
                .as_ref()
                .is_some_and(|i| i.numpin_ttl_ms.is_some());
            self.effects
                .push_back(Effect::Daemon(DaemonTask::ReadInformerInputs {
                    count_pins,
                }));
        }
        if take_due(&mut self.due.recover, now_ms, periods.recover) {
            self.effects
                .push_back(Effect::Daemon(DaemonTask::ListPinsForRecover));
        }
        if take_due(&mut self.due.connect_swarms, now_ms, periods.connect_swarms) {
            let addresses = self.other_daemons(now);
            if !addresses.is_empty() {
                self.effects
                    .push_back(Effect::Daemon(DaemonTask::ConnectSwarms(addresses)));
            }
        }
        Ok(())
    }

    /// Makes a snapshot when one is due (peers that write).
    async fn refresh_snapshot(&mut self, now_ms: u64) -> StoreResult<(), S> {
        if !self.config.role.writes()
            || !self.config.snapshots.is_due(
                &self.replica.progress(),
                self.latest_snapshot.as_ref(),
                self.last_snapshot_ms,
                now_ms,
            )
        {
            return Ok(());
        }
        self.last_snapshot_ms = Some(now_ms);
        if let Some(made) = make_snapshot(&mut self.replica, self.latest_snapshot.as_ref()).await? {
            self.latest_snapshot = Some(made.offer);
            self.effects.push_back(Effect::SnapshotMade(made));
        }
        Ok(())
    }

    /// The swarm addresses of the other peers' daemons, from their `ping`s.
    fn other_daemons(&self, now: i64) -> Vec<Multiaddr> {
        let own = self.ipfs.peer.map(|p| p.to_string());
        self.monitor
            .latest_metrics(monitor::PING_METRIC, now)
            .iter()
            .filter(|m| m.peer != self.config.local)
            .filter_map(PingInfo::of)
            .filter(|ping| Some(&ping.ipfs_id) != own.as_ref())
            .flat_map(|ping| ping.ipfs_addresses)
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    // ----- metrics -----------------------------------------------------------------------

    /// The IPFS daemon's identity, once read.
    pub fn set_ipfs(&mut self, identity: IpfsIdentity) {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.set_ipfs(identity.peer, identity.addresses.clone());
        }
        self.ipfs = identity;
    }

    fn publish_metric(&mut self, metric: Metric, now: i64) {
        let bytes = metric.to_msgpack();
        self.monitor.receive(metric, now);
        self.publish(Topic::Metrics, bytes);
    }

    fn publish_ping(&mut self, now: i64) {
        let local = self.config.local;
        // Circuit addresses too: followers reach peers through relays.
        let cluster_addresses = self
            .external_addresses
            .iter()
            .filter(|a| !is_unspecified(a))
            .take(MAX_ANNOUNCED_ADDRESSES)
            .map(|a| a.clone().with_p2p(local).unwrap_or_else(|a| a).to_string())
            .collect();
        let metric = monitor::ping_metric(
            &local,
            &PingInfo {
                peer_name: self.config.peername.clone(),
                ipfs_id: self.ipfs.peer.map(|p| p.to_string()).unwrap_or_default(),
                ipfs_addresses: self.ipfs.addresses.iter().map(|a| a.to_string()).collect(),
                cluster_addresses,
                role: self.config.role.as_str().to_owned(),
                sent_at: now,
            },
            self.config.periods.ping,
            now,
        );
        self.publish_metric(metric, now);
    }

    /// Publishes the informers' metrics from the daemon's repository figures and, with the
    /// pin count informer on, its number of pins (`None` when it did not answer: that
    /// metric is then invalid, and not published). Only peers that pin do.
    pub fn publish_informers(
        &mut self,
        stat: Option<RepoStat>,
        pins: Option<u64>,
        now: i64,
    ) -> Option<Metric> {
        let informers = self.config.informers.clone()?;
        let queue = self.tracker.as_ref()?.pin_queue_size();
        let local = self.config.local;
        let disk = informer::disk_metric(
            informers.disk,
            stat.as_ref(),
            &local,
            informers.disk_ttl_ms,
            now,
        );
        let mut metrics = vec![disk.clone()];
        metrics.extend(informer::tag_metrics(
            &informers.tags,
            &local,
            informers.tags_ttl_ms,
            now,
        ));
        metrics.push(informer::pinqueue_metric(
            Some(queue),
            informers.pinqueue_bucket,
            &local,
            informers.pinqueue_ttl_ms,
            now,
        ));
        if let Some(ttl_ms) = informers.numpin_ttl_ms {
            metrics.push(informer::numpin_metric(pins, &local, ttl_ms, now));
        }
        for metric in metrics {
            self.publish_metric(metric, now);
        }
        Some(disk)
    }
}

/// What a peer's latest `ping` (expired or not) says of it: its name and IPFS daemon.
fn identity_in_ping(monitor: &Monitor, peer: &PeerId) -> PeerIdentity {
    let mut identity = PeerIdentity::new(*peer, "");
    if let Some(info) = monitor
        .peer_latest(monitor::PING_METRIC, peer)
        .and_then(PingInfo::of)
    {
        identity.peer_name = info.peer_name;
        identity.ipfs_peer_id = info.ipfs_id.parse().ok();
        identity.ipfs_peer_addresses = info
            .ipfs_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
    }
    identity
}

/// Unix nanoseconds to the replica's milliseconds.
/// Whether a task of `period` (ms) next due at `*due` runs at `now_ms`; if it does, the
/// next time is set. A clock set back by more than the period makes the task due at once
/// rather than that much later.
fn take_due(due: &mut u64, now_ms: u64, period: u64) -> bool {
    let run = *due <= now_ms || *due > now_ms.saturating_add(period);
    if run {
        *due = now_ms.saturating_add(period);
    }
    run
}

fn ms(now: i64) -> u64 {
    (now.max(0) / 1_000_000) as u64
}

/// An address on 0.0.0.0 or ::, which nobody can dial.
pub fn is_unspecified(address: &Multiaddr) -> bool {
    address.iter().any(|p| {
        matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
            || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
    })
}
