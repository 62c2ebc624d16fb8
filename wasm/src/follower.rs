//! The light follower: a [`Node`] in the light role (see [`NodeRole::Light`]) driven on
//! the JavaScript thread. It follows the trusted peers' heads, fetches their deltas, keeps
//! the monitor's view of peers and metrics, never writes to the pinset and pins nothing.
//!
//! [`Follower::run`] is one event loop: swarm events, commands from the page (each
//! answered on its own channel) and a 250 ms tick go to the node, and the node's effects
//! come back out to the swarm and the page ([`Sink`]). The cluster logic is the node's.

use std::collections::HashMap;
use std::time::Duration;

use cid::Cid;
use futures::channel::{mpsc, oneshot};
use futures::future::{self, Fuse, FusedFuture};
use futures::{FutureExt, StreamExt};
use futures_timer::Delay;
use libp2p::gossipsub;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, Multiaddr, PeerId, Swarm};
use pinfold_core::allocator::AllocatorConfig;
use pinfold_core::codec::metric::Metric;
use pinfold_core::codec::peer_request::PeerResponse;
use pinfold_core::codec::peer_request::StatusSummary;
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::crdt::{self, Replica, ReplicaError, Trust};
use pinfold_core::net::peer_request::{self, handling, Handling};
use pinfold_core::net::pnet_guard::WrongSecret;
use pinfold_core::net::pubsub::{self, ClusterTopics};
use pinfold_core::net::{bitswap, psk_gate};
use pinfold_core::node::{
    self, Answer, Effect, Gathered, GatheringId, GossipVerdict, Node, NodeConfig, NodeRole,
    Periods, Question, RequestId, SnapshotPolicy, SyncState,
};
use pinfold_core::pin::Pin;
use pinfold_core::tracker::GlobalPinInfo;
use serde::Serialize;

use crate::error_code::ErrorCode;
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

/// Unix nanoseconds, from JavaScript's clock.
fn now_nanos() -> i64 {
    (js_sys::Date::now() * 1e6) as i64
}

/// What woke the follower's loop.
// One at a time, on the loop's stack: boxing the swarm's event would allocate per event.
#[allow(clippy::large_enum_variant)]
enum Event {
    Swarm(SwarmEvent<GatedEvent>),
    Command(Command),
    Tick,
    StartDeadline,
    Work,
}

/// Longest the follower handles events without the JavaScript event loop getting a turn.
/// Events that arrive together (a burst of blocks, say) are otherwise handled in one task,
/// which holds the page for as long.
const SLICE_MS: f64 = 20.0;

/// A run of events handled back to back, in one task of the JavaScript event loop.
#[derive(Default)]
struct Slice {
    started: f64,
    last_ended: f64,
}

impl Slice {
    /// An event is about to be handled: a wait of more than a millisecond since the last
    /// one ended let the page have its turn, and starts a new slice.
    fn begin(&mut self) {
        let now = js_sys::Date::now();
        if now - self.last_ended > 1.0 {
            self.started = now;
        }
    }

    /// An event was handled: yields to the event loop once the slice has run for
    /// [`SLICE_MS`].
    async fn end(&mut self) {
        self.last_ended = js_sys::Date::now();
        if self.last_ended - self.started >= SLICE_MS {
            Delay::new(Duration::ZERO).await;
            self.started = js_sys::Date::now();
            self.last_ended = self.started;
        }
    }
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
    pub fn code(&self) -> ErrorCode {
        match self {
            StartError::WrongSecret { .. } => ErrorCode::WrongSecret,
            StartError::Unreachable(_) | StartError::TimedOut(_) => ErrorCode::Unreachable,
            StartError::Invalid(_) => ErrorCode::InvalidOptions,
            StartError::Storage(_) => ErrorCode::Storage,
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
    /// The statuses of up to [`MAX_CIDS`](pinfold_core::codec::peer_request::MAX_CIDS) CIDs, in the order asked; a CID no peer
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
    pub fn code(self) -> ErrorCode {
        match self {
            Problem::Storage => ErrorCode::Storage,
            Problem::Snapshot => ErrorCode::Snapshot,
            Problem::WrongSecret => ErrorCode::WrongSecret,
            Problem::UntrustedData => ErrorCode::UntrustedData,
        }
    }
}

impl From<node::Problem> for Problem {
    fn from(problem: node::Problem) -> Self {
        match problem {
            node::Problem::Snapshot => Problem::Snapshot,
            node::Problem::UntrustedData => Problem::UntrustedData,
        }
    }
}

/// What the follower reports as it runs.
pub trait Sink {
    /// Whether [`Sink::pin`] and [`Sink::unpin`] have anyone to tell: while not, the
    /// follower reads no pin out of the entries it merges.
    fn wants_pins(&self) -> bool;
    fn pin(&self, pin: &Pin);
    fn unpin(&self, cid: &Cid);
    fn peer(&self, peer: &PeerId, joined: bool);
    fn sync(&self, state: &SyncState);
    /// Something the user should know went wrong; `code` is one of [`Problem`]'s.
    fn error(&self, problem: Problem, message: &str);
}

/// A reply awaited from a gathering.
enum Reply {
    Statuses {
        cids: Vec<Cid>,
        reply: oneshot::Sender<Result<Vec<GlobalPinInfo>, String>>,
    },
    Summaries {
        reply: oneshot::Sender<Result<Vec<PeerSummary>, String>>,
    },
}

/// A running follower's state; see the module's documentation.
pub struct Follower<E: Sink> {
    swarm: Swarm<Gated>,
    node: Node<FollowerStore>,
    /// Whether there is a secret, so that the gate covers WebRTC links.
    gated: bool,
    topics: ClusterTopics,
    bootstrap: Vec<Multiaddr>,
    sink: E,
    /// Answers `start` once a bootstrap peer is connected or every dial failed.
    started: Option<oneshot::Sender<Result<(), StartError>>>,
    /// Dials that failed while `start` waits.
    start_failures: Vec<StartError>,
    /// `start` was answered with an error: nobody holds this follower.
    refused: bool,
    requests: HashMap<OutboundRequestId, RequestId>,
    replies: HashMap<GatheringId, Reply>,
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
        let topics = ClusterTopics::new(&settings.cluster_name);
        topics
            .subscribe(&mut swarm.behaviour_mut().inner_mut().gossipsub)
            .map_err(|e| StartError::Invalid(e.to_string()))?;
        let replica_config = crdt::Config {
            trust: settings.trust.clone(),
            fetch_timeout_ms: 30_000,
            seed: u64::from_le_bytes(local.to_bytes()[2..10].try_into().expect("8 bytes")),
            // A light follower serves no blocks: it keeps the pinset, not the DAG.
            keep_blocks: false,
            ..crdt::Config::default()
        };
        let replica = Replica::open(store, replica_config)
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let config = NodeConfig {
            local,
            peername: String::new(),
            role: NodeRole::Light,
            trust: settings.trust,
            allocator: AllocatorConfig::default(),
            periods: Periods::default(),
            informers: None,
            snapshots: SnapshotPolicy::NEVER,
            bootstrap_from_snapshot: true,
            max_connections: MAX_PEER_CONNECTIONS,
            dialable: reachable,
            repinning: false,
        };
        let now = now_nanos();
        let node = Node::new(config, replica, None, None, now)
            .await
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let mut follower = Self {
            swarm,
            node,
            gated: settings.secret.is_some(),
            topics,
            bootstrap: settings.bootstrap.clone(),
            sink,
            started: Some(started),
            start_failures: Vec::new(),
            refused: false,
            requests: HashMap::new(),
            replies: HashMap::new(),
        };
        for address in settings.bootstrap {
            follower.node.dial(address, now);
        }
        follower.apply_effects().await;
        Ok(follower)
    }

    pub fn local_peer_id(&self) -> PeerId {
        self.node.local()
    }

    /// Runs until the command channel closes (the page closed the follower), or until
    /// `start` failed. `connect_timeout` bounds the wait for the first connection.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, connect_timeout: Duration) {
        let mut tick = Delay::new(TICK);
        let mut start_deadline = Delay::new(connect_timeout).fuse();
        let mut turn = Fuse::terminated();
        let mut slice = Slice::default();
        loop {
            self.node.set_pin_events(self.sink.wants_pins());
            // Merge work (a snapshot chunk's part, a delta of a run) is done one turn at a
            // time, taking its chance with the other events; the slice yields to the
            // JavaScript event loop, so that the page and the network go on meanwhile. (A
            // timer per turn would cost more: browsers hold nested timers back 4 ms.)
            if self.node.has_work() && turn.is_terminated() {
                turn = future::ready(()).fuse();
            }
            let event = futures::select! {
                event = self.swarm.select_next_some() => Event::Swarm(event),
                command = commands.next() => match command {
                    Some(command) => Event::Command(command),
                    None => return,
                },
                _ = (&mut tick).fuse() => Event::Tick,
                _ = start_deadline => Event::StartDeadline,
                _ = turn => Event::Work,
            };
            slice.begin();
            match event {
                Event::Swarm(event) => self.on_swarm_event(event).await,
                Event::Command(command) => self.on_command(command).await,
                Event::Tick => {
                    tick.reset(TICK);
                    let result = self.node.tick(now_nanos()).await;
                    self.check(result);
                }
                Event::StartDeadline => self.fail_start(StartError::TimedOut(connect_timeout)),
                Event::Work => {
                    let result = self.node.work(now_nanos()).await;
                    self.check(result);
                }
            }
            self.apply_effects().await;
            if self.refused {
                return;
            }
            slice.end().await;
        }
    }

    /// Reports a failed store operation; the follower goes on with the next event.
    /// Reports a storage error to the page; the value when there was none.
    fn check<T>(&self, result: Result<T, ReplicaError<IdbError>>) -> Option<T> {
        result
            .map_err(|error| self.sink.error(Problem::Storage, &error.to_string()))
            .ok()
    }

    fn fail_start(&mut self, error: StartError) {
        if let Some(started) = self.started.take() {
            let _ = started.send(Err(error));
            self.refused = true;
        }
    }

    // ----- the node's effects -------------------------------------------------------------

    /// Carries out the node's effects until it has none left.
    async fn apply_effects(&mut self) {
        while let Some(effect) = self.node.poll_effect() {
            match effect {
                Effect::Publish { topic, data } => {
                    let topic = self.topics.topic(topic);
                    // With nobody subscribed yet, the next publication carries it.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .inner_mut()
                        .gossipsub
                        .publish(topic, data);
                }
                Effect::Bitswap(task) => {
                    let bitswap = &mut self.swarm.behaviour_mut().inner_mut().bitswap;
                    let refused = bitswap.carry_out(task);
                    let result = self.node.on_fetch_refused(refused, now_nanos()).await;
                    self.check(result);
                }
                Effect::Dial { peer, addresses } => self.dial(peer, addresses),
                Effect::AddressLearned { peer, address } => {
                    self.swarm.add_peer_address(peer, address);
                }
                Effect::Request { id, peer, request } => {
                    let sent = self
                        .swarm
                        .behaviour_mut()
                        .inner_mut()
                        .peer_requests
                        .send_request(&peer, request);
                    self.requests.insert(sent, id);
                }
                Effect::Gathered { id, gathered } => self.reply(id, gathered),
                Effect::Pinset(node::PinsetChange::Pinned { pin, .. }) => self.sink.pin(&pin),
                Effect::Pinset(node::PinsetChange::Unpinned(cid)) => self.sink.unpin(&cid),
                Effect::Peer { peer, joined } => self.sink.peer(&peer, joined),
                Effect::Sync(state) => self.sink.sync(&state),
                Effect::Problem { problem, message } => self.sink.error(problem.into(), &message),
                // A light node pins nothing, publishes no metrics and makes no snapshots.
                Effect::StartOperation(_)
                | Effect::CancelOperation(_)
                | Effect::Daemon(_)
                | Effect::Alert(_)
                | Effect::SnapshotMade(_) => {}
            }
        }
    }

    fn dial(&mut self, peer: Option<PeerId>, addresses: Vec<Multiaddr>) {
        let result = match peer {
            Some(peer) => self.swarm.dial(
                libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addresses)
                    .build(),
            ),
            None => match addresses.into_iter().next() {
                Some(address) => self.swarm.dial(address),
                None => return,
            },
        };
        if let Err(error) = result {
            self.on_dial_error(&error);
        }
    }

    fn reply(&mut self, id: GatheringId, gathered: Gathered) {
        match (self.replies.remove(&id), gathered) {
            (Some(Reply::Statuses { cids, reply }), Gathered::Statuses(infos)) => {
                let _ = reply.send(Ok(GlobalPinInfo::group(&cids, infos)));
            }
            (Some(Reply::Summaries { reply }), Gathered::Summaries(lines)) => {
                let summaries = lines
                    .into_iter()
                    .map(|line| {
                        let (summary, error) = match line.summary {
                            Ok(summary) => (Some(summary), None),
                            Err(error) => (None, Some(error)),
                        };
                        PeerSummary {
                            peer: line.peer.to_base58(),
                            peername: line.peername,
                            summary,
                            error,
                        }
                    })
                    .collect();
                let _ = reply.send(Ok(summaries));
            }
            _ => {}
        }
    }

    // ----- the network ----------------------------------------------------------------

    async fn on_swarm_event(&mut self, event: SwarmEvent<GatedEvent>) {
        let now = now_nanos();
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
                peer_id,
                num_established: 0,
                ..
            } => self.node.on_disconnected(peer_id, now),
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
        if let Some(started) = self.started.take() {
            let _ = started.send(Ok(()));
        }
        self.node.on_connected(peer, now_nanos());
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
        let now = now_nanos();
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => {
                let verdict = match self.topics.sort(&message) {
                    Some((author, topic)) => {
                        let result = self.node.on_gossip(topic, author, message.data, now).await;
                        self.check(result).unwrap_or(GossipVerdict::Reject)
                    }
                    None => GossipVerdict::Reject,
                };
                let gossipsub = &mut self.swarm.behaviour_mut().inner_mut().gossipsub;
                pubsub::report_verdict(gossipsub, &message_id, &propagation_source, verdict);
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.node.on_identified(peer_id, info.listen_addrs, now);
            }
            BehaviourEvent::Bitswap(bitswap::Event::Block { cid, data, .. }) => {
                let result = self.node.on_block(cid, data, now).await;
                self.check(result);
            }
            BehaviourEvent::Bitswap(bitswap::Event::Unavailable { cid }) => {
                let result = self.node.on_block_unavailable(cid, now).await;
                self.check(result);
            }
            BehaviourEvent::Bitswap(bitswap::Event::Wanted { peer, wants }) => {
                let result = self.node.on_wanted(peer, wants).await;
                self.check(result);
            }
            BehaviourEvent::PeerRequests(event) => self.on_peer_request(event).await,
            _ => {}
        }
    }

    async fn on_peer_request(&mut self, event: peer_request::Event) {
        let now = now_nanos();
        let (request, answer) = match handling(event) {
            Handling::Asked { request, channel } => {
                let response = match self.node.on_request(request).await {
                    Ok(Answer::Now(response)) => response,
                    Ok(Answer::FromDaemon(_)) => {
                        PeerResponse::Error("a light follower has no IPFS daemon".into())
                    }
                    Err(error) => PeerResponse::Error(error.to_string()),
                };
                let requests = &mut self.swarm.behaviour_mut().inner_mut().peer_requests;
                let _ = requests.send_response(channel, response);
                return;
            }
            Handling::Answered { id, answer } => (id, answer),
            Handling::Nothing => return,
        };
        if let Some(id) = self.requests.remove(&request) {
            let result = self.node.on_response(id, answer, now).await;
            self.check(result);
        }
    }

    // ----- commands -------------------------------------------------------------------

    async fn on_command(&mut self, command: Command) {
        let now = now_nanos();
        match command {
            Command::Pins {
                after,
                limit,
                reply,
            } => {
                let pins = self.node.pins(after.as_ref(), limit.min(MAX_PAGE)).await;
                let _ = reply.send(pins.map_err(|e| e.to_string()));
            }
            Command::Get { cid, reply } => {
                let pin = self.node.pin(&cid).await;
                let _ = reply.send(pin.map_err(|e| e.to_string()));
            }
            Command::Statuses { cids, reply } => {
                let question = Question::Statuses {
                    cids: cids.clone(),
                    recover: false,
                };
                let id = self.node.ask_peers(question, None, now);
                self.replies.insert(id, Reply::Statuses { cids, reply });
            }
            Command::Summaries { reply } => {
                let id = self.node.ask_peers(Question::Summaries, None, now);
                self.replies.insert(id, Reply::Summaries { reply });
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers());
            }
            Command::Metrics { name, reply } => {
                let _ = reply.send(self.node.monitor().latest_metrics(&name, now));
            }
            Command::MetricNames { reply } => {
                let names = self.node.monitor().metric_names().map(str::to_owned);
                let _ = reply.send(names.collect());
            }
            Command::SyncState { reply } => {
                let _ = reply.send(self.node.sync_state());
            }
        }
    }

    fn peers(&self) -> Vec<PeerView> {
        let alive = self.node.peerset(now_nanos());
        let local = self.node.local();
        self.node
            .pings()
            .into_iter()
            .filter(|(ping, _)| ping.peer != local)
            .map(|(ping, info)| PeerView {
                id: ping.peer.to_base58(),
                name: info.peer_name,
                addresses: info.cluster_addresses,
                ipfs_id: info.ipfs_id,
                alive: alive.contains(&ping.peer),
                connected: self.swarm.is_connected(&ping.peer),
                trusted: self.node.config().trust.trusts(&ping.peer),
                role: info.role,
                last_seen: (ping.received_at / 1_000_000).max(0) as u64,
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
