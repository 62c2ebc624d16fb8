//! The peer monitor: latest live metrics, ring windows, alerts once per outage, peerset.

mod support;

use pinfold_core::codec::metric::Metric;
use pinfold_core::monitor::{
    ping_metric, Monitor, PingInfo, DEFAULT_PING_INTERVAL_MS, PING_METRIC, WINDOW_CAP,
};
use support::peer;

const SECOND: i64 = 1_000_000_000;

fn ping(n: u64, now: i64) -> Metric {
    ping_metric(
        &peer(n),
        &PingInfo {
            peer_name: format!("peer-{n}"),
            ipfs_id: "QmIpfs".into(),
            ..PingInfo::default()
        },
        DEFAULT_PING_INTERVAL_MS,
        now,
    )
}

#[test]
fn ping_lives_twice_its_interval_and_carries_the_peer_in_json() {
    let m = ping(1, 0);
    assert_eq!(m.expire, 30 * SECOND);
    assert!(m.valid);
    let value: serde_json::Value = serde_json::from_str(&m.value).unwrap();
    assert_eq!(value["peer_name"], "peer-1");
    assert_eq!(value["ipfs_id"], "QmIpfs");
    assert!(value["ipfs_addresses"].as_array().unwrap().is_empty());
    // Exactly Go's three keys when there are no swarm addresses to add.
    assert_eq!(value.as_object().unwrap().len(), 3);
    let info = PingInfo {
        cluster_addresses: vec!["/ip4/10.0.0.1/tcp/9096/p2p/12D3KooW".to_owned()],
        role: "relay".to_owned(),
        ..PingInfo::default()
    };
    let with = ping_metric(&peer(1), &info, DEFAULT_PING_INTERVAL_MS, 0);
    let value: serde_json::Value = serde_json::from_str(&with.value).unwrap();
    assert_eq!(value["cluster_addresses"][0], info.cluster_addresses[0]);
    assert_eq!(value["role"], "relay");
    assert_eq!(PingInfo::of(&with), Some(info));
    // A Go peer's ping reads too, without the addresses.
    assert_eq!(PingInfo::of(&m).unwrap().peer_name, "peer-1");
}

#[test]
fn latest_metrics_are_the_live_ones_and_the_peerset_follows_ping() {
    let mut monitor = Monitor::new();
    monitor.receive(ping(1, 0), 0);
    monitor.receive(ping(2, 0), 0);
    let mut invalid = ping(3, 0);
    invalid.valid = false;
    monitor.receive(invalid, 0);
    let live: Vec<_> = monitor
        .latest_metrics(PING_METRIC, 10 * SECOND)
        .into_iter()
        .map(|m| m.peer)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(live.contains(&peer(1)) && live.contains(&peer(2)));
    assert_eq!(
        monitor
            .peer_latest(PING_METRIC, &peer(1))
            .unwrap()
            .received_at,
        0
    );

    let me = peer(7);
    assert_eq!(
        monitor.peerset(&me, 10 * SECOND).len(),
        3,
        "two peers and me"
    );
    // Peer 2 keeps pinging, peer 1 falls silent.
    monitor.receive(ping(2, 25 * SECOND), 25 * SECOND);
    let peers = monitor.peerset(&me, 40 * SECOND);
    assert_eq!(peers.len(), 2);
    assert!(peers.contains(&peer(2)) && peers.contains(&me));
    let mut sorted = peers.clone();
    sorted.sort_by_key(|p| p.to_bytes());
    assert_eq!(peers, sorted, "peers in byte order");
}

#[test]
fn windows_keep_the_last_metrics_only() {
    let mut monitor = Monitor::new();
    for i in 0..(WINDOW_CAP as i64 + 10) {
        monitor.receive(ping(1, i * SECOND), i * SECOND);
    }
    let window: Vec<_> = monitor.peer_window(PING_METRIC, &peer(1)).collect();
    assert_eq!(window.len(), WINDOW_CAP);
    assert_eq!(window[0].received_at, 10 * SECOND);
    assert_eq!(monitor.metric_names().collect::<Vec<_>>(), [PING_METRIC]);
}

#[test]
fn an_expired_peer_raises_one_alert_per_outage() {
    let mut monitor = Monitor::new();
    monitor.receive(ping(1, 0), 0);
    monitor.receive(ping(2, 0), 0);
    assert!(monitor.check(20 * SECOND).is_empty());
    monitor.receive(ping(2, 20 * SECOND), 20 * SECOND);

    let alerts = monitor.check(31 * SECOND);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].metric.peer, peer(1));
    assert_eq!(alerts[0].metric.name, PING_METRIC);
    assert_eq!(alerts[0].triggered_at, 31 * SECOND);
    assert!(
        monitor.check(46 * SECOND).is_empty(),
        "still the same outage"
    );

    // Peer 1 comes back as peer 2 falls silent; then peer 1 is silent again: a new
    // outage, a new alert.
    monitor.receive(ping(1, 50 * SECOND), 50 * SECOND);
    let alerts = monitor.check(60 * SECOND);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].metric.peer, peer(2));
    let alerts = monitor.check(120 * SECOND);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].metric.peer, peer(1));

    monitor.remove_peer(&peer(1));
    assert!(monitor.peer_latest(PING_METRIC, &peer(1)).is_none());
}

#[test]
fn alerts_are_written_as_ipfs_cluster_writes_them() {
    let mut monitor = Monitor::new();
    monitor.receive(ping(1, 0), 0);
    let alert = monitor.check(31 * SECOND + 500_000_000).remove(0);
    let json = serde_json::to_value(&alert).unwrap();
    let metric = serde_json::to_value(&alert.metric).unwrap();
    for (key, value) in metric.as_object().unwrap() {
        assert_eq!(&json[key], value, "{key} is the metric's");
    }
    assert_eq!(json["triggered_at"], "1970-01-01T00:00:31.5Z");
}

/// A pinfold peer's ping, sent at `clock` (the sender's time).
fn timed_ping(n: u64, clock: i64) -> Metric {
    let info = PingInfo {
        peer_name: format!("peer-{n}"),
        sent_at: clock,
        ..PingInfo::default()
    };
    ping_metric(&peer(n), &info, DEFAULT_PING_INTERVAL_MS, clock)
}

fn sorted(mut peers: Vec<libp2p_identity::PeerId>) -> Vec<libp2p_identity::PeerId> {
    peers.sort();
    peers
}

#[test]
fn a_peer_whose_clock_is_an_hour_off_is_judged_by_its_own_clock() {
    const HOUR: i64 = 3600 * SECOND;
    let now = 1_700_000_000 * SECOND;
    let me = peer(7);
    let mut monitor = Monitor::new();
    monitor.receive(timed_ping(1, now - HOUR), now);
    monitor.receive(timed_ping(2, now + HOUR), now);
    // A Go peer says no time: its expiry is read in our clock, Go's own rule.
    monitor.receive(ping(3, now - HOUR), now);
    assert_eq!(monitor.clock_offset(&peer(1)), -HOUR);
    assert_eq!(monitor.clock_offset(&peer(2)), HOUR);
    assert_eq!(monitor.clock_offset(&peer(3)), 0);

    let later = now + 20 * SECOND;
    assert_eq!(
        sorted(monitor.peerset(&me, later)),
        sorted(vec![peer(1), peer(2), me])
    );
    let alerts: Vec<_> = monitor
        .check(later)
        .into_iter()
        .map(|a| a.metric.peer)
        .collect();
    assert_eq!(alerts, [peer(3)]);
    // The clocks are -1 h, 0 and +1 h: the cluster's time is ours.
    assert_eq!(monitor.cluster_time(&me, later), later);

    // Past the pings' 30 s of life, in each sender's clock, both are lost.
    let silent = now + 31 * SECOND;
    assert_eq!(monitor.peerset(&me, silent), [me]);
    let alerts = sorted(
        monitor
            .check(silent)
            .into_iter()
            .map(|a| a.metric.peer)
            .collect(),
    );
    assert_eq!(alerts, sorted(vec![peer(1), peer(2)]));

    // With only the slow peer and us, both of us read the slower clock.
    monitor.receive(timed_ping(1, silent - HOUR), silent);
    assert_eq!(monitor.cluster_time(&me, silent), silent - HOUR);
    let mut theirs = Monitor::new();
    theirs.receive(timed_ping(7, silent), silent - HOUR);
    assert_eq!(theirs.cluster_time(&peer(1), silent - HOUR), silent - HOUR);
}

#[test]
fn metrics_before_a_peers_first_ping_raise_no_alert_and_count_once_it_pings() {
    const HOUR: i64 = 3600 * SECOND;
    let now = 1_700_000_000 * SECOND;
    let mut monitor = Monitor::new();
    // A freespace metric from a peer an hour behind, before its first ping.
    let freespace = Metric {
        name: "freespace".into(),
        peer: peer(1),
        value: "100".into(),
        expire: now - HOUR + 30 * SECOND,
        valid: true,
        weight: 100,
        partitionable: false,
        received_at: 0,
    };
    monitor.receive(freespace, now);
    assert!(monitor.check(now + SECOND).is_empty());
    assert!(monitor.latest_metrics("freespace", now + SECOND).is_empty());
    monitor.receive(timed_ping(1, now - HOUR + 2 * SECOND), now + 2 * SECOND);
    assert!(monitor.check(now + 3 * SECOND).is_empty());
    assert_eq!(
        monitor.latest_metrics("freespace", now + 3 * SECOND).len(),
        1
    );
}

#[test]
fn a_ping_held_up_on_its_way_does_not_skew_the_clock_offset() {
    let now = 1_700_000_000 * SECOND;
    let mut monitor = Monitor::new();
    // Same clock; the third ping was read 5 s after it was sent.
    monitor.receive(timed_ping(1, now), now + 10_000_000);
    monitor.receive(timed_ping(1, now + SECOND), now + SECOND + 20_000_000);
    monitor.receive(timed_ping(1, now + 2 * SECOND), now + 7 * SECOND);
    assert_eq!(monitor.clock_offset(&peer(1)), -10_000_000);
    // Its ping expired 30 s after it was sent, in its clock: not 5 s later.
    let alerts = monitor.check(now + 2 * SECOND + 31 * SECOND);
    assert_eq!(alerts.len(), 1);
}
