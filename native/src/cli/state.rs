//! `pinfold service state export|import|crdt info|cleanup`: a stopped peer's pinset as
//! newline-delimited pins in ipfs-cluster's pin JSON, as `ipfs-cluster-service state
//! export/import` move it, and what its CRDT holds. An import writes the pins as this peer's
//! own deltas; the other peers take them when the daemon next runs, if they trust this peer.
//! `cleanup` moves the store aside (after damage, say), for the peer to sync it again.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use pinfold_core::crdt::{self, BatchConfig, Replica};
use pinfold_core::pin::Pin;

use crate::config::{CONFIG_FILE, PINSET_FILE};
use crate::peer::now_ms;
use crate::peer::snapshots::SnapshotRecord;
use crate::store::{Compaction, RedbStore, StoreError, TableBytes};
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
    // The journal goes with it: a damaged store was not opened, so its journal not replayed.
    let journal = RedbStore::journal_path(&path);
    if journal.exists() {
        let to = RedbStore::journal_path(&moved);
        std::fs::rename(&journal, &to)
            .with_context(|| format!("could not move {} to {}", journal.display(), to.display()))?;
    }
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

/// Where `state import` reads its pins from.
pub enum ImportSource {
    /// A file, read twice: checked whole, then imported pin by pin, so that an import's
    /// memory does not grow with the pinset (a Go cluster's export may hold tens of
    /// millions of pins).
    File(PathBuf),
    /// A stream read once (standard input): its pins are held until the last is checked.
    Stream(Box<dyn BufRead>),
}

/// What `state import` did.
pub struct Imported {
    pub pins: usize,
    /// The store's compaction after the import, when its file had 64 MiB or more free.
    pub compaction: Option<Compaction>,
}

/// Adds every pin read (one JSON object per line; blank lines skipped) to the pinset;
/// returns how many. A line that is not a pin stops the import before anything is written.
/// Under Raft only before the peer's first start: the pins then start the new cluster.
/// Its deltas are one write group: flushed to disk every few seconds and at the end, not
/// once per delta. The store is then compacted if 64 MiB or more of its file is free.
pub async fn import(dir: &Path, source: ImportSource) -> anyhow::Result<Imported> {
    let open_file = |path: &Path| -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        Ok(std::io::BufReader::new(file))
    };
    let (read_again, held) = match source {
        ImportSource::File(path) => {
            for pin in read_pins(open_file(&path)?) {
                pin?;
            }
            (Some(path), Vec::new())
        }
        ImportSource::Stream(input) => (None, read_pins(input).collect::<Result<_, _>>()?),
    };
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
    replica.begin_write_group();
    for pin in &held {
        add_pin(&mut replica, pin).await?;
    }
    let mut count = held.len();
    if let Some(path) = read_again {
        for pin in read_pins(open_file(&path)?) {
            let pin =
                pin.with_context(|| format!("{} changed during the import", path.display()))?;
            add_pin(&mut replica, &pin).await?;
            count += 1;
        }
    }
    replica.commit(now_ms()).await?;
    replica.end_write_group(now_ms()).await?;
    let compaction = replica.into_store().compact_after_import()?;
    Ok(Imported {
        pins: count,
        compaction,
    })
}

/// Adds `pin` to a stopped peer's replica, whose outputs (the pins' events, the deltas'
/// broadcasts) go nowhere: the daemon broadcasts its heads when it runs.
async fn add_pin(replica: &mut Replica<RedbStore>, pin: &Pin) -> anyhow::Result<()> {
    replica.add_pin(pin, now_ms()).await?;
    while replica.poll_output().is_some() {}
    Ok(())
}

/// The pins of `input`, one JSON object per line, blank lines skipped; an error names the
/// line that is not a pin.
fn read_pins(input: impl BufRead) -> impl Iterator<Item = anyhow::Result<Pin>> {
    input
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.as_ref().is_ok_and(|l| l.trim().is_empty()))
        .map(|(n, line)| {
            serde_json::from_str(&line?)
                .with_context(|| format!("line {} is not a pin in ipfs-cluster's JSON", n + 1))
        })
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
    /// What each of the store's tables takes, largest first.
    pub tables: Vec<TableBytes>,
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
        tables: replica.store().table_bytes()?,
    })
}
