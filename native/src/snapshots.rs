//! The compaction snapshots a peer makes of its pinset and offers to new replicas (over
//! the status exchange), so that a browser follower loads the live pins in a few chunks
//! instead of walking the whole delta DAG.
//!
//! A snapshot is made when the replica is synced and its height grew by
//! `consensus.crdt.snapshot_every` deltas since the last one, at most once per
//! `consensus.crdt.snapshot_min_interval`. Only the latest is kept: the blocks of the one
//! it replaces are deleted, but for the chunks they share. The latest is recorded in
//! `snapshot.json` in the peer's folder, so that a restarted peer offers it again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cid::Cid;
use pinfold_core::codec::snapshot::SnapshotHeader;
use pinfold_core::codec::status::SnapshotOffer;
use pinfold_core::crdt::{BlockId, Replica, Store as _};
use serde::{Deserialize, Serialize};

use crate::store::RedbStore;

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

    fn offer(&self) -> Option<SnapshotOffer> {
        Some(SnapshotOffer {
            root: self.root.parse().ok()?,
            height: self.height,
            keys: self.keys,
        })
    }
}

/// When to make snapshots.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    /// Height growth between snapshots; 0 makes none.
    pub every: u64,
    pub min_interval: Duration,
}

/// The latest snapshot and when the next is due.
pub struct Snapshots {
    path: PathBuf,
    policy: SnapshotPolicy,
    latest: Option<SnapshotOffer>,
    made_at: Option<Instant>,
}

impl Snapshots {
    /// Reads the record in `dir`; a record whose root the store lacks is dropped.
    pub async fn open(
        dir: &Path,
        policy: SnapshotPolicy,
        replica: &Replica<RedbStore>,
    ) -> anyhow::Result<Self> {
        let mut latest = SnapshotRecord::read(dir)?.and_then(|r| r.offer());
        if let Some(offer) = latest {
            let id = BlockId::from_cid(&offer.root).ok();
            let stored = match id {
                Some(id) => replica.store().block(&id).await?.is_some(),
                None => false,
            };
            if !stored {
                tracing::warn!(root = %offer.root, "the recorded snapshot is not in the store: a new one will be made");
                latest = None;
            }
        }
        Ok(Self {
            path: dir.join(SNAPSHOT_FILE),
            policy,
            latest,
            made_at: None,
        })
    }

    /// The snapshot to offer.
    pub fn latest(&self) -> Option<SnapshotOffer> {
        self.latest
    }

    fn due(&self, replica: &Replica<RedbStore>) -> bool {
        // Checked on every tick: read the progress once, without copying the heads.
        let progress = replica.progress();
        if self.policy.every == 0 || progress.pending > 0 || progress.heads == 0 {
            return false;
        }
        let height = progress.height;
        let grown = match self.latest {
            Some(offer) => height >= offer.height.saturating_add(self.policy.every),
            None => height >= self.policy.every,
        };
        grown
            && self
                .made_at
                .is_none_or(|at| at.elapsed() >= self.policy.min_interval)
    }

    /// Makes a snapshot if one is due, replacing the latest; returns the new one.
    pub async fn refresh(
        &mut self,
        replica: &mut Replica<RedbStore>,
        now_ms: u64,
    ) -> anyhow::Result<Option<SnapshotOffer>> {
        if !self.due(replica) {
            return Ok(None);
        }
        let started = Instant::now();
        self.made_at = Some(started);
        let Some(root) = replica.create_snapshot().await? else {
            return Ok(None);
        };
        let offer = offer_of(replica, root).await?;
        let record = SnapshotRecord {
            root: root.to_string(),
            height: offer.height,
            keys: offer.keys,
            created_ms: now_ms,
        };
        crate::config::write_private(&self.path, &serde_json::to_vec_pretty(&record)?)?;
        let removed = match self.latest.replace(offer) {
            Some(old) if old.root != root => replica.remove_snapshot(&old.root, &root).await?,
            _ => 0,
        };
        tracing::info!(%root, height = offer.height, keys = offer.keys, removed_blocks = removed,
            elapsed_ms = started.elapsed().as_millis() as u64, "made a pinset snapshot");
        Ok(Some(offer))
    }
}

/// What the stored snapshot `root` says of itself.
async fn offer_of(replica: &Replica<RedbStore>, root: Cid) -> anyhow::Result<SnapshotOffer> {
    let id = BlockId::from_cid(&root)?;
    let bytes = replica
        .store()
        .block(&id)
        .await?
        .context("the snapshot just made is not in the store")?;
    let header = SnapshotHeader::decode(&bytes)?;
    Ok(SnapshotOffer {
        root,
        height: header.heads.iter().map(|(_, h)| *h).max().unwrap_or(0),
        keys: header.keys,
    })
}
