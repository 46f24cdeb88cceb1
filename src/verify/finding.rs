//! Findings: what `verify` found wrong, as data.
//!
//! Checks never print. Each problem becomes one [`Finding`] with a stable
//! snake_case [`FindingKind`], the path it concerns (relative to the checked
//! directory for its own files), the WAL position where relevant, and a
//! one-line explanation. The enum is the one definition of the kinds: their
//! JSON names come from its variant names (strum's `snake_case`), and a test
//! checks that docs/verify.md lists exactly these. [`Findings`] collects them
//! with a bounded number listed per kind, so that no input makes the report
//! grow without bound.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};
use strum::{EnumIter, IntoEnumIterator, IntoStaticStr};

use crate::pg::Lsn;

/// How bad a finding is. Only errors fail a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// What kind of problem. The serialized names are part of the JSON schema
/// (docs/verify.md) and stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, IntoStaticStr, EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum FindingKind {
    // The directory as a whole.
    /// pgdrill's `pgdrill_backup_incomplete` marker is present.
    IncompleteBackup,
    /// A backup_manifest but neither backup_label nor end_location: the
    /// backup's end is unknown.
    NoEndPoint,
    /// A data directory not cleanly shut down (warning).
    DataDirectoryNotShutDown,

    // pg_control.
    /// `global/pg_control` is not 8192 bytes.
    ControlSize,
    /// The CRC-32C of pg_control does not match.
    ControlCrc,
    /// A value no healthy cluster has (segment size, block size, ...).
    ControlInsane,
    /// `global/pg_control` of a backup is missing, empty, truncated or of an
    /// unknown version: the checks that need it are skipped.
    ControlUnreadable,
    /// pg_control predates the backup start: it was copied too early.
    ControlCopiedEarly,

    // backup_label.
    /// START TIMELINE differs from the timeline of the start WAL file name.
    LabelTimelineMismatch,
    /// The start WAL file name does not hold the START WAL LOCATION.
    LabelStartFileMismatch,
    /// CHECKPOINT LOCATION is before START WAL LOCATION.
    LabelCheckpointBeforeStart,
    /// `BACKUP FROM: standby`, but pg_control is not a standby's.
    LabelStandbyState,
    /// `BACKUP FROM: standby`, but minRecoveryPoint is before the start.
    LabelMinRecoveryBeforeStart,

    // Legacy backups.
    /// end_location is before pg_control's redo point.
    LegacyEndBeforeRedo,
    /// pg_control of a legacy backup is not a standby's.
    LegacyNotStandby,

    // Relation pages.
    /// Relation pages carry LSNs beyond the backup's end point.
    PageLsnBeyondEnd,
    /// A page fails its data checksum and is not one replay rewrites.
    PageChecksum,

    // tablespace_map and pg_tblspc.
    /// tablespace_map and pg_tblspc disagree.
    TablespaceMapMismatch,
    /// A pg_tblspc symlink leads nowhere.
    TablespaceMissing,

    // backup_manifest.
    /// A backup that should have a backup_manifest has none.
    ManifestMissing,
    /// The backup_manifest cannot be parsed, or breaks PostgreSQL's rules.
    ManifestInvalid,
    /// A data directory's backup_manifest is left over from the backup that
    /// made it and was not applied (warning).
    ManifestStale,
    /// The manifest's own SHA-256 does not match.
    ManifestChecksum,
    /// A version 2 manifest names another system than pg_control.
    ManifestSystemIdentifier,
    /// The manifest's WAL-Ranges disagree with the backup's start.
    ManifestWalRange,
    /// A file the manifest lists is not on disk.
    FileMissing,
    /// A file on disk that the manifest does not list.
    FileExtra,
    /// A file's size differs from the manifest.
    FileSize,
    /// A file's checksum differs from the manifest.
    FileChecksum,
    /// A file could not be read.
    FileUnreadable,
    /// A tar backup holds what no backup may: a link outside
    /// `pg_tblspc/<oid>`, a hard link, a device or FIFO, a `..` or absolute
    /// path.
    EntryRefused,

    // WAL.
    /// The end of the WAL the backup needs is unknown (warning).
    WalEndUnknown,
    /// A needed segment is neither in the archive nor in pg_wal.
    WalSegmentMissing,
    /// A `.partial` segment stands in for a missing full one (warning).
    WalPartialUsed,
    /// A segment file has the wrong size.
    WalSegmentSize,
    /// A segment file ends before the chain does.
    WalSegmentTruncated,
    /// A segment could not be read.
    WalUnreadable,
    /// The timeline history file needed to cross a timeline switch is missing.
    WalHistoryMissing,
    /// A timeline history file cannot be parsed or does not lead from the
    /// start timeline to the end timeline.
    WalHistoryInvalid,
    /// A page header is invalid (magic, flags, address, timeline, sizes).
    WalPageHeader,
    /// A segment belongs to another database system.
    WalWrongSystem,
    /// A record header or continuation is invalid.
    WalRecordInvalid,
    /// A record's CRC does not match.
    WalRecordCrc,
    /// The walk stopped before the end without a more specific finding.
    WalEndNotReached,
}

impl FindingKind {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every kind, in declaration order.
    pub fn all() -> impl Iterator<Item = FindingKind> {
        FindingKind::iter()
    }

    /// The severity a finding of this kind has.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::DataDirectoryNotShutDown
            | FindingKind::WalPartialUsed
            | FindingKind::WalEndUnknown
            | FindingKind::ManifestStale => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl Serialize for FindingKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    /// The file concerned: relative to the checked directory for its own
    /// files, a WAL file's path where it was found, or its bare name when it
    /// was not found.
    pub path: Option<String>,
    pub lsn: Option<Lsn>,
    /// One line, lowercase, saying what is wrong and why it matters.
    pub message: String,
}

impl Finding {
    pub fn new(kind: FindingKind, message: impl Into<String>) -> Finding {
        Finding { severity: kind.severity(), kind, path: None, lsn: None, message: message.into() }
    }

    pub fn at(mut self, path: impl Into<String>) -> Finding {
        self.path = Some(path.into());
        self
    }

    pub fn lsn(mut self, lsn: Lsn) -> Finding {
        self.lsn = Some(lsn);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// At most this many findings of one kind are listed; the rest are counted.
pub const LISTED_PER_KIND: usize = 1000;

/// Findings as they are collected: every one counted, at most
/// [`LISTED_PER_KIND`] of a kind kept.
#[derive(Debug, Default)]
pub struct Findings {
    list: Vec<Finding>,
    listed: BTreeMap<FindingKind, usize>,
    omitted: BTreeMap<FindingKind, u64>,
}

impl Findings {
    pub fn new() -> Findings {
        Findings::default()
    }

    pub fn push(&mut self, f: Finding) {
        let n = self.listed.entry(f.kind).or_insert(0);
        if *n < LISTED_PER_KIND {
            *n += 1;
            self.list.push(f);
        } else {
            *self.omitted.entry(f.kind).or_insert(0) += 1;
        }
    }

    pub fn extend(&mut self, fs: impl IntoIterator<Item = Finding>) {
        for f in fs {
            self.push(f);
        }
    }

    /// Take over another collector's findings and counts.
    pub fn append(&mut self, other: Findings) {
        for (kind, n) in other.omitted {
            *self.omitted.entry(kind).or_insert(0) += n;
        }
        self.extend(other.list);
    }

    /// Whether any finding (listed or not) is an error.
    pub fn has_error(&self) -> bool {
        self.list.iter().any(Finding::is_error) || self.omitted.keys().any(|k| k.severity() == Severity::Error)
    }

    /// Errors and warnings, listed or not.
    pub fn counts(&self) -> (u64, u64) {
        let mut errors = self.list.iter().filter(|f| f.is_error()).count() as u64;
        let mut warnings = self.list.len() as u64 - errors;
        for (k, n) in &self.omitted {
            match k.severity() {
                Severity::Error => errors += n,
                Severity::Warning => warnings += n,
            }
        }
        (errors, warnings)
    }

    pub fn listed(&self) -> &[Finding] {
        &self.list
    }

    /// Sort the listed findings by path, then kind (file checks run in
    /// parallel; this keeps the report stable).
    pub fn sort_by_path(&mut self) {
        self.list.sort_by(|a, b| (&a.path, a.kind).cmp(&(&b.path, b.kind)));
    }

    /// The listed findings, plus one per kind that had more, saying how many
    /// were left out; and the number left out.
    pub fn finish(mut self) -> (Vec<Finding>, u64) {
        let mut total = 0;
        for (kind, n) in &self.omitted {
            total += n;
            self.list.push(Finding::new(
                *kind,
                format!("{n} more {kind} findings are not listed (at most {LISTED_PER_KIND} of a kind are)"),
            ));
        }
        (self.list, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_come_from_the_variants() {
        let mut names = std::collections::BTreeSet::new();
        for k in FindingKind::all() {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert!(k.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{k}");
            assert!(names.insert(k.as_str()));
        }
        assert_eq!(FindingKind::WalRecordCrc.as_str(), "wal_record_crc");
        assert_eq!(FindingKind::DataDirectoryNotShutDown.as_str(), "data_directory_not_shut_down");
        let f = Finding::new(FindingKind::WalPartialUsed, "x").at("p").lsn(Lsn(1));
        assert_eq!(f.severity, Severity::Warning);
        assert!(!f.is_error());
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["kind"], "wal_partial_used");
        assert_eq!(v["lsn"], "0/1");
        assert!(Finding::new(FindingKind::FileExtra, "y").is_error());
        assert_eq!(
            serde_json::to_value(Finding::new(FindingKind::FileExtra, "y")).unwrap()["path"],
            serde_json::Value::Null
        );
    }

    /// docs/verify.md's table of finding kinds lists exactly the kinds, with
    /// the right severity.
    #[test]
    fn the_docs_list_every_kind() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/verify.md")).unwrap();
        let table = doc.split("## Finding kinds").nth(1).expect("a Finding kinds section");
        let mut documented = std::collections::BTreeMap::new();
        for line in table.lines().take_while(|l| !l.starts_with("## ")) {
            let Some(cell) = line.strip_prefix("| `") else { continue };
            let (name, rest) = cell.split_once('`').unwrap();
            documented.insert(name.to_string(), rest.trim_start().starts_with("(warning)"));
        }
        let ours: std::collections::BTreeMap<String, bool> =
            FindingKind::all().map(|k| (k.as_str().to_string(), k.severity() == Severity::Warning)).collect();
        assert_eq!(documented, ours);
    }

    #[test]
    fn findings_are_bounded_per_kind() {
        let mut fs = Findings::new();
        for i in 0..(LISTED_PER_KIND + 5) {
            fs.push(Finding::new(FindingKind::FileMissing, "gone").at(i.to_string()));
        }
        fs.push(Finding::new(FindingKind::FileExtra, "x"));
        assert!(fs.has_error());
        let (list, omitted) = fs.finish();
        assert_eq!(omitted, 5);
        assert_eq!(list.len(), LISTED_PER_KIND + 2);
        assert!(list.last().unwrap().message.starts_with("5 more file_missing findings"));
    }
}
