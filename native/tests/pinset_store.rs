//! The durable pinset store under a replica: round trips, and processes killed with
//! SIGKILL at random points of a sync or of local ingestion, then reopened.
//!
//! This file is its own harness: run with `PINFOLD_STORE_CHILD=<role>` it is the child
//! process that syncs or ingests into a store until it is done or killed.

#[path = "../../core/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cid::Cid;
use pinfold_core::codec::dagpb::DeltaNode;
use pinfold_core::codec::delta::encode_broadcast;
use pinfold_core::crdt::{
    count_live_keys, BlockId, Config, KeyState, MemoryStore, Replica, ReplicaError, Store,
};
use pinfold_native::store::{RedbStore, RunLimits};
use rand::{Rng, SeedableRng};
use support::{answer_fetches, peer, pin_entry, ready, writer_with_pins};

/// Pins in the DAG the crash tests sync, written 40 to a delta, then every seventh one
/// removed: a few hundred deltas, with tombstones.
const CRASH_PINS: u64 = 12_000;
const CRASH_BATCH: usize = 40;
/// Run limits small enough for these few thousand keys to be written out as several runs,
/// and merged, as millions are.
const SMALL_RUNS: RunLimits = RunLimits {
    spill_keys: 1_500,
    min_run_keys: 500,
    max_runs: 4,
};
/// SIGKILLs per scenario. The seed of their timing is printed; set `PINFOLD_KILL_SEED` to
/// replay it.
const KILLS: usize = 8;
/// How long any child may run before the test gives up on it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

const ROLE_VAR: &str = "PINFOLD_STORE_CHILD";
const PATH_VAR: &str = "PINFOLD_STORE_PATH";

fn main() {
    if let Ok(role) = std::env::var(ROLE_VAR) {
        let path = std::env::var(PATH_VAR).expect("the parent names the store");
        child(&role, Path::new(&path));
        return;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: [(&str, fn()); 4] = [
        ("durable_store_round_trip", durable_store_round_trip),
        ("kill_during_delta_sync", kill_during_delta_sync),
        ("kill_during_snapshot_sync", kill_during_snapshot_sync),
        ("kill_during_ingest", kill_during_ingest),
    ];
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        print!("test {name} ... ");
        std::io::stdout().flush().unwrap();
        test();
        println!("ok");
    }
}

/// The DAG the sync scenarios copy: [`CRASH_PINS`] pins, then every seventh removed.
fn crash_source() -> Replica<MemoryStore> {
    let mut writer = writer_with_pins(CRASH_PINS, CRASH_BATCH);
    for i in (0..CRASH_PINS).step_by(7) {
        let (key, _) = pin_entry(i);
        ready(writer.delete(&key, 0)).unwrap();
        while writer.poll_output().is_some() {}
    }
    ready(writer.commit(0)).unwrap();
    while writer.poll_output().is_some() {}
    writer
}

/// The snapshot scenario's source: half the pins under a snapshot, the rest and the
/// removals in deltas above it. Returns the writer and the snapshot's root.
fn snapshot_source() -> (Replica<MemoryStore>, Cid) {
    let mut writer = writer_with_pins(CRASH_PINS / 2, CRASH_BATCH);
    let root = ready(writer.create_snapshot()).unwrap().unwrap();
    for i in CRASH_PINS / 2..CRASH_PINS {
        let (key, value) = pin_entry(i);
        ready(writer.put(&key, value, 0)).unwrap();
        while writer.poll_output().is_some() {}
    }
    for i in (0..CRASH_PINS).step_by(7) {
        ready(writer.delete(&pin_entry(i).0, 0)).unwrap();
        while writer.poll_output().is_some() {}
    }
    ready(writer.commit(0)).unwrap();
    while writer.poll_output().is_some() {}
    (writer, root)
}

fn heads_broadcast<S: Store>(replica: &Replica<S>) -> Vec<u8> {
    let heads: Vec<Cid> = replica.heads().into_iter().map(|(c, _)| c).collect();
    encode_broadcast(&heads)
}

/// What a child process does, until it is done or killed. It prints `opened` once its
/// store is open, so the parent times its kill from there.
fn child(role: &str, path: &Path) {
    let (source, snapshot) = match role {
        "ingest" => (None, None),
        "delta-sync" => (Some(crash_source()), None),
        "snapshot-sync" => {
            let (source, root) = snapshot_source();
            (Some(source), Some(root))
        }
        other => panic!("unknown child role {other}"),
    };
    let mut store = RedbStore::open(path).unwrap();
    store.set_run_limits(SMALL_RUNS);
    let config = Config {
        batch: pinfold_core::crdt::BatchConfig::new(CRASH_BATCH, u64::MAX),
        ..Config::default()
    };
    let mut replica = ready(Replica::open(store, config)).unwrap();
    println!("opened");
    std::io::stdout().flush().unwrap();
    if let Some(source) = source {
        if let Some(root) = snapshot {
            match ready(replica.load_snapshot(&peer(0), &root, 0)) {
                Ok(()) | Err(ReplicaError::NotEmpty) => {}
                Err(e) => panic!("{e}"),
            }
        }
        ready(replica.receive_broadcast(&peer(0), &heads_broadcast(&source), 0)).unwrap();
        answer_fetches(&mut replica, source.store());
        assert!(replica.is_synced());
    } else {
        // Batches commit in order, so the keys present tell where the last run stopped.
        let done = count_keys(replica.store());
        for i in done..CRASH_PINS {
            let (key, value) = pin_entry(i);
            ready(replica.put(&key, value, 0)).unwrap();
            while replica.poll_output().is_some() {}
        }
        ready(replica.commit(0)).unwrap();
    }
    println!("done");
}

/// Calls `f` on every key state of `store`, a page at a time, in key order.
fn for_each_key<S: Store>(store: &S, mut f: impl FnMut(&[u8], &KeyState)) {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = ready(store.scan(after.as_deref(), 1024)).unwrap();
        let Some((last, _)) = page.last() else { return };
        for (key, state) in &page {
            f(key, state);
        }
        after = Some(last.clone());
    }
}

fn count_keys<S: Store>(store: &S) -> u64 {
    let mut count = 0;
    for_each_key(store, |_, _| count += 1);
    count
}

/// Runs a child in `role` on the store at `path`. With `kill_after`, kills it that long
/// after it opened its store. Returns whether it finished, and how long it ran from the
/// moment its store was open.
fn run_child(role: &str, path: &Path, kill_after: Option<Duration>) -> (bool, Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE_VAR, role)
        .env(PATH_VAR, path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let spawned = Instant::now();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "opened",
        "the child could not open its store"
    );
    let opened = Instant::now();
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        // SIGKILL: no destructor, no flush, no chance to finish the write in progress.
        let _ = child.kill();
    }
    let finished = lines.any(|line| line.is_ok_and(|l| l == "done"));
    let status = child.wait().unwrap();
    let ran = opened.elapsed();
    assert!(spawned.elapsed() < CHILD_TIMEOUT, "the child ran too long");
    if kill_after.is_none() {
        assert!(status.success(), "the child failed: {status}");
    }
    (finished, ran)
}

/// Checks that a store opened after a kill holds whole transactions only: the elements and
/// tombstones of every merged delta are all reflected in the key states; every live version
/// comes from a merged block; heads are merged blocks; pending blocks are not merged yet.
/// Merged blocks must all be stored unless the replica started from a snapshot, which
/// names the blocks below it without carrying them.
fn assert_consistent<S: Store>(store: &S, from_snapshot: bool) {
    assert_eq!(
        ready(store.live_keys()).unwrap(),
        ready(count_live_keys(store)).unwrap(),
        "the kept count of keys with a value is off"
    );
    let persisted = ready(store.load()).unwrap();
    for (head, _) in &persisted.heads {
        let id = BlockId::from_cid(head).unwrap();
        assert!(
            ready(store.is_processed(&id)).unwrap(),
            "head {head} is not merged"
        );
    }
    for pending in &persisted.pending {
        let id = BlockId::from_cid(&pending.cid).unwrap();
        assert!(
            !ready(store.is_processed(&id)).unwrap(),
            "pending {} is merged",
            pending.cid
        );
    }
    let mut after = None;
    loop {
        let page = ready(store.processed_after(after.as_ref(), 256)).unwrap();
        let Some(last) = page.last().copied() else {
            break;
        };
        for id in page {
            let Some(bytes) = ready(store.block(&id)).unwrap() else {
                assert!(from_snapshot, "merged block {} is not stored", id.to_cid());
                continue;
            };
            let node = DeltaNode::decode(&bytes).unwrap();
            for element in &node.delta.elements {
                let state = ready(store.key_state(element.key.as_bytes()))
                    .unwrap()
                    .unwrap();
                assert!(
                    state.live.iter().any(|v| v.block == id) || state.is_tombstoned(&id),
                    "an element of merged block {} is missing from {}",
                    id.to_cid(),
                    element.key
                );
            }
            for tombstone in &node.delta.tombstones {
                let state = ready(store.key_state(tombstone.key.as_bytes()))
                    .unwrap()
                    .unwrap();
                let removed = BlockId::from_element_id(&tombstone.id).unwrap();
                assert!(
                    state.is_tombstoned(&removed),
                    "a tombstone of {} is missing",
                    id.to_cid()
                );
            }
        }
        after = Some(last);
    }
    for_each_key(store, |key, state| {
        for version in &state.live {
            assert!(
                ready(store.is_processed(&version.block)).unwrap(),
                "{} holds a version from an unmerged block",
                String::from_utf8_lossy(key)
            );
        }
    });
}

/// Asserts that the replica on `path` holds exactly `expected`'s values.
fn assert_same_values(path: &Path, expected: &Replica<MemoryStore>) {
    let replica = ready(Replica::open(
        RedbStore::open(path).unwrap(),
        Config::default(),
    ))
    .unwrap();
    let mut after: Option<String> = None;
    loop {
        let mine = ready(replica.values(after.as_deref(), 500)).unwrap();
        let theirs = ready(expected.values(after.as_deref(), 500)).unwrap();
        assert_eq!(mine, theirs);
        let Some((last, _)) = mine.last() else { break };
        after = Some(last.clone());
    }
    assert_eq!(replica.heads(), expected.heads());
}

/// Kills children of `role` at random moments within a run's duration, checking the store
/// after each kill and that merged work is never lost, then lets a last child finish and
/// compares the result with `expected`.
fn kill_at_random_points(role: &str, expected: &Replica<MemoryStore>) {
    let from_snapshot = role == "snapshot-sync";
    let dir = tempfile::tempdir().unwrap();
    // One undisturbed run tells how long a whole run takes.
    let reference = dir.path().join("reference.redb");
    let (finished, full_run) = run_child(role, &reference, None);
    assert!(finished);
    assert_same_values(&reference, expected);
    let total = RedbStore::open(&reference)
        .unwrap()
        .counts()
        .unwrap()
        .processed;

    let seed: u64 = std::env::var("PINFOLD_KILL_SEED")
        .map(|s| s.parse().expect("PINFOLD_KILL_SEED is a number"))
        .unwrap_or_else(|_| rand::random());
    eprint!("(seed {seed}, run {full_run:?}) ");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let path = dir.path().join("pinset.redb");
    let mut merged_before = 0;
    let mut kills = 0;
    // Shrinks the delays when a run outran its kill before any kill landed (a warm run can
    // be much faster than the reference one).
    let mut scale = 1.0;
    for _ in 0..KILLS {
        // A random point of what is left to do, as far as merged blocks tell.
        let left = 1.0 - merged_before as f64 / total as f64;
        let delay = full_run.mul_f64(scale * left * rng.gen_range(0.0..0.9));
        if run_child(role, &path, Some(delay)).0 {
            if kills > 0 {
                break; // this run outran the kill; the last run below checks the rest
            }
            std::fs::remove_file(&path).unwrap();
            scale /= 4.0;
            continue;
        }
        kills += 1;
        let store = RedbStore::open(&path).unwrap();
        assert_consistent(&store, from_snapshot);
        let merged = store.counts().unwrap().processed;
        assert!(
            merged >= merged_before,
            "a kill lost merged blocks: {merged} < {merged_before}"
        );
        merged_before = merged;
    }
    assert!(kills > 0, "no run was killed before it finished");
    eprint!("({kills} kills, {merged_before} blocks merged before the last run) ");
    assert!(run_child(role, &path, None).0);
    let store = RedbStore::open(&path).unwrap();
    assert_consistent(&store, from_snapshot);
    drop(store);
    assert_same_values(&path, expected);
}

fn durable_store_round_trip() {
    let source = crash_source();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pinset.redb");
    {
        let mut store = RedbStore::open(&path).unwrap();
        store.set_run_limits(SMALL_RUNS);
        let mut replica = ready(Replica::open(store, Config::default())).unwrap();
        ready(replica.receive_broadcast(&peer(0), &heads_broadcast(&source), 0)).unwrap();
        answer_fetches(&mut replica, source.store());
        assert!(replica.is_synced());
    }
    // The sync left key runs; read before and after they are merged.
    let mut store = RedbStore::open(&path).unwrap();
    assert_eq!(count_keys(&store), CRASH_PINS);
    assert!(store.merge_runs().unwrap().is_some(), "the sync wrote runs");
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.blocks, source.store().block_count() as u64);
    assert_eq!(counts.processed, counts.blocks);
    assert_eq!(counts.keys, CRASH_PINS);
    assert_eq!(counts.pending, 0);
    assert_consistent(&store, false);
    drop(store);
    assert_same_values(&path, &source);
    // The reopened replica serves its blocks: a third replica syncs from it alone.
    let reopened = RedbStore::open(&path).unwrap();
    let mut third = ready(Replica::open(MemoryStore::new(), Config::default())).unwrap();
    ready(third.receive_broadcast(&peer(0), &heads_broadcast(&source), 0)).unwrap();
    answer_fetches(&mut third, &reopened);
    assert_eq!(
        ready(third.values(None, usize::MAX)).unwrap(),
        ready(source.values(None, usize::MAX)).unwrap()
    );
}

fn kill_during_delta_sync() {
    kill_at_random_points("delta-sync", &crash_source());
}

fn kill_during_snapshot_sync() {
    kill_at_random_points("snapshot-sync", &snapshot_source().0);
}

fn kill_during_ingest() {
    // The ingesting child writes the pins only, in the same batches as this writer, so
    // resuming at the first uncommitted pin rebuilds the very same DAG.
    kill_at_random_points("ingest", &writer_with_pins(CRASH_PINS, CRASH_BATCH));
}
