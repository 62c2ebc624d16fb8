//! The add-wins observed-remove set of go-ds-crdt, one key at a time, with no I/O.
//!
//! A key holds element versions, each named by the id of the DAG block that carried it and
//! carrying that block's priority. A tombstone names one version (key + block id) and removes
//! it for good, whenever it arrives. The key's value is the live version with the highest
//! priority; at equal priority the greater value bytes win (go-ds-crdt `setValue` and
//! `findBestValue`). Because the value is a pure function of the set of versions and the set
//! of tombstones, replicas that have merged the same deltas agree, in any delivery order.

use cid::Cid;
use data_encoding::BASE32_NOPAD;
use prost::encoding::{decode_varint, encode_varint};

use crate::codec::dagpb::{DAG_PB, SHA2_256};

/// The sha2-256 digest naming a delta block. Only dag-pb sha2-256 blocks (what go-ds-crdt
/// writes) are accepted, so 32 bytes identify a block and every element version.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub [u8; 32]);

/// Why a CID or an id string cannot name a delta block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockIdError {
    #[error("{0} is not a dag-pb sha2-256 CID; go-ds-crdt delta blocks always are")]
    UnsupportedCid(String),
    #[error("element id {0:?} is not '/' + base32 of a sha2-256 multihash")]
    BadElementId(String),
}

impl BlockId {
    /// The block id of a delta node's CID (v0 or v1, dag-pb, sha2-256).
    pub fn from_cid(cid: &Cid) -> Result<Self, BlockIdError> {
        let hash = cid.hash();
        if cid.codec() != DAG_PB || hash.code() != SHA2_256 || hash.size() != 32 {
            return Err(BlockIdError::UnsupportedCid(cid.to_string()));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(hash.digest());
        Ok(Self(digest))
    }

    /// The CIDv1 (dag-pb) under which the block is fetched and linked.
    pub fn to_cid(&self) -> Cid {
        let multihash = multihash::Multihash::<64>::wrap(SHA2_256, &self.0)
            .expect("a 32-byte digest fits a multihash");
        Cid::new_v1(DAG_PB, multihash)
    }

    /// The element id written in tombstones: `/` + base32 of the multihash, as
    /// [`crate::codec::state_key::block_id`] writes it.
    pub fn to_element_id(&self) -> String {
        let mut multihash = Vec::with_capacity(34);
        multihash.extend_from_slice(&[SHA2_256 as u8, 32]);
        multihash.extend_from_slice(&self.0);
        format!("/{}", BASE32_NOPAD.encode(&multihash))
    }

    /// Parses a tombstone's element id.
    pub fn from_element_id(id: &str) -> Result<Self, BlockIdError> {
        let bad = || BlockIdError::BadElementId(id.to_owned());
        let body = id.strip_prefix('/').ok_or_else(bad)?;
        let multihash = BASE32_NOPAD.decode(body.as_bytes()).map_err(|_| bad())?;
        match multihash.as_slice() {
            [code, 32, digest @ ..] if u64::from(*code) == SHA2_256 && digest.len() == 32 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(digest);
                Ok(Self(out))
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Debug for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockId({})", hex::encode(&self.0[..6]))
    }
}

/// One live version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub block: BlockId,
    pub priority: u64,
    pub value: Vec<u8>,
}

impl Version {
    /// Priority, then value bytes, decide; the block id only breaks exact ties so that the
    /// winning version does not depend on merge order.
    fn beats(&self, other: &Version) -> bool {
        (self.priority, &self.value, self.block) > (other.priority, &other.value, other.block)
    }
}

/// Everything the set knows about one key: its live versions and the block ids of the
/// versions removed. A key with no live version has no value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// Live versions, at most one per block.
    pub live: Vec<Version>,
    /// Removed versions, sorted, without duplicates.
    pub tombstones: Vec<BlockId>,
}

/// Why a stored record (a [`KeyState`] or a pending block) could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored record is corrupt: {0}")]
pub struct RecordDecodeError(&'static str);

impl RecordDecodeError {
    /// A record is corrupt in the part named `what`.
    pub fn new(what: &'static str) -> Self {
        Self(what)
    }
}

impl KeyState {
    /// The key's current value: the best live version.
    pub fn value(&self) -> Option<&Version> {
        self.live
            .iter()
            .fold(None, |best: Option<&Version>, v| match best {
                Some(b) if !v.beats(b) => Some(b),
                _ => Some(v),
            })
    }

    /// Whether the version carried by `block` has been removed.
    pub fn is_tombstoned(&self, block: &BlockId) -> bool {
        self.tombstones.binary_search(block).is_ok()
    }

    /// Removes the version carried by `block`, now or whenever it arrives.
    pub fn apply_tombstone(&mut self, block: BlockId) {
        if let Err(at) = self.tombstones.binary_search(&block) {
            self.tombstones.insert(at, block);
        }
        self.live.retain(|v| v.block != block);
    }

    /// Adds a version unless it was removed. Several elements of one delta for the same key
    /// form one version whose value is the greatest of theirs (go-ds-crdt `findBestValue`).
    pub fn apply_element(&mut self, version: Version) {
        if self.is_tombstoned(&version.block) {
            return;
        }
        match self.live.iter_mut().find(|v| v.block == version.block) {
            Some(existing) => {
                if version.value > existing.value {
                    existing.value = version.value;
                }
            }
            None => self.live.push(version),
        }
    }

    /// The block ids a local delete must tombstone: every live version.
    pub fn live_blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.live.iter().map(|v| v.block)
    }

    /// A compact binary form for durable stores, block ids written whole.
    pub fn encode(&self) -> Vec<u8> {
        let value_bytes: usize = self.live.iter().map(|v| v.value.len() + 44).sum();
        let mut out = Vec::with_capacity(2 + value_bytes + 32 * self.tombstones.len());
        self.encode_into(&mut out, |block, out| out.extend_from_slice(&block.0));
        out
    }

    /// Reads the form [`KeyState::encode`] writes, checking every length.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        Self::decode_with(bytes, read_block)
    }

    /// Appends the compact form to `out`, block ids written by `write_block`, for stores
    /// that keep ids in a shorter form (such as an index into a table of ids).
    pub fn encode_into(
        &self,
        out: &mut Vec<u8>,
        mut write_block: impl FnMut(&BlockId, &mut Vec<u8>),
    ) {
        encode_varint(self.live.len() as u64, out);
        for version in &self.live {
            write_block(&version.block, out);
            encode_varint(version.priority, out);
            encode_varint(version.value.len() as u64, out);
            out.extend_from_slice(&version.value);
        }
        encode_varint(self.tombstones.len() as u64, out);
        for block in &self.tombstones {
            write_block(block, out);
        }
    }

    /// Reads the form [`KeyState::encode_into`] writes, block ids read by `read_block`.
    pub fn decode_with(
        mut bytes: &[u8],
        mut read_block: impl FnMut(&mut &[u8]) -> Result<BlockId, RecordDecodeError>,
    ) -> Result<Self, RecordDecodeError> {
        let buf = &mut bytes;
        let live_count = read_count(buf)?;
        let mut live = Vec::with_capacity(live_count.min(64));
        for _ in 0..live_count {
            let block = read_block(buf)?;
            let priority = decode_varint(buf).map_err(|_| RecordDecodeError("priority"))?;
            let len = read_count(buf)?;
            if buf.len() < len {
                return Err(RecordDecodeError("value length"));
            }
            let (value, rest) = buf.split_at(len);
            *buf = rest;
            live.push(Version {
                block,
                priority,
                value: value.to_vec(),
            });
        }
        let tomb_count = read_count(buf)?;
        let mut tombstones = Vec::with_capacity(tomb_count.min(1024));
        for _ in 0..tomb_count {
            tombstones.push(read_block(buf)?);
        }
        if !buf.is_empty() {
            return Err(RecordDecodeError("trailing bytes"));
        }
        if !tombstones.windows(2).all(|w| w[0] < w[1]) {
            return Err(RecordDecodeError("tombstones out of order"));
        }
        Ok(Self { live, tombstones })
    }
}

pub(crate) fn read_count(buf: &mut &[u8]) -> Result<usize, RecordDecodeError> {
    let n = decode_varint(buf).map_err(|_| RecordDecodeError("count"))?;
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= buf.len())
        .ok_or(RecordDecodeError("count exceeds the data"))
}

fn read_block(buf: &mut &[u8]) -> Result<BlockId, RecordDecodeError> {
    if buf.len() < 32 {
        return Err(RecordDecodeError("block id"));
    }
    let (id, rest) = buf.split_at(32);
    *buf = rest;
    let mut out = [0u8; 32];
    out.copy_from_slice(id);
    Ok(BlockId(out))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn block(n: u8) -> BlockId {
        BlockId([n; 32])
    }

    fn version(n: u8, priority: u64, value: &[u8]) -> Version {
        Version {
            block: block(n),
            priority,
            value: value.to_vec(),
        }
    }

    #[test]
    fn highest_priority_wins_then_greater_bytes() {
        let mut state = KeyState::default();
        state.apply_element(version(1, 3, b"a"));
        state.apply_element(version(2, 2, b"z"));
        assert_eq!(state.value().unwrap().value, b"a");
        state.apply_element(version(3, 3, b"b"));
        assert_eq!(state.value().unwrap().value, b"b");
    }

    #[test]
    fn tombstone_before_element_removes_it_when_it_arrives() {
        let mut state = KeyState::default();
        state.apply_tombstone(block(1));
        state.apply_element(version(1, 5, b"late"));
        assert_eq!(state.value(), None);
        assert!(state.live.is_empty());
    }

    #[test]
    fn elements_of_one_block_are_one_version_with_the_greatest_value() {
        let mut state = KeyState::default();
        state.apply_element(version(1, 2, b"m"));
        state.apply_element(version(1, 2, b"x"));
        state.apply_element(version(1, 2, b"c"));
        assert_eq!(state.live.len(), 1);
        assert_eq!(state.value().unwrap().value, b"x");
    }

    #[test]
    fn element_ids_round_trip_as_go_writes_them() {
        let cid: Cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
            .parse()
            .unwrap();
        let id = BlockId::from_cid(&cid).unwrap();
        assert_eq!(
            id.to_element_id(),
            crate::codec::state_key::block_id(&cid),
            "element ids are dshelp.MultihashToDsKey of the node"
        );
        assert_eq!(BlockId::from_element_id(&id.to_element_id()), Ok(id));
        assert_eq!(id.to_cid(), cid);
        assert!(BlockId::from_element_id("/AAAA").is_err());
        let raw: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap();
        assert!(BlockId::from_cid(&raw).is_err(), "raw codec is not a delta");
    }

    fn arb_op() -> impl Strategy<Value = (bool, u8, u64, Vec<u8>)> {
        (
            any::<bool>(),
            0u8..6,
            1u64..5,
            proptest::collection::vec(any::<u8>(), 0..3),
        )
    }

    proptest! {
        /// The value depends only on the set of operations, not on their order or repetition.
        #[test]
        fn merge_is_order_and_duplicate_insensitive(
            ops in proptest::collection::vec(arb_op(), 0..24),
            seed in any::<u64>(),
        ) {
            // One block carries one priority: derive it from the block id.
            let ops: Vec<_> = ops.into_iter().map(|(t, b, _, v)| (t, b, u64::from(b % 3) + 1, v)).collect();
            let apply = |ops: &[(bool, u8, u64, Vec<u8>)]| {
                let mut state = KeyState::default();
                for (tomb, b, p, v) in ops {
                    if *tomb { state.apply_tombstone(block(*b)) } else { state.apply_element(version(*b, *p, v)) }
                }
                state
            };
            let mut shuffled = ops.clone();
            shuffled.extend(ops.iter().take(seed as usize % 4).cloned());
            let mut rng = seed;
            for i in (1..shuffled.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let a = apply(&ops);
            let b = apply(&shuffled);
            prop_assert_eq!(a.value(), b.value());
            prop_assert_eq!(&a.tombstones, &b.tombstones);
            prop_assert_eq!(KeyState::decode(&a.encode()).unwrap(), a);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = KeyState::decode(&bytes);
        }
    }
}
