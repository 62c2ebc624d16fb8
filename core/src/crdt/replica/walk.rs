//! The DAG walk: fetching the blocks a broadcast or a parent names, checking them, and
//! merging each delta in one transaction (go-ds-crdt's `processNode`).

use super::*;

impl<S: Store> Replica<S> {
    /// Handles a fetched block. Blocks that were not requested are ignored; blocks that do
    /// not match their CID are dropped and requested again; blocks that are not valid delta
    /// nodes end their branch of the walk.
    pub async fn receive_block(
        &mut self,
        cid: &Cid,
        bytes: Vec<u8>,
        now: u64,
    ) -> Result<(), S::Error> {
        if verify_block(cid, &bytes).is_err() {
            if self.requested(cid).is_some() {
                self.stats.corrupt_blocks += 1;
            }
            return Ok(());
        }
        self.receive_hashed_block(cid, bytes, now).await
    }

    /// [`Replica::receive_block`] for bytes the caller computed `cid` from (bitswap's codec
    /// does so for every block it decodes): they are not hashed again.
    pub async fn receive_hashed_block(
        &mut self,
        cid: &Cid,
        bytes: Vec<u8>,
        now: u64,
    ) -> Result<(), S::Error> {
        let Some(id) = self.requested(cid) else {
            return Ok(());
        };
        self.handle_block(id, bytes).await?;
        self.pump(now).await
    }

    /// The id of `cid` if it was requested; counts it unsolicited otherwise.
    fn requested(&mut self, cid: &Cid) -> Option<BlockId> {
        let id = BlockId::from_cid(cid)
            .ok()
            .filter(|id| self.pending.contains_key(id));
        if id.is_none() {
            self.stats.unsolicited_blocks += 1;
        }
        id
    }

    /// The caller could not fetch `cid` (no provider, or its request failed).
    pub async fn block_unavailable(&mut self, cid: &Cid, now: u64) -> Result<(), S::Error> {
        if let Ok(id) = BlockId::from_cid(cid) {
            if matches!(self.pending.get(&id), Some(p) if matches!(p.state, FetchState::InFlight { .. }))
            {
                self.fetch_failed(id).await?;
            }
        }
        self.pump(now).await
    }

    // ----- the walk -----------------------------------------------------------------------

    pub(super) fn enqueue(&mut self, id: BlockId, block: PendingBlock) {
        if block.kind.is_snapshot() {
            self.snapshot_pending += 1;
        }
        self.pending.insert(
            id,
            Pending {
                block,
                state: FetchState::Queued,
                attempts: 0,
            },
        );
        self.queue.push_back(id);
    }

    pub(super) async fn is_processed(&self, id: &BlockId) -> Result<bool, S::Error> {
        self.store
            .is_processed(id)
            .await
            .map_err(ReplicaError::Store)
    }

    /// Requests queued blocks, up to the in-flight limit, in batches. Blocks the store
    /// already holds (a walk resumed after a restart) are merged without a request.
    pub(super) async fn pump(&mut self, now: u64) -> Result<(), S::Error> {
        let mut batch = Vec::new();
        while let Some(id) = self.queue.pop_front() {
            let Some(pending) = self.pending.get(&id) else {
                continue;
            };
            if pending.state != FetchState::Queued {
                continue;
            }
            if pending.block.kind == BlockKind::Delta && self.snapshot_pending > 0 {
                self.deferred.push(id);
                continue;
            }
            if let Some(bytes) = self.prefetched.remove(&id) {
                self.take_block(id, bytes).await?;
                continue;
            }
            if let Some(bytes) = self.store.block(&id).await.map_err(ReplicaError::Store)? {
                self.take_block(id, bytes).await?;
                continue;
            }
            // Chunks waiting to merge count against the snapshot's limit: a loader that
            // merges slower than it fetches holds at most that many.
            let (limit, busy) = if self.snapshot_pending > 0 {
                let limit = self.config.max_snapshot_blocks_in_flight.max(1);
                (limit, self.in_flight + self.held_chunks.len())
            } else {
                (self.config.max_in_flight, self.in_flight)
            };
            if busy >= limit {
                self.queue.push_front(id);
                break;
            }
            let pending = self.pending.get_mut(&id).expect("checked above");
            pending.state = FetchState::InFlight { since: now };
            pending.attempts += 1;
            self.in_flight += 1;
            self.requests.push_back((now, id));
            let block = pending.block;
            batch.push(block.cid);
            self.ask_ancestors(&block, now);
            if batch.len() >= self.config.fetch_batch {
                self.outputs
                    .push_back(Output::Fetch(std::mem::take(&mut batch)));
            }
        }
        if !batch.is_empty() {
            self.outputs.push_back(Output::Fetch(batch));
        }
        if self.pending.is_empty() {
            self.prefetched.clear();
        }
        Ok(())
    }

    /// A block the walk waits for whose bytes are here without a request of its own: a
    /// delta is held for a [`Replica::work`] turn, any other block is handled now.
    pub(super) async fn take_block(&mut self, id: BlockId, bytes: Vec<u8>) -> Result<(), S::Error> {
        if self.pending[&id].block.kind != BlockKind::Delta {
            return self.handle_block(id, bytes).await;
        }
        self.mark_held(id);
        self.held_deltas.push_back((id, bytes));
        Ok(())
    }

    /// Marks a pending block [`FetchState::Held`]: in memory, no longer in flight or parked.
    pub(super) fn mark_held(&mut self, id: BlockId) {
        let pending = self.pending.get_mut(&id).expect("caller checked");
        match pending.state {
            FetchState::InFlight { .. } => self.in_flight -= 1,
            FetchState::Parked => self.parked -= 1,
            FetchState::Queued | FetchState::Held => {}
        }
        pending.state = FetchState::Held;
    }

    /// Merges the first held delta still waiting (see [`Replica::take_block`]), if any.
    pub(super) async fn merge_held_delta(&mut self, now: u64) -> Result<(), S::Error> {
        while let Some((id, bytes)) = self.held_deltas.pop_front() {
            // Fetched meanwhile by a request of its own, and merged then.
            if matches!(self.pending.get(&id), Some(p) if p.state == FetchState::Held) {
                self.handle_block(id, bytes).await?;
                return self.pump(now).await;
            }
        }
        Ok(())
    }

    pub(super) fn settle(&mut self, id: &BlockId) -> Option<Pending> {
        let pending = self.pending.remove(id)?;
        if pending.block.kind.is_snapshot() {
            self.snapshot_pending -= 1;
            if self.snapshot_pending == 0 {
                self.queue.extend(self.deferred.drain(..));
            }
        }
        match pending.state {
            FetchState::InFlight { .. } => self.in_flight -= 1,
            FetchState::Parked => self.parked -= 1,
            FetchState::Queued | FetchState::Held => {}
        }
        Some(pending)
    }

    pub(super) async fn fetch_failed(&mut self, id: BlockId) -> Result<(), S::Error> {
        self.stats.fetch_failures += 1;
        let pending = *self.pending.get(&id).expect("caller checked");
        self.in_flight -= 1;
        if pending.attempts < self.config.max_fetch_attempts {
            self.pending.get_mut(&id).expect("present").state = FetchState::Queued;
            self.queue.push_back(id);
        } else if pending.block.parent_priority == u64::MAX {
            // A head that cannot be fetched and that no merged node links to left nothing
            // half-done: forget it.
            self.stats.unavailable_heads += 1;
            self.pending.get_mut(&id).expect("present").state = FetchState::Queued;
            self.settle(&id);
            self.commit_tx(Transaction {
                pending_removed: vec![id],
                ..Default::default()
            })
            .await?;
        } else {
            self.stats.parked_blocks += 1;
            self.parked += 1;
            self.pending.get_mut(&id).expect("present").state = FetchState::Parked;
        }
        Ok(())
    }

    /// A requested block arrived with the right hash: decode, check and merge it.
    pub(super) async fn handle_block(
        &mut self,
        id: BlockId,
        bytes: Vec<u8>,
    ) -> Result<(), S::Error> {
        let pending = self.pending[&id];
        match pending.block.kind {
            BlockKind::SnapshotRoot => return self.apply_snapshot_root(id, &bytes).await,
            BlockKind::SnapshotIndex => return self.apply_snapshot_index(id, &bytes).await,
            BlockKind::SnapshotChunk => return self.hold_snapshot_chunk(id, &bytes).await,
            BlockKind::Delta if self.snapshot_pending > 0 => {
                if let FetchState::InFlight { .. } = pending.state {
                    self.in_flight -= 1;
                }
                self.pending.get_mut(&id).expect("present").state = FetchState::Queued;
                self.deferred.push(id);
                return Ok(());
            }
            BlockKind::Delta => {}
        }
        if self.is_processed(&id).await? {
            // Merged since it was queued (it was in a loaded snapshot).
            self.settle(&id);
            return self.remove_pending(id).await;
        }
        let node = match DeltaNode::decode(&bytes) {
            Ok(node)
                if node.delta.priority > 0
                    && node.delta.priority <= MAX_PRIORITY
                    && node.delta.priority < pending.block.parent_priority =>
            {
                node
            }
            _ => return self.reject_block(id).await,
        };
        self.apply(id, bytes, node, pending.block, false).await
    }

    /// Drops a block that is not what its walk expects, and its branch.
    pub(super) async fn reject_block(&mut self, id: BlockId) -> Result<(), S::Error> {
        self.stats.invalid_blocks += 1;
        self.settle(&id);
        self.remove_pending(id).await
    }

    pub(super) async fn remove_pending(&mut self, id: BlockId) -> Result<(), S::Error> {
        self.commit_tx(Transaction {
            pending_removed: vec![id],
            ..Default::default()
        })
        .await
    }

    /// Merges one node in one transaction: its delta, its block, the head changes it
    /// causes, and the children still to walk (go-ds-crdt `processNode`). `own` says the
    /// node is this replica's write, which the store persists at once (see
    /// [`Transaction::durable`]).
    pub(super) async fn apply(
        &mut self,
        id: BlockId,
        bytes: Vec<u8>,
        node: DeltaNode,
        block: PendingBlock,
        own: bool,
    ) -> Result<(), S::Error> {
        let priority = node.delta.priority;
        let root = block.root;
        let root_priority = if block.root_priority == 0 {
            priority
        } else {
            block.root_priority
        };
        let mut heads = self.heads.clone();
        if heads.is_empty() && root == block.cid {
            // A replica without heads adopts a received head at once, so that its own
            // writes build on it rather than on an orphan branch (go-ds-crdt handleNext).
            heads.insert(root.to_bytes(), (root, root_priority));
        }
        let mut children = Vec::new();
        let mut root_is_head = false;
        if node.parents.is_empty() {
            heads.insert(root.to_bytes(), (root, root_priority));
            root_is_head = true;
        }
        let mut seen = HashSet::new();
        let mut linked = Vec::new();
        // Parents merged or on their way: walks rooted at them are covered by this node.
        let mut known_parents = Vec::new();
        for child in &node.parents {
            if !seen.insert(*child) {
                continue;
            }
            let Ok(child_id) = BlockId::from_cid(child) else {
                self.stats.invalid_blocks += 1;
                continue;
            };
            let processed = child_id == id || self.is_processed(&child_id).await?;
            let known = processed || self.pending.contains_key(&child_id);
            if known {
                known_parents.push(*child);
            }
            if heads.remove(&child.to_bytes()).is_some() {
                heads.insert(root.to_bytes(), (root, root_priority));
                root_is_head = true;
                if processed {
                    continue;
                }
            }
            if let Some(queued) = self.pending.get(&child_id) {
                if queued.block.parent_priority == u64::MAX {
                    // A head still being fetched is now an ancestor of this node: it may no
                    // longer be forgotten if it cannot be fetched (see `fetch_failed`).
                    linked.push(PendingBlock {
                        parent_priority: priority,
                        ..queued.block
                    });
                }
            }
            if known {
                if !root_is_head {
                    heads.insert(root.to_bytes(), (root, root_priority));
                    root_is_head = true;
                }
                continue;
            }
            children.push((
                child_id,
                PendingBlock {
                    kind: BlockKind::Delta,
                    cid: *child,
                    root,
                    root_priority,
                    parent_priority: priority,
                },
            ));
        }
        let root_key = root.to_bytes();
        if self.covered_roots.contains(&root) && !self.heads.contains_key(&root_key) {
            // A head already descends from this walk's root (see `covered_roots`).
            heads.remove(&root_key);
        }
        let was_pending = self.pending.contains_key(&id);
        if self.pending.len() + children.len() > self.config.max_pending + usize::from(was_pending)
        {
            // Too wide to walk now: keep the block for later, merge nothing.
            self.stats.over_capacity += 1;
            if let Some(p) = self.pending.get_mut(&id) {
                if let FetchState::InFlight { .. } = p.state {
                    self.in_flight -= 1;
                }
                if p.state != FetchState::Parked {
                    p.state = FetchState::Parked;
                    self.parked += 1;
                }
            }
            return Ok(());
        }

        let mut tx = Transaction {
            durable: own && !self.write_group,
            ..Default::default()
        };
        let mut events = Vec::new();
        self.merge(&node.delta, id, &mut tx, &mut events).await?;
        if self.config.keep_blocks {
            tx.blocks.push((id, bytes));
        }
        tx.processed.push(id);
        for (key, (cid, _)) in &self.heads {
            if !heads.contains_key(key) {
                tx.heads_removed.push(*cid);
            }
        }
        for (key, (cid, height)) in &heads {
            if self.heads.get(key) != Some(&(*cid, *height)) {
                tx.heads_added.push((*cid, *height));
            }
        }
        if was_pending {
            tx.pending_removed.push(id);
        }
        tx.pending_added = children.iter().map(|(_, b)| *b).collect();
        tx.pending_added.extend(linked.iter().copied());
        self.store.commit(tx).await.map_err(ReplicaError::Store)?;

        self.heads = heads;
        self.settle(&id);
        for (child_id, child) in children {
            self.enqueue(child_id, child);
        }
        if self.pending.is_empty() {
            // No walk left to cover: a root is never walked again once merged.
            self.covered_roots.clear();
        } else {
            self.covered_roots.extend(known_parents);
        }
        for block in linked {
            if let Some(queued) = BlockId::from_cid(&block.cid)
                .ok()
                .and_then(|id| self.pending.get_mut(&id))
            {
                queued.block = block;
            }
        }
        self.stats.merged += 1;
        self.outputs.extend(events);
        Ok(())
    }

    /// Applies a delta to the touched keys: tombstones first, then elements.
    pub(super) async fn merge(
        &mut self,
        delta: &Delta,
        id: BlockId,
        tx: &mut Transaction,
        events: &mut Vec<Output>,
    ) -> Result<(), S::Error> {
        let ops = delta
            .tombstones
            .iter()
            .map(|t| (t, true))
            .chain(delta.elements.iter().map(|e| (e, false)));
        let keys: BTreeSet<&str> = ops.clone().map(|(e, _)| e.key.as_str()).collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        let states = self
            .store
            .key_states(&keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>())
            .await
            .map_err(ReplicaError::Store)?;
        let mut touched: BTreeMap<&str, (Option<Vec<u8>>, KeyState)> = keys
            .into_iter()
            .zip(states)
            .map(|(key, state)| {
                let state = state.unwrap_or_default();
                (key, (state.value().map(|v| v.value.clone()), state))
            })
            .collect();
        for (element, is_tombstone) in ops {
            let key = element.key.as_str();
            let (_, state) = touched.get_mut(key).expect("read above");
            if is_tombstone {
                match BlockId::from_element_id(&element.id) {
                    Ok(block) => state.apply_tombstone(block),
                    // No version can carry a foreign id: the tombstone removes nothing.
                    Err(_) => continue,
                }
            } else {
                state.apply_element(Version {
                    block: id,
                    priority: delta.priority,
                    value: element.value.clone(),
                });
            }
        }
        for (key, (before, state)) in touched {
            let after = state.value().map(|v| &v.value);
            match (before, after) {
                (before, Some(after)) if before.as_ref() != Some(after) => {
                    tx.live_keys += i64::from(before.is_none());
                    events.push(Output::Put {
                        key: key.to_owned(),
                        value: after.clone(),
                        added: before.is_none(),
                    })
                }
                (Some(_), None) => {
                    tx.live_keys -= 1;
                    events.push(Output::Delete {
                        key: key.to_owned(),
                    })
                }
                _ => {}
            }
            tx.keys.push((key.as_bytes().to_vec(), state));
        }
        Ok(())
    }
}
