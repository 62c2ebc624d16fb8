//! Key states written in bulk: gathered in memory, written out in key order as runs, and
//! merged into the main key table once the store is quiet.
//!
//! Once the key table outgrows the page cache, each insert at a random key copies a page
//! of its own at the next commit: a new peer syncing ten million pins through the DAG
//! spent most of its time there, and left the table's pages a third empty. So the key
//! states a transaction writes are gathered in memory first. A gathering is written out
//! at each database commit, or when it reaches [`RunLimits::spill_keys`], in key order:
//! into the main table when it is small (a running peer's writes) or small beside the main
//! table, and otherwise as a table of its own, a run, whose pages it fills whole and writes
//! once. A gathering wholly after the last key of the newest table is appended to it (a
//! snapshot's keys, loaded in order, make one run). A store that was empty thus keeps an
//! empty main table while it fills, and a lookup of a new key stops at the filter.
//!
//! Reads look in the gathering, then in the runs newest first (only when the
//! [filter](super::filter) says a run may hold the key, which for a new key is about one
//! time in a thousand per segment of the filter), then in the main table.
//! [`KeyRuns::merge`] merges the runs and the main table into a new main table, again in
//! key order (a lone run over an empty main table just becomes it): a peer does it once it
//! is synced and the store quiet, and the store after a spill that leaves more than
//! [`RunLimits::max_runs`] runs.
//!
//! Runs are tables named [`RUN_PREFIX`] and their number, so a commit records them with
//! everything else it writes, and a store opened after a crash finds them as that commit
//! left them.

use std::cmp::Ordering;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::ops::Bound;

use pinfold_core::crdt::{KeyState, KeyStates};
use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    TableHandle, WriteTransaction,
};

use super::filter::KeyFilter;
use super::{failed, StoreError, KEYS};

/// Names of the run tables: this prefix and the run's number.
const RUN_PREFIX: &str = "keys_run_";
/// Where a merge writes the new main table, renamed [`KEYS`] in the same transaction.
const MERGING: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("keys_merging");

type KeyTableDefinition<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

/// When gathered key states are written out, and where. The defaults suit a peer; tests
/// set smaller ones to make runs of a few keys.
#[derive(Clone, Copy, Debug)]
pub struct RunLimits {
    /// A gathering this large is written out before the next commit.
    pub spill_keys: usize,
    /// A smaller gathering goes into the main table (or the newest run, if there is one).
    pub min_run_keys: usize,
    /// A spill that leaves more runs than this merges them.
    pub max_runs: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            // Runs of up to 500,000 keys: each database commit (every five seconds)
            // writes out what is gathered, so a sync of 10,000,000 pins through the DAG
            // made 28 (`tests/cluster/scale.mjs`).
            spill_keys: 500_000,
            min_run_keys: 20_000,
            max_runs: 64,
        }
    }
}

/// A gathering this many times smaller than the main table goes into it rather than into
/// a run of its own: its inserts, in key order, then share pages.
const MAIN_TABLE_SHARE: u64 = 16;

/// The gathered key states, the runs and their filter.
#[derive(Default)]
pub(super) struct KeyRuns {
    gathered: KeyStates,
    /// Oldest first.
    runs: Vec<Run>,
    filter: KeyFilter,
    pub(super) limits: RunLimits,
}

struct Run {
    name: String,
    number: u64,
}

impl Run {
    fn new(number: u64) -> Self {
        Self {
            name: format!("{RUN_PREFIX}{number}"),
            number,
        }
    }

    fn table(&self) -> KeyTableDefinition<'_> {
        TableDefinition::new(&self.name)
    }
}

/// What a merge did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunMerge {
    /// Runs merged into the main table.
    pub runs: usize,
    /// Keys in the main table after it.
    pub keys: u64,
}

/// A key table as reads see it: in the open write transaction or as of the last commit.
pub(super) enum KeyTable<'a> {
    Open(Table<'a, &'static [u8], &'static [u8]>),
    Committed(&'a ReadOnlyTable<&'static [u8], &'static [u8]>),
}

impl KeyTable<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<KeyState>, StoreError> {
        let state = match self {
            KeyTable::Open(table) => table.get(key),
            KeyTable::Committed(table) => table.get(key),
        }
        .map_err(failed)?;
        Ok(match state {
            Some(state) => Some(KeyState::decode(state.value())?),
            None => None,
        })
    }

    /// The keys after `after` and their encoded states, in key order.
    fn after(
        &self,
        after: Option<&[u8]>,
    ) -> Result<redb::Range<'_, &'static [u8], &'static [u8]>, StoreError> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        match self {
            KeyTable::Open(table) => table.range::<&[u8]>((lower, Bound::Unbounded)),
            KeyTable::Committed(table) => table.range::<&[u8]>((lower, Bound::Unbounded)),
        }
        .map_err(failed)
    }

    fn len(&self) -> Result<u64, StoreError> {
        match self {
            KeyTable::Open(table) => table.len(),
            KeyTable::Committed(table) => table.len(),
        }
        .map_err(failed)
    }
}

impl KeyRuns {
    /// The runs a store's last commit left, their keys read into the filter.
    pub(super) fn open(read: &ReadTransaction) -> Result<Self, StoreError> {
        let mut runs: Vec<Run> = read
            .list_tables()
            .map_err(failed)?
            .filter_map(|table| table.name().strip_prefix(RUN_PREFIX)?.parse().ok())
            .map(Run::new)
            .collect();
        runs.sort_by_key(|run| run.number);
        let mut filter = KeyFilter::default();
        for run in &runs {
            let table = read.open_table(run.table()).map_err(failed)?;
            for entry in table.iter().map_err(failed)? {
                filter.insert(entry.map_err(failed)?.0.value());
            }
        }
        if !runs.is_empty() {
            tracing::info!(
                runs = runs.len(),
                "the pinset store holds key runs not merged yet"
            );
        }
        Ok(Self {
            runs,
            filter,
            ..Self::default()
        })
    }

    /// Whether there are runs to merge.
    pub(super) fn any(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Gathers `state` as `key`'s newest.
    pub(super) fn insert(&mut self, key: &[u8], state: &KeyState) {
        self.gathered.insert(key, state);
    }

    /// Whether the gathering should be written out now, before the next commit.
    pub(super) fn should_spill(&self) -> bool {
        self.gathered.len() >= self.limits.spill_keys
    }

    /// Whether there are more runs than [`RunLimits::max_runs`]: time to merge them.
    pub(super) fn too_many(&self) -> bool {
        self.runs.len() > self.limits.max_runs
    }

    /// Whether a run may hold `key`.
    fn may_be_in_runs(&self, key: &[u8]) -> bool {
        self.any() && self.filter.may_contain(key)
    }

    /// Whether reading `keys` may need the runs' tables.
    pub(super) fn runs_needed(&self, keys: &[&[u8]]) -> bool {
        keys.iter().any(|key| self.may_be_in_runs(key))
    }

    /// The run tables, newest first.
    pub(super) fn tables(&self) -> impl Iterator<Item = KeyTableDefinition<'_>> {
        self.runs.iter().rev().map(Run::table)
    }

    /// `key`'s state: gathered, else in the newest run holding it, else in `main`. `runs`
    /// are the run tables newest first, or none when [`KeyRuns::runs_needed`] said so.
    pub(super) fn get(
        &self,
        main: &KeyTable<'_>,
        runs: &[KeyTable<'_>],
        key: &[u8],
    ) -> Result<Option<KeyState>, StoreError> {
        if let Some(state) = self.gathered.get(key) {
            return Ok(Some(state));
        }
        if self.may_be_in_runs(key) {
            for run in runs {
                if let Some(state) = run.get(key)? {
                    return Ok(Some(state));
                }
            }
        }
        main.get(key)
    }

    /// Up to `limit` keys after `after` and their states, in key order, the newest state
    /// of each: `main`, every run and the gathering merged as they are read.
    pub(super) fn scan(
        &self,
        main: &KeyTable<'_>,
        runs: &[KeyTable<'_>],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, StoreError> {
        type Source<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, KeyState), StoreError>> + 'a>;
        // Oldest first.
        let mut sources: Vec<Source<'_>> = Vec::with_capacity(runs.len() + 2);
        for table in std::iter::once(main).chain(runs.iter().rev()) {
            sources.push(Box::new(table.after(after)?.map(|entry| {
                let (key, state) = entry.map_err(failed)?;
                Ok((key.value().to_vec(), KeyState::decode(state.value())?))
            })));
        }
        sources.push(Box::new(
            self.gathered.after(after, limit).into_iter().map(Ok),
        ));
        Newest::new(sources)?.take(limit).collect()
    }

    /// Keys with a state: `main`'s alone when nothing is gathered and there are no runs,
    /// else counted through them all.
    pub(super) fn count(
        &self,
        main: &KeyTable<'_>,
        runs: &[KeyTable<'_>],
    ) -> Result<u64, StoreError> {
        if !self.any() && self.gathered.is_empty() {
            return main.len();
        }
        const PAGE: usize = 10_000;
        let (mut count, mut after) = (0u64, None::<Vec<u8>>);
        loop {
            let page = self.scan(main, runs, after.as_deref(), PAGE)?;
            count += page.len() as u64;
            match page.last() {
                Some((key, _)) if page.len() == PAGE => after = Some(key.clone()),
                _ => return Ok(count),
            }
        }
    }

    /// Writes the gathering out into `write`, in key order: into the newest run if there
    /// are runs, else the main table, when it is small, wholly after that table's last key,
    /// or (the main table) small beside it; else as a new run.
    pub(super) fn spill(&mut self, write: &WriteTransaction) -> Result<(), StoreError> {
        let gathered = self.gathered.len();
        if gathered == 0 {
            return Ok(());
        }
        // The table a gathering goes into unless it makes a new run: with runs, the newest
        // (the main table is older than any run, so a state written there would be hidden
        // by an older one in a run).
        let newest = self.runs.last().map_or(KEYS, Run::table);
        let new_run = gathered >= self.limits.min_run_keys && {
            let first = self.gathered.iter().next().map(|(key, _)| key.to_vec());
            let table = write.open_table(newest).map_err(failed)?;
            let appends = match (first, table.last().map_err(failed)?) {
                (Some(first), Some((last, _))) => first.as_slice() > last.value(),
                _ => false,
            };
            let small_beside_main = !self.any()
                && (gathered as u64) * MAIN_TABLE_SHARE < table.len().map_err(failed)?;
            !appends && !small_beside_main
        };
        if new_run {
            let number = self.runs.last().map_or(0, |run| run.number + 1);
            self.runs.push(Run::new(number));
        }
        let target = self.runs.last().map_or(KEYS, Run::table);
        let into_run = self.any();
        {
            let mut table = write.open_table(target).map_err(failed)?;
            for (key, state) in self.gathered.iter() {
                table.insert(key, &state.encode()[..]).map_err(failed)?;
                if into_run {
                    self.filter.insert(key);
                }
            }
        }
        self.gathered.clear();
        if new_run {
            tracing::debug!(
                keys = gathered,
                runs = self.runs.len(),
                filter_bytes = self.filter.bytes(),
                "wrote gathered key states as a run"
            );
        }
        Ok(())
    }

    /// Merges the runs and the main table into a new main table, written in key order,
    /// inside `write`; the gathering must have been written out. `None` when there are no
    /// runs.
    pub(super) fn merge(
        &mut self,
        write: &WriteTransaction,
    ) -> Result<Option<RunMerge>, StoreError> {
        debug_assert!(self.gathered.is_empty(), "spilled before a merge");
        if !self.any() {
            return Ok(None);
        }
        let runs = self.runs.len();
        if runs == 1
            && write
                .open_table(KEYS)
                .map_err(failed)?
                .is_empty()
                .map_err(failed)?
        {
            // A store that was empty: its one run becomes the main table as it is.
            let run = self.runs.pop().expect("one run");
            write.delete_table(KEYS).map_err(failed)?;
            write.rename_table(run.table(), KEYS).map_err(failed)?;
            self.filter.clear();
            let keys = write
                .open_table(KEYS)
                .map_err(failed)?
                .len()
                .map_err(failed)?;
            return Ok(Some(RunMerge { runs, keys }));
        }
        let keys = {
            let main = write.open_table(KEYS).map_err(failed)?;
            let runs = self
                .runs
                .iter()
                .map(|run| write.open_table(run.table()).map_err(failed))
                .collect::<Result<Vec<_>, _>>()?;
            let mut merged = write.open_table(MERGING).map_err(failed)?;
            // Oldest first: on a key held by several, the last of them wins.
            let sources = std::iter::once(&main)
                .chain(&runs)
                .map(|table| {
                    Ok(table
                        .iter()
                        .map_err(failed)?
                        .map(|entry| entry.map_err(failed)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            for entry in Newest::new(sources)? {
                let (key, state) = entry?;
                merged.insert(key.value(), state.value()).map_err(failed)?;
            }
            merged.len().map_err(failed)?
        };
        write.delete_table(KEYS).map_err(failed)?;
        for run in &self.runs {
            write.delete_table(run.table()).map_err(failed)?;
        }
        write.rename_table(MERGING, KEYS).map_err(failed)?;
        self.runs.clear();
        self.filter.clear();
        Ok(Some(RunMerge { runs, keys }))
    }
}

/// An entry a [`Newest`] merge reads: it needs the key alone.
trait Entry {
    fn key(&self) -> &[u8];
}

/// A table's entry, borrowed from its page.
impl Entry
    for (
        redb::AccessGuard<'_, &'static [u8]>,
        redb::AccessGuard<'_, &'static [u8]>,
    )
{
    fn key(&self) -> &[u8] {
        self.0.value()
    }
}

/// A key and its state, decoded.
impl Entry for (Vec<u8>, KeyState) {
    fn key(&self) -> &[u8] {
        &self.0
    }
}

/// Sources of entries in key order, oldest source first, merged into one in key order:
/// each key once, with the entry of the newest source holding it. Reads each source only
/// as far as the merge has gone.
struct Newest<E, I> {
    sources: Vec<I>,
    /// Each source's next entry, the least key on top.
    heads: BinaryHeap<Head<E>>,
}

/// A source's next entry. Ordered for [`BinaryHeap`]'s top to be the least key, and of
/// equal keys the newest source's.
struct Head<E> {
    entry: E,
    source: usize,
}

impl<E: Entry> Ord for Head<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .entry
            .key()
            .cmp(self.entry.key())
            .then(self.source.cmp(&other.source))
    }
}

impl<E: Entry> PartialOrd for Head<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E: Entry> PartialEq for Head<E> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<E: Entry> Eq for Head<E> {}

impl<E: Entry, I: Iterator<Item = Result<E, StoreError>>> Newest<E, I> {
    fn new(sources: Vec<I>) -> Result<Self, StoreError> {
        let mut newest = Self {
            heads: BinaryHeap::with_capacity(sources.len()),
            sources,
        };
        for source in 0..newest.sources.len() {
            newest.advance(source)?;
        }
        Ok(newest)
    }

    /// Puts `source`'s next entry, if any, among the heads.
    fn advance(&mut self, source: usize) -> Result<(), StoreError> {
        if let Some(entry) = self.sources[source].next().transpose()? {
            self.heads.push(Head { entry, source });
        }
        Ok(())
    }
}

impl<E: Entry, I: Iterator<Item = Result<E, StoreError>>> Iterator for Newest<E, I> {
    type Item = Result<E, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let newest = self.heads.pop()?;
        // A source's keys increase, so its next entry is not among the equal keys below.
        if let Err(error) = self.advance(newest.source) {
            return Some(Err(error));
        }
        loop {
            let Some(older) = self
                .heads
                .peek_mut()
                .filter(|older| older.entry.key() == newest.entry.key())
            else {
                break;
            };
            let older = PeekMut::pop(older).source;
            if let Err(error) = self.advance(older) {
                return Some(Err(error));
            }
        }
        Some(Ok(newest.entry))
    }
}
