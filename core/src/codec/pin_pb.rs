//! The CRDT state value of a pin: protobuf `api.pb.Pin` of ipfs-cluster v1.1.6
//! (`api/pb/types.proto`), written byte for byte as Go's `Pin.ProtoMarshal` writes it.
//!
//! Not stored: `mode` (derived from `max_depth`) and `user_allocations` (request-only).
//! Metadata is written as `SortedMetadata` (field 10, sorted by key) so that equal pins
//! give equal bytes; the deprecated map (field 6) is still read.

use std::collections::BTreeMap;

use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use prost::Message;

use crate::pin::{Pin, PinType, UnixTime};

/// Largest state value accepted: a pin rides inside a delta block, so no valid one is larger.
pub const MAX_PIN_BYTES: usize = super::MAX_BLOCK_BYTES;

#[derive(Clone, PartialEq, Message)]
struct PinPb {
    #[prost(bytes = "vec", tag = "1")]
    cid: Vec<u8>,
    #[prost(int32, tag = "2")]
    pin_type: i32,
    #[prost(bytes = "vec", repeated, tag = "3")]
    allocations: Vec<Vec<u8>>,
    #[prost(sint32, tag = "4")]
    max_depth: i32,
    #[prost(bytes = "vec", tag = "5")]
    reference: Vec<u8>,
    #[prost(message, optional, tag = "6")]
    options: Option<PinOptionsPb>,
    #[prost(uint64, tag = "7")]
    timestamp: u64,
}

#[derive(Clone, PartialEq, Message)]
struct PinOptionsPb {
    #[prost(sint32, tag = "1")]
    replication_factor_min: i32,
    #[prost(sint32, tag = "2")]
    replication_factor_max: i32,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(uint64, tag = "4")]
    shard_size: u64,
    #[prost(btree_map = "string, string", tag = "6")]
    legacy_metadata: BTreeMap<String, String>,
    #[prost(bytes = "vec", tag = "7")]
    pin_update: Vec<u8>,
    #[prost(uint64, tag = "8")]
    expire_at: u64,
    #[prost(bytes = "vec", repeated, tag = "9")]
    origins: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    sorted_metadata: Vec<MetadataPb>,
}

#[derive(Clone, PartialEq, Message)]
struct MetadataPb {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// Why a state value could not be read as a pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinDecodeError {
    #[error("pin value of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed pin protobuf: {0}")]
    Malformed(String),
    #[error("pin has an invalid CID: {0}")]
    BadCid(String),
    #[error("pin has an unknown type {0} (expected 0 to 4)")]
    UnknownType(i32),
    #[error("pin allocation {index} is not a peer id")]
    BadAllocation { index: usize },
    #[error("pin origin {index} is not a multiaddress: {detail}")]
    BadOrigin { index: usize, detail: String },
}

fn pin_type_to_pb(pin_type: PinType) -> i32 {
    // Go's PinType is a bit flag (1 << n); the protobuf enum holds n.
    match pin_type {
        PinType::Bad => 0,
        PinType::Data => 1,
        PinType::Meta => 2,
        PinType::ClusterDag => 3,
        PinType::Shard => 4,
    }
}

fn pin_type_from_pb(value: i32) -> Result<PinType, PinDecodeError> {
    Ok(match value {
        0 => PinType::Bad,
        1 => PinType::Data,
        2 => PinType::Meta,
        3 => PinType::ClusterDag,
        4 => PinType::Shard,
        other => return Err(PinDecodeError::UnknownType(other)),
    })
}

impl Pin {
    /// The pin's CRDT state value.
    pub fn to_state_value(&self) -> Vec<u8> {
        PinPb {
            cid: self.cid.to_bytes(),
            pin_type: pin_type_to_pb(self.pin_type),
            allocations: self.allocations.iter().map(|p| p.to_bytes()).collect(),
            max_depth: self.max_depth,
            reference: self.reference.map(|c| c.to_bytes()).unwrap_or_default(),
            // Go always sets Options, so an empty options message is still written.
            options: Some(PinOptionsPb {
                replication_factor_min: self.replication_factor_min,
                replication_factor_max: self.replication_factor_max,
                name: self.name.clone(),
                shard_size: self.shard_size,
                legacy_metadata: BTreeMap::new(),
                pin_update: self.pin_update.map(|c| c.to_bytes()).unwrap_or_default(),
                expire_at: self.expire_at.map_or(0, |t| t.0),
                origins: self.origins.iter().map(|m| m.to_vec()).collect(),
                sorted_metadata: self
                    .metadata
                    .iter()
                    .map(|(key, value)| MetadataPb {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            }),
            timestamp: self.timestamp.map_or(0, |t| t.0),
        }
        .encode_to_vec()
    }

    /// Reads a pin from its CRDT state value. As in Go, an unreadable `reference` or
    /// `pin_update` CID is dropped; an unreadable CID, allocation or origin is an error.
    pub fn from_state_value(bytes: &[u8]) -> Result<Self, PinDecodeError> {
        if bytes.len() > MAX_PIN_BYTES {
            return Err(PinDecodeError::TooLarge {
                len: bytes.len(),
                limit: MAX_PIN_BYTES,
            });
        }
        let pb = PinPb::decode(bytes).map_err(|e| PinDecodeError::Malformed(e.to_string()))?;
        let cid =
            Cid::try_from(pb.cid.as_slice()).map_err(|e| PinDecodeError::BadCid(e.to_string()))?;
        let allocations = pb
            .allocations
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                PeerId::from_bytes(bytes).map_err(|_| PinDecodeError::BadAllocation { index })
            })
            .collect::<Result<_, _>>()?;
        let options = pb.options.unwrap_or_default();
        let origins = options
            .origins
            .into_iter()
            .enumerate()
            .map(|(index, bytes)| {
                Multiaddr::try_from(bytes).map_err(|e| PinDecodeError::BadOrigin {
                    index,
                    detail: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut metadata = options.legacy_metadata;
        metadata.extend(
            options
                .sorted_metadata
                .into_iter()
                .map(|m| (m.key, m.value)),
        );
        Ok(Pin {
            cid,
            pin_type: pin_type_from_pb(pb.pin_type)?,
            allocations,
            max_depth: pb.max_depth,
            reference: Cid::try_from(pb.reference.as_slice()).ok(),
            timestamp: (pb.timestamp > 0).then_some(UnixTime(pb.timestamp)),
            replication_factor_min: options.replication_factor_min,
            replication_factor_max: options.replication_factor_max,
            name: options.name,
            shard_size: options.shard_size,
            user_allocations: Vec::new(),
            expire_at: (options.expire_at > 0).then_some(UnixTime(options.expire_at)),
            metadata,
            pin_update: Cid::try_from(options.pin_update.as_slice()).ok(),
            origins,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::tests::{arb_pin, golden_pin};
    use proptest::prelude::*;

    /// Golden vector, worked out by hand from `api/pb/types.proto` and `Pin.ProtoMarshal`
    /// (proto3, fields in number order, zero values omitted, Options always present,
    /// metadata as SortedMetadata). Varints computed with a Python helper.
    #[test]
    fn golden_state_value() {
        let expected = concat!(
            "0a22",
            "1220",
            "c3c4733ec8affd06cf9e9ff50ffc6bcd2ec85a6170004bb709669c31de94391a", // Cid (CIDv0)
            "1001", // Type = DataType (1)
            "1a26",
            "002408011220", // Allocations[0]: Ed25519 peer id...
            "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20", // ...its key
            "2001",         // MaxDepth = -1 (sint32 zigzag 1)
            "3220",         // Options, 32 bytes:
            "0804",
            "1006",         //   ReplicationFactorMin 2, Max 3 (zigzag)
            "1a04646f6373", //   Name "docs"
            "4080f2d6ca06", //   ExpireAt 1767225600 (2026-01-01)
            "52060a0161120131",
            "52060a0162120132", //   SortedMetadata a=1, b=2
            "38808bd2bb06",     // Timestamp 1735689600 (2025-01-01)
        );
        assert_eq!(hex::encode(golden_pin().to_state_value()), expected);
        assert_eq!(
            Pin::from_state_value(&hex::decode(expected).unwrap()).unwrap(),
            golden_pin()
        );
    }

    #[test]
    fn reads_legacy_map_metadata() {
        let mut pb = PinPb::decode(golden_pin().to_state_value().as_slice()).unwrap();
        let options = pb.options.as_mut().unwrap();
        options.legacy_metadata = std::mem::take(&mut options.sorted_metadata)
            .into_iter()
            .map(|m| (m.key, m.value))
            .collect();
        let pin = Pin::from_state_value(&pb.encode_to_vec()).unwrap();
        assert_eq!(pin, golden_pin());
        // Written back, it uses the deterministic sorted form again.
        assert_eq!(pin.to_state_value(), golden_pin().to_state_value());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(matches!(
            Pin::from_state_value(&[]),
            Err(PinDecodeError::BadCid(_))
        ));
        assert!(matches!(
            Pin::from_state_value(&[0x0a, 0x05]),
            Err(PinDecodeError::Malformed(_))
        ));
        let mut pb = PinPb::decode(golden_pin().to_state_value().as_slice()).unwrap();
        pb.pin_type = 9;
        assert_eq!(
            Pin::from_state_value(&pb.encode_to_vec()),
            Err(PinDecodeError::UnknownType(9))
        );
        pb.pin_type = 1;
        pb.allocations.push(vec![0xff; 3]);
        assert_eq!(
            Pin::from_state_value(&pb.encode_to_vec()),
            Err(PinDecodeError::BadAllocation { index: 1 })
        );
        assert!(matches!(
            Pin::from_state_value(&vec![0; MAX_PIN_BYTES + 1]),
            Err(PinDecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn state_value_round_trip(pin in arb_pin()) {
            let bytes = pin.to_state_value();
            prop_assert_eq!(Pin::from_state_value(&bytes).unwrap(), pin);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Pin::from_state_value(&bytes);
        }
    }
}
