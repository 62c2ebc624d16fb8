//! Raft consensus in a deterministic simulated network: elections, commits through
//! followers, a lost leader, a cut-off minority, restarts from disk and snapshots.
#![cfg(feature = "raft")]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cid::Cid;
use libp2p_identity::PeerId;
use multihash::Multihash;
use pinfold_core::consensus::{
    Committed, RaftConsensus, RaftDisk, RaftError, RaftOp, RaftSettings, RaftWrite,
};
use pinfold_core::pin::{Pin, UnixTime};

const TICK: u64 = 100;

fn cid(n: u32) -> Cid {
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&n.to_be_bytes());
    Cid::new_v1(0x55, Multihash::wrap(0x12, &digest).unwrap())
}

fn pin_op(n: u32) -> RaftOp {
    RaftOp::Pin(Box::new(Pin::new(cid(n), UnixTime(0))))
}

/// A peer's disk as the driver keeps it.
#[derive(Default, Clone)]
struct Disk {
    entries: BTreeMap<u64, Vec<u8>>,
    meta: Option<Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

impl Disk {
    fn write(&mut self, write: &RaftWrite) {
        if let Some(from) = write.truncate_from {
            self.entries.retain(|index, _| *index < from);
        }
        for (index, bytes) in &write.entries {
            self.entries.insert(*index, bytes.clone());
        }
        if let Some(below) = write.compact_below {
            self.entries.retain(|index, _| *index >= below);
        }
        if let Some(meta) = &write.meta {
            self.meta = Some(meta.clone());
        }
        if let Some(snapshot) = &write.snapshot {
            self.snapshot = Some(snapshot.clone());
        }
    }

    fn load(&self) -> RaftDisk {
        RaftDisk {
            meta: self.meta.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.values().cloned().collect(),
        }
    }
}

/// One simulated peer: its consensus, its disk and the pinset it applied.
struct Sim {
    raft: RaftConsensus,
    disk: Disk,
    pins: BTreeSet<Cid>,
    answered: Vec<u64>,
    failed: Vec<u64>,
}

struct Net {
    ids: Vec<PeerId>,
    peers: BTreeMap<PeerId, Sim>,
    queue: VecDeque<(PeerId, PeerId, Vec<u8>)>,
    /// Peers cut off from every other.
    isolated: BTreeSet<PeerId>,
    now: u64,
}

fn settings(n: usize) -> RaftSettings {
    RaftSettings {
        tick_ms: TICK,
        heartbeat_ticks: 2,
        // Peers stand for election at different times, the first soonest.
        election_ticks: 10 + 7 * n,
        snapshot_threshold: 1_000,
        trailing_logs: 5,
        commit_timeout_ms: 5_000,
    }
}

impl Net {
    fn new(count: usize) -> Self {
        let ids: Vec<PeerId> = (0..count).map(|_| PeerId::random()).collect();
        let mut net = Self::empty();
        for (n, id) in ids.iter().enumerate() {
            let raft = RaftConsensus::open(
                *id,
                settings(n),
                &ids,
                false,
                &RaftDisk::default(),
                &[],
                net.now,
            )
            .unwrap();
            net.ids.push(*id);
            net.insert(*id, raft, Disk::default());
        }
        net
    }

    fn empty() -> Self {
        Self {
            ids: Vec::new(),
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            now: 1_000_000,
        }
    }

    /// A new peer, opened with `settings(n)`, that waits to be added.
    fn waiting_peer(&mut self, n: usize) -> PeerId {
        let id = PeerId::random();
        let raft = RaftConsensus::open(
            id,
            settings(n),
            &[],
            true,
            &RaftDisk::default(),
            &[],
            self.now,
        )
        .unwrap();
        self.ids.push(id);
        self.insert(id, raft, Disk::default());
        id
    }

    /// Asks the cluster, through `via`, to add `peer`.
    fn ask_to_add(&mut self, via: PeerId, peer: PeerId) {
        let now = self.now;
        self.sim(&via)
            .raft
            .propose(&[RaftOp::AddPeer(peer)], now)
            .unwrap();
        self.settle();
    }

    fn insert(&mut self, id: PeerId, raft: RaftConsensus, disk: Disk) {
        self.peers.insert(
            id,
            Sim {
                raft,
                disk,
                pins: BTreeSet::new(),
                answered: Vec::new(),
                failed: Vec::new(),
            },
        );
    }

    fn cut(&self, a: &PeerId, b: &PeerId) -> bool {
        self.isolated.contains(a) || self.isolated.contains(b)
    }

    /// Carries out every peer's ready and delivers messages until all is quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for id in self.ids.clone() {
                let Some(sim) = self.peers.get_mut(&id) else {
                    continue;
                };
                if !sim.raft.has_ready() {
                    continue;
                }
                busy = true;
                let ready = sim.raft.ready().unwrap();
                sim.disk.write(&ready.write);
                if let Some(restore) = ready.restore {
                    sim.pins = restore.pins.iter().filter_map(pinned).collect();
                }
                for Committed { ops, proposal, .. } in ready.committed {
                    for op in ops {
                        match op {
                            RaftOp::Pin(pin) => sim.pins.insert(pin.cid),
                            RaftOp::Unpin(cid) => sim.pins.remove(&cid),
                            other => panic!("{other:?} reached the pinset"),
                        };
                    }
                    sim.answered.extend(proposal);
                }
                sim.failed.extend(ready.failed.iter().map(|(n, _)| *n));
                if sim.raft.wants_snapshot() {
                    let pins = sim.pins.iter().map(|c| pin_op_of(*c)).collect();
                    let write = sim.raft.take_snapshot(pins).unwrap();
                    sim.disk.write(&write);
                }
                for (to, bytes) in ready.messages {
                    self.queue.push_back((id, to, bytes));
                }
            }
            while let Some((from, to, bytes)) = self.queue.pop_front() {
                busy = true;
                if self.cut(&from, &to) {
                    continue;
                }
                if let Some(sim) = self.peers.get_mut(&to) {
                    sim.raft.receive(from, &bytes).unwrap();
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the network never settled");
    }

    /// Runs the clock for `ms`, one tick at a time.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += TICK;
            for sim in self.peers.values_mut() {
                sim.raft.tick(self.now);
            }
            self.settle();
        }
    }

    fn leaders(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(id, sim)| sim.raft.is_leader() && !self.isolated.contains(*id))
            .map(|(id, _)| *id)
            .collect()
    }

    fn leader(&mut self) -> PeerId {
        for _ in 0..100 {
            if let [leader] = self.leaders()[..] {
                return leader;
            }
            self.run(TICK);
        }
        panic!("no leader was elected");
    }

    fn sim(&mut self, id: &PeerId) -> &mut Sim {
        self.peers.get_mut(id).unwrap()
    }

    fn propose(&mut self, at: PeerId, n: u32) -> Result<u64, RaftError> {
        let now = self.now;
        let result = self.sim(&at).raft.propose(&[pin_op(n)], now);
        self.settle();
        result
    }
}

fn pinned(op: &RaftOp) -> Option<Cid> {
    match op {
        RaftOp::Pin(pin) => Some(pin.cid),
        _ => None,
    }
}

fn pin_op_of(cid: Cid) -> RaftOp {
    RaftOp::Pin(Box::new(Pin::new(cid, UnixTime(0))))
}

#[test]
fn a_write_proposed_at_a_follower_is_committed_everywhere_and_answered_once() {
    let mut net = Net::new(3);
    let leader = net.leader();
    let follower = *net.ids.iter().find(|id| **id != leader).unwrap();
    assert_eq!(net.sim(&follower).raft.leader(), Some(leader));
    let number = net.propose(follower, 1).unwrap();
    net.run(TICK);
    for sim in net.peers.values() {
        assert!(sim.pins.contains(&cid(1)));
    }
    assert_eq!(net.sim(&follower).answered, vec![number]);
    assert!(net.sim(&leader).answered.is_empty());
    let members = net.sim(&leader).raft.members();
    assert_eq!(members.len(), 3);
}

#[test]
fn a_lost_leader_is_replaced_and_no_committed_write_is_lost() {
    let mut net = Net::new(3);
    let old = net.leader();
    for n in 0..10 {
        net.propose(old, n).unwrap();
    }
    net.isolated.insert(old);
    let elected_at = net.now;
    let new = net.leader();
    assert_ne!(new, old);
    // Elections take a few election timeouts at most.
    assert!(
        net.now - elected_at <= 10_000,
        "{} ms",
        net.now - elected_at
    );
    net.propose(new, 100).unwrap();
    net.run(TICK);
    for id in net.ids.clone() {
        if id != old {
            let pins = &net.sim(&id).pins;
            assert!((0..10).chain([100]).all(|n| pins.contains(&cid(n))));
        }
    }
}

#[test]
fn a_minority_refuses_writes_and_catches_up_once_healed() {
    let mut net = Net::new(3);
    let leader = net.leader();
    // Cut the old leader off: it steps down (check quorum) and refuses writes.
    net.isolated.insert(leader);
    net.run(5_000);
    match net.propose(leader, 1) {
        Err(RaftError::NoLeader { members: 3 }) => {}
        other => panic!("a minority accepted a write: {other:?}"),
    }
    let majority = net.leader();
    net.propose(majority, 2).unwrap();
    net.run(TICK);
    assert!(!net.sim(&leader).pins.contains(&cid(2)));
    net.isolated.clear();
    net.run(3_000);
    assert!(net.sim(&leader).pins.contains(&cid(2)));
    assert!(!net.sim(&leader).raft.is_leader() || net.leaders() == vec![leader]);
}

#[test]
fn a_write_that_cannot_commit_fails_after_the_timeout() {
    let mut net = Net::new(3);
    let leader = net.leader();
    let others: Vec<PeerId> = net.ids.iter().copied().filter(|id| *id != leader).collect();
    // The leader keeps its role until check-quorum notices, but cannot commit.
    net.isolated.extend(others);
    let number = net.propose(leader, 7).unwrap();
    net.run(6_000);
    assert_eq!(net.sim(&leader).failed, vec![number]);
    assert!(!net.sim(&leader).pins.contains(&cid(7)));
}

#[test]
fn a_restarted_peer_keeps_its_log_and_rejoins() {
    let mut net = Net::new(3);
    let leader = net.leader();
    for n in 0..20 {
        net.propose(leader, n).unwrap();
    }
    net.run(TICK);
    let follower = *net.ids.iter().find(|id| **id != leader).unwrap();
    let disk = net.sim(&follower).disk.clone();
    net.peers.remove(&follower);
    net.propose(leader, 50).unwrap();
    let n = net.ids.iter().position(|id| *id == follower).unwrap();
    let raft = RaftConsensus::open(
        follower,
        settings(n),
        &[],
        false,
        &disk.load(),
        &[],
        net.now,
    )
    .unwrap();
    net.insert(follower, raft, disk);
    net.run(2_000);
    let pins = &net.sim(&follower).pins;
    assert!(
        (0..20).chain([50]).all(|n| pins.contains(&cid(n))),
        "{pins:?}"
    );
    assert!(!net.sim(&follower).raft.is_leader());
}

#[test]
fn a_peer_added_to_a_cluster_that_never_took_a_snapshot_learns_every_peer() {
    let mut net = Net::new(1);
    let first = net.ids[0];
    net.leader();
    net.propose(first, 1).unwrap();
    let mut joined = vec![first];
    for n in 1..3 {
        let newcomer = net.waiting_peer(n);
        net.ask_to_add(first, newcomer);
        net.run(1_000);
        joined.push(newcomer);
        joined.sort();
        for id in &joined {
            assert_eq!(net.sim(id).raft.members(), joined, "as {id} sees them");
            assert!(net.sim(id).pins.contains(&cid(1)));
        }
    }
    // With the first peer cut off, the other two are a majority of three.
    net.isolated.insert(first);
    net.run(5_000);
    let leader = net.leader();
    assert_ne!(leader, first);
    assert_eq!(net.sim(&leader).raft.members().len(), 3);
}

#[test]
fn a_cluster_started_from_an_imported_pinset_gives_it_to_the_peers_that_join() {
    let first = PeerId::random();
    let imported = [pin_op(7), pin_op(8)];
    let raft = RaftConsensus::open(
        first,
        settings(0),
        &[],
        false,
        &RaftDisk::default(),
        &imported,
        1_000_000,
    )
    .unwrap();
    let mut net = Net::empty();
    net.ids.push(first);
    net.insert(first, raft, Disk::default());
    // The peer's store holds the imported pins already.
    net.sim(&first).pins = [cid(7), cid(8)].into();
    net.leader();
    let newcomer = net.waiting_peer(1);
    net.ask_to_add(first, newcomer);
    net.run(1_000);
    assert_eq!(net.sim(&newcomer).pins, [cid(7), cid(8)].into());
    // Restarted from its disk, it knows both peers.
    let restarted = RaftConsensus::open(
        first,
        settings(0),
        &[],
        false,
        &net.sim(&first).disk.load(),
        &[],
        net.now,
    )
    .unwrap();
    assert_eq!(restarted.members().len(), 2);
}

#[test]
fn a_peer_added_later_gets_a_snapshot_and_what_followed() {
    let mut net = Net::new(3);
    let leader = net.leader();
    for n in 0..30 {
        net.propose(leader, n).unwrap();
    }
    let pins: Vec<RaftOp> = net
        .sim(&leader)
        .pins
        .iter()
        .map(|c| pin_op_of(*c))
        .collect();
    let write = net.sim(&leader).raft.take_snapshot(pins).unwrap();
    assert!(write.compact_below.is_some());
    net.sim(&leader).disk.write(&write);

    let newcomer = net.waiting_peer(3);
    // Asked at a follower, the request reaches the leader, which changes the peers.
    let follower = *net.ids.iter().find(|id| **id != leader).unwrap();
    net.ask_to_add(follower, newcomer);
    net.propose(leader, 99).unwrap();
    net.run(2_000);
    let sim = net.sim(&newcomer);
    assert!((0..30).chain([99]).all(|n| sim.pins.contains(&cid(n))));
    assert_eq!(sim.raft.members().len(), 4);
    assert!(sim.disk.snapshot.is_some());
    let now = net.now;
    net.sim(&newcomer)
        .raft
        .propose(&[RaftOp::RemovePeer(follower)], now)
        .unwrap();
    net.run(1_000);
    assert_eq!(net.sim(&leader).raft.members().len(), 3);
    assert!(!net.sim(&newcomer).raft.is_member(&follower));
    // A follower refuses a member it does not have.
    let stranger = PeerId::random();
    assert!(matches!(
        net.sim(&leader).raft.remove_member(stranger),
        Err(RaftError::NotMember { .. })
    ));
}
