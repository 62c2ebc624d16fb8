//! The key log: a cold sync's commits logged as one record each, their keys held in memory
//! until the walk is done, then merged into pages.

use super::*;

/// The keys logged and not merged into pages yet.
#[derive(Default)]
pub(super) struct KeyLog {
    pub(super) entries: KeyStates,
    /// The next log record's number.
    pub(super) next: u64,
}

/// How a commit writes its keys.
pub(super) enum KeyWrites {
    /// One record per key.
    Records(Entries),
    /// Pages and their runs.
    Pages(PageWrites<KeyState>),
    /// One `log` record; the keys stay in memory.
    Logged(Entries),
}

impl IdbStore {
    /// How `keys` are written: as pages when [`IdbStore::pageable`]; in a store that
    /// logs, merged into the pages at once when the log is empty and the commit ends the
    /// walk (`walk_done`: a delta that arrives once synced), else logged; else as records.
    pub(super) async fn key_writes(
        &self,
        keys: Entries,
        walk_done: bool,
    ) -> Result<KeyWrites, IdbError> {
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

    /// Merges the logged keys into the pages, `merge_slice` keys per transaction. The
    /// last one clears the log: a reload before it merges the whole log again, to the
    /// same pages.
    pub(super) async fn merge_log(&mut self) -> Result<(), IdbError> {
        self.settle().await?;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let Some(log) = &self.log else {
                return Ok(());
            };
            let slice = log.entries.after(after.as_deref(), self.merge_slice);
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
    pub(super) async fn read_log(&self) -> Result<KeyLog, IdbError> {
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
}
