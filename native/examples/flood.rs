//! A member that holds the cluster secret and misbehaves, for the fault tests: for a set
//! time it floods the CRDT topic with head broadcasts of random CIDs and with junk, and
//! floods bitswap with wants of random CIDs, as fast as the peer it joined takes them.
//! It prints one JSON line when done: messages published, publishes refused (its own
//! queue to the peer was full) and wants sent.
//!
//! `cargo run --release -p pinfold --example flood -- --secret HEX --peer MULTIADDR
//! --seconds N`

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cid::Cid;
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::codec::delta::encode_broadcast;
use pinfold_core::codec::pubsub::DEFAULT_CLUSTER_NAME;
use pinfold_core::codec::secret::ClusterSecret;
use pinfold_core::net::pubsub::ClusterTopics;
use pinfold_core::node::Topic;
use pinfold_native::peer::swarm::{self, SwarmSettings};
use rand::{Rng, RngCore};

/// Messages published per round, and wants sent per round (bitswap's most per message).
const MESSAGES_PER_ROUND: usize = 64;
const WANTS_PER_ROUND: usize = 4096;
/// Each round's wants are cancelled the next round (one message of cancels), to keep
/// under bitswap's want limit.
const ROUND: Duration = Duration::from_millis(20);

struct Options {
    secret: ClusterSecret,
    peer: Multiaddr,
    seconds: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let (mut secret, mut peer, mut seconds) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secret" => secret = Some(ClusterSecret::from_hex(&value)?),
            "--peer" => peer = Some(value.parse().context("--peer")?),
            "--seconds" => seconds = Some(value.parse().context("--seconds")?),
            other => bail!("unknown option {other}"),
        }
    }
    Ok(Options {
        secret: secret.context("--secret is required")?,
        peer: peer.context("--peer is required")?,
        seconds: seconds.context("--seconds is required")?,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let key = Keypair::generate_ed25519();
    let mut swarm = swarm::build(
        key,
        &SwarmSettings {
            secret: Some(options.secret),
            webrtc: None,
            dial_timeout: Duration::from_secs(10),
            max_connections: 16,
            relay: None,
            bandwidth: None,
            raft: false,
        },
    )?;
    let topics = ClusterTopics::new(DEFAULT_CLUSTER_NAME);
    topics.subscribe(&mut swarm.behaviour_mut().inner_mut().gossipsub)?;
    swarm.dial(options.peer.clone())?;
    let heads = topics.topic(Topic::Heads);
    let mut rng = rand::thread_rng();
    let (mut published, mut refused, mut wants) = (0u64, 0u64, 0u64);
    let mut wanted: Vec<Cid> = Vec::new();
    let mut round = tokio::time::interval(ROUND);
    let end = Instant::now() + Duration::from_secs(options.seconds);
    while Instant::now() < end {
        tokio::select! {
            _ = round.tick() => {
                let behaviour = swarm.behaviour_mut().inner_mut();
                for i in 0..MESSAGES_PER_ROUND {
                    // Well-formed broadcasts of heads nobody has, and junk, in turn.
                    let data = if i % 2 == 0 {
                        let mut seed = [0u8; 32];
                        rng.fill_bytes(&mut seed);
                        encode_broadcast(&[dag_pb_cid(&seed)])
                    } else {
                        let mut junk = vec![0u8; rng.gen_range(1..8192)];
                        rng.fill_bytes(&mut junk);
                        junk
                    };
                    match behaviour.gossipsub.publish(heads.clone(), data) {
                        Ok(_) => published += 1,
                        Err(_) => refused += 1,
                    }
                }
                behaviour.bitswap.cancel_all(&wanted);
                wanted = (0..WANTS_PER_ROUND)
                    .map(|_| {
                        let mut seed = [0u8; 32];
                        rng.fill_bytes(&mut seed);
                        dag_pb_cid(&seed)
                    })
                    .collect();
                let refused_wants = behaviour.bitswap.want_all(&wanted).len();
                wants += (wanted.len() - refused_wants) as u64;
            }
            _ = swarm.select_next_some() => {}
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "published": published,
            "refused": refused,
            "wants": wants,
        })
    );
    Ok(())
}
