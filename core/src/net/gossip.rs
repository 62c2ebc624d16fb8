//! Gossipsub that keeps a Go peer's view of its subscriptions when there is more than one
//! connection to that peer (both peers dialled at once, after mDNS discovery for example).
//!
//! go-libp2p-pubsub keeps one inbound stream per peer. A second stream replaces the
//! first, and Go then forgets the topics the peer had announced on it. Go forgets them
//! too when its own stream to the peer dies while a connection remains. rust-libp2p's
//! gossipsub announces a peer's subscriptions once, on its first connection, and opens
//! a stream on every connection that finds a message waiting. Two connections to a Go
//! peer therefore end with Go sending nothing to this peer, since Go no longer knows
//! that it subscribes. Each new stream also resets the other side's last one, until the
//! handlers give up.
//!
//! [`Gossip`] wraps the behaviour and changes two things:
//! - only the oldest connection to a peer opens streams to it; the other connections
//!   still accept the peer's streams, and the next oldest takes over when it closes;
//! - when a stream to or from a peer is opened after the first one in that direction,
//!   the subscriptions are announced again to the peer.
//!
//! Between rust-libp2p peers both are harmless: an announcement of a known subscription
//! changes nothing.

use std::collections::{HashMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p_core::transport::PortUse;
use libp2p_core::{ConnectedPoint, Endpoint, Multiaddr};
use libp2p_gossipsub as gossipsub;
use libp2p_identity::PeerId;
use libp2p_swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p_swarm::handler::ConnectionEvent;
use libp2p_swarm::{
    AddressChange, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};

type InnerHandler = THandler<gossipsub::Behaviour>;
type InboundProtocol = <InnerHandler as ConnectionHandler>::InboundProtocol;
type OutboundProtocol = <InnerHandler as ConnectionHandler>::OutboundProtocol;
type InboundOpenInfo = <InnerHandler as ConnectionHandler>::InboundOpenInfo;
type OutboundOpenInfo = <InnerHandler as ConnectionHandler>::OutboundOpenInfo;

/// Gossipsub whose streams to a peer all run on one connection, and which announces its
/// subscriptions again on every new stream with a peer (see the module docs). It
/// dereferences to the wrapped [`gossipsub::Behaviour`], which is used as usual.
pub struct Gossip {
    inner: gossipsub::Behaviour,
    peers: HashMap<PeerId, Links>,
    events: VecDeque<ToSwarm<gossipsub::Event, THandlerInEvent<Self>>>,
}

/// This peer's connections to one remote peer and the gossipsub streams seen on them.
#[derive(Default)]
struct Links {
    /// Established connections, oldest first: the first one opens the streams.
    connections: Vec<(ConnectionId, ConnectedPoint)>,
    /// A stream from the peer has been opened before.
    inbound_seen: bool,
    /// A stream to the peer has been opened before.
    outbound_seen: bool,
}

impl Gossip {
    pub fn new(inner: gossipsub::Behaviour) -> Self {
        Self {
            inner,
            peers: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// Records a connection; the first one to the peer is told to open the streams.
    fn on_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let links = self.peers.entry(peer).or_default();
        links.connections.push((connection, endpoint.clone()));
        if links.connections.len() == 1 {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: Command::Send,
            });
        }
    }

    /// Forgets a connection; when it was the one opening streams, the next oldest takes over.
    fn on_closed(&mut self, peer: PeerId, connection: ConnectionId) {
        let Some(links) = self.peers.get_mut(&peer) else {
            return;
        };
        let was_sender = links.connections.first().map(|(id, _)| *id) == Some(connection);
        links.connections.retain(|(id, _)| *id != connection);
        match links.connections.first() {
            None => {
                self.peers.remove(&peer);
            }
            Some((next, _)) if was_sender => self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*next),
                event: Command::Send,
            }),
            Some(_) => {}
        }
    }

    /// A stream with `peer` was opened on `connection`: announces the subscriptions again
    /// unless it is the first in its direction.
    fn on_stream_opened(&mut self, peer: PeerId, connection: ConnectionId, direction: Endpoint) {
        let Some(links) = self.peers.get_mut(&peer) else {
            return;
        };
        let seen = match direction {
            Endpoint::Dialer => &mut links.outbound_seen,
            Endpoint::Listener => &mut links.inbound_seen,
        };
        if !std::mem::replace(seen, true) {
            return;
        }
        let Some((_, endpoint)) = links.connections.iter().find(|(id, _)| *id == connection) else {
            return;
        };
        // gossipsub announces its subscriptions to a peer when that peer's first connection
        // is established, and only then; it has no other way to send them to one peer. For
        // a peer it already knows, this event does nothing else (no peer scoring is set).
        tracing::debug!(%peer, "a new gossipsub stream: announcing the subscriptions again");
        self.inner
            .on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: connection,
                endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
    }
}

impl Deref for Gossip {
    type Target = gossipsub::Behaviour;

    fn deref(&self) -> &gossipsub::Behaviour {
        &self.inner
    }
}

impl DerefMut for Gossip {
    fn deref_mut(&mut self) -> &mut gossipsub::Behaviour {
        &mut self.inner
    }
}

impl NetworkBehaviour for Gossip {
    type ConnectionHandler = Handler;
    type ToSwarm = gossipsub::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<Handler, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection, peer, local_addr, remote_addr)
            .map(Handler::new)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(connection, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<Handler, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(connection, peer, addr, role, port_use)
            .map(Handler::new)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        self.inner.on_swarm_event(event);
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => self.on_established(peer_id, connection_id, endpoint),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => self.on_closed(peer_id, connection_id),
            FromSwarm::AddressChange(AddressChange {
                peer_id,
                connection_id,
                new,
                ..
            }) => {
                let links = self.peers.get_mut(&peer_id);
                if let Some((_, endpoint)) = links.and_then(|l| {
                    l.connections
                        .iter_mut()
                        .find(|(id, _)| *id == connection_id)
                }) {
                    *endpoint = new.clone();
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Event::Inner(event) => self
                .inner
                .on_connection_handler_event(peer, connection, event),
            Event::StreamOpened(direction) => self.on_stream_opened(peer, connection, direction),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<gossipsub::Event, THandlerInEvent<Self>>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        self.inner
            .poll(cx)
            .map(|event| event.map_in(Command::Inner))
    }
}

/// What [`Gossip`] tells a connection's handler.
#[derive(Debug)]
pub enum Command {
    /// This connection now opens the streams to the peer.
    Send,
    /// gossipsub's command for its handler.
    Inner(THandlerInEvent<gossipsub::Behaviour>),
}

/// What a connection's handler tells [`Gossip`].
// Unboxed, as gossipsub passes its own events: every RPC received is one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// gossipsub's handler's event.
    Inner(THandlerOutEvent<gossipsub::Behaviour>),
    /// A gossipsub stream was opened by this peer (`Dialer`) or by the remote (`Listener`).
    StreamOpened(Endpoint),
}

/// gossipsub's handler, whose requests for streams wait until its connection is the one
/// that opens them ([`Command::Send`]).
pub struct Handler {
    inner: InnerHandler,
    sends: bool,
    held: Option<SubstreamProtocol<OutboundProtocol, OutboundOpenInfo>>,
    opened: VecDeque<Endpoint>,
}

impl Handler {
    fn new(inner: InnerHandler) -> Self {
        Self {
            inner,
            sends: false,
            held: None,
            opened: VecDeque::new(),
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Command;
    type ToBehaviour = Event;
    type InboundProtocol = InboundProtocol;
    type OutboundProtocol = OutboundProtocol;
    type InboundOpenInfo = InboundOpenInfo;
    type OutboundOpenInfo = OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<InboundProtocol, InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn on_behaviour_event(&mut self, command: Command) {
        match command {
            Command::Send => self.sends = true,
            Command::Inner(command) => self.inner.on_behaviour_event(command),
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            '_,
            InboundProtocol,
            OutboundProtocol,
            InboundOpenInfo,
            OutboundOpenInfo,
        >,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(_) => self.opened.push_back(Endpoint::Listener),
            ConnectionEvent::FullyNegotiatedOutbound(_) => self.opened.push_back(Endpoint::Dialer),
            _ => {}
        }
        self.inner.on_connection_event(event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<OutboundProtocol, OutboundOpenInfo, Event>> {
        // The connection polls its handler again after every event and command it
        // delivers, so neither needs a waker.
        if let Some(direction) = self.opened.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(
                Event::StreamOpened(direction),
            ));
        }
        if self.sends {
            if let Some(protocol) = self.held.take() {
                return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { protocol });
            }
        }
        loop {
            match self.inner.poll(cx) {
                // gossipsub asks for no other stream while this request is pending.
                Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { protocol })
                    if !self.sends =>
                {
                    self.held = Some(protocol)
                }
                Poll::Ready(event) => return Poll::Ready(event.map_custom(Event::Inner)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.inner
            .poll_close(cx)
            .map(|event| event.map(Event::Inner))
    }
}
