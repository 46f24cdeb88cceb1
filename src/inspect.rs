//! `pgdrill inspect PATH`: what a data or backup directory holds.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::datadir::{DirInfo, DirKind, ManifestInfo, ManifestSummary, ReadOptions, WalNeeded};
use crate::error::{Result, EXIT_FAILED, EXIT_OK};
use crate::pg::control::ControlFile;
use crate::pg::label::{LabelFields, TablespaceEntry};
use crate::pg::Lsn;
use crate::source::{BackupFormat, BackupSource, Compression, TarBackup};

/// The result of `inspect`; its JSON form is documented in docs/json.md.
#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub path: PathBuf,
    pub kind: DirKind,
    /// `plain`, or `tar` (`base.tar` and friends).
    pub format: BackupFormat,
    /// The tar archives' compression (`none` for plain).
    pub compression: Compression,
    /// `label`, `legacy`, or null for a data directory.
    pub backup_method: Option<&'static str>,
    pub pg_major: u32,
    pub control: ControlFile,
    pub control_file_size: u64,
    pub label: Option<LabelFields>,
    pub end_location: Option<Lsn>,
    pub end_lsn: Option<Lsn>,
    pub wal_needed: Option<WalNeeded>,
    pub tablespace_map: Option<Vec<TablespaceEntry>>,
    pub manifest: Option<ManifestSummary>,
    /// The backup was interrupted while being written.
    pub incomplete: bool,
}

impl InspectReport {
    pub fn exit_code(&self) -> u8 {
        if self.control.crc_ok {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
    }
}

pub fn run(path: &Path, s3: &crate::objstore::S3Config) -> Result<InspectReport> {
    let (info, format, compression) = backup_info(path, s3)?;
    Ok(report(info, format, compression))
}

/// What the backup (or data directory) at `path` is, however it is
/// stored: a directory, a tar backup (one pass over its archives:
/// pg_control comes last in them), or either in object storage.
pub fn backup_info(path: &Path, s3: &crate::objstore::S3Config) -> Result<(DirInfo, BackupFormat, Compression)> {
    let read_err = |e: std::io::Error| match crate::source::fatal(e) {
        Ok(e) => crate::source::read_error(path, e),
        Err(e) => e,
    };
    if let Some(b) = crate::source::s3_backup(path, s3)? {
        let captured = b.capture().map_err(read_err)?;
        let info = DirInfo::read_from(path, &captured, ReadOptions::default())?.0;
        return Ok((info, b.format(), b.compression()));
    }
    match TarBackup::detect(path).map_err(read_err)? {
        Some(t) => {
            let captured = crate::source::capture(&t, path).map_err(read_err)?;
            let info = DirInfo::read_from(path, &captured, ReadOptions::default())?.0;
            Ok((info, t.format(), t.compression()))
        }
        None => Ok((DirInfo::read(path)?, BackupFormat::Plain, Compression::None)),
    }
}

fn report(info: DirInfo, format: BackupFormat, compression: Compression) -> InspectReport {
    let manifest = info.manifest.as_ref().map(ManifestInfo::summary);
    InspectReport {
        path: info.path.clone(),
        kind: info.kind,
        format,
        compression,
        backup_method: match info.kind {
            DirKind::LabelBackup => Some("label"),
            DirKind::LegacyBackup => Some("legacy"),
            DirKind::DataDirectory => None,
        },
        pg_major: info.control.pg_major,
        end_location: info.end_location,
        end_lsn: info.end_lsn(),
        wal_needed: info.wal_needed(),
        tablespace_map: info.tablespace_map.clone(),
        manifest,
        incomplete: info.incomplete,
        label: info.label.map(|(_, f)| f),
        control_file_size: info.control_size,
        control: info.control,
    }
}
