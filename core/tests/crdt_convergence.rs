//! Replicas converge whatever the network does (go-ds-crdt's replication suite, as behaviour).

mod support;

use pinfold_core::codec::delta::decode_broadcast;
use pinfold_core::codec::snapshot::{SnapshotHeader, SnapshotLinks};
use pinfold_core::crdt::{BatchConfig, BlockId, Config, MemoryStore, Output, Replica, Store};
use proptest::prelude::*;
use rand::Rng;
use support::{peer, ready, Faults, Sim};

const REPLICAS: usize = 15;
const REBROADCAST_MS: u64 = 1_000;

fn config(r: usize, batched: bool) -> Config {
    Config {
        batch: if batched && r.is_multiple_of(2) {
            BatchConfig::new(5, 300)
        } else {
            BatchConfig::OFF
        },
        rebroadcast_interval_ms: REBROADCAST_MS,
        fetch_timeout_ms: 400,
        max_fetch_attempts: 3,
        repair_interval_ms: 2_000,
        fetch_batch: 8,
        seed: r as u64,
        ..Config::default()
    }
}

/// Heals the network and runs until every replica has merged everything, then checks that
/// all replicas hold the same values and that their Put/Delete outputs describe them.
fn heal_and_check(sim: &mut Sim) {
    sim.faults = Faults::NONE;
    sim.groups.iter_mut().for_each(|g| *g = 0);
    for r in 0..sim.replicas.len() {
        sim.commit(r);
    }
    for _ in 0..40 {
        sim.advance(REBROADCAST_MS * 2, 100);
        let synced = sim.replicas.iter().all(|r| r.is_synced()) && sim.in_transit() == 0;
        let (first, heads) = (sim.values(0), sim.replicas[0].heads());
        if synced
            && (1..sim.replicas.len())
                .all(|r| sim.values(r) == first && sim.replicas[r].heads() == heads)
        {
            break;
        }
    }
    let first = sim.values(0);
    for r in 0..sim.replicas.len() {
        assert!(
            sim.replicas[r].is_synced(),
            "replica {r} still syncing: {:?}",
            sim.replicas[r].progress()
        );
        assert_eq!(sim.values(r), first, "replica {r} diverged");
        assert_eq!(
            sim.replicas[r].heads(),
            sim.replicas[0].heads(),
            "replica {r} holds other heads: a head that is an ancestor of another stayed"
        );
        assert_eq!(
            sim.observed[r], first,
            "replica {r}'s outputs disagree with its state"
        );
    }
}

/// Random puts and deletes on random replicas over a small key space, so writes conflict.
fn random_writes(sim: &mut Sim, writes: usize, keys: usize) {
    random_writes_on(sim, sim.replicas.len(), writes, keys)
}

fn random_writes_on(sim: &mut Sim, writers: usize, writes: usize, keys: usize) {
    for i in 0..writes {
        let r = sim.rng.gen_range(0..writers);
        let key = format!("/k{}", sim.rng.gen_range(0..keys));
        if sim.rng.gen_bool(0.25) {
            sim.delete(r, &key);
        } else {
            sim.put(r, &key, format!("v{i}-r{r}").as_bytes());
        }
        let step = sim.rng.gen_range(0..30);
        sim.advance(step, 10);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Lossy, duplicating, reordering network; replicas converge once it heals.
    #[test]
    fn replicas_converge_through_a_faulty_network(seed in any::<u64>(), batched in any::<bool>()) {
        let mut sim = Sim::new((0..REPLICAS).map(|r| config(r, batched)).collect(), seed);
        sim.faults = Faults { drop: 0.3, duplicate: 0.2, max_delay: 200 };
        random_writes(&mut sim, 120, 12);
        heal_and_check(&mut sim);
    }

    /// With compaction: replicas that join late load a snapshot that a writer took in the
    /// middle of the faults, then walk only what is above it, and converge with the rest.
    /// Small chunks and fanout make the writer's snapshot link its chunks through index
    /// nodes when `indexed`.
    #[test]
    fn late_joiners_converge_from_a_snapshot(
        seed in any::<u64>(),
        batched in any::<bool>(),
        indexed in any::<bool>(),
    ) {
        let configs = (0..REPLICAS).map(|r| {
            let config = config(r, batched);
            if indexed {
                Config { snapshot_chunk_bytes: 128, snapshot_fanout: 7, ..config }
            } else {
                config
            }
        });
        let mut sim = Sim::new(configs.collect(), seed);
        let late = [REPLICAS - 2, REPLICAS - 1];
        for r in late {
            sim.groups[r] = 9;
        }
        sim.faults = Faults { drop: 0.3, duplicate: 0.2, max_delay: 200 };
        random_writes_on(&mut sim, REPLICAS - 2, 80, 12);
        let root = snapshot_of(&mut sim, 0);
        let id = pinfold_core::crdt::BlockId::from_cid(&root).unwrap();
        let root_block = support::ready(sim.replicas[0].store().block(&id)).unwrap().unwrap();
        let header = SnapshotHeader::decode(&root_block).unwrap();
        prop_assert_eq!(matches!(header.links, SnapshotLinks::Indexes(_)), indexed);
        random_writes_on(&mut sim, REPLICAS - 2, 40, 12);
        for r in late {
            sim.groups[r] = 0;
            let author = sim.peers[0];
            support::ready(sim.replicas[r].load_snapshot(&author, &root, sim.now)).unwrap();
            sim.drain(r);
        }
        heal_and_check(&mut sim);
        for r in late {
            prop_assert_eq!(sim.replicas[r].stats().snapshots_loaded, 1);
        }
    }

    /// Partitions that write on both sides, then heal.
    #[test]
    fn replicas_converge_after_partitions(seed in any::<u64>(), batched in any::<bool>()) {
        let mut sim = Sim::new((0..REPLICAS).map(|r| config(r, batched)).collect(), seed);
        sim.faults = Faults { drop: 0.1, duplicate: 0.1, max_delay: 50 };
        for round in 0..3 {
            let groups = 2 + round % 2;
            for r in 0..REPLICAS {
                sim.groups[r] = sim.rng.gen_range(0..groups);
            }
            random_writes(&mut sim, 40, 8);
            sim.groups.iter_mut().for_each(|g| *g = 0);
            sim.advance(300, 50);
        }
        heal_and_check(&mut sim);
    }
}

/// Lets replica `r` finish its walks over a quiet network, then snapshots it.
fn snapshot_of(sim: &mut Sim, r: usize) -> cid::Cid {
    let faults = sim.faults;
    sim.faults = Faults::NONE;
    sim.commit(r);
    while !sim.replicas[r].is_synced() {
        sim.advance(100, 50);
    }
    sim.faults = faults;
    support::ready(sim.replicas[r].create_snapshot())
        .unwrap()
        .expect("the writer has heads")
}

/// go-ds-crdt issue #238: r0 puts, puts again and deletes while r1 puts concurrently; both
/// must end with r1's value (add-wins: r0's delete never saw it).
#[test]
fn put_put_delete_against_a_concurrent_put_converges() {
    let mut sim = Sim::new((0..2).map(|r| config(r, false)).collect(), 238);
    sim.groups = vec![0, 1];
    sim.put(0, "/k1", b"r0-1");
    sim.put(0, "/k1", b"r0-2");
    assert!(sim.delete(0, "/k1"));
    sim.put(1, "/k1", b"r1-1");
    heal_and_check(&mut sim);
    assert_eq!(
        sim.values(0).get("/k1").map(Vec::as_slice),
        Some(&b"r1-1"[..])
    );
}

/// A replica that was away catches up from the heads it is sent later (TestCRDTCatchUp).
#[test]
fn a_replica_catches_up_after_missing_every_broadcast() {
    let mut sim = Sim::new((0..3).map(|r| config(r, false)).collect(), 7);
    sim.groups = vec![0, 0, 1];
    for i in 0..50 {
        sim.put(i % 2, &format!("/k{i}"), b"v");
        sim.advance(5, 5);
    }
    assert!(sim.values(2).is_empty());
    heal_and_check(&mut sim);
    assert_eq!(sim.values(2).len(), 50);
}

/// A replica that missed a thousand deltas catches up in a few round trips: it asks a peer
/// for runs of ancestors, where walking back one block per fetch takes a round trip each.
#[test]
fn a_replica_behind_by_a_thousand_deltas_catches_up_in_runs() {
    let catch_up = |ancestors_per_request| {
        let configs = (0..2)
            .map(|r| Config {
                ancestors_per_request,
                fetch_timeout_ms: 5_000,
                ..config(r, false)
            })
            .collect();
        let mut sim = Sim::new(configs, 5);
        sim.groups = vec![0, 1];
        for i in 0..1_000 {
            sim.put(0, &format!("/k{i}"), b"v");
        }
        sim.groups = vec![0, 0];
        // Each delivery takes 1 to 50 ms: a round trip is about 50 ms.
        sim.faults = Faults {
            max_delay: 50,
            ..Faults::NONE
        };
        sim.put(0, "/last", b"v");
        let started = sim.now;
        while sim.now - started < 600_000
            && !(sim.replicas[1].is_synced() && sim.replicas[1].heads() == sim.replicas[0].heads())
        {
            sim.advance(50, 10);
        }
        assert_eq!(sim.values(1), sim.values(0));
        assert_eq!(sim.values(1).len(), 1_001);
        (sim.now - started, sim.replicas[1].stats().ancestor_blocks)
    };
    let (in_runs, blocks_in_runs) = catch_up(2_000);
    let (one_by_one, no_runs) = catch_up(0);
    println!("caught up in {in_runs} ms in runs, {one_by_one} ms one block at a time");
    assert!(
        blocks_in_runs >= 1_000,
        "{blocks_in_runs} blocks came in runs"
    );
    assert_eq!(no_runs, 0);
    assert!(
        in_runs <= 500 && one_by_one >= 20 * in_runs,
        "caught up in {in_runs} ms in runs, {one_by_one} ms one block at a time"
    );
}

/// Higher priority wins over a concurrent write, whatever the value bytes (TestCRDTPriority).
#[test]
fn the_value_written_on_top_of_more_history_wins() {
    let mut sim = Sim::new((0..2).map(|r| config(r, false)).collect(), 3);
    sim.groups = vec![0, 1];
    for i in 0..5 {
        sim.put(0, "/other", format!("{i}").as_bytes());
    }
    sim.put(0, "/k", b"a-low-bytes-high-priority");
    sim.put(1, "/k", b"z-high-bytes-low-priority");
    heal_and_check(&mut sim);
    assert_eq!(
        sim.values(1).get("/k").map(Vec::as_slice),
        Some(&b"a-low-bytes-high-priority"[..])
    );
}

/// Batching writes many keys in few nodes, and a delete in a batch cancels a batched put.
#[test]
fn batching_makes_few_nodes() {
    let mut batched = config(0, true);
    batched.batch = BatchConfig::new(100, 1_000);
    let mut sim = Sim::new(vec![batched, config(1, false)], 11);
    for i in 0..1_050 {
        sim.put(0, &format!("/k{i:04}"), b"v");
    }
    assert_eq!(sim.replicas[0].stats().committed, 10, "ten full batches");
    assert!(sim.delete(0, "/k1049"), "a batched put is deleted");
    sim.advance(1_500, 100);
    assert_eq!(
        sim.replicas[0].stats().committed,
        11,
        "the rest, committed by age"
    );
    heal_and_check(&mut sim);
    assert_eq!(sim.values(1).len(), 1_049);
}

/// A batch is committed before its delta would pass the 1 MiB limit.
#[test]
fn batches_stay_under_the_delta_size_limit() {
    let mut big = config(0, true);
    big.batch = BatchConfig::new(1_000_000, 1_000_000);
    let mut sim = Sim::new(vec![big], 5);
    let value = vec![7u8; 10_000];
    for i in 0..300 {
        sim.put(0, &format!("/k{i}"), &value);
    }
    sim.commit(0);
    let store = sim.replicas[0].store();
    assert_eq!(store.block_count(), 3, "3 MB of values make 3 nodes");
    assert!(store.blocks().all(|(_, b)| b.len() <= 1024 * 1024));
}

/// Own heads nobody announced are rebroadcast, so a broadcast lost for good is recovered.
#[test]
fn lost_broadcasts_are_recovered_by_rebroadcast() {
    let mut sim = Sim::new((0..2).map(|r| config(r, false)).collect(), 9);
    sim.faults = Faults {
        drop: 1.0,
        duplicate: 0.0,
        max_delay: 1,
    };
    sim.put(0, "/k", b"v");
    sim.advance(10, 10);
    assert!(sim.values(1).is_empty());
    sim.faults = Faults::NONE;
    sim.advance(REBROADCAST_MS * 2, 100);
    assert_eq!(sim.values(1).len(), 1);
}

/// Writes `count` puts one delta each on a fresh replica; returns it and the head each put
/// broadcast, oldest first.
fn chain(count: usize) -> (Replica<MemoryStore>, Vec<(cid::Cid, Vec<u8>)>) {
    let mut writer = ready(Replica::open(MemoryStore::new(), config(0, false))).unwrap();
    let mut heads = Vec::new();
    for i in 0..count {
        ready(writer.put(&format!("/k{i}"), b"v".to_vec(), 0)).unwrap();
        while let Some(output) = writer.poll_output() {
            if let Output::Broadcast(data) = output {
                heads.push(data);
            }
        }
    }
    let heads = heads
        .into_iter()
        .map(|data| {
            let [head] = decode_broadcast(&data).unwrap()[..] else {
                panic!("one head per unbatched put")
            };
            (head, data)
        })
        .collect();
    (writer, heads)
}

/// Hands `reader` the block `cid` from `writer`'s store.
fn deliver(reader: &mut Replica<MemoryStore>, writer: &Replica<MemoryStore>, cid: &cid::Cid) {
    let bytes = ready(writer.store().block(&BlockId::from_cid(cid).unwrap()))
        .unwrap()
        .unwrap();
    ready(reader.receive_block(cid, bytes, 0)).unwrap();
}

/// A head whose block arrives after its child's was merged is not a head any more: every
/// replica ends with the writer's one head. Broadcasts of a fast writer overtake block
/// answers in a real swarm; before this, a reader kept every such ancestor as a head.
#[test]
fn a_head_merged_after_its_child_does_not_stay_a_head() {
    let (writer, heads) = chain(3);
    let mut reader = ready(Replica::open(MemoryStore::new(), config(1, false))).unwrap();
    for (_, data) in &heads {
        ready(reader.receive_broadcast(&peer(0), data, 0)).unwrap();
    }
    for (cid, _) in heads.iter().rev() {
        deliver(&mut reader, &writer, cid);
    }
    assert!(reader.is_synced());
    assert_eq!(reader.heads(), writer.heads());
}

/// The same when the head's own walk is what finishes late: a head merged, a later head
/// built on it merged, and only then the first one's ancestors arrive.
#[test]
fn a_walk_that_ends_after_a_later_head_leaves_one_head() {
    let (writer, heads) = chain(3);
    let mut reader = ready(Replica::open(MemoryStore::new(), config(1, false))).unwrap();
    let [(first, _), (second, second_data), (third, third_data)] = &heads[..] else {
        unreachable!()
    };
    ready(reader.receive_broadcast(&peer(0), second_data, 0)).unwrap();
    deliver(&mut reader, &writer, second);
    ready(reader.receive_broadcast(&peer(0), third_data, 0)).unwrap();
    deliver(&mut reader, &writer, third);
    deliver(&mut reader, &writer, first);
    assert!(reader.is_synced());
    assert_eq!(reader.heads(), writer.heads());
    assert_eq!(sim_values(&reader).len(), 3);
}

fn sim_values(replica: &Replica<MemoryStore>) -> Vec<(String, Vec<u8>)> {
    ready(replica.values(None, 100)).unwrap()
}

/// Without batching, the writes of a write group become one delta when the group ends (a
/// delete in the group cancels its put); outside a group each write is a delta of its own.
#[test]
fn a_write_group_is_one_delta() {
    let mut sim = Sim::new((0..2).map(|r| config(r, false)).collect(), 13);
    sim.put(0, "/before", b"v");
    assert_eq!(sim.replicas[0].stats().committed, 1);

    sim.replicas[0].begin_write_group();
    for i in 0..50 {
        sim.put(0, &format!("/k{i:02}"), b"v");
    }
    assert!(sim.delete(0, "/k49"), "a put of the group is deleted");
    assert!(sim.delete(0, "/before"), "an older key is deleted");
    assert_eq!(
        sim.replicas[0].stats().committed,
        1,
        "nothing is committed inside the group"
    );
    ready(sim.replicas[0].end_write_group(sim.now)).unwrap();
    sim.commit(0);
    assert_eq!(
        sim.replicas[0].stats().committed,
        2,
        "the group's one delta"
    );

    sim.put(0, "/after", b"v");
    assert_eq!(sim.replicas[0].stats().committed, 3);
    heal_and_check(&mut sim);
    let values = sim.values(1);
    assert_eq!(values.len(), 50, "/k00../k48 and /after");
    assert!(!values.contains_key("/before") && !values.contains_key("/k49"));
}
