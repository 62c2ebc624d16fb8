//! The cluster node in a deterministic simulated network: full peers on memory stores and
//! light followers, their effects carried out by the simulator as a driver would (gossip
//! to every reachable node, bitswap from any reachable store, requests answered with an
//! empty IPFS daemon, pin operations that succeed at once), with partitions.

mod support;

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use pinfold_core::allocator::AllocatorConfig;
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::codec::peer_request::{PeerRequest, PeerResponse};
use pinfold_core::crdt::{self, BlockId, MemoryStore, Replica, Store as _, Trust};
use pinfold_core::informer::{DiskMetric, RepoStat};
use pinfold_core::monitor::{self, PingInfo};
use pinfold_core::net::bitswap;
use pinfold_core::node::{
    Answer, CommandError, DaemonTask, Effect, Gathered, GatheringId, GossipVerdict,
    InformerSettings, Node, NodeConfig, NodeRole, Periods, PinsetChange, Question, SnapshotPolicy,
    Topic, PAGE,
};
use pinfold_core::pin::{Pin, PinType, UnixTime};
use pinfold_core::tracker::{
    DaemonPins, IpfsPinType, OperationKind, PeerIdentity, PinTracker, TrackerConfig, TrackerStatus,
};
use support::{peer, ready};

const TICK_NANOS: i64 = 250_000_000;

fn any_address(_: &Multiaddr) -> bool {
    true
}

struct Sim {
    nodes: Vec<Node<MemoryStore>>,
    /// Each node's IPFS daemon: what its pin operations left pinned.
    daemons: Vec<DaemonPins>,
    /// Partition group of each node; nothing crosses groups.
    groups: Vec<usize>,
    gathered: HashMap<(usize, GatheringId), Gathered>,
    now: i64,
    /// The percentage of gossip deliveries and block answers lost, chosen by `rng`.
    loss_percent: u64,
    rng: u64,
    lost: usize,
    /// Each node's daemon's `StorageMax`, from which its free space metric comes.
    storage_max: Vec<u64>,
    /// How far each node's clock is from `now`, in nanoseconds.
    clock_skew: Vec<i64>,
    /// The pinset changes each node reported.
    pinset_changes: Vec<Vec<PinsetChange>>,
}

impl Sim {
    /// Nodes of `roles`, every writer trusted, with the default allocator.
    fn new(roles: &[NodeRole], snapshots: SnapshotPolicy) -> Self {
        let writers: Vec<usize> = (0..roles.len()).filter(|&n| roles[n].writes()).collect();
        Self::with(roles, snapshots, &writers, AllocatorConfig::default())
    }

    /// Nodes of `roles` that trust the nodes of index `trusted` and allocate by `allocator`.
    fn with(
        roles: &[NodeRole],
        snapshots: SnapshotPolicy,
        trusted: &[usize],
        allocator: AllocatorConfig,
    ) -> Self {
        let peers: Vec<PeerId> = (0..roles.len() as u64).map(peer).collect();
        let trust = Trust::Peers(trusted.iter().map(|&n| peers[n]).collect());
        let now = 1_700_000_000_000_000_000;
        let nodes = roles
            .iter()
            .enumerate()
            .map(|(n, role)| {
                let local = peers[n];
                let replica = ready(Replica::open(
                    MemoryStore::new(),
                    crdt::Config {
                        trust: trust.clone(),
                        seed: n as u64,
                        ..crdt::Config::default()
                    },
                ))
                .unwrap();
                let tracker = role.pins().then(|| {
                    PinTracker::new(
                        TrackerConfig::default(),
                        PeerIdentity::new(local, format!("peer{n}")),
                    )
                    .unwrap()
                });
                let config = NodeConfig {
                    local,
                    peername: format!("peer{n}"),
                    role: *role,
                    trust: trust.clone(),
                    allocator: allocator.clone(),
                    periods: Periods {
                        ping: 10_000,
                        expiry: 5_000,
                        ..Periods::default()
                    },
                    informers: role.pins().then(|| InformerSettings {
                        disk: DiskMetric::FreeSpace,
                        disk_ttl_ms: 30_000,
                        tags: BTreeMap::from([("group".to_owned(), "default".to_owned())]),
                        tags_ttl_ms: 30_000,
                        pinqueue_bucket: 100_000,
                        pinqueue_ttl_ms: 30_000,
                        numpin_ttl_ms: Some(30_000),
                    }),
                    snapshots,
                    bootstrap_from_snapshot: *role == NodeRole::Light,
                    max_connections: 16,
                    dialable: any_address,
                    repinning: true,
                };
                ready(Node::new(config, replica, tracker, None, now)).unwrap()
            })
            .collect();
        Sim {
            daemons: vec![DaemonPins::new(); roles.len()],
            nodes,
            groups: vec![0; roles.len()],
            gathered: HashMap::new(),
            now,
            loss_percent: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            lost: 0,
            storage_max: vec![1 << 30; roles.len()],
            clock_skew: vec![0; roles.len()],
            pinset_changes: vec![Vec::new(); roles.len()],
        }
    }

    /// Node `n`'s clock.
    fn clock(&self, n: usize) -> i64 {
        self.now + self.clock_skew[n]
    }

    /// Whether the next delivery is lost.
    fn lose(&mut self) -> bool {
        // xorshift64: deterministic, so a failure replays.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let lost = self.rng % 100 < self.loss_percent;
        self.lost += usize::from(lost);
        lost
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        a != b && self.groups[a] == self.groups[b]
    }

    fn index_of(&self, peer: &PeerId) -> usize {
        self.nodes.iter().position(|n| n.local() == *peer).unwrap()
    }

    /// Connects every pair of reachable nodes.
    fn connect_all(&mut self) {
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if self.reachable(a, b) {
                    let peer = self.nodes[b].local();
                    let now = self.clock(a);
                    self.nodes[a].on_connected(peer, now);
                }
            }
        }
        self.settle();
    }

    /// Carries out every node's effects until none is left.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut any = false;
            for n in 0..self.nodes.len() {
                while let Some(effect) = self.nodes[n].poll_effect() {
                    any = true;
                    self.apply(n, effect);
                }
            }
            if !any {
                return;
            }
        }
        panic!("effects never settled");
    }

    fn apply(&mut self, from: usize, effect: Effect) {
        let now = self.clock(from);
        match effect {
            Effect::Publish { topic, data } => {
                let author = self.nodes[from].local();
                for to in 0..self.nodes.len() {
                    if self.reachable(from, to) && !self.lose() {
                        let now = self.clock(to);
                        ready(self.nodes[to].on_gossip(topic, author, data.clone(), now)).unwrap();
                    }
                }
            }
            Effect::Bitswap(bitswap::Task::Fetch(cids)) => {
                for cid in cids {
                    if self.lose() {
                        // No answer: the fetch times out and is asked again.
                        continue;
                    }
                    let id = BlockId::from_cid(&cid).unwrap();
                    let found = (0..self.nodes.len())
                        .filter(|&to| self.reachable(from, to))
                        .find_map(|to| ready(self.nodes[to].replica().store().block(&id)).unwrap());
                    match found {
                        Some(bytes) => ready(self.nodes[from].on_block(cid, bytes, now)).unwrap(),
                        None => ready(self.nodes[from].on_block_unavailable(cid, now)).unwrap(),
                    }
                }
            }
            Effect::Request { id, peer, request } => {
                let to = self.index_of(&peer);
                let answer = if self.reachable(from, to) {
                    Ok(self.answer(to, request))
                } else {
                    Err("the peer is unreachable".to_owned())
                };
                ready(self.nodes[from].on_response(id, answer, now)).unwrap();
            }
            Effect::Gathered { id, gathered } => {
                self.gathered.insert((from, id), gathered);
            }
            Effect::Pinset(change) => self.pinset_changes[from].push(change),
            Effect::StartOperation(dispatch) => {
                let cid = dispatch.pin.cid;
                let pinned = matches!(dispatch.kind, OperationKind::Pin);
                self.daemons[from].record(&cid, pinned.then_some(IpfsPinType::Recursive));
                self.nodes[from].operation_done(cid, dispatch.id, Ok(()), now)
            }
            Effect::Daemon(DaemonTask::ReadInformerInputs { count_pins }) => {
                let stat = RepoStat {
                    repo_size: 1 << 20,
                    storage_max: self.storage_max[from],
                };
                let pins = count_pins.then(|| self.daemons[from].len() as u64);
                self.nodes[from].publish_informers(Some(stat), pins, now);
            }
            _ => {}
        }
    }

    /// How node `to` answers, its driver's part done with an empty daemon.
    fn answer(&mut self, to: usize, request: PeerRequest) -> PeerResponse {
        let now = self.clock(to);
        match ready(self.nodes[to].on_request(request)).unwrap() {
            Answer::Now(response) => response,
            Answer::FromDaemon(PeerRequest::Statuses { cids, recover }) => {
                let daemon = &self.daemons[to];
                let cids = cids.into_iter().map(|c| (c, Ok(daemon.get(&c)))).collect();
                PeerResponse::Statuses(
                    ready(self.nodes[to].statuses_of(cids, recover, now)).unwrap(),
                )
            }
            Answer::FromDaemon(PeerRequest::Summary) => {
                let (summary, next) =
                    ready(self.nodes[to].count_page(None, &self.daemons[to])).unwrap();
                assert!(next.is_none(), "the tests keep under a page of pins");
                PeerResponse::Summary(summary)
            }
            Answer::FromDaemon(PeerRequest::Connections) => {
                PeerResponse::Connections(self.nodes[to].connections(Vec::new(), now))
            }
            Answer::FromDaemon(other) => PeerResponse::Error(format!("{other:?}: no daemon")),
        }
    }

    /// Advances the clock by `ticks` ticks, each node ticking once per tick.
    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.now += TICK_NANOS;
            for n in 0..self.nodes.len() {
                let now = self.clock(n);
                ready(self.nodes[n].tick(now)).unwrap();
                // Merge work (a snapshot chunk's part, a held delta) goes a turn at a time.
                while self.nodes[n].has_work() {
                    ready(self.nodes[n].work(now)).unwrap();
                    self.settle();
                }
            }
            self.settle();
        }
    }

    fn pins_of(&self, n: usize) -> Vec<Cid> {
        ready(self.nodes[n].pins(None, PAGE))
            .unwrap()
            .into_iter()
            .map(|p| p.cid)
            .collect()
    }

    fn add_pins(&mut self, on: usize, count: usize, label: &str) -> Vec<Cid> {
        let now = self.clock(on);
        let cids: Vec<Cid> = (0..count)
            .map(|i| dag_pb_cid(format!("{label} {i}").as_bytes()))
            .collect();
        for cid in &cids {
            let mut pin = Pin::new(*cid, UnixTime(1));
            pin.replication_factor_min = -1;
            pin.replication_factor_max = -1;
            ready(self.nodes[on].add_pin(pin, now)).unwrap();
        }
        self.settle();
        cids
    }

    fn ask(&mut self, on: usize, question: Question) -> Gathered {
        let now = self.clock(on);
        let id = self.nodes[on].ask_peers(question, None, now);
        self.settle();
        self.gathered
            .remove(&(on, id))
            .expect("the question was answered")
    }
}

fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

#[test]
fn pins_written_on_one_peer_reach_every_peer_and_a_light_follower_which_asks_their_statuses() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Full, Light], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    let cids = sim.add_pins(0, 20, "everywhere");
    sim.run(8);
    for n in 0..4 {
        eprintln!(
            "node {n}: {:?} {:?}",
            sim.nodes[n].replica().progress(),
            sim.nodes[n].replica().stats()
        );
    }
    for n in 0..4 {
        assert_eq!(sorted(sim.pins_of(n)), sorted(cids.clone()), "node {n}");
    }
    let state = sim.nodes[3].sync_state();
    assert!(state.synced, "{state:?}");
    assert_eq!(state.pins, 20);

    let Gathered::Statuses(infos) = sim.ask(
        3,
        Question::Statuses {
            cids: cids[..2].to_vec(),
            recover: false,
        },
    ) else {
        panic!("statuses expected")
    };
    // Every full peer pins every pin (replication -1), and has pinned it by now.
    assert_eq!(infos.len(), 6);
    assert!(
        infos
            .iter()
            .all(|i| i.short.status == TrackerStatus::Pinned),
        "{infos:?}"
    );

    let Gathered::Summaries(lines) = sim.ask(3, Question::Summaries) else {
        panic!("summaries expected")
    };
    let names: Vec<&str> = lines.iter().map(|l| l.peername.as_str()).collect();
    assert_eq!(names, ["peer0", "peer1", "peer2"]);
    for line in &lines {
        assert_eq!(line.summary.as_ref().unwrap().pins, 20);
    }
}

#[test]
fn a_light_follower_starts_from_a_peers_snapshot_then_follows_new_writes() {
    use NodeRole::*;
    let policy = SnapshotPolicy {
        every: 5,
        min_interval_ms: 0,
    };
    let mut sim = Sim::new(&[Full, Light], policy);
    // The follower comes later: first the peer writes and makes its snapshot.
    sim.groups = vec![0, 1];
    sim.run(1);
    let before = sim.add_pins(0, 30, "before");
    sim.run(4);
    assert!(sim.nodes[0].latest_snapshot().is_some(), "no snapshot made");

    sim.groups = vec![0, 0];
    sim.connect_all();
    sim.run(8);
    let state = sim.nodes[1].sync_state();
    let offer = state.snapshot.expect("loaded from the snapshot");
    assert!(offer.keys >= 25, "{offer:?}");
    assert!(state.synced, "{state:?}");
    assert_eq!(sorted(sim.pins_of(1)), sorted(before.clone()));

    let after = sim.add_pins(0, 3, "after");
    sim.run(4);
    let mut all = before;
    all.extend(after);
    assert_eq!(sorted(sim.pins_of(1)), sorted(all));
}

#[test]
fn pinset_changes_are_reported_only_when_asked_for_and_counted_either_way() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Light, Light], SnapshotPolicy::NEVER);
    sim.nodes[2].set_pin_events(true);
    sim.connect_all();
    sim.run(2);
    let cids = sim.add_pins(0, 5, "events");
    let now = sim.clock(0);
    ready(sim.nodes[0].remove_pin(cids[0], &[], now)).unwrap();
    sim.settle();
    sim.run(2);

    for n in 0..3 {
        assert_eq!(sim.nodes[n].pin_count(), 4, "node {n}");
    }
    assert!(sim.pinset_changes[0].is_empty());
    assert!(sim.pinset_changes[1].is_empty());
    let added: Vec<Cid> = sim.pinset_changes[2]
        .iter()
        .filter_map(|change| match change {
            PinsetChange::Pinned { pin, added: true } => Some(pin.cid),
            _ => None,
        })
        .collect();
    assert_eq!(sorted(added), sorted(cids.clone()));
    assert_eq!(
        sim.pinset_changes[2].last(),
        Some(&PinsetChange::Unpinned(cids[0]))
    );
}

#[test]
fn a_partitioned_peer_answers_with_an_error_then_catches_up_in_runs_once_healed() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Full], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    sim.groups = vec![0, 0, 1];
    let cids = sim.add_pins(0, 20, "split");
    sim.run(4);
    assert!(sim.pins_of(2).is_empty());

    let Gathered::Statuses(infos) = sim.ask(
        0,
        Question::Statuses {
            cids: cids[..1].to_vec(),
            recover: false,
        },
    ) else {
        panic!("statuses expected")
    };
    let by_peer: BTreeMap<PeerId, TrackerStatus> =
        infos.iter().map(|i| (i.peer, i.short.status)).collect();
    assert_eq!(by_peer[&sim.nodes[1].local()], TrackerStatus::Pinned);
    assert_eq!(by_peer[&sim.nodes[2].local()], TrackerStatus::ClusterError);

    sim.groups = vec![0, 0, 0];
    // The heads are rebroadcast within the replica's interval (60 s).
    sim.run(300);
    assert_eq!(sorted(sim.pins_of(2)), sorted(cids));
    // The nineteen deltas below the first head it heard came in one ancestors answer.
    let stats = sim.nodes[2].replica().stats();
    assert!(stats.ancestor_blocks >= 19, "{stats:?}");
}

/// With the pin count informer on, each pinning peer publishes how many pins its daemon
/// holds, and the others read it.
#[test]
fn the_pin_count_informer_publishes_each_daemons_pins() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Light], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    sim.add_pins(0, 7, "counted");
    // Past an informer period (half the shortest TTL) after the pins were pinned.
    sim.run(80);
    let counts: Vec<(String, i64)> = sim.nodes[2]
        .metrics("numpin", sim.now)
        .into_iter()
        .map(|m| (m.value, m.weight))
        .collect();
    assert_eq!(counts, [("7".to_owned(), -7), ("7".to_owned(), -7)]);
}

#[test]
fn a_removed_peers_pins_are_reallocated_to_the_others() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Full], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    let gone = sim.nodes[2].local();
    let now = sim.now;
    let mut pin = Pin::new(dag_pb_cid(b"moved"), UnixTime(1));
    pin.replication_factor_min = 1;
    pin.replication_factor_max = 1;
    pin.user_allocations = vec![gone];
    let pinned = ready(sim.nodes[0].add_pin(pin, now)).unwrap();
    assert_eq!(pinned.allocations, [gone]);
    sim.settle();
    let moved = ready(sim.nodes[0].remove_peer(gone, now)).unwrap();
    assert_eq!(moved, 1);
    sim.settle();
    let after = ready(sim.nodes[0].pin(&pinned.cid)).unwrap().unwrap();
    assert_eq!(after.allocations.len(), 1);
    assert_ne!(after.allocations[0], gone);
}

/// A sharded add's pins, as Go's adder writes them: shards pinned to depth 1, a cluster
/// DAG pinned directly everywhere, and the content root's meta pin, which is never pinned
/// itself and takes the rest with it when unpinned; a shard or the cluster DAG cannot be
/// unpinned alone, nor a CID change its pin type.
#[test]
fn a_sharded_adds_pins_keep_their_types_and_go_with_their_meta_pin() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Full], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    let now = sim.now;
    let (root, cluster_dag) = (dag_pb_cid(b"content root"), dag_pb_cid(b"cluster dag"));
    let shards = [dag_pb_cid(b"shard 0"), dag_pb_cid(b"shard 1")];
    let mut previous = None;
    for (n, shard) in shards.iter().enumerate() {
        let mut pin = Pin::new(*shard, UnixTime(1));
        pin.pin_type = PinType::Shard;
        pin.max_depth = 1;
        pin.reference = previous;
        pin.replication_factor_min = 1;
        pin.replication_factor_max = 1;
        pin.allocations = vec![sim.nodes[n].local()];
        let pinned = ready(sim.nodes[0].add_pin(pin, now)).unwrap();
        assert_eq!(
            pinned.allocations,
            [sim.nodes[n].local()],
            "the adder's allocation"
        );
        previous = Some(*shard);
    }
    let mut dag = Pin::new(cluster_dag, UnixTime(1));
    dag.pin_type = PinType::ClusterDag;
    dag.max_depth = 0;
    dag.replication_factor_min = -1;
    dag.replication_factor_max = -1;
    let unreferenced = ready(sim.nodes[0].add_pin(dag.clone(), now));
    assert!(
        matches!(&unreferenced, Err(CommandError::BadRequest(m)) if m.contains("should reference a Meta pin")),
        "{unreferenced:?}"
    );
    dag.reference = Some(root);
    ready(sim.nodes[0].add_pin(dag, now)).unwrap();
    let mut meta = Pin::new(root, UnixTime(1));
    meta.pin_type = PinType::Meta;
    meta.reference = Some(cluster_dag);
    meta.replication_factor_min = 1;
    meta.replication_factor_max = 1;
    let meta = ready(sim.nodes[0].add_pin(meta, now)).unwrap();
    assert!(
        meta.allocations.is_empty(),
        "a meta pin is allocated nowhere"
    );
    sim.settle();
    assert_eq!(sim.pins_of(2).len(), 4);

    let mut as_data = Pin::new(shards[0], UnixTime(1));
    as_data.replication_factor_min = -1;
    as_data.replication_factor_max = -1;
    let retyped = ready(sim.nodes[1].add_pin(as_data, now));
    assert!(
        matches!(&retyped, Err(CommandError::BadRequest(m)) if m.contains("different tracking method")),
        "{retyped:?}"
    );
    for part in [shards[1], cluster_dag] {
        let refused = ready(sim.nodes[1].remove_pin(part, &[], now));
        assert!(
            matches!(&refused, Err(CommandError::BadRequest(m)) if m.contains("Unpin content root CID instead")),
            "{refused:?}"
        );
    }
    ready(sim.nodes[1].remove_pin(root, &shards, now)).unwrap();
    sim.settle();
    for n in 0..3 {
        assert!(
            sim.pins_of(n).is_empty(),
            "peer {n} holds {:?}",
            sim.pins_of(n)
        );
    }
}

/// A peer cut off from the rest stops pinging; once its ping expires, one of the others
/// (the closest to each CID) re-allocates its pins, as ipfs-cluster's alerts handler does.
#[test]
fn a_lost_peers_pins_are_reallocated_once_its_ping_expires() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Full], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    let lost = sim.nodes[2].local();
    let now = sim.now;
    let mut pins = Vec::new();
    for i in 0..20 {
        let mut pin = Pin::new(dag_pb_cid(format!("lost {i}").as_bytes()), UnixTime(1));
        pin.replication_factor_min = 1;
        pin.replication_factor_max = 2;
        pin.user_allocations = vec![lost];
        let pinned = ready(sim.nodes[0].add_pin(pin, now)).unwrap();
        assert!(pinned.allocations.contains(&lost));
        pins.push(pinned.cid);
    }
    sim.settle();
    sim.groups[2] = 1;
    // Pings every 10 s live twice as long: 30 s of ticks is past the last one.
    sim.run((30_000_000_000 / TICK_NANOS) as usize);
    for n in 0..2 {
        assert!(
            sim.nodes[n].alerts().any(|a| a.metric.peer == lost),
            "peer {n} raised the ping alert"
        );
        for cid in &pins {
            let pin = ready(sim.nodes[n].pin(cid)).unwrap().unwrap();
            assert!(
                !pin.allocations.contains(&lost) && !pin.allocations.is_empty(),
                "peer {n} sees {cid} still allocated to the lost peer: {:?}",
                pin.allocations
            );
        }
    }
}

/// Two peers lost at once, each pin allocated to both: one pass re-allocates each pin away
/// from both, to live peers only.
#[test]
fn pins_of_two_peers_lost_at_once_move_to_live_peers() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full; 5], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    let lost = [3, 4].map(|n| sim.nodes[n].local());
    let now = sim.now;
    let pins: Vec<Cid> = (0..20)
        .map(|i| {
            let mut pin = Pin::new(dag_pb_cid(format!("both lost {i}").as_bytes()), UnixTime(1));
            pin.replication_factor_min = 2;
            pin.replication_factor_max = 2;
            pin.user_allocations = lost.to_vec();
            let pinned = ready(sim.nodes[0].add_pin(pin, now)).unwrap();
            assert_eq!(sorted(pinned.allocations.clone()), sorted(lost.to_vec()));
            pinned.cid
        })
        .collect();
    sim.settle();
    sim.groups[3] = 1;
    sim.groups[4] = 1;
    sim.run((30_000_000_000 / TICK_NANOS) as usize);
    for n in 0..3 {
        for cid in &pins {
            let pin = ready(sim.nodes[n].pin(cid)).unwrap().unwrap();
            assert_eq!(pin.allocations.len(), 2, "peer {n}: {:?}", pin.allocations);
            assert!(
                pin.allocations.iter().all(|p| !lost.contains(p)),
                "peer {n} sees {cid} still allocated to a lost peer: {:?}",
                pin.allocations
            );
        }
    }
}

/// Gossip travels on only when the node accepts it: the heads of a peer outside the
/// trusted set are rejected (so gossipsub does not forward an untrusted flood), as are
/// metrics that claim another peer; a trusted peer's heads and its own metrics pass.
#[test]
fn gossip_from_an_untrusted_writer_or_about_another_peer_is_rejected() {
    use NodeRole::*;
    let mut sim = Sim::with(
        &[Full, Full, Full],
        SnapshotPolicy::NEVER,
        &[0, 1],
        AllocatorConfig::default(),
    );
    let [trusted, untrusted] = [1, 2].map(|n| sim.nodes[n].local());
    let heads_of = |sim: &mut Sim, n: usize| loop {
        match sim.nodes[n].poll_effect() {
            Some(Effect::Publish {
                topic: Topic::Heads,
                data,
            }) => return data,
            Some(_) => continue,
            None => panic!("node {n} published no heads"),
        }
    };
    let now = sim.now;
    for (n, label) in [(1, "trusted write"), (2, "untrusted write")] {
        let mut pin = Pin::new(dag_pb_cid(label.as_bytes()), UnixTime(1));
        pin.replication_factor_min = -1;
        pin.replication_factor_max = -1;
        ready(sim.nodes[n].add_pin(pin, now)).unwrap();
    }
    let from_trusted = heads_of(&mut sim, 1);
    let from_untrusted = heads_of(&mut sim, 2);
    let receiver = &mut sim.nodes[0];
    let verdict = |r: &mut Node<MemoryStore>, topic, author, data| {
        ready(r.on_gossip(topic, author, data, now)).unwrap()
    };
    assert_eq!(
        verdict(receiver, Topic::Heads, trusted, from_trusted),
        GossipVerdict::Accept
    );
    assert_eq!(
        verdict(receiver, Topic::Heads, untrusted, from_untrusted),
        GossipVerdict::Reject
    );
    let ping =
        |of: PeerId| monitor::ping_metric(&of, &PingInfo::default(), 10_000, now).to_msgpack();
    assert_eq!(
        verdict(receiver, Topic::Metrics, untrusted, ping(untrusted)),
        GossipVerdict::Accept,
        "an untrusted member's own metrics count, as in Go"
    );
    assert_eq!(
        verdict(receiver, Topic::Metrics, untrusted, ping(trusted)),
        GossipVerdict::Reject
    );
    assert_eq!(
        verdict(receiver, Topic::Metrics, trusted, b"not msgpack".to_vec()),
        GossipVerdict::Reject
    );
}

/// Clocks an hour apart: one peer an hour ahead, one an hour behind. Nobody takes a live
/// peer for lost, pins expire at their time in the cluster's clock (not an hour early or
/// late, whichever peer is closest to them), and a peer really lost has its pins
/// re-allocated once its ping has expired, not an hour later or at once.
#[test]
fn clocks_an_hour_apart_change_neither_who_is_alive_nor_when_pins_expire() {
    use NodeRole::*;
    const HOUR: i64 = 3_600_000_000_000;
    const SECOND: i64 = 1_000_000_000;
    let mut sim = Sim::new(&[Full, Full, Full], SnapshotPolicy::NEVER);
    sim.clock_skew = vec![0, HOUR, -HOUR];
    sim.connect_all();
    sim.run(2);
    let peers: Vec<PeerId> = (0..3).map(|n| sim.nodes[n].local()).collect();
    for n in 0..3 {
        let clock = sim.clock(n);
        let seen = sim.nodes[n].cluster_time(clock);
        assert!(
            (seen - sim.now).abs() < SECOND,
            "peer {n} reads the cluster's time {} s off",
            (seen - sim.now) / SECOND
        );
    }

    // Pins written on the slow peer that expire in 2 minutes, and pins allocated to it.
    let expire_at = UnixTime(u64::try_from((sim.now + 120 * SECOND) / SECOND).unwrap());
    let slow = sim.clock(2);
    let expiring: Vec<Cid> = (0..30)
        .map(|i| {
            let mut pin = Pin::new(dag_pb_cid(format!("expiring {i}").as_bytes()), UnixTime(1));
            pin.expire_at = Some(expire_at);
            ready(sim.nodes[2].add_pin(pin, slow)).unwrap().cid
        })
        .collect();
    let kept: Vec<Cid> = (0..20)
        .map(|i| {
            let mut pin = Pin::new(dag_pb_cid(format!("kept {i}").as_bytes()), UnixTime(1));
            pin.replication_factor_min = 1;
            pin.replication_factor_max = 2;
            pin.user_allocations = vec![peers[2]];
            ready(sim.nodes[0].add_pin(pin, slow + HOUR)).unwrap().cid
        })
        .collect();
    sim.settle();

    // 100 s: every peer alive to every other, nothing re-allocated, nothing expired.
    sim.run((100 * SECOND / TICK_NANOS) as usize);
    for n in 0..3 {
        assert_eq!(
            sim.nodes[n].alerts().count(),
            0,
            "peer {n} raised alerts: {:?}",
            sim.nodes[n].alerts().collect::<Vec<_>>()
        );
        assert_eq!(sim.nodes[n].peerset(sim.clock(n)).len(), 3);
        let pins = sim.pins_of(n);
        assert!(
            expiring.iter().all(|c| pins.contains(c)),
            "peer {n} unpinned early"
        );
        for cid in &kept {
            let pin = ready(sim.nodes[n].pin(cid)).unwrap().unwrap();
            assert!(
                pin.allocations.contains(&peers[2]),
                "peer {n}: {:?}",
                pin.allocations
            );
        }
    }

    // 130 s: past the expiry in the cluster's time, every peer has unpinned them.
    sim.run((30 * SECOND / TICK_NANOS) as usize);
    for n in 0..3 {
        let pins = sim.pins_of(n);
        assert!(
            expiring.iter().all(|c| !pins.contains(c)),
            "peer {n} still holds expired pins"
        );
        assert!(kept.iter().all(|c| pins.contains(c)));
    }

    // The slow peer is cut off: its pins move once its ping (20 s) has expired.
    sim.groups[2] = 1;
    sim.run((10 * SECOND / TICK_NANOS) as usize);
    let pin = ready(sim.nodes[0].pin(&kept[0])).unwrap().unwrap();
    assert!(
        pin.allocations.contains(&peers[2]),
        "moved while its ping was valid"
    );
    sim.run((20 * SECOND / TICK_NANOS) as usize);
    for n in 0..2 {
        for cid in &kept {
            let pin = ready(sim.nodes[n].pin(cid)).unwrap().unwrap();
            assert!(
                !pin.allocations.contains(&peers[2]) && !pin.allocations.is_empty(),
                "peer {n} sees {cid} still allocated to the lost peer: {:?}",
                pin.allocations
            );
        }
    }
}

/// With `pin_only_on_trusted_peers`, neither the first allocation nor the re-allocation
/// of a lost peer's pins picks a peer outside the trusted set; with
/// `pin_only_on_untrusted_peers`, only such a peer is picked.
#[test]
fn allocations_keep_to_trusted_or_untrusted_peers_when_configured() {
    use NodeRole::*;
    let trusted_only = AllocatorConfig {
        pin_only_on_trusted_peers: true,
        ..AllocatorConfig::default()
    };
    let mut sim = Sim::with(&[Full; 4], SnapshotPolicy::NEVER, &[0, 1, 2], trusted_only);
    // The untrusted peer has the most free space: the balanced allocator's first choice.
    sim.storage_max[3] = 1 << 40;
    sim.connect_all();
    sim.run(2);
    let [lost, untrusted] = [2, 3].map(|n| sim.nodes[n].local());
    let now = sim.now;
    let mut pins = Vec::new();
    for i in 0..20 {
        let mut pin = Pin::new(dag_pb_cid(format!("trusted {i}").as_bytes()), UnixTime(1));
        pin.replication_factor_min = 2;
        pin.replication_factor_max = 2;
        pin.user_allocations = vec![lost];
        let pinned = ready(sim.nodes[0].add_pin(pin, now)).unwrap();
        assert_eq!(pinned.allocations.len(), 2);
        assert!(pinned.allocations.contains(&lost));
        assert!(!pinned.allocations.contains(&untrusted));
        pins.push(pinned.cid);
    }
    sim.settle();
    sim.groups[2] = 1;
    sim.run((30_000_000_000 / TICK_NANOS) as usize);
    for cid in &pins {
        let pin = ready(sim.nodes[0].pin(cid)).unwrap().unwrap();
        assert!(!pin.allocations.contains(&lost), "{:?}", pin.allocations);
        assert!(
            !pin.allocations.contains(&untrusted),
            "{:?}",
            pin.allocations
        );
        assert_eq!(pin.allocations.len(), 2, "{:?}", pin.allocations);
    }

    let untrusted_only = AllocatorConfig {
        pin_only_on_untrusted_peers: true,
        ..AllocatorConfig::default()
    };
    let mut sim = Sim::with(
        &[Full; 4],
        SnapshotPolicy::NEVER,
        &[0, 1, 2],
        untrusted_only,
    );
    sim.storage_max[3] = 1 << 40;
    sim.connect_all();
    sim.run(2);
    let now = sim.now;
    let mut pin = Pin::new(dag_pb_cid(b"untrusted"), UnixTime(1));
    pin.replication_factor_min = 1;
    pin.replication_factor_max = 3;
    let pinned = ready(sim.nodes[0].add_pin(pin, now)).unwrap();
    assert_eq!(pinned.allocations, [sim.nodes[3].local()]);
}

/// An adder puts blocks where the pin will be allocated; on every peer that pins when
/// the replication is -1 (relays and light followers pin nothing); followers add nothing.
#[test]
fn add_destinations_are_the_planned_allocations_or_every_peer_that_pins() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Follower, Relay, Light], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(8);
    let peers: Vec<PeerId> = (0..5).map(|n| sim.nodes[n].local()).collect();
    let everywhere = Pin::new(Cid::default(), UnixTime(1));
    let mut pinning = peers[..3].to_vec();
    pinning.sort_by_cached_key(|p| p.to_bytes());
    assert_eq!(
        sim.nodes[0].add_destinations(everywhere.clone(), sim.now),
        Ok(pinning)
    );
    let mut two = everywhere.clone();
    two.replication_factor_min = 2;
    two.replication_factor_max = 2;
    two.user_allocations = vec![peers[1]];
    let chosen = sim.nodes[0].add_destinations(two, sim.now).unwrap();
    assert_eq!(chosen.len(), 2);
    assert_eq!(chosen[0], peers[1], "user allocations come first");
    assert!(sim.nodes[2]
        .add_destinations(everywhere, sim.now)
        .is_err_and(|e| e == CommandError::ReadOnly));
}

#[test]
fn peers_and_a_follower_converge_when_gossip_and_blocks_are_lost() {
    use NodeRole::*;
    let mut sim = Sim::new(&[Full, Full, Full, Light], SnapshotPolicy::NEVER);
    sim.connect_all();
    sim.run(2);
    sim.loss_percent = 30;
    let mut cids = Vec::new();
    for (writer, batch) in [
        (0, "lossy a"),
        (1, "lossy b"),
        (2, "lossy c"),
        (0, "lossy d"),
    ] {
        cids.extend(sim.add_pins(writer, 5, batch));
        sim.run(4);
    }
    // 30% of the messages and block answers are lost. The heads' rebroadcast (every 60 s)
    // and the fetch timeouts (2 min) make up for most; a block whose fetches failed too
    // often is parked and asked again at the repair interval (1 h), as in go-ds-crdt.
    sim.run(15_000);
    for n in 0..4 {
        assert_eq!(sorted(sim.pins_of(n)), sorted(cids.clone()), "node {n}");
        assert_eq!(sim.nodes[n].replica().progress().parked, 0, "node {n}");
    }
    assert!(sim.lost >= 10, "only {} deliveries were lost", sim.lost);
}

/// A peer of the peerset (its pings arrive through others) that this node is not
/// connected to and has no address of is dialed at the address a connected peer gives:
/// how a pinfold peer meets Go peers, which find each other through a DHT.
#[test]
fn a_member_without_an_address_is_looked_up_through_a_connected_peer() {
    let mut sim = Sim::new(&[NodeRole::Full; 3], SnapshotPolicy::NEVER);
    let [a, b, c] = [0, 1, 2].map(|n| sim.nodes[n].local());
    sim.nodes[0].on_connected(b, sim.now);
    sim.nodes[1].on_connected(a, sim.now);
    sim.nodes[1].on_connected(c, sim.now);
    sim.nodes[2].on_connected(b, sim.now);
    sim.run(2_000);
    assert!(
        sim.nodes[0].other_peers(sim.now).contains(&c),
        "c's pings reach a"
    );
    assert_eq!(sim.nodes[0].unaddressed_members(sim.now), vec![c]);
    let now = sim.now;
    assert_eq!(sim.nodes[0].address_lookup(now), Some(b));
    assert_eq!(
        sim.nodes[0].address_lookup(now + 1_000_000),
        None,
        "not again so soon"
    );
    let address: Multiaddr = format!("/ip4/10.0.0.3/tcp/9096/p2p/{c}").parse().unwrap();
    let elsewhere: Multiaddr = format!("/ip4/10.0.0.9/tcp/9096/p2p/{}", peer(99))
        .parse()
        .unwrap();
    sim.nodes[0].on_peer_addresses(vec![address.clone(), elsewhere], now);
    let dials: Vec<_> = std::iter::from_fn(|| sim.nodes[0].poll_effect())
        .filter_map(|effect| match effect {
            Effect::Dial { peer, addresses } => Some((peer, addresses)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dials,
        vec![(Some(c), vec![address])],
        "only the member is dialed"
    );
    assert!(sim.nodes[0].unaddressed_members(now).is_empty());
}

/// Peers found on the local network are dialed once each, at all their addresses, unless
/// connected already; this node's own announcement is passed over.
#[test]
fn peers_found_on_the_local_network_are_dialed_once_unless_connected() {
    let mut sim = Sim::new(&[NodeRole::Full; 3], SnapshotPolicy::NEVER);
    let [a, b, c] = [0, 1, 2].map(|n| sim.nodes[n].local());
    sim.nodes[0].on_connected(b, sim.now);
    while sim.nodes[0].poll_effect().is_some() {}
    let at = |peer: PeerId, host: u8| -> Multiaddr {
        format!("/ip4/10.0.0.{host}/tcp/9096/p2p/{peer}")
            .parse()
            .unwrap()
    };
    let no_peer: Multiaddr = "/ip4/10.0.0.7/tcp/9096".parse().unwrap();
    sim.nodes[0].on_discovered(vec![at(a, 1), at(b, 2), at(c, 3), no_peer, at(c, 4)]);
    let dials: Vec<_> = std::iter::from_fn(|| sim.nodes[0].poll_effect())
        .filter_map(|effect| match effect {
            Effect::Dial { peer, addresses } => Some((peer, addresses)),
            _ => None,
        })
        .collect();
    assert_eq!(dials, vec![(Some(c), vec![at(c, 3), at(c, 4)])]);
}

/// Nodes under Raft consensus in the same simulator: Raft messages cross only between
/// reachable nodes, and the disk writes are left to the consensus tests (core/tests/raft.rs).
#[cfg(feature = "raft")]
mod under_raft {
    use super::*;
    use pinfold_core::consensus::{RaftConsensus, RaftDisk, RaftSettings};
    use pinfold_core::node::RaftEffect;

    /// Three full peers forming a Raft cluster, node 0 soonest to stand for election.
    fn raft_sim() -> Sim {
        let mut sim = Sim::new(&[NodeRole::Full; 3], SnapshotPolicy::NEVER);
        let peers: Vec<PeerId> = sim.nodes.iter().map(|n| n.local()).collect();
        let now_ms = (sim.now / 1_000_000) as u64;
        let nodes = std::mem::take(&mut sim.nodes);
        sim.nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(n, node)| {
                let settings = RaftSettings {
                    tick_ms: 250,
                    heartbeat_ticks: 1,
                    election_ticks: 4 + 4 * n,
                    ..RaftSettings::default()
                };
                let raft = RaftConsensus::open(
                    peers[n],
                    settings,
                    &peers,
                    false,
                    &RaftDisk::default(),
                    &[],
                    now_ms,
                )
                .unwrap();
                node.with_raft(raft)
            })
            .collect();
        sim.connect_all();
        sim
    }

    /// Carries out every effect, Raft's included; returns the answered proposals.
    fn settle(sim: &mut Sim) -> Vec<(usize, u64, Result<(), String>)> {
        let mut done = Vec::new();
        for _ in 0..1_000 {
            sim.settle();
            let mut any = false;
            for n in 0..sim.nodes.len() {
                while let Some(effect) = sim.nodes[n].poll_raft() {
                    any = true;
                    match effect {
                        RaftEffect::Write(_) => {}
                        RaftEffect::Send { peer, message } => {
                            let to = sim.index_of(&peer);
                            if sim.reachable(n, to) {
                                let (from, now) = (sim.nodes[n].local(), sim.clock(to));
                                ready(sim.nodes[to].on_raft_message(from, &message, now)).unwrap();
                            }
                        }
                        RaftEffect::Done { proposal, result } => done.push((n, proposal, result)),
                    }
                }
            }
            if !any {
                return done;
            }
        }
        panic!("Raft never settled");
    }

    fn run(sim: &mut Sim, ticks: usize) -> Vec<(usize, u64, Result<(), String>)> {
        let mut done = Vec::new();
        for _ in 0..ticks {
            sim.run(1);
            done.extend(settle(sim));
        }
        done
    }

    /// Most ticks the tests wait, past their fixed runs, for a new leader.
    const MAX_ELECTION_TICKS: usize = 200;

    fn leader(sim: &Sim) -> Option<usize> {
        (0..sim.nodes.len()).find(|&n| sim.nodes[n].raft().unwrap().is_leader())
    }

    /// Pins `cid` at node `at` as the peer's driver does: in a write group, then the
    /// proposal its answer waits for.
    fn pin_at(sim: &mut Sim, at: usize, cid: Cid) -> Result<u64, CommandError> {
        let now = sim.clock(at);
        let node = &mut sim.nodes[at];
        node.begin_write_group();
        let mut pin = Pin::new(cid, UnixTime(1));
        pin.replication_factor_min = -1;
        pin.replication_factor_max = -1;
        ready(node.add_pin(pin, now)).expect("the pin is valid");
        ready(node.end_write_group(now)).unwrap();
        node.take_proposal()
            .expect("a write under Raft is proposed")
    }

    #[test]
    fn a_write_at_a_follower_is_answered_once_committed_and_pinned_by_every_peer() {
        let mut sim = raft_sim();
        run(&mut sim, 20);
        assert_eq!(leader(&sim), Some(0));
        let cid = dag_pb_cid(b"raft node");
        let proposal = pin_at(&mut sim, 2, cid).unwrap();
        // Nothing is in the pinset before the cluster commits it.
        assert!(sim.pins_of(2).is_empty());
        let done = run(&mut sim, 2);
        assert_eq!(done, vec![(2, proposal, Ok(()))]);
        for n in 0..3 {
            assert_eq!(sim.pins_of(n), vec![cid], "node {n}'s pinset");
            assert_eq!(
                sim.daemons[n].get(&cid),
                Some(IpfsPinType::Recursive),
                "node {n}'s daemon"
            );
        }
    }

    #[test]
    fn a_cut_off_peer_refuses_writes_as_unavailable_and_catches_up_when_healed() {
        let mut sim = raft_sim();
        run(&mut sim, 20);
        sim.groups = vec![1, 0, 0];
        run(&mut sim, 30);
        let refused = pin_at(&mut sim, 0, dag_pb_cid(b"cut off"));
        assert!(
            matches!(&refused, Err(CommandError::Unavailable(m)) if m.contains("majority")),
            "{refused:?}"
        );
        // Election timeouts are random, and split votes repeat them: about one run in
        // a hundred had no leader yet after the 30 ticks above.
        for _ in 0..MAX_ELECTION_TICKS {
            if matches!(leader(&sim), Some(n) if n != 0) {
                break;
            }
            run(&mut sim, 1);
        }
        let new_leader = leader(&sim).expect("the majority elects a leader");
        assert_ne!(new_leader, 0);
        let cid = dag_pb_cid(b"written by the majority");
        let proposal = pin_at(&mut sim, 1, cid).unwrap();
        assert_eq!(run(&mut sim, 2), vec![(1, proposal, Ok(()))]);
        assert!(sim.pins_of(0).is_empty());
        sim.groups = vec![0, 0, 0];
        run(&mut sim, 20);
        assert_eq!(sim.pins_of(0), vec![cid]);
    }
}
