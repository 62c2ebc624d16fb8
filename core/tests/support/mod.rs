//! A simulated cluster for replica tests: replicas on memory stores, and a network that
//! drops, duplicates, delays and reorders broadcasts and block deliveries, and partitions.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cid::Cid;
use libp2p_identity::PeerId;
use pinfold_core::crdt::{BlockId, Config, MemoryStore, Output, Replica, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs a future that never waits (memory stores answer at once).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a memory-store replica never waits"),
    }
}

/// A peer id made from a number.
pub fn peer(n: u64) -> PeerId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(n.to_be_bytes());
    PeerId::from_multihash(multihash::Multihash::wrap(0x12, &digest).unwrap()).unwrap()
}

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Probability that one delivery is lost.
    pub drop: f64,
    /// Probability that one delivery arrives twice.
    pub duplicate: f64,
    /// Deliveries take 1..=max_delay ms, so they overtake each other.
    pub max_delay: u64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: 1,
    };
}

#[derive(Debug)]
enum Message {
    Broadcast { from: usize, data: Vec<u8> },
    Block { cid: Cid, bytes: Vec<u8> },
    Unavailable { cid: Cid },
    Ancestors { blocks: Vec<Vec<u8>> },
}

pub struct Sim {
    pub replicas: Vec<Replica<MemoryStore>>,
    pub peers: Vec<PeerId>,
    /// Values each replica reported through Put/Delete outputs.
    pub observed: Vec<BTreeMap<String, Vec<u8>>>,
    pub now: u64,
    pub rng: StdRng,
    pub faults: Faults,
    /// Partition group of each replica; messages only flow within a group.
    pub groups: Vec<usize>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    messages: BTreeMap<u64, Message>,
    seq: u64,
}

impl Sim {
    pub fn new(configs: Vec<Config>, seed: u64) -> Self {
        let n = configs.len();
        let replicas = configs
            .into_iter()
            .map(|config| ready(Replica::open(MemoryStore::new(), config)).unwrap())
            .collect();
        Self {
            replicas,
            peers: (0..n as u64).map(peer).collect(),
            observed: vec![BTreeMap::new(); n],
            now: 1,
            rng: StdRng::seed_from_u64(seed),
            faults: Faults::NONE,
            groups: vec![0; n],
            queue: BinaryHeap::new(),
            messages: BTreeMap::new(),
            seq: 0,
        }
    }

    pub fn put(&mut self, r: usize, key: &str, value: &[u8]) {
        ready(self.replicas[r].put(key, value.to_vec(), self.now)).unwrap();
        self.drain(r);
    }

    pub fn delete(&mut self, r: usize, key: &str) -> bool {
        let removed = ready(self.replicas[r].delete(key, self.now)).unwrap();
        self.drain(r);
        removed
    }

    pub fn commit(&mut self, r: usize) {
        ready(self.replicas[r].commit(self.now)).unwrap();
        self.drain(r);
    }

    fn send(&mut self, to: usize, message: Message) {
        let faults = self.faults;
        if self.rng.gen_bool(faults.drop) {
            return;
        }
        let copies = if self.rng.gen_bool(faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.gen_range(1..=faults.max_delay.max(1));
            self.seq += 1;
            let copy = match &message {
                Message::Broadcast { from, data } => Message::Broadcast {
                    from: *from,
                    data: data.clone(),
                },
                Message::Block { cid, bytes } => Message::Block {
                    cid: *cid,
                    bytes: bytes.clone(),
                },
                Message::Unavailable { cid } => Message::Unavailable { cid: *cid },
                Message::Ancestors { blocks } => Message::Ancestors {
                    blocks: blocks.clone(),
                },
            };
            self.messages.insert(self.seq, copy);
            self.queue.push(Reverse((at, self.seq, to)));
        }
    }

    /// Routes replica `r`'s outputs into the network.
    pub fn drain(&mut self, r: usize) {
        while self.replicas[r].has_work() {
            ready(self.replicas[r].work(self.now)).unwrap();
        }
        while let Some(output) = self.replicas[r].poll_output() {
            match output {
                Output::Broadcast(data) => {
                    for to in 0..self.replicas.len() {
                        if to != r && self.groups[to] == self.groups[r] {
                            self.send(
                                to,
                                Message::Broadcast {
                                    from: r,
                                    data: data.clone(),
                                },
                            );
                        }
                    }
                }
                Output::Fetch(cids) => {
                    for cid in cids {
                        let id = BlockId::from_cid(&cid).unwrap();
                        let provider = (0..self.replicas.len()).find_map(|p| {
                            (p != r && self.groups[p] == self.groups[r])
                                .then(|| ready(self.replicas[p].store().block(&id)).unwrap())
                                .flatten()
                        });
                        match provider {
                            Some(bytes) => self.send(r, Message::Block { cid, bytes }),
                            None => self.send(r, Message::Unavailable { cid }),
                        }
                    }
                }
                Output::FetchAncestors { from, known, limit } => {
                    // Asked of a random other replica of the group, as a node takes turns.
                    let others: Vec<usize> = (0..self.replicas.len())
                        .filter(|&p| p != r && self.groups[p] == self.groups[r])
                        .collect();
                    let blocks = if others.is_empty() {
                        Vec::new()
                    } else {
                        let p = others[self.rng.gen_range(0..others.len())];
                        ready(self.replicas[p].ancestors(&from, &known, limit)).unwrap()
                    };
                    self.send(r, Message::Ancestors { blocks });
                }
                Output::Put { key, value, .. } => {
                    self.observed[r].insert(key, value);
                }
                Output::Delete { key } => {
                    self.observed[r].remove(&key);
                }
            }
        }
    }

    /// Delivers everything due by `until`, in delivery order.
    pub fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((at, seq, to))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            let message = self.messages.remove(&seq).unwrap();
            let now = self.now;
            let replica = &mut self.replicas[to];
            match message {
                Message::Broadcast { from, data } => {
                    ready(replica.receive_broadcast(&self.peers[from], &data, now)).unwrap()
                }
                Message::Block { cid, bytes } => {
                    ready(replica.receive_block(&cid, bytes, now)).unwrap()
                }
                Message::Unavailable { cid } => {
                    ready(replica.block_unavailable(&cid, now)).unwrap()
                }
                Message::Ancestors { blocks } => {
                    ready(replica.receive_ancestors(blocks, now)).unwrap()
                }
            }
            self.drain(to);
        }
        self.now = self.now.max(until);
    }

    /// Advances time by `ms` in steps of `step`, ticking every replica at each step.
    pub fn advance(&mut self, ms: u64, step: u64) {
        let end = self.now + ms;
        while self.now < end {
            let next = (self.now + step).min(end);
            self.run_until(next);
            for r in 0..self.replicas.len() {
                ready(self.replicas[r].tick(self.now)).unwrap();
                self.drain(r);
            }
        }
    }

    /// All values of replica `r`, paged through the store.
    pub fn values(&self, r: usize) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = ready(self.replicas[r].values(after.as_deref(), 7)).unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            out.extend(page);
        }
        out
    }

    pub fn in_transit(&self) -> usize {
        self.queue.len()
    }
}

/// The pin count a benchmark runs with: `PINFOLD_BENCH_PINS`, or `default`.
pub fn bench_pins(default: u64) -> u64 {
    std::env::var("PINFOLD_BENCH_PINS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// A pin as a busy cluster holds it, as (state key, state value): a CIDv1, three
/// allocations, replication 2..3, a timestamp and a short name.
pub fn pin_entry(i: u64) -> (String, Vec<u8>) {
    use pinfold_core::codec::dagpb::dag_pb_cid;
    use pinfold_core::codec::state_key::state_key;
    use pinfold_core::pin::{Pin, UnixTime};
    let cid = dag_pb_cid(&i.to_le_bytes());
    let mut pin = Pin::new(cid, UnixTime(1_700_000_000 + i));
    pin.allocations = vec![peer(i % 17), peer(i % 17 + 1), peer(i % 17 + 2)];
    pin.replication_factor_min = 2;
    pin.replication_factor_max = 3;
    pin.name = format!("upload-{i}");
    (state_key(&cid), pin.to_state_value())
}

/// A replica that wrote `pins` pins ([`pin_entry`]) in batches of `batch_items`, each delta
/// also kept under the 1 MiB limit.
pub fn writer_with_pins(pins: u64, batch_items: usize) -> Replica<MemoryStore> {
    use pinfold_core::crdt::BatchConfig;
    let config = Config {
        batch: BatchConfig::new(batch_items, u64::MAX),
        ..Config::default()
    };
    let mut writer = ready(Replica::open(MemoryStore::new(), config)).unwrap();
    for i in 0..pins {
        let (key, value) = pin_entry(i);
        ready(writer.put(&key, value, 0)).unwrap();
        while writer.poll_output().is_some() {}
    }
    ready(writer.commit(0)).unwrap();
    while writer.poll_output().is_some() {}
    writer
}

/// Syncs a fresh replica from `source`'s heads and blocks, the caller answering every
/// fetch at once. Returns the synced replica.
pub fn cold_sync(source: &Replica<MemoryStore>, config: Config) -> Replica<MemoryStore> {
    let mut follower = ready(Replica::open(MemoryStore::new(), config)).unwrap();
    let heads: Vec<Cid> = source.heads().into_iter().map(|(c, _)| c).collect();
    let broadcast = pinfold_core::codec::delta::encode_broadcast(&heads);
    ready(follower.receive_broadcast(&peer(0), &broadcast, 0)).unwrap();
    serve_fetches(&mut follower, source.store(), drop);
    assert!(follower.is_synced());
    follower
}

/// Loads a fresh replica from `source`'s snapshot `root`, the caller answering every fetch
/// at once from `source`'s store.
pub fn snapshot_sync(
    source: &Replica<MemoryStore>,
    root: &Cid,
    config: Config,
) -> Replica<MemoryStore> {
    let mut follower = ready(Replica::open(MemoryStore::new(), config)).unwrap();
    ready(follower.load_snapshot(&peer(0), root, 0)).unwrap();
    serve_fetches(&mut follower, source.store(), drop);
    assert!(follower.is_synced());
    follower
}

/// Answers `follower`'s fetches from the blocks in `source` until it asks for nothing more,
/// and returns its other outputs. Both stores must answer without waiting.
pub fn answer_fetches<S: Store, T: Store>(follower: &mut Replica<S>, source: &T) -> Vec<Output> {
    let mut others = Vec::new();
    serve_fetches(follower, source, |output| others.push(output));
    others
}

/// Answers `follower`'s fetches from the blocks in `source` until it asks for nothing more,
/// handing its other outputs to `other` as they come (after each merge step, as a driver
/// does, so that nothing piles up in the replica). Both stores must answer without waiting.
pub fn serve_fetches<S: Store, T: Store>(
    follower: &mut Replica<S>,
    source: &T,
    mut other: impl FnMut(Output),
) {
    let mut wanted = Vec::new();
    let mut drain = |follower: &mut Replica<S>, wanted: &mut Vec<Cid>| {
        while let Some(output) = follower.poll_output() {
            match output {
                Output::Fetch(cids) => wanted.extend(cids),
                output => other(output),
            }
        }
    };
    loop {
        while follower.has_work() {
            ready(follower.work(0)).unwrap();
            drain(follower, &mut wanted);
        }
        drain(follower, &mut wanted);
        let Some(cid) = wanted.pop() else {
            return;
        };
        let id = BlockId::from_cid(&cid).unwrap();
        let bytes = ready(source.block(&id)).unwrap().unwrap();
        ready(follower.receive_block(&cid, bytes, 0)).unwrap();
    }
}
