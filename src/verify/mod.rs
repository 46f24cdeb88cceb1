//! `pgdrill verify PATH`: is this backup (or stopped data directory) whole
//! and restorable, without starting a server?
//!
//! PATH is a pgdrill backup (label or legacy method), a plain-format
//! pg_basebackup backup, or a stopped data directory. The checks, in order:
//!
//! 1. the directory: pgdrill's incomplete marker;
//! 2. `global/pg_control`: size, CRC, sane sizes (`src/include/catalog/
//!    pg_control.h`);
//! 3. `backup_label` against pg_control, as `read_backup_label()` and
//!    `StartupXLOG()` in `xlogrecovery.c` / `xlog.c` check it at restore, plus
//!    the evidence of a pg_control copied too early that PostgreSQL cannot
//!    see (see [`pages`]);
//! 4. legacy backups: `end_location` against pg_control;
//! 5. `tablespace_map` against `pg_tblspc`;
//! 6. `backup_manifest` and the files on disk, as pg_verifybackup does
//!    ([`files`]), in parallel, with the page-LSN scan in the same pass;
//! 7. the WAL from the start to the end point ([`wal`]).
//!
//! Everything found is a [`Finding`] in the returned [`VerifyReport`];
//! nothing here prints. `Err` is kept for a PATH that is not a backup or
//! cannot be read at all (exit 2). docs/verify.md is the user reference.

pub mod files;
pub mod finding;
pub mod pages;
pub mod wal;

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

pub use finding::{Finding, FindingKind, Severity};

use crate::datadir::{
    self, DirInfo, DirKind, ManifestInfo, ManifestSummary, BACKUP_LABEL, BACKUP_MANIFEST, CONTROL_PATH, END_LOCATION,
};
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::pg::control::{DbState, CONTROL_FILE_SIZE};
use crate::pg::history::TimelineSpan;
use crate::pg::manifest::compute_manifest_checksum;
use crate::pg::wal::{SegmentName, WalkConfig};
use crate::pg::{Lsn, TimelineId};

/// A validated verify request.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub path: PathBuf,
    pub wal_archive: Option<PathBuf>,
    pub no_wal: bool,
    pub jobs: usize,
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
    pub checked: Checked,
    pub manifest: Option<ManifestSummary>,
    pub page_lsn: PageLsnSummary,
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

/// The WAL walk.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalSummary {
    /// Whether the walk ran.
    pub checked: bool,
    /// Why it did not, when it did not.
    pub skipped: Option<String>,
    pub archive: Option<PathBuf>,
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

/// Verify a directory.
pub fn run(cfg: &VerifyConfig) -> Result<VerifyReport> {
    let started = Instant::now();
    if let Some(a) = &cfg.wal_archive {
        let meta = fs::metadata(a).map_err(|e| Error::ReadInput { path: a.clone(), source: e })?;
        if !meta.is_dir() {
            return Err(Error::usage(
                format!("{}: the WAL archive is not a directory", a.display()),
                Some("pass --wal-archive DIR, the directory archive_command copies segments into".to_string()),
            ));
        }
    }
    let info = DirInfo::read(&cfg.path)?;
    if info.kind == DirKind::DataDirectory {
        if let Some(pid) = datadir::running_postmaster(&cfg.path) {
            return Err(Error::PostmasterRunning { path: cfg.path.clone(), pid });
        }
    }

    let mut findings = Vec::new();
    check_directory(&info, &mut findings);
    check_control(&info, &mut findings);
    check_label(&info, &mut findings);
    check_legacy(&info, &mut findings);
    check_manifest(&info, &mut findings);
    findings.extend(files::check_tablespaces(&info.path, info.tablespace_map.as_deref()));

    let page_lsn = page_bound(&info);
    let (file_findings, fstats) = files::check(&files::FileCheck {
        root: &info.path,
        manifest: info.manifest.as_ref().map(|m| &m.manifest),
        page_bound: page_lsn.bound,
        block_size: info.control.block_size,
        jobs: cfg.jobs.max(1),
    })?;
    findings.extend(file_findings);

    let mut checked = Checked {
        files: fstats.files,
        files_read: fstats.files_read,
        bytes: fstats.bytes,
        checksums: fstats.checksums,
        relation_files: fstats.relation_files,
        relation_pages: fstats.relation_pages,
        ..Checked::default()
    };
    let wal = check_wal(cfg, &info, &mut findings, &mut checked)?;

    let errors = findings.iter().filter(|f| f.is_error()).count();
    let warnings = findings.len() - errors;
    Ok(VerifyReport {
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
        errors,
        warnings,
        findings,
        checked,
        manifest: info.manifest.as_ref().map(ManifestInfo::summary),
        page_lsn,
        wal,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_directory(info: &DirInfo, out: &mut Vec<Finding>) {
    if info.incomplete {
        out.push(
            Finding::new(
                FindingKind::IncompleteBackup,
                "pgdrill was interrupted while writing this backup; it must not be used",
            )
            .at(datadir::INCOMPLETE_MARKER),
        );
    }
    if info.kind == DirKind::DataDirectory {
        if info.manifest.is_some() {
            out.push(
                Finding::new(
                    FindingKind::NoEndPoint,
                    "a backup_manifest but neither backup_label nor end_location: where this backup's WAL must \
                     reach is unknown, and a restore could be declared consistent too early",
                )
                .at(BACKUP_LABEL),
            );
        }
        if !matches!(info.control.state, DbState::ShutDown | DbState::ShutDownInRecovery) {
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
}

fn check_control(info: &DirInfo, out: &mut Vec<Finding>) {
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
    if !c.crc_ok {
        out.push(
            Finding::new(
                FindingKind::ControlCrc,
                format!(
                    "CRC mismatch: stored {:08X}, computed {:08X}; the server would refuse to start",
                    c.crc_stored, c.crc_computed
                ),
            )
            .at(CONTROL_PATH),
        );
    }
    for p in c.sanity_problems() {
        out.push(Finding::new(FindingKind::ControlInsane, p).at(CONTROL_PATH));
    }
}

fn check_label(info: &DirInfo, out: &mut Vec<Finding>) {
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
    if f.is_from_standby() {
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

fn check_legacy(info: &DirInfo, out: &mut Vec<Finding>) {
    if info.kind != DirKind::LegacyBackup {
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

fn check_manifest(info: &DirInfo, out: &mut Vec<Finding>) {
    let Some(m) = &info.manifest else { return };
    if !m.checksum_ok {
        let detail = fs::read(info.path.join(BACKUP_MANIFEST))
            .ok()
            .and_then(|b| compute_manifest_checksum(&b).ok())
            .map(|computed| format!(": stored {}, computed {computed}", m.manifest.manifest_checksum))
            .unwrap_or_default();
        out.push(
            Finding::new(
                FindingKind::ManifestChecksum,
                format!("the manifest's own checksum does not match{detail}; the manifest was changed or damaged"),
            )
            .at(BACKUP_MANIFEST),
        );
    }
    if let Some(sysid) = m.manifest.system_identifier {
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
    if info.kind != DirKind::DataDirectory {
        // Ranges are written newest timeline first; the last starts where
        // the backup does.
        if let Some(oldest) = m.manifest.wal_ranges.last() {
            let (start, tli) = info.start();
            if oldest.start != start || oldest.timeline != tli {
                out.push(
                    Finding::new(
                        FindingKind::ManifestWalRange,
                        format!(
                            "the manifest's WAL starts at {} on timeline {}, but the backup starts at {start} on \
                             timeline {tli}",
                            oldest.start, oldest.timeline
                        ),
                    )
                    .at(BACKUP_MANIFEST)
                    .lsn(oldest.start),
                );
            }
        }
    }
}

/// The newest end any of the directory's files gives.
fn backup_end(info: &DirInfo) -> Option<Lsn> {
    let ranges = info.manifest.as_ref().and_then(|m| m.manifest.wal_ranges.iter().map(|r| r.end).max());
    [info.gate_target(), info.end_lsn(), ranges].into_iter().flatten().max()
}

/// The highest LSN a relation page may carry, and where it comes from.
fn page_bound(info: &DirInfo) -> PageLsnSummary {
    let c = &info.control;
    let skip = |why: &str| PageLsnSummary { skipped: Some(why.to_string()), ..PageLsnSummary::default() };
    let bound = |lsn: Lsn, source| PageLsnSummary { bound: Some(lsn), source: Some(source), skipped: None };
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
        DirKind::LabelBackup => match backup_end(info) {
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

fn check_wal(cfg: &VerifyConfig, info: &DirInfo, out: &mut Vec<Finding>, checked: &mut Checked) -> Result<WalSummary> {
    let c = &info.control;
    let (start, start_tli) = info.start();
    let end_tli = info.end_timeline();
    let mut summary = WalSummary {
        archive: cfg.wal_archive.clone(),
        start_timeline: Some(start_tli),
        end_timeline: Some(end_tli),
        ..WalSummary::default()
    };
    if cfg.no_wal {
        summary.skipped = Some("--no-wal".into());
        return Ok(summary);
    }
    let Some(seg_size) = info.seg_size() else {
        summary.skipped = Some("pg_control has no valid WAL segment size".into());
        return Ok(summary);
    };
    let page_size = c.wal_block_size;
    if !(page_size.is_power_of_two() && (1024..=65536).contains(&page_size)) {
        summary.skipped = Some("pg_control has no valid WAL block size".into());
        return Ok(summary);
    }
    // Where a valid chain must reach. A data directory needs its checkpoint
    // record itself, wherever that ends.
    let (end, record_at) = match info.kind {
        DirKind::DataDirectory => (c.checkpoint_lsn.max(c.min_recovery_lsn), Some(c.checkpoint_lsn)),
        _ => match backup_end(info) {
            Some(e) => (e, None),
            None => {
                out.push(Finding::new(
                    FindingKind::WalEndUnknown,
                    "neither end_location, a .backup file in pg_wal, a minimum recovery point nor a manifest \
                     says where this backup's WAL ends; the WAL was not checked",
                ));
                summary.skipped = Some("the end point is unknown".into());
                return Ok(summary);
            }
        },
    };
    summary.start = Some(start);
    summary.end = Some(end);
    let outcome = wal::check(&wal::WalCheck {
        dir: &info.path,
        archive: cfg.wal_archive.as_deref(),
        start,
        start_tli,
        end,
        record_at,
        end_tli,
        cfg: WalkConfig {
            magic: c.version().wal_page_magic,
            seg_size,
            page_size,
            system_identifier: Some(c.system_identifier),
            custom_rmgrs: c.pg_major >= 15,
        },
        jobs: cfg.jobs.max(1),
    })?;
    // The walk ran once the timelines were known, even if it verified no
    // record (a missing first segment); `reached` then stays null.
    summary.checked = !outcome.timelines.is_empty();
    if !summary.checked {
        summary.skipped = Some("the timelines between the start and the end are unknown (see the findings)".into());
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
