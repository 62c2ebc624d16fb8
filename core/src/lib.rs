//! pinfold-core: the transport-agnostic heart of pinfold.
//!
//! This crate knows no runtime, no socket and no clock: every function that needs the
//! time takes it as an argument, so the same code runs natively and in `wasm32-unknown-unknown`.
//!
//! It holds the cluster's wire codecs ([`codec`]) and the pin model ([`pin`]), byte-compatible
//! with Go ipfs-cluster v1.1.6 and go-ds-crdt v0.6.8, the shared pinset ([`crdt`]), and
//! what decides where pins go and who is alive: the [`allocator`], the [`monitor`] and the
//! [`informer`]s, and the pin [`tracker`] that says where each pin stands; the JSON of the REST API
//! ([`rest`]); and the swarm behaviours of [`net`]
//! (bitswap) that native peers and browsers share.

pub mod allocator;
pub mod codec;
#[cfg(feature = "raft")]
pub mod consensus;
pub mod crdt;
#[doc(hidden)]
pub mod fuzzing;
pub mod go_duration;
pub mod informer;
pub mod monitor;
pub mod net;
pub mod node;
pub mod pin;
pub mod repo_gc;
pub mod rest;
pub mod sharding;
pub mod tracker;

/// What the crate's unit tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use libp2p_identity::PeerId;

    /// The peer of an ed25519 key made from `seed`.
    pub fn peer(seed: u8) -> PeerId {
        let key = libp2p_identity::ed25519::SecretKey::try_from_bytes([seed; 32]).unwrap();
        libp2p_identity::PublicKey::from(libp2p_identity::ed25519::Keypair::from(key).public())
            .to_peer_id()
    }
}
