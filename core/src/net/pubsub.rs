//! Gossipsub as ipfs-cluster runs it, and the identify `protocolVersion` its peers announce.

use std::time::Duration;

use libp2p_gossipsub as gossipsub;
use libp2p_identity::{Keypair, PeerId};

use crate::codec::pubsub::{crdt_topic, message_id, METRICS_TOPIC};
use crate::codec::MAX_PUBSUB_MESSAGE_BYTES;
use crate::net::gossip::Gossip;
use crate::node::{GossipVerdict, Topic};

/// The `protocolVersion` identify announces, as Go ipfs-cluster v1.1.6 peers announce it:
/// empty, since the cluster never sets go-libp2p's `ProtocolVersion` option and go-libp2p
/// v0.48 has no default. (The identify protocol itself is `/ipfs/id/1.0.0` on both.)
pub const IDENTIFY_PROTOCOL_VERSION: &str = "";

/// How long a message this peer publishes may wait for a slow peer's link.
pub const PUBLISH_QUEUE_WAIT: Duration = Duration::from_secs(60);
/// How long a message this peer forwards may wait for a slow peer's link.
pub const FORWARD_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Gossipsub with strict signing by `key` and ipfs-cluster's message id (the first 16
/// bytes of the author's id, then the sequence number), messages up to
/// [`MAX_PUBSUB_MESSAGE_BYTES`], and a 1 s heartbeat.
///
/// Messages wait up to [`PUBLISH_QUEUE_WAIT`] (forwards [`FORWARD_QUEUE_WAIT`]) for a slow
/// link before they are dropped, rather than gossipsub's 5 s and 1 s: a head broadcast
/// dropped leaves a gap in the receiver's DAG that it then walks one block per round trip,
/// so on a link with 200 ms of latency a burst of drops during an ingest costs minutes. The
/// queue stays bounded by its length (5,000 messages per peer).
///
/// Messages are forwarded only once the node accepted them ([`GossipVerdict`]): the driver
/// reports each verdict with `report_message_validation_result`.
///
/// It runs inside [`Gossip`], so that Go peers keep this peer's subscriptions when there is
/// more than one connection between them.
pub fn gossipsub(key: &Keypair) -> Result<Gossip, String> {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(|message: &gossipsub::Message| {
            let from = message.source.map(|p| p.to_bytes()).unwrap_or_default();
            let seqno = message
                .sequence_number
                .map(|n| n.to_be_bytes().to_vec())
                .unwrap_or_default();
            gossipsub::MessageId::from(message_id(&from, &seqno))
        })
        .max_transmit_size(MAX_PUBSUB_MESSAGE_BYTES)
        .heartbeat_interval(Duration::from_secs(1))
        .validate_messages()
        .publish_queue_duration(PUBLISH_QUEUE_WAIT)
        .forward_queue_duration(FORWARD_QUEUE_WAIT)
        .build()
        .map_err(|e| e.to_string())?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map(Gossip::new)
        .map_err(|e| e.to_string())
}

/// A cluster's two topics: its CRDT heads (named after the cluster) and the metrics.
#[derive(Clone, Debug)]
pub struct ClusterTopics {
    heads: gossipsub::IdentTopic,
    metrics: gossipsub::IdentTopic,
}

impl ClusterTopics {
    /// The topics of the cluster called `cluster_name`.
    pub fn new(cluster_name: &str) -> Self {
        Self {
            heads: gossipsub::IdentTopic::new(crdt_topic(cluster_name)),
            metrics: gossipsub::IdentTopic::new(METRICS_TOPIC),
        }
    }

    /// Subscribes `gossipsub` to both.
    pub fn subscribe(
        &self,
        gossipsub: &mut gossipsub::Behaviour,
    ) -> Result<(), gossipsub::SubscriptionError> {
        gossipsub.subscribe(&self.heads)?;
        gossipsub.subscribe(&self.metrics)?;
        Ok(())
    }

    /// The gossipsub topic the node's `topic` is.
    pub fn topic(&self, topic: Topic) -> gossipsub::IdentTopic {
        match topic {
            Topic::Heads => self.heads.clone(),
            Topic::Metrics => self.metrics.clone(),
        }
    }

    /// The author and topic of `message` when it is signed and on one of the two; any
    /// other message is to be rejected.
    pub fn sort(&self, message: &gossipsub::Message) -> Option<(PeerId, Topic)> {
        Some((message.source?, self.of(&message.topic)?))
    }

    /// Which of the two `hash` names, if either.
    pub fn of(&self, hash: &gossipsub::TopicHash) -> Option<Topic> {
        if *hash == self.heads.hash() {
            Some(Topic::Heads)
        } else if *hash == self.metrics.hash() {
            Some(Topic::Metrics)
        } else {
            None
        }
    }
}

/// Tells `gossipsub` the node's verdict on the message `id` that came from `source`: it
/// forwards the message only when accepted.
pub fn report_verdict(
    gossipsub: &mut gossipsub::Behaviour,
    id: &gossipsub::MessageId,
    source: &PeerId,
    verdict: GossipVerdict,
) {
    gossipsub.report_message_validation_result(id, source, verdict.into());
}

impl From<GossipVerdict> for gossipsub::MessageAcceptance {
    fn from(verdict: GossipVerdict) -> Self {
        match verdict {
            GossipVerdict::Accept => gossipsub::MessageAcceptance::Accept,
            GossipVerdict::Reject => gossipsub::MessageAcceptance::Reject,
        }
    }
}
