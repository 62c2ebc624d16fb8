//! Durations as Go writes and reads them (`time.Duration`'s text): "15s", "2m", "1h30m",
//! "250ms". ipfs-cluster's `service.json` and its REST API's `expire-in` use this form.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in Go's text form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub Duration);

/// Why a text is not a Go duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GoDurationError {
    #[error("empty duration")]
    Empty,
    #[error("{0:?} has a number without a unit (s, m, h, ms)")]
    MissingUnit(String),
    #[error("{0:?} is not a duration like 15s, 2m or 1h30m")]
    NotANumber(String),
    #[error("{text:?} has an unknown unit {unit:?}")]
    UnknownUnit { text: String, unit: String },
    #[error("{0:?} is too long a duration")]
    TooLong(String),
}

impl GoDuration {
    /// Parses Go's form: a sequence of decimal numbers each with a unit (ns, us, µs, ms,
    /// s, m, h), or a bare "0".
    pub fn parse(text: &str) -> Result<Self, GoDurationError> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if text.is_empty() {
            return Err(GoDurationError::Empty);
        }
        let too_long = || GoDurationError::TooLong(text.to_owned());
        let mut nanos: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| GoDurationError::MissingUnit(text.to_owned()))?;
            let (whole, fraction) = rest[..digits]
                .split_once('.')
                .unwrap_or((&rest[..digits], ""));
            if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
                return Err(GoDurationError::NotANumber(text.to_owned()));
            }
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit_nanos: u128 = match &rest[..unit_len] {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                unit => {
                    return Err(GoDurationError::UnknownUnit {
                        text: text.to_owned(),
                        unit: unit.to_owned(),
                    })
                }
            };
            // Exact integer arithmetic, as Go's parser: no float rounding.
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole.parse().map_err(|_| too_long())?
            };
            let mut part = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
            let fraction = &fraction[..fraction.len().min(18)];
            if !fraction.is_empty() {
                let scale = 10u128.pow(fraction.len() as u32);
                let value: u128 = fraction.parse().map_err(|_| too_long())?;
                part = part
                    .checked_add(value * unit_nanos / scale)
                    .ok_or_else(too_long)?;
            }
            nanos = nanos.checked_add(part).ok_or_else(too_long)?;
            rest = &rest[unit_len..];
        }
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
        let total = Duration::new(secs, (nanos % 1_000_000_000) as u32);
        Ok(Self(total))
    }

    /// Whole milliseconds, saturating.
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Whole hours, minutes and seconds ("1h30m"), or milliseconds where the duration is not a
/// whole number of seconds ("1500ms"); "0s" for zero.
impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis();
        if ms == 0 {
            return write!(f, "0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for GoDuration {
    type Err = GoDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        GoDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_durations_read_and_write_back() {
        for (text, ms) in [
            ("15s", 15_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("0s", 0),
            ("0", 0),
            ("1.5s", 1_500),
        ] {
            assert_eq!(GoDuration::parse(text).unwrap().millis(), ms, "{text}");
        }
        assert_eq!(GoDuration::parse("1h30m").unwrap().to_string(), "1h30m");
        assert_eq!(GoDuration::parse("1500ms").unwrap().to_string(), "1500ms");
        assert_eq!(
            GoDuration::parse("15"),
            Err(GoDurationError::MissingUnit("15".into()))
        );
        assert!(matches!(
            GoDuration::parse("3d"),
            Err(GoDurationError::UnknownUnit { unit, .. }) if unit == "d"
        ));
        assert_eq!(GoDuration::parse(" "), Err(GoDurationError::Empty));
        assert!(matches!(
            GoDuration::parse("99999999999999999999h"),
            Err(GoDurationError::TooLong(_))
        ));
    }

    proptest! {
        /// Every whole-millisecond duration reads back from what it writes.
        #[test]
        fn the_text_round_trips(ms in 0u64..=1_000_000_000_000) {
            let duration = GoDuration(Duration::from_millis(ms));
            prop_assert_eq!(GoDuration::parse(&duration.to_string()), Ok(duration));
        }
    }
}
