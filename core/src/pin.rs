//! The pin: what the cluster keeps for every pinned CID, as Go ipfs-cluster's `api.Pin`.
//!
//! Its protobuf form (the CRDT state value) lives in [`crate::codec::pin_pb`]; its JSON
//! form, the one ipfs-cluster's REST API writes, is implemented here with serde.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The role of a pin (ipfs-cluster's sharding model). Regular pins are [`PinType::Data`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PinType {
    /// Shows a bug wherever it appears.
    Bad,
    /// A regular pin ("pin").
    #[default]
    Data,
    /// The original CID of a sharded DAG, never pinned in IPFS ("meta-pin").
    Meta,
    /// The root of the cluster DAG pointing at the shards ("clusterdag-pin").
    ClusterDag,
    /// The root of one shard, pinned with max depth 1 ("shard-pin").
    Shard,
}

impl PinType {
    /// The name used in JSON and in `?filter=`.
    pub fn as_str(self) -> &'static str {
        match self {
            PinType::Bad => "bad-type",
            PinType::Data => "pin",
            PinType::Meta => "meta-pin",
            PinType::ClusterDag => "clusterdag-pin",
            PinType::Shard => "shard-pin",
        }
    }

    /// Parses a JSON name; unknown names are [`PinType::Bad`], as in Go.
    pub fn from_name(name: &str) -> Self {
        match name {
            "pin" => PinType::Data,
            "meta-pin" => PinType::Meta,
            "clusterdag-pin" => PinType::ClusterDag,
            "shard-pin" => PinType::Shard,
            _ => PinType::Bad,
        }
    }
}

/// How IPFS pins the content: the whole DAG or only its root block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PinMode {
    #[default]
    Recursive,
    Direct,
}

impl PinMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PinMode::Recursive => "recursive",
            PinMode::Direct => "direct",
        }
    }

    /// The max depth this mode pins with: -1 (everything) or 0 (the root only).
    pub fn max_depth(self) -> i32 {
        match self {
            PinMode::Recursive => -1,
            PinMode::Direct => 0,
        }
    }
}

/// A mode name that is neither recursive nor direct.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("mode {0:?}: use recursive or direct")]
pub struct UnknownPinMode(pub String);

/// The API's names; empty is recursive, as in Go.
impl std::str::FromStr for PinMode {
    type Err = UnknownPinMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "recursive" | "" => Ok(PinMode::Recursive),
            "direct" => Ok(PinMode::Direct),
            other => Err(UnknownPinMode(other.to_owned())),
        }
    }
}

/// Seconds since the Unix epoch, written as RFC 3339 in JSON. ipfs-cluster keeps pin
/// times at one-second precision in its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
    pub const MAX_RFC3339: UnixTime = UnixTime(253_402_300_799);

    /// RFC 3339 in UTC, as Go's `time.Time` JSON form (e.g. `2024-05-01T12:00:00Z`), or
    /// `None` past year 9999, where Go's `MarshalJSON` fails too.
    pub fn to_rfc3339(self) -> Option<String> {
        if self > Self::MAX_RFC3339 {
            return None;
        }
        let secs = i64::try_from(self.0).ok()?;
        DateTime::<Utc>::from_timestamp(secs, 0)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    /// Parses RFC 3339 (any offset, fractions truncated). Times at or before the epoch,
    /// including Go's zero time, mean "unset" and yield `None`.
    pub fn parse_rfc3339(text: &str) -> Result<Option<Self>, chrono::ParseError> {
        let secs = DateTime::parse_from_rfc3339(text)?.timestamp();
        Ok(u64::try_from(secs).ok().filter(|&s| s > 0).map(UnixTime))
    }
}

/// How Go writes an unset `time.Time`.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A pinned CID and everything the cluster knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub cid: Cid,
    pub pin_type: PinType,
    /// Peers that must pin it; empty means every peer.
    pub allocations: Vec<PeerId>,
    /// -1: recursive; 0: direct; N: N levels below the root.
    pub max_depth: i32,
    /// The linked pin of the sharding chain, if any.
    pub reference: Option<Cid>,
    /// When the pin was submitted.
    pub timestamp: Option<UnixTime>,
    pub replication_factor_min: i32,
    pub replication_factor_max: i32,
    pub name: String,
    pub shard_size: u64,
    /// Allocation hints from the request; not part of the shared state.
    pub user_allocations: Vec<PeerId>,
    /// After this time the cluster unpins it.
    pub expire_at: Option<UnixTime>,
    pub metadata: BTreeMap<String, String>,
    /// Pin by updating from this already-pinned CID (`ipfs pin update`).
    pub pin_update: Option<Cid>,
    /// Addresses (with `/p2p/`) of peers known to have the content.
    pub origins: Vec<Multiaddr>,
}

impl Pin {
    /// A regular recursive pin of `cid` submitted at `now`, with cluster-default
    /// replication and no options (Go's `api.PinCid`).
    pub fn new(cid: Cid, now: UnixTime) -> Self {
        Self {
            cid,
            pin_type: PinType::Data,
            allocations: Vec::new(),
            max_depth: PinMode::Recursive.max_depth(),
            reference: None,
            timestamp: Some(now),
            replication_factor_min: 0,
            replication_factor_max: 0,
            name: String::new(),
            shard_size: 0,
            user_allocations: Vec::new(),
            expire_at: None,
            metadata: BTreeMap::new(),
            pin_update: None,
            origins: Vec::new(),
        }
    }

    /// The mode derived from the max depth, as ipfs-cluster derives it (depths other than
    /// 0 pin recursively).
    pub fn mode(&self) -> PinMode {
        if self.max_depth == 0 {
            PinMode::Direct
        } else {
            PinMode::Recursive
        }
    }

    /// Whether the pin goes to every peer (replication factors -1/-1).
    pub fn is_pin_everywhere(&self) -> bool {
        self.replication_factor_min == -1 && self.replication_factor_max == -1
    }

    /// Whether `peer` should not pin it: the pin is allocated, and not to `peer`.
    pub fn is_remote_pin(&self, peer: &PeerId) -> bool {
        !self.is_pin_everywhere() && !self.allocations.contains(peer)
    }
}

/// The JSON of a pin, field for field as ipfs-cluster v1.1.6 marshals `api.Pin` (the
/// embedded options first, then the pin's own fields).
#[derive(Serialize, Deserialize)]
struct PinJson {
    #[serde(default)]
    replication_factor_min: i32,
    #[serde(default)]
    replication_factor_max: i32,
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    mode: String,
    #[serde(default)]
    shard_size: u64,
    #[serde(default)]
    user_allocations: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    expire_at: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pin_update: Option<String>,
    #[serde(default)]
    origins: Option<Vec<String>>,
    cid: String,
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pin_type: String,
    #[serde(default)]
    allocations: Option<Vec<String>>,
    #[serde(default)]
    max_depth: i32,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    timestamp: String,
}

pub(crate) fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub(crate) fn time_to_json<E: serde::ser::Error>(
    field: &str,
    time: Option<UnixTime>,
) -> Result<String, E> {
    match time {
        None => Ok(GO_ZERO_TIME.to_owned()),
        Some(time) => time.to_rfc3339().ok_or_else(|| {
            E::custom(format!(
                "{field}: {} seconds since 1970 is past year 9999 and has no RFC 3339 form",
                time.0
            ))
        }),
    }
}

pub(crate) fn peers_to_json(peers: &[PeerId]) -> Vec<String> {
    peers.iter().map(|p| p.to_base58()).collect()
}

impl Serialize for Pin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PinJson {
            replication_factor_min: self.replication_factor_min,
            replication_factor_max: self.replication_factor_max,
            name: self.name.clone(),
            mode: self.mode().as_str().to_owned(),
            shard_size: self.shard_size,
            // Go leaves these nil (JSON null) unless set; allocations and origins are
            // always made as (possibly empty) lists when a pin is read from the state.
            user_allocations: (!self.user_allocations.is_empty())
                .then(|| peers_to_json(&self.user_allocations)),
            expire_at: time_to_json("expire_at", self.expire_at)?,
            metadata: (!self.metadata.is_empty()).then(|| self.metadata.clone()),
            pin_update: self.pin_update.map(|c| c.to_string()),
            origins: Some(self.origins.iter().map(ToString::to_string).collect()),
            cid: self.cid.to_string(),
            pin_type: self.pin_type.as_str().to_owned(),
            allocations: Some(peers_to_json(&self.allocations)),
            max_depth: self.max_depth,
            reference: self.reference.map(|c| c.to_string()),
            timestamp: time_to_json("timestamp", self.timestamp)?,
        }
        .serialize(serializer)
    }
}

/// Why a pin's JSON was rejected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PinJsonError {
    #[error("{field}: invalid CID {value:?}: {detail}")]
    Cid {
        field: &'static str,
        value: String,
        detail: String,
    },
    #[error("{field}: invalid peer id {value:?}")]
    Peer { field: &'static str, value: String },
    #[error("{field}: missing")]
    Missing { field: &'static str },
    #[error("{field}: invalid multiaddress {value:?}: {detail}")]
    Multiaddr {
        field: &'static str,
        value: String,
        detail: String,
    },
    #[error("{field}: invalid RFC 3339 time {value:?}: {detail}")]
    Time {
        field: &'static str,
        value: String,
        detail: String,
    },
}

pub(crate) fn cid_from_json(field: &'static str, value: &str) -> Result<Cid, PinJsonError> {
    value.parse().map_err(|e: cid::Error| PinJsonError::Cid {
        field,
        value: value.to_owned(),
        detail: e.to_string(),
    })
}

/// Parses every string of a JSON list (`null` is empty), naming `field` and the bad value
/// in the error `invalid` makes.
fn list_from_json<T: std::str::FromStr>(
    field: &'static str,
    values: Option<Vec<String>>,
    invalid: fn(&'static str, String, T::Err) -> PinJsonError,
) -> Result<Vec<T>, PinJsonError> {
    values
        .unwrap_or_default()
        .into_iter()
        .map(|value| value.parse().map_err(|e| invalid(field, value, e)))
        .collect()
}

pub(crate) fn peers_from_json(
    field: &'static str,
    values: Option<Vec<String>>,
) -> Result<Vec<PeerId>, PinJsonError> {
    list_from_json(field, values, |field, value, _| PinJsonError::Peer {
        field,
        value,
    })
}

pub(crate) fn multiaddrs_from_json(
    field: &'static str,
    values: Option<Vec<String>>,
) -> Result<Vec<Multiaddr>, PinJsonError> {
    list_from_json(field, values, |field, value, e: multiaddr::Error| {
        PinJsonError::Multiaddr {
            field,
            value,
            detail: e.to_string(),
        }
    })
}

pub(crate) fn time_from_json(
    field: &'static str,
    value: &str,
) -> Result<Option<UnixTime>, PinJsonError> {
    if value.is_empty() {
        return Ok(None);
    }
    UnixTime::parse_rfc3339(value).map_err(|e| PinJsonError::Time {
        field,
        value: value.to_owned(),
        detail: e.to_string(),
    })
}

impl TryFrom<PinJson> for Pin {
    type Error = PinJsonError;

    fn try_from(json: PinJson) -> Result<Self, Self::Error> {
        let cid = cid_from_json("cid", &json.cid)?;
        // Go keeps `mode` and `max_depth` in step; a "direct" mode with the default depth
        // means depth 0.
        let max_depth = if json.mode == "direct" && json.max_depth == -1 {
            0
        } else {
            json.max_depth
        };
        Ok(Pin {
            cid,
            pin_type: if json.pin_type.is_empty() {
                PinType::Data
            } else {
                PinType::from_name(&json.pin_type)
            },
            allocations: peers_from_json("allocations", json.allocations)?,
            max_depth,
            reference: json
                .reference
                .map(|r| cid_from_json("reference", &r))
                .transpose()?,
            timestamp: time_from_json("timestamp", &json.timestamp)?,
            replication_factor_min: json.replication_factor_min,
            replication_factor_max: json.replication_factor_max,
            name: json.name,
            shard_size: json.shard_size,
            user_allocations: peers_from_json("user_allocations", json.user_allocations)?,
            expire_at: time_from_json("expire_at", &json.expire_at)?,
            metadata: json.metadata.unwrap_or_default(),
            pin_update: json
                .pin_update
                .map(|c| cid_from_json("pin_update", &c))
                .transpose()?,
            origins: multiaddrs_from_json("origins", json.origins)?,
        })
    }
}

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = PinJson::deserialize(deserializer)?;
        Pin::try_from(json).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.cid, self.pin_type.as_str())?;
        if !self.name.is_empty() {
            write!(f, ", name {:?}", self.name)?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::dagpb::tests::arb_cid;
    use proptest::prelude::*;

    /// An Ed25519 peer id (`00 24 08 01 12 20` then key bytes 1..=32).
    pub(crate) const GOLDEN_PEER: &str = "12D3KooW9tJMax94Lrqw7Y5Qw36viGQAS2gTEPQ5Wg1vTk7xPfQs";
    pub(crate) const GOLDEN_CID: &str = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR";

    /// A pin with the options a user commonly sets: name, replication 2..3, an expiry and
    /// two metadata entries, allocated to one peer.
    pub(crate) fn golden_pin() -> Pin {
        let mut pin = Pin::new(GOLDEN_CID.parse().unwrap(), UnixTime(1_735_689_600));
        pin.allocations = vec![GOLDEN_PEER.parse().unwrap()];
        pin.replication_factor_min = 2;
        pin.replication_factor_max = 3;
        pin.name = "docs".into();
        pin.expire_at = Some(UnixTime(1_767_225_600));
        pin.metadata = [("b", "2"), ("a", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        pin
    }

    /// Golden vector: the JSON ipfs-cluster's REST API writes for this pin once read back
    /// from the state (GET /allocations/{cid}), worked out from the `json` tags of
    /// `api.PinOptions` (embedded first) and `api.Pin`, Go's nil-slice/nil-map rules after
    /// `ProtoUnmarshal` (allocations and origins made empty, user_allocations nil) and
    /// `time.Time`'s RFC 3339 form.
    #[test]
    fn golden_json() {
        let expected = concat!(
            r#"{"replication_factor_min":2,"replication_factor_max":3,"name":"docs","#,
            r#""mode":"recursive","shard_size":0,"user_allocations":null,"#,
            r#""expire_at":"2026-01-01T00:00:00Z","metadata":{"a":"1","b":"2"},"#,
            r#""pin_update":null,"origins":[],"#,
            r#""cid":"QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR","type":"pin","#,
            r#""allocations":["12D3KooW9tJMax94Lrqw7Y5Qw36viGQAS2gTEPQ5Wg1vTk7xPfQs"],"#,
            r#""max_depth":-1,"reference":null,"timestamp":"2025-01-01T00:00:00Z"}"#
        );
        assert_eq!(serde_json::to_string(&golden_pin()).unwrap(), expected);
        assert_eq!(serde_json::from_str::<Pin>(expected).unwrap(), golden_pin());
    }

    #[test]
    fn json_from_a_minimal_request() {
        let pin: Pin = serde_json::from_str(
            r#"{"cid":"QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR","mode":"direct","max_depth":-1,"expire_at":"0001-01-01T00:00:00Z","metadata":null}"#,
        )
        .unwrap();
        assert_eq!(pin.mode(), PinMode::Direct);
        assert_eq!(pin.max_depth, 0);
        assert_eq!(pin.pin_type, PinType::Data);
        assert_eq!(pin.expire_at, None);
        assert!(pin.metadata.is_empty());
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = serde_json::from_str::<Pin>(r#"{"cid":"nope"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("cid: invalid CID \"nope\""),
            "{err}"
        );
        let err = serde_json::from_str::<Pin>(&format!(
            r#"{{"cid":"{GOLDEN_CID}","allocations":["bob"]}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("allocations: invalid peer id"),
            "{err}"
        );
        let err = serde_json::from_str::<Pin>(&format!(
            r#"{{"cid":"{GOLDEN_CID}","timestamp":"yesterday"}}"#
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("timestamp: invalid RFC 3339"),
            "{err}"
        );
    }

    #[test]
    fn times_with_offsets_and_fractions() {
        assert_eq!(
            UnixTime::parse_rfc3339("2025-01-01T01:00:00.75+01:00").unwrap(),
            Some(UnixTime(1_735_689_600))
        );
        assert_eq!(UnixTime::parse_rfc3339(GO_ZERO_TIME).unwrap(), None);
        assert_eq!(
            UnixTime(1_735_689_600).to_rfc3339().as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            UnixTime::MAX_RFC3339.to_rfc3339().as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
    }

    /// A state value may carry any uint64 time (Go accepts it); like Go's MarshalJSON,
    /// the JSON form then fails with an error instead of writing a time it cannot parse.
    #[test]
    fn times_past_year_9999_have_no_json_form() {
        let mut pin = golden_pin();
        pin.timestamp = Some(UnixTime(UnixTime::MAX_RFC3339.0 + 1));
        let err = serde_json::to_string(&pin).unwrap_err();
        assert!(
            err.to_string().contains("timestamp: 253402300800 seconds"),
            "{err}"
        );
        pin.timestamp = Some(UnixTime(u64::MAX));
        assert!(serde_json::to_string(&pin).is_err());
    }

    pub(crate) fn arb_peer() -> impl Strategy<Value = PeerId> {
        any::<[u8; 32]>().prop_map(|key| {
            let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
            bytes.extend_from_slice(&key);
            PeerId::from_bytes(&bytes).unwrap()
        })
    }

    fn arb_origin() -> impl Strategy<Value = Multiaddr> {
        (any::<[u8; 4]>(), any::<u16>(), arb_peer()).prop_map(|(ip, port, peer)| {
            format!(
                "/ip4/{}.{}.{}.{}/tcp/{port}/p2p/{peer}",
                ip[0], ip[1], ip[2], ip[3]
            )
            .parse()
            .unwrap()
        })
    }

    fn arb_time() -> impl Strategy<Value = Option<UnixTime>> {
        proptest::option::of((1u64..4_000_000_000).prop_map(UnixTime))
    }

    /// Pins as they exist in the shared state (no request-only user allocations).
    pub(crate) fn arb_pin() -> impl Strategy<Value = Pin> {
        let head = (
            arb_cid(),
            prop_oneof![
                Just(PinType::Data),
                Just(PinType::Meta),
                Just(PinType::ClusterDag),
                Just(PinType::Shard)
            ],
            proptest::collection::vec(arb_peer(), 0..4),
            -1i32..3,
            proptest::option::of(arb_cid()),
            arb_time(),
        );
        let options = (
            -1i32..10,
            -1i32..10,
            ".{0,16}",
            any::<u64>(),
            arb_time(),
            proptest::collection::btree_map(".{0,8}", ".{0,8}", 0..4),
            proptest::option::of(arb_cid()),
            proptest::collection::vec(arb_origin(), 0..3),
        );
        (head, options).prop_map(
            |(
                (cid, pin_type, allocations, max_depth, reference, timestamp),
                (rmin, rmax, name, shard_size, expire_at, metadata, pin_update, origins),
            )| Pin {
                cid,
                pin_type,
                allocations,
                max_depth,
                reference,
                timestamp,
                replication_factor_min: rmin,
                replication_factor_max: rmax,
                name,
                shard_size,
                user_allocations: Vec::new(),
                expire_at,
                metadata,
                pin_update,
                origins,
            },
        )
    }

    proptest! {
        #[test]
        fn json_round_trip(mut pin in arb_pin(), user_allocations in proptest::collection::vec(arb_peer(), 0..3)) {
            pin.user_allocations = user_allocations;
            let json = serde_json::to_string(&pin).unwrap();
            prop_assert_eq!(serde_json::from_str::<Pin>(&json).unwrap(), pin);
        }
    }
}
