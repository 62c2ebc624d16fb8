//! Who is alive and what they measure: ipfs-cluster v1.1.6's peer monitor (`pubsubmon`
//! with its metric store and checker), as a state machine fed metrics and the time.
//!
//! Every metric received goes into a ring window per metric name and peer. The latest
//! metric of a peer counts while it is valid and unexpired. When it expires, [`Monitor::check`]
//! raises one alert for that peer and metric; the next live metric ends the outage. The
//! peerset is every peer whose `ping` metric is live, plus the local peer.
//!
//! A metric's `expire` is in its sender's clock. pinfold peers put their send time in
//! their pings, from which the monitor keeps each peer's clock offset and judges that
//! peer's metrics by its own clock, so that peers whose clocks disagree do not take each
//! other for dead (or for alive long after). Go peers send no time and count as agreeing,
//! which is Go's own rule. The cluster's time, for decisions all peers must take alike
//! (pin expiry), is the lower median of the live peers' clocks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::codec::metric::Metric;

/// The metric every peer publishes to say it is alive.
pub const PING_METRIC: &str = "ping";
/// Metrics kept per peer and name (`DefaultWindowCap`).
pub const WINDOW_CAP: usize = 25;
/// Clock samples kept per peer. A sample is the peer's send time minus our receive time:
/// the offset less however long the ping took to arrive and be read, so the largest recent
/// sample is the estimate, and one ping held up under load does not skew it.
pub const CLOCK_SAMPLES: usize = 8;
/// How often peers publish `ping`, by default (`monitor_ping_interval`), in milliseconds.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 15_000;

/// A peer whose metric expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// The last metric received from the peer under that name.
    pub metric: Metric,
    /// When the alert was raised, Unix nanoseconds.
    pub triggered_at: i64,
}

/// ipfs-cluster's `api.Alert` JSON: the metric's fields and `triggered_at` (RFC 3339).
impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct AlertJson<'a> {
            #[serde(flatten)]
            metric: &'a Metric,
            triggered_at: String,
        }
        AlertJson {
            metric: &self.metric,
            triggered_at: crate::tracker::info::nanos_to_json(Some(self.triggered_at)),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Alert {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct AlertJson {
            #[serde(flatten)]
            metric: Metric,
            #[serde(default)]
            triggered_at: String,
        }
        let json = AlertJson::deserialize(deserializer)?;
        let triggered_at =
            crate::tracker::info::nanos_from_json("triggered_at", &json.triggered_at)
                .map_err(serde::de::Error::custom)?
                .unwrap_or(0);
        Ok(Alert {
            metric: json.metric,
            triggered_at,
        })
    }
}

/// Metrics received from the cluster, and the alerts they lead to.
#[derive(Default)]
pub struct Monitor {
    /// Windows by metric name, then peer, newest metric last.
    windows: BTreeMap<String, BTreeMap<PeerBytes, VecDeque<Metric>>>,
    /// Peers and metrics already alerted on in their current outage.
    alerted: BTreeSet<(String, PeerBytes)>,
    /// Each peer's clock minus ours, in nanoseconds, sampled from the send times of its
    /// latest pings that had one ([`CLOCK_SAMPLES`]). Peers missing here count as agreeing
    /// with ours.
    clock_offsets: BTreeMap<PeerBytes, VecDeque<i64>>,
}

/// Peers ordered by their bytes, as Go orders `peer.ID` strings.
type PeerBytes = Vec<u8>;

impl Monitor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a metric received at `now` (Unix nanoseconds). A live metric ends any outage
    /// of its peer and name. A ping with a send time updates its peer's clock offset.
    pub fn receive(&mut self, mut metric: Metric, now: i64) {
        metric.received_at = now;
        let peer = metric.peer.to_bytes();
        if metric.name == PING_METRIC {
            if let Some(sent_at) = PingInfo::of(&metric).map(|p| p.sent_at).filter(|&t| t > 0) {
                let samples = self.clock_offsets.entry(peer.clone()).or_default();
                if samples.len() == CLOCK_SAMPLES {
                    samples.pop_front();
                }
                samples.push_back(sent_at.saturating_sub(now));
            }
        }
        if metric.is_live(self.clock_of(&peer, now)) {
            self.alerted.remove(&(metric.name.clone(), peer.clone()));
        }
        let window = self
            .windows
            .entry(metric.name.clone())
            .or_default()
            .entry(peer)
            .or_default();
        if window.len() == WINDOW_CAP {
            window.pop_front();
        }
        window.push_back(metric);
    }

    /// `now` in our clock, read in `peer`'s clock.
    fn clock_of(&self, peer: &[u8], now: i64) -> i64 {
        now.saturating_add(self.offset_of(peer))
    }

    fn offset_of(&self, peer: &[u8]) -> i64 {
        self.clock_offsets
            .get(peer)
            .and_then(|samples| samples.iter().max().copied())
            .unwrap_or(0)
    }

    /// `peer`'s clock minus ours, in nanoseconds; 0 when it never said its time.
    pub fn clock_offset(&self, peer: &PeerId) -> i64 {
        self.offset_of(&peer.to_bytes())
    }

    /// The cluster's time at our `now`: the lower median of the clocks of the peers with a
    /// live `ping` and ours. Every peer that sees the same live peers reads the same time,
    /// up to network delay, however far one clock is off.
    pub fn cluster_time(&self, local: &PeerId, now: i64) -> i64 {
        let mut offsets: Vec<i64> = self
            .peerset(local, now)
            .iter()
            .map(|p| if p == local { 0 } else { self.clock_offset(p) })
            .collect();
        offsets.sort_unstable();
        now.saturating_add(offsets[(offsets.len() - 1) / 2])
    }

    /// The latest live metric of each peer for `name`, in peer order (Go's `LatestMetrics`).
    pub fn latest_metrics(&self, name: &str, now: i64) -> Vec<Metric> {
        self.windows
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|(peer, window)| {
                window
                    .back()
                    .filter(|m| m.is_live(self.clock_of(peer, now)))
            })
            .cloned()
            .collect()
    }

    /// The latest metric of one peer for `name`, live or not.
    pub fn peer_latest(&self, name: &str, peer: &PeerId) -> Option<&Metric> {
        self.windows.get(name)?.get(&peer.to_bytes())?.back()
    }

    /// The window of one peer's metrics for `name`, oldest first.
    pub fn peer_window(&self, name: &str, peer: &PeerId) -> impl Iterator<Item = &Metric> {
        self.windows
            .get(name)
            .and_then(|peers| peers.get(&peer.to_bytes()))
            .into_iter()
            .flatten()
    }

    /// The names of every metric received.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.windows.keys().map(String::as_str)
    }

    /// The peers with a live `ping`, and `local`, in peer order.
    pub fn peerset(&self, local: &PeerId, now: i64) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .latest_metrics(PING_METRIC, now)
            .into_iter()
            .map(|m| m.peer)
            .collect();
        if !peers.contains(local) {
            peers.push(*local);
            peers.sort_by_cached_key(|p| p.to_bytes());
        }
        peers
    }

    /// Raises an alert for each peer whose latest valid metric of some name has expired,
    /// once per outage (Go's `CheckAll`, with `MaxAlertThreshold` 1). A peer that has not
    /// pinged yet raises none: its clock is not known, and its first metrics may come
    /// before its first ping.
    pub fn check(&mut self, now: i64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let pinged = self.windows.get(PING_METRIC);
        for (name, peers) in &self.windows {
            for (peer, window) in peers {
                let Some(latest) = window.back() else {
                    continue;
                };
                if !pinged.is_some_and(|p| p.contains_key(peer)) {
                    continue;
                }
                if !latest.valid || self.clock_of(peer, now) <= latest.expire {
                    continue;
                }
                let key = (name.clone(), peer.clone());
                if self.alerted.insert(key) {
                    alerts.push(Alert {
                        metric: latest.clone(),
                        triggered_at: now,
                    });
                }
            }
        }
        alerts
    }

    /// Forgets a peer that left the cluster.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        let peer = peer.to_bytes();
        for peers in self.windows.values_mut() {
            peers.remove(&peer);
        }
        self.alerted.retain(|(_, p)| *p != peer);
        self.clock_offsets.remove(&peer);
    }
}

/// What a `ping` metric says about its peer: its JSON value, written and read here only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PingInfo {
    pub peer_name: String,
    pub ipfs_id: String,
    pub ipfs_addresses: Vec<String>,
    /// The peer's own swarm addresses (with `/p2p/`), so that peers that met through a
    /// bootstrapper can connect to each other; pinfold's addition, which Go peers ignore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_addresses: Vec<String>,
    /// The peer's role (`full`, `relay` or `follower`), for dashboards; pinfold's
    /// addition, absent from Go peers' pings.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// When the peer sent the ping, Unix nanoseconds in its clock; pinfold's addition,
    /// from which receivers learn how far its clock is from theirs.
    #[serde(skip_serializing_if = "is_zero")]
    pub sent_at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl PingInfo {
    /// What a received `ping` metric says; `None` when its value is not a ping's JSON.
    pub fn of(metric: &Metric) -> Option<Self> {
        serde_json::from_str(&metric.value).ok()
    }
}

/// The `ping` metric a peer publishes every `interval_ms`, valid for twice that (Go's
/// `sendPingMetric`), with the JSON value `{"peer_name","ipfs_id","ipfs_addresses"}` and,
/// when set, `"cluster_addresses"`, `"role"` and `"sent_at"`.
pub fn ping_metric(local: &PeerId, info: &PingInfo, interval_ms: u64, now: i64) -> Metric {
    let value = serde_json::to_string(info).expect("strings always serialize");
    Metric {
        name: PING_METRIC.into(),
        peer: *local,
        value,
        expire: now + ttl_nanos(2 * interval_ms),
        valid: true,
        weight: 0,
        partitionable: false,
        received_at: 0,
    }
}

/// A time to live in milliseconds as nanoseconds.
pub fn ttl_nanos(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_reads_back_what_it_writes() {
        let alert = Alert {
            metric: Metric {
                name: "ping".into(),
                peer: crate::test_support::peer(3),
                value: String::new(),
                expire: 1_700_000_000_000_000_000,
                valid: true,
                weight: 0,
                partitionable: false,
                received_at: 1_699_999_990_000_000_000,
            },
            triggered_at: 1_700_000_001_500_000_000,
        };
        let json = serde_json::to_string(&alert).unwrap();
        assert!(
            json.contains(r#""triggered_at":"2023-11-14T22:13:21.5Z""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), alert);
    }
}
