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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::rc::Rc;

use cid::Cid;
use futures::channel::oneshot;
use js_sys::{Array, Uint8Array};
use pinfold_core::crdt::{
    count_live_keys, decode_key_page, encode_key_page, merge_by_key, page_of, run_at, BlockId,
    KeyState, PageMerge, PageRun, PageWrites, PendingBlock, Persisted, RecordDecodeError, Runs,
    Store, Transaction,
};
use wasm_bindgen::prelude::*;
use web_sys::{
    IdbDatabase, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::websocket::js_message;

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
/// Most keys [`IdbStore::written`] follows (8 bytes each); past that it is dropped.
const MAX_WRITTEN: usize = 4_000_000;
/// A store merges its logged keys into pages once it holds this many in memory.
const LOG_KEYS: usize = 250_000;
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

fn failed(value: JsValue) -> IdbError {
    IdbError::Failed(js_message(&value))
}

fn bytes(value: &[u8]) -> JsValue {
    Uint8Array::from(value).buffer().into()
}

fn to_vec(value: &JsValue) -> Vec<u8> {
    Uint8Array::new(value).to_vec()
}

type Entries = Vec<(Vec<u8>, KeyState)>;

/// A one-shot channel whose sender two callbacks share: the first to fire answers, and
/// the other finds nothing left to send.
#[derive(Clone)]
struct FirstAnswer<T>(Rc<RefCell<Option<oneshot::Sender<T>>>>);

impl<T> FirstAnswer<T> {
    fn new() -> (Self, oneshot::Receiver<T>) {
        let (sender, receiver) = oneshot::channel();
        (Self(Rc::new(RefCell::new(Some(sender)))), receiver)
    }

    fn send(&self, value: T) {
        if let Some(sender) = self.0.borrow_mut().take() {
            let _ = sender.send(value);
        }
    }
}

/// Waits until every request of `transaction` has finished (their results can be read
/// then); a failed request aborts it, and the error carries the reason. One pair of
/// callbacks for the whole transaction, where [`done`] costs a pair per request.
async fn completed(transaction: &IdbTransaction) -> Result<(), IdbError> {
    let (answer, finished) = FirstAnswer::new();
    let on_complete = Closure::once({
        let answer = answer.clone();
        move || answer.send(None)
    });
    let on_abort = Closure::once({
        let transaction = transaction.clone();
        move || {
            let reason = transaction
                .error()
                .map(|e| e.message())
                .unwrap_or_else(|| "aborted".into());
            answer.send(Some(reason));
        }
    });
    transaction.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
    transaction.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
    let outcome = finished.await;
    transaction.set_oncomplete(None);
    transaction.set_onabort(None);
    match outcome {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => Err(IdbError::Failed(format!("aborted: {reason}"))),
        Err(_) => Err(IdbError::Failed("never finished".into())),
    }
}

/// The result of `request`. The handlers are set when this is called, not when the
/// future is first polled, so that requests issued together can be awaited one by one
/// without missing an event.
fn done(request: IdbRequest) -> impl std::future::Future<Output = Result<JsValue, IdbError>> {
    let (answer, rx) = FirstAnswer::new();
    let on_success = Closure::once({
        let answer = answer.clone();
        move || answer.send(true)
    });
    let on_error = Closure::once(move || answer.send(false));
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    async move {
        let ok = rx.await.unwrap_or(false);
        request.set_onsuccess(None);
        request.set_onerror(None);
        drop((on_success, on_error));
        if ok {
            request.result().map_err(failed)
        } else {
            let error = request.error().ok().flatten().map(|e| e.message());
            Err(IdbError::Failed(
                error.unwrap_or_else(|| "request failed".into()),
            ))
        }
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
}

/// The keys logged and not merged into pages yet.
#[derive(Default)]
struct KeyLog {
    entries: BTreeMap<Vec<u8>, KeyState>,
    /// The next log record's number.
    next: u64,
}

impl KeyLog {
    /// Up to `limit` logged entries after `after`, in key order.
    fn after(&self, after: Option<&[u8]>, limit: usize) -> Entries {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.entries
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(key, state)| (key.clone(), state.clone()))
            .collect()
    }
}

/// How a commit writes its keys.
enum KeyWrites {
    /// One record per key.
    Records(Entries),
    /// Pages and their runs.
    Pages(PageWrites<KeyState>),
    /// One `log` record; the keys stay in memory.
    Logged(Entries),
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
        };
        store.runs = store.page_runs().await?;
        let (pending, _) = store.read_after(PENDING, None, usize::MAX, false).await?;
        store.pending = pending
            .iter()
            .map(|id| block_id(id))
            .collect::<Result<_, _>>()?;
        let log = store.read_log().await?;
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

    /// Up to `limit` keys and values of `table` within `range`, in key order.
    async fn range(
        &self,
        table: &str,
        range: &IdbKeyRange,
        limit: usize,
        with_values: bool,
    ) -> Result<(Vec<Vec<u8>>, Vec<JsValue>), IdbError> {
        let store = self.store(table, IdbTransactionMode::Readonly)?;
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let keys = done(
            store
                .get_all_keys_with_key_and_limit(range, limit)
                .map_err(failed)?,
        );
        let values = with_values
            .then(|| store.get_all_with_key_and_limit(range, limit))
            .transpose()
            .map_err(failed)?
            .map(done);
        let keys: Array = keys.await?.unchecked_into();
        let values = match values {
            Some(values) => values.await?.unchecked_into::<Array>().to_vec(),
            None => Vec::new(),
        };
        Ok((keys.iter().map(|k| to_vec(&k)).collect(), values))
    }

    /// The states of `keys`, read as the range from the least of them to the greatest:
    /// two requests where reading key by key takes one per key. `None` when that range
    /// holds many more keys than asked for (keys far apart), where key by key is cheaper.
    async fn key_states_in_range(
        &self,
        keys: &[&[u8]],
    ) -> Result<Option<Vec<Option<KeyState>>>, IdbError> {
        let (Some(least), Some(greatest)) = (keys.iter().min(), keys.iter().max()) else {
            return Ok(Some(Vec::new()));
        };
        let range = IdbKeyRange::bound(&bytes(least), &bytes(greatest)).map_err(failed)?;
        let limit = keys.len().saturating_mul(RANGE_READ_SPREAD);
        let (found, states) = self.range(KEYS, &range, limit, true).await?;
        if found.len() >= limit {
            return Ok(None);
        }
        // IndexedDB orders binary keys byte by byte, as slices compare.
        keys.iter()
            .map(
                |key| match found.binary_search_by(|f| f.as_slice().cmp(key)) {
                    Ok(at) => Ok(Some(KeyState::decode(&to_vec(&states[at]))?)),
                    Err(_) => Ok(None),
                },
            )
            .collect::<Result<_, IdbError>>()
            .map(Some)
    }

    /// Every stored run of pages.
    async fn page_runs(&self) -> Result<BTreeMap<Vec<u8>, PageRun>, IdbError> {
        let (_, values) = self.read_after(RUNS, None, usize::MAX, true).await?;
        let mut runs = BTreeMap::new();
        for value in values {
            let run = PageRun::decode(&to_vec(&value))?;
            let first = run.firsts.first().cloned();
            runs.insert(
                first.ok_or(IdbError::Corrupt("an empty page run".into()))?,
                run,
            );
        }
        Ok(runs)
    }

    /// The entries of the pages that start at `firsts`, read in one transaction.
    async fn read_pages(&self, firsts: &[&[u8]]) -> Result<Vec<Entries>, IdbError> {
        self.get_many(PAGES, firsts)
            .await?
            .into_iter()
            .map(|page| {
                if page.is_undefined() {
                    return Err(IdbError::Corrupt("a listed page is missing".into()));
                }
                Ok(decode_key_page(&to_vec(&page))?)
            })
            .collect()
    }

    /// Up to `limit` paged entries after `after`, in key order.
    async fn paged_after(&self, after: Option<&[u8]>, limit: usize) -> Result<Entries, IdbError> {
        let is_after = |key: &[u8]| after.is_none_or(|after| key > after);
        // A page's keys come before the next page's first key; the run's last ends the last.
        let mut pages = self
            .runs
            .values()
            .filter(|run| is_after(&run.last))
            .flat_map(|run| {
                let ends = run.firsts.iter().skip(1).chain([&run.last]);
                run.firsts.iter().zip(ends)
            })
            .filter(|(_, end)| is_after(end))
            .map(|(first, _)| first.as_slice());
        let mut entries = Vec::new();
        while entries.len() < limit {
            let batch: Vec<&[u8]> = pages
                .by_ref()
                .take((limit - entries.len()) / PAGE_KEYS + 1)
                .collect();
            if batch.is_empty() {
                break;
            }
            for page in self.read_pages(&batch).await? {
                entries.extend(page.into_iter().filter(|(key, _)| is_after(key)));
            }
        }
        entries.truncate(limit);
        Ok(entries)
    }

    /// Whether `keys` go in as pages: enough of them, in increasing order, into a range
    /// that no page, no key's record and no logged key holds yet.
    async fn pageable(&self, keys: &[(Vec<u8>, KeyState)]) -> Result<bool, IdbError> {
        let (Some((first, _)), Some((last, _))) = (keys.first(), keys.last()) else {
            return Ok(false);
        };
        if keys.len() < self.page_min || !keys.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Ok(false);
        }
        // Runs do not overlap: the last one starting at or below `last` is the only one
        // that can reach into the range.
        let overlaps = run_at(&self.runs, last).is_some_and(|(_, run)| run.last >= *first);
        let logged = self.log.as_ref().is_some_and(|log| {
            log.entries
                .range::<[u8], _>((Bound::Included(&first[..]), Bound::Included(&last[..])))
                .next()
                .is_some()
        });
        if overlaps || logged {
            return Ok(false);
        }
        if !self.may_hold_records() {
            return Ok(true);
        }
        let store = self.store(KEYS, IdbTransactionMode::Readonly)?;
        let range = IdbKeyRange::bound(&bytes(first), &bytes(last)).map_err(failed)?;
        let records = done(store.count_with_key(&range).map_err(failed)?).await?;
        Ok(records.as_f64() == Some(0.0))
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

    /// How `keys` are written: as pages when [`IdbStore::pageable`]; in a store that
    /// logs, merged into the pages at once when the log is empty and the commit ends the
    /// walk (`walk_done`: a delta that arrives once synced), else logged; else as records.
    async fn key_writes(&self, keys: Entries, walk_done: bool) -> Result<KeyWrites, IdbError> {
        if self.pageable(&keys).await? {
            return Ok(KeyWrites::Pages(self.merge_pages(keys).await?));
        }
        match &self.log {
            Some(log) if walk_done && log.entries.is_empty() && !keys.is_empty() => {
                // In key order; the last of a key's states wins, as in the log.
                let mut sorted = BTreeMap::new();
                sorted.extend(keys);
                Ok(KeyWrites::Pages(
                    self.merge_pages(sorted.into_iter().collect()).await?,
                ))
            }
            Some(_) if !keys.is_empty() => Ok(KeyWrites::Logged(keys)),
            _ => Ok(KeyWrites::Records(keys)),
        }
    }

    /// The pages and runs that hold `entries` (in increasing key order) merged into the
    /// stored pages.
    async fn merge_pages(&self, entries: Entries) -> Result<PageWrites<KeyState>, IdbError> {
        let merge = PageMerge::plan(&self.runs, entries);
        let firsts: Vec<&[u8]> = merge.pages_to_read().collect();
        let read = self.read_pages(&firsts).await?;
        Ok(merge.apply(&self.runs, read, PAGE_KEYS))
    }

    /// Merges the logged keys into the pages, `merge_slice` keys per transaction. The
    /// last one clears the log: a reload before it merges the whole log again, to the
    /// same pages.
    async fn merge_log(&mut self) -> Result<(), IdbError> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let Some(log) = &self.log else {
                return Ok(());
            };
            let slice = log.after(after.as_deref(), self.merge_slice);
            let last_slice = slice.len() < self.merge_slice;
            after = slice.last().map(|(key, _)| key.clone());
            let writes = self.merge_pages(slice).await?;
            let names: Array = [PAGES, RUNS, LOG].into_iter().map(JsValue::from).collect();
            let write = self
                .db
                .transaction_with_str_sequence_and_mode(&names, IdbTransactionMode::Readwrite)
                .map_err(failed)?;
            let requests = page_requests(&write, &writes)?;
            let clear = last_slice
                .then(|| write.object_store(LOG).and_then(|log| log.clear()))
                .transpose()
                .map_err(failed)?;
            drop((requests, clear));
            completed(&write)
                .await
                .map_err(|e| IdbError::Failed(format!("merging the log was {e}")))?;
            self.add_runs(writes.runs);
            if last_slice {
                if let Some(log) = &mut self.log {
                    log.entries.clear();
                }
                return Ok(());
            }
        }
    }

    /// The log as the store holds it: what a walk cut short by a reload logged.
    async fn read_log(&self) -> Result<KeyLog, IdbError> {
        let (numbers, records) = self.read_after(LOG, None, usize::MAX, true).await?;
        let mut log = KeyLog::default();
        for record in records {
            log.entries.extend(decode_key_page(&to_vec(&record))?);
        }
        if let Some(last) = numbers.last() {
            let last: [u8; 8] = last
                .as_slice()
                .try_into()
                .map_err(|_| IdbError::Corrupt("a log record's number".into()))?;
            log.next = u64::from_be_bytes(last) + 1;
        }
        Ok(log)
    }

    fn add_runs(&mut self, runs: Vec<PageRun>) {
        for run in runs {
            self.runs.insert(run.firsts[0].clone(), run);
        }
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
        let logged = |key: &[u8]| self.log.as_ref().and_then(|log| log.entries.get(key));
        let may_have_state = |key: &[u8]| {
            self.written
                .as_ref()
                .is_none_or(|written| written.contains(&key_hash(key)))
        };
        let asked: Vec<usize> = (0..keys.len())
            .filter(|&at| logged(keys[at]).is_none() && may_have_state(keys[at]))
            .collect();
        let mut states: Vec<Option<KeyState>> =
            keys.iter().map(|key| logged(key).cloned()).collect();
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

    async fn is_processed(&self, block: &BlockId) -> Result<bool, IdbError> {
        Ok(self.get(PROCESSED, &block.0).await?.is_some())
    }

    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, IdbError> {
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
                .map_or_else(Vec::new, |log| log.after(cursor.as_deref(), wanted));
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
        completed(&write)
            .await
            .map_err(|e| IdbError::Failed(format!("a write was {e}")))?;
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

/// The puts of a merge's pages and runs, in `write`.
fn page_requests(
    write: &IdbTransaction,
    writes: &PageWrites<KeyState>,
) -> Result<Vec<IdbRequest>, IdbError> {
    let (pages, runs) = (
        write.object_store(PAGES).map_err(failed)?,
        write.object_store(RUNS).map_err(failed)?,
    );
    let pages = writes
        .pages
        .iter()
        .map(|page| pages.put_with_key(&bytes(&encode_key_page(page)), &bytes(&page[0].0)));
    let runs = writes
        .runs
        .iter()
        .map(|run| runs.put_with_key(&bytes(&run.encode()), &bytes(&run.firsts[0])));
    pages.chain(runs).collect::<Result<_, _>>().map_err(failed)
}

/// IndexedDB exists in browsers only: these run in the headless Chromium tier.
#[cfg(all(test, feature = "browser-tests"))]
mod tests {
    use pinfold_core::crdt::Version;
    use wasm_bindgen_test::*;

    use super::*;

    wasm_bindgen_test_configure!(run_in_browser);

    fn key(n: u32) -> Vec<u8> {
        format!("/pins/{n:05}").into_bytes()
    }

    fn state(n: u32) -> KeyState {
        KeyState {
            live: vec![Version {
                block: BlockId([n as u8; 32]),
                priority: u64::from(n),
                value: n.to_be_bytes().to_vec(),
            }],
            tombstones: Vec::new(),
        }
    }

    /// A fresh store that writes one record per key, never pages nor a log.
    async fn records_only(name: &str) -> IdbStore {
        let mut store = IdbStore::open(&format!("{name}-{}", js_sys::Math::random()))
            .await
            .unwrap();
        store.page_min = usize::MAX;
        store.log = None;
        store
    }

    /// A fresh store holding the even keys from 0 to 398, as one record per key.
    async fn store_of_even_keys(name: &str) -> IdbStore {
        let mut store = records_only(name).await;
        let tx = Transaction {
            keys: (0..200).map(|n| (key(2 * n), state(2 * n))).collect(),
            live_keys: 200,
            ..Transaction::default()
        };
        store.commit(tx).await.unwrap();
        store
    }

    /// `key_states` of `numbers` against reading each key on its own.
    async fn check(store: &IdbStore, numbers: &[u32]) {
        let keys: Vec<Vec<u8>> = numbers.iter().map(|&n| key(n)).collect();
        let asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let states = store.key_states(&asked).await.unwrap();
        assert_eq!(states.len(), numbers.len());
        for (&n, got) in numbers.iter().zip(states) {
            assert_eq!(got, store.key_state(&key(n)).await.unwrap(), "key {n}");
            assert_eq!(got, (n % 2 == 0 && n < 400).then(|| state(n)), "key {n}");
        }
    }

    #[wasm_bindgen_test]
    async fn key_states_of_close_keys_in_any_order_and_of_absent_ones() {
        let store = store_of_even_keys("range-close").await;
        // A run of stored and absent keys, as a snapshot chunk asks for them.
        check(&store, &(100..160).collect::<Vec<_>>()).await;
        // The same, out of order and with repeats.
        let mut shuffled: Vec<u32> = (100..160).rev().collect();
        shuffled.extend([120, 121, 100]);
        check(&store, &shuffled).await;
        // Past every stored key, and below all of them.
        check(&store, &(500..540).collect::<Vec<_>>()).await;
        check(
            &store,
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        )
        .await;
    }

    #[wasm_bindgen_test]
    async fn key_states_of_keys_far_apart_are_read_one_by_one() {
        let store = store_of_even_keys("range-far").await;
        // Sixteen keys spread over the whole store: the range would hold 200.
        let spread: Vec<u32> = (0..16).map(|n| n * 26).collect();
        let keys: Vec<Vec<u8>> = spread.iter().map(|&n| key(n)).collect();
        let asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        assert!(store.key_states_in_range(&asked).await.unwrap().is_none());
        check(&store, &spread).await;
        // A few keys: read one by one, whatever their spread.
        check(&store, &[4, 398, 7]).await;
    }

    fn tombstoned(n: u32) -> KeyState {
        KeyState {
            live: Vec::new(),
            tombstones: vec![BlockId([n as u8; 32])],
        }
    }

    fn keys_tx(entries: impl IntoIterator<Item = (u32, KeyState)>) -> Transaction {
        Transaction {
            keys: entries
                .into_iter()
                .map(|(n, state)| (key(n), state))
                .collect(),
            ..Transaction::default()
        }
    }

    /// Every entry, read `limit` at a time.
    async fn scan_all(store: &IdbStore, limit: usize) -> Vec<(Vec<u8>, KeyState)> {
        let mut all: Vec<(Vec<u8>, KeyState)> = Vec::new();
        loop {
            let after = all.last().map(|(key, _)| key.clone());
            let page = store.scan(after.as_deref(), limit).await.unwrap();
            assert!(page.len() <= limit);
            if page.is_empty() {
                return all;
            }
            all.extend(page);
        }
    }

    /// What `a` and `b` answer for keys 0 to 5199, read together, one by one and scanned.
    async fn assert_same(a: &IdbStore, b: &IdbStore) {
        let keys: Vec<Vec<u8>> = (0..5200).rev().map(key).collect();
        let asked: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        assert_eq!(
            a.key_states(&asked).await.unwrap(),
            b.key_states(&asked).await.unwrap()
        );
        for n in [
            0, 1, 3, 6, 30, 31, 450, 897, 898, 899, 2000, 5000, 5099, 5100,
        ] {
            assert_eq!(
                a.key_state(&key(n)).await.unwrap(),
                b.key_state(&key(n)).await.unwrap(),
                "key {n}"
            );
        }
        let whole = scan_all(b, 100_000).await;
        assert_eq!(scan_all(a, 100_000).await, whole);
        assert_eq!(scan_all(a, 7).await, whole);
        assert_eq!(scan_all(a, PAGE_KEYS).await, whole);
    }

    fn pages(store: &IdbStore) -> usize {
        store.runs.values().map(|run| run.firsts.len()).sum()
    }

    async fn commit_both(a: &mut IdbStore, b: &mut IdbStore, tx: Transaction) {
        a.commit(tx.clone()).await.unwrap();
        b.commit(tx).await.unwrap();
    }

    #[wasm_bindgen_test]
    async fn paged_keys_read_as_records_would() {
        let name = format!("paged-{}", js_sys::Math::random());
        let mut paged = IdbStore::open(&name).await.unwrap();
        let mut plain = records_only("plain").await;
        // Records where pages cannot go, as a warm store writes them.
        paged.log = None;

        // A snapshot chunk into a fresh store: 300 keys in order, as five pages.
        commit_both(
            &mut paged,
            &mut plain,
            keys_tx((0..300).map(|n| (3 * n, state(3 * n)))),
        )
        .await;
        assert_eq!(pages(&paged), 300usize.div_ceil(PAGE_KEYS));
        assert!(
            paged.written.is_some(),
            "opened empty: knows the keys written"
        );
        assert_eq!(records(&paged, KEYS).await, 0);
        assert_same(&paged, &plain).await;

        // A delta: paged keys changed and removed, and new keys between pages' keys.
        let delta = [
            (3, state(4)),
            (30, state(31)),
            (897, state(1)),
            (6, tombstoned(6)),
        ]
        .into_iter()
        .chain([1, 31, 898, 2000].map(|n| (n, state(n))));
        commit_both(&mut paged, &mut plain, keys_tx(delta)).await;
        assert_same(&paged, &plain).await;

        // Keys in order into a range that pages hold: written as records.
        commit_both(
            &mut paged,
            &mut plain,
            keys_tx((400..500).map(|n| (n, state(n + 1)))),
        )
        .await;
        assert_eq!(pages(&paged), 5);
        assert_same(&paged, &plain).await;

        // Keys in order past every key: pages again.
        commit_both(
            &mut paged,
            &mut plain,
            keys_tx((5000..5100).map(|n| (n, state(n)))),
        )
        .await;
        assert_eq!(pages(&paged), 7);
        assert_same(&paged, &plain).await;

        // Reopened, the store finds its pages again.
        drop(paged);
        let reopened = IdbStore::open(&name).await.unwrap();
        assert_eq!(pages(&reopened), 7);
        assert!(reopened.written.is_none(), "opened with keys: reads them");
        assert_same(&reopened, &plain).await;
    }

    #[wasm_bindgen_test]
    async fn keys_out_of_order_or_few_are_records() {
        let mut store = IdbStore::open(&format!("records-{}", js_sys::Math::random()))
            .await
            .unwrap();
        store.log = None;
        store
            .commit(keys_tx((0..100).rev().map(|n| (n, state(n)))))
            .await
            .unwrap();
        store
            .commit(keys_tx(
                (200..200 + PAGE_MIN as u32 - 1).map(|n| (n, state(n))),
            ))
            .await
            .unwrap();
        assert_eq!(pages(&store), 0);
        assert_eq!(scan_all(&store, 1000).await.len(), 100 + PAGE_MIN - 1);
    }

    /// A transaction that leaves `block` pending, or (`merged`) no longer pending.
    fn walk_tx(
        entries: impl IntoIterator<Item = (u32, KeyState)>,
        block: u8,
        merged: bool,
    ) -> Transaction {
        let id = BlockId([block; 32]);
        let cid = id.to_cid();
        let mut tx = keys_tx(entries);
        match merged {
            true => tx.pending_removed = vec![id],
            false => {
                tx.pending_added = vec![PendingBlock {
                    kind: pinfold_core::crdt::BlockKind::Delta,
                    cid,
                    root: cid,
                    root_priority: 0,
                    parent_priority: u64::MAX,
                }]
            }
        }
        tx
    }

    /// The number of records in `table`, up to 1000.
    async fn records(store: &IdbStore, table: &str) -> usize {
        store
            .read_after(table, None, 1000, false)
            .await
            .unwrap()
            .0
            .len()
    }

    #[wasm_bindgen_test]
    async fn logged_keys_read_as_records_would_and_merge_into_pages() {
        let name = format!("logged-{}", js_sys::Math::random());
        let mut logging = IdbStore::open(&name).await.unwrap();
        logging.merge_slice = 50;
        let mut plain = records_only("plain").await;
        assert!(logging.log.is_some() && logging.written.is_some());

        // Deltas while a block is pending: logged, read from memory.
        commit_both(
            &mut logging,
            &mut plain,
            walk_tx((0..300).rev().map(|n| (3 * n, state(3 * n))), 1, false),
        )
        .await;
        let delta = [
            (3, state(4)),
            (6, tombstoned(6)),
            (1, state(1)),
            (2000, state(2000)),
        ];
        commit_both(&mut logging, &mut plain, keys_tx(delta)).await;
        assert_eq!((pages(&logging), records(&logging, LOG).await), (0, 2));
        assert_eq!(records(&logging, KEYS).await, 0);
        assert_same(&logging, &plain).await;

        // Nothing left pending: merged into pages, in slices, and the log is cleared.
        commit_both(
            &mut logging,
            &mut plain,
            walk_tx([(5, state(5)), (897, state(1))], 1, true),
        )
        .await;
        assert_eq!(records(&logging, LOG).await, 0);
        assert!(pages(&logging) >= 303 / PAGE_KEYS);
        assert_eq!(records(&logging, KEYS).await, 0);
        assert_same(&logging, &plain).await;

        // More deltas: logged over the pages, then merged into them (between their keys
        // and past the last one).
        let later = (0..400).map(|n| (5100 - 7 * n, state(n)));
        commit_both(&mut logging, &mut plain, walk_tx(later, 2, false)).await;
        assert_same(&logging, &plain).await;
        commit_both(
            &mut logging,
            &mut plain,
            walk_tx([(0, tombstoned(0))], 2, true),
        )
        .await;
        assert_eq!(records(&logging, LOG).await, 0);
        assert_same(&logging, &plain).await;

        // A reload in the middle of a walk: the log is read back, logging goes on where
        // it was, and the log is merged once the walk is done.
        commit_both(
            &mut logging,
            &mut plain,
            walk_tx((0..100).map(|n| (2 * n + 1, state(n))), 3, false),
        )
        .await;
        assert_eq!(records(&logging, LOG).await, 1);
        drop(logging);
        let mut reopened = IdbStore::open(&name).await.unwrap();
        reopened.merge_slice = 50;
        assert!(reopened.written.is_none(), "opened with keys: reads them");
        assert_eq!(
            reopened.log.as_ref().map(|log| log.entries.len()),
            Some(100)
        );
        assert_same(&reopened, &plain).await;
        // Logged after the reload (the block is still pending): numbered after the first
        // record, so that a second reload reads it back after that one (its newer states
        // win).
        commit_both(
            &mut reopened,
            &mut plain,
            keys_tx((0..50).map(|n| (2 * n + 1, state(n + 7)))),
        )
        .await;
        assert_eq!(records(&reopened, LOG).await, 2);
        drop(reopened);
        let mut reopened = IdbStore::open(&name).await.unwrap();
        reopened.merge_slice = 50;
        assert_same(&reopened, &plain).await;
        commit_both(&mut reopened, &mut plain, walk_tx([], 3, true)).await;
        assert_eq!(records(&reopened, LOG).await, 0);
        assert_eq!(records(&reopened, KEYS).await, 0);
        assert_same(&reopened, &plain).await;

        // A delta once synced (nothing pending, nothing logged) goes into the pages at
        // once; of a key written twice, the later state stays.
        let synced = [
            (7, state(70)),
            (3, tombstoned(3)),
            (7, state(71)),
            (7000, state(1)),
        ];
        let numbered = reopened.log.as_ref().map(|log| log.next);
        commit_both(&mut reopened, &mut plain, keys_tx(synced)).await;
        assert_eq!(
            reopened.log.as_ref().map(|log| log.next),
            numbered,
            "not logged"
        );
        assert_eq!(records(&reopened, LOG).await, 0);
        assert_eq!(records(&reopened, KEYS).await, 0);
        assert_eq!(reopened.key_state(&key(7)).await.unwrap(), Some(state(71)));
        assert_same(&reopened, &plain).await;
    }

    /// A database as version 1 left it: the tables without pages, a key record, no count.
    async fn version_1_database(name: &str) {
        let factory: web_sys::IdbFactory =
            js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
                .unwrap()
                .unchecked_into();
        let request = factory.open_with_u32(name, 1).unwrap();
        let on_upgrade = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new({
            let request = request.clone();
            move |_| {
                let db: IdbDatabase = request.result().unwrap().unchecked_into();
                for table in [BLOCKS, PROCESSED, KEYS, HEADS, PENDING, META] {
                    db.create_object_store(table).unwrap();
                }
            }
        });
        request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
        let db: IdbDatabase = done(request.clone().unchecked_into())
            .await
            .unwrap()
            .unchecked_into();
        let write = db
            .transaction_with_str_and_mode(KEYS, IdbTransactionMode::Readwrite)
            .unwrap();
        let keys = write.object_store(KEYS).unwrap();
        keys.put_with_key(&bytes(&state(7).encode()), &bytes(&key(7)))
            .unwrap();
        completed(&write).await.unwrap();
        db.close();
    }

    #[wasm_bindgen_test]
    async fn a_version_1_database_keeps_its_records_and_takes_pages() {
        let name = format!("v1-{}", js_sys::Math::random());
        version_1_database(&name).await;
        let mut store = IdbStore::open(&name).await.unwrap();
        assert_eq!(store.live_keys, 1);
        assert_eq!(store.key_state(&key(7)).await.unwrap(), Some(state(7)));
        store
            .commit(keys_tx((100..200).map(|n| (n, state(n)))))
            .await
            .unwrap();
        assert_eq!(pages(&store), 2);
        let all = scan_all(&store, 1000).await;
        assert_eq!(all.len(), 101);
        assert_eq!(all[0], (key(7), state(7)));
    }
}
