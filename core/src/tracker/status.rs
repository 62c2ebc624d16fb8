//! Pin statuses and status filters (ipfs-cluster's `api.TrackerStatus`), and the IPFS
//! daemon's own pin list that statuses are derived against.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cid::Cid;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a pin stands on one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackerStatus {
    /// Unknown; as a filter, "all".
    #[default]
    Undefined,
    /// The peer could not be asked, or could not answer.
    ClusterError,
    /// Pinning failed; it will be retried.
    PinError,
    /// Unpinning failed; it will be retried.
    UnpinError,
    /// The IPFS daemon has it pinned.
    Pinned,
    /// The IPFS daemon is pinning it now.
    Pinning,
    /// The IPFS daemon is unpinning it now.
    Unpinning,
    /// Not pinned, and not in the cluster's pinset.
    Unpinned,
    /// In the pinset, allocated to other peers.
    Remote,
    /// Waiting for a pinning slot.
    PinQueued,
    /// Waiting for an unpinning slot.
    UnpinQueued,
    /// A meta pin: tracked in the cluster DAG, never pinned itself.
    Sharded,
    /// Allocated here and in the pinset, yet not pinned, and no operation on its way.
    UnexpectedlyUnpinned,
}

impl TrackerStatus {
    /// Every status, in ipfs-cluster's bit order.
    pub const ALL: [TrackerStatus; 13] = [
        TrackerStatus::Undefined,
        TrackerStatus::ClusterError,
        TrackerStatus::PinError,
        TrackerStatus::UnpinError,
        TrackerStatus::Pinned,
        TrackerStatus::Pinning,
        TrackerStatus::Unpinning,
        TrackerStatus::Unpinned,
        TrackerStatus::Remote,
        TrackerStatus::PinQueued,
        TrackerStatus::UnpinQueued,
        TrackerStatus::Sharded,
        TrackerStatus::UnexpectedlyUnpinned,
    ];

    /// The name in JSON and in `?filter=`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackerStatus::Undefined => "undefined",
            TrackerStatus::ClusterError => "cluster_error",
            TrackerStatus::PinError => "pin_error",
            TrackerStatus::UnpinError => "unpin_error",
            TrackerStatus::Pinned => "pinned",
            TrackerStatus::Pinning => "pinning",
            TrackerStatus::Unpinning => "unpinning",
            TrackerStatus::Unpinned => "unpinned",
            TrackerStatus::Remote => "remote",
            TrackerStatus::PinQueued => "pin_queued",
            TrackerStatus::UnpinQueued => "unpin_queued",
            TrackerStatus::Sharded => "sharded",
            TrackerStatus::UnexpectedlyUnpinned => "unexpectedly_unpinned",
        }
    }

    /// The status of a name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether this is one of the error statuses (the `error` filter).
    pub fn is_error(self) -> bool {
        StatusFilter::ERROR.contains(self)
    }

    fn bit(self) -> u16 {
        match Self::ALL.iter().position(|&s| s == self) {
            Some(0) | None => 0,
            Some(i) => 1 << i,
        }
    }
}

impl fmt::Display for TrackerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TrackerStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TrackerStatus {
    /// Unknown names read as [`TrackerStatus::Undefined`], as Go reads them, so that a
    /// client keeps working against a peer that knows more statuses.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Self::from_name(&name).unwrap_or(TrackerStatus::Undefined))
    }
}

/// A set of statuses to list, as `?filter=pin_error,queued` selects them. The empty set
/// (and `undefined`) selects everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusFilter(u16);

/// A `?filter=` with a name that is no status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status filter {name:?}; use a comma-separated list of: {}", StatusFilter::NAMES.join(", "))]
pub struct StatusFilterError {
    pub name: String,
}

impl StatusFilter {
    /// Every status.
    pub const ALL: StatusFilter = StatusFilter(0);
    /// cluster_error, pin_error and unpin_error.
    pub const ERROR: StatusFilter = StatusFilter(0b1110);
    /// pin_queued and unpin_queued.
    pub const QUEUED: StatusFilter = StatusFilter(0b110_0000_0000);

    /// The names a filter is written with: every status, then the two groups.
    pub const NAMES: [&'static str; 15] = [
        "undefined",
        "cluster_error",
        "pin_error",
        "unpin_error",
        "pinned",
        "pinning",
        "unpinning",
        "unpinned",
        "remote",
        "pin_queued",
        "unpin_queued",
        "sharded",
        "unexpectedly_unpinned",
        "error",
        "queued",
    ];

    /// Its bits, as Go's `TrackerStatus` bit-or.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The filter of Go's bit-or of statuses (0 is every status); unknown bits are kept
    /// and match nothing.
    pub fn from_bits(bits: u16) -> Self {
        StatusFilter(bits)
    }

    /// The one status this filter holds, if it holds exactly one.
    pub fn single(self) -> Option<TrackerStatus> {
        TrackerStatus::ALL
            .iter()
            .copied()
            .find(|s| s.bit() != 0 && s.bit() == self.0)
    }

    /// A filter of the given statuses.
    pub fn of(statuses: &[TrackerStatus]) -> Self {
        StatusFilter(statuses.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Parses a comma-separated list of names (spaces ignored).
    pub fn parse(text: &str) -> Result<Self, StatusFilterError> {
        let text: String = text.chars().filter(|c| *c != ' ').collect();
        let mut bits = 0;
        for name in text.split(',').filter(|n| !n.is_empty()) {
            bits |= match name {
                "error" => Self::ERROR.0,
                "queued" => Self::QUEUED.0,
                _ => TrackerStatus::from_name(name)
                    .ok_or_else(|| StatusFilterError {
                        name: name.to_owned(),
                    })?
                    .bit(),
            };
        }
        Ok(StatusFilter(bits))
    }

    /// Whether a pin in `status` is listed: always for the all-filter, and an undefined
    /// status always passes (Go's `Match`).
    pub fn matches(self, status: TrackerStatus) -> bool {
        self.0 == 0 || status == TrackerStatus::Undefined || self.0 & status.bit() != 0
    }

    /// Whether `status` is in the set itself (the all-filter contains nothing).
    fn contains(self, status: TrackerStatus) -> bool {
        self.0 & status.bit() != 0
    }

    /// Whether listing needs the IPFS daemon's pin list: only to tell pinned from
    /// unexpectedly unpinned.
    pub fn needs_daemon_pins(self) -> bool {
        self.matches_any(&[TrackerStatus::Pinned, TrackerStatus::UnexpectedlyUnpinned])
    }

    /// Whether listing needs the cluster's pinset. Otherwise, only operations in flight or
    /// failed can match, and the listing comes from the tracker alone.
    pub fn needs_pinset(self) -> bool {
        self.matches_any(&[
            TrackerStatus::Pinned,
            TrackerStatus::UnexpectedlyUnpinned,
            TrackerStatus::Sharded,
            TrackerStatus::Remote,
        ])
    }

    fn matches_any(self, statuses: &[TrackerStatus]) -> bool {
        self.0 == 0 || self.0 & Self::of(statuses).0 != 0
    }
}

impl fmt::Display for StatusFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("undefined");
        }
        let names: Vec<&str> = TrackerStatus::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(TrackerStatus::as_str)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// How the IPFS daemon pins a CID, as `pin/ls` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpfsPinType {
    Direct,
    Recursive,
    /// Pinned as part of another pin's DAG; not a pin of its own.
    Indirect,
}

impl IpfsPinType {
    /// Reads a `pin/ls` type: `direct`, `recursive` (also Kubo's `recursive (N)` for
    /// depth-limited pins) or `indirect` (also `indirect through <cid>`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.starts_with("recursive") {
            Some(IpfsPinType::Recursive)
        } else if text.starts_with("indirect") {
            Some(IpfsPinType::Indirect)
        } else if text == "direct" {
            Some(IpfsPinType::Direct)
        } else {
            None
        }
    }

    /// The status this gives a pin the peer should hold: direct and recursive pins count
    /// as pinned, as in ipfs-cluster.
    pub fn tracker_status(self) -> TrackerStatus {
        match self {
            IpfsPinType::Direct | IpfsPinType::Recursive => TrackerStatus::Pinned,
            IpfsPinType::Indirect => TrackerStatus::UnexpectedlyUnpinned,
        }
    }
}

/// The longest multihash kept: a 64-byte digest with its code and length varints.
const MAX_MULTIHASH_BYTES: usize = 80;

/// The IPFS daemon's pin list, keyed by multihash so that CIDv0 and CIDv1 of the same
/// content match, as the daemon's pinner matches them: a listing, plus the pins and unpins
/// [recorded](Self::record) since it was read. Clones share the listing and copy only the
/// changes, so a listing kept current with each completed operation is cheap to hand out.
#[derive(Clone, Default)]
pub struct DaemonPins {
    listed: Arc<HashMap<Box<[u8]>, IpfsPinType>>,
    changed: HashMap<Box<[u8]>, Option<IpfsPinType>>,
}

impl DaemonPins {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            listed: Arc::new(HashMap::with_capacity(capacity)),
            changed: HashMap::new(),
        }
    }

    fn key(cid: &Cid) -> Box<[u8]> {
        cid.hash().to_bytes().into_boxed_slice()
    }

    /// Records a pin from the daemon's list; the latest type read for a content wins.
    pub fn insert(&mut self, cid: &Cid, pin_type: IpfsPinType) {
        let key = Self::key(cid);
        self.changed.remove(&key);
        Arc::make_mut(&mut self.listed).insert(key, pin_type);
    }

    /// Records a pin (`Some`) or an unpin (`None`) completed after the listing was read; it
    /// overrides what the listing says of that content.
    pub fn record(&mut self, cid: &Cid, pin_type: Option<IpfsPinType>) {
        self.changed.insert(Self::key(cid), pin_type);
    }

    /// Changes recorded since the listing.
    pub fn changes(&self) -> usize {
        self.changed.len()
    }

    /// How the daemon pins `cid`'s content, if it does.
    pub fn get(&self, cid: &Cid) -> Option<IpfsPinType> {
        let mut key = [0u8; MAX_MULTIHASH_BYTES];
        let len = cid.hash().write(&mut key[..]).ok()?;
        match self.changed.get(&key[..len]) {
            Some(changed) => *changed,
            None => self.listed.get(&key[..len]).copied(),
        }
    }

    pub fn len(&self) -> usize {
        let listed = self.listed.len();
        self.changed.iter().fold(listed, |len, (key, now)| {
            match (self.listed.contains_key(key), now) {
                (false, Some(_)) => len + 1,
                (true, None) => len - 1,
                _ => len,
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Extend<(Cid, IpfsPinType)> for DaemonPins {
    fn extend<T: IntoIterator<Item = (Cid, IpfsPinType)>>(&mut self, iter: T) {
        for (cid, pin_type) in iter {
            self.insert(&cid, pin_type);
        }
    }
}
