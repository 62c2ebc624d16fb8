//! pinfold's compaction snapshots: the pinset's live versions at a set of heads, in
//! content-addressed dag-pb blocks that bitswap moves like any other block.
//!
//! A snapshot is a root node whose `Data` is a [`SnapshotHeader`] and whose links name its
//! chunks, each a node whose `Data` is a [`SnapshotChunk`] of at most [`MAX_CHUNK_BYTES`].
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

/// Most chunks one root links (dag-pb's link limit): 4 GiB of state.
pub const MAX_CHUNKS: usize = MAX_LINKS;

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

/// The root of a snapshot: the heads it was taken at, its size, and its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub heads: Vec<(Cid, u64)>,
    /// Keys with a value in the snapshot.
    pub keys: u64,
    pub chunks: Vec<Cid>,
}

impl SnapshotHeader {
    /// Encodes the root node; returns its CID and bytes. At most [`MAX_CHUNKS`] chunks.
    pub fn encode(&self) -> (Cid, Vec<u8>) {
        assert!(
            self.chunks.len() <= MAX_CHUNKS,
            "a snapshot root links at most {MAX_CHUNKS} chunks"
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
        };
        encode_node(
            self.chunks.iter().copied().map(PbLink::unnamed).collect(),
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
        Ok(Self {
            heads,
            keys: header.keys,
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
mod tests {
    use super::*;
    use crate::codec::dagpb::tests::arb_cid;
    use proptest::prelude::*;

    fn arb_version() -> impl Strategy<Value = Version> {
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
        ) {
            let header = SnapshotHeader { heads, keys, chunks };
            let (_, bytes) = header.encode();
            prop_assert_eq!(SnapshotHeader::decode(&bytes), Ok(header));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SnapshotChunk::decode(&bytes);
            let _ = SnapshotHeader::decode(&bytes);
        }
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
