//! The native peer as a circuit relay v2 server and its connection limits, with client
//! swarms on the native transport: TCP inside pnet to the relay, then a relayed circuit
//! between two clients, itself inside pnet end to end (as go-libp2p runs circuits in a
//! private network), which the secret gate leaves alone.

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identity::Keypair, ping, relay, Multiaddr, Swarm};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::psk_gate::{self, Event, PskGate};
use pinfold_native::peer::swarm::{self, Gated, RelayLimits, SwarmSettings};

const SECRET: [u8; 32] = [9; 32];

fn settings(max_connections: u32, relay: Option<(usize, usize)>) -> SwarmSettings {
    SwarmSettings {
        secret: Some(ClusterSecret::from_bytes(SECRET)),
        webrtc: None,
        dial_timeout: Duration::from_secs(5),
        max_connections,
        relay: relay.map(|(max_reservations, max_circuits)| RelayLimits {
            max_reservations,
            max_circuits,
            max_circuit_duration: Duration::from_secs(60),
            max_circuit_bytes: 0,
        }),
        bandwidth: None,
        raft: false,
    }
}

/// A native peer listening on loopback TCP, driven by its own task; returns its address.
async fn native_peer(max_connections: u32, relay: Option<(usize, usize)>) -> Multiaddr {
    let mut peer: Swarm<Gated> = swarm::build(
        Keypair::generate_ed25519(),
        &settings(max_connections, relay),
    )
    .unwrap();
    peer.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let local = *peer.local_peer_id();
    // The relay puts its external addresses in reservations; the peer announces its
    // listen addresses (or cluster.announce_multiaddress) the same way.
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = peer.select_next_some().await {
            peer.add_external_address(address.clone());
            break address.with(Protocol::P2p(local));
        }
    };
    tokio::spawn(async move {
        loop {
            peer.select_next_some().await;
        }
    });
    address
}

#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    ping: ping::Behaviour,
}

/// A client: the native transport (pnet TCP for the relay, pnet circuits through it) and
/// ping, behind the secret gate.
fn client() -> Swarm<PskGate<Client>> {
    let key = Keypair::generate_ed25519();
    let (circuits, relay) = relay::client::new(key.public().to_peer_id());
    let transport = swarm::transport(&key, &settings(16, None), circuits).unwrap();
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|_| transport)
        .unwrap()
        .with_behaviour(|key| {
            PskGate::new(
                key.public().to_peer_id(),
                psk_gate::Config::new(Some(ClusterSecret::from_bytes(SECRET))),
                Client {
                    relay,
                    ping: ping::Behaviour::new(
                        ping::Config::new().with_interval(Duration::from_millis(200)),
                    ),
                },
                Box::new(rand::rngs::OsRng),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// What a client's swarm reports (`ClientEvent` is the derived behaviour's event).
type Observed = SwarmEvent<psk_gate::Event<ClientEvent>>;

/// Drives `swarm` until `pick` returns something, failing after 20 s.
async fn until<T>(
    swarm: &mut Swarm<PskGate<Client>>,
    what: &str,
    mut pick: impl FnMut(Observed) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(found) = pick(swarm.select_next_some().await) {
                return found;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Asks the relay for a reservation; returns whether it was granted.
async fn reserve(swarm: &mut Swarm<PskGate<Client>>, relay: &Multiaddr) -> bool {
    swarm
        .listen_on(relay.clone().with(Protocol::P2pCircuit))
        .unwrap();
    until(swarm, "a reservation answer", |event| match event {
        SwarmEvent::Behaviour(Event::Inner(ClientEvent::Relay(
            relay::client::Event::ReservationReqAccepted { .. },
        ))) => Some(true),
        SwarmEvent::ListenerClosed { reason, .. } => {
            eprintln!("reservation closed: {reason:?}");
            Some(false)
        }
        SwarmEvent::ListenerError { error, .. } => {
            eprintln!("reservation failed: {error}");
            Some(false)
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_each_other_through_the_relay_inside_the_private_network() {
    let relay = native_peer(16, Some((4, 4))).await;
    let (mut listener, mut dialer) = (client(), client());
    assert!(reserve(&mut listener, &relay).await, "reservation refused");
    let target = relay
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(*listener.local_peer_id()));
    dialer.dial(target).unwrap();
    let listener_id = *listener.local_peer_id();
    let drive_listener = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(Event::Rejected { reason, .. }) =
                listener.select_next_some().await
            {
                panic!("the gate covered a circuit: {reason}");
            }
        }
    });
    // Ping runs over the circuit at once: pnet inside it, no secret proof.
    until(
        &mut dialer,
        "a ping over the circuit",
        |event| match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } if peer_id == listener_id => {
                assert!(endpoint
                    .get_remote_address()
                    .iter()
                    .any(|p| p == Protocol::P2pCircuit));
                None
            }
            SwarmEvent::Behaviour(Event::Proven { .. } | Event::Rejected { .. }) => {
                panic!("the gate covered a circuit")
            }
            SwarmEvent::Behaviour(Event::Inner(ClientEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                connection,
            }))) if peer == listener_id => Some(connection),
            _ => None,
        },
    )
    .await;
    drive_listener.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_reservations_past_its_limit() {
    let relay = native_peer(16, Some((1, 4))).await;
    let (mut first, mut second) = (client(), client());
    assert!(
        reserve(&mut first, &relay).await,
        "the first reservation was refused"
    );
    let keep_first = tokio::spawn(async move {
        loop {
            first.select_next_some().await;
        }
    });
    assert!(
        !reserve(&mut second, &relay).await,
        "a second reservation went past max_reservations = 1"
    );
    keep_first.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refuses_connections_past_max_connections() {
    let peer = native_peer(2, None).await;
    let mut clients: Vec<_> = (0..3).map(|_| client()).collect();
    let mut connected = 0;
    let mut refused = 0;
    for c in &mut clients {
        c.dial(peer.clone()).unwrap();
        let established = until(c, "the dial's outcome", |event| match event {
            SwarmEvent::ConnectionEstablished { .. } => Some(true),
            SwarmEvent::OutgoingConnectionError { .. } => Some(false),
            _ => None,
        })
        .await;
        if !established {
            refused += 1;
            continue;
        }
        // A connection past the limit is established on the dialer's side and closed at
        // once by the peer.
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let SwarmEvent::ConnectionClosed { .. } = c.select_next_some().await {
                    return;
                }
            }
        })
        .await
        .is_ok();
        if closed {
            refused += 1;
        } else {
            connected += 1;
        }
    }
    assert_eq!((connected, refused), (2, 1));
}
