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

/// The few files [`DirInfo`] reads, wherever the backup is: a directory
/// (through no-follow handles), or the files a tar backup's stream kept
/// ([`Captured`]).
pub trait BackupFiles {
    /// Where the files are, for messages.
    fn root(&self) -> &Path;
    /// A file's bytes, or `None` if it is absent.
    fn read_optional(&self, rel: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Whether an entry exists (a file or a directory).
    fn exists(&self, rel: &str) -> bool;
    /// The names in a directory (empty if there is none).
    fn names_in(&self, rel: &str) -> Vec<String>;
    /// A file's size, if it exists.
    fn size(&self, rel: &str) -> Option<u64>;
    /// pg_control and its size.
    fn read_control(&self) -> Result<(ControlFile, u64)>;
}

impl BackupFiles for Dir {
    fn root(&self) -> &Path {
        self.path()
    }
    fn read_optional(&self, rel: &str) -> std::io::Result<Option<Vec<u8>>> {
        Dir::read_optional(self, Path::new(rel))
    }
    fn exists(&self, rel: &str) -> bool {
        self.meta_optional(Path::new(rel)).is_ok_and(|m| m.is_some())
    }
    fn names_in(&self, rel: &str) -> Vec<String> {
        let Ok(d) = self.dir(Path::new(rel)) else { return Vec::new() };
        d.entries().map(|e| e.into_iter().map(|(n, _)| n.to_string_lossy().into_owned()).collect()).unwrap_or_default()
    }
    fn size(&self, rel: &str) -> Option<u64> {
        self.meta_optional(Path::new(rel)).ok().flatten().map(|m| m.size)
    }
    fn read_control(&self) -> Result<(ControlFile, u64)> {
        read_control_in(self)
    }
}

/// Small files kept from a stream of a backup's entries (a tar backup),
/// each up to a limit, with their full sizes.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    pub root: PathBuf,
    /// Path → (bytes kept, full size).
    pub files: std::collections::BTreeMap<String, (Vec<u8>, u64)>,
    /// Every directory and file path seen that [`Captured::wants`] names,
    /// kept or not.
    pub seen: std::collections::BTreeSet<String>,
}

impl Captured {
    /// How much of `rel` to keep, if it is one of the files [`DirInfo`]
    /// reads; `None` for the rest.
    pub fn wants(rel: &str) -> Option<u64> {
        match rel {
            CONTROL_PATH => Some(64 * 1024),
            BACKUP_LABEL | TABLESPACE_MAP => Some(1 << 20),
            END_LOCATION | "PG_VERSION" | INCOMPLETE_MARKER | "backup_label.old" => Some(4096),
            r if r.starts_with("pg_wal/") && r.ends_with(".backup") && !r[7..].contains('/') => Some(64 * 1024),
            _ => None,
        }
    }
}

impl BackupFiles for Captured {
    fn root(&self) -> &Path {
        &self.root
    }
    fn read_optional(&self, rel: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(rel).map(|(b, _)| b.clone()))
    }
    fn exists(&self, rel: &str) -> bool {
        self.files.contains_key(rel) || self.seen.contains(rel)
    }
    fn names_in(&self, rel: &str) -> Vec<String> {
        let prefix = format!("{rel}/");
        self.files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|n| !n.contains('/'))
            .map(str::to_string)
            .collect()
    }
    fn size(&self, rel: &str) -> Option<u64> {
        self.files.get(rel).map(|(_, s)| *s)
    }
    fn read_control(&self) -> Result<(ControlFile, u64)> {
        let path = self.root.join(CONTROL_PATH);
        let Some((bytes, size)) = self.files.get(CONTROL_PATH) else {
            return Err(Error::NotADataDir { path: self.root.clone(), reason: format!("{CONTROL_PATH} is missing") });
        };
        let control = ControlFile::parse(bytes).map_err(|source| Error::Control { path, source })?;
        Ok((control, *size))
    }
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
fn read_optional(dir: &dyn BackupFiles, name: &str) -> Result<Option<String>> {
    dir.read_optional(name)
        .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
        .map_err(|e| Error::ReadInput { path: dir.root().join(name), source: e })
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
        dir.meta_optional(Path::new(INCOMPLETE_MARKER))
            .map_err(|e| Error::ReadInput { path: path.join(INCOMPLETE_MARKER), source: e })?;
        Self::read_from(path, &dir, opts)
    }

    /// Read what `files` holds (a directory, or a tar backup's captured
    /// files) as [`DirInfo::read_with`] does.
    pub fn read_from(path: &Path, dir: &dyn BackupFiles, opts: ReadOptions) -> Result<(DirInfo, Option<String>)> {
        let incomplete = dir.exists(INCOMPLETE_MARKER);
        let (control, control_size, control_problem) = match dir.read_control() {
            Ok((c, size)) => (c, size, None),
            Err(e) if opts.tolerate_bad_control && is_evidently_backup(dir) => {
                let (c, size, why) = control_placeholder(dir, e)?;
                (c, size, Some(why))
            }
            // An interrupted backup may lack pg_control (copied last): name it
            // for what it is.
            Err(_) if incomplete => return Err(Error::IncompleteBackup { path: path.to_path_buf() }),
            Err(e) => return Err(e),
        };
        let label_path = path.join(BACKUP_LABEL);
        let label = read_optional(dir, BACKUP_LABEL)?
            .map(|t| BackupLabel::parse(&t).map_err(|source| Error::Label { path: label_path.clone(), source }))
            .transpose()?;
        let end_path = path.join(END_LOCATION);
        let end_location = read_optional(dir, END_LOCATION)?
            .map(|t| label::parse_end_location(&t).map_err(|source| Error::Label { path: end_path.clone(), source }))
            .transpose()?;
        let map_path = path.join(TABLESPACE_MAP);
        let escapes = control.version().tablespace_map_escapes;
        let tablespace_map = read_optional(dir, TABLESPACE_MAP)?
            .map(|t| {
                label::parse_tablespace_map(&t, escapes)
                    .map_err(|source| Error::Label { path: map_path.clone(), source })
            })
            .transpose()?;
        let manifest_path = path.join(BACKUP_MANIFEST);
        let manifest = match dir.read_optional(BACKUP_MANIFEST) {
            _ if opts.skip_manifest => None,
            Ok(None) => None,
            Ok(Some(bytes)) => {
                let m = Manifest::parse(&bytes)
                    .map_err(|source| Error::Manifest { path: manifest_path.clone(), source })?;
                let checksum_ok = m.check_checksum(&bytes).is_ok();
                Some(ManifestInfo { manifest: m, checksum_ok, size: bytes.len() as u64 })
            }
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
            Some((_, f)) if !f.is_from_standby() => find_backup_history_stop(dir, f),
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
fn is_evidently_backup(dir: &dyn BackupFiles) -> bool {
    [BACKUP_LABEL, END_LOCATION, BACKUP_MANIFEST].iter().any(|f| dir.exists(f))
}

/// A placeholder pg_control for a backup whose own is unusable (`err`
/// says why), of the major named by `PG_VERSION`; `err` itself when that
/// names no supported major.
fn control_placeholder(dir: &dyn BackupFiles, err: Error) -> Result<(ControlFile, u64, String)> {
    let major = dir
        .read_optional("PG_VERSION")
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse::<u32>().ok());
    let Some(v) = major.and_then(crate::pg::version::by_major) else { return Err(err) };
    let why = match &err {
        Error::Control { source, .. } => source.to_string(),
        Error::NotADataDir { .. } => format!("{CONTROL_PATH} is missing"),
        other => other.to_string(),
    };
    let size = dir.size(CONTROL_PATH).unwrap_or(0);
    Ok((ControlFile::placeholder(v), size, why))
}

fn find_backup_history_stop(dir: &dyn BackupFiles, f: &LabelFields) -> Option<Lsn> {
    for name in dir.names_in("pg_wal") {
        if let Some(WalFileKind::BackupHistory { .. }) = WalFileKind::classify(&name) {
            let text = String::from_utf8(dir.read_optional(&format!("pg_wal/{name}")).ok()??).ok()?;
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
