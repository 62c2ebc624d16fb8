//! The cluster DAG of a sharded add, as Go ipfs-cluster writes it (`adder/sharding/dag.go`):
//! DAG-CBOR nodes (CIDv1, sha2-256), each a map from `"0"`, `"1"`, ... to links. A shard's
//! node links to every block put in that shard; the cluster DAG's root links to the
//! shards' nodes. A node holds at most [`MAX_LINKS`] links: past that, the root links to
//! leaf nodes of at most that many links each (one level of indirection).

use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

use super::dag_cbor::{self, DagCborError, Reader};

/// Links per node, as Go's `sharding.MaxLinks` (what fits in one block).
pub const MAX_LINKS: usize = 5984;
/// The DAG-CBOR codec.
pub const DAG_CBOR: u64 = 0x71;
const SHA2_256: u64 = 0x12;

/// A node of a cluster DAG: its CID and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagNode {
    pub cid: Cid,
    pub bytes: Vec<u8>,
}

/// Why a block is not a cluster DAG node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cluster DAG node: {0}")]
pub struct ClusterDagError(#[from] DagCborError);

/// The DAG-CBOR node `{"0": links[0], "1": links[1], ...}`, its keys in DAG-CBOR's order
/// (shorter first, then bytewise), as Go's `cbor.WrapObject` writes the map.
pub fn node(links: &[Cid]) -> DagNode {
    let mut bytes = Vec::with_capacity(4 + links.len() * 44);
    dag_cbor::write_head(&mut bytes, dag_cbor::MAP, links.len() as u64);
    // Numbers written in decimal sort by length, then bytewise, in numeric order already.
    for (n, link) in links.iter().enumerate() {
        dag_cbor::write_text(&mut bytes, &n.to_string());
        dag_cbor::write_link(&mut bytes, link);
    }
    let digest = Sha256::digest(&bytes);
    let hash = Multihash::<64>::wrap(SHA2_256, &digest).expect("a 32-byte digest fits");
    DagNode {
        cid: Cid::new_v1(DAG_CBOR, hash),
        bytes,
    }
}

/// The nodes that link to all of `links`, root first (Go's `makeDAG`): one node when
/// they fit in one, else a root linking to leaves of [`MAX_LINKS`] links each.
pub fn nodes(links: &[Cid]) -> Vec<DagNode> {
    if links.len() <= MAX_LINKS {
        return vec![node(links)];
    }
    let leaves: Vec<DagNode> = links.chunks(MAX_LINKS).map(node).collect();
    let root = node(&leaves.iter().map(|leaf| leaf.cid).collect::<Vec<_>>());
    std::iter::once(root).chain(leaves).collect()
}

/// The links of a cluster DAG node, by key (`"0"`, `"1"`, ...) in numeric order.
pub fn links(block: &[u8]) -> Result<Vec<Cid>, ClusterDagError> {
    let mut reader = Reader::new(block);
    let entries = reader.expect(dag_cbor::MAP, "the node is not a map")?;
    // Each entry takes at least 4 bytes: more entries than that cannot be there.
    if entries > block.len() as u64 / 4 {
        return Err(DagCborError("more entries than bytes").into());
    }
    let mut keyed = Vec::with_capacity(entries as usize);
    for _ in 0..entries {
        let key = reader
            .text("a key is not text")?
            .parse::<u64>()
            .map_err(|_| DagCborError("a key is not a number"))?;
        keyed.push((key, reader.link("a value is not a link")?));
    }
    if !reader.is_at_end() {
        return Err(DagCborError("bytes after the map").into());
    }
    keyed.sort_unstable_by_key(|(key, _)| *key);
    Ok(keyed.into_iter().map(|(_, cid)| cid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(n: u32) -> Cid {
        let digest = Sha256::digest(n.to_be_bytes());
        Cid::new_v1(0x55, Multihash::<64>::wrap(SHA2_256, &digest).unwrap())
    }

    #[test]
    fn a_node_is_kubo_s_dag_cbor_for_the_same_map() {
        // `ipfs dag put --input-codec dag-json --store-codec dag-cbor` of
        // {"0": {"/": <raw(0)>}, "1": {"/": <raw(1)>}, ..., "10": {"/": <raw(10)>}} with Kubo
        // 0.43 gives this CID: keys "10" after "9", as DAG-CBOR orders them.
        let links: Vec<Cid> = (0..=10).map(raw).collect();
        let node = node(&links);
        assert_eq!(
            node.cid.to_string(),
            "bafyreigg5trky66zwch3dhbygse47yk55f5f5lu6aljcbw4zfc5y7t3eky"
        );
        assert_eq!(super::links(&node.bytes).unwrap(), links);
    }

    #[test]
    fn past_max_links_the_root_links_to_leaves() {
        let links: Vec<Cid> = (0..(MAX_LINKS as u32 * 2 + 3)).map(raw).collect();
        let nodes = nodes(&links);
        assert_eq!(nodes.len(), 4, "a root and three leaves");
        let leaves = super::links(&nodes[0].bytes).unwrap();
        assert_eq!(leaves, nodes[1..].iter().map(|n| n.cid).collect::<Vec<_>>());
        let all: Vec<Cid> = nodes[1..]
            .iter()
            .flat_map(|n| super::links(&n.bytes).unwrap())
            .collect();
        assert_eq!(all, links);
        assert_eq!(super::nodes(&links[..MAX_LINKS]).len(), 1);
    }

    #[test]
    fn blocks_that_are_not_cluster_dag_nodes_are_refused() {
        assert!(links(&[]).is_err());
        assert!(
            links(&[0xa1, 0x61, b'x', 0x01]).is_err(),
            "a value that is no link"
        );
        assert!(links(&[0xbf]).is_err(), "indefinite length");
        let mut node = node(&[raw(1)]).bytes;
        node.push(0);
        assert!(links(&node).is_err(), "trailing bytes");
        assert!(links(&[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    proptest! {
        #[test]
        fn links_round_trip(seeds in proptest::collection::vec(any::<u32>(), 0..300)) {
            let links: Vec<Cid> = seeds.into_iter().map(raw).collect();
            prop_assert_eq!(super::links(&node(&links).bytes).unwrap(), links);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = links(&bytes);
        }
    }
}
