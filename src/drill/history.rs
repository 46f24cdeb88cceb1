//! The drill history: one JSON line per drill (`drill --history FILE`), and
//! `pgdrill history FILE`, which reads it back for trends.
//!
//! A history file grows by one line a night for years and may be damaged
//! (a full disk, an edit, the wrong file). Reading it is bounded: lines are
//! streamed, at most [`MAX_LINE`] bytes each, and only the records the
//! table needs are kept. A line that is not a drill record is an error that
//! names the line (exit 2), except a last line without its newline that
//! does not parse: that is a write cut short, skipped with a note.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DrillReport, Rto, StepStatus};
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};

/// The format of the records written; a newer one is refused.
pub const FORMAT: u32 = 1;
/// The longest line read (a record is about 1 KiB).
pub const MAX_LINE: usize = 1 << 20;

/// A step's time in a record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepTime {
    pub name: String,
    pub status: StepStatus,
    pub seconds: f64,
}

/// One drill, as one line of the history file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub started_at: String,
    pub finished_at: String,
    pub cluster: String,
    pub ok: bool,
    pub exit_code: u8,
    /// The first failing step (`drill` when the drill failed before its
    /// first step).
    #[serde(default)]
    pub failed_step: Option<String>,
    /// Why, in one line.
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepTime>,
    #[serde(default)]
    pub rto: Rto,
    #[serde(default)]
    pub rto_target: Option<f64>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub pg_major: Option<u32>,
    /// Bytes in the backup.
    #[serde(default)]
    pub backup_bytes: Option<u64>,
    /// WAL from the backup's start to its end.
    #[serde(default)]
    pub wal_bytes: Option<u64>,
    /// `wal_bytes` per second of replay.
    #[serde(default)]
    pub replay_rate: Option<f64>,
    #[serde(default)]
    pub end_lsn: Option<String>,
}

impl Record {
    /// The record of a drill that ran.
    pub fn of(d: &DrillReport, cluster: &str) -> Record {
        let failed = d.failed_step();
        Record {
            format: FORMAT,
            started_at: d.started_at.clone(),
            finished_at: d.finished_at.clone(),
            cluster: cluster.to_string(),
            ok: d.ok,
            exit_code: d.exit_code,
            failed_step: failed.map(|s| s.name.to_string()),
            cause: failed.map(|s| s.causes.first().cloned().unwrap_or_else(|| s.detail.clone())),
            steps: d
                .steps
                .iter()
                .map(|s| StepTime { name: s.name.to_string(), status: s.status, seconds: s.seconds })
                .collect(),
            rto: d.rto.clone(),
            rto_target: d.rto_target,
            method: d
                .backup
                .as_ref()
                .map(|b| if b.method == crate::backup::Method::Label { "label" } else { "legacy" }.to_string()),
            pg_major: d.backup.as_ref().map(|b| b.pg_major),
            backup_bytes: d.backup.as_ref().map(|b| b.bytes),
            wal_bytes: d.wal_bytes(),
            replay_rate: d.replay_rate(),
            end_lsn: d.end_lsn.map(|l| l.to_string()),
        }
    }

    /// The record of a drill that failed before its first step.
    pub fn early_failure(cluster: &str, started_at: &str, finished_at: &str, err: &Error, seconds: f64) -> Record {
        Record {
            format: FORMAT,
            started_at: started_at.to_string(),
            finished_at: finished_at.to_string(),
            cluster: cluster.to_string(),
            ok: false,
            exit_code: err.exit_code(),
            failed_step: Some("drill".into()),
            cause: Some(err.chain().join(": ")),
            steps: Vec::new(),
            rto: Rto { total: seconds, ..Rto::default() },
            rto_target: None,
            method: None,
            pg_major: None,
            backup_bytes: None,
            wal_bytes: None,
            replay_rate: None,
            end_lsn: None,
        }
    }

    /// The seconds a step took, if it ran.
    pub fn step_secs(&self, name: &str) -> Option<f64> {
        self.steps.iter().find(|s| s.name == name && s.status != StepStatus::Skip).map(|s| s.seconds)
    }
}

/// Append `record` as one line. A file whose last line lost its newline
/// (a write cut short) gets one first, so records never run together.
pub fn append(path: &Path, record: &Record) -> Result<()> {
    let io = |e| Error::io(path, "append to the history file", e);
    let mut line = serde_json::to_string(record).map_err(|e| io(std::io::Error::other(e)))?;
    line.push('\n');
    let mut f = File::options().read(true).append(true).create(true).open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        f.read_exact(&mut last).map_err(io)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    // One write: a reader never sees half a record followed by another.
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)
}

/// What [`read`] found.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The newest records, oldest first, each with its line number.
    pub records: Vec<(usize, Record)>,
    /// How many records the file holds.
    pub total: usize,
    /// A last line cut short that was skipped.
    pub torn_last_line: Option<usize>,
}

fn bad_line(path: &Path, line: usize, what: String) -> Error {
    Error::usage(
        format!("{}: line {line}: {what}", path.display()),
        Some("pass a history file written by `pgdrill drill --history`, or remove the damaged line".into()),
    )
}

/// Read the newest `keep` records of the history file at `path` (of
/// `cluster` only, when given).
pub fn read(path: &Path, keep: usize, cluster: Option<&str>) -> Result<Loaded> {
    let f = File::open(path).map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: e })?;
    read_from(BufReader::new(f), path, keep, cluster)
}

/// [`read`] over any reader (`path` names it in errors).
pub fn read_from(mut r: impl BufRead, path: &Path, keep: usize, cluster: Option<&str>) -> Result<Loaded> {
    let mut records: VecDeque<(usize, Record)> = VecDeque::with_capacity(keep.min(1024));
    let mut total = 0;
    let mut torn = None;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: e })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        if !complete && buf.len() > MAX_LINE {
            return Err(bad_line(path, line_no, format!("longer than {} bytes: not a drill record", MAX_LINE)));
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim(),
            Err(_) if !complete => {
                torn = Some(line_no);
                break;
            }
            Err(_) => return Err(bad_line(path, line_no, "not UTF-8: not a drill record".into())),
        };
        if text.is_empty() {
            continue;
        }
        let rec: Record = match serde_json::from_str(text) {
            Ok(r) => r,
            // The last line without its newline: a write cut short.
            Err(_) if !complete => {
                torn = Some(line_no);
                break;
            }
            Err(e) => return Err(bad_line(path, line_no, format!("not a drill record ({e})"))),
        };
        if rec.format > FORMAT {
            return Err(bad_line(
                path,
                line_no,
                format!("record format {} is newer than this pgdrill reads ({FORMAT}); upgrade pgdrill", rec.format),
            ));
        }
        total += 1;
        if keep > 0 && cluster.is_none_or(|c| rec.cluster == c) {
            if records.len() == keep {
                records.pop_front();
            }
            records.push_back((line_no, rec));
        }
    }
    Ok(Loaded { records: records.into(), total, torn_last_line: torn })
}

/// A validated `pgdrill history` request.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    pub file: PathBuf,
    /// Rows to show.
    pub last: usize,
    /// Previous passing drills whose median each row is compared with.
    pub baseline: usize,
    /// A recovery time this many percent above the median is a regression.
    pub threshold_pct: f64,
    /// Exit 1 when the newest drill is a regression.
    pub fail_on_regression: bool,
    /// Only this cluster's drills.
    pub cluster: Option<String>,
}

/// One row of the trend.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub line: usize,
    #[serde(flatten)]
    pub record: Record,
    /// Median recovery time of the previous passing drills (up to
    /// `baseline` of them), when there are any.
    pub baseline_median: Option<f64>,
    /// How many drills that median is of.
    pub baseline_runs: usize,
    /// The recovery time's change against that median, in percent.
    pub change_pct: Option<f64>,
    /// A passing drill whose recovery time is over the median by more
    /// than the threshold.
    pub regression: bool,
}

/// The result of `pgdrill history`; its JSON form is in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryReport {
    pub ok: bool,
    pub file: PathBuf,
    /// Records in the file (all clusters).
    pub total: usize,
    pub cluster: Option<String>,
    pub threshold_pct: f64,
    pub baseline: usize,
    /// The newest `last` drills, oldest first.
    pub drills: Vec<Row>,
    /// The newest drill is a regression.
    pub regression: bool,
    /// A last line cut short was skipped (its line number).
    pub torn_last_line: Option<usize>,
    #[serde(skip)]
    pub fail_on_regression: bool,
}

impl HistoryReport {
    pub fn exit_code(&self) -> u8 {
        if self.regression && self.fail_on_regression {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    }
}

/// The median of `v` (not empty).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The trend over `records` (oldest first): the newest `last`, each against
/// the median of up to `baseline` passing drills of its cluster before it.
pub fn trend(records: &[(usize, Record)], last: usize, baseline: usize, threshold_pct: f64) -> Vec<Row> {
    let first = records.len().saturating_sub(last);
    (first..records.len())
        .map(|i| {
            let (line, rec) = &records[i];
            let mut prev: Vec<f64> = records[..i]
                .iter()
                .rev()
                .filter(|(_, r)| r.ok && r.cluster == rec.cluster)
                .take(baseline)
                .map(|(_, r)| r.rto.recovery)
                .collect();
            let baseline_runs = prev.len();
            let baseline_median = (!prev.is_empty()).then(|| median(&mut prev));
            let change_pct = match baseline_median {
                Some(m) if rec.ok && m > 0.0 => Some((rec.rto.recovery - m) / m * 100.0),
                _ => None,
            };
            Row {
                line: *line,
                record: rec.clone(),
                baseline_median,
                baseline_runs,
                change_pct,
                regression: change_pct.is_some_and(|c| c > threshold_pct),
            }
        })
        .collect()
}

/// `pgdrill history`.
pub fn run(cfg: &HistoryConfig) -> Result<HistoryReport> {
    let keep = cfg.last.saturating_add(cfg.baseline);
    let loaded = read(&cfg.file, keep, cfg.cluster.as_deref())?;
    if let Some(n) = loaded.torn_last_line {
        crate::observe::note(
            crate::observe::Level::Warn,
            &format!("{}: line {n} was cut short (an interrupted write); skipped", cfg.file.display()),
        );
    }
    let drills = trend(&loaded.records, cfg.last, cfg.baseline, cfg.threshold_pct);
    let regression = drills.last().is_some_and(|r| r.regression);
    Ok(HistoryReport {
        ok: !regression,
        file: cfg.file.clone(),
        total: loaded.total,
        cluster: cfg.cluster.clone(),
        threshold_pct: cfg.threshold_pct,
        baseline: cfg.baseline,
        drills,
        regression,
        torn_last_line: loaded.torn_last_line,
        fail_on_regression: cfg.fail_on_regression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ok: bool, recovery: f64) -> Record {
        let mut r =
            Record::early_failure("c1", "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", &Error::usage("x", None), 1.0);
        r.ok = ok;
        r.exit_code = if ok { 0 } else { 1 };
        r.rto.recovery = recovery;
        r
    }

    fn lines(recs: &[Record]) -> String {
        recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect()
    }

    #[test]
    fn reads_the_newest_records_and_flags_a_regression() {
        let recs: Vec<Record> =
            [10.0, 12.0, 11.0, 0.0, 30.0].iter().enumerate().map(|(i, t)| rec(i != 3, *t)).collect();
        let text = lines(&recs);
        let l = read_from(text.as_bytes(), Path::new("h"), 3, None).unwrap();
        assert_eq!(l.total, 5);
        assert_eq!(l.records.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![3, 4, 5]);
        let l = read_from(text.as_bytes(), Path::new("h"), 100, None).unwrap();
        let rows = trend(&l.records, 2, 10, 50.0);
        assert_eq!(rows.len(), 2);
        // A failed drill has no change; the last is against median(10, 12, 11) = 11.
        assert_eq!(rows[0].change_pct, None);
        assert_eq!(rows[1].baseline_median, Some(11.0));
        assert_eq!(rows[1].baseline_runs, 3);
        assert!((rows[1].change_pct.unwrap() - 172.727).abs() < 0.01);
        assert!(rows[1].regression);
        // Under the threshold: no regression.
        assert!(!trend(&l.records, 1, 10, 200.0)[0].regression);
        // The baseline is the newest N passing drills before the row.
        assert_eq!(trend(&l.records, 1, 1, 50.0)[0].baseline_median, Some(11.0));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_line() {
        let good = lines(&[rec(true, 1.0)]);
        let e = read_from(format!("{good}{{not json}}\n{good}").as_bytes(), Path::new("h"), 5, None).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("h: line 2: not a drill record"), "{e}");
        let e = read_from(&b"\xff\xfe\n"[..], Path::new("h"), 5, None).unwrap_err();
        assert!(e.to_string().contains("line 1: not UTF-8"), "{e}");
        // A line without end is refused after MAX_LINE bytes, not read whole.
        let huge = vec![b'x'; MAX_LINE + 10];
        let e = read_from(&huge[..], Path::new("h"), 5, None).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let newer = good.replace("\"format\":1", "\"format\":99");
        assert!(read_from(newer.as_bytes(), Path::new("h"), 5, None).unwrap_err().to_string().contains("newer"));
        // A last line cut short is skipped, not an error.
        let cut = format!("{good}{}", &good[..good.len() / 2]);
        let l = read_from(cut.as_bytes(), Path::new("h"), 5, None).unwrap();
        assert_eq!((l.total, l.torn_last_line), (1, Some(2)));
        // Blank lines are fine; an empty file has no records.
        assert_eq!(read_from(format!("\n{good}\n").as_bytes(), Path::new("h"), 5, None).unwrap().total, 1);
        assert_eq!(read_from(&b""[..], Path::new("h"), 5, None).unwrap().total, 0);
    }

    #[test]
    fn a_cluster_filter_keeps_line_numbers() {
        let mut other = rec(true, 5.0);
        other.cluster = "c2".into();
        let text = lines(&[rec(true, 1.0), other, rec(true, 2.0)]);
        let l = read_from(text.as_bytes(), Path::new("h"), 5, Some("c1")).unwrap();
        assert_eq!(l.records.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(l.total, 3);
    }

    #[test]
    fn append_restores_a_missing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        std::fs::write(&p, "{\"torn\":").unwrap();
        append(&p, &rec(true, 1.0)).unwrap();
        append(&p, &rec(true, 2.0)).unwrap();
        let l = read(&p, 10, None);
        // The torn line is not the last one any more: it is an error now.
        assert!(l.unwrap_err().to_string().contains("line 1"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        std::fs::write(&p, "").unwrap();
        append(&p, &rec(true, 1.0)).unwrap();
        assert_eq!(read(&p, 10, None).unwrap().total, 1);
    }
}
