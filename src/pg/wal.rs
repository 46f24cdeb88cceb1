//! WAL file names, page headers, and a record-level walk.
//!
//! **Names** (`src/include/access/xlog_internal.h`, `XLogFileName`): a segment
//! is `TTTTTTTTXXXXXXXXYYYYYYYY`, 24 upper-case hex digits: timeline, then the
//! segment number split into a 4 GiB "xlogid" and the segment within it. The
//! radix of the split depends on the segment size. Archives also hold
//! `TTTTTTTT.history`, `<segment>.partial` and
//! `<segment>.<offset 8 hex>.backup`.
//!
//! **Pages** (`XLogPageHeaderData`, `XLogLongPageHeaderData`): every
//! `XLOG_BLCKSZ` page starts with a 24-byte header (magic u16, info u16,
//! timeline u32, page address u64, remaining length u32, padding); the first
//! page of a segment has a 40-byte long header that adds the system
//! identifier (u64), segment size (u32) and block size (u32).
//!
//! **Records** (`XLogRecord` in `src/include/access/xlogrecord.h`): a 24-byte
//! header (total length u32, xid u32, previous record u64, info u8, resource
//! manager u8, 2 pad bytes, CRC-32C u32) at an 8-byte aligned position,
//! followed by `total length - 24` bytes. The CRC covers the bytes after the
//! header and then the header up to the CRC field. A record may span pages:
//! each following page says `XLP_FIRST_IS_CONTRECORD` and how many bytes of
//! it remain. After an `XLOG_SWITCH` record the rest of the segment is unused.
//!
//! [`RecordWalker`] is fed pages in order and validates page headers, record
//! headers, record CRCs and record bodies (see [`super::walrecord`]) the way
//! `xlogreader.c` does. It keeps no more of a record than its first
//! [`MAX_HEADER_BYTES`] bytes, so a walk of any size runs in constant memory.

use std::fmt;

use serde::Serialize;

use super::lsn::{Lsn, TimelineId, WalSegSize};
use super::version::WalRecordRules;
use super::walrecord::{check_body, BodyProblem, MAX_HEADER_BYTES};

/// `XLP_FIRST_IS_CONTRECORD`.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_BKP_REMOVABLE`.
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD` (back-patched in 2021).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
const XLP_ALL_FLAGS: u16 = 0x000F;
/// `SizeOfXLogShortPHD`.
pub const SHORT_HEADER_LEN: usize = 24;
/// `SizeOfXLogLongPHD`.
pub const LONG_HEADER_LEN: usize = 40;
/// `SizeOfXLogRecord`.
pub const RECORD_HEADER_LEN: usize = 24;
const RECORD_CRC_OFFSET: usize = 20;
/// `RM_XLOG_ID` and `XLOG_SWITCH`.
const RM_XLOG_ID: u8 = 0;
const XLOG_SWITCH: u8 = 0x40;

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// A WAL segment: timeline plus segment number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    pub tli: TimelineId,
    pub segno: u64,
}

/// Why a string is not a WAL file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAL file name {name:?}: {reason}")]
pub struct WalNameError {
    pub name: String,
    pub reason: &'static str,
}

impl SegmentName {
    pub fn new(tli: TimelineId, segno: u64) -> Self {
        SegmentName { tli, segno }
    }

    /// The segment holding `lsn`.
    pub fn containing(tli: TimelineId, lsn: Lsn, seg: WalSegSize) -> Self {
        SegmentName { tli, segno: lsn.segment_number(seg) }
    }

    /// The file name for this segment at the given segment size.
    pub fn file_name(&self, seg: WalSegSize) -> String {
        let per = seg.segments_per_xlogid();
        format!("{:08X}{:08X}{:08X}", self.tli.0, self.segno / per, self.segno % per)
    }

    /// Parse a 24-digit segment file name.
    pub fn parse(name: &str, seg: WalSegSize) -> Result<Self, WalNameError> {
        let err = |reason| WalNameError { name: name.to_string(), reason };
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("expected 24 hex digits"));
        }
        let part =
            |r: std::ops::Range<usize>| u64::from_str_radix(&name[r], 16).map_err(|_| err("expected 24 hex digits"));
        let tli = part(0..8)? as u32;
        let hi = part(8..16)?;
        let lo = part(16..24)?;
        let per = seg.segments_per_xlogid();
        if lo >= per {
            return Err(err("segment part is too large for this segment size"));
        }
        if tli == 0 {
            return Err(err("timeline 0"));
        }
        Ok(SegmentName { tli: TimelineId(tli), segno: hi * per + lo })
    }

    /// The timeline encoded in a segment-like name, without knowing the size.
    pub fn timeline_of(name: &str) -> Option<TimelineId> {
        if name.len() < 8 {
            return None;
        }
        u32::from_str_radix(name.get(0..8)?, 16).ok().map(TimelineId)
    }

    /// The first byte of this segment.
    pub fn start_lsn(&self, seg: WalSegSize) -> Lsn {
        Lsn(self.segno.saturating_mul(seg.bytes()))
    }
}

/// `TTTTTTTT.history`.
pub fn history_file_name(tli: TimelineId) -> String {
    format!("{:08X}.history", tli.0)
}

/// `<segment>.<offset>.backup` for a backup starting at `start` on `tli`.
pub fn backup_history_file_name(tli: TimelineId, start: Lsn, seg: WalSegSize) -> String {
    format!("{}.{:08X}.backup", SegmentName::containing(tli, start, seg).file_name(seg), start.segment_offset(seg))
}

/// What a file in a WAL archive or pg_wal is, judged by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalFileKind {
    /// A complete segment (the 24-digit name).
    Segment(String),
    /// `<segment>.partial`.
    Partial(String),
    /// `TTTTTTTT.history`.
    History(TimelineId),
    /// `<segment>.<offset>.backup`.
    BackupHistory { segment: String, offset: u32 },
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl WalFileKind {
    /// Classify a file name; `None` for anything else.
    pub fn classify(name: &str) -> Option<WalFileKind> {
        if is_hex(name, 24) {
            return Some(WalFileKind::Segment(name.to_string()));
        }
        if let Some(seg) = name.strip_suffix(".partial") {
            return is_hex(seg, 24).then(|| WalFileKind::Partial(seg.to_string()));
        }
        if let Some(t) = name.strip_suffix(".history") {
            if is_hex(t, 8) {
                return u32::from_str_radix(t, 16).ok().filter(|v| *v > 0).map(|v| WalFileKind::History(TimelineId(v)));
            }
            return None;
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, off) = rest.split_once('.')?;
            if is_hex(seg, 24) && is_hex(off, 8) {
                return u32::from_str_radix(off, 16)
                    .ok()
                    .map(|offset| WalFileKind::BackupHistory { segment: seg.to_string(), offset });
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Page headers
// ---------------------------------------------------------------------------

/// A decoded page header; the long fields are set on long headers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    pub magic: u16,
    pub info: u16,
    pub tli: TimelineId,
    pub page_addr: Lsn,
    pub rem_len: u32,
    pub long: Option<LongHeader>,
}

/// The extra fields of a long page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongHeader {
    pub system_identifier: u64,
    pub seg_size: u32,
    pub block_size: u32,
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl PageHeader {
    /// Decode a page header. Returns `None` when the bytes are too short.
    pub fn parse(page: &[u8]) -> Option<PageHeader> {
        if page.len() < SHORT_HEADER_LEN {
            return None;
        }
        let info = le16(page, 2);
        let long = if info & XLP_LONG_HEADER != 0 {
            if page.len() < LONG_HEADER_LEN {
                return None;
            }
            Some(LongHeader { system_identifier: le64(page, 24), seg_size: le32(page, 32), block_size: le32(page, 36) })
        } else {
            None
        };
        Some(PageHeader {
            magic: le16(page, 0),
            info,
            tli: TimelineId(le32(page, 4)),
            page_addr: Lsn(le64(page, 8)),
            rem_len: le32(page, 16),
            long,
        })
    }

    pub fn header_len(&self) -> usize {
        if self.long.is_some() {
            LONG_HEADER_LEN
        } else {
            SHORT_HEADER_LEN
        }
    }

    pub fn is_continuation(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    /// The checks of `XLogReaderValidatePageHeader()` (xlogreader.c) for the
    /// page expected at `at`, except the timeline order, which needs the
    /// pages before it: magic, info bits, a long header exactly at a
    /// segment's start with this system's identifier and sizes, and the page
    /// address.
    pub fn validate(&self, at: Lsn, cfg: &WalkConfig) -> Result<(), WalProblem> {
        if self.magic != cfg.magic {
            return Err(WalProblem::BadMagic { found: self.magic, expected: cfg.magic });
        }
        if self.info & !XLP_ALL_FLAGS != 0 {
            return Err(WalProblem::BadInfoBits { info: self.info });
        }
        match self.long {
            Some(l) => l.validate(cfg)?,
            None if at.segment_offset(cfg.seg_size) == 0 => return Err(WalProblem::MissingLongHeader),
            None => {}
        }
        if self.page_addr != at {
            return Err(WalProblem::PageAddrMismatch { found: self.page_addr, expected: at });
        }
        Ok(())
    }
}

impl LongHeader {
    fn validate(&self, cfg: &WalkConfig) -> Result<(), WalProblem> {
        if let Some(sysid) = cfg.system_identifier {
            if self.system_identifier != sysid {
                return Err(WalProblem::SystemIdMismatch {
                    found: self.system_identifier.to_string(),
                    expected: sysid.to_string(),
                });
            }
        }
        if u64::from(self.seg_size) != cfg.seg_size.bytes() {
            return Err(WalProblem::SegSizeMismatch { found: self.seg_size, expected: cfg.seg_size.bytes() as u32 });
        }
        if self.block_size != cfg.page_size {
            return Err(WalProblem::BlockSizeMismatch { found: self.block_size, expected: cfg.page_size });
        }
        Ok(())
    }
}

/// What is wrong with the first page header of a segment starting at
/// `seg_start`, checked on its own (a walk that starts inside the segment
/// never reads that page).
pub fn segment_head_problem(head: &[u8], cfg: &WalkConfig, seg_start: Lsn) -> Option<WalProblem> {
    let Some(h) = PageHeader::parse(head) else { return Some(WalProblem::ShortPage { len: head.len() }) };
    h.validate(seg_start, cfg).err()
}

/// Where a reader that starts at a segment's first page begins reading
/// records: after the tail of a record continued from the segment before,
/// exactly as [`RecordWalker`] skips it. Fed the segment's pages in order.
#[derive(Debug)]
pub struct FirstRecordFinder {
    cfg: WalkConfig,
    at: Lsn,
    seg_start: Lsn,
    /// Bytes of the continued record still to skip, once known.
    remaining: Option<u64>,
}

/// The result of one page fed to a [`FirstRecordFinder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstRecord {
    /// The first record starts here.
    At(Lsn),
    /// The continued record goes on: feed the next page.
    NeedMore,
    /// Not a clean place to start (odd headers, a record ending in a page's
    /// last bytes, or covering the whole segment).
    Unusable,
}

impl FirstRecordFinder {
    pub fn new(cfg: WalkConfig, seg_start: Lsn) -> FirstRecordFinder {
        FirstRecordFinder { cfg, at: seg_start, seg_start, remaining: None }
    }

    pub fn feed(&mut self, page: &[u8]) -> FirstRecord {
        let page_size = self.cfg.page_size as usize;
        let Some(h) = PageHeader::parse(page) else { return FirstRecord::Unusable };
        if page.len() != page_size || h.validate(self.at, &self.cfg).is_err() {
            return FirstRecord::Unusable;
        }
        let rem = u64::from(h.rem_len);
        match self.remaining {
            None if !h.is_continuation() => return FirstRecord::At(Lsn(self.at.0 + h.header_len() as u64)),
            // A continuation must go on where the previous page left it.
            Some(left) if !h.is_continuation() || rem != left => return FirstRecord::Unusable,
            _ => {}
        }
        let room = (page_size - h.header_len()) as u64;
        if rem < room {
            let off = align8(h.header_len() + rem as usize);
            return if off < page_size { FirstRecord::At(Lsn(self.at.0 + off as u64)) } else { FirstRecord::Unusable };
        }
        self.remaining = Some(rem - room);
        self.at = Lsn(self.at.0 + page_size as u64);
        if self.at.0 >= self.seg_start.0 + self.cfg.seg_size.bytes() {
            return FirstRecord::Unusable;
        }
        FirstRecord::NeedMore
    }
}

// ---------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------

/// What is wrong at a WAL position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WalProblem {
    ShortPage { len: usize },
    BadMagic { found: u16, expected: u16 },
    BadInfoBits { info: u16 },
    MissingLongHeader,
    SystemIdMismatch { found: String, expected: String },
    SegSizeMismatch { found: u32, expected: u32 },
    BlockSizeMismatch { found: u32, expected: u32 },
    PageAddrMismatch { found: Lsn, expected: Lsn },
    TimelineOutOfSequence { found: u32, after: u32 },
    MissingContrecord { page: Lsn },
    UnexpectedContrecord,
    ContrecordLength { page: Lsn, found: u32, expected: u64 },
    InvalidRecordLength { len: u32 },
    InvalidResourceManager { rmid: u8 },
    BadPrevLink { found: Lsn, expected: Lsn },
    RecordCrc { stored: u32, computed: u32 },
    RecordBody { body: BodyProblem },
}

impl WalProblem {
    /// Whether the problem is with a page header rather than a record.
    pub fn is_page_header(&self) -> bool {
        matches!(
            self,
            WalProblem::ShortPage { .. }
                | WalProblem::BadMagic { .. }
                | WalProblem::BadInfoBits { .. }
                | WalProblem::MissingLongHeader
                | WalProblem::SegSizeMismatch { .. }
                | WalProblem::BlockSizeMismatch { .. }
                | WalProblem::PageAddrMismatch { .. }
                | WalProblem::TimelineOutOfSequence { .. }
        )
    }
}

impl fmt::Display for WalProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalProblem::ShortPage { len } => write!(f, "a page of only {len} bytes"),
            WalProblem::BadMagic { found, expected } => {
                write!(f, "invalid magic number {found:04X} in page header (expected {expected:04X})")
            }
            WalProblem::BadInfoBits { info } => write!(f, "invalid info bits {info:04X} in page header"),
            WalProblem::MissingLongHeader => write!(f, "first page of the segment has no long header"),
            WalProblem::SystemIdMismatch { found, expected } => {
                write!(f, "segment is from another system: identifier {found}, expected {expected}")
            }
            WalProblem::SegSizeMismatch { found, expected } => {
                write!(f, "segment size in page header is {found}, expected {expected}")
            }
            WalProblem::BlockSizeMismatch { found, expected } => {
                write!(f, "WAL block size in page header is {found}, expected {expected}")
            }
            WalProblem::PageAddrMismatch { found, expected } => {
                write!(f, "unexpected page address {found} (expected {expected}): a recycled or misplaced segment")
            }
            WalProblem::TimelineOutOfSequence { found, after } => {
                write!(f, "out-of-sequence timeline ID {found} (after {after})")
            }
            WalProblem::MissingContrecord { page } => {
                write!(f, "the record continues on page {page}, but that page has no continuation flag")
            }
            WalProblem::UnexpectedContrecord => {
                write!(f, "a new record should start on this page, but it says it continues one")
            }
            WalProblem::ContrecordLength { page, found, expected } => {
                write!(f, "invalid continuation length {found} on page {page} (expected {expected})")
            }
            WalProblem::InvalidRecordLength { len } => write!(f, "invalid record length {len}"),
            WalProblem::InvalidResourceManager { rmid } => write!(f, "invalid resource manager ID {rmid}"),
            WalProblem::BadPrevLink { found, expected } => {
                write!(f, "record's previous-record link is {found}, expected {expected}")
            }
            WalProblem::RecordCrc { stored, computed } => {
                write!(f, "incorrect record CRC: stored {stored:08X}, computed {computed:08X}")
            }
            WalProblem::RecordBody { body } => write!(f, "record cannot be decoded: {body}"),
        }
    }
}

/// A problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalError {
    /// The page or record where the problem is.
    pub lsn: Lsn,
    #[serde(flatten)]
    pub problem: WalProblem,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.lsn, self.problem)
    }
}

impl std::error::Error for WalError {}

/// Settings of a walk.
#[derive(Clone, Copy, Debug)]
pub struct WalkConfig {
    pub magic: u16,
    pub seg_size: WalSegSize,
    pub page_size: u32,
    /// Compared with long headers when known.
    pub system_identifier: Option<u64>,
    /// How the major decodes records.
    pub rules: &'static WalRecordRules,
    /// The cluster's data block size (`BLCKSZ`), for full-page images.
    pub block_size: u32,
}

impl WalkConfig {
    /// `RmgrIdIsValid()` (15+), `xl_rmid <= RM_MAX_ID` before.
    fn rmgr_is_valid(&self, rmid: u8) -> bool {
        rmid <= self.rules.max_builtin_rmgr || self.rules.custom_rmgrs.is_some_and(|(lo, hi)| (lo..=hi).contains(&rmid))
    }
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Before the first record: skipping the tail of a record that began
    /// before the walk's first page.
    Skipping { remaining: u64 },
    /// Collecting a record header (it may be split across pages).
    Header { start: Lsn, buf: [u8; RECORD_HEADER_LEN], have: usize },
    /// Streaming a record's payload through the CRC.
    Payload { start: Lsn, header: [u8; RECORD_HEADER_LEN], remaining: u64, crc: u32 },
    /// After XLOG_SWITCH: nothing more in this segment.
    SwitchedUntil { next_segment: Lsn },
    /// A record ending at or after the walk's end was verified.
    Done,
}

/// Counters of a walk.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct WalkStats {
    pub pages: u64,
    pub records: u64,
    pub bytes: u64,
}

/// The records at the edges of a walk, to check `xl_prev` and the page
/// timelines across the boundary between two walks of adjacent stretches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkEdges {
    /// Start and `xl_prev` of the first record whose header was read.
    pub first_record: Option<(Lsn, Lsn)>,
    /// Start of the last complete, valid record.
    pub last_record: Option<Lsn>,
    /// The timeline of the first and of the last page read.
    pub first_page_tli: Option<TimelineId>,
    pub last_page_tli: Option<TimelineId>,
}

/// Validates a stream of WAL pages record by record.
#[derive(Debug)]
pub struct RecordWalker {
    cfg: WalkConfig,
    state: State,
    /// Address the next fed page must have.
    next_page: Lsn,
    /// The first bytes of the record being read, for [`check_body`].
    body: [u8; MAX_HEADER_BYTES],
    body_len: usize,
    /// End of the last complete, valid record.
    valid_until: Lsn,
    /// The walk is complete once a valid record ends at or after this.
    end: Lsn,
    edges: WalkEdges,
    pub stats: WalkStats,
}

/// `MaxAllocSize`: xlogreader.c cannot hold a longer record.
const MAX_RECORD_LEN: u32 = 0x3FFF_FFFF;

impl RecordWalker {
    /// Start a walk at `first_page`, which must be page-aligned, that is
    /// complete when a valid record ends at or after `end`. The walk skips
    /// the tail of any record continued from before the first page.
    pub fn new(cfg: WalkConfig, first_page: Lsn, end: Lsn) -> RecordWalker {
        RecordWalker {
            end,
            cfg,
            state: State::Skipping { remaining: 0 },
            next_page: first_page,
            body: [0; MAX_HEADER_BYTES],
            body_len: 0,
            valid_until: first_page,
            edges: WalkEdges::default(),
            stats: WalkStats::default(),
        }
    }

    /// The address of the page the walk expects next.
    pub fn next_page(&self) -> Lsn {
        self.next_page
    }

    /// End of the last record whose CRC was verified (or the start, if none).
    pub fn valid_until(&self) -> Lsn {
        self.valid_until
    }

    /// Whether the walk has verified a record reaching its end.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The records and page timelines at the walk's edges.
    pub fn edges(&self) -> WalkEdges {
        self.edges
    }

    /// Whether the walk no longer needs the rest of the current segment.
    pub fn skip_to(&self) -> Option<Lsn> {
        match self.state {
            State::SwitchedUntil { next_segment } if next_segment > self.next_page => Some(next_segment),
            _ => None,
        }
    }

    /// Jump over unused pages after an XLOG_SWITCH.
    pub fn skip_switched_pages(&mut self) {
        if let Some(to) = self.skip_to() {
            self.next_page = to;
        }
    }

    /// Feed the next page (exactly `page_size` bytes at [`Self::next_page`]).
    /// Returns the end of the last valid record so far.
    pub fn feed_page(&mut self, page: &[u8]) -> Result<Lsn, WalError> {
        if self.is_done() {
            return Ok(self.valid_until);
        }
        let page_lsn = self.next_page;
        let h = self.check_page_header(page)?;
        self.stats.pages += 1;
        self.stats.bytes += page.len() as u64;
        if self.continue_on_page(&h, page_lsn)? {
            self.read_records(page, h.header_len(), page_lsn)?;
        }
        self.next_page = Lsn(page_lsn.0 + page.len() as u64);
        Ok(self.valid_until)
    }

    fn check_page_header(&mut self, page: &[u8]) -> Result<PageHeader, WalError> {
        let at = self.next_page;
        let err = |problem| WalError { lsn: at, problem };
        let h = PageHeader::parse(page).ok_or(err(WalProblem::ShortPage { len: page.len() }))?;
        h.validate(at, &self.cfg).map_err(err)?;
        if let Some(last) = self.edges.last_page_tli {
            if h.tli < last {
                return Err(err(WalProblem::TimelineOutOfSequence { found: h.tli.0, after: last.0 }));
            }
        }
        self.edges.first_page_tli.get_or_insert(h.tli);
        self.edges.last_page_tli = Some(h.tli);
        Ok(h)
    }

    /// Reconcile the page's continuation data with the walk's state.
    /// `false` when the page is the unused tail of a switched segment.
    fn continue_on_page(&mut self, h: &PageHeader, page_lsn: Lsn) -> Result<bool, WalError> {
        let cont = h.is_continuation();
        match &mut self.state {
            State::Skipping { remaining } => {
                // At the very first page, or still inside a record that began
                // before the walk: trust the page's own remaining length.
                *remaining = if cont { u64::from(h.rem_len) } else { 0 };
            }
            State::Header { have: 0, .. } => {
                // Between records: the next one starts after this header.
                if cont {
                    return Err(WalError { lsn: page_lsn, problem: WalProblem::UnexpectedContrecord });
                }
                self.state = self.header_at(Lsn(page_lsn.0 + h.header_len() as u64));
            }
            State::Header { start, .. } | State::Payload { start, .. } => {
                let start = *start;
                if h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
                    // The record we were reading was abandoned at a crash and
                    // overwritten; PostgreSQL continues with this page's data.
                    self.state = State::Skipping { remaining: 0 };
                } else if !cont {
                    // As xlogreader.c, reported at the record it was reading.
                    return Err(WalError { lsn: start, problem: WalProblem::MissingContrecord { page: page_lsn } });
                } else {
                    let expected = match self.state {
                        State::Payload { remaining, .. } => remaining,
                        State::Header { buf, have, .. } => u64::from(le32(&buf, 0)).saturating_sub(have as u64),
                        _ => 0,
                    };
                    if u64::from(h.rem_len) != expected {
                        let problem = WalProblem::ContrecordLength { page: page_lsn, found: h.rem_len, expected };
                        return Err(WalError { lsn: start, problem });
                    }
                }
            }
            State::Done => {}
            State::SwitchedUntil { next_segment } => {
                if page_lsn < *next_segment {
                    return Ok(false); // unused tail of a switched segment
                }
                self.state = State::Skipping { remaining: 0 };
            }
        }
        Ok(true)
    }

    fn header_at(&mut self, start: Lsn) -> State {
        self.body_len = 0;
        State::Header { start, buf: [0; RECORD_HEADER_LEN], have: 0 }
    }

    /// Read the records on a page from `off`.
    fn read_records(&mut self, page: &[u8], mut off: usize, page_lsn: Lsn) -> Result<(), WalError> {
        // A record without payload whose header ends the page is complete
        // there, not continued on the next page.
        while off < page.len() || matches!(self.state, State::Payload { remaining: 0, .. }) {
            match self.state {
                State::Skipping { remaining } => {
                    let take = (remaining as usize).min(page.len() - off);
                    off += take;
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = State::Skipping { remaining: left };
                        break;
                    }
                    off = align8(off);
                    self.state = self.header_at(Lsn(page_lsn.0 + off as u64));
                }
                State::Header { start, mut buf, have } => {
                    let take = (RECORD_HEADER_LEN - have).min(page.len() - off);
                    buf[have..have + take].copy_from_slice(&page[off..off + take]);
                    off += take;
                    let have = have + take;
                    let tot_len = le32(&buf, 0);
                    if have >= 4 && !(RECORD_HEADER_LEN as u32..=MAX_RECORD_LEN).contains(&tot_len) {
                        return Err(WalError { lsn: start, problem: WalProblem::InvalidRecordLength { len: tot_len } });
                    }
                    if have < RECORD_HEADER_LEN {
                        self.state = State::Header { start, buf, have };
                        break;
                    }
                    self.check_record_header(start, &buf)?;
                    let remaining = u64::from(tot_len) - RECORD_HEADER_LEN as u64;
                    self.state = State::Payload { start, header: buf, remaining, crc: 0 };
                }
                State::Payload { start, header, remaining, crc } => {
                    let take = (remaining as usize).min(page.len() - off);
                    let bytes = &page[off..off + take];
                    let keep = (MAX_HEADER_BYTES - self.body_len).min(take);
                    self.body[self.body_len..self.body_len + keep].copy_from_slice(&bytes[..keep]);
                    self.body_len += keep;
                    let crc = crc32c::crc32c_append(crc, bytes);
                    off += take;
                    let left = remaining - take as u64;
                    if left > 0 {
                        self.state = State::Payload { start, header, remaining: left, crc };
                        break;
                    }
                    let exact_end = Lsn(page_lsn.0 + off as u64);
                    if !self.finish_record(start, &header, crc, exact_end)? {
                        break;
                    }
                    off = align8(off);
                    self.state = self.header_at(Lsn(page_lsn.0 + off as u64));
                }
                State::SwitchedUntil { .. } | State::Done => break,
            }
        }
        Ok(())
    }

    /// A record's bytes are all read: check its CRC, then decode its body,
    /// as `ValidXLogRecord()` and `DecodeXLogRecord()` do. `false` when the
    /// walk stops reading this page (done, or after XLOG_SWITCH).
    fn finish_record(
        &mut self,
        start: Lsn,
        header: &[u8; RECORD_HEADER_LEN],
        payload_crc: u32,
        exact_end: Lsn,
    ) -> Result<bool, WalError> {
        let computed = crc32c::crc32c_append(payload_crc, &header[..RECORD_CRC_OFFSET]);
        let stored = le32(header, RECORD_CRC_OFFSET);
        if computed != stored {
            return Err(WalError { lsn: start, problem: WalProblem::RecordCrc { stored, computed } });
        }
        let body_len = u64::from(le32(header, 0)) - RECORD_HEADER_LEN as u64;
        check_body(&self.body[..self.body_len], body_len, self.cfg.rules, self.cfg.block_size)
            .map_err(|body| WalError { lsn: start, problem: WalProblem::RecordBody { body } })?;
        // The record's end as xlogreader.c sets EndRecPtr: rounded up to 8
        // bytes, and for XLOG_SWITCH the next segment's start. The end points
        // PostgreSQL reports (minRecoveryPoint, stop LSNs,
        // pg_last_wal_replay_lsn()) have this form.
        let (info, rmid) = (header[16], header[17]);
        let is_switch = rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH;
        let seg = self.cfg.seg_size.bytes();
        let end = if is_switch {
            Lsn((exact_end.0.saturating_sub(1) / seg + 1) * seg)
        } else {
            exact_end.max_align().unwrap_or(exact_end)
        };
        self.valid_until = end;
        self.edges.last_record = Some(start);
        self.stats.records += 1;
        if end >= self.end {
            self.state = State::Done;
            return Ok(false);
        }
        if is_switch {
            self.state = State::SwitchedUntil { next_segment: end };
            return Ok(false);
        }
        Ok(true)
    }

    /// `ValidXLogRecordHeader()`: the resource manager and the back link
    /// (the length was checked as soon as it was read).
    fn check_record_header(&mut self, start: Lsn, h: &[u8; RECORD_HEADER_LEN]) -> Result<(), WalError> {
        let rmid = h[17];
        if !self.cfg.rmgr_is_valid(rmid) {
            return Err(WalError { lsn: start, problem: WalProblem::InvalidResourceManager { rmid } });
        }
        let prev = Lsn(le64(h, 8));
        if self.edges.first_record.is_none() {
            self.edges.first_record = Some((start, prev));
        }
        match self.edges.last_record {
            Some(expected) if prev != expected => {
                Err(WalError { lsn: start, problem: WalProblem::BadPrevLink { found: prev, expected } })
            }
            // The first record read: its predecessor is unknown, but must be
            // before it (as for a random-access read in xlogreader.c).
            None if prev >= start => {
                Err(WalError { lsn: start, problem: WalProblem::BadPrevLink { found: prev, expected: start } })
            }
            _ => Ok(()),
        }
    }
}

fn align8(v: usize) -> usize {
    (v + 7) & !7
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_for_default_size() {
        let seg = WalSegSize::DEFAULT;
        let n = SegmentName::containing(TimelineId(1), Lsn(0x17414F8), seg);
        assert_eq!(n.file_name(seg), "000000010000000000000001");
        let n = SegmentName::containing(TimelineId(2), Lsn(0x1_FF00_0000), seg);
        assert_eq!(n.file_name(seg), "0000000200000001000000FF");
        assert_eq!(SegmentName::parse("0000000200000001000000FF", seg).unwrap(), n);
        assert!(SegmentName::parse("000000020000000100000100", seg).is_err());
        assert!(SegmentName::parse("00000000000000010000000F", seg).is_err());
        assert!(SegmentName::parse("0000000200000001000000F", seg).is_err());
        assert!(SegmentName::parse("0000000200000001000000FG", seg).is_err());
        let gib = WalSegSize::new(1 << 30).unwrap();
        assert_eq!(SegmentName::new(TimelineId(1), 5).file_name(gib), "000000010000000100000001");
        assert_eq!(
            backup_history_file_name(TimelineId(1), Lsn(0x2000028), seg),
            "000000010000000000000002.00000028.backup"
        );
        assert_eq!(history_file_name(TimelineId(10)), "0000000A.history");
    }

    #[test]
    fn classify_names() {
        assert_eq!(WalFileKind::classify("00000002.history"), Some(WalFileKind::History(TimelineId(2))));
        assert_eq!(WalFileKind::classify("00000000.history"), None);
        assert_eq!(
            WalFileKind::classify("000000010000000000000003.partial"),
            Some(WalFileKind::Partial("000000010000000000000003".into()))
        );
        assert_eq!(
            WalFileKind::classify("000000010000000000000002.00000028.backup"),
            Some(WalFileKind::BackupHistory { segment: "000000010000000000000002".into(), offset: 0x28 })
        );
        assert!(matches!(WalFileKind::classify("000000010000000000000002"), Some(WalFileKind::Segment(_))));
        for junk in ["", "x.history", "archive_status", "000000010000000000000002.gz", "0000000100000000000000023"] {
            assert_eq!(WalFileKind::classify(junk), None, "{junk}");
        }
    }

    proptest! {
        #[test]
        fn segment_names_round_trip(tli in 1u32.., segno in 0u64..(1u64 << 40), shift in 20u32..=30) {
            let seg = WalSegSize::new(1u64 << shift).unwrap();
            // Keep the xlogid part within 32 bits.
            let segno = segno % (seg.segments_per_xlogid() << 32);
            let n = SegmentName::new(TimelineId(tli), segno);
            let name = n.file_name(seg);
            prop_assert_eq!(name.len(), 24);
            prop_assert_eq!(SegmentName::parse(&name, seg).unwrap(), n);
            prop_assert_eq!(n.start_lsn(seg).segment_number(seg), segno);
        }
    }

    /// The bytes of record `k` that are not page headers, as offsets into
    /// the buffer.
    fn record_bytes(w: &FakeWal, k: usize) -> Vec<usize> {
        let (start, end) = (w.records[k].0 .0 - w.base.0, w.exact_ends[k].0 - w.base.0);
        (start..end)
            .filter(|o| {
                let addr = w.base.0 + o;
                let in_page = (addr % w.page as u64) as usize;
                let header = if addr / w.page as u64 * w.page as u64 % w.seg.bytes() == 0 {
                    LONG_HEADER_LEN
                } else {
                    SHORT_HEADER_LEN
                };
                in_page >= header
            })
            .map(|o| o as usize)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Random record sizes and page sizes, crossing a segment boundary;
        /// one byte of one record flipped: the walk reports the damage at
        /// exactly that record, whatever the byte was (length, resource
        /// manager, back link, CRC, payload).
        #[test]
        fn a_flipped_byte_is_reported_at_its_record(
            sizes in prop::collection::vec(prop_oneof![Just(0usize), 2usize..300, 300usize..20000], 3..30),
            page_shift in 10u32..=13,
            pages_before_segment_end in 1u64..6,
            victim in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let seg = WalSegSize::new(1 << 20).unwrap();
            let page = 1usize << page_shift;
            let mut w = FakeWal::new(Lsn(seg.bytes() - pages_before_segment_end * page as u64), seg, page, 0xD110);
            for (i, n) in sizes.iter().enumerate() {
                w.record(*n, (i % 20) as u8, 0);
            }
            let target = w.records.last().unwrap().1;
            // More WAL after the end, so that a record whose length was
            // enlarged runs into real pages, as it would in a real segment.
            for _ in 0..8 {
                w.record(page, 1, 0);
            }
            w.finish();
            let k = victim.index(sizes.len());
            let bytes = record_bytes(&w, k);
            let o = bytes[at.index(bytes.len())];
            w.bytes[o] ^= 1 << bit;
            let mut walker = RecordWalker::new(cfg(&w), w.base, target);
            let mut result = Ok(w.base);
            for chunk in w.bytes.chunks(w.page) {
                result = walker.feed_page(chunk);
                if result.is_err() || walker.is_done() {
                    break;
                }
            }
            let e = result.expect_err("the flipped byte went unnoticed");
            prop_assert_eq!(e.lsn, w.records[k].0, "{}", e);
        }
    }

    /// A tiny WAL writer for tests: lays records out the way PostgreSQL does.
    pub(crate) struct FakeWal {
        pub seg: WalSegSize,
        pub page: usize,
        pub magic: u16,
        pub sysid: u64,
        pub tli: u32,
        pub bytes: Vec<u8>,
        /// Start of the buffer.
        pub base: Lsn,
        pub pos: usize,
        pub prev: u64,
        /// (start, end as PostgreSQL reports it) of every record.
        pub records: Vec<(Lsn, Lsn)>,
        /// The exact end (last byte + 1) of every record.
        pub exact_ends: Vec<Lsn>,
        /// The body of the next record, when not the default main data.
        pub next_body: Option<Vec<u8>>,
    }

    impl FakeWal {
        pub fn new(base: Lsn, seg: WalSegSize, page: usize, magic: u16) -> FakeWal {
            let mut w = FakeWal {
                seg,
                page,
                magic,
                sysid: 42,
                tli: 1,
                bytes: Vec::new(),
                base,
                pos: 0,
                prev: 0,
                records: Vec::new(),
                exact_ends: Vec::new(),
                next_body: None,
            };
            w.start_page(0);
            w
        }

        fn start_page(&mut self, rem: u32) {
            let addr = self.base.0 + self.bytes.len() as u64;
            let long = addr % self.seg.bytes() == 0;
            let mut h = vec![0u8; if long { LONG_HEADER_LEN } else { SHORT_HEADER_LEN }];
            let mut info = if long { XLP_LONG_HEADER } else { 0 };
            if rem > 0 {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            h[0..2].copy_from_slice(&self.magic.to_le_bytes());
            h[2..4].copy_from_slice(&info.to_le_bytes());
            h[4..8].copy_from_slice(&self.tli.to_le_bytes());
            h[8..16].copy_from_slice(&addr.to_le_bytes());
            h[16..20].copy_from_slice(&rem.to_le_bytes());
            if long {
                h[24..32].copy_from_slice(&self.sysid.to_le_bytes());
                h[32..36].copy_from_slice(&(self.seg.bytes() as u32).to_le_bytes());
                h[36..40].copy_from_slice(&(self.page as u32).to_le_bytes());
            }
            self.bytes.extend_from_slice(&h);
            self.pos = self.bytes.len();
        }

        /// Append a record with `payload_len` payload bytes.
        pub fn record(&mut self, payload_len: usize, rmid: u8, info: u8) {
            self.pos = align8(self.pos);
            if self.pos % self.page == 0 {
                self.bytes.resize(self.pos, 0);
                self.start_page(0);
            }
            self.bytes.resize(self.pos, 0);
            let start = self.base.0 + self.pos as u64;
            let tot = (RECORD_HEADER_LEN + payload_len) as u32;
            let mut rec = vec![0u8; tot as usize];
            rec[0..4].copy_from_slice(&tot.to_le_bytes());
            rec[8..16].copy_from_slice(&self.prev.to_le_bytes());
            rec[16] = info;
            rec[17] = rmid;
            for (i, b) in rec[RECORD_HEADER_LEN..].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(start as u8);
            }
            // A body of main data only, so that it decodes:
            // XLR_BLOCK_ID_DATA_SHORT or _LONG and the length.
            let body = &mut rec[RECORD_HEADER_LEN..];
            if let Some(b) = self.next_body.take() {
                body.copy_from_slice(&b);
            } else {
                match body.len() {
                    0 => {}
                    n @ 2..=256 => body[..2].copy_from_slice(&[255, (n - 2) as u8]),
                    n if n >= 5 => {
                        body[0] = 254;
                        body[1..5].copy_from_slice(&((n - 5) as u32).to_le_bytes());
                    }
                    n => panic!("a fake record body of {n} bytes cannot be encoded"),
                }
            }
            let crc = crc32c::crc32c_append(crc32c::crc32c(&rec[RECORD_HEADER_LEN..]), &rec[..RECORD_CRC_OFFSET]);
            rec[20..24].copy_from_slice(&crc.to_le_bytes());
            let mut written = 0usize;
            while written < rec.len() {
                let room = self.page - (self.bytes.len() % self.page);
                let take = room.min(rec.len() - written);
                self.bytes.extend_from_slice(&rec[written..written + take]);
                written += take;
                if written < rec.len() {
                    self.start_page((rec.len() - written) as u32);
                }
            }
            self.pos = self.bytes.len();
            self.prev = start;
            // Record the end as PostgreSQL reports it (EndRecPtr): aligned to
            // 8 bytes, and the next segment's start after XLOG_SWITCH.
            let exact = self.base.0 + self.pos as u64;
            let seg = self.seg.bytes();
            let end = if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
                (exact - 1) / seg * seg + seg
            } else {
                (exact + 7) & !7
            };
            self.records.push((Lsn(start), Lsn(end)));
            self.exact_ends.push(Lsn(exact));
        }

        /// Pad to the next page boundary.
        pub fn finish(&mut self) {
            let pad = (self.page - self.bytes.len() % self.page) % self.page;
            self.bytes.extend(std::iter::repeat_n(0u8, pad));
        }
    }

    /// The walk settings matching a fake WAL.
    pub(crate) fn cfg(w: &FakeWal) -> WalkConfig {
        WalkConfig {
            magic: w.magic,
            seg_size: w.seg,
            page_size: w.page as u32,
            system_identifier: Some(w.sysid),
            rules: crate::pg::version::by_major(15).unwrap().wal_records,
            block_size: 8192,
        }
    }

    /// Feed pages until the last written record is reached, as the real
    /// caller stops at its end LSN (what follows is zero padding).
    fn walk(w: &FakeWal) -> Result<Lsn, WalError> {
        let target = w.records.last().map_or(w.base, |r| r.1);
        let mut walker = RecordWalker::new(cfg(w), w.base, target);
        let mut last = w.base;
        for chunk in w.bytes.chunks(w.page) {
            last = walker.feed_page(chunk)?;
            if last >= target {
                break;
            }
        }
        Ok(last)
    }

    fn sample() -> FakeWal {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        for (i, len) in [10usize, 8170, 3, 20000, 0, 8144, 8145, 100].iter().enumerate() {
            w.record(*len, (i % 20) as u8, 0);
        }
        w.finish();
        w
    }

    #[test]
    fn walks_records_across_pages() {
        let w = sample();
        let end = walk(&w).unwrap();
        assert_eq!(end, w.records.last().unwrap().1);
    }

    #[test]
    fn catches_a_flipped_payload_byte() {
        let mut w = sample();
        let (start, _) = w.records[3];
        let i = (start.0 - w.base.0) as usize + 9000; // inside the 20000-byte record, past a page header
        w.bytes[i] ^= 0x40;
        let e = walk(&w).unwrap_err();
        assert_eq!(e.lsn, start);
        assert!(matches!(e.problem, WalProblem::RecordCrc { .. }));
    }

    #[test]
    fn catches_header_problems() {
        let w = sample();
        let mut bad = w.bytes.clone();
        bad[8192] ^= 1; // magic of the second page
        let mut walker = RecordWalker::new(cfg(&w), w.base, Lsn(u64::MAX));
        let r: Result<Vec<_>, _> = bad.chunks(8192).map(|c| walker.feed_page(c)).collect();
        assert!(matches!(r.unwrap_err().problem, WalProblem::BadMagic { .. }));

        let mut other = sample();
        other.sysid = 7;
        let mut walker = RecordWalker::new(cfg(&other), other.base, Lsn(u64::MAX));
        assert!(matches!(walker.feed_page(&w.bytes[..8192]).unwrap_err().problem, WalProblem::SystemIdMismatch { .. }));

        // A page from elsewhere: wrong address.
        let mut walker = RecordWalker::new(cfg(&w), Lsn(8192), Lsn(u64::MAX));
        assert!(matches!(walker.feed_page(&w.bytes[..8192]).unwrap_err().problem, WalProblem::PageAddrMismatch { .. }));

        // A zeroed page where records should continue.
        let mut zeroed = w.bytes.clone();
        for b in &mut zeroed[8192..16384] {
            *b = 0;
        }
        let mut walker = RecordWalker::new(cfg(&w), w.base, Lsn(u64::MAX));
        let r: Result<Vec<_>, _> = zeroed.chunks(8192).map(|c| walker.feed_page(c)).collect();
        assert!(r.is_err());
    }

    #[test]
    fn starting_mid_record_skips_its_tail() {
        let w = sample();
        // Start at the second page: it begins with the tail of a record.
        let target = w.records.last().unwrap().1;
        let mut walker = RecordWalker::new(cfg(&w), Lsn(8192), target);
        let mut last = Lsn(0);
        for c in w.bytes[8192..].chunks(8192) {
            last = walker.feed_page(c).unwrap();
            if last >= target {
                break;
            }
        }
        assert_eq!(last, target);
        // Both records that began on the first page are not counted: one
        // lies wholly on it, the other's tail was skipped.
        let begun_on_first_page = w.records.iter().filter(|(s, _)| s.0 < 8192).count() as u64;
        assert_eq!(begun_on_first_page, 2);
        assert_eq!(walker.stats.records, w.records.len() as u64 - begun_on_first_page);
    }

    /// Found by the property below: a record of header only (an
    /// XLOG_SWITCH has no payload) that ends exactly at a page's end.
    #[test]
    fn a_record_without_payload_can_end_a_page() {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        // 40 (long header) + 8128 + 24 = 8192.
        w.record(8128 - RECORD_HEADER_LEN, 1, 0);
        w.record(0, 1, 0);
        assert_eq!(w.exact_ends[1], Lsn(8192));
        w.record(100, 1, 0);
        w.finish();
        assert_eq!(walk(&w).unwrap(), w.records[2].1);
    }

    /// Walk a WAL of three records whose middle one has resource manager
    /// `rmid` and body `body`, with a valid CRC, for the rules of `major`.
    fn walk_with(major: u32, rmid: u8, body: &[u8]) -> Result<Lsn, WalError> {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        w.record(100, 1, 0);
        w.next_body = Some(body.to_vec());
        w.record(body.len(), rmid, 0);
        w.record(100, 1, 0);
        w.finish();
        let c = WalkConfig { rules: crate::pg::version::by_major(major).unwrap().wal_records, ..cfg(&w) };
        let target = w.records.last().unwrap().1;
        let mut walker = RecordWalker::new(c, w.base, target);
        let mut last = w.base;
        for chunk in w.bytes.chunks(w.page) {
            last = walker.feed_page(chunk)?;
        }
        assert_eq!(w.records[1].0, Lsn(168));
        Ok(last)
    }

    /// With the CRC right, what xlogreader.c rejects is still rejected.
    #[test]
    fn records_are_decoded_as_postgres_decodes_them() {
        let at = |r: Result<Lsn, WalError>| r.map_err(|e| (e.lsn, e.problem));
        let main = [255u8, 3, 1, 2, 3];
        assert!(walk_with(15, 21, &main).is_ok());
        // Resource managers: 22..127 exist on no major; 128..255 are custom
        // ones from 15 on.
        assert_eq!(at(walk_with(15, 22, &main)), Err((Lsn(168), WalProblem::InvalidResourceManager { rmid: 22 })));
        assert!(walk_with(15, 130, &main).is_ok());
        assert_eq!(at(walk_with(14, 130, &main)), Err((Lsn(168), WalProblem::InvalidResourceManager { rmid: 130 })));
        // Block ids, lengths and flags.
        for (body, problem) in [
            (vec![40u8, 0, 0], BodyProblem::InvalidBlockId { id: 40 }),
            (vec![255, 9, 1, 2], BodyProblem::BadLength),
            (vec![0, 0x20, 0, 0, 255, 0], BodyProblem::DataFlagWithoutData { id: 0 }),
        ] {
            assert_eq!(at(walk_with(15, 10, &body)), Err((Lsn(168), WalProblem::RecordBody { body: problem })));
        }
    }

    #[test]
    fn switch_record_skips_rest_of_segment() {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        w.record(100, 0, 0);
        w.record(0, RM_XLOG_ID, XLOG_SWITCH);
        // Garbage up to the segment end, then a fresh segment.
        let seg_end = seg.bytes() as usize;
        w.bytes.resize(seg_end, 0xAB);
        w.pos = seg_end;
        w.start_page(0);
        w.record(50, 1, 0);
        w.finish();
        let target = w.records.last().unwrap().1;
        let mut walker = RecordWalker::new(cfg(&w), w.base, target);
        let mut i = 0usize;
        let mut last = Lsn(0);
        while last < target {
            if let Some(to) = walker.skip_to() {
                walker.skip_switched_pages();
                i = to.0 as usize;
                continue;
            }
            last = walker.feed_page(&w.bytes[i..i + 8192]).unwrap();
            i += 8192;
        }
        assert_eq!(last, w.records.last().unwrap().1);
        assert_eq!(walker.stats.records, 3);
    }
}
