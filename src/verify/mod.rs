//! `pgdrill verify PATH`: is this backup (or stopped data directory) whole
//! and restorable, without starting a server?
//!
//! PATH is a pgdrill backup (label or legacy method), a plain-format
//! pg_basebackup backup, or a stopped data directory. The checks, in order:
//!
//! 1. the directory: pgdrill's incomplete marker, a stale or missing
//!    manifest;
//! 2. `global/pg_control`: readable, size, CRC, sane sizes
//!    (`src/include/catalog/pg_control.h`);
//! 3. `backup_label` against pg_control, as `read_backup_label()` and
//!    `StartupXLOG()` in `xlogrecovery.c` / `xlog.c` check it at restore, plus
//!    the evidence of a pg_control copied too early that PostgreSQL cannot
//!    see (see [`pages`]);
//! 4. legacy backups: `end_location` against pg_control;
//! 5. `tablespace_map` against `pg_tblspc`;
//! 6. `backup_manifest` and the files on disk, as pg_verifybackup does
//!    ([`files`]), in parallel, with the page LSNs and data checksums in the
//!    same pass;
//! 7. the WAL from the start to the end point ([`wal`]).
//!
//! A pg_control that cannot be read or fails its CRC sizes no work: its
//! values are not compared, and the checks that need them (page LSNs and
//! checksums, the WAL walk) are skipped and say so.
//!
//! Everything found is a [`Finding`] in the returned [`VerifyReport`];
//! nothing here prints. `Err` is kept for a PATH that is not a backup or
//! cannot be read at all (exit 2), and for an interrupt (exit 3).
//! docs/verify.md is the user reference.

pub mod files;
pub mod finding;
pub mod pages;
pub mod wal;

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

pub use finding::{Finding, FindingKind, Findings, Severity};

use crate::datadir::{
    self, DirInfo, DirKind, ManifestSummary, ReadOptions, BACKUP_LABEL, BACKUP_MANIFEST, CONTROL_PATH, END_LOCATION,
};
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::pg::control::{DbState, CONTROL_FILE_SIZE};
use crate::pg::history::TimelineSpan;
use crate::pg::manifest::{ManifestError, ManifestHead, ManifestIndex};
use crate::pg::wal::{SegmentName, WalkConfig};
use crate::pg::{Lsn, TimelineId};
use crate::source::{self, BackupSource, CommandWal, DirWal, WalSource};
use files::FileStats;

/// A validated verify request.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub path: PathBuf,
    /// A WAL archive directory (files plain or compressed), searched first.
    pub wal_archive: Option<PathBuf>,
    /// A fetch command with PostgreSQL's `%f`/`%p` contract, asked after
    /// the archive directory and before the backup's `pg_wal`.
    pub restore_command: Option<String>,
    pub no_wal: bool,
    pub jobs: usize,
    /// Accept a backup without the backup_manifest it should have.
    pub allow_missing_manifest: bool,
    /// How to reach object storage for `s3://` locations.
    pub s3: crate::objstore::S3Config,
}

/// The result of `verify`; its JSON form is documented in docs/verify.md.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// No finding of severity error.
    pub ok: bool,
    pub path: PathBuf,
    pub kind: DirKind,
    /// `label`, `legacy`, or null for a data directory.
    pub backup_method: Option<&'static str>,
    /// `standby`, `primary` (or the label's text), or null without a label.
    pub backup_from: Option<String>,
    pub pg_major: u32,
    pub system_identifier: String,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
    /// Findings counted but not listed (at most 1000 of a kind are).
    pub findings_omitted: u64,
    pub checked: Checked,
    /// What became of the backup_manifest.
    pub manifest_status: ManifestStatus,
    pub manifest: Option<ManifestSummary>,
    pub page_lsn: PageLsnSummary,
    pub page_checksums: PageChecksumSummary,
    pub wal: WalSummary,
    pub seconds: f64,
}

/// How much was looked at.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Checked {
    /// Regular files on disk (paths pg_verifybackup ignores left out).
    pub files: u64,
    /// Files read for a checksum or a page scan.
    pub files_read: u64,
    /// Bytes of those files read.
    pub bytes: u64,
    /// Files whose manifest checksum was compared.
    pub checksums: u64,
    pub relation_files: u64,
    pub relation_pages: u64,
    /// Relation pages whose data checksum was verified.
    pub page_checksums: u64,
    /// Pages whose checksum was not verified by the torn-page rule.
    pub torn_pages: u64,
    pub history_files: u64,
    pub segments: u64,
    pub wal_pages: u64,
    pub wal_records: u64,
    pub wal_bytes: u64,
}

/// The page-LSN check: which bound, from where.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageLsnSummary {
    /// No relation page may carry an LSN above this.
    pub bound: Option<Lsn>,
    /// `min_recovery_point`, `backup_end`, `end_location` or `checkpoint`.
    pub source: Option<&'static str>,
    /// Why the check did not run, when it did not.
    pub skipped: Option<String>,
}

/// What became of the backup_manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestStatus {
    /// Read and applied to the files.
    Applied,
    /// None, and none expected (a data directory, or a backup from before
    /// PostgreSQL wrote manifests).
    None,
    /// None, but one is expected (`manifest_missing`).
    Missing,
    /// None, accepted with `--allow-missing-manifest`.
    MissingAllowed,
    /// Present but unusable (`manifest_invalid`); not applied.
    Invalid,
    /// Left over in a data directory from the backup that made it
    /// (`manifest_stale`); not applied.
    Stale,
}

/// The data checksum check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageChecksumSummary {
    /// Whether page checksums were verified.
    pub checked: bool,
    /// Why not, when they were not.
    pub skipped: Option<String>,
    /// Pages at or after this LSN may be torn and are not checked.
    pub torn_from: Option<Lsn>,
}

/// The WAL walk.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalSummary {
    /// Whether the walk verified at least one record.
    pub checked: bool,
    /// Why it did not, when it did not.
    pub skipped: Option<String>,
    pub archive: Option<PathBuf>,
    /// `--restore-command`, when WAL was fetched through one.
    pub restore_command: Option<String>,
    /// The backup's start (the redo point for a data directory).
    pub start: Option<Lsn>,
    /// The point a valid chain must reach.
    pub end: Option<Lsn>,
    /// End of the last record verified.
    pub reached: Option<Lsn>,
    pub start_timeline: Option<TimelineId>,
    pub end_timeline: Option<TimelineId>,
    /// The timeline path followed, oldest first.
    pub timelines: Vec<TimelineSpan>,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
}

impl VerifyReport {
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
    }
}

/// What was read of the directory.
struct Subject {
    info: DirInfo,
    /// Why pg_control could not be decoded, when it could not.
    control_problem: Option<String>,
    /// pg_control was decoded and its CRC holds: its values may be used.
    control_trusted: bool,
    manifest: ManifestRead,
}

/// The backup_manifest as read.
enum ManifestRead {
    Absent,
    Invalid(ManifestError),
    Parsed { head: ManifestHead, index: ManifestIndex },
}

impl Subject {
    fn manifest(&self) -> Option<(&ManifestHead, &ManifestIndex)> {
        match &self.manifest {
            ManifestRead::Parsed { head, index } => Some((head, index)),
            _ => None,
        }
    }

    /// The manifest's WAL ranges, newest first; none from a stale manifest.
    fn wal_ranges(&self) -> &[crate::pg::manifest::WalRange] {
        match self.manifest() {
            Some((h, _)) if !manifest_is_stale(self) => &h.wal_ranges,
            _ => &[],
        }
    }

    /// The timeline the end point lies on: the manifest's newest range,
    /// else what the directory says.
    fn end_timeline(&self) -> TimelineId {
        self.wal_ranges().first().map_or_else(|| self.info.end_timeline(), |r| r.timeline)
    }
}

/// Verify a backup: a directory, or a tar backup read as a stream.
pub fn run(cfg: &VerifyConfig) -> Result<VerifyReport> {
    let started = Instant::now();
    check_archive_option(cfg)?;
    if let Some(s3) = source::s3_backup(&cfg.path, &cfg.s3)? {
        return run_stream(cfg, &s3, started);
    }
    if let Some(tar) = source::TarBackup::detect(&cfg.path).map_err(|e| crate::source::read_error(&cfg.path, e))? {
        return run_stream(cfg, &tar, started);
    }
    let subject = read_subject(cfg)?;
    let status = manifest_status(cfg, &subject);

    let mut findings = check_subject(&subject, status);
    findings.extend(files::check_tablespaces(&subject.info.path, subject.info.tablespace_map.as_deref()));

    let page_lsn = page_bound(&subject);
    let (page_checksums, checksum_rule) = checksum_plan(&subject);
    let applied = (status == ManifestStatus::Applied).then(|| subject.manifest().map(|(_, i)| i)).flatten();
    let fstats = files::check(
        &files::FileCheck {
            root: &subject.info.path,
            manifest: applied,
            page_bound: page_lsn.bound,
            checksums: checksum_rule,
            block_size: subject.info.control.block_size,
            jobs: cfg.jobs.max(1),
        },
        &mut findings,
    )?;
    let mut checked = Checked {
        files: fstats.files,
        files_read: fstats.files_read,
        bytes: fstats.bytes,
        checksums: fstats.checksums,
        relation_files: fstats.relation_files,
        relation_pages: fstats.relation_pages,
        page_checksums: fstats.page_checksums,
        torn_pages: fstats.torn_pages,
        ..Checked::default()
    };
    let wal = check_wal(cfg, &subject, None, &mut findings, &mut checked)?;
    Ok(report(subject, findings, checked, status, page_lsn, page_checksums, wal, started))
}

/// Verify a backup that can only be read in one pass (a tar backup, in any
/// compression): the manifest first (it is stored beside the archives),
/// then every entry once, with the file checks done as it goes and the
/// page checks judged once pg_control (sent last) is known; then the
/// checks of the directory's own files, then the WAL (its own `pg_wal.tar`
/// after the archive).
fn run_stream(cfg: &VerifyConfig, src: &dyn BackupSource, started: Instant) -> Result<VerifyReport> {
    let manifest = read_manifest_from(src)?;
    let index = match &manifest {
        ManifestRead::Parsed { index, .. } => Some(index),
        _ => None,
    };
    let floor = match &manifest {
        ManifestRead::Parsed { head, .. } => head.wal_ranges.iter().map(|r| r.start).min().unwrap_or(Lsn(0)),
        _ => Lsn(0),
    };
    let mut streamed = files::check_stream(&files::StreamCheck { manifest: index, floor }, src)?;
    let opts = ReadOptions { skip_manifest: true, tolerate_bad_control: true };
    streamed.captured.root = cfg.path.clone();
    if !matches!(manifest, ManifestRead::Absent) {
        // The manifest beside the archives says this is a backup: one whose
        // stream broke before pg_control (last in base.tar) is damaged
        // (exit 1), not "not a backup".
        streamed.captured.seen.insert(crate::datadir::BACKUP_MANIFEST.to_string());
    }
    let (info, control_problem) = DirInfo::read_from(&cfg.path, &streamed.captured, opts)?;
    let control_trusted = control_problem.is_none() && info.control.crc_ok;
    let subject = Subject { info, control_problem, control_trusted, manifest };
    let status = manifest_status(cfg, &subject);
    // What the manifest says of files only applies when it is applied.
    if status != ManifestStatus::Applied {
        streamed.findings = drop_manifest_findings(std::mem::take(&mut streamed.findings));
    }

    let mut findings = check_subject(&subject, status);
    findings.extend(tar_tablespaces(&streamed, &subject));
    let mut stats = streamed.stats;
    let (page_lsn, page_checksums, page_findings) = judge_pages(&subject, &streamed, &mut stats);
    let mut all = streamed.findings;
    all.append(page_findings);
    all.sort_by_path();
    findings.append(all);
    let mut checked = Checked {
        files: stats.files,
        files_read: stats.files_read,
        bytes: stats.bytes,
        checksums: stats.checksums,
        relation_files: stats.relation_files,
        relation_pages: stats.relation_pages,
        page_checksums: stats.page_checksums,
        torn_pages: stats.torn_pages,
        ..Checked::default()
    };
    let wal = check_wal(cfg, &subject, src.wal(), &mut findings, &mut checked)?;
    Ok(report(subject, findings, checked, status, page_lsn, page_checksums, wal, started))
}

/// The checks of what the backup says of itself: its directory, pg_control,
/// backup_label, end_location and manifest.
fn check_subject(subject: &Subject, status: ManifestStatus) -> Findings {
    let mut findings = Findings::new();
    check_directory(subject, status, &mut findings);
    check_control(subject, &mut findings);
    check_label(subject, &mut findings);
    check_legacy(subject, &mut findings);
    check_manifest(subject, status, &mut findings);
    findings
}

/// A tar backup's pg_tblspc entries against its tablespace_map. A link in a
/// tar cannot be followed: its target is taken to exist.
fn tar_tablespaces(streamed: &files::StreamOutcome, subject: &Subject) -> Vec<Finding> {
    let ts: Vec<files::TablespaceEntryOnDisk> = streamed
        .tablespaces
        .iter()
        .map(|(name, link, to)| files::TablespaceEntryOnDisk {
            name: name.clone(),
            is_link: *link,
            exists: true,
            target: to.clone(),
        })
        .collect();
    files::tablespaces_against_map(&ts, subject.info.tablespace_map.as_deref())
}

/// Judge the pages the stream kept for later, now that pg_control (the
/// LSN bound) and the backup's start (the torn-page floor) are known.
fn judge_pages(
    subject: &Subject,
    streamed: &files::StreamOutcome,
    stats: &mut FileStats,
) -> (PageLsnSummary, PageChecksumSummary, Findings) {
    let page_lsn = page_bound(subject);
    let (mut page_checksums, checksum_rule) = checksum_plan(subject);
    let block_ok = subject.info.control.block_size == pages::ASSUMED_BLOCK_SIZE
        && subject.info.control.blocks_per_segment == pages::ASSUMED_BLOCKS_PER_SEGMENT;
    let mut page_findings = Findings::new();
    if block_ok {
        let torn_from = checksum_rule.map(|r| r.torn_from);
        if torn_from.is_some_and(|t| t != streamed.floor) {
            page_checksums = PageChecksumSummary {
                skipped: Some(
                    "the backup's start was not known before its files were read (no manifest, and \
                               backup_label after the files)"
                        .into(),
                ),
                ..PageChecksumSummary::default()
            };
        }
        let torn_from = torn_from.filter(|t| *t == streamed.floor);
        let (pages, checksummed, torn) = streamed.plain_pages;
        stats.relation_pages += pages;
        if torn_from.is_some() {
            stats.page_checksums += checksummed;
            stats.torn_pages += torn;
        }
        for d in &streamed.deferred {
            let bound = page_lsn.bound.filter(|_| !streamed.unlogged.contains(&d.path));
            let scan = d.scan.evaluate(bound, torn_from);
            let mut one = FileStats::default();
            files::report_pages(&scan, &d.path, &mut one, &mut page_findings);
            stats.relation_pages += one.relation_pages;
            stats.page_checksums += one.page_checksums;
            stats.torn_pages += one.torn_pages;
        }
    } else if page_lsn.bound.is_some() || checksum_rule.is_some() {
        // The scan assumed 8 kB blocks and 1 GB segments.
        page_checksums = PageChecksumSummary {
            skipped: Some("a tar backup of a cluster with a block or segment size other than the default".into()),
            ..PageChecksumSummary::default()
        };
    }
    let page_lsn = if block_ok || page_lsn.bound.is_none() {
        page_lsn
    } else {
        PageLsnSummary {
            skipped: Some("a tar backup of a cluster with a block or segment size other than the default".into()),
            ..PageLsnSummary::default()
        }
    };
    (page_lsn, page_checksums, page_findings)
}

/// The findings of a file check without those that compare with the
/// manifest (for a manifest that is not applied).
fn drop_manifest_findings(f: Findings) -> Findings {
    let (list, _) = f.finish();
    let mut out = Findings::new();
    for x in list {
        if !matches!(
            x.kind,
            FindingKind::FileMissing | FindingKind::FileExtra | FindingKind::FileSize | FindingKind::FileChecksum
        ) {
            out.push(x);
        }
    }
    out
}

fn read_manifest_from(src: &dyn BackupSource) -> Result<ManifestRead> {
    let path = PathBuf::from(src.describe()).with_file_name(BACKUP_MANIFEST);
    let Some((reader, size)) = src.open_manifest().map_err(|e| crate::source::read_error(&path, e))? else {
        return Ok(ManifestRead::Absent);
    };
    match ManifestIndex::read(reader, size, &crate::signals::interrupted) {
        Ok((head, index)) => Ok(ManifestRead::Parsed { head, index }),
        Err(ManifestError::Interrupted) => Err(Error::Interrupted),
        Err(e) => Ok(ManifestRead::Invalid(e)),
    }
}

fn check_archive_option(cfg: &VerifyConfig) -> Result<()> {
    if let Some(a) = cfg.wal_archive.as_ref().filter(|a| !a.to_str().is_some_and(crate::objstore::is_s3)) {
        let meta = fs::metadata(a).map_err(|e| Error::ReadInput { path: a.clone(), source: e })?;
        if !meta.is_dir() {
            return Err(Error::usage(
                format!("{}: the WAL archive is not a directory", a.display()),
                Some("pass --wal-archive DIR, the directory archive_command copies segments into".to_string()),
            ));
        }
    }
    Ok(())
}

/// Read the directory: pg_control (tolerating a damaged one in a backup),
/// the label files, and the manifest into a packed index.
fn read_subject(cfg: &VerifyConfig) -> Result<Subject> {
    let opts = ReadOptions { skip_manifest: true, tolerate_bad_control: true };
    let (info, control_problem) = DirInfo::read_with(&cfg.path, opts)?;
    if info.kind == DirKind::DataDirectory {
        if let Some(pid) = datadir::running_postmaster(&cfg.path) {
            return Err(Error::PostmasterRunning { path: cfg.path.clone(), pid });
        }
    }
    let manifest = read_manifest(&info)?;
    let control_trusted = control_problem.is_none() && info.control.crc_ok;
    Ok(Subject { info, control_problem, control_trusted, manifest })
}

fn read_manifest(info: &DirInfo) -> Result<ManifestRead> {
    let path = info.path.join(BACKUP_MANIFEST);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ManifestRead::Absent),
        Err(e) => return Err(Error::ReadInput { path, source: e }),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    match ManifestIndex::read(file, size, &crate::signals::interrupted) {
        Ok((head, index)) => Ok(ManifestRead::Parsed { head, index }),
        Err(ManifestError::Interrupted) => Err(Error::Interrupted),
        Err(e) => Ok(ManifestRead::Invalid(e)),
    }
}

/// A data directory's manifest left over from the pg_basebackup that made
/// it: the server has run since (its label was renamed `backup_label.old`
/// at startup, or its checkpoints moved past the manifest's WAL), so the
/// files have changed and the manifest no longer describes them.
fn manifest_is_stale(s: &Subject) -> bool {
    let Some((head, index)) = s.manifest() else { return false };
    if s.info.kind != DirKind::DataDirectory {
        return false;
    }
    let label_renamed = index.find(BACKUP_LABEL.as_bytes()).is_some() && s.info.path.join("backup_label.old").is_file();
    let wal_end = head.wal_ranges.iter().map(|r| r.end).max();
    let moved_on = s.control_trusted && wal_end.is_some_and(|end| s.info.control.redo_lsn > end);
    label_renamed || moved_on
}

fn manifest_status(cfg: &VerifyConfig, s: &Subject) -> ManifestStatus {
    match &s.manifest {
        ManifestRead::Invalid(_) => ManifestStatus::Invalid,
        ManifestRead::Parsed { .. } if manifest_is_stale(s) => ManifestStatus::Stale,
        ManifestRead::Parsed { .. } => ManifestStatus::Applied,
        ManifestRead::Absent => {
            // pgdrill writes a manifest with every backup (and end_location
            // with every backup), pg_basebackup from 13 on.
            let expected = match s.info.kind {
                DirKind::DataDirectory => false,
                DirKind::LegacyBackup => true,
                DirKind::LabelBackup => {
                    s.info.end_location.is_some() || s.info.control.version().basebackup_writes_manifest
                }
            };
            match (expected, cfg.allow_missing_manifest) {
                (false, _) => ManifestStatus::None,
                (true, true) => ManifestStatus::MissingAllowed,
                (true, false) => ManifestStatus::Missing,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    subject: Subject,
    findings: Findings,
    checked: Checked,
    status: ManifestStatus,
    page_lsn: PageLsnSummary,
    page_checksums: PageChecksumSummary,
    wal: WalSummary,
    started: Instant,
) -> VerifyReport {
    let (errors, warnings) = findings.counts();
    let (findings, findings_omitted) = findings.finish();
    let manifest = subject.manifest().map(|(head, index)| {
        ManifestSummary::new(
            head.version,
            head.system_identifier,
            index.iter().map(|f| (f.size, f.checksum.map(|(a, _)| a))),
            &head.wal_ranges,
            head.checksum_ok(),
        )
    });
    let info = subject.info;
    VerifyReport {
        ok: errors == 0,
        path: info.path.clone(),
        kind: info.kind,
        backup_method: match info.kind {
            DirKind::LabelBackup => Some("label"),
            DirKind::LegacyBackup => Some("legacy"),
            DirKind::DataDirectory => None,
        },
        backup_from: info.label_fields().map(|f| datadir::backup_from_text(f).to_string()),
        pg_major: info.control.pg_major,
        system_identifier: info.control.system_identifier.to_string(),
        errors: errors as usize,
        warnings: warnings as usize,
        findings,
        findings_omitted,
        checked,
        manifest_status: status,
        manifest,
        page_lsn,
        page_checksums,
        wal,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn check_directory(s: &Subject, status: ManifestStatus, out: &mut Findings) {
    let info = &s.info;
    if info.incomplete {
        out.push(
            Finding::new(
                FindingKind::IncompleteBackup,
                "pgdrill was interrupted while writing this backup; it must not be used",
            )
            .at(datadir::INCOMPLETE_MARKER),
        );
    }
    match status {
        ManifestStatus::Missing => out.push(
            Finding::new(
                FindingKind::ManifestMissing,
                "this backup should have a backup_manifest (pgdrill and pg_basebackup 13+ write one), but it is \
                 missing: its files cannot be checked; pass --allow-missing-manifest if it was made without one",
            )
            .at(BACKUP_MANIFEST),
        ),
        ManifestStatus::Stale => out.push(
            Finding::new(
                FindingKind::ManifestStale,
                "the backup_manifest is left over from the backup that made this data directory, which has run \
                 since; it no longer describes the files and was not applied",
            )
            .at(BACKUP_MANIFEST),
        ),
        _ => {}
    }
    if info.kind != DirKind::DataDirectory {
        return;
    }
    if status == ManifestStatus::Applied {
        out.push(
            Finding::new(
                FindingKind::NoEndPoint,
                "a backup_manifest but neither backup_label nor end_location: where this backup's WAL must \
                 reach is unknown, and a restore could be declared consistent too early",
            )
            .at(BACKUP_LABEL),
        );
    }
    if s.control_trusted && !matches!(info.control.state, DbState::ShutDown | DbState::ShutDownInRecovery) {
        out.push(
            Finding::new(
                FindingKind::DataDirectoryNotShutDown,
                format!(
                    "the cluster state is \"{}\": recovery will replay pg_wal to its end, but only the WAL up \
                     to the last checkpoint and minimum recovery point was checked",
                    info.control.state.as_text()
                ),
            )
            .at(CONTROL_PATH),
        );
    }
}

fn check_control(s: &Subject, out: &mut Findings) {
    let info = &s.info;
    let c = &info.control;
    if info.control_size != CONTROL_FILE_SIZE as u64 {
        out.push(
            Finding::new(
                FindingKind::ControlSize,
                format!("{} bytes, expected {CONTROL_FILE_SIZE} (PG_CONTROL_FILE_SIZE)", info.control_size),
            )
            .at(CONTROL_PATH),
        );
    }
    if let Some(why) = &s.control_problem {
        out.push(
            Finding::new(
                FindingKind::ControlUnreadable,
                format!("{why}: the checks that need pg_control (page LSNs and checksums, the WAL) were skipped"),
            )
            .at(CONTROL_PATH),
        );
        return;
    }
    if !c.crc_ok {
        out.push(
            Finding::new(
                FindingKind::ControlCrc,
                format!(
                    "CRC mismatch: stored {:08X}, computed {:08X}; the server would refuse to start, and no value \
                     in it was trusted",
                    c.crc_stored, c.crc_computed
                ),
            )
            .at(CONTROL_PATH),
        );
        return;
    }
    for p in c.sanity_problems() {
        out.push(Finding::new(FindingKind::ControlInsane, p).at(CONTROL_PATH));
    }
}

fn check_label(s: &Subject, out: &mut Findings) {
    let info = &s.info;
    let Some(f) = info.label_fields() else { return };
    let c = &info.control;
    let start = f.start_wal_location;
    if let Some(t) = f.start_timeline {
        if t != f.start_file_timeline {
            out.push(
                Finding::new(
                    FindingKind::LabelTimelineMismatch,
                    format!(
                        "START TIMELINE is {t}, but the start WAL file {} is on timeline {}; recovery refuses this \
                         label",
                        f.start_wal_file, f.start_file_timeline
                    ),
                )
                .at(BACKUP_LABEL),
            );
        }
    }
    if f.checkpoint_location < start {
        out.push(
            Finding::new(
                FindingKind::LabelCheckpointBeforeStart,
                format!("CHECKPOINT LOCATION {} is before START WAL LOCATION {start}", f.checkpoint_location),
            )
            .at(BACKUP_LABEL)
            .lsn(f.checkpoint_location),
        );
    }
    // What follows compares the label with pg_control's values.
    if !s.control_trusted {
        return;
    }
    if let Some(seg) = info.seg_size() {
        let holds = SegmentName::parse(&f.start_wal_file, seg).is_ok_and(|n| n.segno == start.segment_number(seg));
        if !holds {
            out.push(
                Finding::new(
                    FindingKind::LabelStartFileMismatch,
                    format!("the start WAL file {} does not hold START WAL LOCATION {start}", f.start_wal_file),
                )
                .at(BACKUP_LABEL)
                .lsn(start),
            );
        }
    }
    if f.is_from_standby() {
        check_standby_label(c, start, out);
    }
    if c.redo_lsn < start {
        out.push(
            Finding::new(
                FindingKind::ControlCopiedEarly,
                format!(
                    "pg_control's checkpoint redo point {} is before the backup's start {start}: pg_control was \
                     copied before the backup started, not last",
                    c.redo_lsn
                ),
            )
            .at(CONTROL_PATH)
            .lsn(c.redo_lsn),
        );
    }
}

fn check_standby_label(c: &crate::pg::control::ControlFile, start: Lsn, out: &mut Findings) {
    if !c.state.is_standby() {
        out.push(
            Finding::new(
                FindingKind::LabelStandbyState,
                format!(
                    "BACKUP FROM: standby, but pg_control's state is \"{}\", not \"in archive recovery\" or \
                     \"shut down in recovery\"; recovery refuses this backup",
                    c.state.as_text()
                ),
            )
            .at(CONTROL_PATH),
        );
    }
    if c.min_recovery_lsn < start {
        out.push(
            Finding::new(
                FindingKind::LabelMinRecoveryBeforeStart,
                format!(
                    "pg_control's minRecoveryPoint {} is before the backup's start {start}: pg_control was \
                     copied too early, and recovery would end the backup before it is consistent",
                    c.min_recovery_lsn
                ),
            )
            .at(CONTROL_PATH)
            .lsn(c.min_recovery_lsn),
        );
    }
}

fn check_legacy(s: &Subject, out: &mut Findings) {
    let info = &s.info;
    if info.kind != DirKind::LegacyBackup || !s.control_trusted {
        return;
    }
    let c = &info.control;
    if let Some(end) = info.end_location {
        if end < c.redo_lsn {
            out.push(
                Finding::new(
                    FindingKind::LegacyEndBeforeRedo,
                    format!("end_location {end} is before pg_control's redo point {}", c.redo_lsn),
                )
                .at(END_LOCATION)
                .lsn(end),
            );
        }
    }
    if !c.state.is_standby() {
        out.push(
            Finding::new(
                FindingKind::LegacyNotStandby,
                format!(
                    "a legacy backup's pg_control must come from a standby, but its state is \"{}\"",
                    c.state.as_text()
                ),
            )
            .at(CONTROL_PATH),
        );
    }
}

fn check_manifest(s: &Subject, status: ManifestStatus, out: &mut Findings) {
    let info = &s.info;
    if let ManifestRead::Invalid(e) = &s.manifest {
        out.push(
            Finding::new(
                FindingKind::ManifestInvalid,
                format!("{e}; the files were not compared with it, as pg_verifybackup refuses it too"),
            )
            .at(BACKUP_MANIFEST),
        );
        return;
    }
    let Some((head, index)) = s.manifest() else { return };
    if status != ManifestStatus::Applied {
        return;
    }
    if !head.checksum_ok() {
        out.push(
            Finding::new(
                FindingKind::ManifestChecksum,
                format!(
                    "the manifest's own checksum does not match: stored {}, computed {}; the manifest was \
                     changed or damaged",
                    head.manifest_checksum, head.computed_checksum
                ),
            )
            .at(BACKUP_MANIFEST),
        );
    }
    check_manifest_checksums(index, out);
    if let Some(sysid) = head.system_identifier.filter(|_| s.control_trusted) {
        if sysid != info.control.system_identifier {
            out.push(
                Finding::new(
                    FindingKind::ManifestSystemIdentifier,
                    format!(
                        "the manifest's system identifier is {sysid}, but pg_control's is {}",
                        info.control.system_identifier
                    ),
                )
                .at(BACKUP_MANIFEST),
            );
        }
    }
    check_manifest_wal_range(s, out);
}

/// PostgreSQL gives every file of a manifest the same checksum algorithm.
/// A file without one among files with one had it removed: its contents
/// would go unchecked.
fn check_manifest_checksums(index: &ManifestIndex, out: &mut Findings) {
    let (used, without) = index.checksum_use();
    if without > 0 && !used.is_empty() {
        let used: Vec<String> = used.iter().map(|(a, n)| format!("{n} use {}", a.name())).collect();
        out.push(
            Finding::new(
                FindingKind::ManifestInvalid,
                format!(
                    "{without} files have no checksum while {}: PostgreSQL writes one algorithm for all, so a \
                     checksum was removed and those files cannot be verified",
                    used.join(", ")
                ),
            )
            .at(BACKUP_MANIFEST),
        );
    }
}

fn check_manifest_wal_range(s: &Subject, out: &mut Findings) {
    let info = &s.info;
    if info.kind == DirKind::DataDirectory || (info.label.is_none() && !s.control_trusted) {
        return;
    }
    // Ranges are written newest timeline first; the last starts where the
    // backup does.
    let Some(oldest) = s.wal_ranges().last() else { return };
    let (start, tli) = info.start();
    if oldest.start != start || oldest.timeline != tli {
        out.push(
            Finding::new(
                FindingKind::ManifestWalRange,
                format!(
                    "the manifest's WAL starts at {} on timeline {}, but the backup starts at {start} on timeline \
                     {tli}",
                    oldest.start, oldest.timeline
                ),
            )
            .at(BACKUP_MANIFEST)
            .lsn(oldest.start),
        );
    }
}

/// The newest end any of the directory's files gives.
fn backup_end(s: &Subject) -> Option<Lsn> {
    let info = &s.info;
    let ranges = s.wal_ranges().iter().map(|r| r.end).max();
    let label_end = if s.control_trusted { [info.gate_target(), info.end_lsn()] } else { [info.end_location, None] };
    label_end.into_iter().chain([ranges]).flatten().max()
}

/// Why pg_control's values cannot size work, if they cannot.
fn untrusted_control(s: &Subject) -> Option<String> {
    if let Some(why) = &s.control_problem {
        return Some(format!("pg_control cannot be read ({why})"));
    }
    (!s.control_trusted).then(|| "pg_control fails its CRC, so none of its values is trusted".to_string())
}

fn block_size_ok(b: u32) -> bool {
    b.is_power_of_two() && (1024..=32768).contains(&b)
}

/// The highest LSN a relation page may carry, and where it comes from.
fn page_bound(s: &Subject) -> PageLsnSummary {
    let info = &s.info;
    let c = &info.control;
    let skip = |why: &str| PageLsnSummary { skipped: Some(why.to_string()), ..PageLsnSummary::default() };
    let bound = |lsn: Lsn, source| PageLsnSummary { bound: Some(lsn), source: Some(source), skipped: None };
    if let Some(why) = untrusted_control(s) {
        return skip(&why);
    }
    if !block_size_ok(c.block_size) {
        return skip("pg_control's block size is not a valid one");
    }
    match info.kind {
        // The backup's own pg_control, copied last, is what recovery ends the
        // backup at (backupEndPoint); a later stop LSN would hide exactly the
        // pages that make an early copy unsafe.
        DirKind::LabelBackup if info.label_fields().is_some_and(|f| f.is_from_standby()) => {
            if c.min_recovery_lsn.is_valid() {
                bound(c.min_recovery_lsn, "min_recovery_point")
            } else {
                skip("pg_control has no minRecoveryPoint")
            }
        }
        // From a primary, pages may change until the stop point.
        DirKind::LabelBackup => match backup_end(s) {
            Some(end) => bound(end, "backup_end"),
            None => skip("the backup's end point is unknown"),
        },
        // pg_control was copied first: only the end recorded last bounds the pages.
        DirKind::LegacyBackup => match info.end_location {
            Some(end) => bound(end, "end_location"),
            None => skip("no end_location"),
        },
        DirKind::DataDirectory => match c.state {
            DbState::ShutDown => bound(c.checkpoint_lsn, "checkpoint"),
            DbState::ShutDownInRecovery | DbState::InArchiveRecovery => {
                bound(c.min_recovery_lsn.max(c.checkpoint_lsn), "min_recovery_point")
            }
            _ => skip("the data directory was not shut down cleanly, so its pages may be ahead of pg_control"),
        },
    }
}

/// Whether and how to verify data page checksums.
fn checksum_plan(s: &Subject) -> (PageChecksumSummary, Option<files::ChecksumRule>) {
    let c = &s.info.control;
    let skip = |why: String| (PageChecksumSummary { skipped: Some(why), ..PageChecksumSummary::default() }, None);
    if let Some(why) = untrusted_control(s) {
        return skip(why);
    }
    if c.data_checksum_version == 0 {
        return skip("the cluster has no data checksums".into());
    }
    if !block_size_ok(c.block_size) || c.blocks_per_segment == 0 {
        return skip("pg_control's block or segment size is not a valid one".into());
    }
    let torn_from = s.info.start().0;
    let rule = files::ChecksumRule { torn_from, blocks_per_segment: c.blocks_per_segment };
    (PageChecksumSummary { checked: true, skipped: None, torn_from: Some(torn_from) }, Some(rule))
}

/// The walk's settings, from a trusted pg_control; `Err` says why there are
/// none.
fn walk_config(s: &Subject) -> std::result::Result<WalkConfig, String> {
    let c = &s.info.control;
    if let Some(why) = untrusted_control(s) {
        return Err(why);
    }
    let seg_size = s.info.seg_size().ok_or("pg_control has no valid WAL segment size")?;
    let page_size = c.wal_block_size;
    if !(page_size.is_power_of_two() && (1024..=65536).contains(&page_size)) {
        return Err("pg_control has no valid WAL block size".into());
    }
    let v = c.version();
    Ok(WalkConfig {
        magic: v.wal_page_magic,
        seg_size,
        page_size,
        system_identifier: Some(c.system_identifier),
        rules: v.wal_records,
        block_size: c.block_size,
    })
}

/// Where a valid chain must reach, and the record that must itself be read
/// (a data directory's checkpoint record); `Err` says why it is unknown.
fn wal_end(s: &Subject, out: &mut Findings) -> std::result::Result<(Lsn, Option<Lsn>), String> {
    let c = &s.info.control;
    match s.info.kind {
        DirKind::DataDirectory => Ok((c.checkpoint_lsn.max(c.min_recovery_lsn), Some(c.checkpoint_lsn))),
        _ => match backup_end(s) {
            Some(e) => Ok((e, None)),
            None => {
                out.push(Finding::new(
                    FindingKind::WalEndUnknown,
                    "neither end_location, a .backup file in pg_wal, a minimum recovery point nor a manifest \
                     says where this backup's WAL ends; the WAL was not checked",
                ));
                Err("the end point is unknown".into())
            }
        },
    }
}

/// Where the walk looks WAL up, in order: the archive directory, the
/// fetch command, then the directory's own `pg_wal`.
fn wal_sources(
    cfg: &VerifyConfig,
    dir: &std::path::Path,
    own: Option<Box<dyn WalSource>>,
) -> Result<Vec<Box<dyn WalSource>>> {
    let mut sources: Vec<Box<dyn WalSource>> = Vec::new();
    if let Some(a) = &cfg.wal_archive {
        sources.push(source::wal_archive(a, &cfg.s3)?);
    }
    if let Some(c) = &cfg.restore_command {
        let w = CommandWal::new(c, source::wal::DEFAULT_FETCH_AHEAD)
            .map_err(|e| Error::io(std::env::temp_dir(), "create a directory for fetched WAL", e))?;
        sources.push(Box::new(w));
    }
    sources.push(own.unwrap_or_else(|| Box::new(DirWal::pg_wal(dir))));
    Ok(sources)
}

fn check_wal(
    cfg: &VerifyConfig,
    s: &Subject,
    own_wal: Option<Box<dyn WalSource>>,
    out: &mut Findings,
    checked: &mut Checked,
) -> Result<WalSummary> {
    let info = &s.info;
    let (start, start_tli) = info.start();
    let end_tli = s.end_timeline();
    let mut summary = WalSummary {
        archive: cfg.wal_archive.clone(),
        restore_command: cfg.restore_command.clone(),
        ..WalSummary::default()
    };
    if s.control_trusted || info.label.is_some() {
        summary.start_timeline = Some(start_tli);
        summary.end_timeline = Some(end_tli);
    }
    if cfg.no_wal {
        summary.skipped = Some("--no-wal".into());
        return Ok(summary);
    }
    let walk = match walk_config(s) {
        Ok(w) => w,
        Err(why) => {
            summary.skipped = Some(why);
            return Ok(summary);
        }
    };
    let (end, record_at) = match wal_end(s, out) {
        Ok(e) => e,
        Err(why) => {
            summary.skipped = Some(why);
            return Ok(summary);
        }
    };
    summary.start = Some(start);
    summary.end = Some(end);
    let sources = wal_sources(cfg, &info.path, own_wal)?;
    let outcome = wal::check(&wal::WalCheck {
        sources: &sources,
        start,
        start_tli,
        end,
        record_at,
        end_tli,
        cfg: walk,
        jobs: cfg.jobs.max(1),
    })?;
    // Checked means: at least one record was verified. Otherwise the
    // findings say why (a missing first segment, a missing history file...).
    summary.checked = outcome.reached.is_some();
    if !summary.checked {
        summary.skipped = Some(if outcome.timelines.is_empty() {
            "the timelines between the start and the end are unknown (see the findings)".into()
        } else {
            "no record could be verified (see the findings)".into()
        });
    }
    summary.reached = outcome.reached;
    summary.timelines = outcome.timelines;
    summary.first_segment = outcome.first_segment;
    summary.last_segment = outcome.last_segment;
    checked.segments = outcome.segments;
    checked.history_files = outcome.history_files;
    checked.wal_pages = outcome.stats.pages;
    checked.wal_records = outcome.stats.records;
    checked.wal_bytes = outcome.stats.bytes;
    out.extend(outcome.findings);
    Ok(summary)
}
