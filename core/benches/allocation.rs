//! Allocating pins over a cluster: 100,000 pins over 100 peers in 5 tag groups, replication
//! 2..3, by `tag:group` then `freespace`.
//!
//! `cargo bench -p pinfold-core --bench allocation`

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pinfold_core::allocator::{allocate, AllocationRequest, AllocatorConfig, MetricsSet};
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::informer::{disk_metric, tag_metrics, DiskMetric, RepoStat};
use support::peer;

const PINS: u64 = 100_000;
const PEERS: u64 = 100;

fn cluster() -> MetricsSet {
    let mut set = MetricsSet::new();
    for n in 0..PEERS {
        let id = peer(n);
        let stat = RepoStat {
            repo_size: n * 1_000,
            storage_max: 1 << 40,
        };
        let tags = BTreeMap::from([("group".to_owned(), format!("group-{}", n % 5))]);
        let metrics = std::iter::once(disk_metric(
            DiskMetric::FreeSpace,
            Some(&stat),
            &id,
            30_000,
            0,
        ))
        .chain(tag_metrics(&tags, &id, 30_000, 0));
        for metric in metrics {
            set.entry(metric.name.clone()).or_default().push(metric);
        }
    }
    set
}

fn allocation(c: &mut Criterion) {
    let set = cluster();
    let config = AllocatorConfig::default();
    let cids: Vec<_> = (0..PINS).map(|i| dag_pb_cid(&i.to_le_bytes())).collect();
    let mut group = c.benchmark_group("allocation");
    group.sample_size(10).throughput(Throughput::Elements(PINS));
    group.bench_function(format!("{PINS} pins over {PEERS} peers"), |b| {
        b.iter(|| {
            for cid in &cids {
                let request = AllocationRequest {
                    cid,
                    replication_min: 2,
                    replication_max: 3,
                    current: &[],
                    priority: &[],
                    blacklist: &[],
                };
                let chosen = allocate(&request, &set, |_| true, &config).unwrap();
                assert_eq!(chosen.len(), 3);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, allocation);
criterion_main!(benches);
