//! Local writes: puts and deletes gather in a batch, which becomes one delta when it is
//! full, old enough, or committed.

use super::*;

/// The local writes not yet committed.
#[derive(Default)]
pub(super) struct Batch {
    delta: Delta,
    /// Position of each key's put in `delta.elements`: a key is put at most once per batch.
    puts: HashMap<String, usize>,
    started_at: Option<u64>,
    bytes: usize,
}

impl Batch {
    pub(super) fn items(&self) -> usize {
        self.delta.elements.len() + self.delta.tombstones.len()
    }

    pub(super) fn push_put(&mut self, element: Element, now: u64) {
        self.remove_put(&element.key);
        self.bytes += field_len(&element);
        self.started_at.get_or_insert(now);
        self.puts
            .insert(element.key.clone(), self.delta.elements.len());
        self.delta.elements.push(element);
    }

    pub(super) fn push_tombstone(&mut self, tombstone: Element, now: u64) {
        self.bytes += field_len(&tombstone);
        self.started_at.get_or_insert(now);
        self.delta.tombstones.push(tombstone);
    }

    /// Drops the pending put of `key`; returns whether there was one.
    pub(super) fn remove_put(&mut self, key: &str) -> bool {
        let Some(at) = self.puts.remove(key) else {
            return false;
        };
        let removed = self.delta.elements.swap_remove(at);
        self.bytes -= field_len(&removed);
        if let Some(moved) = self.delta.elements.get(at) {
            self.puts.insert(moved.key.clone(), at);
        }
        true
    }
}

/// Bytes an element adds to an encoded delta (tag, length, message).
fn field_len(element: &Element) -> usize {
    let len = element.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

impl<S: Store> Replica<S> {
    // ----- local writes -------------------------------------------------------------------

    /// Sets `key` to `value`. Without batching the write is committed (and broadcast) now;
    /// with batching it joins the current batch.
    pub async fn put(&mut self, key: &str, value: Vec<u8>, now: u64) -> Result<(), S::Error> {
        let element = Element {
            key: key.to_owned(),
            id: String::new(),
            value,
        };
        let len = field_len(&element);
        let limit = self.config.batch.max_delta_bytes;
        if len + 16 > limit {
            return Err(ReplicaError::ValueTooLarge {
                key: key.to_owned(),
                len: element.value.len(),
                limit,
            });
        }
        if self.batch.bytes + len + 16 > limit {
            self.commit(now).await?;
        }
        self.batch.push_put(element, now);
        self.commit_if_full(now).await
    }

    /// Removes `key`: tombstones every version this replica knows. Returns false when there
    /// was nothing to remove (then nothing is written, as in go-ds-crdt).
    pub async fn delete(&mut self, key: &str, now: u64) -> Result<bool, S::Error> {
        let had_batched_put = self.batch.remove_put(key);
        let state = self.key_state(key).await?.unwrap_or_default();
        let already: HashSet<&str> = self
            .batch
            .delta
            .tombstones
            .iter()
            .filter(|t| t.key == key)
            .map(|t| t.id.as_str())
            .collect();
        let new: Vec<Element> = state
            .live_blocks()
            .map(|b| b.to_element_id())
            .filter(|id| !already.contains(id.as_str()))
            .map(|id| Element {
                key: key.to_owned(),
                id,
                value: Vec::new(),
            })
            .collect();
        if new.is_empty() {
            return Ok(had_batched_put);
        }
        let bytes: usize = new.iter().map(field_len).sum();
        if self.batch.bytes + bytes + 16 > self.config.batch.max_delta_bytes {
            self.commit(now).await?;
        }
        for tombstone in new {
            self.batch.push_tombstone(tombstone, now);
        }
        self.commit_if_full(now).await?;
        Ok(true)
    }

    pub(super) async fn commit_if_full(&mut self, now: u64) -> Result<(), S::Error> {
        let batch = self.config.batch;
        let full = if batch.is_on() {
            self.batch.items() >= batch.max_items
        } else {
            !self.write_group
        };
        if full {
            self.commit(now).await?;
        }
        Ok(())
    }

    /// Writes the batched writes as one delta node on top of the current heads, merges it
    /// and broadcasts it. Returns the node's CID, or `None` if there was nothing to write.
    pub async fn commit(&mut self, now: u64) -> Result<Option<Cid>, S::Error> {
        if self.batch.items() == 0 {
            return Ok(None);
        }
        let mut delta = std::mem::take(&mut self.batch).delta;
        delta.priority = self.height() + 1;
        let node = DeltaNode {
            delta,
            parents: self.heads.values().map(|(cid, _)| *cid).collect(),
        };
        let (cid, bytes) = node.encode();
        let id = BlockId::from_cid(&cid).expect("own nodes are dag-pb sha2-256");
        let own = PendingBlock {
            kind: BlockKind::Delta,
            cid,
            root: cid,
            root_priority: node.delta.priority,
            parent_priority: u64::MAX,
        };
        self.apply(id, bytes, node, own, true).await?;
        self.stats.committed += 1;
        self.outputs
            .push_back(Output::Broadcast(encode_broadcast(&[cid])));
        self.pump(now).await?;
        Ok(Some(cid))
    }

    /// Starts a write group: writes that came in together (a peer's queued API requests).
    /// Without batching, the group's puts and deletes become one delta when it ends,
    /// instead of one delta each (more only past `max_delta_bytes`); with batching, they
    /// join batches as usual. Either way the deltas committed in the group reach the disk
    /// with one flush at its end: until then a crash may lose them, so the caller
    /// acknowledges the writes only once [`Replica::end_write_group`] has returned.
    pub fn begin_write_group(&mut self) {
        self.write_group = true;
    }

    /// Ends the write group: commits its delta (without batching) and flushes the store.
    /// Once this returns, every write of the group that is committed is on disk.
    pub async fn end_write_group(&mut self, now: u64) -> Result<(), S::Error> {
        if !std::mem::take(&mut self.write_group) {
            return Ok(());
        }
        if !self.config.batch.is_on() {
            self.commit(now).await?;
        }
        self.store.flush().await.map_err(ReplicaError::Store)
    }

    /// Commits the batch once it is older than the batching's `max_age_ms`.
    pub(super) async fn commit_if_old(&mut self, now: u64) -> Result<(), S::Error> {
        let batch = self.config.batch;
        if let Some(started) = self.batch.started_at {
            if batch.is_on() && now.saturating_sub(started) >= batch.max_age_ms {
                self.commit(now).await?;
            }
        }
        Ok(())
    }
}
