//! The light follower: a replica of the cluster's pinset that follows trusted peers'
//! heads, fetches their deltas, and keeps the monitor's view of peers and metrics. It
//! never writes to the pinset and pins nothing.
//!
//! [`Follower::run`] is one event loop on the JavaScript thread: swarm events, commands
//! from the page (each answered on its own channel) and a 250 ms tick. What changes is
//! reported through [`Sink`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use cid::Cid;
use futures::channel::{mpsc, oneshot};
use futures::future::{Fuse, FusedFuture};
use futures::{FutureExt, StreamExt};
use futures_timer::Delay;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use pinfold_core::codec::metric::Metric;
use pinfold_core::codec::pubsub::{crdt_topic, METRICS_TOPIC};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::codec::status::{SnapshotOffer, StatusRequest, StatusResponse, StatusSummary};
use pinfold_core::crdt::{
    self, Output, PinEvent, Progress, Replica, ReplicaError, Store as _, Trust,
};
use pinfold_core::monitor::{self, Monitor, PingInfo};
use pinfold_core::net::pnet_guard::WrongSecret;
use pinfold_core::net::{bitswap, psk_gate};
use pinfold_core::pin::Pin;
use pinfold_core::tracker::{GlobalPinInfo, PinInfo};
use serde::Serialize;

use crate::idb::IdbError;
use crate::store::FollowerStore;
use crate::swarm::{self, BehaviourEvent, Gated, GatedEvent};
use crate::websocket::websocket_url;

const TICK: Duration = Duration::from_millis(250);
/// Commands queued from the page before callers wait.
pub const COMMAND_QUEUE: usize = 64;
/// Most pins one page of [`Command::Pins`] returns.
pub const MAX_PAGE: usize = 10_000;
/// Most cluster peers the follower connects to besides its bootstrap peers.
const MAX_PEER_CONNECTIONS: usize = 16;
/// How long head broadcasts wait while a trusted peer is asked for its snapshot.
const SNAPSHOT_WAIT_MS: f64 = 5_000.0;
/// Head broadcasts held meanwhile (later ones replace the oldest).
const MAX_HELD_BROADCASTS: usize = 64;
const REDIAL_MIN_MS: f64 = 1_000.0;
const REDIAL_MAX_MS: f64 = 30_000.0;

/// Milliseconds since the Unix epoch, from JavaScript's clock.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn now_nanos() -> i64 {
    (js_sys::Date::now() * 1e6) as i64
}

/// How to follow a cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cluster_name: String,
    pub secret: Option<ClusterSecret>,
    pub bootstrap: Vec<Multiaddr>,
    pub trust: Trust,
    /// Time the first connection to a bootstrap peer may take.
    pub connect_timeout: Duration,
}

/// Why a follower did not start. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("wrong cluster secret? {address} refused the private-network handshake")]
    WrongSecret { address: String },
    #[error("could not reach any bootstrap peer ({0}); check the addresses and that the peer listens for WebSocket")]
    Unreachable(String),
    #[error("no bootstrap peer answered within {0:?}; check the addresses and that the peer listens for WebSocket")]
    TimedOut(Duration),
    #[error("{0}")]
    Invalid(String),
    #[error("could not open the follower's storage: {0}")]
    Storage(String),
}

impl StartError {
    /// The stable code the JavaScript errors carry.
    pub fn code(&self) -> &'static str {
        match self {
            StartError::WrongSecret { .. } => "WRONG_SECRET",
            StartError::Unreachable(_) | StartError::TimedOut(_) => "UNREACHABLE",
            StartError::Invalid(_) => "INVALID_OPTIONS",
            StartError::Storage(_) => "STORAGE",
        }
    }
}

/// What the page asks of a running follower.
pub enum Command {
    Pins {
        after: Option<Cid>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Pin>, String>>,
    },
    Get {
        cid: Cid,
        reply: oneshot::Sender<Result<Option<Pin>, String>>,
    },
    /// The statuses of up to [`MAX_CIDS`](pinfold_core::codec::status::MAX_CIDS) CIDs, in the order asked; a CID no peer
    /// reported on is left out.
    Statuses {
        cids: Vec<Cid>,
        reply: oneshot::Sender<Result<Vec<GlobalPinInfo>, String>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerView>>,
    },
    Metrics {
        name: String,
        reply: oneshot::Sender<Vec<Metric>>,
    },
    /// The names of the metrics received (`ping`, `freespace`, `tag:group`, ...).
    MetricNames {
        reply: oneshot::Sender<Vec<String>>,
    },
    SyncState {
        reply: oneshot::Sender<SyncState>,
    },
    Summaries {
        reply: oneshot::Sender<Result<Vec<PeerSummary>, String>>,
    },
}

/// One connected peer's statuses of the whole pinset, counted, or why it gave none.
#[derive(Clone, Debug, Serialize)]
pub struct PeerSummary {
    pub peer: String,
    pub peername: String,
    #[serde(flatten)]
    pub summary: Option<StatusSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A cluster peer as the follower sees it, from its `ping` metrics.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    pub id: String,
    pub name: String,
    pub addresses: Vec<String>,
    pub ipfs_id: String,
    /// Whether its latest `ping` is still valid.
    pub alive: bool,
    pub connected: bool,
    /// Whether its head broadcasts are followed.
    pub trusted: bool,
    /// `full`, `relay` or `follower`, as its ping says (empty for Go peers).
    pub role: String,
    /// When its latest `ping` arrived (Unix milliseconds).
    pub last_seen: u64,
}

/// Where the follower's sync stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncState {
    pub heads: Vec<Head>,
    pub height: u64,
    /// Delta blocks known and not yet merged, and requested and not yet received.
    pub pending: usize,
    pub in_flight: usize,
    /// Deltas merged since the follower started.
    pub merged: u64,
    pub pins: u64,
    /// Whether it has heads and nothing left to fetch.
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

/// The kinds of trouble a running follower reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Its store failed.
    Storage,
    /// A snapshot could not be loaded (the DAG is walked instead).
    Snapshot,
    /// A connection failed the secret proof.
    WrongSecret,
    /// Pinset heads came from a peer that is not trusted, and were ignored.
    UntrustedData,
}

impl Problem {
    /// The stable code the JavaScript errors carry.
    pub fn code(self) -> &'static str {
        match self {
            Problem::Storage => "STORAGE",
            Problem::Snapshot => "SNAPSHOT",
            Problem::WrongSecret => "WRONG_SECRET",
            Problem::UntrustedData => "UNTRUSTED_DATA",
        }
    }
}

/// What the follower reports as it runs.
pub trait Sink {
    fn pin(&self, pin: &Pin);
    fn unpin(&self, cid: &Cid);
    fn peer(&self, peer: &PeerId, joined: bool);
    fn sync(&self, state: &SyncState);
    /// Something the user should know went wrong; `code` is one of [`Problem`]'s.
    fn error(&self, problem: Problem, message: &str);
}

/// The start of a sync: a replica that has merged nothing first asks a trusted peer for a
/// snapshot, holding head broadcasts until it knows whether it loads one.
enum SnapshotPhase {
    /// Until a trusted peer is connected, or `until`.
    Waiting {
        held: Vec<(PeerId, Vec<u8>)>,
        until: f64,
    },
    /// Asked `peer` with `request`, until `until`.
    Asking {
        request: OutboundRequestId,
        peer: PeerId,
        held: Vec<(PeerId, Vec<u8>)>,
        until: f64,
    },
    Done,
}

/// What a peer's answer of the wrong kind is recorded as.
const OTHER_ANSWER: &str = "the peer answered another question";

/// Answers awaited from the connected peers for one call.
struct Gathering {
    awaiting: usize,
    answers: Answers,
}

enum Answers {
    /// Views of some CIDs.
    Statuses {
        cids: Vec<Cid>,
        infos: Vec<PinInfo>,
        reply: oneshot::Sender<Result<Vec<GlobalPinInfo>, String>>,
    },
    /// Counts of each peer's statuses.
    Summaries {
        summaries: Vec<PeerSummary>,
        reply: oneshot::Sender<Result<Vec<PeerSummary>, String>>,
    },
}

/// A running follower's state; see the module's documentation.
pub struct Follower<E: Sink> {
    swarm: Swarm<Gated>,
    replica: Replica<FollowerStore>,
    monitor: Monitor,
    local: PeerId,
    trust: Trust,
    /// Whether there is a secret, so that the gate covers WebRTC links.
    gated: bool,
    heads_topic: IdentTopic,
    metrics_topic: IdentTopic,
    bootstrap: Vec<Multiaddr>,
    sink: E,
    /// Answers `start` once a bootstrap peer is connected or every dial failed.
    started: Option<oneshot::Sender<Result<(), StartError>>>,
    /// Dials that failed while `start` waits.
    start_failures: Vec<StartError>,
    /// `start` was answered with an error: nobody holds this follower.
    refused: bool,
    redial_at: f64,
    redial_backoff: f64,
    /// Last dial to each peer learned from its `ping` (milliseconds).
    peer_dials: HashMap<PeerId, f64>,
    peerset: BTreeSet<PeerId>,
    pins: u64,
    reported: SyncState,
    status_requests: HashMap<OutboundRequestId, (u64, PeerId)>,
    gatherings: HashMap<u64, Gathering>,
    next_gathering: u64,
    snapshot: SnapshotPhase,
    loaded_snapshot: Option<SnapshotOffer>,
    /// Authors of ignored heads, each reported once.
    untrusted_authors: BTreeSet<PeerId>,
}

impl<E: Sink> Follower<E> {
    /// Builds the follower and dials its bootstrap peers; `started` is answered once one
    /// is connected, or with why none could be.
    pub async fn new(
        key: libp2p::identity::Keypair,
        settings: Settings,
        store: FollowerStore,
        sink: E,
        started: oneshot::Sender<Result<(), StartError>>,
    ) -> Result<Self, StartError> {
        if settings.bootstrap.is_empty() {
            return Err(StartError::Invalid(
                "bootstrap: give at least one multiaddr of a cluster peer's WebSocket listener"
                    .into(),
            ));
        }
        let local = key.public().to_peer_id();
        let mut swarm = swarm::build(key, settings.secret.as_ref()).map_err(StartError::Invalid)?;
        let heads_topic = IdentTopic::new(crdt_topic(&settings.cluster_name));
        let metrics_topic = IdentTopic::new(METRICS_TOPIC);
        for topic in [&heads_topic, &metrics_topic] {
            swarm
                .behaviour_mut()
                .inner_mut()
                .gossipsub
                .subscribe(topic)
                .map_err(|e| StartError::Invalid(e.to_string()))?;
        }
        let config = crdt::Config {
            trust: settings.trust.clone(),
            fetch_timeout_ms: 30_000,
            seed: u64::from_le_bytes(local.to_bytes()[2..10].try_into().expect("8 bytes")),
            ..crdt::Config::default()
        };
        let replica = Replica::open(store, config)
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let pins = replica
            .store()
            .live_keys()
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let replica_was_empty = replica.heads().is_empty() && replica.progress().pending == 0;
        let mut follower = Self {
            swarm,
            replica,
            monitor: Monitor::new(),
            local,
            gated: settings.secret.is_some(),
            trust: settings.trust,
            heads_topic,
            metrics_topic,
            bootstrap: settings.bootstrap,
            sink,
            started: Some(started),
            start_failures: Vec::new(),
            refused: false,
            redial_at: js_sys::Date::now() + REDIAL_MIN_MS,
            redial_backoff: REDIAL_MIN_MS,
            peer_dials: HashMap::new(),
            peerset: BTreeSet::new(),
            pins,
            reported: SyncState::default(),
            status_requests: HashMap::new(),
            gatherings: HashMap::new(),
            next_gathering: 0,
            // A replica resumed from storage already has its pinset: it walks from there.
            snapshot: if replica_was_empty {
                SnapshotPhase::Waiting {
                    held: Vec::new(),
                    until: js_sys::Date::now() + SNAPSHOT_WAIT_MS,
                }
            } else {
                SnapshotPhase::Done
            },
            loaded_snapshot: None,
            untrusted_authors: BTreeSet::new(),
        };
        follower.dial_bootstrap();
        Ok(follower)
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Runs until the command channel closes (the page closed the follower), or until
    /// `start` failed. `connect_timeout` bounds the wait for the first connection.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, connect_timeout: Duration) {
        let mut tick = Delay::new(TICK);
        let mut start_deadline = Delay::new(connect_timeout).fuse();
        let mut turn = Fuse::terminated();
        loop {
            // A loading snapshot merges one chunk per turn; each turn first yields to the
            // JavaScript event loop, so that the page and the network go on meanwhile.
            if self.replica.has_work() && turn.is_terminated() {
                turn = Delay::new(Duration::ZERO).fuse();
            }
            futures::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = commands.next() => match command {
                    Some(command) => self.on_command(command).await,
                    None => return,
                },
                _ = (&mut tick).fuse() => {
                    tick.reset(TICK);
                    self.on_tick().await;
                }
                _ = start_deadline => self.fail_start(StartError::TimedOut(connect_timeout)),
                _ = turn => {
                    let result = self.replica.work(now_ms()).await;
                    self.check(result);
                }
            }
            self.drain_replica().await;
            if self.refused {
                return;
            }
        }
    }

    /// Reports a failed replica operation; the follower goes on with the next event.
    fn check(&self, result: Result<(), ReplicaError<IdbError>>) {
        if let Err(error) = result {
            self.sink.error(Problem::Storage, &error.to_string());
        }
    }

    fn fail_start(&mut self, error: StartError) {
        if let Some(started) = self.started.take() {
            let _ = started.send(Err(error));
            self.refused = true;
        }
    }

    fn dial_bootstrap(&mut self) {
        for address in self.bootstrap.clone() {
            if let Err(error) = self.swarm.dial(address.clone()) {
                self.on_dial_error(&error);
            }
        }
    }

    // ----- the pinset -----------------------------------------------------------------

    async fn drain_replica(&mut self) {
        let bitswap = &mut self.swarm.behaviour_mut().inner_mut().bitswap;
        match bitswap.drain_replica(&mut self.replica, now_ms()).await {
            // A follower's heads are the trusted peers' own: it never announces them.
            Ok(outputs) => outputs
                .iter()
                .filter(|output| !matches!(output, Output::Broadcast(_)))
                .for_each(|output| self.on_pinset_change(output)),
            Err(error) => self.check(Err(error)),
        }
    }

    fn on_pinset_change(&mut self, output: &Output) {
        match PinEvent::from_output(output) {
            Some(Ok(PinEvent::Pinned(pin))) => {
                if matches!(output, Output::Put { added: true, .. }) {
                    self.pins += 1;
                }
                self.sink.pin(&pin);
            }
            Some(Ok(PinEvent::Unpinned(cid))) => {
                self.pins = self.pins.saturating_sub(1);
                self.sink.unpin(&cid);
            }
            // Entries that are not pins are left out, as Go's state listing does.
            Some(Err(_)) | None => {}
        }
    }

    fn sync_state(&self) -> SyncState {
        let Progress {
            pending,
            in_flight,
            merged,
            height,
            ..
        } = self.replica.progress();
        let heads = self.replica.heads();
        SyncState {
            synced: !heads.is_empty() && pending == 0,
            heads: heads
                .into_iter()
                .map(|(cid, height)| Head {
                    cid: cid.to_string(),
                    height,
                })
                .collect(),
            height,
            pending,
            in_flight,
            merged,
            pins: self.pins,
            connected_peers: self.swarm.connected_peers().count(),
            snapshot: self.loaded_snapshot,
        }
    }

    // ----- time -----------------------------------------------------------------------

    async fn on_tick(&mut self) {
        let result = self.replica.tick(now_ms()).await;
        self.check(result);
        if let SnapshotPhase::Waiting { until, .. } | SnapshotPhase::Asking { until, .. } =
            self.snapshot
        {
            if js_sys::Date::now() >= until {
                self.end_snapshot_phase(None).await;
            }
        }
        let now = now_nanos();
        self.monitor.check(now);
        let peerset: BTreeSet<PeerId> =
            self.monitor.peerset(&self.local, now).into_iter().collect();
        for peer in peerset.difference(&self.peerset) {
            self.sink.peer(peer, true);
        }
        for peer in self.peerset.difference(&peerset) {
            self.sink.peer(peer, false);
        }
        self.peerset = peerset;
        let state = self.sync_state();
        if state != self.reported {
            self.sink.sync(&state);
            self.reported = state;
        }
        if self.started.is_none()
            && self.swarm.connected_peers().next().is_none()
            && js_sys::Date::now() >= self.redial_at
        {
            self.redial_at = js_sys::Date::now() + self.redial_backoff;
            self.redial_backoff = (self.redial_backoff * 2.0).min(REDIAL_MAX_MS);
            self.dial_bootstrap();
        }
    }

    // ----- the network ----------------------------------------------------------------

    async fn on_swarm_event(&mut self, event: SwarmEvent<GatedEvent>) {
        match event {
            // A link the secret gate covers is usable once it proved the secret.
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if !(self.gated && psk_gate::outside_pnet(endpoint.get_remote_address())) => {
                self.on_usable_connection(peer_id)
            }
            SwarmEvent::Behaviour(psk_gate::Event::Proven { peer, .. }) => {
                self.on_usable_connection(peer)
            }
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => {
                self.redial_at = self
                    .redial_at
                    .min(js_sys::Date::now() + self.redial_backoff);
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => self.on_dial_error(&error),
            SwarmEvent::Behaviour(psk_gate::Event::Inner(event)) => {
                self.on_behaviour_event(event).await
            }
            SwarmEvent::Behaviour(psk_gate::Event::Rejected { peer, reason, .. }) => {
                if self.started.is_some() {
                    self.fail_start(StartError::WrongSecret {
                        address: format!("{peer} ({reason})"),
                    });
                } else {
                    self.sink.error(
                        Problem::WrongSecret,
                        &format!("closed the connection to {peer}: {reason}"),
                    );
                }
            }
            _ => {}
        }
    }

    fn on_usable_connection(&mut self, peer: PeerId) {
        self.redial_backoff = REDIAL_MIN_MS;
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(()));
        }
        self.ask_snapshot(peer);
    }

    fn on_dial_error(&mut self, error: &DialError) {
        if self.started.is_none() {
            return;
        }
        let DialError::Transport(errors) = error else {
            return;
        };
        for (address, error) in errors {
            let wrong_secret =
                matches!(error, libp2p::TransportError::Other(e) if WrongSecret::is_cause_of(e));
            let failure = if wrong_secret {
                StartError::WrongSecret {
                    address: address.to_string(),
                }
            } else {
                StartError::Unreachable(format!("{address}: {}", error_chain(error)))
            };
            self.start_failures.push(failure);
        }
        if self.start_failures.len() >= self.bootstrap.len() {
            let failures = std::mem::take(&mut self.start_failures);
            let error = failures
                .iter()
                .find(|f| matches!(f, StartError::WrongSecret { .. }))
                .cloned()
                .unwrap_or_else(|| {
                    StartError::Unreachable(
                        failures
                            .iter()
                            .map(|f| match f {
                                StartError::Unreachable(detail) => detail.clone(),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                });
            self.fail_start(error);
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                let Some(author) = message.source else {
                    return;
                };
                if message.topic == self.heads_topic.hash() {
                    if !self.trust.trusts(&author) {
                        if self.untrusted_authors.insert(author) {
                            self.sink.error(
                                Problem::UntrustedData,
                                &format!(
                                    "ignored the pinset heads of {author}, which is not a trusted peer; \
                                     add it to trustedPeers to follow its writes"
                                ),
                            );
                        }
                        return;
                    }
                    if let SnapshotPhase::Waiting { held, .. }
                    | SnapshotPhase::Asking { held, .. } = &mut self.snapshot
                    {
                        if held.len() == MAX_HELD_BROADCASTS {
                            held.remove(0);
                        }
                        held.push((author, message.data));
                        return;
                    }
                    let result = self
                        .replica
                        .receive_broadcast(&author, &message.data, now_ms())
                        .await;
                    self.check(result);
                } else if message.topic == self.metrics_topic.hash() {
                    match Metric::from_msgpack(&message.data) {
                        Ok(metric) if metric.peer == author => {
                            if metric.name == monitor::PING_METRIC {
                                self.learn_addresses(&metric);
                            }
                            self.monitor.receive(metric, now_nanos());
                        }
                        // Metrics about another peer, or malformed, are dropped.
                        Ok(_) | Err(_) => {}
                    }
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for address in info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| websocket_url(a).is_some())
                {
                    self.swarm.add_peer_address(peer_id, address);
                }
            }
            BehaviourEvent::Bitswap(bitswap::Event::Block { cid, data, .. }) => {
                let result = self.replica.receive_block(&cid, data, now_ms()).await;
                self.check(result);
            }
            BehaviourEvent::Bitswap(bitswap::Event::Unavailable { cid }) => {
                let result = self.replica.block_unavailable(&cid, now_ms()).await;
                self.check(result);
            }
            BehaviourEvent::Bitswap(bitswap::Event::Wanted { peer, wants }) => {
                match bitswap::answer_from(self.replica.store(), wants).await {
                    Ok((blocks, presences)) => self
                        .swarm
                        .behaviour_mut()
                        .inner_mut()
                        .bitswap
                        .respond(peer, blocks, presences),
                    Err(error) => self.sink.error(Problem::Storage, &error.to_string()),
                }
            }
            BehaviourEvent::Status(event) => self.on_status(event).await,
            _ => {}
        }
    }

    /// Connects to cluster peers whose `ping` names a WebSocket address (or else a circuit
    /// through a relay that has one), so that their statuses can be asked and their blocks
    /// fetched.
    fn learn_addresses(&mut self, ping: &Metric) {
        let peer = ping.peer;
        if peer == self.local || self.swarm.is_connected(&peer) {
            return;
        }
        let now = js_sys::Date::now();
        if self.swarm.connected_peers().count() >= MAX_PEER_CONNECTIONS
            || self
                .peer_dials
                .get(&peer)
                .is_some_and(|at| now - at < REDIAL_MAX_MS)
        {
            return;
        }
        let Some(info) = PingInfo::of(ping) else {
            return;
        };
        let (direct, circuits): (Vec<Multiaddr>, Vec<Multiaddr>) = info
            .cluster_addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .filter(reachable)
            .partition(|a: &Multiaddr| !a.iter().any(|p| p == Protocol::P2pCircuit));
        // A relay is a detour: only for peers that name no address of their own.
        let addresses = if direct.is_empty() { circuits } else { direct };
        if addresses.is_empty() {
            return;
        }
        self.peer_dials.insert(peer, now);
        let dial = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addresses)
            .build();
        // A failed dial is tried again with the peer's next ping.
        let _ = self.swarm.dial(dial);
    }

    /// Asks `peer` for its snapshot if it is trusted and nothing has been asked yet.
    fn ask_snapshot(&mut self, peer: PeerId) {
        let SnapshotPhase::Waiting { held, .. } = &mut self.snapshot else {
            return;
        };
        if !self.trust.trusts(&peer) {
            return;
        }
        let held = std::mem::take(held);
        let request = self
            .swarm
            .behaviour_mut()
            .inner_mut()
            .status
            .send_request(&peer, StatusRequest::Snapshot);
        self.snapshot = SnapshotPhase::Asking {
            request,
            peer,
            held,
            until: js_sys::Date::now() + SNAPSHOT_WAIT_MS,
        };
    }

    fn is_snapshot_request(&self, id: OutboundRequestId) -> bool {
        matches!(self.snapshot, SnapshotPhase::Asking { request, .. } if request == id)
    }

    /// Loads `offer` (from the peer asked), then takes the held head broadcasts: walks
    /// from above the snapshot, or through the whole DAG without one.
    async fn end_snapshot_phase(&mut self, offer: Option<SnapshotOffer>) {
        let (held, asked) = match std::mem::replace(&mut self.snapshot, SnapshotPhase::Done) {
            SnapshotPhase::Waiting { held, .. } => (held, None),
            SnapshotPhase::Asking { held, peer, .. } => (held, Some(peer)),
            SnapshotPhase::Done => return,
        };
        if let (Some(offer), Some(peer)) = (offer, asked) {
            match self
                .replica
                .load_snapshot(&peer, &offer.root, now_ms())
                .await
            {
                Ok(()) => self.loaded_snapshot = Some(offer),
                Err(error) => self.sink.error(
                    Problem::Snapshot,
                    &format!("could not load the snapshot {}: {error}", offer.root),
                ),
            }
        }
        for (author, data) in held {
            let result = self
                .replica
                .receive_broadcast(&author, &data, now_ms())
                .await;
            self.check(result);
        }
    }

    async fn on_status(&mut self, event: pinfold_core::net::status::Event) {
        match event {
            request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            } => {
                let answer = StatusResponse::Error("a light follower tracks no pins".into());
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .inner_mut()
                    .status
                    .send_response(channel, answer);
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } if self.is_snapshot_request(request_id) => {
                let offer = match response {
                    StatusResponse::Snapshot(offer) => Some(offer),
                    _ => None,
                };
                self.end_snapshot_phase(offer).await;
            }
            request_response::Event::OutboundFailure { request_id, .. }
                if self.is_snapshot_request(request_id) =>
            {
                self.end_snapshot_phase(None).await;
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.gathered(request_id, Ok(response)),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.gathered(
                request_id,
                Err(format!(
                    "the peer did not answer the status request: {error}"
                )),
            ),
            _ => {}
        }
    }

    fn peer_name(&self, peer: &PeerId) -> String {
        self.monitor
            .peer_latest(monitor::PING_METRIC, peer)
            .and_then(PingInfo::of)
            .map(|info| info.peer_name)
            .unwrap_or_default()
    }

    fn gathered(&mut self, request: OutboundRequestId, answer: Result<StatusResponse, String>) {
        let Some((id, peer)) = self.status_requests.remove(&request) else {
            return;
        };
        let peer_name = self.peer_name(&peer);
        let Some(gathering) = self.gatherings.get_mut(&id) else {
            return;
        };
        let answer = match answer {
            Ok(StatusResponse::Error(error)) | Err(error) => Err(error),
            Ok(response) => Ok(response),
        };
        match (&mut gathering.answers, answer) {
            (Answers::Statuses { cids, infos, .. }, Ok(StatusResponse::Statuses(theirs))) => {
                let asked: BTreeSet<&Cid> = cids.iter().collect();
                infos.extend(
                    theirs
                        .into_iter()
                        .filter(|i| i.peer == peer && asked.contains(&i.cid)),
                );
            }
            (Answers::Statuses { cids, infos, .. }, other) => {
                let error = other.err().unwrap_or_else(|| OTHER_ANSWER.into());
                let now = now_nanos();
                infos.extend(cids.iter().map(|cid| {
                    PinInfo::unanswered(*cid, peer, peer_name.clone(), error.clone(), now)
                }));
            }
            (Answers::Summaries { summaries, .. }, answer) => {
                let (summary, error) = match answer {
                    Ok(StatusResponse::Summary(summary)) => (Some(summary), None),
                    Ok(_) => (None, Some(OTHER_ANSWER.into())),
                    Err(error) => (None, Some(error)),
                };
                summaries.push(PeerSummary {
                    peer: peer.to_base58(),
                    peername: peer_name,
                    summary,
                    error,
                });
            }
        }
        gathering.awaiting -= 1;
        if gathering.awaiting > 0 {
            return;
        }
        match self.gatherings.remove(&id).expect("present").answers {
            Answers::Statuses { cids, infos, reply } => {
                let _ = reply.send(Ok(per_cid(&cids, infos)));
            }
            Answers::Summaries {
                mut summaries,
                reply,
            } => {
                summaries.sort_by(|a, b| a.peername.cmp(&b.peername).then(a.peer.cmp(&b.peer)));
                let _ = reply.send(Ok(summaries));
            }
        }
    }

    // ----- commands -------------------------------------------------------------------

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Pins {
                after,
                limit,
                reply,
            } => {
                let pins = self.replica.pins(after.as_ref(), limit.min(MAX_PAGE)).await;
                let _ = reply.send(pins.map_err(|e| e.to_string()));
            }
            Command::Get { cid, reply } => {
                let pin = self.replica.pin(&cid).await;
                let _ = reply.send(pin.map_err(|e| e.to_string()));
            }
            Command::Statuses { cids, reply } => {
                let request = StatusRequest::Statuses {
                    cids: cids.clone(),
                    recover: false,
                };
                let answers = Answers::Statuses {
                    cids,
                    infos: Vec::new(),
                    reply,
                };
                self.ask_peers(request, answers);
            }
            Command::Summaries { reply } => {
                let answers = Answers::Summaries {
                    summaries: Vec::new(),
                    reply,
                };
                self.ask_peers(StatusRequest::Summary, answers);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers());
            }
            Command::Metrics { name, reply } => {
                let _ = reply.send(self.monitor.latest_metrics(&name, now_nanos()));
            }
            Command::MetricNames { reply } => {
                let _ = reply.send(self.monitor.metric_names().map(str::to_owned).collect());
            }
            Command::SyncState { reply } => {
                let _ = reply.send(self.sync_state());
            }
        }
    }

    /// Asks every connected peer `request`; `answers` gathers what they say and replies
    /// once all have answered or failed.
    fn ask_peers(&mut self, request: StatusRequest, answers: Answers) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        if peers.is_empty() {
            let error = "not connected to any cluster peer; statuses come from the peers";
            match answers {
                Answers::Statuses { reply, .. } => drop(reply.send(Err(error.into()))),
                Answers::Summaries { reply, .. } => drop(reply.send(Err(error.into()))),
            }
            return;
        }
        let id = self.next_gathering;
        self.next_gathering += 1;
        for peer in &peers {
            let sent = self
                .swarm
                .behaviour_mut()
                .inner_mut()
                .status
                .send_request(peer, request.clone());
            self.status_requests.insert(sent, (id, *peer));
        }
        self.gatherings.insert(
            id,
            Gathering {
                awaiting: peers.len(),
                answers,
            },
        );
    }

    fn peers(&self) -> Vec<PeerView> {
        let now = now_nanos();
        let alive: BTreeSet<PeerId> = self.monitor.peerset(&self.local, now).into_iter().collect();
        self.monitor
            .latest_metrics(monitor::PING_METRIC, i64::MIN)
            .into_iter()
            .filter(|ping| ping.peer != self.local)
            .map(|ping| {
                let info = PingInfo::of(&ping).unwrap_or_default();
                PeerView {
                    id: ping.peer.to_base58(),
                    name: info.peer_name,
                    addresses: info.cluster_addresses,
                    ipfs_id: info.ipfs_id,
                    alive: alive.contains(&ping.peer),
                    connected: self.swarm.is_connected(&ping.peer),
                    trusted: self.trust.trusts(&ping.peer),
                    role: info.role,
                    last_seen: (ping.received_at / 1_000_000).max(0) as u64,
                }
            })
            .collect()
    }
}

/// Whether the follower can dial `address`: a WebSocket address, or a circuit through a
/// relay it reaches over WebSocket.
fn reachable(address: &Multiaddr) -> bool {
    let relay: Multiaddr = address
        .iter()
        .take_while(|p| *p != Protocol::P2pCircuit)
        .collect();
    websocket_url(&relay).is_some()
}

/// Each CID's peer views gathered into one `GlobalPinInfo`, in the order of `cids`; a CID
/// with no view is left out.
fn per_cid(cids: &[Cid], infos: Vec<PinInfo>) -> Vec<GlobalPinInfo> {
    let mut by_cid: BTreeMap<Cid, GlobalPinInfo> = BTreeMap::new();
    for info in infos {
        match by_cid.get_mut(&info.cid) {
            Some(global) => global.add(info),
            None => {
                by_cid.insert(info.cid, GlobalPinInfo::new(info));
            }
        }
    }
    cids.iter().filter_map(|cid| by_cid.remove(cid)).collect()
}

/// An error and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
