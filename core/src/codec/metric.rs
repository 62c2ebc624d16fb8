//! Peer metrics (`api.Metric` of ipfs-cluster v1.1.6), published on the `monitor.metrics`
//! topic as msgpack maps with the short keys `n,p,v,e,d,w,o,t`.
//!
//! Encoding reproduces the bytes of Go's ugorji `MsgpackHandle` ([`super::msgpack`]):
//! fields in declaration order, empty ones omitted. The decoder accepts any msgpack
//! encoding of the same map, unknown keys included, and the `\x09/msgpack\n` prefix that
//! peers up to v0.13.3 sent.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use super::msgpack::{self, Limits, MsgpackError, StructWriter, Value};
use super::MAX_PUBSUB_MESSAGE_BYTES;

/// A measurement a peer publishes about itself (`ping`, `freespace`, `tag:group`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    #[serde(with = "peer_base58")]
    pub peer: PeerId,
    pub value: String,
    /// Expiry, Unix nanoseconds.
    pub expire: i64,
    pub valid: bool,
    /// Ordering weight for the allocator (free bytes for `freespace`).
    pub weight: i64,
    /// Whether peers with equal values form one allocation partition (tags).
    pub partitionable: bool,
    /// When this peer received it, Unix nanoseconds; set by the receiver.
    pub received_at: i64,
}

mod peer_base58 {
    use libp2p_identity::PeerId;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&peer.to_base58())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| D::Error::custom(format!("invalid peer id {text:?}")))
    }
}

/// Why a metric message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error("metric message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed msgpack metric: {detail}")]
    Malformed { detail: &'static str },
    #[error("metric field {key:?} has the wrong type: {detail}")]
    WrongType {
        key: &'static str,
        detail: &'static str,
    },
    #[error("metric has no valid peer id")]
    BadPeer,
    #[error("metric has no name")]
    NoName,
}

/// The prefix peers of ipfs-cluster v0.13.3 and older put before the msgpack map.
const LEGACY_PREFIX: &[u8] = b"\x09/msgpack\n";

/// Deepest container nesting accepted (in unknown fields of newer peers).
const MAX_DEPTH: usize = 16;

impl Metric {
    /// The metric's msgpack bytes, as a Go peer publishes them.
    pub fn to_msgpack(&self) -> Vec<u8> {
        msgpack::to_vec(
            &StructWriter::new()
                .omit_empty("n", Value::str(&self.name))
                .omit_empty("p", Value::Raw(self.peer.to_bytes()))
                .omit_empty("v", Value::str(&self.value))
                .omit_empty("e", Value::Int(self.expire))
                .omit_empty("d", Value::Bool(self.valid))
                .omit_empty("w", Value::Int(self.weight))
                .omit_empty("o", Value::Bool(self.partitionable))
                .omit_empty("t", Value::Int(self.received_at))
                .build(),
        )
    }

    /// Decodes a metric message received from the network.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, MetricError> {
        if bytes.len() > MAX_PUBSUB_MESSAGE_BYTES {
            return Err(MetricError::TooLarge {
                len: bytes.len(),
                limit: MAX_PUBSUB_MESSAGE_BYTES,
            });
        }
        let bytes = bytes.strip_prefix(LEGACY_PREFIX).unwrap_or(bytes);
        let limits = Limits {
            max_bytes: MAX_PUBSUB_MESSAGE_BYTES,
            max_depth: MAX_DEPTH,
        };
        let (map, _) = msgpack::decode(bytes, limits).map_err(|error| MetricError::Malformed {
            detail: match error {
                MsgpackError::Truncated => "truncated",
                MsgpackError::TooDeep { .. } => "nested too deeply",
                MsgpackError::BadMarker { .. } => "unknown msgpack marker",
                MsgpackError::TooLarge { .. } => "too large",
            },
        })?;
        if !matches!(map, Value::Map(_)) {
            return Err(MetricError::Malformed {
                detail: "expected a map",
            });
        }
        let field = |key: &str| map.get(key).filter(|v| !v.is_nil());
        let text = |key: &'static str| -> Result<String, MetricError> {
            field(key).map_or(Ok(String::new()), |v| {
                v.as_str().map(str::to_owned).ok_or(MetricError::WrongType {
                    key,
                    detail: "expected a UTF-8 string",
                })
            })
        };
        let int = |key: &'static str| -> Result<i64, MetricError> {
            field(key).map_or(Ok(0), |v| {
                v.as_i64().ok_or(MetricError::WrongType {
                    key,
                    detail: "expected an integer of int64",
                })
            })
        };
        let boolean = |key: &'static str| -> Result<bool, MetricError> {
            match field(key) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(MetricError::WrongType {
                    key,
                    detail: "expected a boolean",
                }),
            }
        };
        let (name, value) = (text("n")?, text("v")?);
        let (expire, weight, received_at) = (int("e")?, int("w")?, int("t")?);
        let (valid, partitionable) = (boolean("d")?, boolean("o")?);
        if name.is_empty() {
            return Err(MetricError::NoName);
        }
        let peer = field("p")
            .and_then(Value::as_bytes)
            .and_then(|b| PeerId::from_bytes(b).ok())
            .ok_or(MetricError::BadPeer)?;
        Ok(Metric {
            name,
            peer,
            value,
            expire,
            valid,
            weight,
            partitionable,
            received_at,
        })
    }

    /// Whether the metric is still valid at `now_nanos` (Unix nanoseconds): Go's `!Discard()`.
    pub fn is_live(&self, now_nanos: i64) -> bool {
        self.valid && now_nanos <= self.expire
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::tests::{arb_peer, GOLDEN_PEER};
    use proptest::prelude::*;

    fn freespace() -> Metric {
        Metric {
            name: "freespace".into(),
            peer: GOLDEN_PEER.parse().unwrap(),
            value: "107374182400".into(),
            expire: 1_735_689_630_000_000_000,
            valid: true,
            weight: 107_374_182_400,
            partitionable: false,
            received_at: 0,
        }
    }

    /// Golden vector, worked out by hand from `api.Metric`'s codec tags and ugorji v1.2.12's
    /// msgpack driver (`EncodeInt`, `EncodeString` with the legacy raw container): a
    /// 100 GiB `freespace` metric with a 30 s TTL, as a Go peer publishes it.
    #[test]
    fn golden_msgpack() {
        let expected = concat!(
            "86", // fixmap, 6 non-empty fields
            "a16e",
            "a9",
            "667265657370616365", // n: "freespace"
            "a170",
            "da0026",
            "002408011220", // p: 38-byte peer id as str16...
            "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
            "a176",
            "ac",
            "313037333734313832343030", // v: "107374182400"
            "a165",
            "d3",
            "18166885bc7aac00", // e: int64 nanoseconds
            "a164",
            "c3", // d: true
            "a177",
            "d3",
            "0000001900000000", // w: int64 (above int32)
        );
        assert_eq!(hex::encode(freespace().to_msgpack()), expected);
        assert_eq!(
            Metric::from_msgpack(&hex::decode(expected).unwrap()).unwrap(),
            freespace()
        );
    }

    /// Golden vector: the JSON of `GET /monitor/metrics/freespace` entries.
    #[test]
    fn golden_json() {
        let json = serde_json::to_string(&freespace()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"name":"freespace","peer":"12D3KooW9tJMax94Lrqw7Y5Qw36viGQAS2gTEPQ5Wg1vTk7xPfQs","#,
                r#""value":"107374182400","expire":1735689630000000000,"valid":true,"#,
                r#""weight":107374182400,"partitionable":false,"received_at":0}"#
            )
        );
        assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), freespace());
    }

    #[test]
    fn reads_other_encoders_and_legacy_prefix() {
        // A generic encoder: str8 strings, unsigned ints, an extra unknown field.
        let mut bytes = vec![0x85];
        for (k, v) in [("n", b"ping".as_slice()), ("x", b"ignored")] {
            bytes.extend_from_slice(&[0xa1, k.as_bytes()[0], 0xd9, v.len() as u8]);
            bytes.extend_from_slice(v);
        }
        let peer = freespace().peer.to_bytes();
        bytes.extend_from_slice(&[0xa1, b'p', 0xc4, peer.len() as u8]);
        bytes.extend_from_slice(&peer);
        bytes.extend_from_slice(&[0xa1, b'e', 0xcf]);
        bytes.extend_from_slice(&1_000u64.to_be_bytes());
        bytes.extend_from_slice(&[0xa1, b'd', 0xc3]);
        let metric = Metric::from_msgpack(&bytes).unwrap();
        assert_eq!(metric.name, "ping");
        assert_eq!(metric.expire, 1_000);
        assert!(metric.valid);
        let legacy = [LEGACY_PREFIX, freespace().to_msgpack().as_slice()].concat();
        assert_eq!(Metric::from_msgpack(&legacy).unwrap(), freespace());
    }

    #[test]
    fn rejects_bad_metrics() {
        assert!(matches!(
            Metric::from_msgpack(&[]),
            Err(MetricError::Malformed { .. })
        ));
        assert!(matches!(
            Metric::from_msgpack(&[0x80]),
            Err(MetricError::NoName)
        ));
        assert!(matches!(
            Metric::from_msgpack(&[0x81, 0xa1, b'n', 0xa4, b'p']),
            Err(MetricError::Malformed {
                detail: "truncated",
                ..
            })
        ));
        assert!(matches!(
            Metric::from_msgpack(&[0x81, 0xa1, b'n', 0xa1, b'x']),
            Err(MetricError::BadPeer)
        ));
        assert!(matches!(
            Metric::from_msgpack(&[0x81, 0xa1, b'e', 0xa1, b'x']),
            Err(MetricError::WrongType { key: "e", .. })
        ));
    }

    #[test]
    fn liveness() {
        let metric = freespace();
        assert!(metric.is_live(metric.expire));
        assert!(!metric.is_live(metric.expire + 1));
        assert!(!Metric {
            valid: false,
            ..metric.clone()
        }
        .is_live(0));
    }

    fn arb_metric() -> impl Strategy<Value = Metric> {
        (
            (".{1,40}", arb_peer(), ".{0,300}"),
            (
                any::<i64>(),
                any::<bool>(),
                any::<i64>(),
                any::<bool>(),
                any::<i64>(),
            ),
        )
            .prop_map(
                |((name, peer, value), (expire, valid, weight, partitionable, received_at))| {
                    Metric {
                        name,
                        peer,
                        value,
                        expire,
                        valid,
                        weight,
                        partitionable,
                        received_at,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn msgpack_round_trip(metric in arb_metric()) {
            prop_assert_eq!(Metric::from_msgpack(&metric.to_msgpack()).unwrap(), metric);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Metric::from_msgpack(&bytes);
        }
    }
}
