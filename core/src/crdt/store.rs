//! Where a replica keeps its state, behind one trait that synchronous embedded databases
//! and the browser's asynchronous IndexedDB can both implement.
//!
//! The replica is the only writer. It reads through `&self` and writes through one
//! [`Transaction`] per applied delta, which the store must apply atomically: after a crash
//! the store holds either all of a transaction or none of it, so a sync resumes where it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;

use cid::Cid;

use prost::encoding::{decode_varint, encode_varint};

use super::set::{read_count, BlockId, KeyState, RecordDecodeError};

/// What a pending block is expected to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlockKind {
    /// A delta node of the CRDT DAG.
    #[default]
    Delta,
    /// The root of a snapshot being loaded.
    SnapshotRoot,
    /// A chunk of the snapshot whose root is `root`.
    SnapshotChunk,
    /// An index node of the snapshot whose root is `root`, linking chunks.
    SnapshotIndex,
}

impl BlockKind {
    const ALL: [BlockKind; 4] = [
        BlockKind::Delta,
        BlockKind::SnapshotRoot,
        BlockKind::SnapshotChunk,
        BlockKind::SnapshotIndex,
    ];

    /// The byte a durable store writes for the kind.
    fn code(self) -> u8 {
        Self::ALL.iter().position(|k| *k == self).expect("listed") as u8
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Whether the block belongs to a snapshot being loaded.
    pub fn is_snapshot(self) -> bool {
        self != BlockKind::Delta
    }
}

/// A block the replica still has to fetch and merge, and the walk it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingBlock {
    pub kind: BlockKind,
    /// The block to merge.
    pub cid: Cid,
    /// The head the walk started from; it becomes a head once the walk meets known blocks.
    pub root: Cid,
    /// The priority of `root`, 0 until the root itself has been merged.
    pub root_priority: u64,
    /// The priority of the node that linked this block (`u64::MAX` for a head): an honest
    /// child always has a lower priority than its parent.
    pub parent_priority: u64,
}

impl PendingBlock {
    /// The compact form a durable store keeps: kind, the two priorities as varints, then
    /// the two CIDs, each prefixed by its length.
    pub fn encode(&self) -> Vec<u8> {
        let cid = self.cid.to_bytes();
        let root = self.root.to_bytes();
        let mut out = Vec::with_capacity(cid.len() + root.len() + 24);
        out.push(self.kind.code());
        encode_varint(self.root_priority, &mut out);
        encode_varint(self.parent_priority, &mut out);
        for bytes in [cid, root] {
            encode_varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Reads back what [`PendingBlock::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let (&kind, mut buf) = bytes.split_first().ok_or(RecordDecodeError::new("empty"))?;
        let kind = BlockKind::from_code(kind).ok_or(RecordDecodeError::new("block kind"))?;
        let root_priority =
            decode_varint(&mut buf).map_err(|_| RecordDecodeError::new("priority"))?;
        let parent_priority =
            decode_varint(&mut buf).map_err(|_| RecordDecodeError::new("priority"))?;
        let read_cid = |buf: &mut &[u8]| {
            let len = read_count(buf)?;
            let (cid, rest) = buf.split_at(len);
            *buf = rest;
            Cid::try_from(cid).map_err(|_| RecordDecodeError::new("cid"))
        };
        let cid = read_cid(&mut buf)?;
        let root = read_cid(&mut buf)?;
        if !buf.is_empty() {
            return Err(RecordDecodeError::new("trailing bytes"));
        }
        Ok(Self {
            kind,
            cid,
            root,
            root_priority,
            parent_priority,
        })
    }
}

/// Writes a run of keys and their states as one record, for a store that pays per record
/// (IndexedDB) and takes a snapshot chunk's keys in pages: the number of entries, then
/// each key and its [`KeyState::encode`]d state, both prefixed by their length. `entries`
/// are written in the order given.
pub fn encode_key_page(entries: &[(Vec<u8>, KeyState)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_varint(entries.len() as u64, &mut out);
    for (key, state) in entries {
        write_bytes(key, &mut out);
        write_bytes(&state.encode(), &mut out);
    }
    out
}

/// Reads back what [`encode_key_page`] wrote.
pub fn decode_key_page(mut bytes: &[u8]) -> Result<Vec<(Vec<u8>, KeyState)>, RecordDecodeError> {
    let buf = &mut bytes;
    let count = read_count(buf)?;
    let mut entries = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let key = read_bytes(buf)?.to_vec();
        entries.push((key, KeyState::decode(read_bytes(buf)?)?));
    }
    finished(buf)?;
    Ok(entries)
}

/// Where the pages one commit wrote lie: each page's first key, in order, and the last
/// key of the last page. A page holds the keys from its first up to the next page's first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRun {
    pub firsts: Vec<Vec<u8>>,
    pub last: Vec<u8>,
}

impl PageRun {
    /// The number of pages, each first key and the last key, each prefixed by its length.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(self.firsts.len() as u64, &mut out);
        for key in self.firsts.iter().chain([&self.last]) {
            write_bytes(key, &mut out);
        }
        out
    }

    /// Reads back what [`PageRun::encode`] wrote.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let buf = &mut bytes;
        let count = read_count(buf)?;
        let firsts = (0..count)
            .map(|_| read_bytes(buf).map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        let last = read_bytes(buf)?.to_vec();
        finished(buf)?;
        Ok(Self { firsts, last })
    }

    /// The first key of the page that holds `key`, if the run's range holds it.
    pub fn page_of(&self, key: &[u8]) -> Option<&[u8]> {
        if key > self.last.as_slice() {
            return None;
        }
        let after = self.firsts.partition_point(|first| first.as_slice() <= key);
        after.checked_sub(1).map(|at| self.firsts[at].as_slice())
    }
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], RecordDecodeError> {
    let len = read_count(buf)?;
    let (bytes, rest) = buf.split_at(len);
    *buf = rest;
    Ok(bytes)
}

fn finished(buf: &[u8]) -> Result<(), RecordDecodeError> {
    match buf.is_empty() {
        true => Ok(()),
        false => Err(RecordDecodeError::new("trailing bytes")),
    }
}

/// What a replica finds in its store when it opens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// Current heads and their heights.
    pub heads: Vec<(Cid, u64)>,
    /// Blocks of interrupted walks, to fetch again.
    pub pending: Vec<PendingBlock>,
}

/// One atomic write: the effects of merging one delta, or of queuing walks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    /// Blocks to keep (to serve to other peers and for later reads).
    pub blocks: Vec<(BlockId, Vec<u8>)>,
    /// Blocks to forget (those of a replaced snapshot), after `blocks` are written.
    pub blocks_removed: Vec<BlockId>,
    /// Blocks whose delta is now merged.
    pub processed: Vec<BlockId>,
    /// New states of the keys the delta touched.
    pub keys: Vec<(Vec<u8>, KeyState)>,
    pub heads_removed: Vec<Cid>,
    pub heads_added: Vec<(Cid, u64)>,
    pub pending_removed: Vec<BlockId>,
    pub pending_added: Vec<PendingBlock>,
    /// How the number of keys with a value changes (for stores that keep the count).
    pub live_keys: i64,
    /// The write is this replica's own, acknowledged once committed: a store that defers
    /// persistence (for merges of others' deltas, which a crash only makes the replica
    /// fetch again) persists this one, and everything before it, before returning. Own
    /// writes of a write group are not durable one by one: the group ends with
    /// [`Store::flush`].
    pub durable: bool,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
            && self.blocks_removed.is_empty()
            && self.processed.is_empty()
            && self.keys.is_empty()
            && self.heads_removed.is_empty()
            && self.heads_added.is_empty()
            && self.pending_removed.is_empty()
            && self.pending_added.is_empty()
    }
}

/// A replica's storage. Methods are `async` so that IndexedDB can implement them; a
/// synchronous database returns ready futures.
#[allow(async_fn_in_trait)]
pub trait Store {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Heads and pending walks, read once when the replica opens.
    async fn load(&self) -> Result<Persisted, Self::Error>;
    /// The state of one key, `None` if the key was never written.
    async fn key_state(&self, key: &[u8]) -> Result<Option<KeyState>, Self::Error>;
    /// The states of several keys, in their order: what a merge reads first. A store with
    /// costly round trips (IndexedDB) answers them all at once.
    async fn key_states(&self, keys: &[&[u8]]) -> Result<Vec<Option<KeyState>>, Self::Error> {
        let mut states = Vec::with_capacity(keys.len());
        for key in keys {
            states.push(self.key_state(key).await?);
        }
        Ok(states)
    }
    /// Whether a block's delta has been merged.
    async fn is_processed(&self, block: &BlockId) -> Result<bool, Self::Error>;
    /// A stored block's bytes.
    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Up to `limit` ids of merged blocks in id order, starting after `after`.
    async fn processed_after(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Vec<BlockId>, Self::Error>;
    /// Up to `limit` key states in key order, starting after `after`: state queries page
    /// through the set instead of loading it whole.
    async fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, Self::Error>;
    /// Applies a transaction atomically.
    async fn commit(&mut self, tx: Transaction) -> Result<(), Self::Error>;
    /// Puts every transaction committed so far on disk. A store that persists each commit
    /// as it is made has nothing to do.
    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// How many keys have a value. The default counts them page by page; a store that
    /// keeps [`Transaction::live_keys`] answers at once.
    async fn live_keys(&self) -> Result<u64, Self::Error> {
        count_live_keys(self).await
    }
}

/// Counts the keys of `store` with a value, page by page (what [`Store::live_keys`] does
/// unless a store keeps the count).
pub async fn count_live_keys<S: Store + ?Sized>(store: &S) -> Result<u64, S::Error> {
    const PAGE: usize = 10_000;
    let (mut count, mut after) = (0, None::<Vec<u8>>);
    loop {
        let page = store.scan(after.as_deref(), PAGE).await?;
        count += page.iter().filter(|(_, s)| !s.live.is_empty()).count() as u64;
        match page.last() {
            Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
            _ => return Ok(count),
        }
    }
}

/// A store in memory: for tests, benchmarks and followers that keep nothing.
#[derive(Default)]
pub struct MemoryStore {
    keys: KeyStates,
    blocks: HashMap<BlockId, Box<[u8]>>,
    processed: BTreeSet<BlockId>,
    heads: BTreeMap<Vec<u8>, (Cid, u64)>,
    pending: HashMap<BlockId, PendingBlock>,
}

/// Keys and their states in key order, held compactly: each key takes one allocation
/// holding the key and its state, in which block ids are indexes into a table of the ids
/// seen (a delta's thousands of elements share one id). What [`MemoryStore`] keeps, and
/// what a store holds in memory until it writes it out.
#[derive(Default)]
pub struct KeyStates {
    keys: BTreeSet<KeyEntry>,
    ids: BlockIds,
    /// Where each key's entry is assembled before it is allocated.
    scratch: Vec<u8>,
}

impl KeyStates {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The state of `key`, if it has one here.
    pub fn get(&self, key: &[u8]) -> Option<KeyState> {
        self.keys
            .get(key)
            .map(|entry| self.ids.decode(entry.split().1))
    }

    /// Sets the state of `key`, replacing the one it had.
    pub fn insert(&mut self, key: &[u8], state: &KeyState) {
        let entry = KeyEntry::new(key, state, &mut self.ids, &mut self.scratch);
        self.keys.replace(entry);
    }

    /// Every key and its state, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], KeyState)> + '_ {
        self.keys.iter().map(|entry| {
            let (key, state) = entry.split();
            (key, self.ids.decode(state))
        })
    }

    /// Up to `limit` keys and their states after `after`, in key order.
    pub fn after(&self, after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, KeyState)> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.keys
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|entry| {
                let (key, state) = entry.split();
                (key.to_vec(), self.ids.decode(state))
            })
            .collect()
    }

    /// Whether a key from `first` to `last`, both included, is here.
    pub fn any_between(&self, first: &[u8], last: &[u8]) -> bool {
        use std::ops::Bound;
        first <= last
            && self
                .keys
                .range::<[u8], _>((Bound::Included(first), Bound::Included(last)))
                .next()
                .is_some()
    }

    /// Drops every key, and the table of block ids with them.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.ids = BlockIds::default();
    }
}

impl Extend<(Vec<u8>, KeyState)> for KeyStates {
    fn extend<I: IntoIterator<Item = (Vec<u8>, KeyState)>>(&mut self, entries: I) {
        for (key, state) in entries {
            self.insert(&key, &state);
        }
    }
}

/// A key and its encoded state in one allocation: the key's length, the key, the state.
/// Ordered, compared and looked up by the key alone.
struct KeyEntry(Box<[u8]>);

impl KeyEntry {
    /// The entry of `key` and its `state`, its block ids numbered by `ids`, assembled in
    /// `scratch` so that the entry is allocated once, at its exact size.
    fn new(key: &[u8], state: &KeyState, ids: &mut BlockIds, scratch: &mut Vec<u8>) -> Self {
        scratch.clear();
        encode_varint(key.len() as u64, scratch);
        scratch.extend_from_slice(key);
        ids.encode_into(state, scratch);
        Self(Box::from(&scratch[..]))
    }

    // Always inlined: the set compares keys many times per insert and lookup, and the
    // browser build, optimised for size, would otherwise call out for each comparison.
    #[inline(always)]
    fn split(&self) -> (&[u8], &[u8]) {
        // Keys under 128 bytes (every pin's) have a one-byte length: read it directly.
        if let Some((&len, rest)) = self.0.split_first() {
            if len < 0x80 {
                return rest.split_at(usize::from(len));
            }
        }
        let mut buf = &self.0[..];
        let len = decode_varint(&mut buf).expect("written by KeyEntry::new") as usize;
        buf.split_at(len)
    }

    #[inline(always)]
    fn key(&self) -> &[u8] {
        self.split().0
    }
}

impl std::borrow::Borrow<[u8]> for KeyEntry {
    #[inline(always)]
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

impl PartialEq for KeyEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for KeyEntry {}

impl PartialOrd for KeyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyEntry {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

/// Every block id a key state refers to, each numbered once.
#[derive(Default)]
struct BlockIds {
    ids: Vec<BlockId>,
    numbers: HashMap<BlockId, u64>,
}

impl BlockIds {
    fn encode_into(&mut self, state: &KeyState, out: &mut Vec<u8>) {
        state.encode_into(out, |id, out| {
            let next = self.ids.len() as u64;
            let number = *self.numbers.entry(*id).or_insert(next);
            if number == next {
                self.ids.push(*id);
            }
            encode_varint(number, out);
        })
    }

    fn decode(&self, bytes: &[u8]) -> KeyState {
        KeyState::decode_with(bytes, |buf| {
            let number = decode_varint(buf).map_err(|_| RecordDecodeError::new("block number"))?;
            self.ids
                .get(number as usize)
                .copied()
                .ok_or(RecordDecodeError::new("block number"))
        })
        .expect("the memory store only holds states it encoded")
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Every stored block, for handing a DAG to another replica in tests and benchmarks.
    pub fn blocks(&self) -> impl Iterator<Item = (&BlockId, &[u8])> {
        self.blocks.iter().map(|(id, bytes)| (id, &bytes[..]))
    }
}

impl Store for MemoryStore {
    type Error = Infallible;

    async fn load(&self) -> Result<Persisted, Infallible> {
        Ok(Persisted {
            heads: self.heads.values().copied().collect(),
            pending: self.pending.values().copied().collect(),
        })
    }

    async fn key_state(&self, key: &[u8]) -> Result<Option<KeyState>, Infallible> {
        Ok(self.keys.get(key))
    }

    async fn is_processed(&self, block: &BlockId) -> Result<bool, Infallible> {
        Ok(self.processed.contains(block))
    }

    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.blocks.get(block).map(|b| b.to_vec()))
    }

    async fn processed_after(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Vec<BlockId>, Infallible> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .processed
            .range((lower, Bound::Unbounded))
            .take(limit)
            .copied()
            .collect())
    }

    async fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, Infallible> {
        Ok(self.keys.after(after, limit))
    }

    async fn commit(&mut self, tx: Transaction) -> Result<(), Infallible> {
        for (id, bytes) in tx.blocks {
            self.blocks
                .entry(id)
                .or_insert_with(|| bytes.into_boxed_slice());
        }
        for id in tx.blocks_removed {
            self.blocks.remove(&id);
        }
        self.processed.extend(tx.processed);
        self.keys.extend(tx.keys);
        for cid in tx.heads_removed {
            self.heads.remove(&cid.to_bytes());
        }
        for (cid, height) in tx.heads_added {
            self.heads.insert(cid.to_bytes(), (cid, height));
        }
        for id in tx.pending_removed {
            self.pending.remove(&id);
        }
        for pending in tx.pending_added {
            if let Ok(id) = BlockId::from_cid(&pending.cid) {
                self.pending.insert(id, pending);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::dagpb::tests::arb_cid;
    use crate::codec::snapshot::tests::arb_version;
    use proptest::prelude::*;

    fn arb_pending() -> impl Strategy<Value = PendingBlock> {
        (0u8..4, arb_cid(), arb_cid(), any::<u64>(), any::<u64>()).prop_map(
            |(kind, cid, root, root_priority, parent_priority)| PendingBlock {
                kind: BlockKind::from_code(kind).unwrap(),
                cid,
                root,
                root_priority,
                parent_priority,
            },
        )
    }

    /// A valid state, built through the set's own operations.
    fn arb_key_state() -> impl Strategy<Value = KeyState> {
        (
            proptest::collection::vec(arb_version(), 0..3),
            proptest::collection::vec(any::<[u8; 32]>().prop_map(BlockId), 0..3),
        )
            .prop_map(|(live, tombstones)| {
                let mut state = KeyState::default();
                tombstones
                    .into_iter()
                    .for_each(|t| state.apply_tombstone(t));
                live.into_iter().for_each(|v| state.apply_element(v));
                state
            })
    }

    fn arb_key_page() -> impl Strategy<Value = Vec<(Vec<u8>, KeyState)>> {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 0..50),
                arb_key_state(),
            ),
            0..20,
        )
    }

    #[test]
    fn a_key_is_in_the_page_from_its_first_to_the_next_first() {
        let run = PageRun {
            firsts: vec![b"b".to_vec(), b"d".to_vec(), b"f".to_vec()],
            last: b"g".to_vec(),
        };
        let page = |key: &[u8]| run.page_of(key).map(<[u8]>::to_vec);
        assert_eq!(page(b"a"), None);
        assert_eq!(page(b"b"), Some(b"b".to_vec()));
        assert_eq!(page(b"c"), Some(b"b".to_vec()));
        assert_eq!(page(b"d"), Some(b"d".to_vec()));
        assert_eq!(page(b"ff"), Some(b"f".to_vec()));
        assert_eq!(page(b"g"), Some(b"f".to_vec()));
        assert_eq!(page(b"ga"), None);
    }

    proptest! {
        /// Keys short and long (their length one varint byte or more) are found and
        /// scanned in byte order.
        #[test]
        fn memory_store_keys_of_any_length_are_found_in_order(
            keys in proptest::collection::btree_set(proptest::collection::vec(any::<u8>(), 0..300), 0..30),
            state in arb_key_state(),
        ) {
            let mut store = MemoryStore::new();
            let tx = Transaction {
                keys: keys.iter().map(|k| (k.clone(), state.clone())).collect(),
                ..Default::default()
            };
            futures::executor::block_on(store.commit(tx)).unwrap();
            for key in &keys {
                let found = futures::executor::block_on(store.key_state(key)).unwrap();
                prop_assert_eq!(found.as_ref(), Some(&state));
            }
            let scanned: Vec<Vec<u8>> = futures::executor::block_on(store.scan(None, usize::MAX))
                .unwrap()
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            prop_assert_eq!(scanned, keys.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn key_states_answer_as_a_sorted_map_would(
            writes in proptest::collection::vec((0u8..40, arb_key_state()), 0..60),
            first in 0u8..40,
            last in 0u8..40,
            after in proptest::option::of(0u8..40),
        ) {
            let mut states = KeyStates::default();
            let mut model = BTreeMap::new();
            for (key, state) in writes {
                states.insert(&[key], &state);
                model.insert(vec![key], state);
            }
            prop_assert_eq!(states.len(), model.len());
            for key in 0u8..40 {
                prop_assert_eq!(states.get(&[key]), model.get(&vec![key]).cloned());
            }
            let after = after.map(|a| vec![a]);
            let expected: Vec<_> = model
                .iter()
                .filter(|(key, _)| after.as_ref().is_none_or(|a| *key > a))
                .take(7)
                .map(|(key, state)| (key.clone(), state.clone()))
                .collect();
            prop_assert_eq!(states.after(after.as_deref(), 7), expected);
            let all: Vec<_> = states.iter().map(|(key, state)| (key.to_vec(), state)).collect();
            prop_assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>());
            let between = model.keys().any(|key| (first..=last).contains(&key[0]));
            prop_assert_eq!(states.any_between(&[first], &[last]), between);
            states.clear();
            prop_assert!(states.is_empty() && states.get(&[first]).is_none());
        }

        #[test]
        fn key_pages_round_trip(page in arb_key_page()) {
            prop_assert_eq!(decode_key_page(&encode_key_page(&page)), Ok(page));
        }

        #[test]
        fn key_page_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_key_page(&bytes);
        }

        #[test]
        fn truncated_key_pages_are_rejected(page in arb_key_page(), cut in 1usize..8) {
            let bytes = encode_key_page(&page);
            let cut = cut.min(bytes.len());
            prop_assert!(decode_key_page(&bytes[..bytes.len() - cut]).is_err());
        }

        #[test]
        fn page_runs_round_trip(firsts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20), last in proptest::collection::vec(any::<u8>(), 0..40)) {
            let run = PageRun { firsts, last };
            prop_assert_eq!(PageRun::decode(&run.encode()), Ok(run));
        }

        #[test]
        fn page_run_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PageRun::decode(&bytes);
        }

        #[test]
        fn pending_blocks_round_trip(pending in arb_pending()) {
            prop_assert_eq!(PendingBlock::decode(&pending.encode()), Ok(pending));
        }

        #[test]
        fn pending_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = PendingBlock::decode(&bytes);
        }

        #[test]
        fn truncated_pending_blocks_are_rejected(pending in arb_pending(), cut in 1usize..8) {
            let bytes = pending.encode();
            let cut = cut.min(bytes.len());
            prop_assert!(PendingBlock::decode(&bytes[..bytes.len() - cut]).is_err());
        }
    }
}
