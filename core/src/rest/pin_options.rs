//! A pin request's options as ipfs-cluster's REST API takes them in the query string
//! (`POST /pins/{cid}?replication-min=2&name=…`), Go's `PinOptions.FromQuery`/`ToQuery`.
//! The REST server reads them with [`PinOptions::from_query`]; `pinfold ctl` writes them
//! with [`PinOptions::to_query`].
//!
//! As in Go, a key with an empty value is unset, and keys that are not pin options are
//! passed over: clients written for Go add their own (`stream-channels=true`).

use std::collections::BTreeMap;
use std::time::Duration;

use cid::Cid;
use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use crate::go_duration::{GoDuration, GoDurationError};
use crate::pin::{Pin, PinMode, UnixTime, UnknownPinMode};

/// The prefix of a metadata key in the query (`meta-owner=alice`).
const META_PREFIX: &str = "meta-";

/// When a requested pin expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// At this time (`expire-at`, RFC 3339).
    At(UnixTime),
    /// This long after the request is taken (`expire-in`, a Go duration of at least 1 s).
    In(GoDuration),
}

/// What a pin request may say beyond its CID. `None` and empty fields are left to the
/// cluster's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinOptions {
    pub name: Option<String>,
    pub mode: Option<PinMode>,
    pub replication_min: Option<i32>,
    pub replication_max: Option<i32>,
    pub shard_size: Option<u64>,
    /// Peers to allocate first.
    pub user_allocations: Vec<PeerId>,
    pub expire: Option<Expiry>,
    pub metadata: BTreeMap<String, String>,
    /// Pin by updating from this already-pinned CID.
    pub pin_update: Option<Cid>,
    /// Addresses of peers known to have the content.
    pub origins: Vec<Multiaddr>,
}

/// Why a query does not make pin options; the text is the API's 400 message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PinOptionsError {
    #[error("parameter {key}: {value:?} is not a number")]
    NotANumber { key: String, value: String },
    #[error(transparent)]
    Mode(#[from] UnknownPinMode),
    #[error("user-allocations {value:?}: {reason}")]
    PeerId { value: String, reason: String },
    #[error("origins {value:?}: {reason}")]
    Origin { value: String, reason: String },
    #[error("origins {0:?}: the address has no /p2p/<peer id>")]
    OriginWithoutPeer(String),
    #[error("error decoding Cid {value:?}: {reason}")]
    Cid { value: String, reason: String },
    #[error("expire-at {value:?} is not an RFC 3339 time (2030-01-02T15:04:05Z): {reason}")]
    ExpireAt { value: String, reason: String },
    #[error("expire-in {value:?}: {source}")]
    ExpireIn {
        value: String,
        source: GoDurationError,
    },
    #[error("expire-in {0:?} is less than one second")]
    ExpireTooSoon(String),
}

impl PinOptions {
    /// The options in a query's `pairs`, other keys passed over. As in Go, `replication`
    /// sets both factors and wins over `replication-min`/`-max`, `expire-at` wins over
    /// `expire-in`, and an empty metadata key (`meta-=x`) is dropped.
    pub fn from_query<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, PinOptionsError> {
        let mut options = PinOptions::default();
        let mut replication = None;
        let mut expire_at = None;
        let mut expire_in = None;
        for (key, value) in pairs {
            if value.is_empty() && !key.starts_with(META_PREFIX) {
                continue;
            }
            match key {
                "name" => options.name = Some(value.to_owned()),
                "mode" => options.mode = Some(value.parse()?),
                "replication" => replication = Some(number(key, value)?),
                "replication-min" => options.replication_min = Some(number(key, value)?),
                "replication-max" => options.replication_max = Some(number(key, value)?),
                "shard-size" => options.shard_size = Some(number(key, value)?),
                "user-allocations" => {
                    options.user_allocations = list(value, |p| {
                        p.parse::<PeerId>().map_err(|e| PinOptionsError::PeerId {
                            value: p.to_owned(),
                            reason: e.to_string(),
                        })
                    })?
                }
                "origins" => {
                    options.origins = list(value, |a| {
                        let address =
                            a.parse::<Multiaddr>()
                                .map_err(|e| PinOptionsError::Origin {
                                    value: a.to_owned(),
                                    reason: e.to_string(),
                                })?;
                        if !address
                            .iter()
                            .any(|p| matches!(p, multiaddr::Protocol::P2p(_)))
                        {
                            return Err(PinOptionsError::OriginWithoutPeer(a.to_owned()));
                        }
                        Ok(address)
                    })?
                }
                "expire-at" => expire_at = Some(value),
                "expire-in" => expire_in = Some(value),
                "pin-update" => {
                    options.pin_update =
                        Some(
                            value
                                .parse()
                                .map_err(|e: cid::Error| PinOptionsError::Cid {
                                    value: value.to_owned(),
                                    reason: e.to_string(),
                                })?,
                        )
                }
                meta if meta.len() > META_PREFIX.len() && meta.starts_with(META_PREFIX) => {
                    options
                        .metadata
                        .insert(meta[META_PREFIX.len()..].to_owned(), value.to_owned());
                }
                _ => {}
            }
        }
        if let Some(n) = replication {
            options.replication_min = Some(n);
            options.replication_max = Some(n);
        }
        options.expire = match (expire_at, expire_in) {
            (Some(at), _) => UnixTime::parse_rfc3339(at)
                .map_err(|e| PinOptionsError::ExpireAt {
                    value: at.to_owned(),
                    reason: e.to_string(),
                })?
                .map(Expiry::At),
            (None, Some(after)) => {
                let duration =
                    GoDuration::parse(after).map_err(|source| PinOptionsError::ExpireIn {
                        value: after.to_owned(),
                        source,
                    })?;
                if duration.0 < Duration::from_secs(1) {
                    return Err(PinOptionsError::ExpireTooSoon(after.to_owned()));
                }
                Some(Expiry::In(duration))
            }
            (None, None) => None,
        };
        Ok(options)
    }

    /// The options in a query string (without `?`), percent-decoded.
    pub fn from_query_string(query: &str) -> Result<Self, PinOptionsError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Self::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The query pairs that give these options, the unset and empty ones left out.
    pub fn to_query(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                pairs.push((key.to_owned(), value));
            }
        };
        push("name", self.name.clone());
        push("mode", self.mode.map(|m| m.as_str().to_owned()));
        push(
            "replication-min",
            self.replication_min.map(|n| n.to_string()),
        );
        push(
            "replication-max",
            self.replication_max.map(|n| n.to_string()),
        );
        push("shard-size", self.shard_size.map(|n| n.to_string()));
        push("user-allocations", joined(&self.user_allocations));
        push(
            "expire-at",
            match self.expire {
                Some(Expiry::At(at)) => at.to_rfc3339(),
                _ => None,
            },
        );
        push(
            "expire-in",
            match self.expire {
                Some(Expiry::In(after)) => Some(after.to_string()),
                _ => None,
            },
        );
        push("pin-update", self.pin_update.map(|c| c.to_string()));
        push("origins", joined(&self.origins));
        for (key, value) in self.metadata.iter().filter(|(k, _)| !k.is_empty()) {
            pairs.push((format!("{META_PREFIX}{key}"), value.clone()));
        }
        pairs
    }

    /// [`PinOptions::to_query`] as a percent-encoded query string, without `?`.
    pub fn to_query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.to_query())
            .finish()
    }

    /// The pin of `cid` these options ask for, taken at `now`: unset factors are 0 (the
    /// cluster's default), the mode recursive, `expire-in` counted from `now`.
    pub fn to_pin(&self, cid: Cid, now: UnixTime) -> Pin {
        let mut pin = Pin::new(cid, now);
        pin.name = self.name.clone().unwrap_or_default();
        pin.max_depth = self.mode.unwrap_or_default().max_depth();
        pin.replication_factor_min = self.replication_min.unwrap_or(0);
        pin.replication_factor_max = self.replication_max.unwrap_or(0);
        pin.shard_size = self.shard_size.unwrap_or(0);
        pin.user_allocations = self.user_allocations.clone();
        pin.expire_at = match self.expire {
            Some(Expiry::At(at)) => Some(at),
            Some(Expiry::In(after)) => Some(UnixTime(now.0.saturating_add(after.0.as_secs()))),
            None => None,
        };
        pin.metadata = self.metadata.clone();
        pin.pin_update = self.pin_update;
        pin.origins = self.origins.clone();
        pin
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, PinOptionsError> {
    value.parse().map_err(|_| PinOptionsError::NotANumber {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// A comma-separated list, empty items skipped.
fn list<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, PinOptionsError>,
) -> Result<Vec<T>, PinOptionsError> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(parse)
        .collect()
}

fn joined<T: ToString>(items: &[T]) -> Option<String> {
    (!items.is_empty()).then(|| items.iter().map(T::to_string).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::peer;
    use proptest::prelude::*;

    fn cid(n: u8) -> Cid {
        let digest = multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap();
        Cid::new_v1(0x55, digest)
    }

    #[test]
    fn a_query_gives_the_pin_it_asks_for() {
        let now = UnixTime(1_700_000_000);
        let query = format!(
            "replication=2&name=photos&mode=direct&user-allocations={}&expire-in=1h&meta-owner=alice&pin-update={}&origins=/ip4/127.0.0.1/tcp/4001/p2p/{}",
            peer(1),
            cid(9),
            peer(2)
        );
        let pin = PinOptions::from_query_string(&query)
            .unwrap()
            .to_pin(cid(1), now);
        assert_eq!(
            (pin.replication_factor_min, pin.replication_factor_max),
            (2, 2)
        );
        assert_eq!(pin.name, "photos");
        assert_eq!(pin.mode(), PinMode::Direct);
        assert_eq!(pin.user_allocations, vec![peer(1)]);
        assert_eq!(pin.expire_at, Some(UnixTime(now.0 + 3600)));
        assert_eq!(pin.metadata["owner"], "alice");
        assert_eq!(pin.pin_update, Some(cid(9)));
        assert_eq!(pin.origins.len(), 1);
        assert_eq!(pin.timestamp, Some(now));
    }

    #[test]
    fn replication_wins_over_its_bounds_as_in_go() {
        let options = PinOptions::from_query_string("replication-min=1&replication=3").unwrap();
        assert_eq!(
            (options.replication_min, options.replication_max),
            (Some(3), Some(3))
        );
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let cases: [(&str, &str); 7] = [
            (
                "replication=two",
                "parameter replication: \"two\" is not a number",
            ),
            (
                "mode=sideways",
                "mode \"sideways\": use recursive or direct",
            ),
            ("user-allocations=nobody", "user-allocations \"nobody\""),
            (
                "expire-at=tomorrow",
                "expire-at \"tomorrow\" is not an RFC 3339 time",
            ),
            (
                "expire-in=500ms",
                "expire-in \"500ms\" is less than one second",
            ),
            ("expire-in=3d", "has an unknown unit \"d\""),
            (
                "origins=/ip4/127.0.0.1/tcp/4001",
                "the address has no /p2p/<peer id>",
            ),
        ];
        for (query, message) in cases {
            let error = PinOptions::from_query_string(query).unwrap_err();
            assert!(error.to_string().contains(message), "{query}: {error}");
        }
    }

    /// What Go's `PinOptions.FromQuery` does with what clients written for Go send.
    #[test]
    fn queries_read_as_go_reads_them() {
        let at = "2030-01-01T00:00:00Z";
        let options = PinOptions::from_query_string(&format!(
            "stream-channels=true&name=&replication-min=&mode=&meta-=x&meta-empty=&expire-at={at}&expire-in=1h"
        ))
        .unwrap();
        assert_eq!(options.name, None);
        assert_eq!(options.replication_min, None);
        assert_eq!(options.mode, None);
        assert_eq!(
            options.metadata,
            BTreeMap::from([("empty".to_owned(), String::new())])
        );
        assert_eq!(
            options.expire,
            Some(Expiry::At(UnixTime::parse_rfc3339(at).unwrap().unwrap()))
        );
    }

    fn options() -> impl Strategy<Value = PinOptions> {
        let text = "[ -~é,&=?#%+]{0,12}";
        (
            (
                proptest::option::of("[ -~é,&=?#%+]{1,12}"),
                proptest::option::of(prop_oneof![Just(PinMode::Recursive), Just(PinMode::Direct)]),
                proptest::option::of(-1i32..100),
                proptest::option::of(-1i32..100),
                proptest::option::of(any::<u64>()),
            ),
            (
                proptest::collection::vec(any::<u8>().prop_map(peer), 0..3),
                proptest::option::of(prop_oneof![
                    (1..=UnixTime::MAX_RFC3339.0).prop_map(|s| Expiry::At(UnixTime(s))),
                    (1_000u64..10_000_000_000)
                        .prop_map(|ms| Expiry::In(GoDuration(Duration::from_millis(ms)))),
                ]),
                proptest::collection::btree_map("[ -~é,&=?#%+]{1,12}", text, 0..3),
                proptest::option::of(any::<u8>().prop_map(cid)),
                proptest::collection::vec(
                    (any::<[u8; 4]>(), any::<u16>(), any::<u8>()).prop_map(|(ip, port, n)| {
                        format!(
                            "/ip4/{}/tcp/{port}/p2p/{}",
                            std::net::Ipv4Addr::from(ip),
                            peer(n)
                        )
                        .parse::<Multiaddr>()
                        .unwrap()
                    }),
                    0..3,
                ),
            ),
        )
            .prop_map(
                |(
                    (name, mode, replication_min, replication_max, shard_size),
                    (user_allocations, expire, metadata, pin_update, origins),
                )| PinOptions {
                    name,
                    mode,
                    replication_min,
                    replication_max,
                    shard_size,
                    user_allocations,
                    expire,
                    metadata,
                    pin_update,
                    origins,
                },
            )
    }

    proptest! {
        /// What `pinfold ctl` writes, the REST server reads back unchanged.
        #[test]
        fn options_round_trip_through_the_query_string(options in options()) {
            let query = options.to_query_string();
            prop_assert_eq!(PinOptions::from_query_string(&query), Ok(options));
        }
    }
}
