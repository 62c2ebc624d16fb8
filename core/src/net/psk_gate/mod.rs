//! The secret gate: connections that pnet cannot wrap (WebRTC) must prove
//! the cluster secret with `/pinfold/psk-auth/1.0.0` (see [`crate::codec::psk_auth`])
//! before the protocols of the wrapped behaviour run on them.
//!
//! Until the proof, the wrapped behaviour's handler on that connection is never polled: it
//! opens no stream and sends nothing, and the streams the remote opens wait unread. A
//! connection that fails the proof, or has not given it within the timeout, is closed.
//! Connections the gate does not cover run the wrapped handler from the start.

mod auth;
mod held;

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use either::Either;
use libp2p_core::multiaddr::Protocol;
use libp2p_core::transport::PortUse;
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::handler::ConnectionHandlerSelect;
use libp2p_swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use rand_core::CryptoRngCore;

use crate::codec::psk_auth::Nonce;
use crate::codec::secret::ClusterSecret;
use auth::{AuthHandler, Parties, Verdict};
pub use held::MAX_HELD_STREAMS;
use held::{Command, Held};

/// Why a connection was closed by the gate. Every message ends with the likely cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the peer's answer does not match: wrong cluster secret?")]
    WrongSecret,
    #[error("the peer does not speak /pinfold/psk-auth/1.0.0: not a pinfold peer, or wrong cluster secret?")]
    NotPinfold,
    #[error("no proof of the cluster secret within {0:?}: wrong cluster secret?")]
    TimedOut(Duration),
    #[error("the secret proof failed ({0}): wrong cluster secret?")]
    Stream(String),
}

/// Which connections must prove the secret, by their addresses.
pub type Coverage = fn(&Multiaddr) -> bool;

/// Connections over WebRTC (direct or browser to browser): the transports pnet cannot
/// wrap. Relayed circuits are not among them: they run inside pnet end to end (see
/// [`crate::net::secure`]). A WebRTC connection set up through a relay is WebRTC.
pub fn outside_pnet(address: &Multiaddr) -> bool {
    address
        .iter()
        .any(|p| matches!(p, Protocol::WebRTC | Protocol::WebRTCDirect))
}

/// How the gate works.
#[derive(Clone, Debug)]
pub struct Config {
    /// The secret connections must prove; `None` (an open swarm) gates nothing.
    pub secret: Option<ClusterSecret>,
    /// Time a covered connection has to give its proof.
    pub timeout: Duration,
    /// The connections that must prove the secret.
    pub covers: Coverage,
}

impl Config {
    /// Gates the connections outside pnet, with a 5 s timeout.
    pub fn new(secret: Option<ClusterSecret>) -> Self {
        Self {
            secret,
            timeout: Duration::from_secs(5),
            covers: outside_pnet,
        }
    }
}

/// What the gate reports, besides the wrapped behaviour's events.
#[derive(Debug)]
pub enum Event<E> {
    /// The wrapped behaviour's event.
    Inner(E),
    /// The connection proved the secret; the wrapped protocols now run on it.
    Proven {
        peer: PeerId,
        connection: ConnectionId,
    },
    /// The connection failed the proof and is being closed.
    Rejected {
        peer: PeerId,
        connection: ConnectionId,
        reason: Rejection,
    },
}

/// Wraps the behaviour whose protocols carry cluster data.
pub struct PskGate<B: NetworkBehaviour> {
    inner: B,
    config: Config,
    local: PeerId,
    rng: Box<dyn CryptoRngCore + Send>,
    events: VecDeque<ToSwarm<Event<B::ToSwarm>, THandlerInEvent<Self>>>,
}

impl<B: NetworkBehaviour> PskGate<B> {
    /// `rng` draws the challenge nonces.
    pub fn new(
        local: PeerId,
        config: Config,
        inner: B,
        rng: Box<dyn CryptoRngCore + Send>,
    ) -> Self {
        Self {
            inner,
            config,
            local,
            rng,
            events: VecDeque::new(),
        }
    }

    pub fn inner(&self) -> &B {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    fn handler(
        &mut self,
        peer: PeerId,
        role: Endpoint,
        covered: bool,
        inner: THandler<B>,
    ) -> THandler<Self> {
        // Without a secret (an open swarm) nothing is proven; the handler then never runs
        // the protocol, so the key it holds is never used.
        let (secret, deadline) = match &self.config.secret {
            Some(secret) if covered => (secret.clone(), Some(self.config.timeout)),
            Some(secret) => (secret.clone(), None),
            None => (ClusterSecret::from_bytes([0; 32]), None),
        };
        let mut nonce = Nonce::default();
        if deadline.is_some() {
            self.rng.fill_bytes(&mut nonce);
        }
        let parties = Parties {
            secret,
            local: self.local,
            remote: peer,
            nonce,
        };
        AuthHandler::new(parties, role, deadline).select(Held::new(inner, deadline.is_none()))
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for PskGate<B> {
    type ConnectionHandler = ConnectionHandlerSelect<AuthHandler, Held<THandler<B>>>;
    type ToSwarm = Event<B::ToSwarm>;

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
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_inbound_connection(
            connection,
            peer,
            local_addr,
            remote_addr,
        )?;
        let covered = (self.config.covers)(local_addr) || (self.config.covers)(remote_addr);
        Ok(self.handler(peer, Endpoint::Listener, covered, inner))
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
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_outbound_connection(connection, peer, addr, role, port_use)?;
        let covered = (self.config.covers)(addr);
        Ok(self.handler(peer, role, covered, inner))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(Verdict::Proven) => {
                self.events.push_back(ToSwarm::NotifyHandler {
                    peer_id: peer,
                    handler: NotifyHandler::One(connection),
                    event: Either::Right(Command::Release),
                });
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::Proven { peer, connection }));
            }
            Either::Left(Verdict::Rejected(reason)) => {
                self.events.push_back(ToSwarm::CloseConnection {
                    peer_id: peer,
                    connection: CloseConnection::One(connection),
                });
                self.events
                    .push_back(ToSwarm::GenerateEvent(Event::Rejected {
                        peer,
                        connection,
                        reason,
                    }));
            }
            Either::Right(event) => self
                .inner
                .on_connection_handler_event(peer, connection, event),
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        self.inner.poll(cx).map(|event| {
            event
                .map_in(|command| Either::Right(Command::Inner(command)))
                .map_out(Event::Inner)
        })
    }
}
