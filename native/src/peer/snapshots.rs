//! The record of the latest compaction snapshot a peer made of its pinset
//! (`snapshot.json` in the peer's folder), so that a restarted peer offers it again. When
//! snapshots are made and offered is the node's (see [`pinfold_core::node`]).

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The record of the latest snapshot, in the peer's folder.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub root: String,
    /// The height of the heads it was taken at, and its keys.
    pub height: u64,
    pub keys: u64,
    /// When it was made (Unix milliseconds).
    pub created_ms: u64,
}

impl SnapshotRecord {
    /// The record in `dir`, if there is one.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a snapshot record; delete it and a new snapshot is made",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
        }
    }

    /// Records this snapshot as the latest in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        crate::config::write_private(&dir.join(SNAPSHOT_FILE), &serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}
