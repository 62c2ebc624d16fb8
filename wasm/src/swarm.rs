//! The follower's libp2p swarm: WebSocket and relayed circuits inside the cluster's private
//! network (pnet, checked by the core's guard so that a wrong secret fails at once), Noise
//! and yamux, and (with the `webrtc` feature, for browsers, which have `RTCPeerConnection`)
//! webrtc-direct to native peers;
//! identify, ping, gossipsub as ipfs-cluster runs it, bitswap, the peer requests and a
//! relay client (a bootstrap address `<relay>/p2p-circuit/p2p/<peer>` reaches a peer
//! through that relay), all behind the secret gate, which makes WebRTC links prove the
//! secret before anything else runs.

use std::time::Duration;

use libp2p::core::transport::{Boxed, OrTransport};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, noise, ping, relay, Swarm, Transport};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::bitswap::{self, Bitswap};
use pinfold_core::net::gossip::Gossip;
use pinfold_core::net::peer_request;
use pinfold_core::net::psk_gate::{self, PskGate};
use pinfold_core::net::pubsub::{self, IDENTIFY_PROTOCOL_VERSION};
use pinfold_core::net::secure::{secure, Muxed};

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
    pub gossipsub: Gossip,
    pub bitswap: Bitswap,
    pub peer_requests: peer_request::Behaviour,
    pub relay_client: relay::client::Behaviour,
}

/// WebSocket or a relayed circuit, inside pnet (when there is a secret), then Noise and
/// yamux; with the `webrtc` feature, or webrtc-direct.
fn transport(
    key: &Keypair,
    secret: Option<&ClusterSecret>,
    circuits: relay::client::Transport,
) -> std::io::Result<Boxed<Muxed>> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    // One upgrade for both stream transports, so that the .wasm holds one copy of it.
    let streams = OrTransport::new(
        websocket::Transport.map_err(std::io::Error::other),
        circuits.map_err(std::io::Error::other),
    )
    .map_err(|error| error.into_inner());
    let streams = secure(streams, secret, noise, DIAL_TIMEOUT);
    #[cfg(feature = "webrtc")]
    let streams = {
        use libp2p::core::muxing::StreamMuxerBox;
        use libp2p::core::transport::timeout::TransportTimeout;
        let webrtc = TransportTimeout::new(
            libp2p::webrtc_websys::Transport::new(libp2p::webrtc_websys::Config::new(key))
                .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
                .map_err(std::io::Error::other),
            DIAL_TIMEOUT,
        )
        .map_err(std::io::Error::other)
        .boxed();
        OrTransport::new(streams, webrtc)
            .map(|either, _| either.into_inner())
            .map_err(|error| error.into_inner())
            .boxed()
    };
    Ok(streams)
}

/// Builds the swarm of a follower with identity `key`.
pub fn build(key: Keypair, secret: Option<&ClusterSecret>) -> Result<Swarm<Gated>, String> {
    let peer = key.public().to_peer_id();
    let (circuits, relay_client) = relay::client::new(peer);
    let transport = transport(&key, secret, circuits).map_err(|e| e.to_string())?;
    let behaviour = Behaviour {
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(format!("pinfold-wasm/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        gossipsub: pubsub::gossipsub(&key)?,
        bitswap: Bitswap::new(bitswap::Config::default()),
        peer_requests: peer_request::behaviour(),
        relay_client,
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
