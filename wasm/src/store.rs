//! Where a follower keeps its replica: in memory, or in IndexedDB to resume after a
//! reload. One type for both, so that the follower is compiled once.

use pinfold_core::crdt::{BlockId, KeyState, MemoryStore, Persisted, Store, Transaction};

use crate::idb::{IdbError, IdbStore};

pub enum FollowerStore {
    Memory(MemoryStore),
    IndexedDb(IdbStore),
}

macro_rules! each {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            FollowerStore::Memory($store) => Ok($call.await.unwrap_or_else(|never| match never {})),
            FollowerStore::IndexedDb($store) => $call.await,
        }
    };
}

impl Store for FollowerStore {
    type Error = IdbError;

    async fn load(&self) -> Result<Persisted, IdbError> {
        each!(self, s => s.load())
    }

    async fn key_state(&self, key: &[u8]) -> Result<Option<KeyState>, IdbError> {
        each!(self, s => s.key_state(key))
    }

    async fn key_states(&self, keys: &[&[u8]]) -> Result<Vec<Option<KeyState>>, IdbError> {
        each!(self, s => s.key_states(keys))
    }

    async fn is_processed(&self, block: &BlockId) -> Result<bool, IdbError> {
        each!(self, s => s.is_processed(block))
    }

    async fn block(&self, block: &BlockId) -> Result<Option<Vec<u8>>, IdbError> {
        each!(self, s => s.block(block))
    }

    async fn processed_after(
        &self,
        after: Option<&BlockId>,
        limit: usize,
    ) -> Result<Vec<BlockId>, IdbError> {
        each!(self, s => s.processed_after(after, limit))
    }

    async fn scan(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyState)>, IdbError> {
        each!(self, s => s.scan(after, limit))
    }

    async fn commit(&mut self, tx: Transaction) -> Result<(), IdbError> {
        each!(self, s => s.commit(tx))
    }

    async fn flush(&mut self) -> Result<(), IdbError> {
        each!(self, s => s.flush())
    }

    async fn live_keys(&self) -> Result<u64, IdbError> {
        each!(self, s => s.live_keys())
    }
}
