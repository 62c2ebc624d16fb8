//! pinfold's compaction snapshots: the pinset's live versions at a set of heads, in
//! content-addressed dag-pb blocks that bitswap moves like any other block.
//!
//! A snapshot is a root node whose `Data` is a [`SnapshotHeader`] and whose links name its
//! chunks, each a node whose `Data` is a [`SnapshotChunk`] of at most [`MAX_CHUNK_BYTES`].
//! A state of more chunks than one node can link puts index nodes ([`SnapshotIndex`])
//! between the root and the chunks: two levels reach 4096 × 4096 chunks.
//! Chunks carry the live versions of keys (block id, priority, value) and the ids of the
//! delta blocks merged into the snapshot, so that a replica loading it walks only newer
//! deltas. Snapshots are never linked from the delta DAG: Go peers never see them.

use cid::Cid;
use prost::Message;

use super::dagpb::{DagPbError, PbLink, PbNode, MAX_LINKS};
use crate::crdt::{BlockId, Version};

/// The format tag every snapshot root carries.
pub const SNAPSHOT_FORMAT: &str = "pinfold-snapshot/1";

/// Chunks are cut before their data passes 1 MiB, like go-ds-crdt's deltas.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// The format tag every snapshot index node carries.
pub const SNAPSHOT_INDEX_FORMAT: &str = "pinfold-snapshot-index/1";

/// Most links one snapshot node has (dag-pb's link limit), by default.
pub const MAX_FANOUT: usize = MAX_LINKS;

#[derive(Clone, PartialEq, Eq, Message)]
struct HeadPb {
    #[prost(bytes = "vec", tag = "1")]
    cid: Vec<u8>,
    #[prost(uint64, tag = "2")]
    height: u64,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct HeaderPb {
    #[prost(string, tag = "1")]
    format: String,
    #[prost(message, repeated, tag = "2")]
    heads: Vec<HeadPb>,
    #[prost(uint64, tag = "3")]
    keys: u64,
    /// 0: the root links chunks; 1: it links index nodes, which link chunks.
    #[prost(uint32, tag = "4")]
    depth: u32,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct IndexPb {
    #[prost(string, tag = "1")]
    format: String,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct VersionPb {
    #[prost(bytes = "vec", tag = "1")]
    block: Vec<u8>,
    #[prost(uint64, tag = "2")]
    priority: u64,
    #[prost(bytes = "vec", tag = "3")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct EntryPb {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, repeated, tag = "2")]
    versions: Vec<VersionPb>,
}

#[derive(Clone, PartialEq, Eq, Message)]
struct ChunkPb {
    #[prost(message, repeated, tag = "1")]
    entries: Vec<EntryPb>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    processed: Vec<Vec<u8>>,
}

/// Why a block is not a snapshot root or chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    DagPb(#[from] DagPbError),
    #[error("malformed snapshot {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("snapshot format {0:?} is not {SNAPSHOT_FORMAT:?}; upgrade pinfold to load it")]
    UnknownFormat(String),
}

fn malformed(what: &'static str, detail: impl ToString) -> SnapshotError {
    SnapshotError::Malformed {
        what,
        detail: detail.to_string(),
    }
}

/// A block ready to store: its CID and bytes.
pub type EncodedBlock = (Cid, Vec<u8>);

/// What a snapshot root links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotLinks {
    /// The chunks themselves.
    Chunks(Vec<Cid>),
    /// Index nodes, each linking chunks.
    Indexes(Vec<Cid>),
}

impl SnapshotLinks {
    /// Links `chunks` under a root with at most `fanout` links per node: directly, or
    /// through index nodes, returned as blocks to store. Fails with the most chunks two
    /// levels can hold (`fanout`², the fanout taken within 2..=[`MAX_FANOUT`]) when there
    /// are more.
    pub fn build(chunks: Vec<Cid>, fanout: usize) -> Result<(Self, Vec<EncodedBlock>), usize> {
        let fanout = fanout.clamp(2, MAX_FANOUT);
        if chunks.len() <= fanout {
            return Ok((SnapshotLinks::Chunks(chunks), Vec::new()));
        }
        if chunks.len() > fanout * fanout {
            return Err(fanout * fanout);
        }
        let indexes: Vec<EncodedBlock> = chunks
            .chunks(fanout)
            .map(|group| {
                SnapshotIndex {
                    chunks: group.to_vec(),
                }
                .encode()
            })
            .collect();
        let links = SnapshotLinks::Indexes(indexes.iter().map(|(cid, _)| *cid).collect());
        Ok((links, indexes))
    }

    /// The nodes linked: chunks, or index nodes.
    pub fn cids(&self) -> &[Cid] {
        match self {
            SnapshotLinks::Chunks(cids) | SnapshotLinks::Indexes(cids) => cids,
        }
    }
}

/// The root of a snapshot: the heads it was taken at, its size, and its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub heads: Vec<(Cid, u64)>,
    /// Keys with a value in the snapshot.
    pub keys: u64,
    pub links: SnapshotLinks,
}

impl SnapshotHeader {
    /// Encodes the root node; returns its CID and bytes. At most [`MAX_FANOUT`] links.
    pub fn encode(&self) -> (Cid, Vec<u8>) {
        let links = self.links.cids();
        assert!(
            links.len() <= MAX_FANOUT,
            "a snapshot root links at most {MAX_FANOUT} nodes"
        );
        let header = HeaderPb {
            format: SNAPSHOT_FORMAT.to_owned(),
            heads: self
                .heads
                .iter()
                .map(|(cid, height)| HeadPb {
                    cid: cid.to_bytes(),
                    height: *height,
                })
                .collect(),
            keys: self.keys,
            depth: match self.links {
                SnapshotLinks::Chunks(_) => 0,
                SnapshotLinks::Indexes(_) => 1,
            },
        };
        encode_node(
            links.iter().copied().map(PbLink::unnamed).collect(),
            header.encode_to_vec(),
        )
    }

    pub fn decode(block: &[u8]) -> Result<Self, SnapshotError> {
        let node = PbNode::decode(block)?;
        let header = HeaderPb::decode(node.data.as_deref().unwrap_or_default())
            .map_err(|e| malformed("root", e))?;
        if header.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::UnknownFormat(header.format));
        }
        let heads = header
            .heads
            .into_iter()
            .map(|h| {
                Cid::try_from(h.cid.as_slice())
                    .map(|cid| (cid, h.height))
                    .map_err(|e| malformed("head", e))
            })
            .collect::<Result<_, _>>()?;
        let cids = node.links.into_iter().map(|l| l.hash).collect();
        let links = match header.depth {
            0 => SnapshotLinks::Chunks(cids),
            1 => SnapshotLinks::Indexes(cids),
            depth => return Err(malformed("root", format!("depth {depth} is not 0 or 1"))),
        };
        Ok(Self {
            heads,
            keys: header.keys,
            links,
        })
    }
}

/// A node between a snapshot's root and its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotIndex {
    pub chunks: Vec<Cid>,
}

impl SnapshotIndex {
    pub fn encode(&self) -> (Cid, Vec<u8>) {
        let data = IndexPb {
            format: SNAPSHOT_INDEX_FORMAT.to_owned(),
        }
        .encode_to_vec();
        encode_node(
            self.chunks.iter().copied().map(PbLink::unnamed).collect(),
            data,
        )
    }

    pub fn decode(block: &[u8]) -> Result<Self, SnapshotError> {
        let node = PbNode::decode(block)?;
        let index = IndexPb::decode(node.data.as_deref().unwrap_or_default())
            .map_err(|e| malformed("index", e))?;
        if index.format != SNAPSHOT_INDEX_FORMAT {
            return Err(SnapshotError::UnknownFormat(index.format));
        }
        if node.links.is_empty() {
            return Err(malformed("index", "an index links at least one chunk"));
        }
        Ok(Self {
            chunks: node.links.into_iter().map(|l| l.hash).collect(),
        })
    }
}

/// One chunk: some keys' live versions and some merged block ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub entries: Vec<(String, Vec<Version>)>,
    pub processed: Vec<BlockId>,
}

impl SnapshotChunk {
    /// Encoded size an entry adds to a chunk, to cut chunks before [`MAX_CHUNK_BYTES`].
    pub fn entry_len(key: &str, versions: &[Version]) -> usize {
        let versions: usize = versions.iter().map(|v| v.value.len() + 48).sum();
        key.len() + versions + 8
    }

    /// Encoded size a processed block id adds.
    pub const PROCESSED_LEN: usize = 34;

    pub fn encode(&self) -> (Cid, Vec<u8>) {
        let chunk = ChunkPb {
            entries: self
                .entries
                .iter()
                .map(|(key, versions)| EntryPb {
                    key: key.clone(),
                    versions: versions
                        .iter()
                        .map(|v| VersionPb {
                            block: v.block.0.to_vec(),
                            priority: v.priority,
                            value: v.value.clone(),
                        })
                        .collect(),
                })
                .collect(),
            processed: self.processed.iter().map(|b| b.0.to_vec()).collect(),
        };
        encode_node(Vec::new(), chunk.encode_to_vec())
    }

    pub fn decode(block: &[u8]) -> Result<Self, SnapshotError> {
        let node = PbNode::decode(block)?;
        if !node.links.is_empty() {
            return Err(malformed("chunk", "a chunk has no links"));
        }
        let chunk = ChunkPb::decode(node.data.as_deref().unwrap_or_default())
            .map_err(|e| malformed("chunk", e))?;
        let block_id = |bytes: &[u8]| {
            <[u8; 32]>::try_from(bytes)
                .map(BlockId)
                .map_err(|_| malformed("chunk", "a block id is not 32 bytes"))
        };
        let entries = chunk
            .entries
            .into_iter()
            .map(|entry| {
                let versions = entry
                    .versions
                    .into_iter()
                    .map(|v| {
                        Ok(Version {
                            block: block_id(&v.block)?,
                            priority: v.priority,
                            value: v.value,
                        })
                    })
                    .collect::<Result<_, SnapshotError>>()?;
                Ok((entry.key, versions))
            })
            .collect::<Result<_, SnapshotError>>()?;
        let processed = chunk
            .processed
            .iter()
            .map(|b| block_id(b))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries, processed })
    }
}

fn encode_node(links: Vec<PbLink>, data: Vec<u8>) -> (Cid, Vec<u8>) {
    let bytes = PbNode {
        links,
        data: Some(data),
    }
    .encode();
    (super::dagpb::dag_pb_cid(&bytes), bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::dagpb::tests::arb_cid;
    use proptest::prelude::*;

    pub(crate) fn arb_version() -> impl Strategy<Value = Version> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(block, priority, value)| Version {
                block: BlockId(block),
                priority,
                value,
            })
    }

    proptest! {
        #[test]
        fn chunks_round_trip(
            entries in proptest::collection::vec((".{0,20}", proptest::collection::vec(arb_version(), 1..3)), 0..10),
            processed in proptest::collection::vec(any::<[u8; 32]>(), 0..10),
        ) {
            let chunk = SnapshotChunk { entries, processed: processed.into_iter().map(BlockId).collect() };
            let (cid, bytes) = chunk.encode();
            prop_assert_eq!(crate::codec::dagpb::verify_block(&cid, &bytes), Ok(()));
            prop_assert_eq!(SnapshotChunk::decode(&bytes), Ok(chunk.clone()));
            let estimate: usize = chunk.entries.iter().map(|(k, v)| SnapshotChunk::entry_len(k, v)).sum::<usize>()
                + chunk.processed.len() * SnapshotChunk::PROCESSED_LEN;
            prop_assert!(bytes.len() <= estimate + 16, "size estimate {} below {}", estimate, bytes.len());
        }

        #[test]
        fn headers_round_trip(
            heads in proptest::collection::vec((arb_cid(), any::<u64>()), 0..5),
            keys in any::<u64>(),
            chunks in proptest::collection::vec(arb_cid(), 0..5),
            indexed in any::<bool>(),
        ) {
            let links = if indexed { SnapshotLinks::Indexes(chunks) } else { SnapshotLinks::Chunks(chunks) };
            let header = SnapshotHeader { heads, keys, links };
            let (_, bytes) = header.encode();
            prop_assert_eq!(SnapshotHeader::decode(&bytes), Ok(header));
        }

        #[test]
        fn indexes_round_trip(chunks in proptest::collection::vec(arb_cid(), 1..8)) {
            let index = SnapshotIndex { chunks };
            let (cid, bytes) = index.encode();
            prop_assert_eq!(crate::codec::dagpb::verify_block(&cid, &bytes), Ok(()));
            prop_assert_eq!(SnapshotIndex::decode(&bytes), Ok(index));
        }

        /// Chunks are linked directly up to the fanout, through index nodes of at most the
        /// fanout up to its square, and refused beyond; their order is kept.
        #[test]
        fn links_use_index_nodes_past_the_fanout(count in 0usize..40, fanout in 2usize..7) {
            let chunks: Vec<Cid> = (0..count as u64)
                .map(|i| crate::codec::dagpb::dag_pb_cid(&i.to_le_bytes()))
                .collect();
            match SnapshotLinks::build(chunks.clone(), fanout) {
                Err(max) => prop_assert!(count > max && max == fanout * fanout),
                Ok((SnapshotLinks::Chunks(linked), indexes)) => {
                    prop_assert!(count <= fanout && indexes.is_empty());
                    prop_assert_eq!(linked, chunks);
                }
                Ok((SnapshotLinks::Indexes(linked), indexes)) => {
                    prop_assert!(count > fanout && linked.len() <= fanout);
                    let mut all = Vec::new();
                    for ((cid, bytes), link) in indexes.iter().zip(&linked) {
                        prop_assert_eq!(cid, link);
                        let index = SnapshotIndex::decode(bytes).unwrap();
                        prop_assert!(index.chunks.len() <= fanout);
                        all.extend(index.chunks);
                    }
                    prop_assert_eq!(all, chunks);
                }
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SnapshotChunk::decode(&bytes);
            let _ = SnapshotHeader::decode(&bytes);
            let _ = SnapshotIndex::decode(&bytes);
        }
    }

    /// The fuzzer's seeds are valid blocks of each kind, so that it starts deep.
    #[test]
    fn fuzz_seeds_decode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions/snapshot_block");
        let seed = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let root = SnapshotHeader::decode(&seed("seed-root")).unwrap();
        assert!(matches!(root.links, SnapshotLinks::Indexes(ref l) if l.len() == 1));
        assert_eq!(
            SnapshotIndex::decode(&seed("seed-index"))
                .unwrap()
                .chunks
                .len(),
            1
        );
        assert_eq!(
            SnapshotChunk::decode(&seed("seed-chunk"))
                .unwrap()
                .entries
                .len(),
            1
        );
    }

    #[test]
    fn delta_nodes_are_not_snapshots() {
        let (_, delta) = crate::codec::dagpb::DeltaNode {
            delta: crate::codec::delta::Delta {
                elements: vec![],
                tombstones: vec![],
                priority: 1,
            },
            parents: vec![],
        }
        .encode();
        assert!(matches!(
            SnapshotHeader::decode(&delta),
            Err(SnapshotError::UnknownFormat(_)) | Err(SnapshotError::Malformed { .. })
        ));
    }
}
