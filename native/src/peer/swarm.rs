//! The native peer's libp2p swarm: TCP and WebSocket listeners and relayed circuits inside
//! the cluster's private network (pnet, wire compatible with go-libp2p), Noise and yamux; a
//! webrtc-direct listener for browsers, where pnet cannot apply, behind the secret gate;
//! identify, ping, gossipsub with strict signing and ipfs-cluster's message id, bitswap,
//! the peer requests, Go ipfs-cluster's RPC streams, Go's DHT tables (answering lookups
//! only, see [`super::dht`]), a bounded circuit relay v2 server and a relay client (listen
//! addresses ending in `/p2p-circuit` take a reservation on that relay), and connection
//! limits.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::timeout::TransportTimeout;
use libp2p::core::transport::{Boxed, OrTransport};
use libp2p::futures::future::Either;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{connection_limits, identify, noise, ping, relay, tcp, websocket, Swarm, Transport};
use libp2p_webrtc::tokio::Certificate;
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::bitswap::{self, Bitswap};
use pinfold_core::net::gossip::Gossip;
use pinfold_core::net::peer_request;
use pinfold_core::net::psk_gate::{self, PskGate};
use pinfold_core::net::pubsub::{self, IDENTIFY_PROTOCOL_VERSION};
use pinfold_core::net::raft;
use pinfold_core::net::secure::{secure, Muxed};

use super::dht::{dht, Dht, LAN_PROTOCOL, WAN_PROTOCOL};

/// The message a dialer shows when the handshake fails the way a wrong secret makes it.
pub const WRONG_SECRET: &str =
    "could not connect: wrong cluster secret or not a pinfold/ipfs-cluster peer";

/// Settings the swarm is built from.
#[derive(Clone, Debug)]
pub struct SwarmSettings {
    /// The cluster secret: the private network key on TCP and WebSocket, and what WebRTC
    /// connections must prove; `None` runs an unprotected swarm.
    pub secret: Option<ClusterSecret>,
    /// The webrtc-direct certificate (its hash is part of the listen address, so keep it
    /// across restarts); `None` leaves WebRTC out.
    pub webrtc: Option<Certificate>,
    /// Bound on dialing and upgrading a connection.
    pub dial_timeout: Duration,
    pub max_connections: u32,
    /// Relay limits; `None` disables the relay server.
    pub relay: Option<RelayLimits>,
    /// Where every connection's streams are counted by protocol; `None` counts nothing.
    pub bandwidth: Option<std::sync::Arc<super::bandwidth::Bandwidth>>,
    /// Whether the peer speaks Raft (it runs Raft consensus).
    pub raft: bool,
}

/// What the circuit relay v2 server allows. Every client is a member of the private
/// network, so there is no rate limit per peer or address, as public relays have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    pub max_reservations: usize,
    pub max_circuits: usize,
    /// A circuit is closed after this long (the client may open another).
    pub max_circuit_duration: Duration,
    /// A circuit is closed after carrying this many bytes; 0 for no limit.
    pub max_circuit_bytes: u64,
}

/// The behaviours of a native peer: all of them behind the secret gate, so that a WebRTC
/// connection runs none of them before it proves the secret.
pub type Gated = PskGate<Behaviour>;

/// What the swarm reports.
pub type GatedEvent = psk_gate::Event<BehaviourEvent>;

/// The behaviours that carry cluster data or reveal the peer.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: Gossip,
    pub bitswap: Bitswap,
    pub peer_requests: peer_request::Behaviour,
    pub repo_gc: peer_request::Behaviour,
    /// Go ipfs-cluster's RPC streams ([`super::gorpc`]).
    pub gorpc: libp2p_stream::Behaviour,
    /// Go's dual DHT, its two tables ([`super::dht`]).
    pub dht_wan: Dht,
    pub dht_lan: Dht,
    pub relay: Toggle<relay::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    /// Raft consensus messages ([`super::raft`]), on peers under Raft.
    pub raft: Toggle<raft::Behaviour>,
}

/// TCP, WebSocket-over-TCP and relayed circuits, each inside pnet when there is a secret,
/// then Noise and yamux; and webrtc-direct (DTLS, then Noise inside) when it has a
/// certificate.
pub fn transport(
    key: &Keypair,
    settings: &SwarmSettings,
    circuits: relay::client::Transport,
) -> std::io::Result<Boxed<Muxed>> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    let tcp_config = || tcp::Config::default().nodelay(true);
    let secret = settings.secret.as_ref();
    let timeout = settings.dial_timeout;
    let ws = websocket::Config::new(tcp::tokio::Transport::new(tcp_config()));
    let tcp = tcp::tokio::Transport::new(tcp_config());
    // One upgrade for every stream transport.
    let streams =
        OrTransport::new(OrTransport::new(ws, tcp), circuits).map_err(|error| match error {
            either::Either::Left(either::Either::Left(error)) => std::io::Error::other(error),
            either::Either::Left(either::Either::Right(error)) => error,
            either::Either::Right(error) => std::io::Error::other(error),
        });
    let streams = counted(secure(streams, secret, noise, timeout), settings);
    let Some(certificate) = settings.webrtc.clone() else {
        return Ok(streams);
    };
    let webrtc = TransportTimeout::new(
        libp2p_webrtc::tokio::Transport::new(key.clone(), certificate)
            .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection))),
        settings.dial_timeout,
    );
    let webrtc = counted(webrtc.boxed(), settings);
    Ok(OrTransport::new(streams, webrtc)
        .map(|either, _| match either {
            Either::Left(out) | Either::Right(out) => out,
        })
        .map_err(|error| match error {
            either::Either::Left(error) => error,
            either::Either::Right(error) => std::io::Error::other(error),
        })
        .boxed())
}

/// `transport`'s connections with their streams counted, when `settings` says where.
fn counted(transport: Boxed<Muxed>, settings: &SwarmSettings) -> Boxed<Muxed> {
    match settings.bandwidth.clone() {
        Some(bandwidth) => transport
            .map(move |(peer, muxer), _| (peer, bandwidth.count(muxer)))
            .boxed(),
        None => transport,
    }
}

/// The webrtc-direct certificate kept in `path` (PEM), made and saved there the first time.
pub fn load_or_create_certificate(path: &std::path::Path) -> anyhow::Result<Certificate> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return Certificate::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a WebRTC certificate ({e}); delete it to make a new one \
                 (browsers then need the new /certhash address)",
                path.display()
            )
        });
    }
    let certificate = Certificate::generate(&mut webrtc_rand::rng())
        .map_err(|e| anyhow::anyhow!("could not make a WebRTC certificate: {e}"))?;
    crate::config::write_private(path, certificate.serialize_pem().as_bytes())?;
    Ok(certificate)
}

/// Builds the swarm; it listens nowhere until told to.
pub fn build(key: Keypair, settings: &SwarmSettings) -> anyhow::Result<Swarm<Gated>> {
    let peer = key.public().to_peer_id();
    let (circuits, relay_client) = relay::client::new(peer);
    let transport = transport(&key, settings, circuits)?;
    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(settings.max_connections))
                .with_max_established_per_peer(Some(4))
                .with_max_pending_incoming(Some(settings.max_connections)),
        ),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(format!("pinfold/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        gossipsub: pubsub::gossipsub(&key).map_err(anyhow::Error::msg)?,
        bitswap: Bitswap::new(bitswap::Config::default()),
        peer_requests: peer_request::behaviour(),
        repo_gc: peer_request::repo_gc_behaviour(),
        gorpc: libp2p_stream::Behaviour::new(),
        dht_wan: dht(peer, WAN_PROTOCOL),
        dht_lan: dht(peer, LAN_PROTOCOL),
        relay: Toggle::from(settings.relay.map(|limits| {
            relay::Behaviour::new(
                peer,
                relay::Config {
                    max_reservations: limits.max_reservations,
                    max_circuits: limits.max_circuits,
                    max_circuit_duration: limits.max_circuit_duration,
                    max_circuit_bytes: limits.max_circuit_bytes,
                    reservation_rate_limiters: Vec::new(),
                    circuit_src_rate_limiters: Vec::new(),
                    ..Default::default()
                },
            )
        })),
        relay_client,
        raft: Toggle::from(settings.raft.then(raft::behaviour)),
    };
    let gate = PskGate::new(
        peer,
        psk_gate::Config::new(settings.secret.clone()),
        behaviour,
        Box::new(rand::rngs::OsRng),
    );
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|_| transport)?
        .with_behaviour(|_| gate)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}
