//! [`Gossip`] between a pinfold swarm and a remote that records every gossipsub stream it
//! is sent and what each carries, over two connections, as after both peers dialled at
//! once. A Go peer keeps one inbound stream per peer and forgets the subscriptions
//! announced on a stream once that stream is gone, so the pinfold swarm must send on one
//! stream at a time, and must announce its subscriptions again on every new stream.
//! Against a real Go ipfs-cluster peer: `tests/interop/mdns.test.mjs`.

use std::time::Duration;

use futures::channel::mpsc;
use futures::{AsyncWriteExt, SinkExt, StreamExt};
use libp2p_gossipsub as gossipsub;
use libp2p_identity::{Keypair, PeerId};
use libp2p_swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p_swarm::{ConnectionId, StreamProtocol, Swarm, SwarmEvent};
use libp2p_swarm_test::SwarmExt;
use pinfold_core::net::frame::{read_frame, write_frame};
use pinfold_core::net::gossip::Gossip;
use pinfold_core::net::pubsub;
use prost::Message as _;

/// The gossipsub protocol the remote speaks.
const MESHSUB: &str = "/meshsub/1.1.0";
const TOPIC: &str = "pinfold-test";

/// The parts of gossipsub's RPC the remote reads and writes.
#[derive(Clone, PartialEq, prost::Message)]
struct Rpc {
    #[prost(message, repeated, tag = "1")]
    subscriptions: Vec<SubOpts>,
    #[prost(message, repeated, tag = "2")]
    publish: Vec<PubMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SubOpts {
    #[prost(bool, optional, tag = "1")]
    subscribe: Option<bool>,
    #[prost(string, optional, tag = "2")]
    topic_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PubMessage {
    #[prost(bytes = "vec", optional, tag = "2")]
    data: Option<Vec<u8>>,
}

/// One RPC the remote read: on which of the pinfold swarm's streams (numbered in the
/// order they were opened), the topics it subscribed to, how many messages it carried.
#[derive(Debug)]
struct Seen {
    stream: usize,
    subscribed: Vec<String>,
    published: usize,
}

fn subscribe_rpc() -> Vec<u8> {
    Rpc {
        subscriptions: vec![SubOpts {
            subscribe: Some(true),
            topic_id: Some(TOPIC.into()),
        }],
        publish: Vec::new(),
    }
    .encode_to_vec()
}

/// A remote that accepts the pinfold swarm's gossipsub streams and reports each RPC read.
fn recording_remote() -> (Swarm<libp2p_stream::Behaviour>, mpsc::Receiver<Seen>) {
    let remote = Swarm::new_ephemeral_tokio(|_| libp2p_stream::Behaviour::new());
    let mut incoming = remote
        .behaviour()
        .new_control()
        .accept(StreamProtocol::new(MESHSUB))
        .expect("the protocol is free");
    let (report, seen) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut count = 0;
        while let Some((_, mut stream)) = incoming.next().await {
            let (index, mut report) = (count, report.clone());
            count += 1;
            tokio::spawn(async move {
                while let Ok(Some(frame)) = read_frame(&mut stream, 1 << 20).await {
                    let rpc = Rpc::decode(frame.as_slice()).expect("a gossipsub RPC");
                    let _ = report
                        .send(Seen {
                            stream: index,
                            subscribed: rpc
                                .subscriptions
                                .iter()
                                .filter(|s| s.subscribe == Some(true))
                                .filter_map(|s| s.topic_id.clone())
                                .collect(),
                            published: rpc.publish.len(),
                        })
                        .await;
                }
            });
        }
    });
    (remote, seen)
}

/// The local swarm's side of the test: the connections it established, oldest first.
#[derive(Default)]
struct Local {
    connections: Vec<ConnectionId>,
    log: Vec<Seen>,
}

/// Polls `swarm` and reads `seen` until `done` holds, for at most 10 s.
async fn drive_until(
    swarm: &mut Swarm<Gossip>,
    seen: &mut mpsc::Receiver<Seen>,
    local: &mut Local,
    done: impl Fn(&Local) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(local) {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { connection_id, .. } = event {
                    local.connections.push(connection_id);
                }
            }
            Some(event) = seen.next() => local.log.push(event),
            _ = tokio::time::sleep_until(deadline) => panic!("not done within 10 s; read: {:?}", local.log),
        }
    }
}

fn published(log: &[Seen]) -> usize {
    log.iter().map(|s| s.published).sum()
}

fn streams(log: &[Seen]) -> usize {
    log.iter().map(|s| s.stream + 1).max().unwrap_or(0)
}

fn subscribed_on(log: &[Seen], stream: usize) -> usize {
    log.iter()
        .filter(|s| s.stream == stream && s.subscribed.iter().any(|t| t == TOPIC))
        .count()
}

async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> libp2p_swarm::Stream {
    control
        .open_stream(peer, StreamProtocol::new(MESHSUB))
        .await
        .expect("the local swarm accepts gossipsub streams")
}

#[tokio::test]
async fn over_two_connections_one_stream_at_a_time_each_announcing_the_subscriptions() {
    let mut swarm = Swarm::new_ephemeral_tokio(|key: Keypair| {
        pubsub::gossipsub(&key).expect("a valid configuration")
    });
    let topic = gossipsub::IdentTopic::new(TOPIC);
    swarm.behaviour_mut().subscribe(&topic).unwrap();
    let (mut remote, mut seen) = recording_remote();
    remote.listen().with_memory_addr_external().await;
    let remote_id = *remote.local_peer_id();
    let remote_address = remote.external_addresses().next().cloned().unwrap();
    let mut control = remote.behaviour().new_control();
    tokio::spawn(remote.loop_on_next());
    // Two connections at once, as when both peers dial each other.
    for _ in 0..2 {
        let dial = DialOpts::peer_id(remote_id)
            .addresses(vec![remote_address.clone()])
            .condition(PeerCondition::Always)
            .build();
        swarm.dial(dial).unwrap();
    }
    let mut local = Local::default();
    drive_until(&mut swarm, &mut seen, &mut local, |l| {
        l.connections.len() == 2 && subscribed_on(&l.log, 0) == 1
    })
    .await;

    // The remote subscribes, as a Go peer announces its topics on its stream.
    let mut remote_stream = open(&mut control, *swarm.local_peer_id()).await;
    write_frame(&mut remote_stream, &subscribe_rpc())
        .await
        .unwrap();
    drive_until(&mut swarm, &mut seen, &mut local, |_| true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while swarm
        .behaviour()
        .all_peers()
        .all(|(_, topics)| topics.is_empty())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the remote's subscription never arrived"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), swarm.select_next_some()).await;
    }

    // A burst: both connections' handlers find messages waiting; one stream carries all.
    const BURST: usize = 50;
    for n in 0..BURST {
        swarm
            .behaviour_mut()
            .publish(topic.clone(), format!("burst {n}").into_bytes())
            .expect("the remote subscribes");
    }
    drive_until(&mut swarm, &mut seen, &mut local, |l| {
        published(&l.log) == BURST
    })
    .await;
    assert_eq!(
        streams(&local.log),
        1,
        "one stream for the burst: {:?}",
        local.log
    );

    // The remote opens another stream, as a Go peer does when its stream to us died (Go
    // then forgets our topics): the subscriptions are announced again.
    let mut again = open(&mut control, *swarm.local_peer_id()).await;
    write_frame(&mut again, &subscribe_rpc()).await.unwrap();
    drive_until(&mut swarm, &mut seen, &mut local, |l| {
        subscribed_on(&l.log, 0) == 2
    })
    .await;
    let _ = remote_stream.close().await;

    // The connection that carries the stream closes: the other one takes over, and its
    // stream announces the subscriptions again.
    assert!(swarm.close_connection(local.connections[0]));
    for n in 0..50 {
        if streams(&local.log) == 2 && local.log.iter().any(|s| s.stream == 1 && s.published > 0) {
            break;
        }
        // Messages published while the closing connection still sends are lost with it.
        let _ = swarm
            .behaviour_mut()
            .publish(topic.clone(), format!("after {n}").into_bytes());
        let _ = tokio::time::timeout(Duration::from_millis(100), async {
            drive_until(&mut swarm, &mut seen, &mut local, |_| false).await
        })
        .await;
    }
    assert_eq!(streams(&local.log), 2, "a second stream: {:?}", local.log);
    assert!(
        subscribed_on(&local.log, 1) >= 1,
        "the second stream announces the subscriptions: {:?}",
        local.log
    );
}
