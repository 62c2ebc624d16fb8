//! The durable pinset store under load: ingest, cold sync through deltas and from a
//! snapshot, reopen, and the file's size, each run once on a fresh redb file.
//!
//! `cargo bench -p pinfold --bench durable_store` (set `PINFOLD_BENCH_PINS`, default
//! 100,000; the files go to a temporary directory, or `PINFOLD_BENCH_DIR`).

#[path = "../../core/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use pinfold_core::codec::delta::encode_broadcast;
use pinfold_core::crdt::{BatchConfig, Config, MemoryStore, Replica};
use pinfold_native::store::RedbStore;
use support::{answer_fetches, peer, pin_entry, ready, writer_with_pins};

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test`'s listing) only
    // checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let pins = support::bench_pins(100_000);
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("PINFOLD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_owned());

    let ingest_path = dir.join("ingest.redb");
    let ingest = time(|| ingest_into(&ingest_path, pins));
    report(
        "ingest, batched to 1 MiB deltas",
        pins,
        ingest,
        &ingest_path,
    );

    let mut writer = writer_with_pins(pins, usize::MAX);
    let deltas = writer.store().block_count();
    let sync_path = dir.join("sync.redb");
    let sync = time(|| sync_into(&sync_path, &writer, None));
    report(
        &format!("cold sync through {deltas} delta nodes"),
        pins,
        sync,
        &sync_path,
    );

    let root = ready(writer.create_snapshot()).unwrap().unwrap();
    let snapshot_path = dir.join("snapshot.redb");
    let snapshot = time(|| sync_into(&snapshot_path, &writer, Some(root)));
    report("cold sync from a snapshot", pins, snapshot, &snapshot_path);

    let reopen = time(|| {
        let replica = ready(Replica::open(
            RedbStore::open(&sync_path).unwrap(),
            Config::default(),
        ))
        .unwrap();
        assert!(replica.is_synced());
    });
    println!("reopen a synced store of {pins} pins: {reopen:?}");
}

fn time(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

fn report(what: &str, pins: u64, took: Duration, path: &Path) {
    let bytes = std::fs::metadata(path).unwrap().len();
    println!(
        "{what}: {pins} pins in {took:.2?} = {:.0} pins/s; file {:.1} MiB ({} B/pin)",
        pins as f64 / took.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64,
        bytes / pins.max(1)
    );
}

fn ingest_into(path: &Path, pins: u64) {
    let config = Config {
        batch: BatchConfig::new(usize::MAX, u64::MAX),
        ..Config::default()
    };
    let mut replica = ready(Replica::open(RedbStore::open(path).unwrap(), config)).unwrap();
    for i in 0..pins {
        let (key, value) = pin_entry(i);
        ready(replica.put(&key, value, 0)).unwrap();
        while replica.poll_output().is_some() {}
    }
    ready(replica.commit(0)).unwrap();
}

fn sync_into(path: &Path, source: &Replica<MemoryStore>, snapshot: Option<cid::Cid>) {
    let mut replica = ready(Replica::open(
        RedbStore::open(path).unwrap(),
        Config::default(),
    ))
    .unwrap();
    if let Some(root) = snapshot {
        ready(replica.load_snapshot(&peer(0), &root, 0)).unwrap();
    }
    let heads: Vec<_> = source.heads().into_iter().map(|(c, _)| c).collect();
    ready(replica.receive_broadcast(&peer(0), &encode_broadcast(&heads), 0)).unwrap();
    answer_fetches(&mut replica, source.store());
    assert!(replica.is_synced());
}
