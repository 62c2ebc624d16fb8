//! Pin tracker scenarios after ipfs-cluster's tracker suite (track, untrack, cancel while
//! pinning, attempts and priority, remote pins, recover, statuses), its queue bound,
//! concurrency and back-off, the JSON of statuses, and a property: whatever the order of
//! track, untrack, failures and cancels, the daemon ends pinned exactly as the cluster wants.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use cid::Cid;
use pinfold_core::codec::dagpb::dag_pb_cid;
use pinfold_core::pin::{Pin, PinType, UnixTime};
use pinfold_core::tracker::{
    DaemonPins, Dispatch, GlobalPinInfo, IpfsPinType, OpId, OperationKind, PeerIdentity, PinInfo,
    PinTracker, StatusFilter, TrackError, TrackerAction, TrackerConfig, TrackerConfigError,
    TrackerStatus,
};
use proptest::prelude::*;
use support::peer;

/// 2023-11-14T22:13:20Z in Unix nanoseconds.
const NOW: i64 = 1_700_000_000_000_000_000;
const SECOND: i64 = 1_000_000_000;

fn cid(n: u64) -> Cid {
    dag_pb_cid(format!("tracked content {n}").as_bytes())
}

/// A pin submitted at `NOW`, allocated to the local peer (peer 1).
fn local_pin(n: u64) -> Pin {
    let mut pin = Pin::new(cid(n), UnixTime((NOW / SECOND) as u64));
    pin.allocations = vec![peer(1)];
    pin.replication_factor_min = 1;
    pin.replication_factor_max = 1;
    pin.name = format!("pin {n}");
    pin
}

fn remote_pin(n: u64) -> Pin {
    let mut pin = local_pin(n);
    pin.allocations = vec![peer(2)];
    pin
}

fn tracker(config: TrackerConfig) -> PinTracker {
    PinTracker::new(config, PeerIdentity::new(peer(1), "peer-one")).unwrap()
}

fn starts(actions: &[TrackerAction]) -> Vec<&Dispatch> {
    actions
        .iter()
        .filter_map(|a| match a {
            TrackerAction::Start(d) => Some(d.as_ref()),
            TrackerAction::Cancel { .. } => None,
        })
        .collect()
}

fn status(t: &PinTracker, pin: &Pin, daemon: Option<IpfsPinType>) -> PinInfo {
    t.status(pin.cid, Some(pin), Ok(daemon), NOW)
}

#[test]
fn a_tracked_pin_is_queued_then_pinning_then_forgotten_once_pinned() {
    let mut t = tracker(TrackerConfig::default());
    let pin = local_pin(1);
    t.track(pin.clone(), NOW).unwrap();
    assert_eq!(
        status(&t, &pin, None).short.status,
        TrackerStatus::PinQueued
    );
    assert_eq!(t.pin_queue_size(), 1);

    let actions = t.poll(NOW);
    let started = starts(&actions);
    assert_eq!(started.len(), 1);
    assert_eq!(
        (started[0].kind, &started[0].pin),
        (OperationKind::Pin, &pin)
    );
    let info = status(&t, &pin, None);
    assert_eq!(
        (info.short.status, info.short.attempt_count),
        (TrackerStatus::Pinning, 1)
    );
    assert!(
        info.short.priority_pin,
        "a pin submitted now is a priority pin"
    );
    assert_eq!(t.pin_queue_size(), 0);

    let id = started[0].id;
    t.complete(&pin.cid, id, Ok(()), NOW + SECOND);
    assert!(t.operation_status(&pin.cid).is_none());
    let pinned = status(&t, &pin, Some(IpfsPinType::Recursive));
    assert_eq!(pinned.short.status, TrackerStatus::Pinned);
    assert_eq!(pinned.name, "pin 1");
    let missing = status(&t, &pin, None);
    assert_eq!(missing.short.status, TrackerStatus::UnexpectedlyUnpinned);
    assert_eq!(
        missing.short.error,
        "the item should be pinned but it is not"
    );
}

#[test]
fn an_untracked_pin_is_unpinned_and_then_reads_unpinned() {
    let mut t = tracker(TrackerConfig::default());
    let c = cid(1);
    t.untrack(c, NOW).unwrap();
    assert_eq!(
        t.status(c, None, Ok(None), NOW).short.status,
        TrackerStatus::UnpinQueued
    );
    let actions = t.poll(NOW);
    let started = starts(&actions);
    assert_eq!(started[0].kind, OperationKind::Unpin);
    assert_eq!(
        t.status(c, None, Ok(None), NOW).short.status,
        TrackerStatus::Unpinning
    );
    t.complete(&c, started[0].id, Ok(()), NOW);
    let info = t.status(c, None, Ok(None), NOW + SECOND);
    assert_eq!(info.short.status, TrackerStatus::Unpinned);
    assert_eq!(info.short.timestamp, Some(NOW + SECOND));
}

#[test]
fn untracking_while_pinning_cancels_the_pin_and_unpins_after_it_ends() {
    let mut t = tracker(TrackerConfig::default());
    let pin = local_pin(1);
    t.track(pin.clone(), NOW).unwrap();
    let pin_id = starts(&t.poll(NOW))[0].id;

    t.untrack(pin.cid, NOW).unwrap();
    let actions = t.poll(NOW);
    assert_eq!(
        actions,
        vec![TrackerAction::Cancel {
            cid: pin.cid,
            id: pin_id
        }],
        "the pin is cancelled, and the unpin waits for it to end"
    );
    assert_eq!(
        status(&t, &pin, None).short.status,
        TrackerStatus::UnpinQueued
    );

    // The cancelled pin ends (it may even have succeeded): its result is ignored.
    t.complete(&pin.cid, pin_id, Ok(()), NOW);
    let actions = t.poll(NOW);
    let started = starts(&actions);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].kind, OperationKind::Unpin);
    assert_eq!(
        status(&t, &pin, None).short.status,
        TrackerStatus::Unpinning
    );
}

#[test]
fn untracking_a_queued_pin_replaces_it_without_cancelling_anything() {
    let mut t = tracker(TrackerConfig {
        concurrent_pins: 1,
        ..TrackerConfig::default()
    });
    let slow = local_pin(1);
    let fast = local_pin(2);
    t.track(slow.clone(), NOW).unwrap();
    assert_eq!(starts(&t.poll(NOW)).len(), 1);
    t.track(fast.clone(), NOW).unwrap();
    assert_eq!(t.poll(NOW), vec![], "the only pinning slot is taken");
    assert_eq!(
        status(&t, &fast, None).short.status,
        TrackerStatus::PinQueued
    );

    t.untrack(fast.cid, NOW).unwrap();
    let actions = t.poll(NOW);
    assert_eq!(actions.len(), 1, "no cancel: {actions:?}");
    assert_eq!(starts(&actions)[0].kind, OperationKind::Unpin);
    assert_eq!(t.pin_queue_size(), 0);
}

#[test]
fn tracking_again_while_unpinning_cancels_the_unpin() {
    let mut t = tracker(TrackerConfig::default());
    let pin = local_pin(1);
    t.untrack(pin.cid, NOW).unwrap();
    let unpin_id = starts(&t.poll(NOW))[0].id;
    t.track(pin.clone(), NOW).unwrap();
    assert_eq!(
        t.poll(NOW),
        vec![TrackerAction::Cancel {
            cid: pin.cid,
            id: unpin_id
        }]
    );
    t.complete(&pin.cid, unpin_id, Err("context canceled".into()), NOW);
    let actions = t.poll(NOW);
    assert_eq!(starts(&actions)[0].kind, OperationKind::Pin);
}

#[test]
fn tracking_a_queued_pin_again_keeps_its_place_with_the_new_options() {
    let mut t = tracker(TrackerConfig::default());
    let mut pin = local_pin(1);
    t.track(pin.clone(), NOW).unwrap();
    pin.name = "renamed".into();
    t.track(pin.clone(), NOW).unwrap();
    assert_eq!(t.queued(), 1);
    let actions = t.poll(NOW);
    assert_eq!(starts(&actions).len(), 1);
    assert_eq!(starts(&actions)[0].pin.name, "renamed");
}

#[test]
fn attempts_carry_over_and_priority_ends_after_max_retries() {
    let mut t = tracker(TrackerConfig {
        priority_pin_max_retries: 1,
        ..TrackerConfig::default()
    });
    let pin = local_pin(1);
    t.track(pin.clone(), NOW).unwrap();
    let id = starts(&t.poll(NOW))[0].id;
    t.complete(&pin.cid, id, Err("pin failed".into()), NOW);
    let info = status(&t, &pin, None);
    assert_eq!(
        (
            info.short.status,
            info.short.attempt_count,
            info.short.error.as_str()
        ),
        (TrackerStatus::PinError, 1, "pin failed")
    );

    // Retry 1: one attempt so far, still within the retries of a priority pin.
    assert!(t
        .recover(pin.cid, TrackerStatus::PinError, Some(pin.clone()), NOW)
        .unwrap());
    let id = starts(&t.poll(NOW))[0].id;
    t.complete(&pin.cid, id, Err("pin failed".into()), NOW);
    let info = status(&t, &pin, None);
    assert_eq!(info.short.attempt_count, 2);
    assert!(info.short.priority_pin);

    // Retry 2: two attempts, past the retries of a priority pin.
    t.recover(pin.cid, TrackerStatus::PinError, Some(pin.clone()), NOW)
        .unwrap();
    let id = starts(&t.poll(NOW))[0].id;
    t.complete(&pin.cid, id, Err("pin failed".into()), NOW);
    let info = status(&t, &pin, None);
    assert_eq!(info.short.attempt_count, 3);
    assert!(!info.short.priority_pin);

    // An unpin starts its own count.
    t.untrack(pin.cid, NOW).unwrap();
    let id = starts(&t.poll(NOW))[0].id;
    t.complete(&pin.cid, id, Err("unpin failed".into()), NOW);
    let info = t.status(pin.cid, None, Ok(None), NOW);
    assert_eq!(
        (info.short.status, info.short.attempt_count),
        (TrackerStatus::UnpinError, 1)
    );
    t.untrack(pin.cid, NOW).unwrap();
    let id = starts(&t.poll(NOW))[0].id;
    t.complete(&pin.cid, id, Err("unpin failed".into()), NOW);
    assert_eq!(
        t.status(pin.cid, None, Ok(None), NOW).short.attempt_count,
        2
    );
}

#[test]
fn old_pins_wait_behind_young_ones() {
    let mut t = tracker(TrackerConfig {
        concurrent_pins: 1,
        ..TrackerConfig::default()
    });
    let mut old = local_pin(1);
    old.timestamp = Some(UnixTime((NOW / SECOND) as u64 - 2 * 24 * 3600));
    let young = local_pin(2);
    let blocker = local_pin(3);
    t.track(blocker.clone(), NOW).unwrap();
    let blocker_id = starts(&t.poll(NOW))[0].id;
    t.track(old.clone(), NOW).unwrap();
    t.track(young.clone(), NOW).unwrap();
    assert!(!status(&t, &old, None).short.priority_pin);
    t.complete(&blocker.cid, blocker_id, Ok(()), NOW);
    let actions = t.poll(NOW);
    assert_eq!(starts(&actions)[0].pin.cid, young.cid);
}

#[test]
fn pins_run_at_most_concurrent_pins_at_once_and_unpins_one_at_a_time() {
    let mut t = tracker(TrackerConfig::default());
    for n in 0..25 {
        t.track(local_pin(n), NOW).unwrap();
    }
    for n in 100..103 {
        t.untrack(cid(n), NOW).unwrap();
    }
    let actions = t.poll(NOW);
    let started = starts(&actions);
    let pins: Vec<_> = started
        .iter()
        .filter(|d| d.kind == OperationKind::Pin)
        .collect();
    assert_eq!(pins.len(), 10);
    assert_eq!(started.len() - pins.len(), 1);
    assert_eq!((t.running(), t.queued(), t.pin_queue_size()), (11, 17, 15));
    assert_eq!(t.poll(NOW), vec![]);

    let first = pins[0];
    t.complete(&first.pin.cid, first.id, Ok(()), NOW);
    let actions = t.poll(NOW);
    assert_eq!(starts(&actions).len(), 1);
    assert_eq!(starts(&actions)[0].kind, OperationKind::Pin);
}

#[test]
fn a_full_queue_is_a_clear_error_and_the_pin_shows_it() {
    let mut t = tracker(TrackerConfig {
        max_pin_queue_size: 3,
        ..TrackerConfig::default()
    });
    for n in 0..3 {
        t.track(local_pin(n), NOW).unwrap();
    }
    let refused = local_pin(3);
    let err = t.track(refused.clone(), NOW).unwrap_err();
    assert_eq!(err, TrackError::QueueFull { capacity: 3 });
    let message = err.to_string();
    assert!(
        message.contains("queue is full") && message.contains("max_pin_queue_size"),
        "{message}"
    );
    let info = status(&t, &refused, None);
    assert_eq!(info.short.status, TrackerStatus::PinError);
    assert_eq!(info.short.error, message);
    assert_eq!(t.queued(), 3);

    // Once the queue drains, the refused pin is retried after its back-off.
    let actions = t.poll(NOW);
    for d in starts(&actions) {
        t.complete(&d.pin.cid, d.id, Ok(()), NOW);
    }
    let retry_at = t.next_retry_at().unwrap();
    assert_eq!(retry_at, NOW + 30 * SECOND);
    assert_eq!(t.poll(retry_at - 1), vec![]);
    let actions = t.poll(retry_at);
    assert_eq!(starts(&actions)[0].pin.cid, refused.cid);
}

#[test]
fn failures_are_retried_with_exponential_back_off_up_to_the_maximum() {
    let mut t = tracker(TrackerConfig {
        retry_base_delay_ms: 1_000,
        retry_max_delay_ms: 5_000,
        ..TrackerConfig::default()
    });
    let pin = local_pin(1);
    t.track(pin.clone(), NOW).unwrap();
    let mut now = NOW;
    let mut waits = Vec::new();
    for attempt in 1..=5 {
        let actions = t.poll(now);
        let started = starts(&actions);
        assert_eq!(started.len(), 1, "attempt {attempt}");
        t.complete(&pin.cid, started[0].id, Err("daemon down".into()), now);
        let next = t.next_retry_at().unwrap();
        waits.push((next - now) / SECOND);
        assert_eq!(t.poll(next - 1), vec![], "no retry before the back-off");
        now = next;
    }
    assert_eq!(waits, vec![1, 2, 4, 5, 5]);
    let actions = t.poll(now);
    let id = starts(&actions)[0].id;
    assert_eq!(status(&t, &pin, None).short.attempt_count, 6);
    t.complete(&pin.cid, id, Ok(()), now);
    assert!(t.operation_status(&pin.cid).is_none());
}

#[test]
fn pins_allocated_elsewhere_are_removed_here_and_read_remote() {
    let mut t = tracker(TrackerConfig::default());
    let pin = remote_pin(1);
    t.track(pin.clone(), NOW).unwrap();
    assert_eq!(status(&t, &pin, None).short.status, TrackerStatus::Remote);
    assert_eq!(t.pin_queue_size(), 0);
    let actions = t.poll(NOW);
    let started = starts(&actions);
    assert_eq!(started[0].kind, OperationKind::Remote);
    t.complete(&pin.cid, started[0].id, Ok(()), NOW);
    let info = status(&t, &pin, Some(IpfsPinType::Recursive));
    assert_eq!(
        (info.short.status, info.short.error.as_str()),
        (TrackerStatus::Remote, "")
    );
}

#[test]
fn meta_pins_are_never_pinned_and_read_sharded() {
    let mut t = tracker(TrackerConfig::default());
    let mut pin = local_pin(1);
    pin.pin_type = PinType::Meta;
    t.track(pin.clone(), NOW).unwrap();
    assert_eq!(t.poll(NOW), vec![]);
    assert_eq!(status(&t, &pin, None).short.status, TrackerStatus::Sharded);
}

#[test]
fn pins_everywhere_are_pinned_on_every_peer() {
    let mut t = tracker(TrackerConfig::default());
    let mut pin = local_pin(1);
    pin.allocations.clear();
    pin.replication_factor_min = -1;
    pin.replication_factor_max = -1;
    t.track(pin, NOW).unwrap();
    assert_eq!(starts(&t.poll(NOW))[0].kind, OperationKind::Pin);
}

#[test]
fn recover_requeues_errors_and_missing_pins_and_leaves_the_rest() {
    let mut t = tracker(TrackerConfig::default());
    let pin = local_pin(1);
    assert!(t
        .recover(
            pin.cid,
            TrackerStatus::UnexpectedlyUnpinned,
            Some(pin.clone()),
            NOW
        )
        .unwrap());
    assert_eq!(
        status(&t, &pin, None).short.status,
        TrackerStatus::PinQueued
    );

    let gone = cid(2);
    assert!(!t.recover(gone, TrackerStatus::PinError, None, NOW).unwrap());
    assert!(t
        .recover(gone, TrackerStatus::UnpinError, None, NOW)
        .unwrap());
    assert_eq!(
        t.status(gone, None, Ok(None), NOW).short.status,
        TrackerStatus::UnpinQueued
    );
    for quiet in [
        TrackerStatus::Pinned,
        TrackerStatus::Remote,
        TrackerStatus::Pinning,
    ] {
        assert!(!t.recover(cid(3), quiet, Some(local_pin(3)), NOW).unwrap());
    }
    assert_eq!(t.queued(), 2);
}

#[test]
fn a_daemon_that_cannot_answer_gives_a_cluster_error() {
    let t = tracker(TrackerConfig::default());
    let pin = local_pin(1);
    let info = t.status(pin.cid, Some(&pin), Err("connection refused".into()), NOW);
    assert_eq!(
        (info.short.status, info.short.error.as_str()),
        (TrackerStatus::ClusterError, "connection refused")
    );
}

#[test]
fn statuses_join_the_pinset_the_daemon_and_the_operations() {
    let mut t = tracker(TrackerConfig::default());
    let pinned = local_pin(1);
    let missing = local_pin(2);
    let remote = remote_pin(3);
    let mut meta = local_pin(4);
    meta.pin_type = PinType::Meta;
    let queued = local_pin(5);
    let mut v1 = local_pin(6);
    v1.cid = Cid::new_v1(0x70, *v1.cid.hash());
    t.track(queued.clone(), NOW).unwrap();
    let mut daemon = DaemonPins::new();
    daemon.insert(&pinned.cid, IpfsPinType::Recursive);
    daemon.insert(&queued.cid, IpfsPinType::Recursive);
    daemon.insert(&remote.cid, IpfsPinType::Recursive);
    // The daemon lists the CIDv0 of the pin the cluster holds as CIDv1.
    daemon.insert(&local_pin(6).cid, IpfsPinType::Direct);
    let pinset = vec![
        pinned.clone(),
        missing.clone(),
        remote.clone(),
        meta.clone(),
        queued.clone(),
        v1.clone(),
    ];

    let all: BTreeMap<Cid, TrackerStatus> = t
        .statuses(pinset.clone(), &daemon, StatusFilter::ALL)
        .map(|i| (i.cid, i.short.status))
        .collect();
    let expected: BTreeMap<Cid, TrackerStatus> = [
        (pinned.cid, TrackerStatus::Pinned),
        (missing.cid, TrackerStatus::UnexpectedlyUnpinned),
        (remote.cid, TrackerStatus::Remote),
        (meta.cid, TrackerStatus::Sharded),
        (queued.cid, TrackerStatus::PinQueued),
        (v1.cid, TrackerStatus::Pinned),
    ]
    .into();
    assert_eq!(all, expected);

    let filter = StatusFilter::parse("queued,unexpectedly_unpinned").unwrap();
    let some: BTreeSet<Cid> = t
        .statuses(pinset.clone(), &daemon, filter)
        .map(|i| i.cid)
        .collect();
    assert_eq!(some, BTreeSet::from([missing.cid, queued.cid]));

    // A filter of operation statuses needs neither the pinset nor the daemon.
    let queued_only = StatusFilter::parse("queued").unwrap();
    assert!(!queued_only.needs_pinset() && !queued_only.needs_daemon_pins());
    let ops: Vec<Cid> = t.operations(queued_only).map(|i| i.cid).collect();
    assert_eq!(ops, vec![queued.cid]);
    // Remote needs the pinset but not the daemon: an empty list lists the same.
    let remote_only = StatusFilter::of(&[TrackerStatus::Remote]);
    assert!(remote_only.needs_pinset() && !remote_only.needs_daemon_pins());
    let remotes: Vec<Cid> = t
        .statuses(pinset, &DaemonPins::new(), remote_only)
        .map(|i| i.cid)
        .collect();
    assert_eq!(remotes, vec![remote.cid]);
}

#[test]
fn filters_parse_names_and_groups_and_reject_unknown_names() {
    let error = StatusFilter::parse("error").unwrap();
    for s in [
        TrackerStatus::PinError,
        TrackerStatus::UnpinError,
        TrackerStatus::ClusterError,
    ] {
        assert!(error.matches(s) && s.is_error());
    }
    assert!(!error.matches(TrackerStatus::Pinned));
    assert_eq!(
        StatusFilter::parse("pin_queued, unpin_queued").unwrap(),
        StatusFilter::QUEUED
    );
    assert_eq!(StatusFilter::parse("").unwrap(), StatusFilter::ALL);
    assert_eq!(StatusFilter::parse("undefined").unwrap(), StatusFilter::ALL);
    assert!(StatusFilter::ALL.matches(TrackerStatus::Remote));
    assert_eq!(
        StatusFilter::parse("pinned,remote").unwrap().to_string(),
        "pinned,remote"
    );
    let err = StatusFilter::parse("pinned,pined").unwrap_err();
    assert_eq!(err.name, "pined");
    assert!(err.to_string().contains("unexpectedly_unpinned"), "{err}");
    for s in TrackerStatus::ALL {
        assert_eq!(TrackerStatus::from_name(s.as_str()), Some(s));
    }
}

#[test]
fn a_zero_setting_is_refused_by_name() {
    let err = PinTracker::new(
        TrackerConfig {
            concurrent_pins: 0,
            ..TrackerConfig::default()
        },
        PeerIdentity::new(peer(1), "p"),
    )
    .err()
    .unwrap();
    assert_eq!(
        err,
        TrackerConfigError {
            field: "concurrent_pins"
        }
    );
    assert_eq!(
        err.to_string(),
        "pin_tracker.concurrent_pins must be greater than 0"
    );
}

/// ipfs-cluster's GlobalPinInfo JSON, as its REST API writes it for two peers.
#[test]
fn global_pin_info_json_is_ipfs_clusters() {
    let mut t = tracker(TrackerConfig::default());
    let ipfs_peer = peer(9);
    t.set_ipfs(
        Some(ipfs_peer),
        vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
    );
    let mut pin = local_pin(1);
    pin.metadata.insert("owner".into(), "docs".into());
    let mut daemon = DaemonPins::new();
    daemon.insert(&pin.cid, IpfsPinType::Recursive);
    let here = t
        .statuses(vec![pin.clone()], &daemon, StatusFilter::ALL)
        .next()
        .unwrap();

    let mut other = tracker_for(2);
    other.track(pin.clone(), NOW).unwrap();
    let mut there = other.operation_status(&pin.cid).unwrap();
    there.short.timestamp = Some(NOW + 250_000_000);

    let mut global = GlobalPinInfo::new(here.clone());
    global.add(there);
    let json = serde_json::to_string(&global).unwrap();
    let p1_view = format!(
        concat!(
            r#""{p1}":{{"peername":"peer-one","ipfs_peer_id":"{ipfs}","#,
            r#""ipfs_peer_addresses":["/ip4/127.0.0.1/tcp/4001"],"status":"pinned","#,
            r#""timestamp":"2023-11-14T22:13:20Z","error":"","attempt_count":0,"priority_pin":false}}"#,
        ),
        p1 = peer(1),
        ipfs = ipfs_peer,
    );
    let p2_view = format!(
        concat!(
            r#""{p2}":{{"peername":"peer-two","status":"remote","#,
            r#""timestamp":"2023-11-14T22:13:20.25Z","error":"","attempt_count":0,"priority_pin":false}}"#,
        ),
        p2 = peer(2),
    );
    // Go writes map keys in byte order.
    let mut views = [
        (peer(1).to_base58(), p1_view),
        (peer(2).to_base58(), p2_view),
    ];
    views.sort();
    let expected = format!(
        concat!(
            r#"{{"cid":"{cid}","name":"pin 1","allocations":["{p1}"],"origins":[],"#,
            r#""created":"2023-11-14T22:13:20Z","metadata":{{"owner":"docs"}},"peer_map":{{{views}}}}}"#,
        ),
        cid = pin.cid,
        p1 = peer(1),
        views = views.map(|(_, v)| v).join(","),
    );
    assert_eq!(json, expected);
    let back: GlobalPinInfo = serde_json::from_str(&json).unwrap();
    assert_eq!(back, global);
    assert!(global.matches(StatusFilter::of(&[TrackerStatus::Remote])));
    assert!(!global.matches(StatusFilter::ERROR));

    let info_json = serde_json::to_value(&here).unwrap();
    let keys: Vec<&str> = info_json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "cid",
        "name",
        "peer",
        "allocations",
        "origins",
        "created",
        "metadata",
        "peername",
        "ipfs_peer_id",
        "ipfs_peer_addresses",
        "status",
        "timestamp",
        "error",
        "attempt_count",
        "priority_pin",
    ] {
        assert!(keys.contains(&key), "{key} missing from {info_json}");
    }
    let back: PinInfo = serde_json::from_value(info_json).unwrap();
    assert_eq!(back, here);
}

/// A tracker on peer `n` (named "peer-two" for 2) for which the test pins are remote.
fn tracker_for(n: u64) -> PinTracker {
    let name = if n == 2 { "peer-two" } else { "peer" };
    PinTracker::new(TrackerConfig::default(), PeerIdentity::new(peer(n), name)).unwrap()
}

#[test]
fn a_cluster_error_view_does_not_overwrite_the_pin_fields() {
    let t = tracker(TrackerConfig::default());
    let pin = local_pin(1);
    let good = t.status(pin.cid, Some(&pin), Ok(None), NOW);
    let mut global = GlobalPinInfo::new(good);
    let mut failed = PinInfo {
        name: String::new(),
        peer: peer(3),
        ..t.status(pin.cid, Some(&pin), Err("timeout".into()), NOW)
    };
    failed.allocations.clear();
    global.add(failed);
    assert_eq!(global.name, "pin 1");
    assert_eq!(global.allocations, vec![peer(1)]);
    assert_eq!(global.peer_map.len(), 2);
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Step {
    Track(u64),
    Untrack(u64),
    /// Polls and ends the `usize`-th running operation, succeeding or not.
    End(usize, bool),
    Poll,
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..6u64).prop_map(Step::Track),
        2 => (0..6u64).prop_map(Step::Untrack),
        4 => (0..12usize, prop::bool::weighted(0.7)).prop_map(|(i, ok)| Step::End(i, ok)),
        1 => Just(Step::Poll),
        1 => Just(Step::Tick),
    ]
}

/// Carries out actions as a daemon would: a started operation takes effect when it ends
/// successfully, unless it was cancelled first.
struct Daemon {
    pinned: BTreeSet<Cid>,
    running: Vec<(Cid, OpId, OperationKind, bool)>,
}

impl Daemon {
    fn take(&mut self, actions: Vec<TrackerAction>, concurrency: usize) {
        for action in actions {
            match action {
                TrackerAction::Start(d) => {
                    assert!(
                        !self.running.iter().any(|r| r.0 == d.pin.cid),
                        "two operations on one CID at once"
                    );
                    self.running.push((d.pin.cid, d.id, d.kind, false));
                }
                TrackerAction::Cancel { id, .. } => {
                    let r = self.running.iter_mut().find(|r| r.1 == id).unwrap();
                    r.3 = true;
                }
            }
        }
        let pins = self
            .running
            .iter()
            .filter(|r| r.2 == OperationKind::Pin)
            .count();
        assert!(pins <= concurrency);
    }

    fn end(&mut self, t: &mut PinTracker, index: usize, ok: bool, now: i64) {
        if self.running.is_empty() {
            return;
        }
        let (cid, id, kind, cancelled) = self.running.remove(index % self.running.len());
        let ok = ok && !cancelled;
        if ok {
            match kind {
                OperationKind::Pin => self.pinned.insert(cid),
                OperationKind::Unpin | OperationKind::Remote => self.pinned.remove(&cid),
            };
        }
        let result = if ok { Ok(()) } else { Err("failed".into()) };
        t.complete(&cid, id, result, now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens on the way, once failures stop and every operation has ended, the
    /// daemon holds exactly the pins the cluster last asked for, and the tracker is empty.
    #[test]
    fn the_daemon_ends_as_the_cluster_wants(steps in prop::collection::vec(step(), 1..80)) {
        let config = TrackerConfig {
            concurrent_pins: 2,
            max_pin_queue_size: 4,
            retry_base_delay_ms: 1_000,
            retry_max_delay_ms: 4_000,
            ..TrackerConfig::default()
        };
        let mut t = tracker(config);
        let mut daemon = Daemon { pinned: BTreeSet::new(), running: Vec::new() };
        let mut wanted: BTreeMap<Cid, bool> = BTreeMap::new();
        let mut now = NOW;
        for step in steps {
            match step {
                Step::Track(n) => {
                    wanted.insert(cid(n), true);
                    // A full queue records the failure and retries later.
                    let _ = t.track(local_pin(n), now);
                }
                Step::Untrack(n) => {
                    wanted.insert(cid(n), false);
                    let _ = t.untrack(cid(n), now);
                }
                Step::End(i, ok) => daemon.end(&mut t, i, ok, now),
                Step::Poll => {}
                Step::Tick => now += 2 * SECOND,
            }
            daemon.take(t.poll(now), 2);
            prop_assert!(t.queued() <= 4);
        }
        // Failures stop: run until the tracker has nothing left.
        for _ in 0..10_000 {
            daemon.take(t.poll(now), 2);
            if daemon.running.is_empty() {
                match t.next_retry_at() {
                    Some(at) => now = now.max(at),
                    None if t.queued() == 0 => break,
                    None => {}
                }
            } else {
                daemon.end(&mut t, 0, true, now);
            }
        }
        prop_assert_eq!(t.running(), 0);
        prop_assert_eq!(t.queued(), 0);
        for (c, want) in &wanted {
            prop_assert_eq!(daemon.pinned.contains(c), *want, "{}", c);
            prop_assert!(t.operation_status(c).is_none());
        }
    }
}

proptest! {
    /// A listing with pins and unpins recorded after it answers as a model map does, and
    /// counts as one; a clone taken on the way does not see later records.
    #[test]
    fn recorded_changes_override_the_listing(
        listed in prop::collection::btree_set(0u64..40, 0..30),
        changes in prop::collection::vec((0u64..40, any::<bool>()), 0..60),
    ) {
        let mut daemon = DaemonPins::new();
        let mut model: BTreeMap<u64, IpfsPinType> = BTreeMap::new();
        for n in &listed {
            daemon.insert(&cid(*n), IpfsPinType::Recursive);
            model.insert(*n, IpfsPinType::Recursive);
        }
        let before = daemon.clone();
        for (n, pinned) in &changes {
            if *pinned {
                daemon.record(&cid(*n), Some(IpfsPinType::Direct));
                model.insert(*n, IpfsPinType::Direct);
            } else {
                daemon.record(&cid(*n), None);
                model.remove(n);
            }
        }
        for n in 0..40 {
            prop_assert_eq!(daemon.get(&cid(n)), model.get(&n).copied());
            // CIDv1 of the same content answers the same.
            prop_assert_eq!(daemon.get(&Cid::new_v1(0x55, *cid(n).hash())), model.get(&n).copied());
            prop_assert_eq!(before.get(&cid(n)), listed.contains(&n).then_some(IpfsPinType::Recursive));
        }
        prop_assert_eq!(daemon.len(), model.len());
        prop_assert_eq!(before.len(), listed.len());
    }
}
