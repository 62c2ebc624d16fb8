//! Write groups: the own writes that came in together reach the store's disk with one flush
//! at the group's end, before the caller acknowledges them.

mod support;

use pinfold_core::crdt::{
    BatchConfig, BlockId, Config, KeyState, MemoryStore, Persisted, Replica, Store, Transaction,
};
use support::ready;

/// What the replica asked of the store: each commit's durability, and flushes.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    Commit { durable: bool },
    Flush,
}

/// A memory store that records the commits and flushes it is asked for.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    calls: Vec<Call>,
}

impl Store for Recording {
    type Error = std::convert::Infallible;

    async fn load(&self) -> Result<Persisted, Self::Error> {
        self.inner.load().await
    }
    async fn key_state(&self, key: &[u8]) -> Result<Option<KeyState>, Self::Error> {
        self.inner.key_state(key).await
    }
    async fn is_processed(&self, block: &BlockId) -> Result<bool, Self::Error> {
        self.inner.is_processed(block).await
    }
    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, Self::Error> {
        self.inner.block(block).await
    }
    async fn processed_after(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Vec<BlockId>, Self::Error> {
        self.inner.processed_after(after, limit).await
    }
    async fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, Self::Error> {
        self.inner.scan(after, limit).await
    }
    async fn commit(&mut self, tx: Transaction) -> Result<(), Self::Error> {
        self.calls.push(Call::Commit {
            durable: tx.durable,
        });
        self.inner.commit(tx).await
    }
    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.calls.push(Call::Flush);
        Ok(())
    }
}

fn replica(batch: BatchConfig) -> Replica<Recording> {
    let config = Config {
        batch,
        ..Config::default()
    };
    ready(Replica::open(Recording::default(), config)).unwrap()
}

fn put(replica: &mut Replica<Recording>, key: &str) {
    ready(replica.put(key, b"v".to_vec(), 1)).unwrap();
}

#[test]
fn an_unbatched_group_commits_one_durable_delta_at_its_end() {
    let mut replica = replica(BatchConfig::OFF);
    put(&mut replica, "/alone");
    assert_eq!(replica.store().calls, [Call::Commit { durable: true }]);

    replica.begin_write_group();
    for i in 0..10 {
        put(&mut replica, &format!("/k{i}"));
    }
    assert_eq!(
        replica.store().calls.len(),
        1,
        "nothing written inside the group"
    );
    ready(replica.end_write_group(1)).unwrap();
    assert_eq!(
        replica.store().calls[1..],
        [Call::Commit { durable: true }, Call::Flush]
    );
}

#[test]
fn a_batched_group_flushes_its_full_batches_at_its_end() {
    let mut replica = replica(BatchConfig::new(4, u64::MAX));
    replica.begin_write_group();
    for i in 0..10 {
        put(&mut replica, &format!("/k{i}"));
    }
    assert_eq!(
        replica.store().calls,
        [
            Call::Commit { durable: false },
            Call::Commit { durable: false }
        ],
        "two full batches, not yet on disk"
    );
    ready(replica.end_write_group(1)).unwrap();
    assert_eq!(replica.store().calls[2..], [Call::Flush]);
    assert_eq!(
        replica.stats().committed,
        2,
        "the last two writes wait in the batch"
    );
}

#[test]
fn ending_no_group_flushes_nothing() {
    let mut replica = replica(BatchConfig::OFF);
    ready(replica.end_write_group(1)).unwrap();
    assert!(replica.store().calls.is_empty());
}
