//! go-ds-crdt's protobuf messages (`crdt.pb`, v0.6.8): the `Delta` carried in each DAG
//! node and the `CRDTBroadcast` of heads published on the cluster topic.

use cid::Cid;
use prost::Message;

use super::{MAX_BLOCK_BYTES, MAX_PUBSUB_MESSAGE_BYTES};

/// One version of one key. On the wire a delta's elements carry `key` and `value` only: the
/// receiver sets `id` to the block id of the node that carried them. Tombstones carry `key`
/// and the `id` of the element version they remove.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Element {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// A delta of the add-wins observed-remove set; `priority` is the height of the node.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Delta {
    #[prost(message, repeated, tag = "1")]
    pub elements: Vec<Element>,
    #[prost(message, repeated, tag = "2")]
    pub tombstones: Vec<Element>,
    #[prost(uint64, tag = "3")]
    pub priority: u64,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct Head {
    #[prost(bytes = "vec", tag = "1")]
    cid: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct CrdtBroadcast {
    #[prost(message, repeated, tag = "1")]
    heads: Vec<Head>,
}

/// Why a delta or broadcast was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("broadcast head {index} is not a valid CID: {detail}")]
    BadHeadCid { index: usize, detail: String },
    #[error("broadcast carries no heads")]
    NoHeads,
}

impl Delta {
    /// Serialises the delta as go-ds-crdt does (proto3, fields in number order).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes a delta from a node's `Data`, rejecting input over [`MAX_BLOCK_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeltaError> {
        check_len("delta", bytes.len(), MAX_BLOCK_BYTES)?;
        Self::decode(bytes).map_err(|e| DeltaError::Malformed {
            what: "delta",
            detail: e.to_string(),
        })
    }
}

/// Serialises a head broadcast: a `CRDTBroadcast` listing the heads' binary CIDs.
pub fn encode_broadcast(heads: &[Cid]) -> Vec<u8> {
    CrdtBroadcast {
        heads: heads.iter().map(|c| Head { cid: c.to_bytes() }).collect(),
    }
    .encode_to_vec()
}

/// Decodes a head broadcast. Like go-ds-crdt, also accepts the legacy payload that was a
/// bare binary CID (a CIDv0 parses as an unknown protobuf field, so it decodes to no heads).
pub fn decode_broadcast(bytes: &[u8]) -> Result<Vec<Cid>, DeltaError> {
    check_len("broadcast", bytes.len(), MAX_PUBSUB_MESSAGE_BYTES)?;
    let message = CrdtBroadcast::decode(bytes).map_err(|e| DeltaError::Malformed {
        what: "broadcast",
        detail: e.to_string(),
    });
    match message {
        Ok(message) if !message.heads.is_empty() => message
            .heads
            .iter()
            .enumerate()
            .map(|(index, head)| {
                Cid::try_from(head.cid.as_slice()).map_err(|e| DeltaError::BadHeadCid {
                    index,
                    detail: e.to_string(),
                })
            })
            .collect(),
        decoded => match Cid::try_from(bytes) {
            Ok(legacy) => Ok(vec![legacy]),
            Err(_) => decoded.and(Err(DeltaError::NoHeads)),
        },
    }
}

fn check_len(what: &'static str, len: usize, limit: usize) -> Result<(), DeltaError> {
    if len > limit {
        return Err(DeltaError::TooLarge { what, len, limit });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::dagpb::tests::arb_cid;
    use proptest::prelude::*;

    /// Golden vector, worked out by hand from delta.proto (proto3: fields in number order,
    /// empty fields omitted): element {key "/k", value "v"} = `0a 02 2f 6b 1a 01 76`,
    /// wrapped as field 1 (`0a 07 ...`); tombstone {key "/k", id "/B"} = `0a 02 2f 6b 12 02
    /// 2f 42` as field 2 (`12 08 ...`); priority 5 = `18 05`.
    #[test]
    fn delta_golden_bytes() {
        let delta = Delta {
            elements: vec![Element {
                key: "/k".into(),
                id: String::new(),
                value: b"v".to_vec(),
            }],
            tombstones: vec![Element {
                key: "/k".into(),
                id: "/B".into(),
                value: vec![],
            }],
            priority: 5,
        };
        let expected = concat!("0a070a022f6b1a0176", "12080a022f6b12022f42", "1805");
        assert_eq!(hex::encode(delta.to_bytes()), expected);
        assert_eq!(Delta::from_bytes(&delta.to_bytes()).unwrap(), delta);
    }

    /// Golden vector: `CRDTBroadcast { Heads: [{Cid: <34-byte CIDv0>}] }` is
    /// `0a 24 0a 22 <cid bytes>` (field 1 message of 36 bytes holding field 1 bytes of 34).
    #[test]
    fn broadcast_golden_bytes_and_legacy_form() {
        let head: Cid = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
            .parse()
            .unwrap();
        let bytes = encode_broadcast(&[head]);
        assert_eq!(hex::encode(&bytes[..4]), "0a240a22");
        assert_eq!(&bytes[4..], head.to_bytes().as_slice());
        assert_eq!(decode_broadcast(&bytes).unwrap(), vec![head]);
        // Pre-protobuf peers published the bare CID.
        assert_eq!(decode_broadcast(&head.to_bytes()).unwrap(), vec![head]);
    }

    #[test]
    fn rejects_bad_broadcasts() {
        assert_eq!(decode_broadcast(&[]), Err(DeltaError::NoHeads));
        let bad_head = CrdtBroadcast {
            heads: vec![Head { cid: vec![1, 2, 3] }],
        }
        .encode_to_vec();
        assert!(matches!(
            decode_broadcast(&bad_head),
            Err(DeltaError::BadHeadCid { index: 0, .. })
        ));
        assert!(matches!(
            decode_broadcast(&[0xff, 0xff]),
            Err(DeltaError::Malformed { .. })
        ));
        let huge = vec![0u8; MAX_PUBSUB_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode_broadcast(&huge),
            Err(DeltaError::TooLarge { .. })
        ));
    }

    fn arb_element() -> impl Strategy<Value = Element> {
        (
            ".{0,40}",
            ".{0,20}",
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(key, id, value)| Element { key, id, value })
    }

    pub(crate) fn arb_delta() -> impl Strategy<Value = Delta> {
        (
            proptest::collection::vec(arb_element(), 0..8),
            proptest::collection::vec(arb_element(), 0..8),
            any::<u64>(),
        )
            .prop_map(|(elements, tombstones, priority)| Delta {
                elements,
                tombstones,
                priority,
            })
    }

    proptest! {
        #[test]
        fn delta_round_trip(delta in arb_delta()) {
            prop_assert_eq!(Delta::from_bytes(&delta.to_bytes()).unwrap(), delta);
        }

        #[test]
        fn broadcast_round_trip(heads in proptest::collection::vec(arb_cid(), 1..10)) {
            prop_assert_eq!(decode_broadcast(&encode_broadcast(&heads)).unwrap(), heads);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Delta::from_bytes(&bytes);
            let _ = decode_broadcast(&bytes);
        }
    }
}
