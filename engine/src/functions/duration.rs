//! Human durations, one grammar for specs, functions and every command-line
//! flag: a whole number followed by `us`, `ms`, `s`, `m`, `h` or `d`
//! (`500ms`, `30s`, `5m`, `2h`, `4d`). A plain integer is not accepted, so a
//! unit is never guessed.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The grammar as a regular expression (the JSON schema's `pattern`).
pub const PATTERN: &str = "^[0-9]+(us|ms|s|m|h|d)$";
/// The grammar in words, for error messages.
pub const GRAMMAR: &str = "a whole number followed by us, ms, s, m, h or d, e.g. `30s`, `5m`, `4d`";

/// A non-negative duration with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: expected {GRAMMAR}")]
pub struct DurationError {
    /// The text that did not parse.
    pub input: String,
}

impl Duration {
    /// Builds a duration from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// Builds a duration from milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The standard-library value.
    pub const fn std(self) -> std::time::Duration {
        self.0
    }

    /// Whole seconds, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

/// Parses the grammar of this module into a standard duration.
pub fn parse(s: &str) -> Result<std::time::Duration, DurationError> {
    let err = || DurationError {
        input: s.to_string(),
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let micros_per_unit: u64 = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(err()),
    };
    n.checked_mul(micros_per_unit)
        .map(std::time::Duration::from_micros)
        .ok_or_else(err)
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(Self)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let us = self.0.as_micros();
        if us != ms * 1000 {
            return write!(f, "{us}us");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "description": format!("A duration: {GRAMMAR}.")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_units() {
        for (text, ms, shown) in [
            ("500ms", 500, "500ms"),
            ("30s", 30_000, "30s"),
            ("90s", 90_000, "90s"),
            ("5m", 300_000, "5m"),
            ("2h", 7_200_000, "2h"),
            ("4d", 345_600_000, "4d"),
            ("0s", 0, "0ms"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.std().as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
        let d: Duration = "1500us".parse().unwrap();
        assert_eq!(d.std().as_micros(), 1500);
        assert_eq!(d.to_string(), "1500us");
        assert_eq!("3000us".parse::<Duration>().unwrap().to_string(), "3ms");
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        for bad in [
            "",
            "30",
            "s",
            "5 minutes",
            "1w",
            "-1s",
            "1.5s",
            "99999999999999999999d",
        ] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
