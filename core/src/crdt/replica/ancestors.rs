//! Catching up in runs: a walk that goes below the heads it started from is behind by an
//! unknown number of deltas, and fetching them one by one costs a round trip each (a chain
//! of 1,000 missed deltas is 1,000 round trips). So the replica also asks one peer for the
//! block and its ancestors down to its own heads, and merges what comes back without
//! further requests. Blocks are checked against the hash the walk expects, as fetched
//! ones are; an answer can only save requests, never change what is merged.

use sha2::{Digest, Sha256};

use super::*;
use crate::codec::peer_request::{MAX_ANCESTOR_BYTES, MAX_KNOWN};

/// Deltas a walk must be behind by, judged from heights, before it asks for ancestors. A
/// few missed deltas (a dropped broadcast) cost a few round trips by single fetches, while
/// an answer would carry the same blocks a second time, beside those fetches: on a slow
/// link, with large batched deltas, that doubled traffic held up the walk it meant to
/// speed up.
const MIN_ANCESTORS_GAP: u64 = 8;

/// Wait after an ancestors request that brought nothing (no peer to ask, a peer that does
/// not answer them, or one that lacks the blocks) before making another.
const ANCESTORS_RETRY_MS: u64 = 1_000;

impl<S: Store> Replica<S> {
    /// Asks for `block`'s ancestors when it lies below the walk's root (a head's block links
    /// to this node's heads in the common case; its parents are where a gap shows) at least
    /// [`MIN_ANCESTORS_GAP`] deltas above this replica's other heads, no request is out (or the
    /// one out is older than a fetch timeout), and the last one was not empty or was a
    /// while ago.
    pub(super) fn ask_ancestors(&mut self, block: &PendingBlock, now: u64) {
        let limit = self.config.ancestors_per_request;
        if block.kind != BlockKind::Delta
            || block.parent_priority == u64::MAX
            || (block.parent_priority - 1).saturating_sub(self.height_below(&block.root))
                < MIN_ANCESTORS_GAP
            || limit == 0
            || self
                .ancestors_asked
                .is_some_and(|since| now < since + self.config.fetch_timeout_ms)
            || now < self.ancestors_retry_at
        {
            return;
        }
        self.ancestors_asked = Some(now);
        self.outputs.push_back(Output::FetchAncestors {
            from: block.cid,
            known: self
                .heads
                .values()
                .take(MAX_KNOWN)
                .map(|(c, _)| *c)
                .collect(),
            limit,
        });
    }

    /// The greatest height of the heads other than `root`: a replica with no heads adopts
    /// a walk's root as a head at once, which says nothing of what it holds below it.
    fn height_below(&self, root: &Cid) -> u64 {
        self.heads
            .values()
            .filter(|(cid, _)| cid != root)
            .map(|(_, height)| *height)
            .max()
            .unwrap_or(0)
    }

    /// No answer will come to the ancestors request: the walk goes on by single fetches,
    /// and asks again after [`ANCESTORS_RETRY_MS`].
    pub fn ancestors_unanswered(&mut self, now: u64) {
        self.ancestors_asked = None;
        self.ancestors_retry_at = now + ANCESTORS_RETRY_MS;
    }

    /// The answer to an [`Output::FetchAncestors`]: blocks in any order. Those the walk
    /// waits for are held for [`Replica::work`] to merge, the others when the walk reaches
    /// them; blocks nothing links to are forgotten once the walk ends.
    pub async fn receive_ancestors(
        &mut self,
        blocks: Vec<Vec<u8>>,
        now: u64,
    ) -> Result<(), S::Error> {
        if blocks.is_empty() {
            self.ancestors_unanswered(now);
            return self.pump(now).await;
        }
        self.ancestors_asked = None;
        let room = 2 * self.config.ancestors_per_request as usize;
        if self.prefetched.len() + blocks.len() > room {
            self.prefetched.clear();
        }
        let mut order = Vec::with_capacity(blocks.len());
        for bytes in blocks.into_iter().take(room) {
            let id = BlockId(Sha256::digest(&bytes).into());
            self.stats.ancestor_blocks += 1;
            order.push(id);
            self.prefetched.insert(id, bytes);
        }
        for id in order {
            let Some(pending) = self.pending.get(&id) else {
                continue;
            };
            let deferred = pending.block.kind == BlockKind::Delta && self.snapshot_pending > 0;
            if deferred || pending.state == FetchState::Held {
                continue;
            }
            if let Some(bytes) = self.prefetched.remove(&id) {
                self.take_block(id, bytes).await?;
            }
        }
        self.pump(now).await
    }

    /// Up to `limit` blocks this replica holds: `from` and its ancestors, breadth first,
    /// not going past `known` and stopping before [`MAX_ANCESTOR_BYTES`]. What a peer
    /// answers to an ancestors request.
    pub async fn ancestors(
        &self,
        from: &Cid,
        known: &[Cid],
        limit: u32,
    ) -> Result<Vec<Vec<u8>>, S::Error> {
        let known: HashSet<BlockId> = known
            .iter()
            .filter_map(|c| BlockId::from_cid(c).ok())
            .collect();
        let mut queue: VecDeque<BlockId> = BlockId::from_cid(from).into_iter().collect();
        let mut seen = HashSet::new();
        let mut blocks = Vec::new();
        let mut size = 0;
        while let Some(id) = queue.pop_front() {
            if blocks.len() >= limit as usize {
                break;
            }
            if known.contains(&id) || !seen.insert(id) {
                continue;
            }
            let Some(bytes) = self.store.block(&id).await.map_err(ReplicaError::Store)? else {
                continue;
            };
            if size + bytes.len() > MAX_ANCESTOR_BYTES {
                break;
            }
            if let Ok(node) = DeltaNode::decode(&bytes) {
                queue.extend(
                    node.parents
                        .iter()
                        .filter_map(|p| BlockId::from_cid(p).ok()),
                );
            }
            size += bytes.len();
            blocks.push(bytes);
        }
        Ok(blocks)
    }
}
