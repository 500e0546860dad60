//! The `x-inngest-event-id-seed` request header: event ids derived from a
//! seed the client sends, so that a request sent again (an SDK's retry of a
//! send whose answer was lost) gets the same ids and starts nothing twice.
//!
//! Inngest's SDKs send `{millis},{base64 of 10 random bytes}` once per send
//! request, computed when the request is built, so their retries of it carry
//! the same value (inngest-py: `pkg/inngest/inngest/_internal/client_lib/client.py`,
//! `_seed()` and `_build_send_request`).
//!
//! The derivation is the Inngest server's, from github.com/inngest/inngest:
//! `pkg/event/id.go` (`SeededIDFromString`, `SeededID.ToULID`), called by the
//! event API in `pkg/api/api.go` (the `/e/{key}` handler) with the header
//! `headers.HeaderEventIDSeed` (`pkg/headers/headers.go`), the result used as
//! the event's internal id in `pkg/event/legacy_types.go`
//! (`NewBaseTrackedEvent`):
//!
//! - the value splits on `,` into exactly two parts; the first is a decimal
//!   `int64` greater than 0 (milliseconds since the epoch), the second
//!   standard padded base64 of exactly 10 bytes (the entropy);
//! - the event at position `index` of the request gets the entropy with its
//!   last 4 bytes, read as a big-endian `u32`, plus `index` (wrapping), and
//!   its id is the ULID of (millis, those 10 bytes). The handler counts
//!   `index` from **1** for the first event of a request (it increments
//!   before use), so do we;
//! - a value that does not parse (or millis past the ULID's 48 bits) is
//!   ignored: the event gets a fresh random id, and the request is accepted.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The header's name (HTTP header names are case-insensitive).
pub const HEADER: &str = "x-inngest-event-id-seed";

/// Go's `base64.StdEncoding`: the standard alphabet, padding required,
/// non-zero trailing bits accepted.
const GO_STD_ENCODING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// A parsed seed header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    millis: u64,
    entropy: [u8; 10],
}

impl Seed {
    /// Parses a header value as Inngest's server does; `None` when it would
    /// ignore it.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(',');
        let (Some(millis), Some(entropy), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        // Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then digits.
        let millis: i64 = millis.parse().ok()?;
        if millis <= 0 || millis >= 1 << 48 {
            return None;
        }
        let entropy: [u8; 10] = GO_STD_ENCODING.decode(entropy).ok()?.try_into().ok()?;
        Some(Self {
            millis: millis as u64,
            entropy,
        })
    }

    /// The time part of every id this seed gives: milliseconds since the epoch.
    pub fn millis(&self) -> i64 {
        self.millis as i64
    }

    /// The id of the event at `index` in the request. Inngest's event API
    /// numbers a request's events from 1.
    pub fn id(&self, index: u32) -> ulid::Ulid {
        let mut entropy = self.entropy;
        let tail = u32::from_be_bytes([entropy[6], entropy[7], entropy[8], entropy[9]]);
        entropy[6..].copy_from_slice(&tail.wrapping_add(index).to_be_bytes());
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&entropy);
        ulid::Ulid::from_parts(self.millis, u128::from_be_bytes(random))
    }

    /// The ids of a request of `count` events, in request order (the first
    /// event is index 1, as in Inngest's event API).
    pub fn ids(&self, count: usize) -> impl Iterator<Item = ulid::Ulid> + '_ {
        (1..=count).map(|i| self.id(i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors computed by following `SeededIDFromString` and
    /// `ulid.New(millis, bytes.NewReader(entropy))` step by step (the ULID's
    /// 6 time bytes, then the 10 entropy bytes, in Crockford base32). The
    /// first value is the example in Inngest's doc comment on
    /// `HeaderEventIDSeed`.
    #[test]
    fn ids_match_inngest_vectors() {
        let seed = Seed::parse("1743130137367,eii2YKXRVTJPuA==").unwrap();
        let got: Vec<String> = (0..4).map(|i| seed.id(i).to_string()).collect();
        assert_eq!(
            got,
            [
                "01JQDAE4RQF8MBCR55T5AK4KXR",
                "01JQDAE4RQF8MBCR55T5AK4KXS",
                "01JQDAE4RQF8MBCR55T5AK4KXT",
                "01JQDAE4RQF8MBCR55T5AK4KXV",
            ]
        );
        // A request's events: index 1 first.
        let request: Vec<String> = seed.ids(2).map(|u| u.to_string()).collect();
        assert_eq!(request, got[1..3]);
        assert_eq!(seed.id(0).timestamp_ms(), 1_743_130_137_367);

        // The last 4 entropy bytes wrap as a u32 (Go's uint32 addition).
        let seed = Seed::parse("1700000000000,AQIDBAUG/////w==").unwrap();
        let got: Vec<String> = (0..3).map(|i| seed.id(i).to_string()).collect();
        assert_eq!(
            got,
            [
                "01HF7YAT00041061050VZZZZZZ",
                "01HF7YAT00041061050R000000",
                "01HF7YAT00041061050R000001",
            ]
        );
    }

    #[test]
    fn malformed_values_are_ignored_like_inngest_does() {
        let ten = "AQIDBAUGBwgJCg=="; // 10 bytes
        assert!(Seed::parse(&format!("1743130137367,{ten}")).is_some());
        assert!(Seed::parse(&format!("+1743130137367,{ten}")).is_some());
        for bad in [
            String::new(),
            "1743130137367".into(),
            format!("1743130137367,{ten},x"),
            format!("abc,{ten}"),
            format!("0,{ten}"),
            format!("-1,{ten}"),
            format!(" 1743130137367,{ten}"),
            format!("{},{ten}", 1u64 << 48),
            "1743130137367,AQIDBAUGBwgJ".into(),     // 9 bytes
            "1743130137367,AQIDBAUGBwgJCgs=".into(), // 11 bytes
            "1743130137367,AQIDBAUGBwgJCg".into(),   // padding missing
            "1743130137367,AQIDBAUGBwgJCg!=".into(), // not base64
        ] {
            assert_eq!(Seed::parse(&bad), None, "{bad:?}");
        }
    }
}
