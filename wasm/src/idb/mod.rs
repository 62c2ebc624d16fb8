//! The follower's replica in IndexedDB, so that a reload resumes the sync instead of
//! starting over: one object store per table of the core's [`Store`] (blocks, processed
//! markers, key states, heads, pending walks), binary keys, and one readwrite transaction
//! per [`Transaction`], so that a closed tab keeps all of a merged delta or none of it.
//! A `meta` store keeps what the follower itself needs across reloads (its identity).
//!
//! IndexedDB costs most per record written. A commit of many keys in order into a key
//! range that holds none yet (each chunk of a snapshot loaded into a fresh follower) writes
//! them as pages of [`PAGE_KEYS`] keys instead of one record per key, and where they lie as
//! [`PageRun`]s. A key's record, when it has one, is newer than any page holding it:
//! later writes to a paged key are records.
//!
//! A store that holds no key records (every store this version created) writes none:
//! each commit's keys go into the `log` store as one record and stay in memory, newer than
//! any page, until nothing is left pending (the walk is done) or [`LOG_KEYS`] keys are
//! held; then they are merged into the pages ([`PageMerge`]) and the log is cleared. A
//! delta that comes with nothing pending and nothing logged (once synced) goes into the
//! pages at once. A store opened with a log (a reload in the middle of a walk) reads it
//! back into memory.
//!
//! A commit returns once its transaction is issued; the next commit (or [`Store::flush`])
//! first waits for it to finish, and fails with its error if it failed (its changes are
//! then in memory and not in the database: a reload reads the database, and the walk
//! fetches what it lacks again). IndexedDB runs a transaction that reads what an earlier
//! readwrite one writes after it, so reads see every commit; meanwhile the replica merges
//! the next delta. A store opened empty also knows the blocks it stored and marked merged
//! ([`BlocksWritten`]), so a cold sync's walk asks IndexedDB nothing about them.

mod log;
mod pages;
mod request;
#[cfg(all(test, feature = "browser-tests"))]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::rc::Rc;

use cid::Cid;
use futures::channel::oneshot;
use js_sys::{Array, Uint8Array};
use pinfold_core::crdt::{
    count_live_keys, decode_key_page, encode_key_page, merge_by_key, page_of, run_at, BlockId,
    KeyState, KeyStates, PageMerge, PageRun, PageWrites, PendingBlock, Persisted,
    RecordDecodeError, Runs, Store, Transaction,
};
use wasm_bindgen::prelude::*;
use web_sys::{
    IdbDatabase, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::websocket::js_message;
use log::{KeyLog, KeyWrites};
use pages::page_requests;
use request::{bytes, completed, done, failed, to_vec};

/// Key states in key order.
type Entries = Vec<(Vec<u8>, KeyState)>;

/// Version 2 added the `pages` and `page_runs` stores, version 3 the `log` store.
const VERSION: u32 = 3;
const BLOCKS: &str = "blocks";
const PROCESSED: &str = "processed";
const KEYS: &str = "keys";
/// Pages of key states, each under its first key.
const PAGES: &str = "pages";
/// Where each commit's pages lie, under the first key of the run.
const RUNS: &str = "page_runs";
const HEADS: &str = "heads";
const PENDING: &str = "pending";
const META: &str = "meta";
/// Commits of keys, by sequence number, until they are merged into pages.
const LOG: &str = "log";
const ALL: [&str; 9] = [
    BLOCKS, PROCESSED, KEYS, PAGES, RUNS, HEADS, PENDING, META, LOG,
];

/// Commits of at least this many keys may write pages.
const PAGE_MIN: usize = 64;
/// Most keys [`IdbStore::written`] follows (8 bytes each), and most merged blocks
/// [`BlocksWritten`] does; past that it is dropped.
const MAX_WRITTEN: usize = 4_000_000;
/// A store merges its logged keys into pages once it holds this many in memory. Each
/// merge rewrites every page, and IndexedDB's cost follows the bytes written: a cold walk
/// of 1,000,000 pins in Chromium took 25.5 s with 250,000 (four merges; 184 MiB of
/// WebAssembly memory, when the log held keys and states apart) and 21.9 s with this (one
/// merge; 224 MiB, each logged key and its state in one allocation).
const LOG_KEYS: usize = 1_000_000;
/// A merge into pages reads and writes the pages of this many logged keys at a time.
const MERGE_SLICE: usize = 16_384;
/// Keys per page: a page is read whole to find one key in it.
pub const PAGE_KEYS: usize = 64;

/// Why IndexedDB failed.
#[derive(Debug, thiserror::Error)]
pub enum IdbError {
    #[error("IndexedDB is not available here (private browsing, or not a browser); use storage: \"memory\"")]
    Unavailable,
    #[error("IndexedDB failed: {0}")]
    Failed(String),
    #[error(
        "IndexedDB holds a record pinfold cannot read ({0}); clear the site's data to start over"
    )]
    Corrupt(String),
    #[error(
        "the database {0:?} is open in another tab with an older pinfold; close it and reload"
    )]
    Blocked(String),
}

impl From<RecordDecodeError> for IdbError {
    fn from(error: RecordDecodeError) -> Self {
        IdbError::Corrupt(error.to_string())
    }
}

/// Reads of at least this many keys try one key range first ([`IdbStore::key_states`]):
/// a snapshot chunk's keys are sorted and close together.
const RANGE_READ_MIN: usize = 16;
/// A range read gives up when its range holds this many times more keys than asked for.
const RANGE_READ_SPREAD: usize = 2;

/// The `meta` record of the number of keys with a value.
const LIVE_KEYS: &str = "live_keys";

/// A replica's tables in one IndexedDB database.
pub struct IdbStore {
    db: IdbDatabase,
    /// Keys with a value, as the `meta` store records it with every commit.
    live_keys: u64,
    /// The stored runs of pages, by their first key. Runs never overlap.
    runs: Runs,
    /// Commits of at least this many keys may write pages.
    page_min: usize,
    /// A merge of logged keys into pages takes this many keys per transaction.
    merge_slice: usize,
    /// Hashes of the keys written since the store was opened empty (a cold sync), so that
    /// a key not among them is known to have no state without reading it; `None` when the
    /// store held keys when opened.
    written: Option<HashSet<u64>>,
    /// The logged keys' states, newer than any page; `None` in a store that holds key
    /// records (it goes on writing records).
    log: Option<KeyLog>,
    /// The blocks pending, as the `pending` store holds them: a walk is done when none is.
    pending: HashSet<BlockId>,
    /// The blocks written since the store was opened holding none; `None` when it held
    /// some, or once more than [`MAX_WRITTEN`] were marked merged.
    blocks_written: Option<BlocksWritten>,
    /// The last commit's transaction, until it is seen finished.
    committing: Option<Committing>,
}

/// A commit's transaction, finishing.
type Committing = Pin<Box<dyn Future<Output = Result<(), IdbError>>>>;

/// What a store opened without blocks has written since: a block not among them is known
/// to be neither stored nor merged.
#[derive(Default)]
struct BlocksWritten {
    /// Stored blocks (a follower stores only a snapshot's root and indexes, until loaded).
    stored: HashSet<BlockId>,
    /// Hashes of the ids of merged blocks.
    processed: HashSet<u64>,
}

fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl IdbStore {
    /// Opens (or creates) the database `name`.
    pub async fn open(name: &str) -> Result<Self, IdbError> {
        let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
            .ok_or(IdbError::Unavailable)?
            .unchecked_into::<web_sys::IdbFactory>();
        let request = factory.open_with_u32(name, VERSION).map_err(failed)?;
        let on_upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new({
            let request = request.clone();
            move |_| {
                let Ok(db) = request.result() else { return };
                let db: IdbDatabase = db.unchecked_into();
                for store in ALL {
                    if !db.object_store_names().contains(store) {
                        let _ = db.create_object_store(store);
                    }
                }
            }
        });
        request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let blocked = Rc::new(RefCell::new(false));
        let on_blocked = Closure::<dyn FnMut()>::new({
            let blocked = blocked.clone();
            move || *blocked.borrow_mut() = true
        });
        request.set_onblocked(Some(on_blocked.as_ref().unchecked_ref()));
        let result = done(request.clone().unchecked_into()).await;
        request.set_onupgradeneeded(None);
        request.set_onblocked(None);
        if *blocked.borrow() && result.is_err() {
            return Err(IdbError::Blocked(name.to_owned()));
        }
        let mut store = Self {
            db: result?.unchecked_into(),
            live_keys: 0,
            runs: BTreeMap::new(),
            page_min: PAGE_MIN,
            merge_slice: MERGE_SLICE,
            written: None,
            log: None,
            pending: HashSet::new(),
            blocks_written: None,
            committing: None,
        };
        store.runs = store.page_runs().await?;
        let (pending, _) = store.read_after(PENDING, None, usize::MAX, false).await?;
        store.pending = pending
            .iter()
            .map(|id| block_id(id))
            .collect::<Result<_, _>>()?;
        let log = store.read_log().await?;
        if store.read_after(BLOCKS, None, 1, false).await?.0.is_empty()
            && store
                .read_after(PROCESSED, None, 1, false)
                .await?
                .0
                .is_empty()
        {
            store.blocks_written = Some(BlocksWritten::default());
        }
        let has_records = !store.read_after(KEYS, None, 1, false).await?.0.is_empty();
        match (has_records, log) {
            (true, log) if !log.entries.is_empty() => {
                return Err(IdbError::Corrupt("a log beside key records".into()))
            }
            (true, _) => {}
            (false, log) => {
                if store.runs.is_empty() && log.entries.is_empty() {
                    store.written = Some(HashSet::new());
                }
                store.log = Some(log);
            }
        }
        store.live_keys = match store.meta(LIVE_KEYS).await? {
            Some(bytes) => u64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| IdbError::Corrupt("the live key count".into()))?,
            ),
            // A database written before the count was kept: count once.
            None => {
                let counted = count_live_keys(&store).await?;
                store.set_meta(LIVE_KEYS, &counted.to_le_bytes()).await?;
                counted
            }
        };
        Ok(store)
    }

    fn store(&self, name: &str, mode: IdbTransactionMode) -> Result<IdbObjectStore, IdbError> {
        self.db
            .transaction_with_str_and_mode(name, mode)
            .and_then(|tx| tx.object_store(name))
            .map_err(failed)
    }

    async fn get(&self, table: &str, key: &[u8]) -> Result<Option<JsValue>, IdbError> {
        let store = self.store(table, IdbTransactionMode::Readonly)?;
        let value = done(store.get(&bytes(key)).map_err(failed)?).await?;
        Ok((!value.is_undefined()).then_some(value))
    }

    /// The values of `keys` in `table` (undefined where a key has none), read in one
    /// transaction.
    async fn get_many(&self, table: &str, keys: &[&[u8]]) -> Result<Vec<JsValue>, IdbError> {
        let store = self.store(table, IdbTransactionMode::Readonly)?;
        let requests = keys
            .iter()
            .map(|key| store.get(&bytes(key)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        completed(&store.transaction())
            .await
            .map_err(|e| IdbError::Failed(format!("a read failed: {e}")))?;
        requests
            .into_iter()
            .map(|request| request.result().map_err(failed))
            .collect()
    }

    /// Up to `limit` keys and values of `table` after `after`, in key order.
    async fn read_after(
        &self,
        table: &str,
        after: Option<&[u8]>,
        limit: usize,
        with_values: bool,
    ) -> Result<(Vec<Vec<u8>>, Vec<JsValue>), IdbError> {
        let range = match after {
            Some(after) => IdbKeyRange::lower_bound_with_open(&bytes(after), true),
            None => IdbKeyRange::lower_bound(&Uint8Array::new_with_length(0).buffer()),
        }
        .map_err(failed)?;
        self.range(table, &range, limit, with_values).await
    }

    /// The states of `keys` in the store: a key's record, else its page's entry.
    async fn stored_states(&self, keys: &[&[u8]]) -> Result<Vec<Option<KeyState>>, IdbError> {
        let mut states = match self.may_hold_records() {
            true => self.record_states(keys).await?,
            false => vec![None; keys.len()],
        };
        let mut wanted: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
        for (at, key) in keys.iter().enumerate() {
            if let (None, Some(first)) = (&states[at], page_of(&self.runs, key)) {
                wanted.entry(first).or_default().push(at);
            }
        }
        if wanted.is_empty() {
            return Ok(states);
        }
        let firsts: Vec<&[u8]> = wanted.keys().copied().collect();
        let pages = self.read_pages(&firsts).await?;
        for (entries, ats) in pages.into_iter().zip(wanted.values()) {
            for &at in ats {
                if let Ok(found) = entries.binary_search_by(|(key, _)| key.as_slice().cmp(keys[at]))
                {
                    states[at] = Some(entries[found].1.clone());
                }
            }
        }
        Ok(states)
    }

    /// The states of `keys` that have a record, read as in [`Store::key_states`].
    async fn record_states(&self, keys: &[&[u8]]) -> Result<Vec<Option<KeyState>>, IdbError> {
        if keys.len() >= RANGE_READ_MIN {
            if let Some(states) = self.key_states_in_range(keys).await? {
                return Ok(states);
            }
        }
        self.get_many(KEYS, keys)
            .await?
            .into_iter()
            .map(|value| match value.is_undefined() {
                true => Ok(None),
                false => Ok(Some(KeyState::decode(&to_vec(&value))?)),
            })
            .collect()
    }

    /// Whether the store may hold key records: one that logs holds none, so it reads none.
    fn may_hold_records(&self) -> bool {
        self.log.is_none()
    }

    /// Up to `limit` key records after `after`, in key order.
    async fn records_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Entries, IdbError> {
        if !self.may_hold_records() {
            return Ok(Vec::new());
        }
        let (keys, states) = self.read_after(KEYS, after, limit, true).await?;
        keys.into_iter()
            .zip(states)
            .map(|(key, state)| Ok((key, KeyState::decode(&to_vec(&state))?)))
            .collect()
    }

    /// Waits for the last commit's transaction to finish: its failure is the error.
    async fn settle(&mut self) -> Result<(), IdbError> {
        match self.committing.take() {
            Some(committing) => committing.await,
            None => Ok(()),
        }
    }

    /// A value the follower keeps for itself under `key`.
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, IdbError> {
        Ok(self.get(META, key.as_bytes()).await?.map(|v| to_vec(&v)))
    }

    pub async fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), IdbError> {
        let tx = self
            .db
            .transaction_with_str_and_mode(META, IdbTransactionMode::Readwrite)
            .map_err(failed)?;
        let store = tx.object_store(META).map_err(failed)?;
        done(
            store
                .put_with_key(&bytes(value), &bytes(key.as_bytes()))
                .map_err(failed)?,
        )
        .await?;
        Ok(())
    }
}

impl Drop for IdbStore {
    fn drop(&mut self) {
        self.db.close();
    }
}

fn decode_cid(bytes: &[u8]) -> Result<Cid, IdbError> {
    Cid::try_from(bytes).map_err(|e| IdbError::Corrupt(format!("head: {e}")))
}

fn block_id(bytes: &[u8]) -> Result<BlockId, IdbError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| IdbError::Corrupt("a block id is not 32 bytes".into()))?;
    Ok(BlockId(array))
}

impl Store for IdbStore {
    type Error = IdbError;

    async fn load(&self) -> Result<Persisted, IdbError> {
        let (head_keys, heights) = self.read_after(HEADS, None, usize::MAX, true).await?;
        let heads = head_keys
            .iter()
            .zip(heights)
            .map(|(cid, height)| Ok((decode_cid(cid)?, height.as_f64().unwrap_or(0.0) as u64)))
            .collect::<Result<_, IdbError>>()?;
        let (_, pending) = self.read_after(PENDING, None, usize::MAX, true).await?;
        let pending = pending
            .iter()
            .map(|p| PendingBlock::decode(&to_vec(p)).map_err(IdbError::from))
            .collect::<Result<_, _>>()?;
        Ok(Persisted { heads, pending })
    }

    async fn key_state(&self, key: &[u8]) -> Result<Option<KeyState>, IdbError> {
        Ok(self.key_states(&[key]).await?.pop().flatten())
    }

    /// A key's logged state, else its record, else its page's entry; nothing is read for
    /// keys never written since the store was opened empty.
    async fn key_states(&self, keys: &[&[u8]]) -> Result<Vec<Option<KeyState>>, IdbError> {
        // A key never written has no state, in the log or the database: of a cold walk's
        // keys, most are new, and a hash lookup costs less than one in the sorted log.
        let may_have_state: Vec<bool> = keys
            .iter()
            .map(|key| {
                self.written
                    .as_ref()
                    .is_none_or(|written| written.contains(&key_hash(key)))
            })
            .collect();
        let logged = |key: &[u8]| self.log.as_ref().and_then(|log| log.entries.get(key));
        let mut states: Vec<Option<KeyState>> = keys
            .iter()
            .zip(&may_have_state)
            .map(|(key, &may)| if may { logged(key) } else { None })
            .collect();
        let asked: Vec<usize> = (0..keys.len())
            .filter(|&at| states[at].is_none() && may_have_state[at])
            .collect();
        if asked.is_empty() {
            return Ok(states);
        }
        let asked_keys: Vec<&[u8]> = asked.iter().map(|&at| keys[at]).collect();
        for (at, state) in asked
            .into_iter()
            .zip(self.stored_states(&asked_keys).await?)
        {
            states[at] = state;
        }
        Ok(states)
    }

    async fn live_keys(&self) -> Result<u64, IdbError> {
        Ok(self.live_keys)
    }

    async fn flush(&mut self) -> Result<(), IdbError> {
        self.settle().await
    }

    async fn is_processed(&self, block: &BlockId) -> Result<bool, IdbError> {
        if let Some(written) = &self.blocks_written {
            if !written.processed.contains(&key_hash(&block.0)) {
                return Ok(false);
            }
        }
        Ok(self.get(PROCESSED, &block.0).await?.is_some())
    }

    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, IdbError> {
        if let Some(written) = &self.blocks_written {
            if !written.stored.contains(block) {
                return Ok(None);
            }
        }
        Ok(self.get(BLOCKS, &block.0).await?.map(|b| to_vec(&b)))
    }

    async fn processed_after(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Vec<BlockId>, IdbError> {
        let (ids, _) = self
            .read_after(PROCESSED, after.map(|a| &a.0[..]), limit, false)
            .await?;
        ids.iter().map(|id| block_id(id)).collect()
    }

    async fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, IdbError> {
        let mut entries = Vec::new();
        let mut cursor = after.map(<[u8]>::to_vec);
        while entries.len() < limit {
            let wanted = limit - entries.len();
            let records = self.records_after(cursor.as_deref(), wanted).await?;
            let paged = self.paged_after(cursor.as_deref(), wanted).await?;
            let logged = self
                .log
                .as_ref()
                .map_or_else(Vec::new, |log| log.entries.after(cursor.as_deref(), wanted));
            let exhausted = records.len() < wanted && paged.len() < wanted && logged.len() < wanted;
            // Each side holds its first `wanted` keys, so the first `wanted` of all of them
            // together are the store's (fewer where a key is on several sides).
            let mut merged = merge_by_key(logged, merge_by_key(records, paged));
            merged.truncate(wanted);
            let Some((last, _)) = merged.last() else {
                break;
            };
            cursor = Some(last.clone());
            entries.extend(merged);
            if exhausted {
                break;
            }
        }
        Ok(entries)
    }

    async fn commit(&mut self, mut tx: Transaction) -> Result<(), IdbError> {
        self.settle().await?;
        let names: Array = ALL.iter().map(|name| JsValue::from(*name)).collect();
        let hashes: Vec<u64> = match self.written {
            Some(_) => tx.keys.iter().map(|(key, _)| key_hash(key)).collect(),
            None => Vec::new(),
        };
        let walk_done = tx.pending_added.is_empty()
            && self
                .pending
                .iter()
                .all(|id| tx.pending_removed.contains(id));
        let keys = self
            .key_writes(std::mem::take(&mut tx.keys), walk_done)
            .await?;
        let write = self
            .db
            .transaction_with_str_sequence_and_mode(&names, IdbTransactionMode::Readwrite)
            .map_err(failed)?;
        let store = |name| write.object_store(name).map_err(failed);
        let (blocks, processed, heads, pending) = (
            store(BLOCKS)?,
            store(PROCESSED)?,
            store(HEADS)?,
            store(PENDING)?,
        );
        // Every request is issued before the first wait: the transaction commits once they
        // are all done, and nothing else can interleave.
        let mut requests = Vec::new();
        for (id, bytes_) in &tx.blocks {
            requests.push(blocks.put_with_key(&bytes(bytes_), &bytes(&id.0)));
        }
        for id in &tx.blocks_removed {
            requests.push(blocks.delete(&bytes(&id.0)));
        }
        for id in &tx.processed {
            requests.push(processed.put_with_key(&JsValue::TRUE, &bytes(&id.0)));
        }
        match &keys {
            KeyWrites::Records(entries) => {
                let records = store(KEYS)?;
                for (key, state) in entries {
                    requests.push(records.put_with_key(&bytes(&state.encode()), &bytes(key)));
                }
            }
            KeyWrites::Pages(writes) => {
                requests.extend(page_requests(&write, writes)?.into_iter().map(Ok))
            }
            KeyWrites::Logged(entries) => {
                let next = self.log.as_ref().map_or(0, |log| log.next);
                requests.push(store(LOG)?.put_with_key(
                    &bytes(&encode_key_page(entries)),
                    &bytes(&next.to_be_bytes()),
                ));
            }
        }
        for cid in &tx.heads_removed {
            requests.push(heads.delete(&bytes(&cid.to_bytes())));
        }
        for (cid, height) in &tx.heads_added {
            requests
                .push(heads.put_with_key(&JsValue::from(*height as f64), &bytes(&cid.to_bytes())));
        }
        for id in &tx.pending_removed {
            requests.push(pending.delete(&bytes(&id.0)));
        }
        for block in &tx.pending_added {
            if let Ok(id) = BlockId::from_cid(&block.cid) {
                requests.push(pending.put_with_key(&bytes(&block.encode()), &bytes(&id.0)));
            }
        }
        let live_keys = self.live_keys.saturating_add_signed(tx.live_keys);
        if tx.live_keys != 0 {
            let meta = write.object_store(META).map_err(failed)?;
            requests.push(meta.put_with_key(
                &bytes(&live_keys.to_le_bytes()),
                &bytes(LIVE_KEYS.as_bytes()),
            ));
        }
        let requests = requests
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        drop(requests);
        let finished = completed(&write);
        self.committing = Some(Box::pin(async move {
            finished
                .await
                .map_err(|e| IdbError::Failed(format!("a write was {e}")))
        }));
        self.live_keys = live_keys;
        for id in &tx.pending_removed {
            self.pending.remove(id);
        }
        self.pending.extend(
            tx.pending_added
                .iter()
                .filter_map(|block| BlockId::from_cid(&block.cid).ok()),
        );
        match keys {
            KeyWrites::Pages(writes) => self.add_runs(writes.runs),
            KeyWrites::Logged(entries) => {
                if let Some(log) = &mut self.log {
                    log.entries.extend(entries);
                    log.next += 1;
                }
            }
            KeyWrites::Records(_) => {}
        }
        if let Some(written) = &mut self.written {
            written.extend(hashes);
            if written.len() > MAX_WRITTEN {
                self.written = None;
            }
        }
        if let Some(written) = &mut self.blocks_written {
            written.stored.extend(tx.blocks.iter().map(|(id, _)| *id));
            for id in &tx.blocks_removed {
                written.stored.remove(id);
            }
            written
                .processed
                .extend(tx.processed.iter().map(|id| key_hash(&id.0)));
            if written.processed.len() > MAX_WRITTEN {
                self.blocks_written = None;
            }
        }
        // The log is merged once the walk is done, or once it holds enough keys.
        if let Some(log) = &self.log {
            if !log.entries.is_empty() && (log.entries.len() >= LOG_KEYS || self.pending.is_empty())
            {
                self.merge_log().await?;
            }
        }
        Ok(())
    }
}
