//! The arrival schedule of the open model: when request `n` is meant to be
//! sent, for a constant rate or for ramping stages (`30s:100`: go linearly
//! from the previous rate to 100 requests/s over 30 s, as k6's
//! ramping-arrival-rate does).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LoadError;

/// One ramp: over `duration`, the rate moves linearly to `target` requests/s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// How long the ramp lasts.
    #[serde(with = "secs_f64")]
    pub duration: Duration,
    /// The rate at its end, in requests per second.
    pub target: f64,
}

impl FromStr for Stage {
    type Err = LoadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LoadError::Option {
            option: "--stage",
            message: format!("`{s}`: {why}; expected DURATION:RATE, e.g. `30s:100`"),
        };
        let (d, r) = s.split_once(':').ok_or_else(|| bad("no `:`"))?;
        let duration = parse_duration(d).map_err(|m| bad(&m))?;
        if duration.is_zero() {
            return Err(bad("the duration is zero"));
        }
        let target: f64 = r
            .trim()
            .parse()
            .map_err(|_| bad("the rate is not a number"))?;
        if !target.is_finite() || target < 0.0 {
            return Err(bad("the rate must be zero or more"));
        }
        Ok(Self { duration, target })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", fmt_duration(self.duration), self.target)
    }
}

/// Parses a duration flag in the one grammar of specs and flags
/// ([`crate::functions::duration`]): `500ms`, `30s`, `1m`, `2h`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::functions::duration::parse(s).map_err(|e| e.to_string())
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn fmt_duration(d: Duration) -> String {
    crate::functions::Duration(d).to_string()
}

/// When each request of a fixed-rate run is due, relative to the start.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    total: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    length: f64,
    from: f64,
    to: f64,
    /// Requests due before this segment.
    before: f64,
}

impl Schedule {
    /// A constant `rate` for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> Self {
        Self::ramping(
            rate,
            &[Stage {
                duration,
                target: rate,
            }],
        )
    }

    /// Starting at `start_rate`, each stage ramps linearly to its target.
    pub fn ramping(start_rate: f64, stages: &[Stage]) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut t, mut before, mut from) = (0.0, 0.0, start_rate);
        for s in stages {
            let length = s.duration.as_secs_f64();
            segments.push(Segment {
                start: t,
                length,
                from,
                to: s.target,
                before,
            });
            t += length;
            before += (from + s.target) / 2.0 * length;
            from = s.target;
        }
        Self {
            segments,
            total: stages.iter().map(|s| s.duration).sum(),
        }
    }

    /// How long the schedule lasts.
    pub fn duration(&self) -> Duration {
        self.total
    }

    /// How many requests are due in all (rounded down).
    pub fn total_requests(&self) -> u64 {
        let last = self
            .segments
            .last()
            .map_or(0.0, |s| s.before + (s.from + s.to) / 2.0 * s.length);
        last.floor() as u64
    }

    /// The rate the schedule asks for at `t` after the start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        let t = t.as_secs_f64();
        self.segments
            .iter()
            .find(|s| t < s.start + s.length)
            .map_or_else(
                // At or after the end: the rate the schedule ended at.
                || self.segments.last().map_or(0.0, |s| s.to),
                |s| s.from + (s.to - s.from) * (t - s.start) / s.length,
            )
    }

    /// When request `n` (from 0) is due, or `None` when it falls after the end.
    pub fn due(&self, n: u64) -> Option<Duration> {
        let n = n as f64;
        for s in &self.segments {
            let in_segment = (s.from + s.to) / 2.0 * s.length;
            let m = n - s.before;
            if m >= in_segment {
                continue;
            }
            // Requests due by time x into the segment: from*x + (to-from)/(2*length)*x^2 = m.
            let a = (s.to - s.from) / (2.0 * s.length);
            let b = s.from;
            let x = if a.abs() < 1e-12 {
                m / b
            } else {
                let disc = (b * b + 4.0 * a * m).max(0.0);
                (-b + disc.sqrt()) / (2.0 * a)
            };
            if !x.is_finite() {
                continue;
            }
            return Some(Duration::from_secs_f64(
                (s.start + x.clamp(0.0, s.length)).max(0.0),
            ));
        }
        None
    }
}

/// A duration as seconds (a float) in JSON.
pub(crate) mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_spaces_requests_evenly_and_ends() {
        let s = Schedule::constant(100.0, Duration::from_secs(2));
        assert_eq!(s.total_requests(), 200);
        assert_eq!(s.due(0), Some(Duration::ZERO));
        assert_eq!(s.due(50), Some(Duration::from_millis(500)));
        assert_eq!(s.due(199), Some(Duration::from_millis(1990)));
        assert_eq!(s.due(200), None);
    }

    #[test]
    fn ramps_are_linear_like_k6() {
        // 0 -> 100/s over 10 s: 500 requests, half of them in the last 2.93 s.
        let stages: Vec<Stage> = ["10s:100", "5s:100"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let s = Schedule::ramping(0.0, &stages);
        assert_eq!(s.total_requests(), 1000);
        let t = s.due(250).unwrap().as_secs_f64();
        assert!((t - 50f64.sqrt()).abs() < 1e-9, "{t}");
        assert!((s.rate_at(Duration::from_secs(5)) - 50.0).abs() < 1e-9);
        let t = s.due(750).unwrap().as_secs_f64();
        assert!((t - 12.5).abs() < 1e-9, "{t}");
        // A ramp down.
        let down = Schedule::ramping(200.0, &["2s:0".parse().unwrap()]);
        assert_eq!(down.total_requests(), 200);
        let t = down.due(150).unwrap().as_secs_f64();
        assert!((t - 1.0).abs() < 1e-9, "{t}");
        assert_eq!(down.due(200), None);
    }

    #[test]
    fn stages_and_durations_parse_or_say_why() {
        let s: Stage = "1m:300".parse().unwrap();
        assert_eq!(s.duration, Duration::from_secs(60));
        assert_eq!(s.to_string(), "1m:300");
        // The spec's grammar: days, no fractions.
        assert_eq!(
            parse_duration("2d").unwrap(),
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        let err = parse_duration("1.5s").unwrap_err();
        assert!(err.contains("whole number followed by us, ms"), "{err}");
        let err = "30:100".parse::<Stage>().unwrap_err().to_string();
        assert!(err.contains("invalid duration `30`"), "{err}");
        assert!("30s".parse::<Stage>().is_err());
        assert!("30s:-1".parse::<Stage>().is_err());
    }
}
