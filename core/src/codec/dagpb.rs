//! dag-pb, the IPLD codec of go-ds-crdt's DAG nodes, and the delta node built on it.
//!
//! Encoding is canonical (links first, in order, then data), as go-merkledag writes it:
//! every link carries `Hash`, `Name` and `Tsize`. Decoding is strict as the dag-pb
//! specification asks (no unknown or repeated fields, links before data, valid CIDs) and
//! bounded by [`MAX_BLOCK_BYTES`]; malformed input is an error, never a panic.

use cid::Cid;
use multihash::Multihash;
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use sha2::{Digest, Sha256};

use super::delta::{Delta, DeltaError};
use super::MAX_BLOCK_BYTES;

/// Multicodec code of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// Most links a delta node may have: one per head of the writer at the time. A writer
/// with more concurrent heads than this is either broken or hostile.
pub const MAX_LINKS: usize = 4096;

/// A dag-pb link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbLink {
    pub hash: Cid,
    pub name: Option<String>,
    pub tsize: Option<u64>,
}

impl PbLink {
    /// A link as go-ds-crdt's `AddRawLink("")` writes it: empty name, zero `Tsize`.
    pub fn unnamed(hash: Cid) -> Self {
        Self {
            hash,
            name: Some(String::new()),
            tsize: Some(0),
        }
    }
}

/// A dag-pb node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PbNode {
    pub links: Vec<PbLink>,
    pub data: Option<Vec<u8>>,
}

/// Why a block was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DagPbError {
    #[error("block of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed dag-pb at byte {offset}: {detail}")]
    Malformed { offset: usize, detail: &'static str },
    #[error("dag-pb link {index} has an invalid CID: {detail}")]
    BadLinkCid { index: usize, detail: String },
    #[error("dag-pb node has {count} links, more than the limit of {limit}")]
    TooManyLinks { count: usize, limit: usize },
    #[error("block does not match its CID {expected}: its sha2-256 digest is {actual_digest}")]
    CidMismatch {
        expected: String,
        actual_digest: String,
    },
    #[error("unsupported CID {0}: only sha2-256 hashed blocks are exchanged")]
    UnsupportedHash(String),
    #[error("delta in block: {0}")]
    Delta(#[from] DeltaError),
}

impl PbNode {
    /// Canonical dag-pb bytes of this node.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for link in &self.links {
            let cid = link.hash.to_bytes();
            let mut body = Vec::with_capacity(cid.len() + 16);
            put_bytes(&mut body, 1, &cid);
            if let Some(name) = &link.name {
                put_bytes(&mut body, 2, name.as_bytes());
            }
            if let Some(tsize) = link.tsize {
                put_tag(&mut body, 3, WIRE_VARINT);
                encode_varint(tsize, &mut body);
            }
            put_bytes(&mut out, 2, &body);
        }
        if let Some(data) = &self.data {
            put_bytes(&mut out, 1, data);
        }
        out
    }

    /// Strictly decodes a dag-pb node.
    pub fn decode(bytes: &[u8]) -> Result<Self, DagPbError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(DagPbError::TooLarge {
                len: bytes.len(),
                limit: MAX_BLOCK_BYTES,
            });
        }
        let mut reader = Reader::new(bytes);
        let mut node = PbNode::default();
        while !reader.is_empty() {
            let (field, wire) = reader.tag()?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    if node.data.is_some() {
                        return Err(reader.error("duplicate Data"));
                    }
                    node.data = Some(reader.bytes()?.to_vec());
                }
                (2, WIRE_LEN) => {
                    if node.data.is_some() {
                        return Err(reader.error("Links after Data"));
                    }
                    if node.links.len() == MAX_LINKS {
                        return Err(DagPbError::TooManyLinks {
                            count: MAX_LINKS + 1,
                            limit: MAX_LINKS,
                        });
                    }
                    let start = reader.offset;
                    let body = reader.bytes()?;
                    node.links.push(decode_link(body, start, node.links.len())?);
                }
                _ => return Err(reader.error("unknown field or wire type in PBNode")),
            }
        }
        Ok(node)
    }
}

fn decode_link(bytes: &[u8], base: usize, index: usize) -> Result<PbLink, DagPbError> {
    let mut reader = Reader::new(bytes);
    reader.base = base;
    let mut hash = None;
    let mut name = None;
    let mut tsize = None;
    let mut last_field = 0;
    while !reader.is_empty() {
        let (field, wire) = reader.tag()?;
        if field <= last_field {
            return Err(reader.error("PBLink fields repeated or out of order"));
        }
        last_field = field;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let raw = reader.bytes()?;
                hash = Some(Cid::try_from(raw).map_err(|e| DagPbError::BadLinkCid {
                    index,
                    detail: e.to_string(),
                })?);
            }
            (2, WIRE_LEN) => {
                let raw = reader.bytes()?;
                let text = std::str::from_utf8(raw)
                    .map_err(|_| reader.error("PBLink Name is not UTF-8"))?;
                name = Some(text.to_owned());
            }
            (3, WIRE_VARINT) => tsize = Some(reader.varint()?),
            _ => return Err(reader.error("unknown field or wire type in PBLink")),
        }
    }
    let hash = hash.ok_or_else(|| reader.error("PBLink without Hash"))?;
    Ok(PbLink { hash, name, tsize })
}

/// The sha2-256 multihash of a block's bytes.
pub fn sha2_256_multihash(block: &[u8]) -> Multihash<64> {
    Multihash::<64>::wrap(SHA2_256, &Sha256::digest(block))
        .expect("a sha2-256 digest fits a multihash")
}

/// The CIDv1 (dag-pb, sha2-256) of a block's bytes.
pub fn dag_pb_cid(block: &[u8]) -> Cid {
    Cid::new_v1(DAG_PB, sha2_256_multihash(block))
}

/// Checks that `block` is the content `cid` names (sha2-256 CIDs of any codec).
pub fn verify_block(cid: &Cid, block: &[u8]) -> Result<(), DagPbError> {
    if cid.hash().code() != SHA2_256 {
        return Err(DagPbError::UnsupportedHash(cid.to_string()));
    }
    let digest = Sha256::digest(block);
    if cid.hash().digest() != digest.as_slice() {
        return Err(DagPbError::CidMismatch {
            expected: cid.to_string(),
            actual_digest: hex::encode(digest),
        });
    }
    Ok(())
}

/// A go-ds-crdt DAG node: a delta and links to the heads it was written on top of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaNode {
    pub delta: Delta,
    /// The writer's heads when it wrote this delta, in link order.
    pub parents: Vec<Cid>,
}

impl DeltaNode {
    /// Encodes the node exactly as go-ds-crdt's `makeNode` does (unnamed links with a zero
    /// `Tsize`, one per parent, then the delta as `Data`) and returns its CIDv1 and bytes.
    pub fn encode(&self) -> (Cid, Vec<u8>) {
        let node = PbNode {
            links: self.parents.iter().copied().map(PbLink::unnamed).collect(),
            data: Some(self.delta.to_bytes()),
        };
        let bytes = node.encode();
        (dag_pb_cid(&bytes), bytes)
    }

    /// Decodes a delta node from a block's bytes. A node without `Data` carries an empty delta.
    pub fn decode(block: &[u8]) -> Result<Self, DagPbError> {
        let node = PbNode::decode(block)?;
        let delta = match &node.data {
            Some(data) => Delta::from_bytes(data)?,
            None => Delta::default(),
        };
        Ok(Self {
            delta,
            parents: node.links.into_iter().map(|l| l.hash).collect(),
        })
    }
}

const WIRE_VARINT: u64 = 0;
const WIRE_LEN: u64 = 2;

fn put_tag(out: &mut Vec<u8>, field: u64, wire: u64) {
    encode_varint((field << 3) | wire, out);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_tag(out, field, WIRE_LEN);
    out.reserve(encoded_len_varint(bytes.len() as u64) + bytes.len());
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A bounds-checked protobuf reader over a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
    offset: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            offset: 0,
            base: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn error(&self, detail: &'static str) -> DagPbError {
        DagPbError::Malformed {
            offset: self.base + self.offset,
            detail,
        }
    }

    fn varint(&mut self) -> Result<u64, DagPbError> {
        let mut buf = self.rest;
        let value = decode_varint(&mut buf).map_err(|_| self.error("bad varint"))?;
        self.advance(self.rest.len() - buf.len());
        Ok(value)
    }

    fn tag(&mut self) -> Result<(u64, u64), DagPbError> {
        let key = self.varint()?;
        Ok((key >> 3, key & 7))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DagPbError> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.rest.len())
            .ok_or_else(|| self.error("length runs past the end"))?;
        let (bytes, _) = self.rest.split_at(len);
        self.advance(len);
        Ok(bytes)
    }

    fn advance(&mut self, n: usize) {
        self.rest = &self.rest[n..];
        self.offset += n;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::delta::tests::arb_delta;
    use crate::codec::delta::Element;
    use proptest::prelude::*;

    pub(crate) fn arb_cid() -> impl Strategy<Value = Cid> {
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(0x55u64), Just(DAG_PB)],
            any::<bool>(),
        )
            .prop_map(|(digest, codec, v0)| {
                let mh = Multihash::<64>::wrap(SHA2_256, &digest).unwrap();
                if v0 {
                    Cid::new_v0(mh).unwrap()
                } else {
                    Cid::new_v1(codec, mh)
                }
            })
    }

    /// Golden vector, worked out by hand from go-ds-crdt's makeNode and go-merkledag's
    /// dag-pb encoding, hashed independently with Python's hashlib:
    /// delta {elements: [{key "/k", value "v"}], priority 1} = `0a 07 0a 02 2f 6b 1a 01 76 18 01`,
    /// no parents, so the block is `0a 0b <delta>` (Data only) and its CIDv1 is
    /// the constant below (multibase base32 of `01 70 12 20 sha256(block)`).
    #[test]
    fn delta_node_golden_cid_without_parents() {
        let node = DeltaNode {
            delta: Delta {
                elements: vec![Element {
                    key: "/k".into(),
                    id: String::new(),
                    value: b"v".to_vec(),
                }],
                tombstones: vec![],
                priority: 1,
            },
            parents: vec![],
        };
        let (cid, bytes) = node.encode();
        assert_eq!(hex::encode(&bytes), "0a0b0a070a022f6b1a01761801");
        assert_eq!(cid.to_string(), GOLDEN_ROOT_CID);
        assert_eq!(DeltaNode::decode(&bytes).unwrap(), node);
    }

    const GOLDEN_ROOT_CID: &str = "bafybeicpynjs4kxvbraf5ynxoyjwabfzzcqa5oz6i2orc5h426qh362x6m";

    /// Golden vector: the node at height 2 on top of the one above. Its link is
    /// `12 2a | 0a 24 <36-byte CIDv1> | 12 00 | 18 00` (Hash, empty Name, zero Tsize),
    /// then `0a 02 18 02` (Data = delta {priority 2}).
    #[test]
    fn delta_node_golden_cid_with_a_parent() {
        let parent: Cid = GOLDEN_ROOT_CID.parse().unwrap();
        let node = DeltaNode {
            delta: Delta {
                priority: 2,
                ..Delta::default()
            },
            parents: vec![parent],
        };
        let (cid, bytes) = node.encode();
        let expected = format!("122a0a24{}120018000a021802", hex::encode(parent.to_bytes()));
        assert_eq!(hex::encode(&bytes), expected);
        assert_eq!(cid.to_string(), GOLDEN_CHILD_CID);
        verify_block(&cid, &bytes).unwrap();
    }

    const GOLDEN_CHILD_CID: &str = "bafybeib2mepke764mromanuzhmns3cg7oabldswcrucnbjqto7b7uo26aa";

    #[test]
    fn strict_decoding() {
        let parent: Cid = GOLDEN_ROOT_CID.parse().unwrap();
        let link = PbNode {
            links: vec![PbLink {
                hash: parent,
                name: None,
                tsize: None,
            }],
            data: None,
        }
        .encode();
        let data = PbNode {
            links: vec![],
            data: Some(vec![1]),
        }
        .encode();
        // Data before Links.
        let reordered = [data.clone(), link.clone()].concat();
        assert!(matches!(
            PbNode::decode(&reordered),
            Err(DagPbError::Malformed {
                detail: "Links after Data",
                ..
            })
        ));
        // Data twice.
        let twice = [data.clone(), data].concat();
        assert!(matches!(
            PbNode::decode(&twice),
            Err(DagPbError::Malformed {
                detail: "duplicate Data",
                ..
            })
        ));
        // Unknown field 3.
        assert!(matches!(
            PbNode::decode(&[0x18, 0x01]),
            Err(DagPbError::Malformed { .. })
        ));
        // Truncated length.
        assert!(matches!(
            PbNode::decode(&[0x0a, 0x05, 0x01]),
            Err(DagPbError::Malformed { .. })
        ));
        // A link without a hash, and one with a bad CID.
        assert!(matches!(
            PbNode::decode(&[0x12, 0x02, 0x18, 0x00]),
            Err(DagPbError::Malformed { .. })
        ));
        assert!(matches!(
            PbNode::decode(&[0x12, 0x03, 0x0a, 0x01, 0x05]),
            Err(DagPbError::BadLinkCid { index: 0, .. })
        ));
        // Oversized block.
        assert!(matches!(
            PbNode::decode(&vec![0; MAX_BLOCK_BYTES + 1]),
            Err(DagPbError::TooLarge { .. })
        ));
    }

    #[test]
    fn too_many_links_are_rejected() {
        let parent: Cid = GOLDEN_ROOT_CID.parse().unwrap();
        let node = PbNode {
            links: vec![
                PbLink {
                    hash: parent,
                    name: None,
                    tsize: None
                };
                MAX_LINKS + 1
            ],
            data: None,
        };
        assert!(matches!(
            PbNode::decode(&node.encode()),
            Err(DagPbError::TooManyLinks { .. })
        ));
    }

    #[test]
    fn verify_block_detects_tampering() {
        let (cid, mut bytes) = DeltaNode {
            delta: Delta::default(),
            parents: vec![],
        }
        .encode();
        verify_block(&cid, &bytes).unwrap();
        bytes.push(0);
        assert!(matches!(
            verify_block(&cid, &bytes),
            Err(DagPbError::CidMismatch { .. })
        ));
    }

    fn arb_link() -> impl Strategy<Value = PbLink> {
        (
            arb_cid(),
            proptest::option::of(".{0,12}"),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(hash, name, tsize)| PbLink { hash, name, tsize })
    }

    proptest! {
        #[test]
        fn pbnode_round_trip(links in proptest::collection::vec(arb_link(), 0..6),
                             data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
            let node = PbNode { links, data };
            prop_assert_eq!(PbNode::decode(&node.encode()).unwrap(), node);
        }

        #[test]
        fn delta_node_round_trip(delta in arb_delta(), parents in proptest::collection::vec(arb_cid(), 0..5)) {
            let node = DeltaNode { delta, parents };
            let (cid, bytes) = node.encode();
            prop_assert_eq!(cid, dag_pb_cid(&bytes));
            prop_assert_eq!(DeltaNode::decode(&bytes).unwrap(), node);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = DeltaNode::decode(&bytes);
        }
    }
}
