//! Pin statuses at scale: loading the IPFS daemon's pin list (1,000,000 CIDs as `pin/ls`
//! writes them) and deriving the status of 1,000,000 pins against it, with 10,000
//! operations queued.
//!
//! `cargo bench -p pinfold-core --bench tracker` (`PINFOLD_BENCH_PINS` changes the count).

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::pin::{Pin, UnixTime};
use pinfold_core::tracker::{
    DaemonPins, IpfsPinType, PeerIdentity, PinTracker, StatusFilter, TrackerConfig, TrackerStatus,
};
use support::{bench_pins, peer};

const QUEUED: u64 = 10_000;

fn statuses(c: &mut Criterion) {
    let count = bench_pins(1_000_000);
    let local = peer(1);
    let pinset: Vec<Pin> = (0..count)
        .map(|i| {
            let mut pin = Pin::new(dag_pb_cid(&i.to_le_bytes()), UnixTime(1_700_000_000));
            pin.allocations = vec![local, peer(2)];
            pin.replication_factor_min = 2;
            pin.replication_factor_max = 2;
            pin.name = format!("pin {i}");
            pin
        })
        .collect();
    // The daemon lists every pin but the queued ones, in the text `pin/ls` streams.
    let listing: Vec<(String, &str)> = pinset
        .iter()
        .skip(QUEUED as usize)
        .map(|p| (p.cid.to_string(), "recursive"))
        .collect();
    let mut tracker =
        PinTracker::new(TrackerConfig::default(), PeerIdentity::new(local, "bench")).unwrap();
    for pin in pinset.iter().take(QUEUED as usize) {
        tracker.track(pin.clone(), 0).unwrap();
    }

    let mut group = c.benchmark_group("tracker");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(count));
    group.bench_function(format!("load a {count}-pin daemon list"), |b| {
        b.iter(|| {
            let mut daemon = DaemonPins::with_capacity(listing.len());
            for (cid, pin_type) in &listing {
                daemon.insert(&cid.parse().unwrap(), IpfsPinType::parse(pin_type).unwrap());
            }
            assert_eq!(daemon.len(), listing.len());
            daemon
        })
    });

    let mut daemon = DaemonPins::with_capacity(listing.len());
    for (cid, _) in &listing {
        daemon.insert(&cid.parse().unwrap(), IpfsPinType::Recursive);
    }
    group.bench_function(format!("statuses of {count} pins"), |b| {
        b.iter(|| {
            let mut pinned = 0u64;
            for info in tracker.statuses(pinset.iter().cloned(), &daemon, StatusFilter::ALL) {
                pinned += u64::from(info.short.status == TrackerStatus::Pinned);
            }
            assert_eq!(pinned, count - QUEUED);
        })
    });
    group.finish();
}

criterion_group!(benches, statuses);
criterion_main!(benches);
