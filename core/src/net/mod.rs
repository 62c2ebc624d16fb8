//! libp2p behaviours of the cluster swarm that native peers and browser followers share.
//! They depend only on libp2p's transport-agnostic crates: the binaries choose transports.

pub mod bitswap;
pub mod frame;
pub mod gossip;
pub mod peer_request;
pub mod pnet_guard;
pub mod protocol_sniff;
pub mod psk_gate;
pub mod pubsub;
#[cfg(feature = "raft")]
pub mod raft;
pub mod secure;
