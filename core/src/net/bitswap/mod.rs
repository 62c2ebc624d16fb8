//! A compact bitswap 1.2.0: enough of boxo's protocol to fetch and serve CRDT delta blocks
//! with Go ipfs-cluster peers and between pinfold peers, natively and in the browser.
//!
//! The behaviour keeps the local wantlist and tells the caller what peers send; it holds no
//! blocks. [`Bitswap::want`] asks every connected bitswap peer for a block (want-block with
//! send-dont-have); the block arrives as [`Event::Block`], or [`Event::Unavailable`] once
//! every asked peer said it does not have it. Peers' wants arrive as [`Event::Wanted`], and
//! the caller answers with [`Bitswap::respond`]. Wants are re-sent to peers that connect
//! later, and the caller may call `want` again to re-ask (after its own timeout).

mod handler;

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};

use cid::Cid;
use libp2p_core::transport::PortUse;
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p_swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use handler::{Command, Report};
pub use handler::{Handler, MAX_INBOUND_STREAMS};

use crate::codec::bitswap::{
    BitswapMessage, Presence, WantEntry, WantType, Wantlist, MAX_MESSAGE_BYTES,
};
use crate::crdt::{BlockId, Store};

/// What a node asks of bitswap ([`crate::node::Effect::Bitswap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// Ask the bitswap peers for these blocks.
    Fetch(Vec<Cid>),
    /// Answer `peer`'s wants with these blocks and presences.
    Answer {
        peer: PeerId,
        blocks: Vec<(Cid, Vec<u8>)>,
        presences: Vec<(Cid, Presence)>,
    },
}

/// Limits of a [`Bitswap`] behaviour.
#[derive(Clone, Debug)]
pub struct Config {
    /// Blocks wanted at once; further wants are refused until some resolve.
    pub max_wants: usize,
    /// Bytes of messages queued or being written per connection before new ones are
    /// dropped. Bounded in bytes, not messages: a burst of small wants or answers (one per
    /// head broadcast) must not be dropped while a few large answers would still fit.
    pub max_queued_bytes: usize,
    /// Wants read from one incoming message; the rest are ignored.
    pub max_wants_per_message: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_wants: 16 * 1024,
            max_queued_bytes: 64 * 1024 * 1024,
            max_wants_per_message: 4096,
        }
    }
}

/// What the behaviour reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A wanted block arrived; its bytes hash to `cid` (the codec computes the CID from
    /// them). The want is withdrawn from the other peers.
    Block {
        peer: PeerId,
        cid: Cid,
        data: Vec<u8>,
    },
    /// Every peer asked said it does not have the block (or speaks no bitswap); the want
    /// is dropped.
    Unavailable { cid: Cid },
    /// A peer asks for these blocks; answer with [`Bitswap::respond`].
    Wanted { peer: PeerId, wants: Vec<WantEntry> },
}

/// Counters of what the behaviour saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub blocks_received: u64,
    pub unsolicited_blocks: u64,
    pub wants_received: u64,
    pub malformed_messages: u64,
    pub dropped_messages: u64,
    pub refused_wants: u64,
    /// Inbound streams refused because a connection had its most open.
    pub refused_streams: u64,
}

/// Why a want was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} blocks are already wanted, the most this peer asks for at once; wait for some to arrive")]
pub struct TooManyWants {
    pub wanted: usize,
}

#[derive(Default)]
struct Want {
    asked: HashSet<PeerId>,
    dont_have: HashSet<PeerId>,
}

#[derive(Default)]
struct PeerState {
    connections: Vec<ConnectionId>,
    /// The peer refused the bitswap protocol.
    unsupported: bool,
}

/// What a peer that keeps `store`'s blocks answers to `wants`: the blocks wanted whole,
/// presences for have-wants, and don't-haves where the wanter asked for them.
pub async fn answer_from<S: Store>(
    store: &S,
    wants: Vec<WantEntry>,
) -> Result<(Vec<(Cid, Vec<u8>)>, Vec<(Cid, Presence)>), S::Error> {
    let mut blocks = Vec::new();
    let mut presences = Vec::new();
    for want in wants {
        let stored = match BlockId::from_cid(&want.cid) {
            Ok(id) => store.block(&id).await?,
            Err(_) => None,
        };
        match (stored, want.want_type) {
            (Some(bytes), WantType::Block) => blocks.push((want.cid, bytes)),
            (Some(_), WantType::Have) => presences.push((want.cid, Presence::Have)),
            (None, _) if want.send_dont_have => presences.push((want.cid, Presence::DontHave)),
            (None, _) => {}
        }
    }
    Ok((blocks, presences))
}

/// The bitswap network behaviour.
pub struct Bitswap {
    config: Config,
    wants: HashMap<Cid, Want>,
    peers: HashMap<PeerId, PeerState>,
    actions: VecDeque<ToSwarm<Event, Command>>,
    stats: Stats,
}

impl Bitswap {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            wants: HashMap::new(),
            peers: HashMap::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Blocks wanted and not yet received.
    pub fn wanted(&self) -> usize {
        self.wants.len()
    }

    /// Asks every connected bitswap peer for `cid`. Wanting a CID again re-asks them all.
    pub fn want(&mut self, cid: Cid) -> Result<(), TooManyWants> {
        match self.want_all(&[cid]).as_slice() {
            [] => Ok(()),
            _ => Err(TooManyWants {
                wanted: self.wants.len(),
            }),
        }
    }

    /// Asks every connected bitswap peer for all of `cids` in one message each, so that a
    /// peer answers with as few messages as the blocks fill; returns the CIDs refused
    /// because the wantlist is full. Wanting a CID again re-asks them all.
    pub fn want_all(&mut self, cids: &[Cid]) -> Vec<Cid> {
        let peers: Vec<PeerId> = self.bitswap_peers().collect();
        let mut accepted = Vec::with_capacity(cids.len());
        let mut refused = Vec::new();
        for cid in cids {
            if !self.wants.contains_key(cid) && self.wants.len() >= self.config.max_wants {
                self.stats.refused_wants += 1;
                refused.push(*cid);
                continue;
            }
            let want = self.wants.entry(*cid).or_default();
            want.dont_have.clear();
            want.asked = peers.iter().copied().collect();
            accepted.push(*cid);
        }
        for batch in accepted.chunks(self.config.max_wants_per_message) {
            let message = wants_message(batch, false, false);
            for peer in &peers {
                self.send(*peer, &message);
            }
        }
        for cid in accepted {
            self.resolve_if_unavailable(cid);
        }
        refused
    }

    /// Withdraws wants: each peer asked for any of `cids` gets one message of cancels
    /// (per [`Config::max_wants_per_message`]), not one per CID.
    pub fn cancel_all(&mut self, cids: &[Cid]) {
        let mut cancels: HashMap<PeerId, Vec<Cid>> = HashMap::new();
        for cid in cids {
            if let Some(want) = self.wants.remove(cid) {
                for peer in want.asked {
                    cancels.entry(peer).or_default().push(*cid);
                }
            }
        }
        self.send_cancels(cancels);
    }

    fn send_cancels(&mut self, cancels: HashMap<PeerId, Vec<Cid>>) {
        for (peer, cids) in cancels {
            for chunk in cids.chunks(self.config.max_wants_per_message) {
                self.send(peer, &wants_message(chunk, true, false));
            }
        }
    }

    /// Carries out a node's `task`; returns the blocks of a fetch that could not be asked
    /// for (the wantlist is full), which go back to the node.
    pub fn carry_out(&mut self, task: Task) -> Vec<Cid> {
        match task {
            Task::Fetch(cids) => self.want_all(&cids),
            Task::Answer {
                peer,
                blocks,
                presences,
            } => {
                self.respond(peer, blocks, presences);
                Vec::new()
            }
        }
    }

    /// Answers a peer's wants: blocks, and presences for have-wants and misses. Large
    /// answers are split into messages under the size limit.
    pub fn respond(
        &mut self,
        peer: PeerId,
        blocks: Vec<(Cid, Vec<u8>)>,
        presences: Vec<(Cid, Presence)>,
    ) {
        let mut message = BitswapMessage {
            presences,
            ..Default::default()
        };
        let mut size = 64 + message.presences.len() * 48;
        for (cid, data) in blocks {
            let block_size = data.len() + 64;
            if size + block_size > MAX_MESSAGE_BYTES && !message.blocks.is_empty() {
                self.send(peer, &std::mem::take(&mut message).encode());
                size = 64;
            }
            size += block_size;
            message.blocks.push((cid, data));
        }
        if !message.blocks.is_empty() || !message.presences.is_empty() {
            self.send(peer, &message.encode());
        }
    }

    fn bitswap_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers
            .iter()
            .filter(|(_, state)| !state.unsupported && !state.connections.is_empty())
            .map(|(peer, _)| *peer)
    }

    fn send(&mut self, peer: PeerId, message: &[u8]) {
        let Some(connection) = self
            .peers
            .get(&peer)
            .and_then(|state| state.connections.first())
        else {
            return;
        };
        self.actions.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(*connection),
            event: Command::Send(message.to_vec()),
        });
    }

    /// Drops a want once no asked peer may still have the block.
    fn resolve_if_unavailable(&mut self, cid: Cid) {
        let Some(want) = self.wants.get(&cid) else {
            return;
        };
        let peers = &self.peers;
        let open = want.asked.iter().any(|peer| {
            !want.dont_have.contains(peer)
                && peers
                    .get(peer)
                    .is_some_and(|s| !s.unsupported && !s.connections.is_empty())
        });
        if !open && !want.asked.is_empty() {
            self.wants.remove(&cid);
            self.actions
                .push_back(ToSwarm::GenerateEvent(Event::Unavailable { cid }));
        }
    }

    /// A peer is gone or refused bitswap: the wants it held may now be unavailable.
    fn peer_lost(&mut self, peer: &PeerId) {
        let affected: Vec<Cid> = self
            .wants
            .iter()
            .filter(|(_, want)| want.asked.contains(peer))
            .map(|(cid, _)| *cid)
            .collect();
        for cid in affected {
            self.resolve_if_unavailable(cid);
        }
    }

    fn on_message(&mut self, peer: PeerId, message: BitswapMessage) {
        // The other peers asked for a block that came are told in one message each.
        let mut cancels: HashMap<PeerId, Vec<Cid>> = HashMap::new();
        for (cid, data) in message.blocks {
            match self.wants.remove(&cid) {
                Some(want) => {
                    self.stats.blocks_received += 1;
                    for other in want.asked.into_iter().filter(|p| *p != peer) {
                        cancels.entry(other).or_default().push(cid);
                    }
                    self.actions.push_back(ToSwarm::GenerateEvent(Event::Block {
                        peer,
                        cid,
                        data,
                    }));
                }
                None => self.stats.unsolicited_blocks += 1,
            }
        }
        self.send_cancels(cancels);
        for (cid, presence) in message.presences {
            if presence == Presence::DontHave {
                if let Some(want) = self.wants.get_mut(&cid) {
                    want.dont_have.insert(peer);
                    self.resolve_if_unavailable(cid);
                }
            }
        }
        if let Some(wantlist) = message.wantlist {
            let wants: Vec<WantEntry> = wantlist
                .entries
                .into_iter()
                .filter(|entry| !entry.cancel)
                .take(self.config.max_wants_per_message)
                .collect();
            if !wants.is_empty() {
                self.stats.wants_received += wants.len() as u64;
                self.actions
                    .push_back(ToSwarm::GenerateEvent(Event::Wanted { peer, wants }));
            }
        }
    }

    fn connected(&mut self, peer: PeerId, connection: ConnectionId) {
        let state = self.peers.entry(peer).or_default();
        let first = state.connections.is_empty();
        state.connections.push(connection);
        if !first || state.unsupported {
            return;
        }
        let cids: Vec<Cid> = self.wants.keys().copied().collect();
        for want in self.wants.values_mut() {
            want.asked.insert(peer);
        }
        if !cids.is_empty() {
            for chunk in cids.chunks(self.config.max_wants_per_message) {
                self.send(peer, &wants_message(chunk, false, false));
            }
        }
    }
}

/// A wantlist message: want-block with send-dont-have, or cancels.
fn wants_message(cids: &[Cid], cancel: bool, full: bool) -> Vec<u8> {
    BitswapMessage {
        wantlist: Some(Wantlist {
            entries: cids
                .iter()
                .map(|cid| WantEntry {
                    cid: *cid,
                    priority: 1,
                    cancel,
                    want_type: WantType::Block,
                    send_dont_have: !cancel,
                })
                .collect(),
            full,
        }),
        ..Default::default()
    }
    .encode()
}

impl NetworkBehaviour for Bitswap {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.config.max_queued_bytes))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.config.max_queued_bytes))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => self.connected(peer_id, connection_id),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.retain(|c| *c != connection_id);
                    if state.connections.is_empty() {
                        self.peers.remove(&peer_id);
                        self.peer_lost(&peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        report: THandlerOutEvent<Self>,
    ) {
        match report {
            Report::Received(message) => self.on_message(peer, message),
            Report::Malformed(_) => self.stats.malformed_messages += 1,
            Report::Dropped(count) => self.stats.dropped_messages += count as u64,
            Report::RefusedStream => self.stats.refused_streams += 1,
            Report::Unsupported => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.unsupported = true;
                }
                self.peer_lost(&peer);
            }
        }
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        match self.actions.pop_front() {
            Some(action) => Poll::Ready(action),
            None => Poll::Pending,
        }
    }
}
