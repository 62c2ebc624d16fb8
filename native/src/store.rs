//! The durable pinset store: a replica's whole state in one redb file, and a journal
//! beside it.
//!
//! Every transaction gathers in one open redb write transaction, which is committed to
//! disk [`DURABLE_INTERVAL`] after the last commit, or when the store is dropped. Each is
//! also recorded in the [journal], which the replica's own writes ([`Transaction::durable`])
//! and the end of a write group ([`Store::flush`]) write out and flush: those are on disk
//! when the call returns, after one small sequential write, and the next open replays them.
//! A process killed at any moment leaves each merged delta on disk either entirely or not
//! at all, and the next open finds the store ready at once, so the replica resumes its sync
//! where it stood. A crash loses the merges of other peers' deltas not flushed yet, which
//! the replica then fetches again: the walk's state is in the same file, so it reverts with
//! them. One disk flush per merged delta would bound a sync to the disk's flush rate, and
//! one database commit per delta or per write group would copy the B-tree pages its keys
//! land on each time rather than once per interval.
//!
//! Reads see the open transaction when there is one, and otherwise a read transaction
//! taken after the last commit, so a merge sees what the previous one wrote without
//! opening a transaction per lookup. Key states are gathered in memory and written out in
//! key order at each commit, in bulk as [runs](runs), which a peer merges into the key
//! table once it is synced.

mod filter;
mod journal;
mod runs;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pinfold_core::crdt::{
    BlockId, KeyState, PendingBlock, Persisted, RecordDecodeError, Store, Transaction,
};
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};

pub use journal::JournalError;
use journal::{Generation, Journal};
use runs::{KeyRuns, KeyTable};
pub use runs::{RunLimits, RunMerge};

/// Key → encoded [`KeyState`].
const KEYS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("keys");
/// Block id → block bytes.
const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks");
/// Ids of merged blocks.
const PROCESSED: TableDefinition<'_, &[u8], ()> = TableDefinition::new("processed");
/// Head CID bytes → height.
const HEADS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("heads");
/// Block id → encoded [`PendingBlock`].
const PENDING: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("pending");
/// Facts about the file itself.
const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");
/// Where `META` keeps the store's random id, which the journal names.
const STORE_ID: &str = "store_id";
/// Where `META` keeps the count of commits, which the journal names.
const COMMITS: &str = "commits";

/// The layout this version writes, kept in `META` under `format`: the key states may be
/// partly in [runs](runs), which a reader of the first layout would not see.
pub const STORE_FORMAT: &str = "pinfold-pinset/2";
/// The layout before runs, read as it is (it holds none) and relabelled when opened.
const STORE_FORMAT_WITHOUT_RUNS: &str = "pinfold-pinset/1";

/// Longest a merge of another peer's delta waits to be flushed to disk. Each flush copies
/// every B-tree page the merges since the last one touched, and a sync's merges touch keys
/// all over the table: at one second, a new peer syncing a million pins through the DAG
/// spent a third of its time rewriting pages (`pinset_scale`: 17.1 s at 1 s, 12.1 s at 5 s,
/// 11.7 s at 10 s).
pub const DURABLE_INTERVAL: Duration = Duration::from_secs(5);

/// [`RedbStore::compact_if_sparse`] compacts a store whose file is at least this share free
/// (numerator, denominator) and holds [`COMPACT_MIN_FREE_BYTES`] free.
const COMPACT_FREE_SHARE: (u64, u64) = (1, 4);
/// Less free space than this is not worth a compaction.
const COMPACT_MIN_FREE_BYTES: u64 = 64 << 20;
/// [`RedbStore::compact_if_grown`] waits for the store to go this long without a write: a
/// compaction holds the store (seconds for millions of pins), so not amid a sync or a run
/// of writes.
const COMPACT_AFTER_QUIET: Duration = Duration::from_secs(2);

/// What a store's file took on disk before and after a compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compaction {
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub took: Duration,
}

/// Page cache redb may use by default (it would otherwise take 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Why the durable store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not open the pinset store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error(
        "the pinset store {path} is damaged ({detail}). With the daemon stopped, \
         `pinfold service state cleanup` moves it aside; the peer then syncs the pinset \
         again from the other peers when it next starts"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "the disk holding the pinset store {path} is full ({available} bytes free, a write \
         needs {needed}): writes are refused until space is freed"
    )]
    DiskFull {
        path: PathBuf,
        available: u64,
        needed: u64,
    },
    #[error(
        "{path} holds a pinset store of format {found:?}; this pinfold reads {STORE_FORMAT:?}"
    )]
    Format { path: PathBuf, found: String },
    #[error("pinset store: {0}")]
    Database(#[from] redb::Error),
    #[error("pinset store: {0}")]
    Corrupt(#[from] RecordDecodeError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(
        "the pinset store failed to write and gave up the merges it had not committed: \
         restart the peer (it fetches them again)"
    )]
    Failed,
}

/// Turns any of redb's per-operation error types into a [`StoreError`].
fn failed<E: Into<redb::Error>>(error: E) -> StoreError {
    StoreError::Database(error.into())
}

/// How many blocks, merged blocks, keys, heads and pending blocks a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub blocks: u64,
    pub processed: u64,
    pub keys: u64,
    pub heads: u64,
    pub pending: u64,
}

/// What one of the store's tables holds: its entries, their bytes, and the bytes of the
/// pages holding them (what the table takes in the file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableBytes {
    pub table: String,
    pub entries: u64,
    pub stored_bytes: u64,
    pub page_bytes: u64,
}

/// A replica's state in a redb database file.
pub struct RedbStore {
    path: PathBuf,
    db: Database,
    state: State,
    /// Keys with a value, kept in `META` under [`LIVE_KEYS`] and updated by each commit.
    live_keys: u64,
    /// When the last commit flushed to disk.
    flushed_at: Instant,
    /// When the last transaction was written.
    written_at: Instant,
    /// [`DURABLE_INTERVAL`], shorter in tests.
    durable_interval: Duration,
    /// The transactions since the last commit.
    journal: Journal,
    /// The last commit.
    generation: Generation,
    /// What the file took on disk when a compaction was last considered (or the store
    /// opened).
    considered_bytes: u64,
    /// Key states gathered in memory and the runs they were written out as.
    runs: KeyRuns,
}

/// What reads see.
enum State {
    /// Everything is on disk: reads go through the tables as of the last commit.
    Committed(View),
    /// Merges not on disk yet, gathered in one write transaction; reads go through it.
    Open(WriteTransaction),
    /// A write failed inside the open transaction, which was given up with the merges it
    /// held, while the replica counts them merged: every later call fails, until the store
    /// is opened again from what is on disk.
    Failed,
}

/// Runs `$read` with `$table` bound to table `$definition` (field `$field` of [`View`]) as
/// the store sees it now.
macro_rules! read_table {
    ($store:expr, $definition:expr, $field:ident, |$table:ident| $read:expr) => {
        match &$store.state {
            State::Open(write) => {
                let $table = write.open_table($definition).map_err(failed)?;
                let read = $read;
                read
            }
            State::Committed(view) => {
                let $table = &view.$field;
                let read = $read;
                read
            }
            State::Failed => Err(StoreError::Failed),
        }
    };
}

/// Where the count of keys with a value is kept in `META`.
const LIVE_KEYS: &str = "live_keys";

/// The tables as of the last commit.
struct View {
    keys: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// The key runs, newest first.
    runs: Vec<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    blocks: ReadOnlyTable<&'static [u8], &'static [u8]>,
    processed: ReadOnlyTable<&'static [u8], ()>,
    heads: ReadOnlyTable<&'static [u8], u64>,
    pending: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl View {
    fn of(db: &Database, runs: &KeyRuns) -> Result<Self, StoreError> {
        let read = db.begin_read().map_err(failed)?;
        Ok(Self {
            keys: read.open_table(KEYS).map_err(failed)?,
            runs: runs
                .tables()
                .map(|run| read.open_table(run).map_err(failed))
                .collect::<Result<_, _>>()?,
            blocks: read.open_table(BLOCKS).map_err(failed)?,
            processed: read.open_table(PROCESSED).map_err(failed)?,
            heads: read.open_table(HEADS).map_err(failed)?,
            pending: read.open_table(PENDING).map_err(failed)?,
        })
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it if it does not exist, with the default page
    /// cache.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store at `path` with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|source| match source {
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                    StoreError::Damaged {
                        path: path.to_owned(),
                        detail,
                    }
                }
                // What redb reads of a file that is not one of its databases.
                redb::DatabaseError::Storage(redb::StorageError::Io(error))
                    if error.kind() == std::io::ErrorKind::InvalidData =>
                {
                    StoreError::Damaged {
                        path: path.to_owned(),
                        detail: error.to_string(),
                    }
                }
                source => StoreError::Open {
                    path: path.to_owned(),
                    source,
                },
            })?;
        let mut setup = db.begin_write().map_err(failed)?;
        setup.set_quick_repair(true);
        let generation;
        {
            let mut meta = setup.open_table(META).map_err(failed)?;
            let found = meta
                .get("format")
                .map_err(failed)?
                .map(|format| format.value().to_owned());
            match found.as_deref() {
                Some(STORE_FORMAT) => {}
                Some(STORE_FORMAT_WITHOUT_RUNS) | None => {
                    meta.insert("format", STORE_FORMAT).map_err(failed)?;
                }
                Some(_) => {
                    return Err(StoreError::Format {
                        path: path.to_owned(),
                        found: found.unwrap_or_default(),
                    })
                }
            }
            setup.open_table(KEYS).map_err(failed)?;
            setup.open_table(BLOCKS).map_err(failed)?;
            setup.open_table(PROCESSED).map_err(failed)?;
            setup.open_table(HEADS).map_err(failed)?;
            setup.open_table(PENDING).map_err(failed)?;
            let mut number = |name: &str, new: u64| -> Result<u64, StoreError> {
                if let Some(kept) = meta.get(name).map_err(failed)? {
                    return kept
                        .value()
                        .parse()
                        .map_err(|_| RecordDecodeError::new("store generation").into());
                }
                meta.insert(name, new.to_string().as_str())
                    .map_err(failed)?;
                Ok(new)
            };
            generation = Generation {
                store: number(STORE_ID, rand::random())?,
                commits: number(COMMITS, 0)?,
            };
        }
        setup.commit().map_err(failed)?;
        let runs = KeyRuns::open(&db.begin_read().map_err(failed)?)?;
        let view = View::of(&db, &runs)?;
        let live_keys = Self::kept_live_keys(&db, &view)?;
        let (journal, journaled) = Journal::open(path, generation)?;
        let mut store = Self {
            path: path.to_owned(),
            db,
            state: State::Committed(view),
            live_keys,
            flushed_at: Instant::now(),
            written_at: Instant::now(),
            durable_interval: DURABLE_INTERVAL,
            journal,
            generation,
            considered_bytes: disk_bytes(path)?,
            runs,
        };
        if journaled.is_empty() {
            store.journal.restart(generation)?;
        } else {
            tracing::info!(
                transactions = journaled.len(),
                "replaying the pinset journal"
            );
            for tx in &journaled {
                store.write(tx)?;
            }
            store.flush_to_disk()?;
        }
        Ok(store)
    }

    /// The kept count of keys with a value; a store written before the count was kept is
    /// counted once, and the count recorded.
    fn kept_live_keys(db: &Database, view: &View) -> Result<u64, StoreError> {
        let read = db.begin_read().map_err(failed)?;
        let meta = read.open_table(META).map_err(failed)?;
        if let Some(kept) = meta.get(LIVE_KEYS).map_err(failed)? {
            return kept
                .value()
                .parse()
                .map_err(|_| RecordDecodeError::new("live key count").into());
        }
        let mut counted = 0u64;
        for entry in view.keys.iter().map_err(failed)? {
            let (_, state) = entry.map_err(failed)?;
            if !KeyState::decode(state.value())?.live.is_empty() {
                counted += 1;
            }
        }
        let write = db.begin_write().map_err(failed)?;
        write
            .open_table(META)
            .map_err(failed)?
            .insert(LIVE_KEYS, counted.to_string().as_str())
            .map_err(failed)?;
        write.commit().map_err(failed)?;
        Ok(counted)
    }

    /// Moves the store's pages to the start of its file and gives the rest back to the
    /// file system, when at least a quarter of what the file takes on disk (and 64 MiB) is
    /// free: pages freed by commits stay in the file, so after a large import or sync a
    /// third of it may be free. Flushes first, then holds the store for the compaction
    /// (`tests/cluster/scale.mjs`, a million pins: 1.5 s after an import, 1.4 s once a new
    /// peer has synced them through the DAG). Returns what the file took on disk before and
    /// after, or `None` when there was too little to gain.
    pub fn compact_if_sparse(&mut self) -> Result<Option<Compaction>, StoreError> {
        self.compact_if_free(COMPACT_MIN_FREE_BYTES, COMPACT_FREE_SHARE)
    }

    /// [`RedbStore::compact_if_sparse`] for the end of an import, which its caller waits
    /// for anyway: merges the key runs, then compacts whenever [`COMPACT_MIN_FREE_BYTES`]
    /// are free, whatever their share of the file.
    pub fn compact_after_import(&mut self) -> Result<Option<Compaction>, StoreError> {
        self.merge_runs()?;
        self.compact_if_free(COMPACT_MIN_FREE_BYTES, (0, 1))
    }

    /// Once nothing was written for [`COMPACT_AFTER_QUIET`]: merges the key runs, if any,
    /// then [`RedbStore::compact_if_sparse`] if the file has grown by
    /// [`COMPACT_MIN_FREE_BYTES`] since a compaction was last considered. A stat of the file
    /// otherwise, so cheap to ask often (a peer asks whenever it is synced, so that a store
    /// just filled by a sync is merged and compacted then rather than at the next start).
    pub fn compact_if_grown(&mut self) -> Result<Option<Compaction>, StoreError> {
        self.compact_if_grown_by(COMPACT_MIN_FREE_BYTES, COMPACT_AFTER_QUIET)
    }

    /// [`RedbStore::compact_if_grown`], with `min_free` for [`COMPACT_MIN_FREE_BYTES`] and
    /// `quiet` for [`COMPACT_AFTER_QUIET`].
    fn compact_if_grown_by(
        &mut self,
        min_free: u64,
        quiet: Duration,
    ) -> Result<Option<Compaction>, StoreError> {
        if self.written_at.elapsed() < quiet {
            return Ok(None);
        }
        self.merge_runs()?;
        if disk_bytes(&self.path)? < self.considered_bytes.saturating_add(min_free) {
            return Ok(None);
        }
        self.compact_if_free(min_free, COMPACT_FREE_SHARE)
    }

    /// Compacts the store if at least `min_free` bytes, and `share` (numerator,
    /// denominator) of what the file takes on disk, are free.
    fn compact_if_free(
        &mut self,
        min_free: u64,
        (share, of): (u64, u64),
    ) -> Result<Option<Compaction>, StoreError> {
        self.flush_to_disk()?;
        let before_bytes = disk_bytes(&self.path)?;
        self.considered_bytes = before_bytes;
        // Counting the used pages walks every page: not for a file too small to hold
        // `min_free` free bytes (every daemon start asks).
        if before_bytes < min_free {
            return Ok(None);
        }
        let used_bytes = {
            let write = self.db.begin_write().map_err(failed)?;
            let stats = write.stats().map_err(failed)?;
            write.abort().map_err(failed)?;
            stats.allocated_pages() * stats.page_size() as u64
        };
        let free = before_bytes.saturating_sub(used_bytes);
        if free < min_free || free * of < before_bytes * share {
            tracing::info!(
                disk_bytes = before_bytes,
                free_bytes = free,
                "the pinset store has too little free space to be worth compacting"
            );
            return Ok(None);
        }
        tracing::info!(
            disk_bytes = before_bytes,
            free_bytes = free,
            "compacting the pinset store"
        );
        let started = Instant::now();
        // Compaction needs every read transaction closed, the view's among them.
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Committed(view) => drop(view),
            State::Open(_) | State::Failed => return Err(StoreError::Failed),
        }
        let compacted = self.db.compact().map_err(failed);
        self.state = State::Committed(View::of(&self.db, &self.runs)?);
        compacted?;
        let compaction = Compaction {
            before_bytes,
            after_bytes: disk_bytes(&self.path)?,
            took: started.elapsed(),
        };
        self.considered_bytes = compaction.after_bytes;
        tracing::info!(
            disk_bytes = compaction.after_bytes,
            took = ?compaction.took,
            "compacted the pinset store"
        );
        Ok(Some(compaction))
    }

    /// The journal file kept beside the store at `path`.
    pub fn journal_path(path: &Path) -> PathBuf {
        Journal::path_of(path)
    }

    /// The main key table and, when `with_runs`, the runs newest first, as reads see them
    /// now.
    fn key_tables(&self, with_runs: bool) -> Result<(KeyTable<'_>, Vec<KeyTable<'_>>), StoreError> {
        match &self.state {
            State::Open(write) => {
                let main = KeyTable::Open(write.open_table(KEYS).map_err(failed)?);
                let runs = if with_runs {
                    self.runs
                        .tables()
                        .map(|run| write.open_table(run).map(KeyTable::Open).map_err(failed))
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                Ok((main, runs))
            }
            State::Committed(view) => Ok((
                KeyTable::Committed(&view.keys),
                view.runs.iter().map(KeyTable::Committed).collect(),
            )),
            State::Failed => Err(StoreError::Failed),
        }
    }

    /// Sets when gathered key states are written out as runs.
    pub fn set_run_limits(&mut self, limits: RunLimits) {
        self.runs.limits = limits;
    }

    /// Merges the key runs into the main key table (see [runs](runs)) and commits, if there
    /// are any: the store is held meanwhile (seconds for millions of keys), so a peer does
    /// it once synced and quiet.
    pub fn merge_runs(&mut self) -> Result<Option<RunMerge>, StoreError> {
        if !self.runs.any() {
            return Ok(None);
        }
        tracing::info!("merging the pinset's key runs");
        let started = Instant::now();
        let write = self.take_write()?;
        let merged = self
            .runs
            .spill(&write)
            .and_then(|()| self.runs.merge(&write));
        self.state = State::Open(write);
        let merged = merged?;
        self.flush_to_disk()?;
        if let Some(merge) = merged {
            tracing::info!(
                runs = merge.runs,
                keys = merge.keys,
                took = ?started.elapsed(),
                "merged the pinset's key runs"
            );
        }
        Ok(merged)
    }

    /// Each table's size as of the last commit, largest first, for inspection.
    pub fn table_bytes(&self) -> Result<Vec<TableBytes>, StoreError> {
        let read = self.db.begin_read().map_err(failed)?;
        let mut tables = read
            .list_tables()
            .map_err(failed)?
            .map(|handle| {
                let name = handle.name().to_owned();
                let table = read.open_untyped_table(handle).map_err(failed)?;
                let stats = table.stats().map_err(failed)?;
                Ok(TableBytes {
                    table: name,
                    entries: table.len().map_err(failed)?,
                    stored_bytes: stats.stored_bytes(),
                    page_bytes: stats.stored_bytes()
                        + stats.metadata_bytes()
                        + stats.fragmented_bytes(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        tables.sort_by_key(|table| std::cmp::Reverse(table.page_bytes));
        Ok(tables)
    }

    /// What the store holds, for inspection.
    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        Ok(StoreCounts {
            blocks: read_table!(self, BLOCKS, blocks, |t| t.len().map_err(failed))?,
            processed: read_table!(self, PROCESSED, processed, |t| t.len().map_err(failed))?,
            keys: {
                let (main, runs) = self.key_tables(true)?;
                self.runs.count(&main, &runs)?
            },
            heads: read_table!(self, HEADS, heads, |t| t.len().map_err(failed))?,
            pending: read_table!(self, PENDING, pending, |t| t.len().map_err(failed))?,
        })
    }

    /// Refuses `tx` before it reaches the database when the disk has too little room for
    /// it: a database whose write failed for want of space refuses every write after it
    /// until it is opened again.
    fn ensure_room(&self, tx: &Transaction) -> Result<(), StoreError> {
        let written: usize = tx
            .blocks
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum::<usize>()
            + tx.keys
                .iter()
                .map(|(key, _)| key.len() + 256)
                .sum::<usize>();
        let needed = MIN_FREE_BYTES + 2 * written as u64;
        let Some(available) = available_bytes(&self.path) else {
            return Ok(());
        };
        if available < needed {
            let error = StoreError::DiskFull {
                path: self.path.clone(),
                available,
                needed,
            };
            tracing::warn!(%error, "a write to the pinset was refused");
            return Err(error);
        }
        Ok(())
    }

    /// Commits the open transaction to disk, if there is one, and starts the journal over.
    fn flush_to_disk(&mut self) -> Result<(), StoreError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Open(mut write) => {
                let next = Generation {
                    commits: self.generation.commits + 1,
                    ..self.generation
                };
                let committed = self
                    .spill(&write)
                    .and_then(|()| Self::record_commit(&write, next))
                    .and_then(|()| {
                        write
                            .set_durability(redb::Durability::Immediate)
                            .map_err(failed)?;
                        write.set_quick_repair(true);
                        write.commit().map_err(failed)
                    });
                if let Err(error) = committed {
                    tracing::error!(%error, "the pinset store could not write: restart the peer once the disk is mended");
                    return Err(error);
                }
                self.generation = next;
                self.state = State::Committed(View::of(&self.db, &self.runs)?);
                self.flushed_at = Instant::now();
                if let Err(error) = self.journal.restart(next) {
                    tracing::warn!(%error, "own writes are committed to the database one group at a time until the journal can be written again");
                }
            }
            other => self.state = other,
        }
        Ok(())
    }

    /// Counts the commit `write` is about to make, for the journal to name.
    fn record_commit(write: &WriteTransaction, next: Generation) -> Result<(), StoreError> {
        write
            .open_table(META)
            .map_err(failed)?
            .insert(COMMITS, next.commits.to_string().as_str())
            .map_err(failed)?;
        Ok(())
    }

    /// Puts every transaction so far on disk: through the journal when it holds them all,
    /// else (or when it cannot be written) by committing the database.
    fn make_durable(&mut self) -> Result<(), StoreError> {
        match self.state {
            State::Failed => return Err(StoreError::Failed),
            State::Committed(_) => return Ok(()),
            State::Open(_) => {}
        }
        if self.journal.is_complete() {
            match self.journal.sync() {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "committing the database instead");
                }
            }
        }
        self.flush_to_disk()
    }

    /// Writes `tx` into the open write transaction (opening one if needed) and records
    /// it in the journal; neither is on disk yet.
    fn write(&mut self, tx: &Transaction) -> Result<(), StoreError> {
        let write = self.take_write()?;
        let applied = self.apply(&write, tx).and_then(|live_keys| {
            for (key, state) in &tx.keys {
                self.runs.insert(key, state);
            }
            if self.runs.should_spill() {
                self.spill(&write)?;
            }
            Ok(live_keys)
        });
        match applied {
            Ok(live_keys) => self.live_keys = live_keys,
            Err(error) => {
                tracing::error!(%error, "the pinset store could not write: restart the peer once the disk is mended");
                return Err(error);
            }
        }
        self.state = State::Open(write);
        self.written_at = Instant::now();
        self.journal.record(tx);
        Ok(())
    }

    /// Writes the gathered key states out into `write`, and merges the runs there if that
    /// leaves too many.
    fn spill(&mut self, write: &WriteTransaction) -> Result<(), StoreError> {
        self.runs.spill(write)?;
        if self.runs.too_many() {
            let started = Instant::now();
            if let Some(merge) = self.runs.merge(write)? {
                tracing::info!(
                    runs = merge.runs,
                    keys = merge.keys,
                    took = ?started.elapsed(),
                    "too many key runs in the pinset store: merged them"
                );
            }
        }
        Ok(())
    }

    /// The open write transaction, or a new one; the store is [`State::Failed`] until it is
    /// put back.
    fn take_write(&mut self) -> Result<WriteTransaction, StoreError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Open(write) => Ok(write),
            State::Committed(view) => {
                // A read transaction left open would keep the pages this one frees.
                drop(view);
                let mut write = self.db.begin_write().map_err(failed)?;
                write
                    .set_durability(redb::Durability::None)
                    .map_err(failed)?;
                Ok(write)
            }
            State::Failed => Err(StoreError::Failed),
        }
    }

    /// Writes `tx` into `write`, all but its key states, which are gathered; returns the
    /// new count of keys with a value.
    fn apply(&self, write: &WriteTransaction, tx: &Transaction) -> Result<u64, StoreError> {
        let live_keys = self.live_keys.saturating_add_signed(tx.live_keys);
        {
            if tx.live_keys != 0 {
                write
                    .open_table(META)
                    .map_err(failed)?
                    .insert(LIVE_KEYS, live_keys.to_string().as_str())
                    .map_err(failed)?;
            }
            let mut blocks = write.open_table(BLOCKS).map_err(failed)?;
            for (id, bytes) in &tx.blocks {
                if blocks.get(&id.0[..]).map_err(failed)?.is_none() {
                    blocks.insert(&id.0[..], &bytes[..]).map_err(failed)?;
                }
            }
            for id in &tx.blocks_removed {
                blocks.remove(&id.0[..]).map_err(failed)?;
            }
            let mut processed = write.open_table(PROCESSED).map_err(failed)?;
            for id in &tx.processed {
                processed.insert(&id.0[..], ()).map_err(failed)?;
            }
            let mut heads = write.open_table(HEADS).map_err(failed)?;
            for cid in &tx.heads_removed {
                heads.remove(&cid.to_bytes()[..]).map_err(failed)?;
            }
            for (cid, height) in &tx.heads_added {
                heads.insert(&cid.to_bytes()[..], height).map_err(failed)?;
            }
            let mut pending = write.open_table(PENDING).map_err(failed)?;
            for id in &tx.pending_removed {
                pending.remove(&id.0[..]).map_err(failed)?;
            }
            for block in &tx.pending_added {
                if let Ok(id) = BlockId::from_cid(&block.cid) {
                    pending
                        .insert(&id.0[..], &block.encode()[..])
                        .map_err(failed)?;
                }
            }
        }
        Ok(live_keys)
    }
}

/// The room kept free on the pinset store's disk: the database grows its file by regions
/// of a few megabytes.
pub const MIN_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// The bytes an unprivileged writer may still use on the file system holding `path`, or
/// `None` when it cannot be read.
fn available_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// What the file at `path` takes on disk: its allocated blocks. A database file's length
/// may be larger, by space the database grew the file by and has not written yet (which
/// takes no disk).
fn disk_bytes(path: &Path) -> Result<u64, StoreError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|metadata| metadata.blocks() * 512)
        .map_err(|error| failed(redb::StorageError::Io(error)))
}

/// The 32 bytes of a stored block id.
fn block_id(bytes: &[u8]) -> Result<BlockId, StoreError> {
    let id: [u8; 32] = bytes
        .try_into()
        .map_err(|_| RecordDecodeError::new("block id"))?;
    Ok(BlockId(id))
}

impl Store for RedbStore {
    type Error = StoreError;

    async fn load(&self) -> Result<Persisted, StoreError> {
        let mut heads = Vec::new();
        read_table!(self, HEADS, heads, |table| {
            for entry in table.range::<&[u8]>(..).map_err(failed)? {
                let (cid, height) = entry.map_err(failed)?;
                let cid = cid::Cid::try_from(cid.value())
                    .map_err(|_| RecordDecodeError::new("head cid"))?;
                heads.push((cid, height.value()));
            }
            Ok(())
        })?;
        let mut pending = Vec::new();
        read_table!(self, PENDING, pending, |table| {
            for entry in table.range::<&[u8]>(..).map_err(failed)? {
                let (_, block) = entry.map_err(failed)?;
                pending.push(PendingBlock::decode(block.value())?);
            }
            Ok(())
        })?;
        Ok(Persisted { heads, pending })
    }

    async fn key_state(&self, key: &[u8]) -> Result<Option<KeyState>, StoreError> {
        let (main, runs) = self.key_tables(self.runs.runs_needed(&[key]))?;
        self.runs.get(&main, &runs, key)
    }

    /// The tables opened once for all `keys`: opening a table in the open transaction is
    /// not free.
    async fn key_states(&self, keys: &[&[u8]]) -> Result<Vec<Option<KeyState>>, StoreError> {
        let (main, runs) = self.key_tables(self.runs.runs_needed(keys))?;
        keys.iter()
            .map(|key| self.runs.get(&main, &runs, key))
            .collect()
    }

    async fn is_processed(&self, block: &BlockId) -> Result<bool, StoreError> {
        read_table!(self, PROCESSED, processed, |table| Ok(table
            .get(&block.0[..])
            .map_err(failed)?
            .is_some()))
    }

    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, StoreError> {
        read_table!(self, BLOCKS, blocks, |table| Ok(table
            .get(&block.0[..])
            .map_err(failed)?
            .map(|bytes| bytes.value().to_vec())))
    }

    async fn processed_after(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Vec<BlockId>, StoreError> {
        let lower = after.map_or(Bound::Unbounded, |id| Bound::Excluded(&id.0[..]));
        read_table!(self, PROCESSED, processed, |table| table
            .range::<&[u8]>((lower, Bound::Unbounded))
            .map_err(failed)?
            .take(limit)
            .map(|entry| block_id(entry.map_err(failed)?.0.value()))
            .collect())
    }

    async fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, StoreError> {
        let (main, runs) = self.key_tables(true)?;
        self.runs.scan(&main, &runs, after, limit)
    }

    async fn commit(&mut self, tx: Transaction) -> Result<(), StoreError> {
        if tx.is_empty() {
            return Ok(());
        }
        self.ensure_room(&tx)?;
        self.write(&tx)?;
        if self.flushed_at.elapsed() >= self.durable_interval {
            self.flush_to_disk()
        } else if tx.durable {
            self.make_durable()
        } else {
            Ok(())
        }
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        self.make_durable()
    }

    async fn live_keys(&self) -> Result<u64, StoreError> {
        Ok(self.live_keys)
    }
}

impl Drop for RedbStore {
    /// Flushes what is not on disk yet: a peer that stops loses none of its merges.
    fn drop(&mut self) {
        if let Err(error) = self.flush_to_disk() {
            tracing::warn!(%error, "could not flush the pinset store: the last merges will be fetched again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use pinfold_core::crdt::{count_live_keys, Config, Replica};
    use pinfold_core::pin::{Pin, UnixTime};

    fn ready<F: std::future::Future>(future: F) -> F::Output {
        futures::executor::block_on(future)
    }

    #[test]
    fn the_live_key_count_is_kept_and_counted_once_for_an_older_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        {
            let store = RedbStore::open(&path).unwrap();
            let mut replica = ready(Replica::open(store, Config::default())).unwrap();
            let cids: Vec<_> = (0..5u8)
                .map(|i| pinfold_core::codec::dagpb::dag_pb_cid(&[i]))
                .collect();
            for cid in &cids {
                ready(replica.add_pin(&Pin::new(*cid, UnixTime(1)), 0)).unwrap();
            }
            ready(replica.remove_pin(&cids[0], 0)).unwrap();
            ready(replica.commit(0)).unwrap();
            assert_eq!(ready(replica.store().live_keys()).unwrap(), 4);
        }
        assert_eq!(
            ready(RedbStore::open(&path).unwrap().live_keys()).unwrap(),
            4
        );
        // A store written before the count was kept has none in META.
        {
            let db = Database::create(&path).unwrap();
            let write = db.begin_write().unwrap();
            write.open_table(META).unwrap().remove(LIVE_KEYS).unwrap();
            write.commit().unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(ready(store.live_keys()).unwrap(), 4);
        assert_eq!(ready(count_live_keys(&store)).unwrap(), 4);
    }

    /// A write with one key, `durable` or not.
    fn write_key(store: &mut RedbStore, key: &str, durable: bool) {
        let tx = Transaction {
            keys: vec![(key.as_bytes().to_vec(), KeyState::default())],
            durable,
            ..Default::default()
        };
        ready(store.commit(tx)).unwrap();
    }

    /// What a process killed now would find: a copy of the file and its journal, opened
    /// (repaired, and the journal replayed).
    fn keys_on_disk(path: &Path) -> Vec<String> {
        let copy = path.with_extension("copy");
        std::fs::copy(path, &copy).unwrap();
        std::fs::copy(Journal::path_of(path), Journal::path_of(&copy)).unwrap();
        let store = RedbStore::open(&copy).unwrap();
        let keys = ready(store.scan(None, 100))
            .unwrap()
            .into_iter()
            .map(|(key, _)| String::from_utf8(key).unwrap())
            .collect();
        drop(store);
        std::fs::remove_file(&copy).unwrap();
        keys
    }

    #[test]
    fn own_writes_reach_the_disk_at_once_and_merges_with_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        let mut store = RedbStore::open(&path).unwrap();
        store.durable_interval = Duration::from_millis(200);
        write_key(&mut store, "/own", true);
        write_key(&mut store, "/merged", false);
        assert_eq!(
            ready(store.key_state(b"/merged")).unwrap(),
            Some(KeyState::default())
        );
        assert_eq!(keys_on_disk(&path), ["/own"]);

        // The next commit after the interval is flushed, with the ones before it.
        std::thread::sleep(store.durable_interval);
        write_key(&mut store, "/later", false);
        assert_eq!(keys_on_disk(&path), ["/later", "/merged", "/own"]);

        // A flush (the end of a write group) puts every commit before it on disk.
        write_key(&mut store, "/grouped", false);
        assert_eq!(keys_on_disk(&path), ["/later", "/merged", "/own"]);
        ready(store.flush()).unwrap();
        assert_eq!(
            keys_on_disk(&path),
            ["/grouped", "/later", "/merged", "/own"]
        );

        // A store dropped (the peer stopping) flushes what it holds.
        write_key(&mut store, "/last", false);
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert!(ready(store.key_state(b"/last")).unwrap().is_some());
    }

    #[test]
    fn own_writes_are_journaled_and_the_database_committed_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        let mut store = RedbStore::open(&path).unwrap();
        let committed = store.generation.commits;
        for i in 0..20 {
            write_key(&mut store, &format!("/own-{i:02}"), true);
        }
        assert_eq!(
            store.generation.commits, committed,
            "no database commit yet"
        );
        assert_eq!(keys_on_disk(&path).len(), 20, "the journal holds them all");

        // Replayed once: the store opened again holds them in its database, the journal
        // started over.
        let copy = dir.path().join("replayed.redb");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(Journal::path_of(&path), Journal::path_of(&copy)).unwrap();
        drop(RedbStore::open(&copy).unwrap());
        std::fs::remove_file(Journal::path_of(&copy)).unwrap();
        let reopened = RedbStore::open(&copy).unwrap();
        assert_eq!(ready(reopened.scan(None, 100)).unwrap().len(), 20);

        // Past the journal's limit, a durable write commits the database.
        store.journal.limit = 0;
        write_key(&mut store, "/over-the-limit", true);
        assert_eq!(store.generation.commits, committed + 1);
        assert_eq!(keys_on_disk(&path).len(), 21);
        // The journal starts over with the commit and records again.
        store.journal.limit = journal::JOURNAL_LIMIT;
        write_key(&mut store, "/journaled-again", true);
        assert_eq!(store.generation.commits, committed + 1);
        assert_eq!(keys_on_disk(&path).len(), 22);
    }

    /// Grows the store's file by writing 4 MiB of blocks, one commit each, then removes
    /// them.
    fn grow_and_free(store: &mut RedbStore) {
        let ids: Vec<BlockId> = (0..64u8).map(|i| BlockId([i; 32])).collect();
        for id in &ids {
            let tx = Transaction {
                blocks: vec![(*id, vec![id.0[0]; 64 << 10])],
                ..Default::default()
            };
            ready(store.commit(tx)).unwrap();
            store.flush_to_disk().unwrap();
        }
        let tx = Transaction {
            blocks_removed: ids,
            ..Default::default()
        };
        ready(store.commit(tx)).unwrap();
    }

    #[test]
    fn a_store_mostly_free_is_compacted_and_keeps_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        let mut store = RedbStore::open(&path).unwrap();
        write_key(&mut store, "/kept", true);
        grow_and_free(&mut store);
        let compaction = store
            .compact_if_free(1 << 20, COMPACT_FREE_SHARE)
            .unwrap()
            .expect("compacted");
        assert!(
            compaction.after_bytes * 2 < compaction.before_bytes,
            "{compaction:?}"
        );
        // The file itself is cut short, not just left with holes.
        assert!(std::fs::metadata(&path).unwrap().len() * 2 < compaction.before_bytes);
        assert_eq!(
            store.compact_if_free(1 << 20, COMPACT_FREE_SHARE).unwrap(),
            None,
            "nothing left to gain"
        );
        assert!(ready(store.key_state(b"/kept")).unwrap().is_some());
        write_key(&mut store, "/after", true);
        drop(store);
        assert_eq!(keys_on_disk(&path), ["/after", "/kept"]);
    }

    #[test]
    fn a_store_is_compacted_once_grown_and_not_considered_again_until_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        let mut store = RedbStore::open(&path).unwrap();
        write_key(&mut store, "/kept", true);
        assert_eq!(
            store.compact_if_grown_by(1 << 20, Duration::ZERO).unwrap(),
            None
        );
        grow_and_free(&mut store);
        let compaction = store
            .compact_if_grown_by(1 << 20, Duration::ZERO)
            .unwrap()
            .expect("compacted once grown");
        assert!(
            compaction.after_bytes * 2 < compaction.before_bytes,
            "{compaction:?}"
        );
        // Grown by less than the minimum since: not considered.
        write_key(&mut store, "/after", true);
        assert_eq!(
            store.compact_if_grown_by(1 << 20, Duration::ZERO).unwrap(),
            None
        );
        grow_and_free(&mut store);
        // Not while writes go on.
        assert_eq!(
            store
                .compact_if_grown_by(1 << 20, Duration::from_secs(3600))
                .unwrap(),
            None
        );
        assert!(store
            .compact_if_grown_by(1 << 20, Duration::ZERO)
            .unwrap()
            .is_some());
        assert!(ready(store.key_state(b"/kept")).unwrap().is_some());
        drop(store);
        assert_eq!(keys_on_disk(&path), ["/after", "/kept"]);
    }

    #[test]
    fn merges_not_on_disk_yet_are_seen_by_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        let mut store = RedbStore::open(&path).unwrap();
        let ids: Vec<BlockId> = (0..3u8).map(|i| BlockId([i; 32])).collect();
        for (i, id) in ids.iter().enumerate() {
            let tx = Transaction {
                keys: vec![(format!("/merged/{i}").into_bytes(), KeyState::default())],
                blocks: vec![(*id, vec![i as u8])],
                processed: vec![*id],
                ..Default::default()
            };
            ready(store.commit(tx)).unwrap();
        }
        assert_eq!(keys_on_disk(&path), Vec::<String>::new());
        let keys: Vec<&[u8]> = vec![b"/merged/0", b"/absent", b"/merged/2"];
        let states = ready(store.key_states(&keys)).unwrap();
        assert_eq!(
            states.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert!(ready(store.is_processed(&ids[1])).unwrap());
        assert_eq!(ready(store.block(&ids[2])).unwrap(), Some(vec![2]));
        assert_eq!(
            ready(store.processed_after(Some(&ids[0]), 10)).unwrap(),
            ids[1..]
        );
        assert_eq!(
            ready(store.scan(Some(b"/merged/0"), 1)).unwrap()[0].0,
            b"/merged/1"
        );
        let counts = store.counts().unwrap();
        assert_eq!((counts.keys, counts.blocks, counts.processed), (3, 3, 3));
        ready(store.flush()).unwrap();
        assert_eq!(keys_on_disk(&path), ["/merged/0", "/merged/1", "/merged/2"]);
    }

    /// A state told apart from others by `version`.
    fn state(version: u8) -> KeyState {
        KeyState {
            tombstones: vec![BlockId([version; 32])],
            ..KeyState::default()
        }
    }

    /// Every read of `store` agrees with `model`.
    fn reads_agree(store: &RedbStore, model: &BTreeMap<Vec<u8>, KeyState>, absent: &[u8]) {
        for (key, state) in model {
            assert_eq!(ready(store.key_state(key)).unwrap().as_ref(), Some(state));
        }
        assert_eq!(ready(store.key_state(absent)).unwrap(), None);
        let keys: Vec<&[u8]> = model.keys().map(Vec::as_slice).chain([absent]).collect();
        let states = ready(store.key_states(&keys)).unwrap();
        assert_eq!(states.iter().flatten().count(), model.len());
        let mut scanned = Vec::new();
        loop {
            let page =
                ready(store.scan(scanned.last().map(|(k, _): &(Vec<u8>, _)| &k[..]), 7)).unwrap();
            let done = page.len() < 7;
            scanned.extend(page);
            if done {
                break;
            }
        }
        assert!(scanned.iter().eq(model
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect::<Vec<_>>()
            .iter()));
        assert_eq!(store.counts().unwrap().keys, model.len() as u64);
    }

    #[test]
    fn key_states_written_in_runs_read_as_one_table_until_merged_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        let limits = RunLimits {
            spill_keys: 40,
            min_run_keys: 10,
            max_runs: 5,
        };
        let mut store = RedbStore::open(&path).unwrap();
        store.set_run_limits(limits);
        let mut model = BTreeMap::new();
        // Keys written several times over, by transactions of varied sizes, some flushed
        // (the gathering written out as a run, into the newest run, or the main table).
        let mut next = 0u32;
        for round in 0..30u32 {
            let size = [3, 25, 60, 1][round as usize % 4];
            let keys = (0..size)
                .map(|_| {
                    next = next.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let key = format!("/key/{:03}", next % 300).into_bytes();
                    let version = (round % 251) as u8;
                    model.insert(key.clone(), state(version));
                    (key, state(version))
                })
                .collect();
            let tx = Transaction {
                keys,
                ..Default::default()
            };
            ready(store.commit(tx)).unwrap();
            if round % 3 == 0 {
                ready(store.flush()).unwrap();
                store.flush_to_disk().unwrap();
            }
            reads_agree(&store, &model, b"/absent");
        }
        assert!(store.runs.any(), "some gatherings became runs");
        // Opened again (a crash's copy), the runs are found and read as before.
        store.flush_to_disk().unwrap();
        drop(store);
        let mut store = RedbStore::open(&path).unwrap();
        store.set_run_limits(limits);
        assert!(store.runs.any());
        reads_agree(&store, &model, b"/absent");
        let merge = store.merge_runs().unwrap().expect("runs merged");
        assert_eq!(merge.keys, model.len() as u64);
        assert!(!store.runs.any());
        reads_agree(&store, &model, b"/absent");
        assert_eq!(store.merge_runs().unwrap(), None);
        drop(store);
        let store = RedbStore::open(&path).unwrap();
        assert!(!store.runs.any());
        reads_agree(&store, &model, b"/absent");
    }

    #[test]
    fn a_store_of_the_layout_before_runs_opens_and_is_relabelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        drop(RedbStore::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let write = db.begin_write().unwrap();
            write
                .open_table(META)
                .unwrap()
                .insert("format", STORE_FORMAT_WITHOUT_RUNS)
                .unwrap();
            write.commit().unwrap();
        }
        drop(RedbStore::open(&path).unwrap());
        let db = Database::create(&path).unwrap();
        let read = db.begin_read().unwrap();
        let meta = read.open_table(META).unwrap();
        assert_eq!(meta.get("format").unwrap().unwrap().value(), STORE_FORMAT);
    }

    #[test]
    fn refuses_a_file_of_another_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pinset.redb");
        {
            let db = Database::create(&path).unwrap();
            let write = db.begin_write().unwrap();
            write
                .open_table(META)
                .unwrap()
                .insert("format", "pinfold-pinset/0")
                .unwrap();
            write.commit().unwrap();
        }
        let error = RedbStore::open(&path).err().unwrap();
        assert!(
            error.to_string().contains("format \"pinfold-pinset/0\""),
            "{error}"
        );
    }
}
