//! Log sequence numbers, timeline IDs and WAL segment sizes.
//!
//! An LSN (`XLogRecPtr` in PostgreSQL, `src/include/access/xlogdefs.h`) is a
//! 64-bit byte position in the WAL stream. PostgreSQL prints it as two
//! upper-case hex halves without padding (`0/62708F0`, `LSN_FORMAT_ARGS`);
//! newer releases may zero-pad the low half (`0/062708F0`), so parsing accepts
//! both.
//!
//! A timeline ID (`TimeLineID`) is a u32, printed in decimal in SQL and labels
//! and as 8 hex digits in WAL file names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A WAL position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {text:?}: expected two hex numbers separated by '/', like 0/16B3748")]
pub struct LsnParseError {
    pub text: String,
}

impl Lsn {
    /// `InvalidXLogRecPtr`: zero means "not set" in pg_control and labels.
    pub const INVALID: Lsn = Lsn(0);

    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    pub fn checked_sub(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_sub(bytes).map(Lsn)
    }

    /// Bytes from `earlier` to `self`, or `None` when `earlier` is later.
    pub fn distance_from(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// The number of the segment this position falls in (`XLByteToSeg`).
    pub fn segment_number(self, seg_size: WalSegSize) -> u64 {
        self.0 / seg_size.bytes()
    }

    /// The segment holding the byte just before this position
    /// (`XLByteToPrevSeg`). An end pointer that sits exactly on a segment
    /// boundary needs only the previous segment.
    pub fn prev_segment_number(self, seg_size: WalSegSize) -> u64 {
        self.0.saturating_sub(1) / seg_size.bytes()
    }

    /// Offset of this position within its segment.
    pub fn segment_offset(self, seg_size: WalSegSize) -> u64 {
        self.0 % seg_size.bytes()
    }

    /// Offset of this position within its WAL page.
    pub fn page_offset(self, page_size: u32) -> u64 {
        self.0 % u64::from(page_size)
    }

    /// Start of the segment `segno`.
    pub fn from_segment(segno: u64, seg_size: WalSegSize) -> Option<Lsn> {
        segno.checked_mul(seg_size.bytes()).map(Lsn)
    }

    /// Round up to the next multiple of 8 (`MAXALIGN` on x86_64).
    pub fn max_align(self) -> Option<Lsn> {
        self.0.checked_add(7).map(|v| Lsn(v & !7))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError { text: s.to_string() };
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let half = |h: &str| -> Result<u64, LsnParseError> {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            u64::from_str_radix(h, 16).map_err(|_| err())
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A timeline ID. Zero is never a valid timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimelineId(pub u32);

/// Why a string is not a timeline ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timeline ID {text:?}: expected a positive decimal number")]
pub struct TimelineParseError {
    pub text: String,
}

impl TimelineId {
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }
}

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TimelineId {
    type Err = TimelineParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<u32>() {
            Ok(v) if v > 0 => Ok(TimelineId(v)),
            _ => Err(TimelineParseError { text: s.to_string() }),
        }
    }
}

/// A WAL segment size: a power of two from 1 MiB to 1 GiB
/// (`IsValidWalSegSize` in `xlog_internal.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct WalSegSize(u32);

/// Why a number is not a WAL segment size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL segment size {bytes}: must be a power of two between 1 MiB and 1 GiB")]
pub struct WalSegSizeError {
    pub bytes: u64,
}

impl WalSegSize {
    pub const MIN: u32 = 1 << 20;
    pub const MAX: u32 = 1 << 30;
    /// The default of every release: 16 MiB.
    pub const DEFAULT: WalSegSize = WalSegSize(16 << 20);

    pub fn new(bytes: u64) -> Result<Self, WalSegSizeError> {
        if bytes.is_power_of_two() && (u64::from(Self::MIN)..=u64::from(Self::MAX)).contains(&bytes) {
            Ok(WalSegSize(bytes as u32))
        } else {
            Err(WalSegSizeError { bytes })
        }
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.0)
    }

    /// Segments per 4 GiB "xlogid" (`XLogSegmentsPerXLogId`): the radix of the
    /// last two parts of a segment file name.
    pub fn segments_per_xlogid(self) -> u64 {
        0x1_0000_0000 / self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_matches_postgres() {
        assert_eq!(Lsn(0x62708F0).to_string(), "0/62708F0");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_padded_and_lowercase() {
        assert_eq!("0/062708F0".parse::<Lsn>().unwrap(), Lsn(0x62708F0));
        assert_eq!("a/b".parse::<Lsn>().unwrap(), Lsn(0xA_0000_000B));
        for bad in ["", "/", "0/", "/0", "0x1/0", "1/2/3", "123456789/0", "g/0", " 0/1", "0/1 ", "+1/0"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn segment_arithmetic() {
        let seg = WalSegSize::DEFAULT;
        assert_eq!(Lsn(0x17414F8).segment_number(seg), 1);
        assert_eq!(Lsn(0x2000000).segment_number(seg), 2);
        assert_eq!(Lsn(0x2000000).prev_segment_number(seg), 1);
        assert_eq!(Lsn(0x2000001).prev_segment_number(seg), 2);
        assert_eq!(Lsn(0x2000010).segment_offset(seg), 0x10);
        assert_eq!(Lsn::from_segment(3, seg), Some(Lsn(0x3000000)));
        assert_eq!(Lsn(9).max_align(), Some(Lsn(16)));
        assert_eq!(Lsn(16).max_align(), Some(Lsn(16)));
        assert_eq!(Lsn(u64::MAX).max_align(), None);
        assert_eq!(Lsn(5).checked_sub(6), None);
        assert_eq!(Lsn(u64::MAX).checked_add(1), None);
        assert_eq!(Lsn(10).distance_from(Lsn(4)), Some(6));
        assert_eq!(Lsn(4).distance_from(Lsn(10)), None);
    }

    #[test]
    fn seg_sizes() {
        assert!(WalSegSize::new(1 << 20).is_ok());
        assert!(WalSegSize::new(1 << 30).is_ok());
        assert!(WalSegSize::new(1 << 19).is_err());
        assert!(WalSegSize::new(1 << 31).is_err());
        assert!(WalSegSize::new(3 << 20).is_err());
        assert_eq!(WalSegSize::DEFAULT.segments_per_xlogid(), 256);
    }

    #[test]
    fn timelines() {
        assert_eq!("7".parse::<TimelineId>().unwrap(), TimelineId(7));
        assert!("0".parse::<TimelineId>().is_err());
        assert!("x".parse::<TimelineId>().is_err());
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v: u64) {
            let lsn = Lsn(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
            let padded = format!("{:X}/{:08X}", v >> 32, v & 0xFFFF_FFFF);
            prop_assert_eq!(padded.parse::<Lsn>().unwrap(), lsn);
        }

        #[test]
        fn segment_start_contains(v in 0u64..(1u64 << 62), shift in 20u32..=30) {
            let seg = WalSegSize::new(1u64 << shift).unwrap();
            let lsn = Lsn(v);
            let start = Lsn::from_segment(lsn.segment_number(seg), seg).unwrap();
            prop_assert!(start <= lsn);
            prop_assert!(lsn.0 - start.0 < seg.bytes());
            prop_assert_eq!(lsn.segment_offset(seg), lsn.0 - start.0);
        }
    }
}
