//! The native swarm over webrtc-direct on loopback: pnet cannot wrap WebRTC, so the secret
//! gate must. Peers with the same secret prove it and then run the cluster protocols; with
//! different secrets both sides close the connection before any of them runs, and the
//! dialer's reason says "wrong cluster secret?". TCP connections (inside pnet) skip the proof.

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{identity::Keypair, Multiaddr, Swarm};
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::psk_gate::{Event, Rejection};
use pinfold_native::peer::swarm::{self, BehaviourEvent, Gated, SwarmSettings};

fn peer(secret: [u8; 32]) -> Swarm<Gated> {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwarmSettings {
        secret: Some(ClusterSecret::from_bytes(secret)),
        webrtc: Some(swarm::load_or_create_certificate(&dir.path().join("webrtc.pem")).unwrap()),
        dial_timeout: Duration::from_secs(10),
        max_connections: 16,
        relay: None,
        bandwidth: None,
        raft: false,
    };
    swarm::build(Keypair::generate_ed25519(), &settings).unwrap()
}

/// Starts listening on `address` and returns the first address reported, with `/p2p/`.
async fn listen(swarm: &mut Swarm<Gated>, address: &str) -> Multiaddr {
    swarm.listen_on(address.parse().unwrap()).unwrap();
    let local = *swarm.local_peer_id();
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address.with(Protocol::P2p(local));
        }
    }
}

/// What a run of two swarms saw, side by side.
#[derive(Default, Debug)]
struct Seen {
    proven: [bool; 2],
    rejected: [Option<Rejection>; 2],
    /// A gossipsub subscription crossed to that side.
    subscribed: [bool; 2],
    /// A protocol behind the gate reported anything on that side.
    gated_events: [usize; 2],
    closed: [bool; 2],
}

/// Drives both swarms until `done` holds or `within` passes.
async fn run(
    a: &mut Swarm<Gated>,
    b: &mut Swarm<Gated>,
    within: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let mut seen = Seen::default();
    let deadline = tokio::time::Instant::now() + within;
    while !done(&seen) {
        let (side, event) = tokio::select! {
            event = a.select_next_some() => (0, event),
            event = b.select_next_some() => (1, event),
            _ = tokio::time::sleep_until(deadline) => break,
        };
        match event {
            SwarmEvent::Behaviour(Event::Proven { .. }) => seen.proven[side] = true,
            SwarmEvent::Behaviour(Event::Rejected { reason, .. }) => {
                seen.rejected[side] = Some(reason)
            }
            SwarmEvent::Behaviour(Event::Inner(event)) => {
                seen.gated_events[side] += 1;
                if let BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { .. }) = event {
                    seen.subscribed[side] = true;
                }
            }
            SwarmEvent::ConnectionClosed { .. } => seen.closed[side] = true,
            _ => {}
        }
    }
    seen
}

fn subscribe(swarm: &mut Swarm<Gated>) {
    let topic = IdentTopic::new("pinfold-webrtc-test");
    swarm
        .behaviour_mut()
        .inner_mut()
        .gossipsub
        .subscribe(&topic)
        .unwrap();
}

/// Two subscribed peers with these secrets; `a` dials `b` over webrtc-direct.
async fn dial_over_webrtc(a_secret: [u8; 32], b_secret: [u8; 32]) -> (Swarm<Gated>, Swarm<Gated>) {
    let (mut a, mut b) = (peer(a_secret), peer(b_secret));
    subscribe(&mut a);
    subscribe(&mut b);
    let address = listen(&mut b, "/ip4/127.0.0.1/udp/0/webrtc-direct").await;
    // libp2p-webrtc dials from a listening socket.
    listen(&mut a, "/ip4/127.0.0.1/udp/0/webrtc-direct").await;
    a.dial(address).unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_the_secret_prove_it_over_webrtc_then_run_gossipsub() {
    let (mut a, mut b) = dial_over_webrtc([3; 32], [3; 32]).await;
    let seen = run(&mut a, &mut b, Duration::from_secs(30), |s| {
        s.subscribed == [true, true]
    })
    .await;
    assert_eq!(seen.proven, [true, true], "{seen:?}");
    assert_eq!(seen.rejected, [None, None]);
    assert_eq!(seen.subscribed, [true, true], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_over_webrtc_closes_the_connection_before_any_cluster_protocol() {
    let (mut a, mut b) = dial_over_webrtc([3; 32], [4; 32]).await;
    let seen = run(&mut a, &mut b, Duration::from_secs(30), |s| {
        s.rejected.iter().all(Option::is_some) && s.closed == [true, true]
    })
    .await;
    for (side, rejection) in seen.rejected.iter().enumerate() {
        let rejection = rejection
            .as_ref()
            .unwrap_or_else(|| panic!("side {side} did not reject: {seen:?}"));
        assert!(
            rejection.to_string().contains("wrong cluster secret?"),
            "{rejection}"
        );
    }
    assert_eq!(seen.proven, [false, false]);
    assert_eq!(seen.gated_events, [0, 0], "{seen:?}");
    // Nothing follows once the connection is gone.
    let after = run(&mut a, &mut b, Duration::from_secs(1), |_| false).await;
    assert_eq!(after.gated_events, [0, 0], "{after:?}");
    assert!(!a.is_connected(b.local_peer_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_inside_pnet_skip_the_proof() {
    let (mut a, mut b) = (peer([5; 32]), peer([5; 32]));
    subscribe(&mut a);
    subscribe(&mut b);
    let address = listen(&mut b, "/ip4/127.0.0.1/tcp/0").await;
    a.dial(address).unwrap();
    let seen = run(&mut a, &mut b, Duration::from_secs(30), |s| {
        s.subscribed == [true, true]
    })
    .await;
    assert_eq!(seen.subscribed, [true, true], "{seen:?}");
    assert_eq!(seen.proven, [false, false], "TCP went through the proof");
}
