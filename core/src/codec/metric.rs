//! Peer metrics (`api.Metric` of ipfs-cluster v1.1.6), published on the `monitor.metrics`
//! topic as msgpack maps with the short keys `n,p,v,e,d,w,o,t`.
//!
//! Encoding reproduces the bytes of Go's ugorji `MsgpackHandle` with default settings:
//! fields in declaration order, empty ones omitted, strings in the legacy raw form (fixstr
//! below 32 bytes, else str16/str32), signed integers in the smallest *signed* form. The
//! decoder accepts any msgpack encoding of the same map, unknown keys included, and the
//! `\x09/msgpack\n` prefix that peers up to v0.13.3 sent.

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

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
    #[error("malformed msgpack metric at byte {offset}: {detail}")]
    Malformed { offset: usize, detail: &'static str },
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

/// Deepest container nesting accepted when skipping unknown values.
const MAX_SKIP_DEPTH: usize = 16;

impl Metric {
    /// The metric's msgpack bytes, as a Go peer publishes them.
    pub fn to_msgpack(&self) -> Vec<u8> {
        let peer = self.peer.to_bytes();
        let fields = [
            (!self.name.is_empty()).then_some(("n", Value::Str(self.name.as_bytes()))),
            Some(("p", Value::Str(&peer))),
            (!self.value.is_empty()).then_some(("v", Value::Str(self.value.as_bytes()))),
            (self.expire != 0).then_some(("e", Value::Int(self.expire))),
            self.valid.then_some(("d", Value::Bool(true))),
            (self.weight != 0).then_some(("w", Value::Int(self.weight))),
            self.partitionable.then_some(("o", Value::Bool(true))),
            (self.received_at != 0).then_some(("t", Value::Int(self.received_at))),
        ];
        let present: Vec<_> = fields.into_iter().flatten().collect();
        let mut out = Vec::with_capacity(64 + self.name.len() + self.value.len() + peer.len());
        // At most 8 entries: always a fixmap.
        out.push(0x80 | present.len() as u8);
        for (key, value) in present {
            write_raw(&mut out, key.as_bytes());
            match value {
                Value::Str(bytes) => write_raw(&mut out, bytes),
                Value::Int(n) => write_int(&mut out, n),
                Value::Bool(b) => out.push(if b { 0xc3 } else { 0xc2 }),
            }
        }
        out
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
        let mut reader = Reader { bytes, offset: 0 };
        let entries = reader.map_len()?;
        let mut name = String::new();
        let mut peer = None;
        let mut value = String::new();
        let (mut expire, mut weight, mut received_at) = (0, 0, 0);
        let (mut valid, mut partitionable) = (false, false);
        for _ in 0..entries {
            let key = reader.raw()?;
            match key {
                b"n" => name = reader.text("n")?,
                b"p" => {
                    let raw = reader.raw_or_nil()?;
                    peer = Some(PeerId::from_bytes(raw).map_err(|_| MetricError::BadPeer)?);
                }
                b"v" => value = reader.text("v")?,
                b"e" => expire = reader.int("e")?,
                b"d" => valid = reader.boolean("d")?,
                b"w" => weight = reader.int("w")?,
                b"o" => partitionable = reader.boolean("o")?,
                b"t" => received_at = reader.int("t")?,
                _ => reader.skip(0)?,
            }
        }
        if name.is_empty() {
            return Err(MetricError::NoName);
        }
        Ok(Metric {
            name,
            peer: peer.ok_or(MetricError::BadPeer)?,
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

enum Value<'a> {
    Str(&'a [u8]),
    Int(i64),
    Bool(bool),
}

/// ugorji's legacy raw string: fixstr below 32 bytes, then str16, then str32 (no str8).
fn write_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// ugorji's `EncodeInt`: fixints for -32..=127, otherwise the smallest signed width.
fn write_int(out: &mut Vec<u8>, n: i64) {
    if (-32..=127).contains(&n) {
        out.push(n as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, detail: &'static str) -> MetricError {
        MetricError::Malformed {
            offset: self.offset,
            detail,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MetricError> {
        if n > self.bytes.len() - self.offset {
            return Err(self.malformed("truncated"));
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, MetricError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, MetricError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn map_len(&mut self) -> Result<usize, MetricError> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => Ok(self.be(2)? as usize),
            0xdf => Ok(self.be(4)? as usize),
            _ => Err(self.malformed("expected a map")),
        }
    }

    /// Length of a string or binary value whose marker was just read, if it is one.
    fn raw_len(&mut self, marker: u8) -> Result<Option<usize>, MetricError> {
        Ok(Some(match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 | 0xc4 => self.be(1)? as usize,
            0xda | 0xc5 => self.be(2)? as usize,
            0xdb | 0xc6 => self.be(4)? as usize,
            _ => return Ok(None),
        }))
    }

    fn raw(&mut self) -> Result<&'a [u8], MetricError> {
        let marker = self.byte()?;
        match self.raw_len(marker)? {
            Some(len) => self.take(len),
            None => Err(self.malformed("expected a string")),
        }
    }

    fn raw_or_nil(&mut self) -> Result<&'a [u8], MetricError> {
        if self.bytes.get(self.offset) == Some(&0xc0) {
            self.offset += 1;
            return Ok(&[]);
        }
        self.raw()
    }

    fn text(&mut self, key: &'static str) -> Result<String, MetricError> {
        let raw = self.raw_or_nil()?;
        String::from_utf8(raw.to_vec()).map_err(|_| MetricError::WrongType {
            key,
            detail: "not UTF-8",
        })
    }

    fn int(&mut self, key: &'static str) -> Result<i64, MetricError> {
        let marker = self.byte()?;
        let wrong = |detail| MetricError::WrongType { key, detail };
        Ok(match marker {
            0x00..=0x7f => i64::from(marker),
            0xe0..=0xff => i64::from(marker as i8),
            0xc0 => 0,
            0xcc => self.be(1)? as i64,
            0xcd => self.be(2)? as i64,
            0xce => self.be(4)? as i64,
            0xcf => {
                i64::try_from(self.be(8)?).map_err(|_| wrong("unsigned value overflows int64"))?
            }
            0xd0 => i64::from(self.be(1)? as u8 as i8),
            0xd1 => i64::from(self.be(2)? as u16 as i16),
            0xd2 => i64::from(self.be(4)? as u32 as i32),
            0xd3 => self.be(8)? as i64,
            _ => return Err(wrong("expected an integer")),
        })
    }

    fn boolean(&mut self, key: &'static str) -> Result<bool, MetricError> {
        match self.byte()? {
            0xc2 | 0xc0 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(MetricError::WrongType {
                key,
                detail: "expected a boolean",
            }),
        }
    }

    /// Skips one value of any type (an unknown field from a newer peer).
    fn skip(&mut self, depth: usize) -> Result<(), MetricError> {
        if depth > MAX_SKIP_DEPTH {
            return Err(self.malformed("nested too deeply"));
        }
        let marker = self.byte()?;
        if let Some(len) = self.raw_len(marker)? {
            self.take(len)?;
            return Ok(());
        }
        let (items, extra) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xce | 0xd2 | 0xca => (0, 4),
            0xcf | 0xd3 | 0xcb => (0, 8),
            0x90..=0x9f => (usize::from(marker & 0x0f), 0),
            0x80..=0x8f => (2 * usize::from(marker & 0x0f), 0),
            0xdc => (self.be(2)? as usize, 0),
            0xdd => (self.be(4)? as usize, 0),
            0xde => (2 * self.be(2)? as usize, 0),
            0xdf => (2 * self.be(4)? as usize, 0),
            0xd4 => (0, 2),
            0xd5 => (0, 3),
            0xd6 => (0, 5),
            0xd7 => (0, 9),
            0xd8 => (0, 17),
            0xc7 => (0, 1 + self.be(1)? as usize),
            0xc8 => (0, 1 + self.be(2)? as usize),
            0xc9 => (0, 1 + self.be(4)? as usize),
            _ => return Err(self.malformed("unknown msgpack marker")),
        };
        self.take(extra)?;
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        Ok(())
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
