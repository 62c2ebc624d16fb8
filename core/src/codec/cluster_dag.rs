//! The cluster DAG of a sharded add, as Go ipfs-cluster writes it (`adder/sharding/dag.go`):
//! DAG-CBOR nodes (CIDv1, sha2-256), each a map from `"0"`, `"1"`, ... to links. A shard's
//! node links to every block put in that shard; the cluster DAG's root links to the
//! shards' nodes. A node holds at most [`MAX_LINKS`] links: past that, the root links to
//! leaf nodes of at most that many links each (one level of indirection).

use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

/// Links per node, as Go's `sharding.MaxLinks` (what fits in one block).
pub const MAX_LINKS: usize = 5984;
/// The DAG-CBOR codec.
pub const DAG_CBOR: u64 = 0x71;
const SHA2_256: u64 = 0x12;
/// CBOR's tag for an IPLD link.
const LINK_TAG: u64 = 42;

const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;

/// A node of a cluster DAG: its CID and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DagNode {
    pub cid: Cid,
    pub bytes: Vec<u8>,
}

/// Why a block is not a cluster DAG node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterDagError {
    #[error("not a cluster DAG node: {0}")]
    Malformed(&'static str),
    #[error("not a cluster DAG node: a link is not a CID: {0}")]
    BadLink(String),
}

fn header(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(value.to_be_bytes());
        }
    }
}

/// The DAG-CBOR node `{"0": links[0], "1": links[1], ...}`, its keys in DAG-CBOR's order
/// (shorter first, then bytewise), as Go's `cbor.WrapObject` writes the map.
pub fn node(links: &[Cid]) -> DagNode {
    let mut bytes = Vec::with_capacity(4 + links.len() * 44);
    header(&mut bytes, MAJOR_MAP, links.len() as u64);
    // Numbers written in decimal sort by length, then bytewise, in numeric order already.
    for (n, link) in links.iter().enumerate() {
        let key = n.to_string();
        header(&mut bytes, MAJOR_TEXT, key.len() as u64);
        bytes.extend(key.as_bytes());
        header(&mut bytes, MAJOR_TAG, LINK_TAG);
        let link = link.to_bytes();
        header(&mut bytes, MAJOR_BYTES, link.len() as u64 + 1);
        bytes.push(0); // the multibase identity prefix DAG-CBOR links carry
        bytes.extend(link);
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

/// A reader of CBOR items over a block.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ClusterDagError> {
        if self.bytes.len() < n {
            return Err(ClusterDagError::Malformed("the block ends inside an item"));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    /// An item's major type and argument.
    fn header(&mut self) -> Result<(u8, u64), ClusterDagError> {
        let first = self.take(1)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let value = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().expect("2 bytes"),
            )),
            26 => u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            27 => u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")),
            _ => return Err(ClusterDagError::Malformed("indefinite or reserved length")),
        };
        Ok((major, value))
    }

    fn length(&mut self, major: u8, what: &'static str) -> Result<usize, ClusterDagError> {
        match self.header()? {
            (m, n) if m == major => {
                usize::try_from(n).map_err(|_| ClusterDagError::Malformed("a length past memory"))
            }
            _ => Err(ClusterDagError::Malformed(what)),
        }
    }
}

/// The links of a cluster DAG node, by key (`"0"`, `"1"`, ...) in numeric order.
pub fn links(block: &[u8]) -> Result<Vec<Cid>, ClusterDagError> {
    let mut reader = Reader { bytes: block };
    let entries = reader.length(MAJOR_MAP, "the node is not a map")?;
    // Each entry takes at least 4 bytes: more entries than that cannot be there.
    if entries > block.len() / 4 {
        return Err(ClusterDagError::Malformed("more entries than bytes"));
    }
    let mut keyed = Vec::with_capacity(entries);
    for _ in 0..entries {
        let key_length = reader.length(MAJOR_TEXT, "a key is not a string")?;
        let key = std::str::from_utf8(reader.take(key_length)?)
            .ok()
            .and_then(|key| key.parse::<u64>().ok())
            .ok_or(ClusterDagError::Malformed("a key is not a number"))?;
        if reader.header()? != (MAJOR_TAG, LINK_TAG) {
            return Err(ClusterDagError::Malformed("a value is not a link"));
        }
        let link_length = reader.length(MAJOR_BYTES, "a link is not bytes")?;
        let link = reader.take(link_length)?;
        let cid = match link.split_first() {
            Some((0, cid)) => {
                Cid::try_from(cid).map_err(|e| ClusterDagError::BadLink(e.to_string()))?
            }
            _ => return Err(ClusterDagError::Malformed("a link lacks its 0x00 prefix")),
        };
        keyed.push((key, cid));
    }
    if !reader.bytes.is_empty() {
        return Err(ClusterDagError::Malformed("bytes after the map"));
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
