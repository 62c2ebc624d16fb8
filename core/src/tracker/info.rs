//! What the cluster reports about a pin: one peer's view ([`PinInfo`]) and the cluster's
//! ([`GlobalPinInfo`], a peer map of them), in the JSON ipfs-cluster v1.1.6's REST API writes.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::status::{StatusFilter, TrackerStatus};
use super::PeerIdentity;
use crate::pin::{
    cid_from_json, multiaddrs_from_json, null_as_default, peers_from_json, peers_to_json,
    time_from_json, time_to_json, Pin, PinJsonError, UnixTime,
};

/// One peer's view of a pin, without the pin's own fields (Go's `PinInfoShort`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinInfoShort {
    pub peer_name: String,
    /// The peer's IPFS daemon, when known.
    pub ipfs_peer_id: Option<PeerId>,
    pub ipfs_peer_addresses: Vec<Multiaddr>,
    pub status: TrackerStatus,
    /// When the status last changed, Unix nanoseconds; `None` is unknown.
    pub timestamp: Option<i64>,
    /// Why the last operation failed, or why the status is an error.
    pub error: String,
    /// Attempts of the current operation (carried over retries).
    pub attempt_count: u32,
    /// Whether the pin went to the priority queue.
    pub priority_pin: bool,
}

/// One peer's view of a pin (Go's `PinInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinInfo {
    pub cid: Cid,
    pub name: String,
    /// The peer this view is from.
    pub peer: PeerId,
    pub allocations: Vec<PeerId>,
    pub origins: Vec<Multiaddr>,
    /// When the pin was submitted.
    pub created: Option<UnixTime>,
    pub metadata: BTreeMap<String, String>,
    pub short: PinInfoShort,
}

impl PinInfo {
    /// `peer`'s view of `pin`, with the pin's fields copied and `short` as given.
    pub fn of_pin(pin: &Pin, peer: PeerId, short: PinInfoShort) -> Self {
        Self {
            cid: pin.cid,
            name: pin.name.clone(),
            peer,
            allocations: pin.allocations.clone(),
            origins: pin.origins.clone(),
            created: pin.timestamp,
            metadata: pin.metadata.clone(),
            short,
        }
    }

    /// What is known of the view of `cid` of a peer (`who`: its name and IPFS daemon,
    /// from its latest ping) when it could not say (`cluster_error`, with `error` saying
    /// why), at `now` (Unix nanoseconds).
    pub fn unanswered(cid: Cid, who: &PeerIdentity, error: String, now: i64) -> Self {
        Self {
            cid,
            name: String::new(),
            peer: who.peer,
            allocations: Vec::new(),
            origins: Vec::new(),
            created: None,
            metadata: BTreeMap::new(),
            short: PinInfoShort {
                peer_name: who.peer_name.clone(),
                ipfs_peer_id: who.ipfs_peer_id,
                ipfs_peer_addresses: who.ipfs_peer_addresses.clone(),
                status: TrackerStatus::ClusterError,
                timestamp: Some(now),
                error,
                ..PinInfoShort::default()
            },
        }
    }
}

/// The cluster's view of a pin: its fields and every peer's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalPinInfo {
    pub cid: Cid,
    pub name: String,
    pub allocations: Vec<PeerId>,
    pub origins: Vec<Multiaddr>,
    pub created: Option<UnixTime>,
    pub metadata: BTreeMap<String, String>,
    /// Views by peer id (base58).
    pub peer_map: BTreeMap<String, PinInfoShort>,
}

impl GlobalPinInfo {
    /// The global view made of one peer's.
    pub fn new(info: PinInfo) -> Self {
        let mut global = Self {
            cid: info.cid,
            name: String::new(),
            allocations: Vec::new(),
            origins: Vec::new(),
            created: None,
            metadata: BTreeMap::new(),
            peer_map: BTreeMap::new(),
        };
        global.set_pin_fields(&info);
        global.peer_map.insert(info.peer.to_base58(), info.short);
        global
    }

    /// Each CID's views gathered into one global view, in the order of `cids`; a CID with
    /// no view is left out.
    pub fn group(cids: &[Cid], infos: impl IntoIterator<Item = PinInfo>) -> Vec<Self> {
        let mut by_cid: BTreeMap<Cid, GlobalPinInfo> = BTreeMap::new();
        for info in infos {
            match by_cid.get_mut(&info.cid) {
                Some(global) => global.add(info),
                None => {
                    by_cid.insert(info.cid, GlobalPinInfo::new(info));
                }
            }
        }
        cids.iter().filter_map(|cid| by_cid.remove(cid)).collect()
    }

    /// Adds (or replaces) one peer's view. The pin's fields come from the latest view of
    /// a peer that knows the pin: one that could not answer (`cluster_error`) or has not
    /// heard of it yet (`unpinned`) knows nothing of its name or options.
    pub fn add(&mut self, info: PinInfo) {
        if !matches!(
            info.short.status,
            TrackerStatus::ClusterError | TrackerStatus::Unpinned
        ) {
            self.set_pin_fields(&info);
        }
        self.peer_map.insert(info.peer.to_base58(), info.short);
    }

    fn set_pin_fields(&mut self, info: &PinInfo) {
        self.cid = info.cid;
        self.name.clone_from(&info.name);
        self.allocations.clone_from(&info.allocations);
        self.origins.clone_from(&info.origins);
        self.created = info.created;
        self.metadata.clone_from(&info.metadata);
    }

    /// Whether any peer's status passes the filter.
    pub fn matches(&self, filter: StatusFilter) -> bool {
        self.peer_map.values().any(|p| filter.matches(p.status))
    }
}

/// Unix nanoseconds as Go's `time.Time` JSON writes them (RFC 3339, fraction without
/// trailing zeros), `None` as Go's zero time.
pub fn nanos_to_json(nanos: Option<i64>) -> String {
    let Some(nanos) = nanos else {
        return GO_ZERO_TIME.to_owned();
    };
    let time = DateTime::<Utc>::from_timestamp_nanos(nanos);
    let mut text = time.to_rfc3339_opts(SecondsFormat::Secs, true);
    let fraction = nanos.rem_euclid(1_000_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:09}");
        text.insert_str(
            text.len() - 1,
            &format!(".{}", digits.trim_end_matches('0')),
        );
    }
    text
}

pub(crate) fn nanos_from_json(
    field: &'static str,
    text: &str,
) -> Result<Option<i64>, PinJsonError> {
    if text.is_empty() {
        return Ok(None);
    }
    let time = DateTime::parse_from_rfc3339(text).map_err(|e| PinJsonError::Time {
        field,
        value: text.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(time.timestamp_nanos_opt().filter(|&n| n > 0))
}

const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Serialize, Deserialize)]
struct ShortJson {
    #[serde(default)]
    peername: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    ipfs_peer_id: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    ipfs_peer_addresses: Vec<String>,
    #[serde(default)]
    status: TrackerStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    timestamp: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    attempt_count: u32,
    #[serde(default)]
    priority_pin: bool,
}

impl From<&PinInfoShort> for ShortJson {
    fn from(short: &PinInfoShort) -> Self {
        Self {
            peername: short.peer_name.clone(),
            ipfs_peer_id: short
                .ipfs_peer_id
                .map(|p| p.to_base58())
                .unwrap_or_default(),
            ipfs_peer_addresses: short
                .ipfs_peer_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            status: short.status,
            timestamp: nanos_to_json(short.timestamp),
            error: short.error.clone(),
            attempt_count: short.attempt_count,
            priority_pin: short.priority_pin,
        }
    }
}

impl TryFrom<ShortJson> for PinInfoShort {
    type Error = PinJsonError;

    fn try_from(json: ShortJson) -> Result<Self, Self::Error> {
        let ipfs_peer_id = if json.ipfs_peer_id.is_empty() {
            None
        } else {
            peers_from_json("ipfs_peer_id", Some(vec![json.ipfs_peer_id]))?.pop()
        };
        Ok(Self {
            peer_name: json.peername,
            ipfs_peer_id,
            ipfs_peer_addresses: multiaddrs_from_json(
                "ipfs_peer_addresses",
                Some(json.ipfs_peer_addresses),
            )?,
            status: json.status,
            timestamp: nanos_from_json("timestamp", &json.timestamp)?,
            error: json.error,
            attempt_count: json.attempt_count,
            priority_pin: json.priority_pin,
        })
    }
}

/// The pin fields both JSON forms share, in Go's field order; only a [`PinInfo`] has a
/// peer.
#[derive(Serialize, Deserialize)]
struct PinFieldsJson {
    cid: String,
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<String>,
    #[serde(default)]
    allocations: Option<Vec<String>>,
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    created: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

struct PinFields {
    cid: Cid,
    name: String,
    peer: Option<PeerId>,
    allocations: Vec<PeerId>,
    origins: Vec<Multiaddr>,
    created: Option<UnixTime>,
    metadata: BTreeMap<String, String>,
}

impl PinFieldsJson {
    fn new<E: serde::ser::Error>(
        cid: &Cid,
        name: &str,
        peer: Option<&PeerId>,
        allocations: &[PeerId],
        origins: &[Multiaddr],
        created: Option<UnixTime>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, E> {
        Ok(Self {
            cid: cid.to_string(),
            name: name.to_owned(),
            peer: peer.map(|p| p.to_base58()),
            allocations: Some(peers_to_json(allocations)),
            origins: Some(origins.iter().map(ToString::to_string).collect()),
            created: time_to_json("created", created)?,
            metadata: (!metadata.is_empty()).then(|| metadata.clone()),
        })
    }

    fn parse(self) -> Result<PinFields, PinJsonError> {
        Ok(PinFields {
            cid: cid_from_json("cid", &self.cid)?,
            name: self.name,
            peer: peers_from_json("peer", self.peer.map(|p| vec![p]))?.pop(),
            allocations: peers_from_json("allocations", self.allocations)?,
            origins: multiaddrs_from_json("origins", self.origins)?,
            created: time_from_json("created", &self.created)?,
            metadata: self.metadata.unwrap_or_default(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct PinInfoJson {
    #[serde(flatten)]
    pin: PinFieldsJson,
    #[serde(flatten)]
    short: ShortJson,
}

#[derive(Serialize, Deserialize)]
struct GlobalPinInfoJson {
    #[serde(flatten)]
    pin: PinFieldsJson,
    #[serde(default)]
    peer_map: Option<BTreeMap<String, ShortJson>>,
}

impl Serialize for PinInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PinInfoJson {
            pin: PinFieldsJson::new(
                &self.cid,
                &self.name,
                Some(&self.peer),
                &self.allocations,
                &self.origins,
                self.created,
                &self.metadata,
            )?,
            short: ShortJson::from(&self.short),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PinInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = PinInfoJson::deserialize(deserializer)?;
        let parse = || -> Result<Self, PinJsonError> {
            let pin = json.pin.parse()?;
            let peer = pin.peer.ok_or(PinJsonError::Missing { field: "peer" })?;
            Ok(Self {
                cid: pin.cid,
                name: pin.name,
                peer,
                allocations: pin.allocations,
                origins: pin.origins,
                created: pin.created,
                metadata: pin.metadata,
                short: json.short.try_into()?,
            })
        };
        parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for GlobalPinInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        GlobalPinInfoJson {
            pin: PinFieldsJson::new(
                &self.cid,
                &self.name,
                None,
                &self.allocations,
                &self.origins,
                self.created,
                &self.metadata,
            )?,
            peer_map: Some(
                self.peer_map
                    .iter()
                    .map(|(peer, short)| (peer.clone(), ShortJson::from(short)))
                    .collect(),
            ),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GlobalPinInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = GlobalPinInfoJson::deserialize(deserializer)?;
        let parse = || -> Result<Self, PinJsonError> {
            let pin = json.pin.parse()?;
            let peer_map = json
                .peer_map
                .unwrap_or_default()
                .into_iter()
                .map(|(peer, short)| Ok((peer, short.try_into()?)))
                .collect::<Result<_, PinJsonError>>()?;
            Ok(Self {
                cid: pin.cid,
                name: pin.name,
                allocations: pin.allocations,
                origins: pin.origins,
                created: pin.created,
                metadata: pin.metadata,
                peer_map,
            })
        };
        parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_fields_come_from_peers_that_know_the_pin() {
        let key = |seed: u8| {
            let key = libp2p_identity::ed25519::SecretKey::try_from_bytes([seed; 32]).unwrap();
            libp2p_identity::PublicKey::from(libp2p_identity::ed25519::Keypair::from(key).public())
                .to_peer_id()
        };
        let cid: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
            .parse()
            .unwrap();
        let mut named = Pin::new(cid, UnixTime(1_700_000_000));
        named.name = "named".into();
        let view = |pin: &Pin, seed: u8, status: TrackerStatus| {
            PinInfo::of_pin(
                pin,
                key(seed),
                PinInfoShort {
                    status,
                    ..PinInfoShort::default()
                },
            )
        };
        let unknown = Pin::new(cid, UnixTime(0));
        let mut global = GlobalPinInfo::new(view(&named, 1, TrackerStatus::Pinned));
        global.add(view(&unknown, 2, TrackerStatus::Unpinned));
        global.add(view(&unknown, 3, TrackerStatus::ClusterError));
        assert_eq!(global.name, "named");
        assert_eq!(global.peer_map.len(), 3);
        let mut from_remote = GlobalPinInfo::new(view(&unknown, 2, TrackerStatus::Unpinned));
        from_remote.add(view(&named, 1, TrackerStatus::Remote));
        assert_eq!(from_remote.name, "named");
    }

    #[test]
    fn timestamps_are_written_like_go_rfc3339nano() {
        assert_eq!(nanos_to_json(None), GO_ZERO_TIME);
        assert_eq!(
            nanos_to_json(Some(1_735_689_600_000_000_000)),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            nanos_to_json(Some(1_735_689_600_120_000_000)),
            "2025-01-01T00:00:00.12Z"
        );
        assert_eq!(
            nanos_to_json(Some(1_735_689_600_000_000_001)),
            "2025-01-01T00:00:00.000000001Z"
        );
        for nanos in [1, 1_735_689_600_120_000_000, 1_735_689_600_000_000_001] {
            let text = nanos_to_json(Some(nanos));
            assert_eq!(nanos_from_json("t", &text).unwrap(), Some(nanos));
        }
        assert_eq!(nanos_from_json("t", GO_ZERO_TIME).unwrap(), None);
        assert!(nanos_from_json("t", "yesterday").is_err());
    }
}
