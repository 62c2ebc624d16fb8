//! Key states in pages: a commit of many keys in order into an empty key range writes them
//! as pages of [`PAGE_KEYS`] keys, and [`PageRun`]s say where they lie.

use super::*;

impl IdbStore {
    /// Up to `limit` keys and values of `table` within `range`, in key order.
    pub(super) async fn range(
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
    pub(super) async fn key_states_in_range(
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
    pub(super) async fn page_runs(&self) -> Result<BTreeMap<Vec<u8>, PageRun>, IdbError> {
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
    pub(super) async fn read_pages(&self, firsts: &[&[u8]]) -> Result<Vec<Entries>, IdbError> {
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
    pub(super) async fn paged_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, IdbError> {
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
    pub(super) async fn pageable(&self, keys: &[(Vec<u8>, KeyState)]) -> Result<bool, IdbError> {
        let (Some((first, _)), Some((last, _))) = (keys.first(), keys.last()) else {
            return Ok(false);
        };
        if keys.len() < self.page_min || !keys.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Ok(false);
        }
        // Runs do not overlap: the last one starting at or below `last` is the only one
        // that can reach into the range.
        let overlaps = run_at(&self.runs, last).is_some_and(|(_, run)| run.last >= *first);
        let logged = self
            .log
            .as_ref()
            .is_some_and(|log| log.entries.any_between(first, last));
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

    /// The pages and runs that hold `entries` (in increasing key order) merged into the
    /// stored pages.
    pub(super) async fn merge_pages(
        &self,
        entries: Entries,
    ) -> Result<PageWrites<KeyState>, IdbError> {
        let merge = PageMerge::plan(&self.runs, entries);
        let firsts: Vec<&[u8]> = merge.pages_to_read().collect();
        let read = self.read_pages(&firsts).await?;
        Ok(merge.apply(&self.runs, read, PAGE_KEYS))
    }

    pub(super) fn add_runs(&mut self, runs: Vec<PageRun>) {
        for run in runs {
            self.runs.insert(run.firsts[0].clone(), run);
        }
    }
}

/// The puts of a merge's pages and runs, in `write`.
pub(super) fn page_requests(
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
