//! `pgdrill wal-keep`: which archived WAL a backup no longer needs.
//!
//! From the 9.0 documentation: WAL older than the last restartpoint at
//! backup time is not needed by the backup. The oldest segment a backup needs
//! holds its START WAL LOCATION (pg_control's redo point for a legacy
//! backup). Older segments on that timeline and its ancestors can go;
//! `.history` files and anything newer never do. A backup that does not
//! verify never causes WAL to be deleted.
//!
//! Archived files may be stored compressed (`.gz`, `.lz4`, `.zst`, a
//! partial segment as `NAME.partial.gz` or `NAME.gz.partial`): they are
//! classified by their PostgreSQL name and removed by their stored name,
//! through [`crate::source::WalSource`].

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::pg::history;
use crate::pg::wal::{history_file_name, SegmentName, WalFileKind};
use crate::pg::{Lsn, TimelineId, WalSegSize};
use crate::source::WalSource;
use crate::verify::{self, VerifyConfig};

/// A validated wal-keep request.
#[derive(Clone, Debug)]
pub struct WalKeepConfig {
    pub backup: PathBuf,
    pub archive: Option<PathBuf>,
    /// Fetch WAL for the verification through this command.
    pub restore_command: Option<String>,
    pub remove: bool,
    pub jobs: usize,
    /// How to reach object storage for `s3://` locations.
    pub s3: crate::objstore::S3Config,
}

/// One archive file the backup does not need.
#[derive(Clone, Debug, Serialize)]
pub struct Removable {
    /// The stored file name (with its compression suffix, if any).
    pub name: String,
    pub bytes: u64,
}

/// The result of wal-keep; its JSON form is documented in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct WalKeepReport {
    pub backup: PathBuf,
    pub start_lsn: Lsn,
    pub timeline: TimelineId,
    /// The oldest segment the backup needs.
    pub oldest_needed: String,
    /// The timeline and its ancestors, whose older segments may go.
    pub timelines: Vec<TimelineId>,
    pub archive: Option<PathBuf>,
    pub removable: Vec<Removable>,
    pub removable_bytes: u64,
    /// Whether the files were deleted (`--remove`) or only listed.
    pub removed: bool,
}

/// Which archive files are older than `oldest` on the given timelines.
pub fn older_files(names: &[String], oldest: SegmentName, timelines: &[TimelineId], seg: WalSegSize) -> Vec<String> {
    let older = |segment: &str| {
        SegmentName::parse(segment, seg).is_ok_and(|s| timelines.contains(&s.tli) && s.segno < oldest.segno)
    };
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| match WalFileKind::classify(n) {
            Some(WalFileKind::Segment(s)) | Some(WalFileKind::Partial(s)) => older(&s),
            Some(WalFileKind::BackupHistory { segment, .. }) => older(&segment),
            Some(WalFileKind::History(_)) | None => false,
        })
        .cloned()
        .collect();
    out.sort();
    out
}

/// A history file's text, stored plain or compressed (at most 1 MiB).
fn read_history(source: &dyn WalSource, name: &str) -> std::io::Result<String> {
    use std::io::Read;
    match source.fetch(name)? {
        crate::source::Fetched::Found(mut f) => {
            let mut b = Vec::new();
            (&mut f.reader).take(1 << 20).read_to_end(&mut b)?;
            Ok(String::from_utf8_lossy(&b).into_owned())
        }
        crate::source::Fetched::Absent(_) => Err(std::io::ErrorKind::NotFound.into()),
    }
}

pub fn run(cfg: &WalKeepConfig) -> Result<WalKeepReport> {
    let v = verify::run(&VerifyConfig {
        path: cfg.backup.clone(),
        wal_archive: cfg.archive.clone(),
        restore_command: cfg.restore_command.clone(),
        no_wal: cfg.archive.is_none() && cfg.restore_command.is_none(),
        jobs: cfg.jobs,
        allow_missing_manifest: false,
        s3: cfg.s3.clone(),
    })?;
    if !v.ok {
        let first = v
            .findings
            .iter()
            .find(|f| f.severity == verify::Severity::Error)
            .map(|f| f.message.clone())
            .unwrap_or_default();
        return Err(Error::NotConsistent {
            message: format!(
                "{}: the backup does not verify ({} errors, first: {first}); no WAL is listed or removed",
                cfg.backup.display(),
                v.errors
            ),
            hint: "run pgdrill verify on it; never delete WAL on the word of a broken backup".into(),
        });
    }
    // A plain or tar backup, local or in object storage.
    let (info, _, _) = crate::inspect::backup_info(&cfg.backup, &cfg.s3)?;
    let seg = info.seg_size().unwrap_or(WalSegSize::DEFAULT);
    let (start_lsn, tli) = info.start();
    let oldest = SegmentName::containing(tli, start_lsn, seg);
    let mut report = WalKeepReport {
        backup: cfg.backup.clone(),
        start_lsn,
        timeline: tli,
        oldest_needed: oldest.file_name(seg),
        timelines: vec![tli],
        archive: cfg.archive.clone(),
        removable: Vec::new(),
        removable_bytes: 0,
        removed: false,
    };
    let Some(archive) = &cfg.archive else { return Ok(report) };
    let source = crate::source::wal_archive(archive, &cfg.s3)?;
    let fail = |e: std::io::Error, path: PathBuf| match crate::source::fatal(e) {
        Ok(e) => crate::source::read_error(path, e),
        Err(e) => e,
    };
    if tli.0 > 1 {
        let h = archive.join(history_file_name(tli));
        let text = read_history(source.as_ref(), &history_file_name(tli)).map_err(|e| fail(e, h.clone()))?;
        let entries = history::parse(&text).map_err(|source| Error::History { path: h.clone(), source })?;
        report.timelines.extend(entries.iter().map(|e| e.tli));
        report.timelines.sort();
    }
    let stored = source.list().map_err(|e| fail(e, archive.clone()))?;
    // Classified by their PostgreSQL names, kept by their stored names.
    let names: Vec<String> = stored.iter().map(|f| f.name.clone()).collect();
    let older = older_files(&names, oldest, &report.timelines, seg);
    let mut going: Vec<_> = stored.into_iter().filter(|f| older.binary_search(&f.name).is_ok()).collect();
    going.sort_by(|a, b| a.stored.cmp(&b.stored));
    for f in &going {
        report.removable_bytes += f.bytes;
        report.removable.push(Removable { name: f.stored.clone(), bytes: f.bytes });
    }
    if cfg.remove {
        for f in &going {
            source.remove(f).map_err(|e| match crate::source::fatal(e) {
                Ok(e) => Error::io(archive.join(&f.stored), "remove", e),
                Err(e) => e,
            })?;
        }
        report.removed = true;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_older_files_of_the_right_timelines() {
        let seg = WalSegSize::DEFAULT;
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000003",
            "000000010000000000000004.partial",
            "000000020000000000000004",
            "000000020000000000000005",
            "000000020000000000000006",
            "00000002.history",
            "000000030000000000000001",
            "archive_status",
            "000000020000000000000004.00000060.backup",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let oldest = SegmentName::new(TimelineId(2), 5);
        let got = older_files(&names, oldest, &[TimelineId(1), TimelineId(2)], seg);
        assert_eq!(
            got,
            vec![
                "000000010000000000000001",
                "000000010000000000000002.00000028.backup",
                "000000010000000000000003",
                "000000010000000000000004.partial",
                "000000020000000000000004",
                "000000020000000000000004.00000060.backup",
            ]
        );
    }
}
