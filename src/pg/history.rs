//! Timeline history files, `TTTTTTTT.history`.
//!
//! Where: `pg_wal/` and the WAL archive, written at promotion
//! (`writeTimeLineHistory()` in `src/backend/access/transam/timeline.c`).
//! Layout: one line per ancestor timeline,
//! `<parent TLI>\t<switch point LSN>\t<reason>`, oldest first. The file of
//! timeline N lists N's ancestors; N itself begins at the last switch point.
//! Readers skip blank lines and lines starting with `#`, and require the TLIs
//! to increase strictly (`readTimeLineHistory()`).

use serde::Serialize;

use super::lsn::{Lsn, TimelineId, WalSegSize};

/// One line: `tli` ended at `switchpoint`, where its child began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub tli: TimelineId,
    pub switchpoint: Lsn,
    pub reason: String,
}

/// Why a history file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: syntax error in history file: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("line {line}: timeline IDs must be in increasing sequence ({tli} after {prev})")]
    NotIncreasing { line: usize, tli: u32, prev: u32 },
    #[error("timeline {tli} must be newer than every ancestor in its history file (last is {last})")]
    TargetNotNewer { tli: u32, last: u32 },
}

/// Parse the text of a history file.
pub fn parse(text: &str) -> Result<Vec<HistoryEntry>, HistoryError> {
    let mut out: Vec<HistoryEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut parts = trimmed.splitn(3, ['\t', ' ']);
        let tli_text = parts.next().unwrap_or("");
        let tli = tli_text.parse::<u32>().ok().filter(|v| *v > 0).ok_or_else(|| HistoryError::Syntax {
            line,
            reason: format!("expected a timeline ID, found {tli_text:?}"),
        })?;
        let lsn_text = parts.next().map(str::trim).unwrap_or("");
        let switchpoint = lsn_text.parse::<Lsn>().map_err(|_| HistoryError::Syntax {
            line,
            reason: format!("expected a switch point LSN, found {lsn_text:?}"),
        })?;
        if let Some(prev) = out.last() {
            if tli <= prev.tli.0 {
                return Err(HistoryError::NotIncreasing { line, tli, prev: prev.tli.0 });
            }
        }
        out.push(HistoryEntry {
            tli: TimelineId(tli),
            switchpoint,
            reason: parts.next().unwrap_or("").trim().to_string(),
        });
    }
    Ok(out)
}

/// Render history entries the way PostgreSQL writes them.
pub fn render(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("{}\t{}\t{}\n", e.tli, e.switchpoint, e.reason));
    }
    out
}

/// One timeline on a path through history: it covers `[begin, end)`;
/// `begin` is `None` for the first timeline and `end` is `None` for the
/// newest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineSpan {
    pub tli: TimelineId,
    pub begin: Option<Lsn>,
    pub end: Option<Lsn>,
}

/// The path of timelines leading to `target`, oldest first, given the
/// entries of `target`'s history file (empty for timeline 1 or when no
/// history is known).
pub fn path_to(target: TimelineId, entries: &[HistoryEntry]) -> Result<Vec<TimelineSpan>, HistoryError> {
    if let Some(last) = entries.last() {
        if last.tli >= target {
            return Err(HistoryError::TargetNotNewer { tli: target.0, last: last.tli.0 });
        }
    }
    let mut spans = Vec::with_capacity(entries.len() + 1);
    let mut begin = None;
    for e in entries {
        spans.push(TimelineSpan { tli: e.tli, begin, end: Some(e.switchpoint) });
        begin = Some(e.switchpoint);
    }
    spans.push(TimelineSpan { tli: target, begin, end: None });
    Ok(spans)
}

/// The timeline whose file holds segment `segno` on this path: the newest
/// one that had begun by the segment's end, as recovery reads it
/// (`XLogFileReadAnyTLI()`).
pub fn timeline_for_segment(path: &[TimelineSpan], segno: u64, seg: WalSegSize) -> Option<TimelineId> {
    path.iter().rev().find(|s| s.begin.is_none_or(|b| b.segment_number(seg) <= segno)).map(|s| s.tli)
}

/// The timeline an LSN belongs to on this path.
pub fn timeline_for_lsn(path: &[TimelineSpan], lsn: Lsn) -> Option<TimelineId> {
    path.iter().find(|s| s.end.is_none_or(|e| lsn < e)).map(|s| s.tli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_live_format() {
        // The time and LSN reasons carry their own newline.
        let text = "1\t0/76D6CF0\tafter LSN 0/76D6CA8\n\n2\t0/9000000\tno recovery target specified\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].tli, TimelineId(1));
        assert_eq!(e[0].switchpoint, Lsn(0x76D6CF0));
        assert_eq!(e[0].reason, "after LSN 0/76D6CA8");
        assert_eq!(parse("# comment\n\n").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(matches!(parse("2\t0/1\tx\n1\t0/2\ty\n"), Err(HistoryError::NotIncreasing { .. })));
        assert!(matches!(parse("1\t0/1\tx\n1\t0/2\ty\n"), Err(HistoryError::NotIncreasing { .. })));
        assert!(matches!(parse("x\t0/1\n"), Err(HistoryError::Syntax { .. })));
        assert!(matches!(parse("0\t0/1\n"), Err(HistoryError::Syntax { .. })));
        assert!(matches!(parse("1\tnope\n"), Err(HistoryError::Syntax { .. })));
        assert!(matches!(parse("1\n"), Err(HistoryError::Syntax { .. })));
    }

    #[test]
    fn segments_map_to_the_newest_begun_timeline() {
        let seg = WalSegSize::DEFAULT;
        let e = parse("1\t0/3800100\tx\n2\t0/5000000\ty\n").unwrap();
        let path = path_to(TimelineId(3), &e).unwrap();
        assert_eq!(path.len(), 3);
        assert_eq!(timeline_for_segment(&path, 2, seg), Some(TimelineId(1)));
        // The switch segment is read from the new timeline's file.
        assert_eq!(timeline_for_segment(&path, 3, seg), Some(TimelineId(2)));
        assert_eq!(timeline_for_segment(&path, 4, seg), Some(TimelineId(2)));
        assert_eq!(timeline_for_segment(&path, 5, seg), Some(TimelineId(3)));
        assert_eq!(timeline_for_lsn(&path, Lsn(0x38000FF)), Some(TimelineId(1)));
        assert_eq!(timeline_for_lsn(&path, Lsn(0x3800100)), Some(TimelineId(2)));
        assert_eq!(timeline_for_lsn(&path, Lsn(0x9000000)), Some(TimelineId(3)));
        assert!(path_to(TimelineId(2), &e).is_err());
    }

    proptest! {
        #[test]
        fn history_round_trips(points in prop::collection::btree_set(1u64..u64::MAX, 0..6)) {
            let entries: Vec<_> = points.into_iter().enumerate()
                .map(|(i, p)| HistoryEntry { tli: TimelineId(i as u32 + 1), switchpoint: Lsn(p), reason: "no recovery target specified".into() })
                .collect();
            prop_assert_eq!(parse(&render(&entries)).unwrap(), entries);
        }
    }
}
