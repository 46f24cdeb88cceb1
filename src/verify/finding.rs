//! Findings: what `verify` found wrong, as data.
//!
//! Checks never print. Each problem becomes one [`Finding`] with a stable
//! snake_case [`FindingKind`], the path it concerns (relative to the checked
//! directory for its own files), the WAL position where relevant, and a
//! one-line explanation. docs/verify.md lists every kind.

use std::fmt;

use serde::Serialize;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
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

    // tablespace_map and pg_tblspc.
    /// tablespace_map and pg_tblspc disagree.
    TablespaceMapMismatch,
    /// A pg_tblspc symlink leads nowhere.
    TablespaceMissing,

    // backup_manifest.
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
        use FindingKind::*;
        match self {
            IncompleteBackup => "incomplete_backup",
            NoEndPoint => "no_end_point",
            DataDirectoryNotShutDown => "data_directory_not_shut_down",
            ControlSize => "control_size",
            ControlCrc => "control_crc",
            ControlInsane => "control_insane",
            ControlCopiedEarly => "control_copied_early",
            LabelTimelineMismatch => "label_timeline_mismatch",
            LabelStartFileMismatch => "label_start_file_mismatch",
            LabelCheckpointBeforeStart => "label_checkpoint_before_start",
            LabelStandbyState => "label_standby_state",
            LabelMinRecoveryBeforeStart => "label_min_recovery_before_start",
            LegacyEndBeforeRedo => "legacy_end_before_redo",
            LegacyNotStandby => "legacy_not_standby",
            PageLsnBeyondEnd => "page_lsn_beyond_end",
            TablespaceMapMismatch => "tablespace_map_mismatch",
            TablespaceMissing => "tablespace_missing",
            ManifestChecksum => "manifest_checksum",
            ManifestSystemIdentifier => "manifest_system_identifier",
            ManifestWalRange => "manifest_wal_range",
            FileMissing => "file_missing",
            FileExtra => "file_extra",
            FileSize => "file_size",
            FileChecksum => "file_checksum",
            FileUnreadable => "file_unreadable",
            WalEndUnknown => "wal_end_unknown",
            WalSegmentMissing => "wal_segment_missing",
            WalPartialUsed => "wal_partial_used",
            WalSegmentSize => "wal_segment_size",
            WalSegmentTruncated => "wal_segment_truncated",
            WalUnreadable => "wal_unreadable",
            WalHistoryMissing => "wal_history_missing",
            WalHistoryInvalid => "wal_history_invalid",
            WalPageHeader => "wal_page_header",
            WalWrongSystem => "wal_wrong_system",
            WalRecordInvalid => "wal_record_invalid",
            WalRecordCrc => "wal_record_crc",
            WalEndNotReached => "wal_end_not_reached",
        }
    }

    /// The severity a finding of this kind has.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::DataDirectoryNotShutDown | FindingKind::WalPartialUsed | FindingKind::WalEndUnknown => {
                Severity::Warning
            }
            _ => Severity::Error,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_as_str() {
        use FindingKind::*;
        for k in [
            IncompleteBackup,
            NoEndPoint,
            DataDirectoryNotShutDown,
            ControlSize,
            ControlCrc,
            ControlInsane,
            ControlCopiedEarly,
            LabelTimelineMismatch,
            LabelStartFileMismatch,
            LabelCheckpointBeforeStart,
            LabelStandbyState,
            LabelMinRecoveryBeforeStart,
            LegacyEndBeforeRedo,
            LegacyNotStandby,
            PageLsnBeyondEnd,
            TablespaceMapMismatch,
            TablespaceMissing,
            ManifestChecksum,
            ManifestSystemIdentifier,
            ManifestWalRange,
            FileMissing,
            FileExtra,
            FileSize,
            FileChecksum,
            FileUnreadable,
            WalEndUnknown,
            WalSegmentMissing,
            WalPartialUsed,
            WalSegmentSize,
            WalSegmentTruncated,
            WalUnreadable,
            WalHistoryMissing,
            WalHistoryInvalid,
            WalPageHeader,
            WalWrongSystem,
            WalRecordInvalid,
            WalRecordCrc,
            WalEndNotReached,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        let f = Finding::new(WalPartialUsed, "x").at("p").lsn(Lsn(1));
        assert_eq!(f.severity, Severity::Warning);
        assert!(!f.is_error());
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["kind"], "wal_partial_used");
        assert_eq!(v["lsn"], "0/1");
        assert!(Finding::new(FileExtra, "y").is_error());
        assert_eq!(serde_json::to_value(Finding::new(FileExtra, "y")).unwrap()["path"], serde_json::Value::Null);
    }
}
