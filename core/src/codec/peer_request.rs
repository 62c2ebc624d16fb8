//! Peer requests (`/pinfold/status/1.0.0`, an id kept from when it carried statuses only):
//! what one peer knows that another peer asks for, so that a peer
//! can answer for the whole cluster (ipfs-cluster asks every peer over its RPC; pinfold
//! peers, and browsers, ask over this protocol): its statuses of the CIDs named (after
//! re-queueing those in error, when asked to recover them), or its connections, for the
//! cluster's connectivity graph, or its latest compaction snapshot, which a new replica
//! loads instead of walking the whole DAG, or a summary: how many of its pins stand in each
//! status (what a dashboard shows without asking for a million statuses), or a garbage
//! collection of its IPFS daemon's repository (asked over [`REPO_GC_PROTOCOL`], whose
//! answers may take as long as a collection does), or a run of delta blocks: a block and
//! its ancestors down to the blocks the asker already has, so that a replica behind by
//! many deltas catches up in a few round trips instead of one per block.
//!
//! One request and one response per stream, each a varint-length-prefixed JSON document.
//! Requests: `{"cids": ["<cid>", ...]}` (at most [`MAX_CIDS`]), with `"recover": true` to
//! recover them first, `{"connections": true}`, `{"snapshot": true}`, `{"summary": true}` or
//! `{"repo_gc": true}`, or `{"ancestors": {"from": "<cid>", "known": ["<cid>", ...],
//! "limit": <n>}}` (at most [`MAX_KNOWN`] known CIDs and [`MAX_ANCESTORS`] blocks).
//! Responses:
//! `{"statuses": [<PinInfo>, ...]}` with one of ipfs-cluster's `PinInfo` JSON objects per CID
//! asked, `{"connections": {"cluster_peers": [...], "ipfs_id": "...", "ipfs_peers": [...]}}`,
//! `{"snapshot": {"root": "<cid>", "height": <n>, "keys": <n>}}`,
//! `{"summary": {"pins": <n>, "statuses": {"pinned": <n>, ...}}}`, `{"repo_gc": <RepoGC>}`
//! (ipfs-cluster's JSON, see [`crate::repo_gc`]), `{"blocks": ["<base64 block>", ...]}`
//! (at most [`MAX_ANCESTOR_BYTES`] of blocks, named by their hash), or `{"error": "<why>"}`
//! (also when a peer has no snapshot to offer).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use cid::Cid;
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::repo_gc::RepoGc;
use crate::tracker::{PinInfo, TrackerStatus};

/// The protocol id.
pub const PROTOCOL: &str = "/pinfold/status/1.0.0";

/// The same messages, for the requests that wait on a repository garbage collection.
pub const REPO_GC_PROTOCOL: &str = "/pinfold/repo-gc/1.0.0";

/// CIDs one request may name.
pub const MAX_CIDS: usize = 1000;

/// Largest request frame: [`MAX_CIDS`] CIDs of up to 100 characters, with room for JSON.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;

/// Largest response frame.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Blocks one ancestors request may ask for.
pub const MAX_ANCESTORS: u32 = 4096;

/// Known CIDs one ancestors request may name.
pub const MAX_KNOWN: usize = 64;

/// Bytes of blocks an ancestors response holds at most: base64 of it fits
/// [`MAX_RESPONSE_BYTES`] with room to spare.
pub const MAX_ANCESTOR_BYTES: usize = 4 << 20;

/// What is asked of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRequest {
    /// The peer's statuses of these CIDs; with `recover`, after it re-queued those in error.
    Statuses { cids: Vec<Cid>, recover: bool },
    /// The peer's connections.
    Connections,
    /// The peer's latest snapshot.
    Snapshot,
    /// How many of the peer's pins stand in each status.
    Summary,
    /// A garbage collection of the peer's IPFS daemon's repository.
    RepoGc,
    /// Up to `limit` delta blocks: `from` and its ancestors, breadth first, not going past
    /// the `known` blocks (the asker's heads).
    Ancestors {
        from: Cid,
        known: Vec<Cid>,
        limit: u32,
    },
}

/// A peer's statuses of the whole pinset, counted: `pins` pins, of which `statuses[s]`
/// stand in status `s` (statuses with no pin are left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSummary {
    pub pins: u64,
    pub statuses: BTreeMap<TrackerStatus, u64>,
}

impl StatusSummary {
    /// Counts one more pin, in `status`.
    pub fn count(&mut self, status: TrackerStatus) {
        self.pins += 1;
        *self.statuses.entry(status).or_default() += 1;
    }

    /// Adds the counts of `other` (another page of the same pinset).
    pub fn add(&mut self, other: &StatusSummary) {
        self.pins += other.pins;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
    }
}

/// A snapshot a peer offers: its root (fetch it and its chunks like delta blocks), the
/// height of the heads it was taken at, and how many keys it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotOffer {
    #[serde(with = "cid_text")]
    pub root: Cid,
    pub height: u64,
    pub keys: u64,
}

mod cid_text {
    use cid::Cid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(cid: &Cid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(cid)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Cid, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Who a peer is connected to: the links of ipfs-cluster's connectivity graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    /// The cluster peers it has a connection to.
    pub cluster_peers: Vec<PeerId>,
    /// Its IPFS daemon's peer id, when the daemon answered.
    pub ipfs_id: Option<PeerId>,
    /// The peers its IPFS daemon is connected to.
    pub ipfs_peers: Vec<PeerId>,
}

/// The answer: the peer's view of each CID asked, its connections, or why it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerResponse {
    Statuses(Vec<PinInfo>),
    Connections(Connections),
    Snapshot(SnapshotOffer),
    Summary(StatusSummary),
    RepoGc(RepoGc),
    /// Delta blocks' bytes, each named by its sha2-256 (see [`PeerRequest::Ancestors`]).
    Blocks(Vec<Vec<u8>>),
    Error(String),
}

/// Why a status message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRequestError {
    #[error("status message is not valid JSON of its shape: {0}")]
    Json(String),
    #[error("status request names {0} CIDs; at most {MAX_CIDS} are allowed")]
    TooManyCids(usize),
    #[error("ancestors request names {known} known CIDs and asks for {limit} blocks; at most {MAX_KNOWN} and {MAX_ANCESTORS} are allowed")]
    TooManyAncestors { known: usize, limit: u32 },
    #[error("blocks response holds {0} bytes of blocks; at most {MAX_ANCESTOR_BYTES} are allowed")]
    TooManyBlockBytes(usize),
    #[error("blocks response holds a block that is not base64: {0}")]
    BadBlock(String),
    #[error("status request names {text:?}, which is not a CID: {reason}")]
    BadCid { text: String, reason: String },
    #[error("status response names {text:?}, which is not a peer id: {reason}")]
    BadPeer { text: String, reason: String },
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_false")]
    recover: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    connections: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    snapshot: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    summary: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    repo_gc: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ancestors: Option<AncestorsJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AncestorsJson {
    from: String,
    known: Vec<String>,
    limit: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsJson {
    cluster_peers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipfs_id: Option<String>,
    ipfs_peers: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statuses: Option<Vec<PinInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connections: Option<ConnectionsJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<SnapshotOffer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<StatusSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repo_gc: Option<RepoGc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl PeerRequest {
    pub fn encode(&self) -> Vec<u8> {
        let none = RequestJson {
            cids: None,
            recover: false,
            connections: false,
            snapshot: false,
            summary: false,
            repo_gc: false,
            ancestors: None,
        };
        let json = match self {
            PeerRequest::Statuses { cids, recover } => RequestJson {
                cids: Some(cids.iter().map(Cid::to_string).collect()),
                recover: *recover,
                ..none
            },
            PeerRequest::Connections => RequestJson {
                connections: true,
                ..none
            },
            PeerRequest::Snapshot => RequestJson {
                snapshot: true,
                ..none
            },
            PeerRequest::Summary => RequestJson {
                summary: true,
                ..none
            },
            PeerRequest::RepoGc => RequestJson {
                repo_gc: true,
                ..none
            },
            PeerRequest::Ancestors { from, known, limit } => RequestJson {
                ancestors: Some(AncestorsJson {
                    from: from.to_string(),
                    known: known.iter().map(Cid::to_string).collect(),
                    limit: *limit,
                }),
                ..none
            },
        };
        serde_json::to_vec(&json).expect("strings serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PeerRequestError> {
        let json: RequestJson =
            serde_json::from_slice(bytes).map_err(|e| PeerRequestError::Json(e.to_string()))?;
        let asked = (json.connections, json.snapshot, json.summary, json.repo_gc);
        if let Some(ancestors) = json.ancestors {
            if json.cids.is_some() || asked != (false, false, false, false) || json.recover {
                return Err(PeerRequestError::Json(
                    "an ancestors request asks for nothing else".into(),
                ));
            }
            if ancestors.known.len() > MAX_KNOWN || ancestors.limit > MAX_ANCESTORS {
                return Err(PeerRequestError::TooManyAncestors {
                    known: ancestors.known.len(),
                    limit: ancestors.limit,
                });
            }
            return Ok(PeerRequest::Ancestors {
                from: cid_from_json(ancestors.from)?,
                known: ancestors
                    .known
                    .into_iter()
                    .map(cid_from_json)
                    .collect::<Result<_, _>>()?,
                limit: ancestors.limit,
            });
        }
        let cids =
            match (json.cids, asked, json.recover) {
                (None, (true, false, false, false), false) => return Ok(PeerRequest::Connections),
                (None, (false, true, false, false), false) => return Ok(PeerRequest::Snapshot),
                (None, (false, false, true, false), false) => return Ok(PeerRequest::Summary),
                (None, (false, false, false, true), false) => return Ok(PeerRequest::RepoGc),
                (Some(cids), (false, false, false, false), _) => cids,
                _ => return Err(PeerRequestError::Json(
                    "a status request asks for one of CIDs' statuses, connections, the snapshot, \
                     a summary or a repository garbage collection"
                        .into(),
                )),
            };
        if cids.len() > MAX_CIDS {
            return Err(PeerRequestError::TooManyCids(cids.len()));
        }
        let cids = cids
            .into_iter()
            .map(cid_from_json)
            .collect::<Result<_, _>>()?;
        Ok(PeerRequest::Statuses {
            cids,
            recover: json.recover,
        })
    }
}

fn cid_from_json(text: String) -> Result<Cid, PeerRequestError> {
    text.parse()
        .map_err(|e: cid::Error| PeerRequestError::BadCid {
            reason: e.to_string(),
            text,
        })
}

fn peers_from_json(texts: Vec<String>) -> Result<Vec<PeerId>, PeerRequestError> {
    texts
        .into_iter()
        .map(|text| {
            text.parse()
                .map_err(|e: libp2p_identity::ParseError| PeerRequestError::BadPeer {
                    reason: e.to_string(),
                    text,
                })
        })
        .collect()
}

impl PeerResponse {
    /// Fails only for a pin whose time cannot be written (past year 9999), as the REST
    /// API's JSON does.
    pub fn encode(&self) -> Result<Vec<u8>, PeerRequestError> {
        let mut json = ResponseJson {
            statuses: None,
            connections: None,
            snapshot: None,
            summary: None,
            repo_gc: None,
            blocks: None,
            error: None,
        };
        match self {
            PeerResponse::Statuses(infos) => json.statuses = Some(infos.clone()),
            PeerResponse::Connections(connections) => {
                json.connections = Some(ConnectionsJson {
                    cluster_peers: connections
                        .cluster_peers
                        .iter()
                        .map(|p| p.to_base58())
                        .collect(),
                    ipfs_id: connections.ipfs_id.as_ref().map(|p| p.to_base58()),
                    ipfs_peers: connections
                        .ipfs_peers
                        .iter()
                        .map(|p| p.to_base58())
                        .collect(),
                })
            }
            PeerResponse::Snapshot(offer) => json.snapshot = Some(*offer),
            PeerResponse::Summary(summary) => json.summary = Some(summary.clone()),
            PeerResponse::RepoGc(gc) => json.repo_gc = Some(gc.clone()),
            PeerResponse::Blocks(blocks) => {
                json.blocks = Some(blocks.iter().map(|b| BASE64.encode(b)).collect())
            }
            PeerResponse::Error(error) => json.error = Some(error.clone()),
        }
        serde_json::to_vec(&json).map_err(|e| PeerRequestError::Json(e.to_string()))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PeerRequestError> {
        let json: ResponseJson =
            serde_json::from_slice(bytes).map_err(|e| PeerRequestError::Json(e.to_string()))?;
        if let Some(blocks) = json.blocks {
            if json.statuses.is_some()
                || json.connections.is_some()
                || json.snapshot.is_some()
                || json.summary.is_some()
                || json.repo_gc.is_some()
                || json.error.is_some()
            {
                return Err(PeerRequestError::Json(
                    "a blocks response holds nothing else".into(),
                ));
            }
            let blocks: Vec<Vec<u8>> = blocks
                .iter()
                .map(|b| {
                    BASE64
                        .decode(b)
                        .map_err(|e| PeerRequestError::BadBlock(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            let bytes = blocks.iter().map(Vec::len).sum();
            if bytes > MAX_ANCESTOR_BYTES {
                return Err(PeerRequestError::TooManyBlockBytes(bytes));
            }
            return Ok(PeerResponse::Blocks(blocks));
        }
        match (
            json.statuses,
            json.connections,
            json.snapshot,
            json.summary,
            json.repo_gc,
            json.error,
        ) {
            (Some(infos), None, None, None, None, None) => Ok(PeerResponse::Statuses(infos)),
            (None, None, Some(offer), None, None, None) => Ok(PeerResponse::Snapshot(offer)),
            (None, None, None, Some(summary), None, None) => Ok(PeerResponse::Summary(summary)),
            (None, None, None, None, Some(gc), None) => Ok(PeerResponse::RepoGc(gc)),
            (None, Some(connections), None, None, None, None) => {
                Ok(PeerResponse::Connections(Connections {
                    cluster_peers: peers_from_json(connections.cluster_peers)?,
                    ipfs_id: connections
                        .ipfs_id
                        .map(|id| peers_from_json(vec![id]))
                        .transpose()?
                        .and_then(|mut ids| ids.pop()),
                    ipfs_peers: peers_from_json(connections.ipfs_peers)?,
                }))
            }
            (None, None, None, None, None, Some(error)) => Ok(PeerResponse::Error(error)),
            _ => Err(PeerRequestError::Json(
                "a status response holds one of statuses, connections, a snapshot, a summary, a \
                 repository garbage collection or an error"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dagpb::dag_pb_cid;
    use crate::test_support::peer;
    use crate::tracker::{PinInfoShort, TrackerStatus};
    use proptest::prelude::*;

    fn info(cid: Cid, status: TrackerStatus, error: String, attempts: u32) -> PinInfo {
        PinInfo {
            cid,
            name: "a name".into(),
            peer: peer(1),
            allocations: vec![peer(2)],
            origins: Vec::new(),
            created: Some(crate::pin::UnixTime(1_700_000_000)),
            metadata: [("k".to_owned(), "v".to_owned())].into(),
            short: PinInfoShort {
                peer_name: "p1".into(),
                ipfs_peer_id: Some(peer(3)),
                ipfs_peer_addresses: Vec::new(),
                status,
                timestamp: Some(1_700_000_000_123_456_789),
                error,
                attempt_count: attempts,
                priority_pin: attempts.is_multiple_of(2),
            },
        }
    }

    proptest! {
        #[test]
        fn requests_round_trip(seeds in proptest::collection::vec(any::<[u8; 8]>(), 0..MAX_CIDS)) {
            let cids: Vec<Cid> = seeds.iter().map(|s| dag_pb_cid(s)).collect();
            for recover in [false, true] {
                let request = PeerRequest::Statuses { cids: cids.clone(), recover };
                let bytes = request.encode();
                prop_assert!(bytes.len() <= MAX_REQUEST_BYTES);
                prop_assert_eq!(PeerRequest::decode(&bytes).unwrap(), request);
            }
        }

        #[test]
        fn responses_round_trip(
            entries in proptest::collection::vec(
                (any::<[u8; 8]>(), 0..TrackerStatus::ALL.len(), ".{0,40}", 0u32..20), 0..50),
            error in ".{0,80}",
            links in proptest::collection::vec(any::<u8>(), 0..30),
            with_ipfs in any::<bool>(),
            snapshot in (any::<[u8; 8]>(), any::<u64>(), any::<u64>()),
            removed in proptest::collection::vec((any::<[u8; 8]>(), ".{0,20}"), 0..20),
        ) {
            let entries_summary: BTreeMap<TrackerStatus, u64> = entries
                .iter()
                .map(|(_, status, _, attempts)| (TrackerStatus::ALL[*status], u64::from(*attempts)))
                .collect();
            let infos: Vec<PinInfo> = entries
                .into_iter()
                .map(|(seed, status, error, attempts)| {
                    info(dag_pb_cid(&seed), TrackerStatus::ALL[status], error, attempts)
                })
                .collect();
            let connections = Connections {
                cluster_peers: links.iter().map(|s| peer(*s)).collect(),
                ipfs_id: with_ipfs.then(|| peer(200)),
                ipfs_peers: links.iter().rev().map(|s| peer(s.wrapping_add(1))).collect(),
            };
            for response in [
                PeerResponse::Statuses(infos),
                PeerResponse::Connections(connections),
                PeerResponse::Snapshot(SnapshotOffer {
                    root: dag_pb_cid(&snapshot.0),
                    height: snapshot.1,
                    keys: snapshot.2,
                }),
                PeerResponse::Summary(StatusSummary {
                    pins: snapshot.1,
                    statuses: entries_summary,
                }),
                PeerResponse::RepoGc(RepoGc {
                    peer: peer(4),
                    peername: "p4".into(),
                    keys: removed
                        .iter()
                        .map(|(seed, error)| crate::repo_gc::GcKey {
                            key: (seed[0] % 4 != 0).then(|| dag_pb_cid(seed)),
                            error: error.clone(),
                        })
                        .collect(),
                    error: error.clone(),
                    keys_not_listed: snapshot.2,
                }),
                PeerResponse::Blocks(removed.iter().map(|(seed, text)| {
                    [seed.as_slice(), text.as_bytes()].concat()
                }).collect()),
                PeerResponse::Error(error),
            ] {
                let bytes = response.encode().unwrap();
                prop_assert_eq!(PeerResponse::decode(&bytes).unwrap(), response);
            }
        }

        #[test]
        fn ancestors_requests_round_trip(
            from in any::<[u8; 8]>(),
            known in proptest::collection::vec(any::<[u8; 8]>(), 0..=MAX_KNOWN),
            limit in 0..=MAX_ANCESTORS,
        ) {
            let request = PeerRequest::Ancestors {
                from: dag_pb_cid(&from),
                known: known.iter().map(|s| dag_pb_cid(s)).collect(),
                limit,
            };
            let bytes = request.encode();
            prop_assert!(bytes.len() <= MAX_REQUEST_BYTES);
            prop_assert_eq!(PeerRequest::decode(&bytes).unwrap(), request);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PeerRequest::decode(&bytes);
            let _ = PeerResponse::decode(&bytes);
        }
    }

    /// The request's bytes are fixed: peers of different versions must agree.
    #[test]
    fn golden_request() {
        let cid: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
            .parse()
            .unwrap();
        let request = |recover| PeerRequest::Statuses {
            cids: vec![cid],
            recover,
        };
        let text = |request: PeerRequest| String::from_utf8(request.encode()).unwrap();
        assert_eq!(
            text(request(false)),
            r#"{"cids":["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"]}"#
        );
        assert_eq!(
            text(request(true)),
            r#"{"cids":["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"],"recover":true}"#
        );
        assert_eq!(text(PeerRequest::Connections), r#"{"connections":true}"#);
        assert_eq!(text(PeerRequest::Snapshot), r#"{"snapshot":true}"#);
        assert_eq!(text(PeerRequest::Summary), r#"{"summary":true}"#);
        assert_eq!(text(PeerRequest::RepoGc), r#"{"repo_gc":true}"#);
        assert_eq!(
            text(PeerRequest::Ancestors {
                from: cid,
                known: vec![cid],
                limit: 2
            }),
            r#"{"ancestors":{"from":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","known":["bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"],"limit":2}}"#
        );
        assert_eq!(
            String::from_utf8(PeerResponse::Blocks(vec![b"ab".to_vec()]).encode().unwrap())
                .unwrap(),
            r#"{"blocks":["YWI="]}"#
        );
        let summary = PeerResponse::Summary(StatusSummary {
            pins: 5,
            statuses: [(TrackerStatus::Pinned, 3), (TrackerStatus::PinError, 2)].into(),
        });
        assert_eq!(
            String::from_utf8(summary.encode().unwrap()).unwrap(),
            r#"{"summary":{"pins":5,"statuses":{"pin_error":2,"pinned":3}}}"#
        );
        let offer = PeerResponse::Snapshot(SnapshotOffer {
            root: cid,
            height: 7,
            keys: 3,
        });
        assert_eq!(
            String::from_utf8(offer.encode().unwrap()).unwrap(),
            r#"{"snapshot":{"root":"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi","height":7,"keys":3}}"#
        );
    }

    /// The fuzz seeds are real messages, so that fuzzing starts from the shapes peers send.
    #[test]
    fn fuzz_seeds_decode() {
        let seeds = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/regressions/status_message/"
        );
        let read = |name: &str| std::fs::read(format!("{seeds}{name}")).unwrap();
        assert!(matches!(
            PeerRequest::decode(&read("seed-request")),
            Ok(PeerRequest::Statuses { cids, recover: false }) if cids.len() == 1
        ));
        assert_eq!(
            PeerRequest::decode(&read("seed-connections")),
            Ok(PeerRequest::Connections)
        );
        assert_eq!(
            PeerRequest::decode(&read("seed-snapshot")),
            Ok(PeerRequest::Snapshot)
        );
        assert_eq!(
            PeerRequest::decode(&read("seed-summary")),
            Ok(PeerRequest::Summary)
        );
        assert!(matches!(
            PeerResponse::decode(&read("seed-summary-response")),
            Ok(PeerResponse::Summary(s)) if s.pins == 5 && s.statuses[&TrackerStatus::Pinned] == 3
        ));
        assert!(matches!(
            PeerResponse::decode(&read("seed-snapshot-response")),
            Ok(PeerResponse::Snapshot(offer)) if offer.height == 7 && offer.keys == 3
        ));
        assert!(matches!(
            PeerResponse::decode(&read("seed-connections-response")),
            Ok(PeerResponse::Connections(c)) if c.cluster_peers.len() == 1 && c.ipfs_id.is_some()
        ));
        match PeerResponse::decode(&read("seed-response")).unwrap() {
            PeerResponse::Statuses(infos) => {
                assert_eq!(infos[0].short.status, TrackerStatus::Pinned)
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            PeerRequest::decode(&read("seed-ancestors")),
            Ok(PeerRequest::Ancestors { known, limit: 2000, .. }) if known.len() == 1
        ));
        assert!(matches!(
            PeerResponse::decode(&read("seed-blocks-response")),
            Ok(PeerResponse::Blocks(blocks)) if blocks.len() == 2
        ));
        assert_eq!(
            PeerResponse::decode(&read("seed-error")).unwrap(),
            PeerResponse::Error("the daemon is down".into())
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let too_many = format!(
            r#"{{"cids":[{}]}}"#,
            vec![r#""bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi""#; MAX_CIDS + 1]
                .join(",")
        );
        assert_eq!(
            PeerRequest::decode(too_many.as_bytes()),
            Err(PeerRequestError::TooManyCids(MAX_CIDS + 1))
        );
        assert!(matches!(
            PeerRequest::decode(br#"{"cids":["nope"]}"#),
            Err(PeerRequestError::BadCid { .. })
        ));
        assert!(matches!(
            PeerResponse::decode(br#"{"statuses":[],"error":"x"}"#),
            Err(PeerRequestError::Json(_))
        ));
        assert!(matches!(
            PeerRequest::decode(br#"{"cids":[],"connections":true}"#),
            Err(PeerRequestError::Json(_))
        ));
        assert!(matches!(
            PeerRequest::decode(br#"{"summary":true,"snapshot":true}"#),
            Err(PeerRequestError::Json(_))
        ));
        let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        assert_eq!(
            PeerRequest::decode(
                format!(r#"{{"ancestors":{{"from":"{cid}","known":[],"limit":5000}}}}"#).as_bytes()
            ),
            Err(PeerRequestError::TooManyAncestors {
                known: 0,
                limit: 5000
            })
        );
        assert!(matches!(
            PeerRequest::decode(
                format!(
                    r#"{{"ancestors":{{"from":"{cid}","known":[],"limit":1}},"summary":true}}"#
                )
                .as_bytes()
            ),
            Err(PeerRequestError::Json(_))
        ));
        assert!(matches!(
            PeerResponse::decode(br#"{"blocks":["not base64!"]}"#),
            Err(PeerRequestError::BadBlock(_))
        ));
        let too_big = format!(
            r#"{{"blocks":["{}"]}}"#,
            BASE64.encode(vec![0u8; MAX_ANCESTOR_BYTES + 1])
        );
        assert_eq!(
            PeerResponse::decode(too_big.as_bytes()),
            Err(PeerRequestError::TooManyBlockBytes(MAX_ANCESTOR_BYTES + 1))
        );
        assert!(matches!(
            PeerResponse::decode(br#"{"summary":{"pins":1}}"#),
            Err(PeerRequestError::Json(_))
        ));
        assert!(matches!(
            PeerResponse::decode(br#"{"connections":{"cluster_peers":["nope"],"ipfs_peers":[]}}"#),
            Err(PeerRequestError::BadPeer { .. })
        ));
    }
}
