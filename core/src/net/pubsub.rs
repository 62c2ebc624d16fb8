//! Gossipsub as ipfs-cluster runs it, and the identify protocol version its peers announce.

use std::time::Duration;

use libp2p_gossipsub as gossipsub;
use libp2p_identity::Keypair;

use crate::codec::pubsub::message_id;
use crate::codec::MAX_PUBSUB_MESSAGE_BYTES;

/// The identify protocol version ipfs-cluster peers announce.
pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

/// Gossipsub with strict signing by `key` and ipfs-cluster's message id (the first 16
/// bytes of the author's id, then the sequence number), messages up to
/// [`MAX_PUBSUB_MESSAGE_BYTES`], and a 1 s heartbeat.
pub fn gossipsub(key: &Keypair) -> Result<gossipsub::Behaviour, String> {
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
        .build()
        .map_err(|e| e.to_string())?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| e.to_string())
}
