//! The follower's libp2p swarm: WebSocket inside the cluster's private network (pnet,
//! checked by the core's guard so that a wrong secret fails at once), Noise and yamux, and
//! webrtc-direct to native peers (where a browser has `RTCPeerConnection`); identify, ping,
//! gossipsub as ipfs-cluster runs it, bitswap and the status exchange, all behind the
//! secret gate, which makes WebRTC links prove the secret before anything else runs.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::timeout::TransportTimeout;
use libp2p::core::transport::{Boxed, OrTransport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, noise, ping, yamux, PeerId, Swarm, Transport};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::bitswap::{self, Bitswap};
use pinfold_core::net::pnet_guard::PnetGuard;
use pinfold_core::net::psk_gate::{self, PskGate};
use pinfold_core::net::pubsub::{self, IDENTIFY_PROTOCOL};
use pinfold_core::net::status;

use crate::websocket;

/// Bound on dialing and upgrading one connection.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The behaviours, all behind the secret gate.
pub type Gated = PskGate<Behaviour>;

/// What the swarm reports.
pub type GatedEvent = psk_gate::Event<BehaviourEvent>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub bitswap: Bitswap,
    pub status: status::Behaviour,
}

/// WebSocket inside pnet (when there is a secret), then Noise and yamux; or webrtc-direct.
fn transport(
    key: &Keypair,
    secret: Option<&ClusterSecret>,
) -> std::io::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    let base = websocket::Transport.map_err(std::io::Error::other);
    let websocket = match secret.map(|s| PreSharedKey::new(*s.as_bytes())) {
        Some(psk) => base
            .and_then(move |socket, _| async move {
                PnetConfig::new(psk)
                    .handshake(socket)
                    .await
                    .map(PnetGuard::new)
                    .map_err(std::io::Error::other)
            })
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(DIAL_TIMEOUT)
            .boxed(),
        None => base
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(DIAL_TIMEOUT)
            .boxed(),
    };
    let webrtc = TransportTimeout::new(
        libp2p::webrtc_websys::Transport::new(libp2p::webrtc_websys::Config::new(key))
            .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
            .map_err(std::io::Error::other),
        DIAL_TIMEOUT,
    )
    .map_err(std::io::Error::other)
    .boxed();
    Ok(OrTransport::new(websocket, webrtc)
        .map(|either, _| either.into_inner())
        .map_err(|either| either.into_inner())
        .boxed())
}

/// Builds the swarm of a follower with identity `key`.
pub fn build(key: Keypair, secret: Option<&ClusterSecret>) -> Result<Swarm<Gated>, String> {
    let peer = key.public().to_peer_id();
    let transport = transport(&key, secret).map_err(|e| e.to_string())?;
    let behaviour = Behaviour {
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("pinfold-wasm/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        gossipsub: pubsub::gossipsub(&key)?,
        bitswap: Bitswap::new(bitswap::Config::default()),
        status: status::behaviour(),
    };
    let gate = PskGate::new(
        peer,
        psk_gate::Config::new(secret.cloned()),
        behaviour,
        Box::new(rand_core::OsRng),
    );
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_wasm_bindgen()
        .with_other_transport(|_| transport)
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| gate)
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}
