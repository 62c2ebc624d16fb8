//! Replica throughput: local ingest with batching, and a follower's cold sync.
//!
//! `cargo bench -p pinfold-core --bench crdt` (set `PINFOLD_BENCH_PINS=1000000` for the
//! million-pin sync; the default is 100,000).

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pinfold_core::crdt::{BatchConfig, Config, MemoryStore, Replica};
use support::{bench_pins, cold_sync, pin_entry, ready, snapshot_sync, writer_with_pins};

fn ingest(c: &mut Criterion) {
    let pins = bench_pins(100_000);
    let entries: Vec<_> = (0..pins).map(pin_entry).collect();
    let mut group = c.benchmark_group("ingest");
    group.sample_size(10).throughput(Throughput::Elements(pins));
    group.bench_function(format!("{pins} pins, batched to 1 MiB deltas"), |b| {
        b.iter_batched(
            || entries.clone(),
            |entries| {
                let config = Config {
                    batch: BatchConfig::new(usize::MAX, u64::MAX),
                    ..Config::default()
                };
                let mut replica = ready(Replica::open(MemoryStore::new(), config)).unwrap();
                for (key, value) in entries {
                    ready(replica.put(&key, value, 0)).unwrap();
                    while replica.poll_output().is_some() {}
                }
                ready(replica.commit(0)).unwrap();
                replica
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn sync(c: &mut Criterion) {
    let pins = bench_pins(100_000);
    let writer = writer_with_pins(pins, usize::MAX);
    let mut group = c.benchmark_group("cold sync");
    group.sample_size(10).throughput(Throughput::Elements(pins));
    group.bench_function(
        format!(
            "{pins} pins through {} delta nodes",
            writer.store().block_count()
        ),
        |b| b.iter(|| cold_sync(&writer, Config::default())),
    );
    let mut writer = writer;
    let root = ready(writer.create_snapshot()).unwrap().unwrap();
    group.bench_function(format!("{pins} pins from a snapshot"), |b| {
        b.iter(|| snapshot_sync(&writer, &root, Config::default()))
    });
    group.finish();
}

criterion_group!(benches, ingest, sync);
criterion_main!(benches);
