//! Merging a batch of key states into a store's pages, sans-IO: [`PageMerge::plan`] says
//! which stored pages the batch touches, the store reads them, and [`PageMerge::apply`]
//! gives back the pages and [`PageRun`]s to write. A store that pays per record written
//! (IndexedDB) merges many deltas' keys this way at once, where writing them would cost
//! one record per key.
//!
//! Pages never move: a page keeps its first key and grows, and splits into pages of
//! `page_keys` keys once it holds more than twice that. A key past a run's last key joins
//! that run's last page; a key before every run starts a new run. So runs never overlap.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::store::PageRun;

/// A store's runs of pages, each by its first page's first key.
pub type Runs = BTreeMap<Vec<u8>, PageRun>;

/// Keys and their values, in key order.
type Entries<V> = Vec<(Vec<u8>, V)>;

/// The run whose first key is the greatest at or below `key`: the only one whose range
/// can hold `key`.
pub fn run_at<'a>(runs: &'a Runs, key: &[u8]) -> Option<(&'a Vec<u8>, &'a PageRun)> {
    runs.range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
        .next_back()
}

/// The first key of the stored page whose range holds `key`.
pub fn page_of<'a>(runs: &'a Runs, key: &[u8]) -> Option<&'a [u8]> {
    run_at(runs, key).and_then(|(_, run)| run.page_of(key))
}

/// A batch of entries, planned against the runs they are merged into.
#[derive(Debug)]
pub struct PageMerge<V> {
    /// The entries each existing page takes, by the page's first key, with its run's.
    into_pages: BTreeMap<Vec<u8>, (Vec<u8>, Entries<V>)>,
    /// The entries before every run, which start a run of their own.
    fresh: Vec<(Vec<u8>, V)>,
}

/// What a merge writes: whole pages, and whole runs (each changed or new one).
#[derive(Debug)]
pub struct PageWrites<V> {
    /// Pages in key order, none empty; a page is stored under its first key.
    pub pages: Vec<Vec<(Vec<u8>, V)>>,
    /// Runs in key order; a run is stored under its first page's first key.
    pub runs: Vec<PageRun>,
}

impl<V> PageMerge<V> {
    /// Where each of `entries` (in strictly increasing key order) goes in `runs`.
    pub fn plan(runs: &Runs, entries: Vec<(Vec<u8>, V)>) -> Self {
        debug_assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
        let mut merge = Self {
            into_pages: BTreeMap::new(),
            fresh: Vec::new(),
        };
        for (key, value) in entries {
            let Some((run_first, run)) = run_at(runs, &key) else {
                merge.fresh.push((key, value));
                continue;
            };
            let page = run
                .page_of(&key)
                .or_else(|| run.firsts.last().map(Vec::as_slice))
                .expect("a stored run has pages");
            merge
                .into_pages
                .entry(page.to_vec())
                .or_insert_with(|| (run_first.clone(), Vec::new()))
                .1
                .push((key, value));
        }
        merge
    }

    /// The first keys of the stored pages [`PageMerge::apply`] needs, in key order.
    pub fn pages_to_read(&self) -> impl Iterator<Item = &[u8]> {
        self.into_pages.keys().map(Vec::as_slice)
    }

    /// The pages and runs to write, given the pages [`PageMerge::pages_to_read`] named,
    /// in its order. A batch's entry replaces a stored one with the same key.
    pub fn apply(
        self,
        runs: &Runs,
        read: Vec<Vec<(Vec<u8>, V)>>,
        page_keys: usize,
    ) -> PageWrites<V> {
        let page_keys = page_keys.max(1);
        let mut writes = PageWrites {
            pages: Vec::new(),
            runs: Vec::new(),
        };
        let mut changed: BTreeMap<Vec<u8>, PageRun> = BTreeMap::new();
        for ((_, (run_first, entries)), stored) in self.into_pages.into_iter().zip(read) {
            let run = changed
                .entry(run_first)
                .or_insert_with_key(|first| runs[first].clone());
            if let Some((last, _)) = entries.last() {
                if *last > run.last {
                    run.last = last.clone();
                }
            }
            let page = merge_by_key(entries, stored);
            if page.len() <= 2 * page_keys {
                writes.pages.push(page);
                continue;
            }
            let mut page = page.into_iter().peekable();
            let mut first = true;
            while page.peek().is_some() {
                let piece: Vec<_> = page.by_ref().take(page_keys).collect();
                if !std::mem::take(&mut first) {
                    run.firsts.push(piece[0].0.clone());
                }
                writes.pages.push(piece);
            }
        }
        for run in changed.values_mut() {
            run.firsts.sort_unstable();
        }
        if let Some((last, _)) = self.fresh.last() {
            let last = last.clone();
            let mut fresh = self.fresh.into_iter().peekable();
            let mut run = PageRun {
                firsts: Vec::new(),
                last,
            };
            while fresh.peek().is_some() {
                let page: Vec<_> = fresh.by_ref().take(page_keys).collect();
                run.firsts.push(page[0].0.clone());
                writes.pages.push(page);
            }
            writes.runs.push(run);
        }
        writes.runs.extend(changed.into_values());
        writes
    }
}

/// `newer` and `older`, each in key order, as one list in key order; a key in both keeps
/// its newer value.
pub fn merge_by_key<V>(newer: Entries<V>, older: Entries<V>) -> Entries<V> {
    let mut merged = Vec::with_capacity(newer.len() + older.len());
    let mut older = older.into_iter().peekable();
    for entry in newer {
        while let Some(kept) = older.next_if(|(key, _)| *key < entry.0) {
            merged.push(kept);
        }
        older.next_if(|(key, _)| *key == entry.0);
        merged.push(entry);
    }
    merged.extend(older);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Pages = BTreeMap<Vec<u8>, Vec<(Vec<u8>, u32)>>;

    fn key(n: u16) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    /// Merges `batch` as a store would: plan, read the pages named, write what comes back.
    fn merge_into(
        runs: &mut Runs,
        pages: &mut Pages,
        batch: &BTreeMap<u16, u32>,
        page_keys: usize,
    ) {
        let entries = batch.iter().map(|(&k, &v)| (key(k), v)).collect();
        let merge = PageMerge::plan(runs, entries);
        let read = merge
            .pages_to_read()
            .map(|first| pages[first].clone())
            .collect();
        let writes = merge.apply(runs, read, page_keys);
        for page in writes.pages {
            pages.insert(page[0].0.clone(), page);
        }
        for run in writes.runs {
            runs.insert(run.firsts[0].clone(), run);
        }
    }

    /// The runs and pages hold `model` exactly, in shape.
    fn check(runs: &Runs, pages: &Pages, model: &BTreeMap<u16, u32>, page_keys: usize) {
        let mut listed = Vec::new();
        let mut previous_last: Option<&Vec<u8>> = None;
        for (first, run) in runs {
            assert_eq!(first, &run.firsts[0]);
            assert!(run.firsts.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(
                previous_last.is_none_or(|last| last < first),
                "runs overlap"
            );
            for page_first in &run.firsts {
                let page = &pages[page_first];
                assert!(!page.is_empty() && page.len() <= 2 * page_keys);
                assert_eq!(&page[0].0, page_first);
                listed.extend(page.iter().cloned());
            }
            assert_eq!(&listed.last().unwrap().0, &run.last);
            previous_last = Some(&run.last);
        }
        let expected: Vec<_> = model.iter().map(|(&k, &v)| (key(k), v)).collect();
        assert_eq!(listed, expected);
        assert_eq!(
            pages.len(),
            runs.values().map(|run| run.firsts.len()).sum::<usize>()
        );
        for (&k, &v) in model {
            let page = &pages[page_of(runs, &key(k)).unwrap()];
            assert!(page.contains(&(key(k), v)));
        }
    }

    #[test]
    fn a_batch_into_no_runs_is_one_run_of_full_pages() {
        let (mut runs, mut pages) = (Runs::new(), Pages::new());
        let batch: BTreeMap<u16, u32> = (0..10).map(|n| (n * 2, 1)).collect();
        merge_into(&mut runs, &mut pages, &batch, 4);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[&key(0)].firsts, vec![key(0), key(8), key(16)]);
        assert_eq!(runs[&key(0)].last, key(18));
        check(&runs, &pages, &batch, 4);
    }

    #[test]
    fn keys_past_a_run_join_its_last_page_and_split_it() {
        let (mut runs, mut pages) = (Runs::new(), Pages::new());
        let mut model: BTreeMap<u16, u32> = (0..4).map(|n| (n, 1)).collect();
        merge_into(&mut runs, &mut pages, &model, 4);
        let later: BTreeMap<u16, u32> = (100..106).map(|n| (n, 2)).collect();
        merge_into(&mut runs, &mut pages, &later, 4);
        model.extend(later);
        assert_eq!(runs.len(), 1, "no new run");
        // 10 keys in a page of at most 8: split into pages of 4.
        assert_eq!(runs[&key(0)].firsts, vec![key(0), key(100), key(104)]);
        check(&runs, &pages, &model, 4);
    }

    proptest! {
        #[test]
        fn merged_batches_read_back_as_the_union_of_batches(
            batches in proptest::collection::vec(
                proptest::collection::btree_map(0u16..400, any::<u32>(), 0..60),
                1..8,
            ),
            page_keys in 1usize..6,
        ) {
            let (mut runs, mut pages) = (Runs::new(), Pages::new());
            let mut model = BTreeMap::new();
            for batch in &batches {
                merge_into(&mut runs, &mut pages, batch, page_keys);
                model.extend(batch.iter().map(|(&k, &v)| (k, v)));
                check(&runs, &pages, &model, page_keys);
            }
        }
    }
}
