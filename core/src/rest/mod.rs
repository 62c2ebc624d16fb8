//! The JSON of ipfs-cluster's REST API that is neither a pin ([`crate::pin`]) nor a status
//! ([`crate::tracker::info`]): what the REST server writes and `pinfold ctl` reads, field for
//! field as Go ipfs-cluster v1.1.6 writes them. Peer ids stay text here, since Go writes
//! an empty string for an unknown one.

pub mod pin_options;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use pin_options::{Expiry, PinOptions, PinOptionsError};

/// The body of an error answer (Go's `api.Error`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    pub message: String,
}

/// A peer's IPFS daemon, as `/id` shows it (Go's `api.IPFSID`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpfsId {
    /// Empty, and then left out as Go leaves it out, when the daemon did not answer.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub addresses: Vec<String>,
    /// Why the daemon could not be asked; empty when it answered.
    pub error: String,
}

/// A cluster peer (Go's `api.ID`): `/id` for the peer asked, and each line of `/peers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Id {
    pub id: String,
    pub addresses: Vec<String>,
    pub cluster_peers: Vec<String>,
    pub cluster_peers_addresses: Vec<String>,
    pub version: String,
    pub commit: String,
    pub rpc_protocol_version: String,
    /// Why the peer could not be asked; empty when it answered.
    pub error: String,
    pub ipfs: IpfsId,
    pub peername: String,
}

/// `/version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
}

/// `/health/graph` (Go's `api.ConnectGraph`): who is connected to whom, cluster peers and
/// their IPFS daemons, by peer id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectGraph {
    pub cluster_id: String,
    pub id_to_peername: BTreeMap<String, String>,
    pub ipfs_links: BTreeMap<String, Vec<String>>,
    pub cluster_links: BTreeMap<String, Vec<String>>,
    pub cluster_trust_links: BTreeMap<String, bool>,
    pub cluster_to_ipfs: BTreeMap<String, String>,
}

/// One line of `/add`'s answer (Go's `api.AddedOutput`): a file or directory added; the
/// last line is the root, with the peers it was allocated to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AddedOutput {
    pub name: String,
    pub cid: String,
    /// The three below are left out when zero or empty, as Go leaves them out.
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_gos_json_and_writes_it_back() {
        let go = r#"{"id":"12D3KooWA","addresses":["/ip4/127.0.0.1/tcp/9096/p2p/12D3KooWA"],"cluster_peers":["12D3KooWA"],"cluster_peers_addresses":[],"version":"1.1.6","commit":"","rpc_protocol_version":"/ipfscluster/1.0/rpc","error":"","ipfs":{"id":"12D3KooWB","addresses":[],"error":""},"peername":"one"}"#;
        let id: Id = serde_json::from_str(go).unwrap();
        assert_eq!(id.peername, "one");
        assert_eq!(id.ipfs.id, "12D3KooWB");
        assert_eq!(serde_json::to_string(&id).unwrap(), go);
    }

    /// Go writes `"ipfs":{"addresses":null,"error":"…"}` for a peer it could not ask, and
    /// its client cannot read an empty peer id back.
    #[test]
    fn an_unknown_ipfs_id_is_left_out() {
        let id = Id {
            id: "12D3KooWA".to_owned(),
            ..Id::default()
        };
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(
            json["ipfs"],
            serde_json::json!({"addresses": [], "error": ""})
        );
    }

    #[test]
    fn added_output_leaves_out_what_go_leaves_out() {
        let output = AddedOutput {
            name: "a.txt".to_owned(),
            cid: "bafy".to_owned(),
            ..AddedOutput::default()
        };
        assert_eq!(
            serde_json::to_string(&output).unwrap(),
            r#"{"name":"a.txt","cid":"bafy"}"#
        );
        let read: AddedOutput = serde_json::from_str(r#"{"name":"a.txt","cid":"bafy"}"#).unwrap();
        assert_eq!(read, output);
    }

    #[test]
    fn a_short_peer_line_reads_with_defaults() {
        let id: Id =
            serde_json::from_str(r#"{"id":"12D3KooWA","peername":"one","error":""}"#).unwrap();
        assert_eq!((id.id.as_str(), id.peername.as_str()), ("12D3KooWA", "one"));
        assert!(id.addresses.is_empty());
    }
}
