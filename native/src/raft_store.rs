//! The Raft log, hard state and latest snapshot of a peer under Raft consensus, in their
//! own redb file beside the pinset store. Each [`RaftWrite`] is one transaction, on disk
//! when [`RaftStore::write`] returns, before the messages that follow it go out.

use std::path::{Path, PathBuf};

use pinfold_core::consensus::{RaftDisk, RaftWrite};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Index → encoded entry.
const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
/// `meta` and `snapshot` → their bytes.
const STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_state");

/// The file name in the peer's folder.
pub const RAFT_FILE: &str = "raft.redb";

#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    #[error("could not open the Raft store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("Raft store: {0}")]
    Database(#[from] redb::Error),
}

fn failed<E: Into<redb::Error>>(error: E) -> RaftStoreError {
    RaftStoreError::Database(error.into())
}

pub struct RaftStore {
    db: Database,
}

impl RaftStore {
    pub fn open(path: &Path) -> Result<Self, RaftStoreError> {
        let db = Database::create(path).map_err(|source| RaftStoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let write = db.begin_write().map_err(failed)?;
        write.open_table(LOG).map_err(failed)?;
        write.open_table(STATE).map_err(failed)?;
        write.commit().map_err(failed)?;
        Ok(Self { db })
    }

    /// Everything the writes so far left.
    pub fn load(&self) -> Result<RaftDisk, RaftStoreError> {
        let read = self.db.begin_read().map_err(failed)?;
        let log = read.open_table(LOG).map_err(failed)?;
        let state = read.open_table(STATE).map_err(failed)?;
        let value = |key: &str| -> Result<Option<Vec<u8>>, RaftStoreError> {
            Ok(state.get(key).map_err(failed)?.map(|v| v.value().to_vec()))
        };
        let mut entries = Vec::new();
        for row in log.iter().map_err(failed)? {
            let (_, bytes) = row.map_err(failed)?;
            entries.push(bytes.value().to_vec());
        }
        Ok(RaftDisk {
            meta: value("meta")?,
            snapshot: value("snapshot")?,
            entries,
        })
    }

    /// Writes `write` in one transaction, on disk when this returns.
    pub fn write(&self, write: &RaftWrite) -> Result<(), RaftStoreError> {
        let txn = self.db.begin_write().map_err(failed)?;
        {
            let mut log = txn.open_table(LOG).map_err(failed)?;
            if let Some(from) = write.truncate_from {
                log.retain_in(from.., |_, _| false).map_err(failed)?;
            }
            for (index, bytes) in &write.entries {
                log.insert(*index, bytes.as_slice()).map_err(failed)?;
            }
            if let Some(below) = write.compact_below {
                log.retain_in(..below, |_, _| false).map_err(failed)?;
            }
            let mut state = txn.open_table(STATE).map_err(failed)?;
            if let Some(meta) = &write.meta {
                state.insert("meta", meta.as_slice()).map_err(failed)?;
            }
            if let Some(snapshot) = &write.snapshot {
                state
                    .insert("snapshot", snapshot.as_slice())
                    .map_err(failed)?;
            }
        }
        txn.commit().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_read_back_in_order_truncated_and_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RAFT_FILE);
        let store = RaftStore::open(&path).unwrap();
        assert!(store.load().unwrap().is_empty());
        store
            .write(&RaftWrite {
                entries: (1..=5).map(|i| (i, vec![i as u8])).collect(),
                meta: Some(b"m1".to_vec()),
                ..Default::default()
            })
            .unwrap();
        store
            .write(&RaftWrite {
                truncate_from: Some(4),
                entries: vec![(4, vec![40])],
                compact_below: Some(2),
                snapshot: Some(b"s".to_vec()),
                ..Default::default()
            })
            .unwrap();
        drop(store);
        let disk = RaftStore::open(&path).unwrap().load().unwrap();
        assert_eq!(disk.entries, vec![vec![2], vec![3], vec![40]]);
        assert_eq!(disk.meta.as_deref(), Some(&b"m1"[..]));
        assert_eq!(disk.snapshot.as_deref(), Some(&b"s"[..]));
    }
}
