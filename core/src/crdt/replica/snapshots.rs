//! Compaction snapshots: writing the pinset as chunks under a root, and loading a peer's
//! snapshot into an empty replica, chunk by chunk, before the DAG walk resumes: chunks of
//! versions merge as they arrive, the chunks naming merged blocks and the heads once every
//! chunk is in.

use super::*;

/// The snapshot being written: finished chunks and the one being filled.
#[derive(Default)]
pub(super) struct ChunkWriter {
    chunks: Vec<Cid>,
    chunk: SnapshotChunk,
    bytes: usize,
    keys: u64,
}

/// Snapshot entries merged per [`Replica::work`] turn. A chunk holds up to 1 MiB of them,
/// several thousand pins, and merging one whole held a browser page for tens of
/// milliseconds.
const CHUNK_ENTRIES_PER_TURN: usize = 2048;

impl<S: Store> Replica<S> {
    // ----- snapshots ----------------------------------------------------------------------

    /// Writes a snapshot of everything merged so far: chunks of the live versions and of
    /// the merged block ids, then a root naming the current heads. The blocks go to the
    /// store (serve them like delta blocks); returns the root's CID, `None` without heads.
    /// Pages through the store, so the whole set is never in memory at once.
    ///
    /// The replica must be synced: a loader stops its walks at the snapshot's merged
    /// blocks, so every block below them must be merged too.
    pub async fn create_snapshot(&mut self) -> Result<Option<Cid>, S::Error> {
        if self.heads.is_empty() {
            return Ok(None);
        }
        if !self.pending.is_empty() {
            return Err(ReplicaError::NotSynced {
                pending: self.pending.len(),
            });
        }
        let mut writer = ChunkWriter::default();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(cursor.as_deref(), 1024)
                .await
                .map_err(ReplicaError::Store)?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            for (key, state) in page {
                if let (false, Ok(key)) = (state.live.is_empty(), String::from_utf8(key)) {
                    let len = SnapshotChunk::entry_len(&key, &state.live);
                    self.flush_chunk_if_full(&mut writer, len).await?;
                    writer.keys += 1;
                    writer.chunk.entries.push((key, state.live));
                }
            }
        }
        let mut after = None;
        loop {
            let page = self
                .store
                .processed_after(after.as_ref(), 4096)
                .await
                .map_err(ReplicaError::Store)?;
            let Some(last) = page.last() else { break };
            after = Some(*last);
            for id in page {
                self.flush_chunk_if_full(&mut writer, SnapshotChunk::PROCESSED_LEN)
                    .await?;
                writer.chunk.processed.push(id);
            }
        }
        self.flush_chunk_if_full(&mut writer, usize::MAX).await?;
        let chunks = writer.chunks.len();
        let (links, indexes) = SnapshotLinks::build(writer.chunks, self.config.snapshot_fanout)
            .map_err(|max| ReplicaError::SnapshotTooLarge { chunks, max })?;
        let (cid, bytes) = SnapshotHeader {
            heads: self.heads(),
            keys: writer.keys,
            links,
        }
        .encode();
        let mut blocks: Vec<(BlockId, Vec<u8>)> = indexes
            .into_iter()
            .map(|(cid, bytes)| {
                let id = BlockId::from_cid(&cid).expect("snapshot indexes are dag-pb sha2-256");
                (id, bytes)
            })
            .collect();
        let id = BlockId::from_cid(&cid).expect("snapshot roots are dag-pb sha2-256");
        blocks.push((id, bytes));
        // Durable: the caller records and offers the root once this returns.
        self.commit_tx(Transaction {
            blocks,
            durable: true,
            ..Default::default()
        })
        .await?;
        Ok(Some(cid))
    }

    /// The stored blocks of snapshot `root`: the root, its index nodes and its chunks.
    /// Blocks the store lacks or cannot decode are left out.
    pub async fn snapshot_blocks(&self, root: &Cid) -> Result<Vec<BlockId>, S::Error> {
        let Ok(root_id) = BlockId::from_cid(root) else {
            return Ok(Vec::new());
        };
        let Some(bytes) = self
            .store
            .block(&root_id)
            .await
            .map_err(ReplicaError::Store)?
        else {
            return Ok(Vec::new());
        };
        let Ok(header) = SnapshotHeader::decode(&bytes) else {
            return Ok(Vec::new());
        };
        let mut cids = Vec::new();
        match &header.links {
            SnapshotLinks::Chunks(chunks) => cids.extend_from_slice(chunks),
            SnapshotLinks::Indexes(indexes) => {
                for index in indexes {
                    cids.push(*index);
                    let Ok(id) = BlockId::from_cid(index) else {
                        continue;
                    };
                    let stored = self.store.block(&id).await.map_err(ReplicaError::Store)?;
                    if let Some(Ok(index)) = stored.map(|b| SnapshotIndex::decode(&b)) {
                        cids.extend_from_slice(&index.chunks);
                    }
                }
            }
        }
        let mut ids = vec![root_id];
        ids.extend(cids.iter().filter_map(|cid| BlockId::from_cid(cid).ok()));
        Ok(ids)
    }

    /// Forgets the blocks of snapshot `old` that snapshot `kept` does not share (chunks
    /// are content-addressed, so two snapshots may hold the same one); returns how many.
    pub async fn remove_snapshot(&mut self, old: &Cid, kept: &Cid) -> Result<usize, S::Error> {
        let kept: std::collections::HashSet<BlockId> =
            self.snapshot_blocks(kept).await?.into_iter().collect();
        let removed: Vec<BlockId> = self
            .snapshot_blocks(old)
            .await?
            .into_iter()
            .filter(|id| !kept.contains(id))
            .collect();
        let count = removed.len();
        self.commit_tx(Transaction {
            blocks_removed: removed,
            ..Default::default()
        })
        .await?;
        Ok(count)
    }

    /// Stores the current chunk if `adding` more bytes would pass the chunk limit.
    pub(super) async fn flush_chunk_if_full(
        &mut self,
        writer: &mut ChunkWriter,
        adding: usize,
    ) -> Result<(), S::Error> {
        let limit = self.config.snapshot_chunk_bytes.min(MAX_CHUNK_BYTES);
        let empty = writer.chunk.entries.is_empty() && writer.chunk.processed.is_empty();
        if empty || writer.bytes.saturating_add(adding) <= limit {
            writer.bytes += adding.min(limit);
            return Ok(());
        }
        let (cid, bytes) = std::mem::take(&mut writer.chunk).encode();
        writer.chunks.push(cid);
        writer.bytes = adding.min(limit);
        let id = BlockId::from_cid(&cid).expect("snapshot chunks are dag-pb sha2-256");
        self.commit_tx(Transaction {
            blocks: vec![(id, bytes)],
            ..Default::default()
        })
        .await
    }

    /// Starts loading the snapshot `root` announced by `author`, instead of walking the
    /// whole DAG. Only a replica that holds nothing can load one (a snapshot leaves out
    /// removed versions, which a replica with history, or with part of an abandoned
    /// snapshot, may still hold). Head broadcasts
    /// received meanwhile are walked once the snapshot is in, from above it.
    pub async fn load_snapshot(
        &mut self,
        author: &PeerId,
        root: &Cid,
        now: u64,
    ) -> Result<(), S::Error> {
        if !self.config.trust.trusts(author) {
            self.stats.untrusted_snapshots += 1;
            return Ok(());
        }
        let merged = !self
            .store
            .processed_after(None, 1)
            .await
            .map_err(ReplicaError::Store)?
            .is_empty()
            || !self
                .store
                .scan(None, 1)
                .await
                .map_err(ReplicaError::Store)?
                .is_empty();
        if merged || !self.heads.is_empty() || self.snapshot_pending > 0 {
            return Err(ReplicaError::NotEmpty);
        }
        let Ok(id) = BlockId::from_cid(root) else {
            self.stats.invalid_blocks += 1;
            return Ok(());
        };
        let block = PendingBlock {
            kind: BlockKind::SnapshotRoot,
            cid: *root,
            root: *root,
            root_priority: 0,
            parent_priority: u64::MAX,
        };
        self.commit_tx(Transaction {
            pending_added: vec![block],
            ..Default::default()
        })
        .await?;
        self.enqueue(id, block);
        self.pump(now).await
    }

    pub(super) async fn apply_snapshot_root(
        &mut self,
        id: BlockId,
        bytes: &[u8],
    ) -> Result<(), S::Error> {
        let Ok(header) = SnapshotHeader::decode(bytes) else {
            return self.reject_block(id).await;
        };
        let (kind, links) = match header.links {
            SnapshotLinks::Chunks(links) => (BlockKind::SnapshotChunk, links),
            SnapshotLinks::Indexes(links) => (BlockKind::SnapshotIndex, links),
        };
        self.expand_snapshot_node(id, bytes, kind, &links).await
    }

    pub(super) async fn apply_snapshot_index(
        &mut self,
        id: BlockId,
        bytes: &[u8],
    ) -> Result<(), S::Error> {
        match SnapshotIndex::decode(bytes) {
            Ok(index) => {
                self.expand_snapshot_node(id, bytes, BlockKind::SnapshotChunk, &index.chunks)
                    .await
            }
            Err(_) => self.fail_snapshot().await,
        }
    }

    /// Replaces a pending root or index node by the `kind` blocks it links, in one
    /// transaction. A node linking nothing, or anything but sha2-256 dag-pb, is refused.
    pub(super) async fn expand_snapshot_node(
        &mut self,
        id: BlockId,
        bytes: &[u8],
        kind: BlockKind,
        links: &[Cid],
    ) -> Result<(), S::Error> {
        let node = self.pending[&id].block;
        let ids: Option<Vec<BlockId>> = links.iter().map(|c| BlockId::from_cid(c).ok()).collect();
        let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
            return if node.kind == BlockKind::SnapshotRoot {
                self.reject_block(id).await
            } else {
                self.fail_snapshot().await
            };
        };
        let blocks: Vec<PendingBlock> = links
            .iter()
            .map(|cid| PendingBlock {
                kind,
                cid: *cid,
                root: node.root,
                root_priority: 0,
                parent_priority: u64::MAX,
            })
            .collect();
        self.commit_tx(Transaction {
            blocks: vec![(id, bytes.to_vec())],
            pending_removed: vec![id],
            pending_added: blocks.clone(),
            ..Default::default()
        })
        .await?;
        // Children first, so that the count of snapshot blocks never drops to zero between.
        for (child, block) in ids.into_iter().zip(blocks) {
            if !self.pending.contains_key(&child) {
                self.enqueue(child, block);
            }
        }
        self.settle(&id);
        Ok(())
    }

    /// Holds a chunk that decodes, in memory, to be merged by [`Replica::work`]: at once if
    /// it holds versions alone, once every chunk is in if it names merged blocks. A
    /// malformed one abandons the snapshot. Chunks are never stored: a restart fetches the
    /// ones it had not merged again.
    pub(super) async fn hold_snapshot_chunk(
        &mut self,
        id: BlockId,
        bytes: &[u8],
    ) -> Result<(), S::Error> {
        let Ok(chunk) = SnapshotChunk::decode(bytes) else {
            return self.fail_snapshot().await;
        };
        self.mark_held(id);
        if chunk.processed.is_empty() {
            self.held_chunks.push_back((id, chunk));
        } else {
            self.held_last.push_back((id, chunk));
        }
        Ok(())
    }

    /// Whether a snapshot chunk waits for [`Replica::work`]: one of versions alone has
    /// arrived, or every chunk of the snapshot being loaded has.
    pub(super) fn has_snapshot_work(&self) -> bool {
        !self.held_chunks.is_empty() || self.all_chunks_held()
    }

    /// Whether every pending snapshot block is a held chunk, some naming merged blocks.
    fn all_chunks_held(&self) -> bool {
        !self.held_last.is_empty()
            && self.held_chunks.len() + self.held_last.len() == self.snapshot_pending
    }

    /// Merges up to [`CHUNK_ENTRIES_PER_TURN`] entries of the first held snapshot chunk, in
    /// one transaction (nothing unless [`Replica::has_snapshot_work`]); the rest wait for
    /// the next turn. The chunk's last entries go with what it names merged. The last
    /// chunk adopts the snapshot's heads, and the delta walks that waited for it resume;
    /// the root and index nodes go with it. A restart part-way finds the chunks not wholly
    /// merged still pending, and fetches and merges them again (merging is idempotent).
    pub(super) async fn merge_held_chunk(&mut self, now: u64) -> Result<(), S::Error> {
        let held = if self.held_chunks.is_empty() && self.all_chunks_held() {
            &mut self.held_last
        } else {
            &mut self.held_chunks
        };
        let Some((id, mut chunk)) = held.pop_front() else {
            return Ok(());
        };
        if chunk.entries.len() > CHUNK_ENTRIES_PER_TURN {
            let rest = chunk.entries.split_off(CHUNK_ENTRIES_PER_TURN);
            let entries = std::mem::replace(&mut chunk.entries, rest);
            held.push_front((id, chunk));
            let mut tx = Transaction::default();
            let events = self.merge_entries(entries, &mut tx).await?;
            self.store.commit(tx).await.map_err(ReplicaError::Store)?;
            self.outputs.extend(events);
            return Ok(());
        }
        let root = self.pending[&id].block.root;
        let mut tx = Transaction::default();
        let events = self.merge_entries(chunk.entries, &mut tx).await?;
        tx.processed = chunk.processed;
        tx.pending_removed.push(id);
        // The root and its indexes were settled when expanded: this chunk is all that is left.
        let last = self.snapshot_pending == 1;
        // A peer offers only the snapshots it makes: with the last chunk go the root and
        // the indexes, kept until then for a restart.
        if last {
            tx.blocks_removed = self.snapshot_blocks(&root).await?;
            let root_id = BlockId::from_cid(&root).expect("checked when loading");
            let header = self
                .store
                .block(&root_id)
                .await
                .map_err(ReplicaError::Store)?
                .and_then(|b| SnapshotHeader::decode(&b).ok())
                .expect("the root is stored before its chunks are fetched");
            tx.heads_added.clone_from(&header.heads);
            self.heads = header
                .heads
                .into_iter()
                .map(|(c, h)| (c.to_bytes(), (c, h)))
                .collect();
        }
        self.store.commit(tx).await.map_err(ReplicaError::Store)?;
        self.stats.snapshot_chunks += 1;
        self.stats.snapshots_loaded += u64::from(last);
        self.settle(&id);
        self.outputs.extend(events);
        self.pump(now).await
    }

    /// Merges snapshot `entries` into `tx`; the value changes they make, to emit once `tx`
    /// is committed.
    async fn merge_entries(
        &self,
        entries: Vec<(String, Vec<Version>)>,
        tx: &mut Transaction,
    ) -> Result<Vec<Output>, S::Error> {
        let mut events = Vec::new();
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_bytes()).collect();
        let states = self
            .store
            .key_states(&keys)
            .await
            .map_err(ReplicaError::Store)?;
        for ((key, versions), state) in entries.into_iter().zip(states) {
            let mut state = state.unwrap_or_default();
            let before = state.value().map(|v| v.value.clone());
            for version in versions {
                state.apply_element(version);
            }
            if let Some(after) = state.value().filter(|v| before.as_ref() != Some(&v.value)) {
                tx.live_keys += i64::from(before.is_none());
                events.push(Output::Put {
                    key: key.clone(),
                    value: after.value.clone(),
                    added: before.is_none(),
                });
            }
            tx.keys.push((key.into_bytes(), state));
        }
        Ok(events)
    }

    /// Drops every pending block of the snapshot being loaded, so that the replica syncs
    /// through the DAG instead. What it merged are versions the DAG holds too, and no block
    /// was marked merged yet, so the walk brings the rest, removals included.
    pub(super) async fn fail_snapshot(&mut self) -> Result<(), S::Error> {
        self.stats.invalid_blocks += 1;
        self.stats.failed_snapshots += 1;
        let ids: Vec<BlockId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.block.kind.is_snapshot())
            .map(|(id, _)| *id)
            .collect();
        self.held_chunks.clear();
        self.held_last.clear();
        for id in &ids {
            self.settle(id);
        }
        self.commit_tx(Transaction {
            pending_removed: ids,
            ..Default::default()
        })
        .await
    }
}
