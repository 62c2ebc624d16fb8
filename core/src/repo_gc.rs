//! Repository garbage collection results, in ipfs-cluster's JSON shapes: `RepoGC` (one
//! peer's IPFS daemon: the blocks it removed, or why it could not collect) and
//! `GlobalRepoGC` (every peer's, by peer id), as `POST /ipfs/gc` answers them and
//! `ipfs-cluster-ctl ipfs gc` prints them.

use std::collections::BTreeMap;

use cid::Cid;
use libp2p_identity::PeerId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Removed blocks one peer reports at most: an answer stays within a status frame (about
/// 70 bytes of JSON a block); the rest are counted in [`RepoGc::keys_not_listed`].
pub const MAX_LISTED_KEYS: usize = 50_000;

/// One line of a daemon's garbage collection (ipfs-cluster's `IPFSRepoGC`): a block removed,
/// or an error met on the way (then `key` is `null`, as Go writes an undefined CID).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcKey {
    #[serde(
        default,
        serialize_with = "cid_text",
        deserialize_with = "cid_from_text"
    )]
    pub key: Option<Cid>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One peer's garbage collection (ipfs-cluster's `RepoGC`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoGc {
    #[serde(serialize_with = "peer_text", deserialize_with = "peer_from_text")]
    pub peer: PeerId,
    #[serde(default)]
    pub peername: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub keys: Vec<GcKey>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Blocks removed beyond [`MAX_LISTED_KEYS`] (a pinfold field; absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keys_not_listed: u64,
}

impl RepoGc {
    /// A peer's result from its daemon's lines, listing at most [`MAX_LISTED_KEYS`].
    pub fn collected(peer: PeerId, peername: String, lines: Vec<GcKey>) -> Self {
        let not_listed = lines.len().saturating_sub(MAX_LISTED_KEYS) as u64;
        let mut keys = lines;
        keys.truncate(MAX_LISTED_KEYS);
        Self {
            peer,
            peername,
            keys,
            error: String::new(),
            keys_not_listed: not_listed,
        }
    }

    /// A peer whose collection failed, or that could not be asked.
    pub fn failed(peer: PeerId, peername: String, error: String) -> Self {
        Self {
            peer,
            peername,
            keys: Vec::new(),
            error,
            keys_not_listed: 0,
        }
    }
}

/// Every peer's garbage collection (ipfs-cluster's `GlobalRepoGC`), keyed by peer id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalRepoGc {
    pub peer_map: BTreeMap<String, RepoGc>,
}

impl GlobalRepoGc {
    pub fn add(&mut self, gc: RepoGc) {
        self.peer_map.insert(gc.peer.to_base58(), gc);
    }

    /// ipfs-cluster-ctl's text: each peer (by name, else id) in peer id order, its error if
    /// it has one, then the blocks it removed and the errors met on the way.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (id, gc) in &self.peer_map {
            let name = if gc.peername.is_empty() {
                id
            } else {
                &gc.peername
            };
            if gc.error.is_empty() {
                text.push_str(&format!("{name:<15}\n"));
            } else {
                text.push_str(&format!("{name:<15} | ERROR: {}\n", gc.error));
            }
            text.push_str("  > CIDs:\n");
            for key in &gc.keys {
                match &key.key {
                    Some(cid) if key.error.is_empty() => text.push_str(&format!("    - {cid}\n")),
                    _ => text.push_str(&format!("    - ERROR: {}\n", key.error)),
                }
            }
            if gc.keys_not_listed > 0 {
                text.push_str(&format!(
                    "    ... and {} more blocks removed\n",
                    gc.keys_not_listed
                ));
            }
        }
        text
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn cid_text<S: Serializer>(cid: &Option<Cid>, serializer: S) -> Result<S::Ok, S::Error> {
    match cid {
        Some(cid) => serializer.collect_str(cid),
        None => serializer.serialize_none(),
    }
}

fn cid_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cid>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn peer_text<S: Serializer>(peer: &PeerId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&peer.to_base58())
}

fn peer_from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PeerId, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<GcKey>, D::Error> {
    Ok(Option::<Vec<GcKey>>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;

    const CID: &str = "bafkreibbfyspl7l7zop6yxrvsanmmtu3e4nebj2r64jpp2m5yhvykd7tji";

    /// The JSON is ipfs-cluster's `GlobalRepoGC`, `RepoGC` and `IPFSRepoGC` (api/types.go):
    /// CIDs as strings (`null` for an error line's), empty errors left out.
    #[test]
    fn golden_json() {
        let mut global = GlobalRepoGc::default();
        let removed = GcKey {
            key: Some(CID.parse().unwrap()),
            error: String::new(),
        };
        let failed = GcKey {
            key: None,
            error: "could not remove".into(),
        };
        global.add(RepoGc::collected(
            peer(1),
            "a".into(),
            vec![removed, failed],
        ));
        global.add(RepoGc::failed(peer(2), String::new(), "unreachable".into()));
        let text = serde_json::to_string(&global).unwrap();
        let (p1, p2) = (peer(1).to_base58(), peer(2).to_base58());
        let first = format!(
            r#""{p1}":{{"peer":"{p1}","peername":"a","keys":[{{"key":"{CID}"}},{{"key":null,"error":"could not remove"}}]}}"#
        );
        let second =
            format!(r#""{p2}":{{"peer":"{p2}","peername":"","keys":[],"error":"unreachable"}}"#);
        let expected = if p1 < p2 {
            format!(r#"{{"peer_map":{{{first},{second}}}}}"#)
        } else {
            format!(r#"{{"peer_map":{{{second},{first}}}}}"#)
        };
        assert_eq!(text, expected);
        assert_eq!(serde_json::from_str::<GlobalRepoGc>(&text).unwrap(), global);
        // Go writes `null` for a peer with no keys.
        let go = format!(r#"{{"peer":"{p2}","peername":"b","keys":null}}"#);
        assert!(serde_json::from_str::<RepoGc>(&go).unwrap().keys.is_empty());
    }

    #[test]
    fn text_lists_each_peer_then_its_cids() {
        let mut global = GlobalRepoGc::default();
        let key = GcKey {
            key: Some(CID.parse().unwrap()),
            error: String::new(),
        };
        global.add(RepoGc::collected(peer(1), "peer-one".into(), vec![key]));
        assert_eq!(
            global.to_text(),
            format!("peer-one       \n  > CIDs:\n    - {CID}\n")
        );
        let mut failed = GlobalRepoGc::default();
        failed.add(RepoGc::failed(peer(2), String::new(), "down".into()));
        assert_eq!(
            failed.to_text(),
            format!("{} | ERROR: down\n  > CIDs:\n", peer(2))
        );
    }

    #[test]
    fn long_collections_list_the_first_keys_and_count_the_rest() {
        let keys = vec![
            GcKey {
                key: Some(CID.parse().unwrap()),
                error: String::new()
            };
            MAX_LISTED_KEYS + 3
        ];
        let gc = RepoGc::collected(peer(1), "a".into(), keys);
        assert_eq!(gc.keys.len(), MAX_LISTED_KEYS);
        assert_eq!(gc.keys_not_listed, 3);
        let frame = crate::codec::peer_request::PeerResponse::RepoGc(gc)
            .encode()
            .unwrap();
        assert!(frame.len() < crate::codec::peer_request::MAX_RESPONSE_BYTES);
    }
}
