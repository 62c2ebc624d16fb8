//! What a peer measures about itself for the allocator: ipfs-cluster v1.1.6's informers
//! (`informer/disk`, `informer/tags`, `informer/pinqueue`), as functions from a reading to
//! the metric to publish.

use std::collections::BTreeMap;

use libp2p_identity::PeerId;
use serde::{Deserialize, Deserializer};

use crate::codec::metric::Metric;
use crate::monitor::ttl_nanos;

/// How long informer metrics stay valid by default, in milliseconds.
pub const DEFAULT_METRIC_TTL_MS: u64 = 30_000;
/// The `pinqueue` weight counts queued pins in buckets of this size by default.
pub const DEFAULT_PINQUEUE_BUCKET: u64 = 100_000;
/// The `pinqueue` metric's name.
pub const PINQUEUE_METRIC: &str = "pinqueue";
/// The name of the pin count informer's metric.
pub const NUMPIN_METRIC: &str = "numpin";

/// The IPFS daemon's answer to `repo/stat?size-only=true` (numbers; strings are read too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RepoStat {
    #[serde(rename = "RepoSize", deserialize_with = "number_or_string")]
    pub repo_size: u64,
    #[serde(rename = "StorageMax", deserialize_with = "number_or_string")]
    pub storage_max: u64,
}

/// Reads a count the daemon sends as a number (Kubo's `repo/stat`) or as a string (Kubo's
/// `add` sizes).
pub fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(text) => text
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a byte count"))),
    }
}

/// Which disk metric the disk informer publishes (`informer.disk.metric_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskMetric {
    /// `freespace`: StorageMax - RepoSize, weight the same; invalid when nothing is free.
    #[default]
    FreeSpace,
    /// `reposize`: the repository size, weight its negation (smaller repos first).
    RepoSize,
}

impl DiskMetric {
    pub fn name(self) -> &'static str {
        match self {
            DiskMetric::FreeSpace => "freespace",
            DiskMetric::RepoSize => "reposize",
        }
    }
}

fn metric(
    name: String,
    peer: &PeerId,
    value: String,
    weight: i64,
    ttl_ms: u64,
    now: i64,
) -> Metric {
    Metric {
        name,
        peer: *peer,
        value,
        expire: now.saturating_add(ttl_nanos(ttl_ms)),
        valid: true,
        weight,
        partitionable: false,
        received_at: 0,
    }
}

/// The disk informer's metric from a repo stat, or an invalid one when the daemon could
/// not be asked (`stat` is `None`).
pub fn disk_metric(
    kind: DiskMetric,
    stat: Option<&RepoStat>,
    peer: &PeerId,
    ttl_ms: u64,
    now: i64,
) -> Metric {
    let mut m = metric(kind.name().into(), peer, String::new(), 0, ttl_ms, now);
    let Some(stat) = stat else {
        m.valid = false;
        return m;
    };
    match kind {
        DiskMetric::FreeSpace => {
            let free = stat.storage_max.saturating_sub(stat.repo_size);
            m.valid = free > 0;
            m.weight = i64::try_from(free).unwrap_or(i64::MAX);
            m.value = free.to_string();
        }
        DiskMetric::RepoSize => {
            m.weight = -i64::try_from(stat.repo_size).unwrap_or(i64::MAX);
            m.value = stat.repo_size.to_string();
        }
    }
    m
}

/// The tags informer's metrics: `tag:<name>` = value for each tag, partitionable, weight 0;
/// with no tags, one invalid `tag:none`.
pub fn tag_metrics(
    tags: &BTreeMap<String, String>,
    peer: &PeerId,
    ttl_ms: u64,
    now: i64,
) -> Vec<Metric> {
    if tags.is_empty() {
        let mut none = metric("tag:none".into(), peer, String::new(), 0, ttl_ms, now);
        none.valid = false;
        none.partitionable = true;
        return vec![none];
    }
    tags.iter()
        .map(|(name, value)| {
            let mut m = metric(format!("tag:{name}"), peer, value.clone(), 0, ttl_ms, now);
            m.partitionable = true;
            m
        })
        .collect()
}

/// The tags a peer has when none are configured (`informer.tags.tags`).
pub fn default_tags() -> BTreeMap<String, String> {
    BTreeMap::from([("group".to_owned(), "default".to_owned())])
}

/// The pin queue informer's metric: the number of queued pins, weighted so that shorter
/// queues come first, counted in buckets of `bucket` pins (0: no buckets). `None` when the
/// tracker could not be asked.
pub fn pinqueue_metric(
    queued: Option<u64>,
    bucket: u64,
    peer: &PeerId,
    ttl_ms: u64,
    now: i64,
) -> Metric {
    let count = queued.unwrap_or(0);
    let mut weight = -i64::try_from(count).unwrap_or(i64::MAX);
    if bucket > 0 {
        weight /= i64::try_from(bucket).unwrap_or(i64::MAX);
    }
    let mut m = metric(
        PINQUEUE_METRIC.into(),
        peer,
        count.to_string(),
        weight,
        ttl_ms,
        now,
    );
    m.valid = queued.is_some();
    m
}

/// The pin count informer's metric: how many pins the IPFS daemon holds, weighted so that
/// peers with fewer pins come first (Go's `numpin` sets no weight, so its allocator falls
/// back to comparing the counts as strings). `None` when the daemon could not be asked.
pub fn numpin_metric(pins: Option<u64>, peer: &PeerId, ttl_ms: u64, now: i64) -> Metric {
    let count = pins.unwrap_or(0);
    let weight = -i64::try_from(count).unwrap_or(i64::MAX);
    let mut m = metric(
        NUMPIN_METRIC.into(),
        peer,
        count.to_string(),
        weight,
        ttl_ms,
        now,
    );
    m.valid = pins.is_some();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            .parse()
            .unwrap()
    }

    #[test]
    fn repo_stat_reads_kubo_numbers_and_js_ipfs_strings() {
        let kubo: RepoStat =
            serde_json::from_str(r#"{"RepoSize":100,"StorageMax":1000,"NumObjects":3}"#).unwrap();
        let js: RepoStat =
            serde_json::from_str(r#"{"RepoSize":"100","StorageMax":"1000"}"#).unwrap();
        assert_eq!(kubo, js);
        assert!(serde_json::from_str::<RepoStat>(r#"{"RepoSize":"x","StorageMax":1}"#).is_err());
    }

    #[test]
    fn freespace_is_storage_max_minus_repo_size_and_invalid_when_full() {
        let p = peer();
        let stat = RepoStat {
            repo_size: 100,
            storage_max: 1000,
        };
        let m = disk_metric(DiskMetric::FreeSpace, Some(&stat), &p, 30_000, 5);
        assert_eq!(
            (m.name.as_str(), m.value.as_str(), m.weight, m.valid),
            ("freespace", "900", 900, true)
        );
        assert_eq!(m.expire, 5 + 30_000_000_000);
        assert!(!m.partitionable);
        let full = RepoStat {
            repo_size: 1000,
            storage_max: 1000,
        };
        assert!(!disk_metric(DiskMetric::FreeSpace, Some(&full), &p, 30_000, 0).valid);
        assert!(!disk_metric(DiskMetric::FreeSpace, None, &p, 30_000, 0).valid);
        let size = disk_metric(DiskMetric::RepoSize, Some(&stat), &p, 30_000, 0);
        assert_eq!((size.value.as_str(), size.weight), ("100", -100));
    }

    #[test]
    fn tags_are_partitionable_and_absent_tags_are_invalid() {
        let p = peer();
        let tags = tag_metrics(&default_tags(), &p, 30_000, 0);
        assert_eq!(tags.len(), 1);
        assert_eq!(
            (tags[0].name.as_str(), tags[0].value.as_str()),
            ("tag:group", "default")
        );
        assert!(tags[0].partitionable && tags[0].valid);
        let none = tag_metrics(&BTreeMap::new(), &p, 30_000, 0);
        assert_eq!(none[0].name, "tag:none");
        assert!(!none[0].valid);
    }

    #[test]
    fn numpin_puts_peers_with_fewer_pins_first() {
        let p = peer();
        let few = numpin_metric(Some(9), &p, 10_000, 0);
        let many = numpin_metric(Some(10), &p, 10_000, 0);
        assert_eq!((few.name.as_str(), few.value.as_str()), ("numpin", "9"));
        assert!(
            few.weight > many.weight,
            "9 pins before 10, unlike the strings"
        );
        assert!(!few.partitionable);
        assert!(!numpin_metric(None, &p, 10_000, 0).valid);
    }

    #[test]
    fn pinqueue_weight_is_bucketed() {
        let p = peer();
        let m = pinqueue_metric(Some(250_000), DEFAULT_PINQUEUE_BUCKET, &p, 30_000, 0);
        assert_eq!((m.value.as_str(), m.weight, m.valid), ("250000", -2, true));
        assert_eq!(pinqueue_metric(Some(7), 0, &p, 30_000, 0).weight, -7);
        assert!(!pinqueue_metric(None, 0, &p, 30_000, 0).valid);
    }
}
