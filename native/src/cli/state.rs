//! `pinfold service state export|import|crdt info|cleanup`: a stopped peer's pinset as
//! newline-delimited pins in ipfs-cluster's pin JSON, as `ipfs-cluster-service state
//! export/import` move it, and what its CRDT holds. An import writes the pins as this peer's
//! own deltas; the other peers take them when the daemon next runs, if they trust this peer.
//! `cleanup` moves the store aside (after damage, say), for the peer to sync it again.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{bail, Context as _};
use pinfold_core::crdt::{self, BatchConfig, Replica};
use pinfold_core::pin::Pin;

use crate::config::{CONFIG_FILE, PINSET_FILE};
use crate::peer::now_ms;
use crate::peer::snapshots::SnapshotRecord;
use crate::store::{RedbStore, StoreError};
use pinfold_core::node::for_each_page;

/// Pins per delta written by an import.
const IMPORT_BATCH: usize = 1000;

/// Asks on the terminal whether to move `dir`'s pinset store aside; refuses without one.
pub fn confirm_cleanup(dir: &Path) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("`state cleanup` moves the pinset store aside: pass --force to do it without a terminal to confirm on");
    }
    eprint!(
        "The pinset store in {} is going to be moved aside. Continue? [y/n]: ",
        dir.display()
    );
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Moves the pinset store of the stopped peer in `dir` aside, to
/// `<file>.<unix seconds>.bak` (Go's `state cleanup` deletes it; this keeps it): where it
/// went, or `None` when there was none. Refused while the daemon holds the store.
pub fn cleanup(dir: &Path) -> anyhow::Result<Option<std::path::PathBuf>> {
    let path = dir.join(PINSET_FILE);
    if !path.exists() {
        return Ok(None);
    }
    match RedbStore::open(&path) {
        // A damaged store is what this is for; an undamaged one is closed again at once.
        Ok(_) | Err(StoreError::Damaged { .. }) => {}
        Err(StoreError::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        }) => bail!(
            "{} is in use: stop `pinfold service daemon` first",
            path.display()
        ),
        Err(other) => tracing::warn!(%other, "moving the pinset store aside"),
    }
    let moved = path.with_file_name(format!("{PINSET_FILE}.{}.bak", now_ms() / 1000));
    std::fs::rename(&path, &moved)
        .with_context(|| format!("could not move {} to {}", path.display(), moved.display()))?;
    Ok(Some(moved))
}

async fn open(dir: &Path) -> anyhow::Result<Replica<RedbStore>> {
    if !dir.join(CONFIG_FILE).exists() {
        bail!(
            "{} holds no {CONFIG_FILE}: is it a pinfold peer's folder? (pass --config, or run `pinfold service init`)",
            dir.display()
        );
    }
    let path = dir.join(PINSET_FILE);
    let store = RedbStore::open(&path).with_context(|| {
        format!(
            "is `pinfold service daemon` running on {}? stop it first",
            dir.display()
        )
    })?;
    let config = crdt::Config {
        batch: BatchConfig::new(IMPORT_BATCH, u64::MAX),
        ..crdt::Config::default()
    };
    Ok(Replica::open(store, config).await?)
}

/// Writes every pin, one JSON object per line; returns how many.
pub async fn export(dir: &Path, out: &mut impl Write) -> anyhow::Result<usize> {
    let replica = open(dir).await?;
    let count = for_each_page(&replica, |page| {
        for pin in page {
            serde_json::to_writer(&mut *out, pin)?;
            writeln!(out)?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?;
    out.flush()?;
    Ok(count)
}

/// Adds every pin read (one JSON object per line; blank lines skipped) to the pinset;
/// returns how many. A line that is not a pin stops the import before anything is written.
/// Under Raft only before the peer's first start: the pins then start the new cluster.
pub async fn import(dir: &Path, input: impl BufRead) -> anyhow::Result<usize> {
    let mut pins: Vec<Pin> = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let pin = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not a pin in ipfs-cluster's JSON", n + 1))?;
        pins.push(pin);
    }
    let raft = dir.join(crate::raft_store::RAFT_FILE);
    if raft.exists()
        && !crate::raft_store::RaftStore::open(&raft)?
            .load()?
            .is_empty()
    {
        anyhow::bail!(
            "this peer runs Raft consensus and its Raft log holds the pinset already: import \
             into a new cluster's first peer before its first start (every peer of its \
             init_peerset needs the same import), or pin through a running peer"
        );
    }
    let mut replica = open(dir).await?;
    for pin in &pins {
        replica.add_pin(pin, now_ms()).await?;
    }
    replica.commit(now_ms()).await?;
    Ok(pins.len())
}

/// Where a stopped peer's CRDT stands: its heads and what its store holds.
#[derive(Debug, serde::Serialize)]
pub struct CrdtInfo {
    /// Head CIDs with their heights.
    pub heads: Vec<(String, u64)>,
    /// The highest head's height.
    pub height: u64,
    /// Blocks stored (deltas and snapshot chunks), and those merged.
    pub blocks: u64,
    pub processed: u64,
    /// Keys written (pins and tombstones).
    pub keys: u64,
    /// Blocks known of but not fetched or merged yet.
    pub pending: u64,
    /// The snapshot this peer offers to new replicas, if it made one.
    pub snapshot: Option<SnapshotRecord>,
}

pub async fn crdt_info(dir: &Path) -> anyhow::Result<CrdtInfo> {
    let replica = open(dir).await?;
    let counts = replica.store().counts()?;
    let heads: Vec<(String, u64)> = replica
        .heads()
        .into_iter()
        .map(|(cid, height)| (cid.to_string(), height))
        .collect();
    Ok(CrdtInfo {
        height: heads.iter().map(|(_, h)| *h).max().unwrap_or(0),
        heads,
        blocks: counts.blocks,
        processed: counts.processed,
        keys: counts.keys,
        pending: counts.pending,
        snapshot: SnapshotRecord::read(dir)?,
    })
}
