//! Wire codecs of an ipfs-cluster CRDT cluster.
//!
//! Each submodule owns one format, decodes untrusted bytes with explicit size bounds and
//! typed errors (never a panic), and is covered by round-trip property tests and golden vectors.

pub mod bitswap;
pub mod cluster_dag;
pub mod dag_cbor;
pub mod dagpb;
pub mod delta;
pub mod gorpc;
pub mod metric;
pub mod msgpack;
pub mod peer_request;
pub mod pin_pb;
pub mod psk_auth;
pub mod pubsub;
pub mod secret;
pub mod snapshot;
pub mod state_key;

/// Largest block this codec accepts (delta nodes, snapshot chunks): 2 MiB, the largest
/// block that bitswap implementations exchange. go-ds-crdt commits a batch once its delta
/// passes 1 MiB, so real delta nodes stay well below this.
pub const MAX_BLOCK_BYTES: usize = 2 * 1024 * 1024;

/// Largest pubsub payload accepted (head broadcasts, metrics): gossipsub's default maximum
/// transmit size.
pub const MAX_PUBSUB_MESSAGE_BYTES: usize = 1024 * 1024;
