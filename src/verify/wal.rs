//! The WAL a backup needs: present, on the right timelines, and intact from
//! its start to its end.
//!
//! Which files: recovery reads segment `segno` from the newest timeline of
//! the target's history that had begun by that segment
//! (`XLogFileReadAnyTLI()` in `src/backend/access/transam/xlogrecovery.c`),
//! so crossing a timeline switch needs the end timeline's `TTTTTTTT.history`
//! (`readTimeLineHistory()`, `src/backend/access/transam/timeline.c`). A
//! file is looked up in each [`WalSource`] in turn (`--wal-archive` or
//! `--restore-command` first, then the backup's own `pg_wal`), stored plain
//! or compressed; a `<segment>.partial` stands in only when no full
//! segment exists anywhere (recovery itself never reads `.partial` files,
//! hence the warning).
//!
//! What is checked: every page header and every record CRC from the page
//! holding the start LSN until a valid record ends at or after the end LSN,
//! the way `xlogreader.c` (and pg_waldump) reads, with
//! [`crate::pg::wal::RecordWalker`]. Each segment is streamed in 64 KiB reads
//! by a read-ahead thread, so memory stays flat whatever the size. A long
//! range is cut at segment starts into stretches walked in parallel
//! (`--jobs`); each stretch begins where PostgreSQL reading from that
//! segment would (after the tail of a record continued into it), and the one
//! before it walks on until it has verified every record starting before
//! that point. The first break in the chain is reported with its segment and
//! LSN; segments after it are still checked for presence.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use serde::Serialize;

use super::files::fill;
use super::finding::{Finding, FindingKind};
use crate::error::{Error, Result};
use crate::pg::history::{self, TimelineSpan};
use crate::pg::wal::{
    history_file_name, segment_head_problem, FirstRecord, FirstRecordFinder, RecordWalker, SegmentName, WalError,
    WalProblem, WalkConfig, WalkEdges, WalkStats, LONG_HEADER_LEN,
};
use crate::pg::{Lsn, TimelineId, WalSegSize};
use crate::source::compress::Compression;
use crate::source::wal::{Fetched, WalSource};

const CHUNK: usize = 1 << 16;

/// Where and what to walk.
pub struct WalCheck<'a> {
    /// Where WAL files are looked up, in order (the archive or fetch
    /// command first, then the backup's `pg_wal`).
    pub sources: &'a [Box<dyn WalSource>],
    pub start: Lsn,
    pub start_tli: TimelineId,
    /// The end point, as PostgreSQL writes one (`EndRecPtr`: the MAXALIGNed
    /// end of a record): a valid record must end there or later.
    pub end: Lsn,
    /// Also verify the record starting here (a data directory's checkpoint
    /// record), wherever it ends.
    pub record_at: Option<Lsn>,
    pub end_tli: TimelineId,
    pub cfg: WalkConfig,
    /// Walk up to this many stretches of the range in parallel.
    pub jobs: usize,
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct WalOutcome {
    pub findings: Vec<Finding>,
    pub reached: Option<Lsn>,
    pub done: bool,
    pub stats: WalkStats,
    pub segments: u64,
    pub history_files: u64,
    pub timelines: Vec<TimelineSpan>,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
}

/// A WAL file found for a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Located {
    /// How findings name it: `pg_wal/<name>`, the archive path, or the name
    /// and the restore_command.
    pub shown: String,
    pub partial: bool,
    /// The decompressed size, when known before reading.
    pub size: Option<u64>,
    pub compression: Compression,
}

/// What looking a WAL file up found.
pub enum Lookup {
    Found(Located, Box<dyn Read + Send>),
    /// In no source; why, where a source said more (a failing command).
    Missing(Vec<String>),
    /// A source that has it (or may have it) could not be read.
    Unreadable {
        shown: String,
        error: io::Error,
    },
}

/// The segment file recovery would read for `segno` on this timeline path.
pub fn segment_for(path: &[TimelineSpan], segno: u64, seg: WalSegSize, fallback: TimelineId) -> SegmentName {
    SegmentName::new(history::timeline_for_segment(path, segno, seg).unwrap_or(fallback), segno)
}

/// The segments from the one holding `start` to the one holding the byte
/// before `target`, each on its timeline, produced lazily: a claimed range
/// is never materialised.
pub fn needed_segments<'a>(
    path: &'a [TimelineSpan],
    start: Lsn,
    target: Lsn,
    seg: WalSegSize,
    fallback: TimelineId,
) -> impl Iterator<Item = SegmentName> + 'a {
    let (first, last) = segment_range(start, target, seg);
    (first..=last).map(move |s| segment_for(path, s, seg, fallback))
}

/// The first and last segment numbers of `start..target`.
fn segment_range(start: Lsn, target: Lsn, seg: WalSegSize) -> (u64, u64) {
    let first = start.segment_number(seg);
    let last = if target > start { target.prev_segment_number(seg) } else { first };
    (first, last)
}

/// Find a WAL file by name in the sources, in order; `.partial` only when
/// there is no full one anywhere (and never for a history file).
pub fn lookup(sources: &[Box<dyn WalSource>], name: &str, allow_partial: bool) -> Result<Lookup> {
    let mut why = Vec::new();
    let mut failed = None;
    for partial in [false, true] {
        if partial && !allow_partial {
            break;
        }
        let file = if partial { format!("{name}.partial") } else { name.to_string() };
        for s in sources {
            match s.fetch(&file) {
                Ok(Fetched::Found(f)) => {
                    let at = Located { shown: f.shown, partial, size: f.size, compression: f.compression };
                    return Ok(Lookup::Found(at, f.reader));
                }
                Ok(Fetched::Absent(Some(w))) if !partial => why.push(w),
                Ok(Fetched::Absent(_)) => {}
                Err(_) if crate::signals::interrupted() => return Err(Error::Interrupted),
                Err(error) => {
                    let error = crate::source::fatal(error)?;
                    failed.get_or_insert(Lookup::Unreadable { shown: format!("{file} ({})", s.describe()), error });
                }
            }
        }
    }
    Ok(failed.unwrap_or(Lookup::Missing(why)))
}

/// "in neither the archive nor pg_wal", for these sources, with what a
/// failing command said.
fn missing_text(sources: &[Box<dyn WalSource>], why: &[String]) -> String {
    let mut roles: Vec<&str> = sources.iter().map(|s| s.role()).collect();
    if roles == ["pg_wal"] {
        roles.insert(0, "the archive");
    }
    let mut text = match roles.as_slice() {
        [one] => format!("not in {one}"),
        many => format!("in neither {}", many.join(" nor ")),
    };
    if let Some(w) = why.first() {
        text.push_str(&format!(" ({w})"));
    }
    text
}

/// The point the walker must see a record end at or after: `end` (the
/// walker reports record ends as PostgreSQL does, rounded to 8 bytes and at
/// the segment boundary after XLOG_SWITCH), and past the record starting
/// at `record_at` when that record itself must be read (a checkpoint).
pub fn walker_target(end: Lsn, record_at: Option<Lsn>) -> Lsn {
    match record_at {
        Some(r) => end.max(Lsn(r.0.saturating_add(1))),
        None => end,
    }
}

fn problem_kind(p: &WalProblem) -> FindingKind {
    match p {
        WalProblem::SystemIdMismatch { .. } => FindingKind::WalWrongSystem,
        WalProblem::RecordCrc { .. } => FindingKind::WalRecordCrc,
        p if p.is_page_header() => FindingKind::WalPageHeader,
        _ => FindingKind::WalRecordInvalid,
    }
}

fn wal_finding(e: &WalError, shown: &str) -> Finding {
    Finding::new(problem_kind(&e.problem), format!("{}; the WAL chain breaks here", e.problem)).at(shown).lsn(e.lsn)
}

/// The timeline path from the start to the end timeline, or a finding.
fn timeline_path(c: &WalCheck, out: &mut WalOutcome) -> Result<Option<Vec<TimelineSpan>>> {
    let single = vec![TimelineSpan { tli: c.start_tli, begin: None, end: None }];
    if c.end_tli == c.start_tli {
        return Ok(Some(single));
    }
    let name = history_file_name(c.end_tli);
    if c.end_tli < c.start_tli {
        out.findings.push(
            Finding::new(
                FindingKind::WalHistoryInvalid,
                format!("the end timeline {} is older than the start timeline {}", c.end_tli, c.start_tli),
            )
            .lsn(c.start),
        );
        return Ok(None);
    }
    let (found, mut reader) = match lookup(c.sources, &name, false)? {
        Lookup::Found(at, r) => (at, r),
        Lookup::Missing(why) => {
            out.findings.push(
                Finding::new(
                    FindingKind::WalHistoryMissing,
                    format!(
                        "the WAL goes from timeline {} to {}, and the history file that says where is {}",
                        c.start_tli,
                        c.end_tli,
                        missing_text(c.sources, &why)
                    ),
                )
                .at(name),
            );
            return Ok(None);
        }
        Lookup::Unreadable { shown, error } => {
            out.findings.push(Finding::new(FindingKind::WalHistoryInvalid, format!("cannot read: {error}")).at(shown));
            return Ok(None);
        }
    };
    out.history_files += 1;
    let invalid = |msg: String| Finding::new(FindingKind::WalHistoryInvalid, msg).at(found.shown.clone());
    // A history file is a line per timeline: a megabyte is thousands.
    let mut bytes = Vec::new();
    let text = match (&mut reader).take(HISTORY_LIMIT).read_to_end(&mut bytes) {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            out.findings.push(invalid(format!("cannot read: {e}")));
            return Ok(None);
        }
    };
    let path = match history::parse(&text).and_then(|entries| history::path_to(c.end_tli, &entries)) {
        Ok(p) => p,
        Err(e) => {
            out.findings.push(invalid(e.to_string()));
            return Ok(None);
        }
    };
    if history::timeline_for_lsn(&path, c.start) != Some(c.start_tli) {
        let on = history::timeline_for_lsn(&path, c.start).map_or("none".to_string(), |t| t.to_string());
        out.findings.push(
            invalid(format!(
                "by this history the start {} lies on timeline {on}, not on the start timeline {}",
                c.start, c.start_tli
            ))
            .lsn(c.start),
        );
        return Ok(None);
    }
    Ok(Some(path))
}

/// The most of a history file read.
const HISTORY_LIMIT: u64 = 1 << 20;

/// A WAL file's decompressed contents.
type WalReader = Box<dyn Read + Send>;

/// Buffers in flight between the reader thread and the walk.
const BUFFERS: usize = 4;

/// One chunk read ahead: `seq` says which segment it belongs to.
struct Chunk {
    seq: u64,
    buf: Vec<u8>,
    read: std::io::Result<usize>,
}

/// The walk's side of a read-ahead thread. Copying WAL out of the page cache
/// costs about as much as checking it; a second thread does the copying
/// while the walk checks the previous chunk. [`BUFFERS`] buffers of 64 KiB
/// circulate, so memory stays flat.
struct ReadAhead {
    requests: mpsc::Sender<(u64, WalReader)>,
    chunks: mpsc::Receiver<Chunk>,
    free: mpsc::Sender<Vec<u8>>,
    /// The segment the walk wants; the reader drops any other.
    current: Arc<AtomicU64>,
    seq: u64,
}

impl ReadAhead {
    /// Start the reader in `scope`.
    fn start<'scope>(scope: &'scope std::thread::Scope<'scope, '_>, chunk_size: usize) -> ReadAhead {
        let (requests, req_rx) = mpsc::channel::<(u64, WalReader)>();
        let (chunk_tx, chunks) = mpsc::sync_channel::<Chunk>(BUFFERS);
        let (free, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            let _ = free.send(vec![0u8; chunk_size]);
        }
        let current = Arc::new(AtomicU64::new(0));
        let cur = Arc::clone(&current);
        scope.spawn(move || {
            while let Ok((seq, mut file)) = req_rx.recv() {
                while cur.load(Ordering::Acquire) == seq {
                    let Ok(mut buf) = free_rx.recv() else { return };
                    let read = fill(&mut file, &mut buf);
                    let last = !matches!(read, Ok(n) if n == buf.len());
                    if chunk_tx.send(Chunk { seq, buf, read }).is_err() || last {
                        break;
                    }
                }
            }
        });
        ReadAhead { requests, chunks, free, current, seq: 0 }
    }

    /// Read `file` (positioned where the walk goes on) from now on.
    fn open(&mut self, file: WalReader) {
        self.seq += 1;
        self.current.store(self.seq, Ordering::Release);
        let _ = self.requests.send((self.seq, file));
    }

    /// The next chunk of the current file; `None` if the reader is gone.
    fn next(&mut self) -> Option<(Vec<u8>, std::io::Result<usize>)> {
        loop {
            let c = self.chunks.recv().ok()?;
            if c.seq == self.seq {
                return Some((c.buf, c.read));
            }
            self.give_back(c.buf); // read ahead for an abandoned file
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        let _ = self.free.send(buf);
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Make the reader stop reading whatever it is on.
        self.current.store(u64::MAX, Ordering::Release);
    }
}

/// Why a segment's walk ended.
enum SegmentEnd {
    /// The target was reached.
    Done,
    /// Go on with the segment holding the walker's next page.
    Next,
    /// The chain broke (a finding says where).
    Broken,
}

fn walk_segment(
    walker: &mut RecordWalker,
    c: &WalCheck,
    found: &Located,
    mut f: WalReader,
    page_size: usize,
    ahead: &mut ReadAhead,
    findings: &mut Vec<Finding>,
) -> Result<SegmentEnd> {
    if let Some(end) = skip_to_walk(walker, c, found, &mut f, findings)? {
        return Ok(end);
    }
    ahead.open(f);
    walk_read_ahead(walker, c, found, page_size, ahead, findings)
}

/// A finding for a segment that cannot be read at `at` (or the error
/// itself, for a source that is gone: exit 3, not damage).
fn unreadable(found: &Located, e: std::io::Error, at: Lsn) -> Result<Finding> {
    let e = crate::source::fatal(e)?;
    Ok(Finding::new(FindingKind::WalUnreadable, format!("cannot read: {e}")).at(found.shown.clone()).lsn(at))
}

/// Read the segment up to where the walk goes on: when that is inside it,
/// its long header is checked on its own (a segment of another system or
/// size) and the rest skipped by reading (streams do not seek). `Some`
/// when the segment ends the walk here.
fn skip_to_walk(
    walker: &RecordWalker,
    c: &WalCheck,
    found: &Located,
    f: &mut WalReader,
    findings: &mut Vec<Finding>,
) -> Result<Option<SegmentEnd>> {
    let seg = c.cfg.seg_size;
    let seg_start = Lsn::from_segment(walker.next_page().segment_number(seg), seg).unwrap_or(Lsn(0));
    let offset = walker.next_page().segment_offset(seg);
    if offset > 0 {
        let mut head = [0u8; LONG_HEADER_LEN];
        if let Err(e) = f.read_exact(&mut head) {
            findings.push(unreadable(found, e, seg_start)?);
            return Ok(Some(SegmentEnd::Broken));
        }
        if let Some(problem) = segment_head_problem(&head, &c.cfg, seg_start) {
            findings.push(wal_finding(&WalError { lsn: seg_start, problem }, &found.shown));
            return Ok(Some(SegmentEnd::Broken));
        }
    }
    let skip = offset.saturating_sub(if offset > 0 { LONG_HEADER_LEN as u64 } else { 0 });
    match io::copy(&mut f.take(skip), &mut io::sink()) {
        Ok(n) if n == skip => Ok(None),
        Ok(_) => {
            findings.push(
                Finding::new(
                    FindingKind::WalSegmentTruncated,
                    format!("the file ends before offset {offset} of the segment, where the chain goes on"),
                )
                .at(found.shown.clone())
                .lsn(walker.next_page()),
            );
            Ok(Some(SegmentEnd::Broken))
        }
        Err(e) => {
            findings.push(unreadable(found, e, walker.next_page())?);
            Ok(Some(SegmentEnd::Broken))
        }
    }
}

/// Walk the rest of the segment from the read-ahead's buffers, to the end
/// of the segment, of the chain, or of the file.
fn walk_read_ahead(
    walker: &mut RecordWalker,
    c: &WalCheck,
    found: &Located,
    page_size: usize,
    ahead: &mut ReadAhead,
    findings: &mut Vec<Finding>,
) -> Result<SegmentEnd> {
    let seg = c.cfg.seg_size;
    let seg_start = Lsn::from_segment(walker.next_page().segment_number(seg), seg).unwrap_or(Lsn(0));
    let seg_end = seg_start.0.saturating_add(seg.bytes());
    loop {
        if crate::signals::interrupted() {
            return Err(Error::Interrupted);
        }
        let Some((buf, read)) = ahead.next() else {
            findings.push(unreadable(found, std::io::Error::other("the reader thread stopped"), walker.next_page())?);
            return Ok(SegmentEnd::Broken);
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                ahead.give_back(buf);
                findings.push(unreadable(found, e, walker.next_page())?);
                return Ok(SegmentEnd::Broken);
            }
        };
        let end = walk_pages(walker, &buf[..n - n % page_size], page_size, &found.shown, findings);
        let full = n == buf.len();
        ahead.give_back(buf);
        if let Some(end) = end {
            return Ok(end);
        }
        if walker.next_page().0 >= seg_end {
            return Ok(SegmentEnd::Next);
        }
        if !full {
            findings.push(
                Finding::new(
                    FindingKind::WalSegmentTruncated,
                    format!("the file ends at offset {} of the segment, before the chain does", offset_of(walker, seg)),
                )
                .at(found.shown.clone())
                .lsn(walker.next_page()),
            );
            return Ok(SegmentEnd::Broken);
        }
    }
}

/// Feed whole pages to the walker; `Some` when the segment's walk ends.
fn walk_pages(
    walker: &mut RecordWalker,
    pages: &[u8],
    page_size: usize,
    shown: &str,
    findings: &mut Vec<Finding>,
) -> Option<SegmentEnd> {
    for page in pages.chunks_exact(page_size) {
        if walker.skip_to().is_some() {
            // After XLOG_SWITCH the rest of the segment is unused.
            walker.skip_switched_pages();
            return Some(SegmentEnd::Next);
        }
        if let Err(e) = walker.feed_page(page) {
            findings.push(wal_finding(&e, shown));
            return Some(SegmentEnd::Broken);
        }
        if walker.is_done() {
            return Some(SegmentEnd::Done);
        }
    }
    None
}

fn offset_of(walker: &RecordWalker, seg: WalSegSize) -> u64 {
    walker.next_page().segment_offset(seg)
}

/// One stretch of the range, walked by its own walker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    first_page: Lsn,
    /// As [`WalCheck::end`], for this stretch.
    end: Lsn,
    record_at: Option<Lsn>,
}

/// Stretches shorter than this many segments are not split further.
const MIN_SEGMENTS_PER_PART: u64 = 4;
/// At most this many walkers (each with its read-ahead buffers).
const MAX_PARTS: u64 = 4;

/// Where a walker that starts at segment `segno`'s first page begins
/// verifying records ([`FirstRecordFinder`]). `None` when the segment is
/// not a clean place to split (missing, odd headers, or a record covering
/// the whole segment); the walk then simply does not split there.
fn split_point(c: &WalCheck, path: &[TimelineSpan], segno: u64) -> Option<Lsn> {
    let seg = c.cfg.seg_size;
    let name = segment_for(path, segno, seg, c.end_tli).file_name(seg);
    let Ok(Lookup::Found(_, mut f)) = lookup(c.sources, &name, true) else { return None };
    let mut finder = FirstRecordFinder::new(c.cfg, Lsn::from_segment(segno, seg)?);
    let mut page = vec![0u8; c.cfg.page_size as usize];
    loop {
        f.read_exact(&mut page).ok()?;
        match finder.feed(&page) {
            FirstRecord::At(at) => return Some(at),
            FirstRecord::NeedMore => {}
            FirstRecord::Unusable => return None,
        }
    }
}

/// Cut the range into stretches at segment starts, one walker each. Only
/// the segment numbers are counted: a range longer than the WAL at hand
/// costs nothing here (a split point whose segment is missing is skipped).
fn plan_parts(c: &WalCheck, path: &[TimelineSpan], target: Lsn) -> Vec<Part> {
    let seg = c.cfg.seg_size;
    let first_page = Lsn(c.start.0 - c.start.page_offset(c.cfg.page_size));
    let (first, last) = segment_range(c.start, target, seg);
    let count = last - first + 1;
    let n = (c.jobs as u64).clamp(1, MAX_PARTS).min(count / MIN_SEGMENTS_PER_PART).max(1);
    let mut splits: Vec<(Lsn, Lsn)> = Vec::new(); // (first page, first record verified)
    for k in 1..n {
        let segno = first + k * count / n;
        let Some(page) = Lsn::from_segment(segno, seg) else { continue };
        if let Some(at) = split_point(c, path, segno) {
            if page > first_page && at < target && splits.last().is_none_or(|l| at > l.1) {
                splits.push((page, at));
            }
        }
    }
    let mut parts = Vec::with_capacity(splits.len() + 1);
    let mut from = first_page;
    for (page, at) in splits {
        // The walker before a split verifies every record starting before it.
        parts.push(Part { first_page: from, end: at, record_at: None });
        from = page;
    }
    parts.push(Part { first_page: from, end: c.end, record_at: c.record_at });
    parts
}

/// What one walker found.
#[derive(Debug, Default)]
struct PartOutcome {
    findings: Vec<Finding>,
    done: bool,
    /// End of the last verified record (as PostgreSQL reports record ends),
    /// or `None` when no record was verified.
    reached: Option<Lsn>,
    /// The walker's exact end of the last valid record.
    valid_until: Lsn,
    stats: WalkStats,
    edges: WalkEdges,
    segments: u64,
    first_segment: Option<String>,
    /// How findings name the first segment read.
    first_shown: Option<String>,
    last_segment: Option<String>,
    broken_at: Option<u64>,
}

/// Walk the WAL from `start` to `end`.
pub fn check(c: &WalCheck) -> Result<WalOutcome> {
    let mut out = WalOutcome::default();
    let Some(path) = timeline_path(c, &mut out)? else {
        return Ok(out);
    };
    out.timelines = path.clone();
    let target = walker_target(c.end, c.record_at);
    let parts = plan_parts(c, &path, target);
    let chunk = CHUNK - CHUNK % (c.cfg.page_size as usize).max(1);
    let results: Vec<Result<PartOutcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                let path = &path;
                s.spawn(move || {
                    std::thread::scope(|s2| {
                        let mut ahead = ReadAhead::start(s2, chunk);
                        walk_part(c, path, part, &mut ahead)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let results = results.into_iter().collect::<Result<Vec<_>>>()?;
    let broken = merge_parts(&parts, results, &mut out);
    out.done = broken.is_none();
    if let Some((b, valid_until)) = broken {
        if out.findings.iter().any(|f| f.is_error()) {
            let (_, last) = segment_range(c.start, target, c.cfg.seg_size);
            report_missing_after(c, &path, b, last, &mut out.findings)?;
        } else {
            out.findings.push(
                Finding::new(
                    FindingKind::WalEndNotReached,
                    format!("the WAL chain stops at {valid_until} before the end {}", c.end),
                )
                .lsn(valid_until),
            );
        }
    }
    Ok(out)
}

/// Join the stretches' outcomes in WAL order, as one walk would have found
/// them: up to the first stretch that breaks, what later stretches found is
/// not reported. Where two stretches meet, the first record of the later
/// one must link back (`xl_prev`) to the last record of the earlier one.
/// Returns where the chain broke: the segment and the end of the last valid
/// record.
fn merge_parts(parts: &[Part], results: Vec<PartOutcome>, out: &mut WalOutcome) -> Option<(u64, Lsn)> {
    let mut prev: Option<&PartOutcome> = None;
    let mut broken = None;
    for (k, r) in results.iter().enumerate() {
        if let (Some(p), Some((start, link))) = (prev, r.edges.first_record) {
            if let Some(finding) = link_across(p, parts[k - 1].end, start, link, r) {
                out.findings.push(finding);
                broken = Some((r.broken_at.unwrap_or(0), p.valid_until));
                break;
            }
        }
        if out.first_segment.is_none() {
            out.first_segment.clone_from(&r.first_segment);
        }
        out.last_segment.clone_from(&r.last_segment);
        out.segments += r.segments;
        out.stats.pages += r.stats.pages;
        out.stats.records += r.stats.records;
        out.stats.bytes += r.stats.bytes;
        out.findings.extend(r.findings.iter().cloned());
        // A stretch that breaks before its first record: the chain still
        // holds up to where the previous one reached.
        if let Some(rr) = r.reached {
            out.reached = Some(out.reached.map_or(rr, |p| p.max(rr)));
        }
        if !r.done {
            broken = Some((r.broken_at.unwrap_or(0), r.valid_until));
            break;
        }
        prev = Some(r);
    }
    // Two stretches may both have read the segment at their split.
    out.findings.dedup();
    broken
}

/// The back link from the first record of a stretch to the record before
/// it, verified by the stretch before (which walked up to `split`).
fn link_across(before: &PartOutcome, split: Lsn, start: Lsn, link: Lsn, after: &PartOutcome) -> Option<Finding> {
    let last = before.edges.last_record?;
    // The earlier stretch may have read that very record itself (it had to
    // go on past a page header): then it checked the link already.
    if last >= start || start != split || link == last {
        return None;
    }
    let problem = WalProblem::BadPrevLink { found: link, expected: last };
    Some(wal_finding(&WalError { lsn: start, problem }, after.first_shown.as_deref().unwrap_or("")))
}

fn walk_part(c: &WalCheck, path: &[TimelineSpan], part: &Part, ahead: &mut ReadAhead) -> Result<PartOutcome> {
    let mut out = PartOutcome::default();
    let seg = c.cfg.seg_size;
    let page_size = c.cfg.page_size as usize;
    let target = walker_target(part.end, part.record_at);
    let mut walker = RecordWalker::new(c.cfg, part.first_page, target);
    let (_, last) = segment_range(c.start, target, seg);
    loop {
        let segno = walker.next_page().segment_number(seg);
        prefetch(c, path, segno, last);
        let Some((found, reader)) = locate_segment(c, path, segno, &walker, &mut out)? else {
            out.broken_at = Some(segno);
            break;
        };
        out.segments += 1;
        match walk_segment(&mut walker, c, &found, reader, page_size, ahead, &mut out.findings)? {
            SegmentEnd::Done => break,
            SegmentEnd::Next => continue,
            SegmentEnd::Broken => {
                out.broken_at = Some(segno);
                break;
            }
        }
    }
    out.done = walker.is_done();
    out.valid_until = walker.valid_until();
    out.reached = (walker.stats.records > 0).then(|| walker.valid_until());
    out.stats = walker.stats;
    out.edges = walker.edges();
    Ok(out)
}

/// How many segments ahead of the walk a source with latency fetches.
const PREFETCH_SEGMENTS: u64 = 8;

/// Tell the sources which segments come next (from `segno`, at most up to
/// `last`), so a fetch command or a network store can work ahead.
fn prefetch(c: &WalCheck, path: &[TimelineSpan], segno: u64, last: u64) {
    let seg = c.cfg.seg_size;
    let until = last.min(segno.saturating_add(PREFETCH_SEGMENTS));
    let names: Vec<String> = (segno..=until).map(|s| segment_for(path, s, seg, c.end_tli).file_name(seg)).collect();
    for s in c.sources {
        s.prefetch(&names);
    }
}

/// Find the file of segment `segno` and check its size; a finding and
/// `None` when the chain cannot go on with it.
fn locate_segment(
    c: &WalCheck,
    path: &[TimelineSpan],
    segno: u64,
    walker: &RecordWalker,
    out: &mut PartOutcome,
) -> Result<Option<(Located, WalReader)>> {
    let seg = c.cfg.seg_size;
    let name = segment_for(path, segno, seg, c.end_tli).file_name(seg);
    if out.first_segment.is_none() {
        out.first_segment = Some(name.clone());
    }
    out.last_segment = Some(name.clone());
    let (found, reader) = match lookup(c.sources, &name, true)? {
        Lookup::Found(at, r) => (at, r),
        Lookup::Missing(why) => {
            out.findings.push(
                Finding::new(
                    FindingKind::WalSegmentMissing,
                    format!("needed, but {}; the WAL chain breaks here", missing_text(c.sources, &why)),
                )
                .at(name)
                .lsn(walker.next_page().max(c.start)),
            );
            return Ok(None);
        }
        Lookup::Unreadable { shown, error } => {
            out.findings.push(
                Finding::new(FindingKind::WalUnreadable, format!("cannot read: {error}"))
                    .at(shown)
                    .lsn(walker.next_page()),
            );
            return Ok(None);
        }
    };
    if out.first_shown.is_none() {
        out.first_shown = Some(found.shown.clone());
    }
    if found.partial {
        out.findings.push(
            Finding::new(
                FindingKind::WalPartialUsed,
                "no full segment exists, so the .partial file was checked; recovery does not read .partial files \
                 by itself: rename it for restore_command",
            )
            .at(found.shown.clone()),
        );
    }
    // A compressed file's size shows as it is read (a short one is
    // truncated where it ends).
    match found.size {
        Some(len) if len != seg.bytes() => {
            out.findings.push(
                Finding::new(
                    FindingKind::WalSegmentSize,
                    format!("{len} bytes, but segments are {} bytes: recovery rejects it", seg.bytes()),
                )
                .at(found.shown.clone())
                .lsn(walker.next_page()),
            );
            Ok(None)
        }
        _ => Ok(Some((found, reader))),
    }
}

/// After a break at segment `broken`, report the needed segments up to
/// `last` that are missing too, as runs: one finding per run of missing
/// segments, however long the claimed range. The archive and pg_wal are
/// listed once; the work is bounded by what they hold, not by the range.
fn report_missing_after(
    c: &WalCheck,
    path: &[TimelineSpan],
    broken: u64,
    last: u64,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let seg = c.cfg.seg_size;
    let Some(from) = broken.checked_add(1).filter(|f| *f <= last) else { return Ok(()) };
    // A fetch command cannot be listed, and asking it for every segment of
    // a claimed range would be unbounded: only the break is reported.
    if c.sources.iter().any(|s| !s.can_list()) {
        return Ok(());
    }
    let present = present_segments(c, seg, from, last)?;
    for (tli, lo, hi) in timeline_runs(path, from, last, seg, c.end_tli) {
        let mut next = lo;
        for &(_, s) in present.range((tli.0, lo)..=(tli.0, hi)) {
            if s > next {
                findings.push(missing_run(SegmentName::new(tli, next), s - next, seg));
            }
            next = s + 1;
        }
        if next <= hi {
            findings.push(missing_run(SegmentName::new(tli, next), hi - next + 1, seg));
        }
    }
    Ok(())
}

fn missing_run(first: SegmentName, count: u64, seg: WalSegSize) -> Finding {
    let msg = if count == 1 {
        "needed, but in neither the archive nor pg_wal".to_string()
    } else {
        let last = SegmentName::new(first.tli, first.segno + count - 1).file_name(seg);
        format!(
            "needed, but in neither the archive nor pg_wal, and so are the {} segments after it, up to {last}",
            count - 1
        )
    };
    Finding::new(FindingKind::WalSegmentMissing, msg).at(first.file_name(seg)).lsn(first.start_lsn(seg))
}

/// The segments (timeline, number) from `from` to `last` that exist, full
/// or `.partial`, in the archive or pg_wal.
fn present_segments(
    c: &WalCheck,
    seg: WalSegSize,
    from: u64,
    last: u64,
) -> Result<std::collections::BTreeSet<(u32, u64)>> {
    let mut present = std::collections::BTreeSet::new();
    for source in c.sources {
        let listed = match source.list() {
            Ok(l) => l,
            Err(_) if crate::signals::interrupted() => return Err(Error::Interrupted),
            Err(_) => continue,
        };
        for f in listed {
            let name = f.name.strip_suffix(".partial").unwrap_or(&f.name);
            if let Ok(s) = SegmentName::parse(name, seg) {
                if (from..=last).contains(&s.segno) {
                    present.insert((s.tli.0, s.segno));
                }
            }
        }
    }
    Ok(present)
}

/// `from..=last` cut into runs of segments read from one timeline each, as
/// [`segment_for`] assigns them.
fn timeline_runs(
    path: &[TimelineSpan],
    from: u64,
    last: u64,
    seg: WalSegSize,
    fallback: TimelineId,
) -> Vec<(TimelineId, u64, u64)> {
    // Where each timeline of the path takes over; a later one wins.
    let mut starts: Vec<(u64, TimelineId)> =
        path.iter().map(|s| (s.begin.map_or(0, |b| b.segment_number(seg)), s.tli)).collect();
    if starts.is_empty() {
        starts.push((0, fallback));
    }
    let mut runs = Vec::new();
    for (i, (lo, tli)) in starts.iter().enumerate() {
        // The newest timeline begun by a segment wins it.
        let hi = starts[i + 1..].iter().map(|(b, _)| b.saturating_sub(1)).min().unwrap_or(u64::MAX);
        if starts[i + 1..].iter().any(|(b, _)| b <= lo) {
            continue;
        }
        let (a, b) = ((*lo).max(from), hi.min(last));
        if a <= b {
            runs.push((*tli, a, b));
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::history::{parse, path_to};
    use crate::pg::wal::tests::{cfg, FakeWal};
    use std::fs;
    use std::path::Path;

    #[test]
    fn segments_follow_the_timeline_path() {
        let seg = WalSegSize::DEFAULT;
        let one = vec![TimelineSpan { tli: TimelineId(1), begin: None, end: None }];
        let names: Vec<String> = needed_segments(&one, Lsn(0x30000F0), Lsn(0x5000000), seg, TimelineId(1))
            .map(|s| s.file_name(seg))
            .collect();
        // An end on a segment boundary needs only the segment before it.
        assert_eq!(names, vec!["000000010000000000000003", "000000010000000000000004"]);
        let names: Vec<String> = needed_segments(&one, Lsn(0x30000F0), Lsn(0x3000100), seg, TimelineId(1))
            .map(|s| s.file_name(seg))
            .collect();
        assert_eq!(names, vec!["000000010000000000000003"]);

        // Timeline 2 began inside segment 4, timeline 3 in segment 6.
        let entries = parse("1\t0/4800100\tno recovery target specified\n2\t0/6000000\tx\n").unwrap();
        let path = path_to(TimelineId(3), &entries).unwrap();
        let names: Vec<String> = needed_segments(&path, Lsn(0x3000028), Lsn(0x7000010), seg, TimelineId(3))
            .map(|s| s.file_name(seg))
            .collect();
        assert_eq!(
            names,
            vec![
                "000000010000000000000003",
                "000000020000000000000004",
                "000000020000000000000005",
                "000000030000000000000006",
                "000000030000000000000007",
            ]
        );
    }

    #[test]
    fn targets_allow_for_rounded_ends() {
        // A minimum recovery point 0/3F6A558 is the rounded end of a record
        // ending at 0/3F6A555.
        assert_eq!(walker_target(Lsn(0x3F6A558), None), Lsn(0x3F6A558));
        // A checkpoint record must itself be read.
        assert_eq!(walker_target(Lsn(0x2000060), Some(Lsn(0x2000060))), Lsn(0x2000061));
        assert_eq!(walker_target(Lsn(0x5000000), Some(Lsn(0x2000060))), Lsn(0x5000000));
    }

    /// Two 1 MiB segments of fake WAL written into `dir/pg_wal`.
    fn two_segments(dir: &Path) -> FakeWal {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        let mut i = 0usize;
        while w.bytes.len() < (2 << 20) - 20000 {
            w.record(100 + (i * 977) % 9000, (i % 20) as u8, 0);
            i += 1;
        }
        w.finish();
        w.bytes.resize(2 << 20, 0);
        fs::create_dir_all(dir.join("pg_wal")).unwrap();
        for s in 0..2u64 {
            let name = SegmentName::new(TimelineId(1), s).file_name(seg);
            let lo = (s << 20) as usize;
            fs::write(dir.join("pg_wal").join(name), &w.bytes[lo..lo + (1 << 20)]).unwrap();
        }
        w
    }

    /// The sources verify looks WAL up in: the archive, then pg_wal.
    fn dirs(dir: &Path, archive: Option<&Path>) -> Vec<Box<dyn WalSource>> {
        let mut v: Vec<Box<dyn WalSource>> = Vec::new();
        if let Some(a) = archive {
            v.push(Box::new(crate::source::DirWal::archive(a)));
        }
        v.push(Box::new(crate::source::DirWal::pg_wal(dir)));
        v
    }

    fn run(dir: &Path, archive: Option<&Path>, w: &FakeWal, start: Lsn, target: Lsn) -> WalOutcome {
        check(&WalCheck {
            sources: &dirs(dir, archive),
            start,
            start_tli: TimelineId(1),
            end: target,
            record_at: None,
            end_tli: TimelineId(1),
            cfg: cfg(w),
            jobs: 1,
        })
        .unwrap()
    }

    #[test]
    fn walks_files_and_names_the_break() {
        let d = tempfile::tempdir().unwrap();
        let w = two_segments(d.path());
        let start = w.records[3].0;
        let target = w.records[w.records.len() - 2].1;
        let ok = run(d.path(), None, &w, start, target);
        assert!(ok.done, "{:?}", ok.findings);
        assert!(ok.findings.is_empty());
        // Reported as PostgreSQL reports ends: rounded up to 8 bytes.
        assert_eq!(ok.reached, target.max_align());
        assert_eq!(ok.segments, 2);
        assert_eq!(ok.last_segment.as_deref(), Some("000000010000000000000001"));

        // The archive wins over pg_wal; a partial is used only as a last resort.
        let a = tempfile::tempdir().unwrap();
        let seg1 = d.path().join("pg_wal/000000010000000000000001");
        fs::rename(&seg1, a.path().join("000000010000000000000001.partial")).unwrap();
        let p = run(d.path(), Some(a.path()), &w, start, target);
        assert!(p.done);
        assert_eq!(p.findings.len(), 1);
        assert_eq!(p.findings[0].kind, FindingKind::WalPartialUsed);

        // A flipped byte in the middle of the second segment.
        let mut bytes = fs::read(a.path().join("000000010000000000000001.partial")).unwrap();
        let mid = 1 << 19;
        let rec = w.records.iter().find(|r| r.0 .0 > (1 << 20) + mid as u64 + 100 && r.0 .0 % 8192 < 8000).unwrap();
        let at = (rec.0 .0 + 30 - (1 << 20)) as usize; // inside its payload
        bytes[at] ^= 0x10;
        fs::write(&seg1, &bytes).unwrap();
        let bad = run(d.path(), Some(a.path()), &w, start, target);
        assert!(!bad.done);
        assert_eq!(bad.findings.len(), 1, "{:?}", bad.findings);
        assert_eq!(bad.findings[0].kind, FindingKind::WalRecordCrc);
        assert_eq!(bad.findings[0].path.as_deref(), Some("pg_wal/000000010000000000000001"));
        assert_eq!(bad.findings[0].lsn, Some(rec.0));
        assert!(bad.reached.unwrap() < target);

        // Missing entirely.
        fs::remove_file(&seg1).unwrap();
        fs::remove_file(a.path().join("000000010000000000000001.partial")).unwrap();
        let gone = run(d.path(), Some(a.path()), &w, start, target);
        assert_eq!(gone.findings.len(), 1);
        assert_eq!(gone.findings[0].kind, FindingKind::WalSegmentMissing);
        assert_eq!(gone.findings[0].lsn, Some(Lsn(1 << 20)));

        // Truncated.
        fs::write(&seg1, &bytes[..4096]).unwrap();
        let short = run(d.path(), None, &w, start, target);
        assert_eq!(short.findings[0].kind, FindingKind::WalSegmentSize);
    }

    #[test]
    fn a_segment_entered_mid_way_still_has_its_long_header_checked() {
        let d = tempfile::tempdir().unwrap();
        let w = two_segments(d.path());
        let c = cfg(&w);
        assert_eq!(segment_head_problem(&w.bytes[..64], &c, Lsn(0)), None);
        let other = WalkConfig { system_identifier: Some(7), ..c };
        assert!(matches!(
            segment_head_problem(&w.bytes[..64], &other, Lsn(0)),
            Some(WalProblem::SystemIdMismatch { .. })
        ));
        assert!(matches!(
            segment_head_problem(&w.bytes[..64], &c, Lsn(1 << 20)),
            Some(WalProblem::PageAddrMismatch { .. })
        ));
        assert_eq!(segment_head_problem(&w.bytes[8192..8192 + 64], &c, Lsn(0)), Some(WalProblem::MissingLongHeader));

        // A walk starting inside a segment of another system names it.
        let start = w.records.iter().find(|r| r.0 .0 > 100_000).unwrap().0;
        let target = w.records[w.records.len() - 2].1;
        let mut seg0 = fs::read(d.path().join("pg_wal/000000010000000000000000")).unwrap();
        seg0[24..32].copy_from_slice(&7u64.to_le_bytes());
        fs::write(d.path().join("pg_wal/000000010000000000000000"), seg0).unwrap();
        let out = run(d.path(), None, &w, start, target);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].kind, FindingKind::WalWrongSystem);
        assert_eq!(out.findings[0].lsn, Some(Lsn(0)));
    }

    #[test]
    fn a_switch_record_reaches_the_segment_boundary() {
        let d = tempfile::tempdir().unwrap();
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        for i in 0..50 {
            w.record(300 + i * 10, 1, 0);
        }
        w.record(0, 0, 0x40); // XLOG_SWITCH
        let switch_end = w.records.last().unwrap().1;
        w.finish();
        w.bytes.resize(1 << 20, 0);
        fs::create_dir_all(d.path().join("pg_wal")).unwrap();
        fs::write(d.path().join("pg_wal/000000010000000000000000"), &w.bytes).unwrap();
        assert_eq!(switch_end, Lsn(1 << 20));
        // The standby's minimum recovery point after replaying it is the
        // next segment's start; that segment is not needed.
        let out = run(d.path(), None, &w, w.records[2].0, Lsn(1 << 20));
        assert!(out.done, "{:?}", out.findings);
        assert!(out.findings.is_empty());
        assert_eq!(out.reached, Some(Lsn(1 << 20)));
        assert_eq!(out.segments, 1);
    }

    /// `segments` 1 MiB segments of fake WAL in `dir/pg_wal`, with records
    /// of all sizes, some spanning pages and segments.
    fn many_segments(dir: &Path, segments: usize) -> FakeWal {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        let mut i = 0usize;
        while w.bytes.len() < (segments << 20) - 60000 {
            let len = match i % 7 {
                0 => 30_000,
                1 => 8150,
                2 => 0,
                _ => 40 + (i * 977) % 3000,
            };
            w.record(len, (i % 20) as u8, 0);
            i += 1;
        }
        w.finish();
        w.bytes.resize(segments << 20, 0);
        fs::create_dir_all(dir.join("pg_wal")).unwrap();
        for s in 0..segments as u64 {
            let name = SegmentName::new(TimelineId(1), s).file_name(seg);
            let lo = (s << 20) as usize;
            fs::write(dir.join("pg_wal").join(name), &w.bytes[lo..lo + (1 << 20)]).unwrap();
        }
        w
    }

    #[test]
    fn parallel_stretches_find_what_one_walk_finds() {
        let d = tempfile::tempdir().unwrap();
        let srcs = dirs(d.path(), None);
        let w = many_segments(d.path(), 13);
        let start = w.records[3].0;
        let end = w.records[w.records.len() - 2].1.max_align().unwrap();
        let c = |jobs| WalCheck {
            sources: &srcs,
            start,
            start_tli: TimelineId(1),
            end,
            record_at: None,
            end_tli: TimelineId(1),
            cfg: cfg(&w),
            jobs,
        };
        let one = vec![TimelineSpan { tli: TimelineId(1), begin: None, end: None }];
        assert_eq!(plan_parts(&c(1), &one, walker_target(end, None)).len(), 1);
        let parts = plan_parts(&c(3), &one, walker_target(end, None));
        assert_eq!(parts.len(), 3);
        for p in &parts[1..] {
            assert_eq!(p.first_page.segment_offset(w.seg), 0);
        }
        // Each stretch ends where the next one's first verified record begins.
        for pair in parts.windows(2) {
            assert!(w.records.iter().any(|r| r.0 == pair[0].end), "{:?} is not a record start", pair[0].end);
        }
        for jobs in [1, 2, 3, 4] {
            let out = check(&c(jobs)).unwrap();
            assert!(out.done && out.findings.is_empty(), "jobs {jobs}: {:?}", out.findings);
            assert_eq!(out.reached, Some(end));
            assert_eq!(out.first_segment.as_deref(), Some("000000010000000000000000"));
            assert_eq!(out.last_segment.as_deref(), Some("00000001000000000000000C"));
        }
        // Damage near every segment start: the record crossing into it, and
        // the first ones after it. Split or not, the same break is found.
        let mut victims: Vec<(Lsn, Lsn)> = Vec::new();
        for s in 1..13u64 {
            let b = s << 20;
            let i = w.records.iter().position(|r| r.1 .0 > b).unwrap();
            victims.extend((i..i + 3).map(|k| (w.records[k].0, w.exact_ends[k])));
        }
        for (rs, re) in victims {
            // A payload byte of the record: its last one (never a page header).
            let at = re.0 - 1;
            let segno = at >> 20;
            let file = d.path().join("pg_wal").join(SegmentName::new(TimelineId(1), segno).file_name(w.seg));
            let good = fs::read(&file).unwrap();
            let mut bad = good.clone();
            bad[(at - (segno << 20)) as usize] ^= 0x20;
            fs::write(&file, &bad).unwrap();
            let seq = check(&c(1)).unwrap();
            let par = check(&c(3)).unwrap();
            fs::write(&file, &good).unwrap();
            let f = |o: &WalOutcome| o.findings.iter().map(|f| (f.kind, f.lsn)).collect::<Vec<_>>();
            assert_eq!(f(&seq), vec![(FindingKind::WalRecordCrc, Some(rs))], "record at {rs}");
            assert_eq!(f(&par), f(&seq), "record at {rs}");
            assert_eq!(par.reached, seq.reached);
        }
    }

    /// Segments of fake WAL with records of the given sizes (cycled),
    /// written into `dir/pg_wal`.
    fn random_segments(dir: &Path, segments: usize, sizes: &[usize]) -> FakeWal {
        let seg = WalSegSize::new(1 << 20).unwrap();
        let mut w = FakeWal::new(Lsn(0), seg, 8192, 0xD110);
        let mut i = 0usize;
        while w.bytes.len() < (segments << 20) - 70000 {
            w.record(sizes[i % sizes.len()], (i % 20) as u8, 0);
            i += 1;
        }
        w.finish();
        w.bytes.resize(segments << 20, 0);
        fs::create_dir_all(dir.join("pg_wal")).unwrap();
        for s in 0..segments as u64 {
            let name = SegmentName::new(TimelineId(1), s).file_name(seg);
            let lo = (s << 20) as usize;
            fs::write(dir.join("pg_wal").join(name), &w.bytes[lo..lo + (1 << 20)]).unwrap();
        }
        w
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10))]

        /// Split into stretches or not, the walk finds the same: on intact
        /// WAL, and with one byte flipped anywhere (page headers included).
        #[test]
        fn the_parallel_walk_equals_the_sequential_walk(
            sizes in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(0usize), 2usize..200, 200usize..9000, 9000usize..40000
            ], 1..12),
            flip in proptest::option::of((0u64..(9 << 20), 0u8..8)),
            jobs in 2usize..=4,
        ) {
            let d = tempfile::tempdir().unwrap();
        let srcs = dirs(d.path(), None);
            let w = random_segments(d.path(), 9, &sizes);
            let start = w.records[1].0;
            let end = w.records[w.records.len() - 2].1;
            if let Some((at, bit)) = flip {
                let file = d.path().join("pg_wal").join(SegmentName::new(TimelineId(1), at >> 20).file_name(w.seg));
                let mut b = fs::read(&file).unwrap();
                b[(at % (1 << 20)) as usize] ^= 1 << bit;
                fs::write(&file, b).unwrap();
            }
            let c = |jobs| WalCheck {
                sources: &srcs,
                start,
                start_tli: TimelineId(1),
                end,
                record_at: None,
                end_tli: TimelineId(1),
                cfg: cfg(&w),
                jobs,
            };
            let seq = check(&c(1)).unwrap();
            let par = check(&c(jobs)).unwrap();
            let f = |o: &WalOutcome| o.findings.iter().map(|f| (f.kind, f.lsn, f.path.clone())).collect::<Vec<_>>();
            proptest::prop_assert_eq!(f(&par), f(&seq));
            proptest::prop_assert_eq!(par.reached, seq.reached);
            proptest::prop_assert_eq!(par.done, seq.done);
            if flip.is_none() {
                proptest::prop_assert!(seq.done, "{:?}", seq.findings);
            }
        }
    }

    /// A break across a split: the first record of a stretch whose back
    /// link does not point at the record before it.
    #[test]
    fn a_back_link_across_a_split_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let srcs = dirs(d.path(), None);
        let w = many_segments(d.path(), 13);
        let start = w.records[3].0;
        let end = w.records[w.records.len() - 2].1.max_align().unwrap();
        let c = |jobs| WalCheck {
            sources: &srcs,
            start,
            start_tli: TimelineId(1),
            end,
            record_at: None,
            end_tli: TimelineId(1),
            cfg: cfg(&w),
            jobs,
        };
        let one = vec![TimelineSpan { tli: TimelineId(1), begin: None, end: None }];
        let parts = plan_parts(&c(3), &one, end);
        assert_eq!(parts.len(), 3);
        // Rewrite the first record of the second stretch with a wrong
        // xl_prev and a CRC recomputed to match, so only the link is wrong.
        let at = parts[0].end;
        let i = w.records.iter().position(|r| r.0 == at).unwrap();
        let (rs, re) = (w.records[i].0 .0, w.exact_ends[i].0);
        // The record's bytes, page headers left out.
        let pos: Vec<usize> =
            (rs..re).filter(|a| a % 8192 >= if a % (1 << 20) < 8192 { 40 } else { 24 }).map(|a| a as usize).collect();
        let mut bytes = w.bytes.clone();
        for (k, b) in (rs - 8).to_le_bytes().iter().enumerate() {
            bytes[pos[8 + k]] = *b;
        }
        let payload: Vec<u8> = pos[24..].iter().map(|p| bytes[*p]).collect();
        let head: Vec<u8> = pos[..20].iter().map(|p| bytes[*p]).collect();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&payload), &head);
        for (k, b) in crc.to_le_bytes().iter().enumerate() {
            bytes[pos[20 + k]] = *b;
        }
        for segno in [rs >> 20, (re - 1) >> 20] {
            let file = d.path().join("pg_wal").join(SegmentName::new(TimelineId(1), segno).file_name(w.seg));
            let lo = (segno << 20) as usize;
            fs::write(&file, &bytes[lo..lo + (1 << 20)]).unwrap();
        }
        for jobs in [1, 3] {
            let out = check(&c(jobs)).unwrap();
            let got: Vec<_> = out.findings.iter().map(|f| (f.kind, f.lsn)).collect();
            assert_eq!(got, vec![(FindingKind::WalRecordInvalid, Some(Lsn(rs)))], "jobs {jobs}");
            assert!(!out.done);
        }
    }

    /// A claimed end far beyond the WAL at hand costs no work in
    /// proportion: the missing rest is one finding.
    #[test]
    fn an_end_beyond_the_wal_is_a_finding_not_a_loop() {
        let d = tempfile::tempdir().unwrap();
        let srcs = dirs(d.path(), None);
        let w = two_segments(d.path());
        for end in [Lsn(0xFFFF_FFFF_0700_0000), Lsn(0x1_0000_0700_0000)] {
            let started = std::time::Instant::now();
            let out = check(&WalCheck {
                sources: &srcs,
                start: w.records[3].0,
                start_tli: TimelineId(1),
                end,
                record_at: None,
                end_tli: TimelineId(1),
                cfg: cfg(&w),
                jobs: 4,
            })
            .unwrap();
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            assert!(!out.done);
            let missing: Vec<_> = out.findings.iter().filter(|f| f.kind == FindingKind::WalSegmentMissing).collect();
            // The first missing segment breaks the chain; the rest is one run.
            assert!(missing.len() <= 2, "{:?}", out.findings);
            assert_eq!(missing[0].path.as_deref(), Some("000000010000000000000002"));
            assert!(missing.last().unwrap().message.contains("segments after it"), "{:?}", missing);
        }
    }

    #[test]
    fn a_timeline_switch_needs_its_history() {
        let d = tempfile::tempdir().unwrap();
        let srcs = dirs(d.path(), None);
        let w = two_segments(d.path());
        // Pretend timeline 2 began in segment 1.
        let seg = w.seg;
        let s1 = SegmentName::new(TimelineId(1), 1).file_name(seg);
        let s1_tli2 = SegmentName::new(TimelineId(2), 1).file_name(seg);
        fs::rename(d.path().join("pg_wal").join(&s1), d.path().join("pg_wal").join(&s1_tli2)).unwrap();
        let c = |end_tli| WalCheck {
            sources: &srcs,
            start: w.records[3].0,
            start_tli: TimelineId(1),
            end: w.records[w.records.len() - 2].1,
            record_at: None,
            end_tli,
            cfg: cfg(&w),
            jobs: 1,
        };
        let missing = check(&c(TimelineId(2))).unwrap();
        assert_eq!(missing.findings.len(), 1);
        assert_eq!(missing.findings[0].kind, FindingKind::WalHistoryMissing);
        assert_eq!(missing.findings[0].path.as_deref(), Some("00000002.history"));
        assert_eq!(missing.reached, None);

        fs::write(d.path().join("pg_wal/00000002.history"), "1\t0/100100\tno recovery target specified\n").unwrap();
        let ok = check(&c(TimelineId(2))).unwrap();
        assert!(ok.done, "{:?}", ok.findings);
        assert_eq!(ok.history_files, 1);
        assert_eq!(ok.timelines.len(), 2);
        assert_eq!(ok.last_segment.as_deref(), Some(s1_tli2.as_str()));

        // A history in which the start is not on timeline 1.
        fs::write(d.path().join("pg_wal/00000002.history"), "1\t0/10\tx\n").unwrap();
        let bad = check(&c(TimelineId(2))).unwrap();
        assert_eq!(bad.findings[0].kind, FindingKind::WalHistoryInvalid);
    }
}
