//! Reading a data directory or a backup directory.
//!
//! A backup directory is a data directory plus some of: `backup_label`,
//! `tablespace_map`, `backup_manifest` and our `end_location`. This module
//! reads those files (through the parsers in [`crate::pg`]) and answers the
//! questions every command asks: which major, which kind of backup, where its
//! end is, and which WAL it needs.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::pg::control::ControlFile;
use crate::pg::label::{self, BackupFrom, BackupLabel, LabelFields, TablespaceEntry};
use crate::pg::manifest::Manifest;
use crate::pg::wal::{SegmentName, WalFileKind};
use crate::pg::{Lsn, TimelineId, WalSegSize};
use crate::safefs::Dir;

pub const CONTROL_PATH: &str = "global/pg_control";
pub const BACKUP_LABEL: &str = "backup_label";
pub const TABLESPACE_MAP: &str = "tablespace_map";
pub const BACKUP_MANIFEST: &str = "backup_manifest";
pub const END_LOCATION: &str = "end_location";
/// Present while pgdrill is still writing a backup.
pub const INCOMPLETE_MARKER: &str = "pgdrill_backup_incomplete";

/// Read `global/pg_control`, retrying a torn read as PostgreSQL's frontends
/// do (`get_controlfile()`): up to 10 attempts 10 ms apart while the CRC is
/// bad, stopping early when the same bad CRC comes back twice. Links are not
/// followed.
pub fn read_control(dir: &Path) -> Result<(ControlFile, u64)> {
    let handle = Dir::open(dir).map_err(|e| Error::ReadInput { path: dir.to_path_buf(), source: e })?;
    read_control_in(&handle)
}

fn read_control_in(dir: &Dir) -> Result<(ControlFile, u64)> {
    let path = dir.path().join(CONTROL_PATH);
    let (bytes, control) = read_control_retrying(&path, || {
        dir.read(Path::new(CONTROL_PATH)).map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                Error::NotADataDir { path: dir.path().to_path_buf(), reason: format!("{CONTROL_PATH} is missing") }
            }
            _ => Error::ReadInput { path: path.clone(), source: e },
        })
    })?;
    Ok((control, bytes.len() as u64))
}

/// The one re-read policy for a pg_control that may be torn mid-write,
/// PostgreSQL's own (`get_controlfile()`): up to 10 reads 10 ms apart while
/// the CRC is bad, stopping early when the same bad CRC comes back twice (a
/// damaged file, not a torn read). Returns the last read; its `crc_ok` says
/// whether the CRC held.
pub fn read_control_retrying(path: &Path, mut read: impl FnMut() -> Result<Vec<u8>>) -> Result<(Vec<u8>, ControlFile)> {
    let mut last_bad: Option<u32> = None;
    for attempt in 0..10 {
        let bytes = read()?;
        let control =
            ControlFile::parse(&bytes).map_err(|source| Error::Control { path: path.to_path_buf(), source })?;
        if control.crc_ok || last_bad == Some(control.crc_computed) || attempt == 9 {
            return Ok((bytes, control));
        }
        last_bad = Some(control.crc_computed);
        sleep(Duration::from_millis(10));
    }
    unreachable!("the loop returns on its last attempt")
}

/// A file of the directory as text, or `None` if it is absent. A link is an
/// error, not followed.
fn read_optional(dir: &Dir, name: &str) -> Result<Option<String>> {
    dir.read_optional(Path::new(name))
        .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| Error::ReadInput { path: dir.path().join(name), source: e })
}

/// What a directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DirKind {
    /// A data directory (running, stopped or restored).
    DataDirectory,
    /// A backup with a backup_label (ours or pg_basebackup's).
    LabelBackup,
    /// A legacy backup: end_location but no backup_label.
    LegacyBackup,
}

/// Everything read from a directory.
#[derive(Clone, Debug)]
pub struct DirInfo {
    pub path: PathBuf,
    pub kind: DirKind,
    pub control: ControlFile,
    pub control_size: u64,
    pub label: Option<(BackupLabel, LabelFields)>,
    pub end_location: Option<Lsn>,
    pub tablespace_map: Option<Vec<TablespaceEntry>>,
    pub manifest: Option<ManifestInfo>,
    /// The backup was interrupted before it was complete.
    pub incomplete: bool,
    /// STOP WAL LOCATION from a `.backup` file in the backup's pg_wal.
    pub backup_history_stop: Option<Lsn>,
}

/// A manifest and whether its own checksum holds.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    pub manifest: Manifest,
    pub checksum_ok: bool,
    pub size: u64,
}

/// A short view of a backup_manifest, as `inspect` and `verify` show it.
#[derive(Clone, Debug, Serialize)]
pub struct ManifestSummary {
    pub version: u32,
    pub system_identifier: Option<String>,
    pub files: usize,
    pub total_bytes: u64,
    pub checksum_algorithms: Vec<&'static str>,
    pub wal_ranges: Vec<crate::pg::manifest::WalRange>,
    pub manifest_checksum_ok: bool,
}

impl ManifestInfo {
    pub fn summary(&self) -> ManifestSummary {
        let m = &self.manifest;
        ManifestSummary::new(
            m.version,
            m.system_identifier,
            m.files.iter().map(|f| (f.size, f.checksum.as_ref().map(|(a, _)| *a))),
            &m.wal_ranges,
            self.checksum_ok,
        )
    }
}

impl ManifestSummary {
    /// The summary of a manifest's parts: its files as (size, algorithm).
    pub fn new(
        version: u32,
        system_identifier: Option<u64>,
        files: impl Iterator<Item = (u64, Option<crate::pg::manifest::ChecksumAlgorithm>)>,
        wal_ranges: &[crate::pg::manifest::WalRange],
        checksum_ok: bool,
    ) -> ManifestSummary {
        let (mut count, mut total_bytes, mut algs) = (0, 0, Vec::new());
        for (size, alg) in files {
            count += 1;
            total_bytes += size;
            if let Some(a) = alg {
                if !algs.contains(&a.name()) {
                    algs.push(a.name());
                }
            }
        }
        algs.sort_unstable();
        ManifestSummary {
            version,
            system_identifier: system_identifier.map(|s| s.to_string()),
            files: count,
            total_bytes,
            checksum_algorithms: algs,
            wal_ranges: wal_ranges.to_vec(),
            manifest_checksum_ok: checksum_ok,
        }
    }
}

/// The WAL a restore of this directory needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalNeeded {
    pub timeline: TimelineId,
    pub start_lsn: Lsn,
    pub start_segment: String,
    pub end_lsn: Option<Lsn>,
    pub end_segment: Option<String>,
}

/// How [`DirInfo::read_with`] reads a directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Leave `backup_manifest` alone ([`DirInfo::manifest`] stays `None`),
    /// for callers that read it their own way.
    pub skip_manifest: bool,
    /// In a directory that is evidently a backup (it has a backup_label,
    /// end_location or backup_manifest), go on when `global/pg_control` is
    /// missing or cannot be decoded: [`DirInfo::control`] is then a
    /// placeholder for the major in `PG_VERSION`, and the reason is returned.
    pub tolerate_bad_control: bool,
}

impl DirInfo {
    /// Read a directory. Errors for anything that is not a data or backup
    /// directory, or whose files cannot be parsed.
    pub fn read(path: &Path) -> Result<DirInfo> {
        Self::read_with(path, ReadOptions::default()).map(|(info, _)| info)
    }

    /// Read a directory as [`ReadOptions`] say; the second value says why
    /// pg_control could not be used, when it was tolerated.
    pub fn read_with(path: &Path, opts: ReadOptions) -> Result<(DirInfo, Option<String>)> {
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NotADataDir { path: path.to_path_buf(), reason: "no such directory".into() },
            _ => Error::ReadInput { path: path.to_path_buf(), source: e },
        })?;
        if !meta.is_dir() {
            return Err(Error::NotADataDir { path: path.to_path_buf(), reason: "not a directory".into() });
        }
        let dir = Dir::open(path).map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: e })?;
        let incomplete = dir
            .meta_optional(Path::new(INCOMPLETE_MARKER))
            .map_err(|e| Error::ReadInput { path: path.join(INCOMPLETE_MARKER), source: e })?
            .is_some();
        let (control, control_size, control_problem) = match read_control_in(&dir) {
            Ok((c, size)) => (c, size, None),
            Err(e) if opts.tolerate_bad_control && is_evidently_backup(&dir) => {
                let (c, size, why) = control_placeholder(&dir, e)?;
                (c, size, Some(why))
            }
            // An interrupted backup may lack pg_control (copied last): name it
            // for what it is.
            Err(_) if incomplete => return Err(Error::IncompleteBackup { path: path.to_path_buf() }),
            Err(e) => return Err(e),
        };
        let label_path = path.join(BACKUP_LABEL);
        let label = read_optional(&dir, BACKUP_LABEL)?
            .map(|t| BackupLabel::parse(&t).map_err(|source| Error::Label { path: label_path.clone(), source }))
            .transpose()?;
        let end_path = path.join(END_LOCATION);
        let end_location = read_optional(&dir, END_LOCATION)?
            .map(|t| label::parse_end_location(&t).map_err(|source| Error::Label { path: end_path.clone(), source }))
            .transpose()?;
        let map_path = path.join(TABLESPACE_MAP);
        let escapes = control.version().tablespace_map_escapes;
        let tablespace_map = read_optional(&dir, TABLESPACE_MAP)?
            .map(|t| {
                label::parse_tablespace_map(&t, escapes)
                    .map_err(|source| Error::Label { path: map_path.clone(), source })
            })
            .transpose()?;
        let manifest_path = path.join(BACKUP_MANIFEST);
        let manifest = match dir.read(Path::new(BACKUP_MANIFEST)) {
            _ if opts.skip_manifest => None,
            Ok(bytes) => {
                let m = Manifest::parse(&bytes)
                    .map_err(|source| Error::Manifest { path: manifest_path.clone(), source })?;
                let checksum_ok = m.check_checksum(&bytes).is_ok();
                Some(ManifestInfo { manifest: m, checksum_ok, size: bytes.len() as u64 })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(Error::ReadInput { path: manifest_path, source: e }),
        };
        let kind = if label.is_some() {
            DirKind::LabelBackup
        } else if end_location.is_some() {
            DirKind::LegacyBackup
        } else {
            DirKind::DataDirectory
        };
        let backup_history_stop = match &label {
            Some((_, f)) if !f.is_from_standby() => find_backup_history_stop(&dir, f),
            _ => None,
        };
        let info = DirInfo {
            path: path.to_path_buf(),
            kind,
            control,
            control_size,
            label,
            end_location,
            tablespace_map,
            manifest,
            incomplete,
            backup_history_stop,
        };
        Ok((info, control_problem))
    }

    pub fn label_fields(&self) -> Option<&LabelFields> {
        self.label.as_ref().map(|(_, f)| f)
    }

    pub fn seg_size(&self) -> Option<WalSegSize> {
        self.control.wal_seg_size()
    }

    /// The backup's end point as `inspect` reports it: a legacy backup's
    /// end_location; for `BACKUP FROM: standby` the restored pg_control's
    /// minRecoveryPoint (what recovery will use as backupEndPoint); for a
    /// primary backup the STOP WAL LOCATION where known.
    pub fn end_lsn(&self) -> Option<Lsn> {
        match (self.kind, self.label_fields()) {
            (DirKind::LegacyBackup, _) => self.end_location,
            (DirKind::LabelBackup, Some(f)) if f.is_from_standby() => {
                Some(self.control.min_recovery_lsn).filter(|l| l.is_valid())
            }
            (DirKind::LabelBackup, Some(_)) => self.backup_history_stop.or(self.end_location),
            _ => None,
        }
    }

    /// The point the gate waits for: end_location first (the stop LSN of a
    /// label backup, the replay LSN of a legacy one), else [`Self::end_lsn`].
    pub fn gate_target(&self) -> Option<Lsn> {
        self.end_location.or_else(|| self.end_lsn())
    }

    /// Where replay starts and on which timeline.
    pub fn start(&self) -> (Lsn, TimelineId) {
        match self.label_fields() {
            Some(f) => (f.start_wal_location, f.start_file_timeline),
            None => (self.control.redo_lsn, self.control.timeline),
        }
    }

    /// The timeline the end point lies on, as far as the directory tells.
    pub fn end_timeline(&self) -> TimelineId {
        if let Some(m) = &self.manifest {
            if let Some(r) = m.manifest.wal_ranges.first() {
                return r.timeline;
            }
        }
        let mrt = self.control.min_recovery_timeline;
        if mrt != 0 && self.control.min_recovery_lsn.is_valid() {
            return TimelineId(mrt);
        }
        self.start().1
    }

    /// The WAL segments from the start to the end of this backup (or, for a
    /// plain data directory, from the redo point to the last checkpoint or
    /// minimum recovery point).
    pub fn wal_needed(&self) -> Option<WalNeeded> {
        let seg = self.seg_size()?;
        let (start, tli) = self.start();
        let start_segment = match self.label_fields() {
            Some(f) => f.start_wal_file.clone(),
            None => SegmentName::containing(tli, start, seg).file_name(seg),
        };
        let end = match self.kind {
            DirKind::DataDirectory => Some(self.control.checkpoint_lsn.max(self.control.min_recovery_lsn)),
            _ => self.gate_target(),
        };
        let end_segment = end.map(|e| {
            let segno = if e > start { e.prev_segment_number(seg) } else { e.segment_number(seg) };
            SegmentName::new(self.end_timeline(), segno).file_name(seg)
        });
        Some(WalNeeded { timeline: tli, start_lsn: start, start_segment, end_lsn: end, end_segment })
    }
}

/// A directory that carries a backup's own files.
fn is_evidently_backup(dir: &Dir) -> bool {
    [BACKUP_LABEL, END_LOCATION, BACKUP_MANIFEST]
        .iter()
        .any(|f| dir.meta_optional(Path::new(f)).is_ok_and(|m| m.is_some()))
}

/// A placeholder pg_control for a backup whose own is unusable (`err`
/// says why), of the major named by `PG_VERSION`; `err` itself when that
/// names no supported major.
fn control_placeholder(dir: &Dir, err: Error) -> Result<(ControlFile, u64, String)> {
    let major =
        dir.read(Path::new("PG_VERSION")).ok().and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok());
    let Some(v) = major.and_then(crate::pg::version::by_major) else { return Err(err) };
    let why = match &err {
        Error::Control { source, .. } => source.to_string(),
        Error::NotADataDir { .. } => format!("{CONTROL_PATH} is missing"),
        other => other.to_string(),
    };
    let size = dir.meta_optional(Path::new(CONTROL_PATH)).ok().flatten().map_or(0, |m| m.size);
    Ok((ControlFile::placeholder(v), size, why))
}

fn find_backup_history_stop(dir: &Dir, f: &LabelFields) -> Option<Lsn> {
    let wal = dir.dir(Path::new("pg_wal")).ok()?;
    for (name, _) in wal.entries().ok()? {
        let name = name.to_string_lossy().into_owned();
        if let Some(WalFileKind::BackupHistory { .. }) = WalFileKind::classify(&name) {
            let text = String::from_utf8(wal.read(Path::new(&name)).ok()?).ok()?;
            if let Ok((_, h)) = BackupLabel::parse(&text) {
                if h.start_wal_location == f.start_wal_location {
                    return h.stop_wal_location;
                }
            }
        }
    }
    None
}

/// `BACKUP FROM` as text, for reports.
pub fn backup_from_text(f: &LabelFields) -> &str {
    match &f.backup_from {
        Some(BackupFrom::Standby) => "standby",
        Some(BackupFrom::Primary) => "primary",
        Some(BackupFrom::Other(s)) => s,
        None => "",
    }
}

/// Kept for callers not yet moved to [`crate::server::running_postmaster`].
pub use crate::server::running_postmaster;
