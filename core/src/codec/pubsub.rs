//! Pubsub naming of an ipfs-cluster CRDT cluster: topics and gossipsub message ids.

use md5::{Digest, Md5};
use multihash::Multihash;

/// `crdt.cluster_name` when the configuration sets none.
pub const DEFAULT_CLUSTER_NAME: &str = "ipfs-cluster";

/// Topic on which every peer publishes its msgpack metrics (`ping`, `freespace`, ...).
pub const METRICS_TOPIC: &str = "monitor.metrics";

/// Multihash code of MD5.
const MD5_MULTIHASH_CODE: u64 = 0xd5;

/// The topic carrying CRDT head broadcasts for a cluster: base58btc of the MD5 multihash
/// of the cluster name, as Go ipfs-cluster derives it (so clusters with simple names
/// such as "test" do not collide with other pubsub applications).
pub fn crdt_topic(cluster_name: &str) -> String {
    let digest = Md5::digest(cluster_name.as_bytes());
    let multihash = Multihash::<16>::wrap(MD5_MULTIHASH_CODE, &digest)
        .expect("an MD5 digest (16 bytes) fits a 16-byte multihash");
    bs58::encode(multihash.to_bytes()).into_string()
}

/// The gossipsub message id ipfs-cluster uses: the first 16 bytes of the author's peer id
/// bytes (`from`) followed by the sequence number bytes. An author id shorter than 16
/// bytes is used whole.
pub fn message_id(from: &[u8], seqno: &[u8]) -> Vec<u8> {
    let prefix = &from[..from.len().min(16)];
    let mut id = Vec::with_capacity(prefix.len() + seqno.len());
    id.extend_from_slice(prefix);
    id.extend_from_slice(seqno);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Golden vector: MD5("ipfs-cluster") = fc718fbbfea0aae2a76199b92f9f0cdb, wrapped as
    /// multihash `d5 01 10 <digest>` and base58btc-encoded, computed independently with
    /// Python's hashlib and a textbook base58 encoder; it matches the value in the
    /// ipfs-cluster reference notes.
    #[test]
    fn default_cluster_topic_matches_go() {
        assert_eq!(
            crdt_topic(DEFAULT_CLUSTER_NAME),
            "fzhnp2UwTBkgNabrJi1VanzwgN"
        );
    }

    #[test]
    fn topics_differ_per_cluster() {
        assert_ne!(crdt_topic("a"), crdt_topic("b"));
    }

    /// Golden vector: an Ed25519 peer id is 38 bytes (`00 24 08 01 12 20 <key>`); the id
    /// is its first 16 bytes, then the 8 seqno bytes, as `hashMsgID` in clusterhost.go.
    #[test]
    fn message_id_is_author_prefix_and_seqno() {
        let mut from = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
        from.extend(1u8..=32);
        let seqno = 0x1877_0000_0000_0001u64.to_be_bytes();
        let id = message_id(&from, &seqno);
        assert_eq!(
            hex::encode(&id),
            "0024080112200102030405060708090a1877000000000001"
        );
        assert_eq!(id.len(), 24);
    }

    proptest! {
        #[test]
        fn message_id_never_panics(from in proptest::collection::vec(any::<u8>(), 0..64),
                                   seqno in proptest::collection::vec(any::<u8>(), 0..16)) {
            let id = message_id(&from, &seqno);
            prop_assert!(id.ends_with(&seqno));
            prop_assert_eq!(id.len(), from.len().min(16) + seqno.len());
        }
    }
}
