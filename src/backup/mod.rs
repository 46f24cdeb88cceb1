//! `pgdrill backup`: a base backup from a hot standby.
//!
//! Two procedures (see docs/user-guide.md):
//!
//! - **label** (PostgreSQL's own since 9.6): in one session call
//!   `pg_backup_start` (`pg_start_backup(label, fast, false)` before 15), copy
//!   the data directory, copy `global/pg_control` **last**, call
//!   `pg_backup_stop(false)`, and write the returned label verbatim. Recovery
//!   then ends the backup at the copied pg_control's minRecoveryPoint, which
//!   is only safe because pg_control was copied after every data page.
//! - **legacy** (9.0's "incrementally updated backup"): no backup functions;
//!   copy `global/pg_control` **first**, then the rest, then record
//!   `pg_last_wal_replay_lsn()` as `end_location`. PostgreSQL alone would call
//!   such a restore consistent too early; the gate holds it until
//!   end_location.
//!
//! Both write `end_location` and a PostgreSQL-format `backup_manifest`. The
//! backup is written into a staging directory beside the destination and
//! renamed into place only when complete.

pub mod preflight;
pub mod walk;

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use postgres::Client;
use serde::Serialize;

use crate::conn::{first_words, query_text, ConnSpec};
use crate::copy::{self, CopyJob, CopyOptions, Throttle};
use crate::datadir::{BACKUP_LABEL, BACKUP_MANIFEST, CONTROL_PATH, END_LOCATION, INCOMPLETE_MARKER, TABLESPACE_MAP};
use crate::error::{Error, Result};
use crate::pg::control::ControlFile;
use crate::pg::history;
use crate::pg::label::{self, BackupLabel};
use crate::pg::manifest::{self, ChecksumAlgorithm, Manifest, ManifestFile, WalRange};
use crate::pg::version::{self, PgVersion};
use crate::pg::wal::{history_file_name, SegmentName};
use crate::pg::{Lsn, TimelineId};
use crate::server::OsUser;

/// Which procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// pg_backup_start/stop, pg_control copied last, backup_label written.
    Label,
    /// No backup functions, pg_control copied first, end_location recorded.
    Legacy,
}

/// A validated backup request.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub standby: ConnSpec,
    pub primary: Option<ConnSpec>,
    pub dest: PathBuf,
    pub pgdata: Option<PathBuf>,
    pub method: Method,
    pub label: String,
    pub fast: bool,
    pub jobs: usize,
    pub max_rate: Option<u64>,
    /// Where the WAL archive is, to check that the end segment arrived.
    pub wal_archive: Option<PathBuf>,
    /// fsync the result (like pg_basebackup without --no-sync).
    pub sync: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Accept a primary as the source (the test ground builds standbys so).
    pub allow_primary: bool,
}

/// What `--primary` did about the end segment reaching the archive.
#[derive(Clone, Debug, Serialize)]
pub struct WalSwitchReport {
    pub end_segment: String,
    pub archived_before: bool,
    pub switched: bool,
    pub archived: bool,
    pub waited_secs: f64,
}

/// The result of a backup; its JSON form is documented in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub dest: PathBuf,
    pub method: Method,
    pub pg_major: u32,
    pub system_identifier: String,
    pub backup_from: String,
    pub start_lsn: Lsn,
    pub start_timeline: TimelineId,
    pub end_lsn: Lsn,
    pub end_timeline: TimelineId,
    /// The copied pg_control's minRecoveryPoint.
    pub control_min_recovery_lsn: Lsn,
    pub files: usize,
    pub bytes: u64,
    pub vanished_files: usize,
    pub excluded_paths: usize,
    pub tablespaces: Vec<u32>,
    pub manifest_version: u32,
    pub wal_ranges: Vec<WalRange>,
    pub wal_switch: Option<WalSwitchReport>,
    pub seconds: f64,
}

struct Source {
    client: Client,
    target: String,
    version: &'static PgVersion,
    in_recovery: bool,
    pgdata: PathBuf,
}

fn sql_err(target: &str, sql: &str) -> impl FnOnce(postgres::Error) -> Error {
    let what = first_words(sql);
    let target = target.to_string();
    move |source| Error::Sql { target, what, source }
}

fn open_source(cfg: &BackupConfig) -> Result<Source> {
    let mut client = cfg.standby.connect()?;
    let target = cfg.standby.to_string();
    let num: i32 = query_text(&mut client, &target, "SELECT current_setting('server_version_num')")?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let major = (num / 10000) as u32;
    let version = version::by_major(major).ok_or_else(|| Error::Precondition {
        message: format!("the server at {target} runs PostgreSQL {major}, which pgdrill does not support"),
        hint: "pgdrill supports PostgreSQL 10 to 18".into(),
    })?;
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(sql_err(&target, "SELECT pg_is_in_recovery()"))?
        .get(0);
    if !in_recovery && !cfg.allow_primary {
        return Err(Error::usage(
            format!("{target} is not a standby (pg_is_in_recovery() is false)"),
            Some("pgdrill backs up hot standbys; point --standby at one".into()),
        ));
    }
    let pgdata = match &cfg.pgdata {
        Some(p) => p.clone(),
        None => PathBuf::from(
            query_text(&mut client, &target, "SELECT current_setting('data_directory')")?.unwrap_or_default(),
        ),
    };
    Ok(Source { client, target, version, in_recovery, pgdata })
}

/// The staging directory beside `dest`.
fn staging_path(dest: &Path) -> Result<PathBuf> {
    let name =
        dest.file_name().ok_or_else(|| Error::usage(format!("{}: not a usable destination", dest.display()), None))?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.pgdrill-partial", name.to_string_lossy())))
}

/// Refuse a destination that holds anything; return the staging path.
fn prepare_dest(dest: &Path) -> Result<PathBuf> {
    if let Ok(mut rd) = fs::read_dir(dest) {
        if rd.next().is_some() {
            return Err(Error::TargetNotEmpty { path: dest.to_path_buf() });
        }
    } else if dest.exists() {
        return Err(Error::usage(format!("{}: exists and is not a directory", dest.display()), None));
    }
    let staging = staging_path(dest)?;
    if staging.exists() {
        // A previous run was interrupted; what it left is not a backup.
        fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, "remove an interrupted backup", e))?;
    }
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(|e| Error::io(&staging, "create directory", e))?;
    fs::write(staging.join(INCOMPLETE_MARKER), b"this backup is incomplete\n")
        .map_err(|e| Error::io(&staging, "write the incomplete marker", e))?;
    Ok(staging)
}

/// Read pg_control from a live data directory until its CRC holds.
fn read_live_control(pgdata: &Path) -> Result<(Vec<u8>, ControlFile)> {
    let path = pgdata.join(CONTROL_PATH);
    for _ in 0..50 {
        let bytes = fs::read(&path).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
        let c = ControlFile::parse(&bytes).map_err(|source| Error::Control { path: path.clone(), source })?;
        if c.crc_ok {
            return Ok((bytes, c));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Error::Precondition {
        message: format!("{}: the CRC of pg_control stays wrong", path.display()),
        hint: "the source's control file may be damaged; check the standby".into(),
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, owner: Option<&OsUser>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, "create file", e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, "write", e))?;
    if let Some(u) = owner {
        u.chown(path)?;
    }
    Ok(())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn rel_bytes(rel: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    rel.as_os_str().as_bytes().to_vec()
}

/// The WAL ranges of a backup, newest timeline first, built from the end
/// timeline's history the way PostgreSQL's manifest code does.
pub fn wal_ranges(
    start: Lsn,
    start_tli: TimelineId,
    end: Lsn,
    end_tli: TimelineId,
    history: &[history::HistoryEntry],
) -> Vec<WalRange> {
    if end_tli == start_tli || history.is_empty() {
        return vec![WalRange { timeline: end_tli, start, end }];
    }
    let Ok(path) = history::path_to(end_tli, history) else {
        return vec![WalRange { timeline: end_tli, start, end }];
    };
    let mut out = Vec::new();
    let mut range_end = end;
    for span in path.iter().rev() {
        if span.end.is_some_and(|e| e < start) {
            continue;
        }
        let begin = if span.tli == start_tli { start } else { span.begin.unwrap_or(start) };
        out.push(WalRange { timeline: span.tli, start: begin, end: range_end });
        if span.tli == start_tli {
            break;
        }
        range_end = begin;
    }
    out
}

/// Take a backup.
pub fn run(cfg: &BackupConfig) -> Result<BackupReport> {
    let started = Instant::now();
    let mut src = open_source(cfg)?;
    let staging = prepare_dest(&cfg.dest)?;
    let result = take(cfg, &mut src, &staging, started);
    if result.is_err() {
        // Never leave something that looks like a backup.
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn take(cfg: &BackupConfig, src: &mut Source, staging: &Path, started: Instant) -> Result<BackupReport> {
    let pgdata_meta =
        fs::metadata(&src.pgdata).map_err(|e| Error::ReadInput { path: src.pgdata.clone(), source: e })?;
    let owner = if OsUser::running_as_root() { OsUser::by_uid(pgdata_meta.uid()) } else { None };
    let owner = owner.as_ref();
    if let Some(u) = owner {
        u.chown(staging)?;
        u.chown(&staging.join(INCOMPLETE_MARKER))?;
    }

    // Legacy: pg_control first, before anything else is listed or copied.
    let mut legacy_control = None;
    let mut start_lsn_sql = None;
    match cfg.method {
        Method::Legacy => legacy_control = Some(read_live_control(&src.pgdata)?),
        Method::Label => {
            let sql = src.version.backup_start_sql;
            let lsn: String =
                src.client.query_one(sql, &[&cfg.label, &cfg.fast]).map_err(sql_err(&src.target, sql))?.get(0);
            start_lsn_sql = lsn.parse::<Lsn>().ok();
        }
    }

    let plan = walk::plan(&src.pgdata)?;
    for d in &plan.dirs {
        copy::create_dir(&staging.join(d), owner)?;
    }
    if src.version.major >= 17 {
        copy::create_dir(&staging.join("pg_wal/summaries"), owner)?;
    }
    for (rel, target) in &plan.symlinks {
        let p = staging.join(rel);
        std::os::unix::fs::symlink(target, &p).map_err(|e| Error::io(&p, "create symlink", e))?;
        if let Some(u) = owner {
            u.chown(&p)?;
        }
    }
    let control_rel = Path::new(CONTROL_PATH);
    let jobs: Vec<CopyJob> = plan
        .files
        .iter()
        .filter(|(_, rel, _)| rel != control_rel)
        .map(|(src_path, rel, size)| CopyJob { src: src_path.clone(), dst: staging.join(rel), size_hint: *size })
        .collect();
    let rels: Vec<&Path> =
        plan.files.iter().filter(|(_, rel, _)| rel != control_rel).map(|(_, r, _)| r.as_path()).collect();
    let throttle = cfg.max_rate.map(Throttle::new);
    let pb = copy::progress_bar(plan.total_bytes(), "backup", cfg.quiet);
    let cancel = AtomicBool::new(false);
    let opts = CopyOptions {
        jobs: cfg.jobs,
        throttle: throttle.as_ref(),
        progress: &pb,
        owner,
        mode: None,
        vanish_ok: true,
        cancel: &cancel,
    };
    let copied = copy::copy_files(&jobs, &opts)?;
    pb.finish_and_clear();

    // pg_control: the legacy copy taken first, or a fresh read now, last.
    let (control_bytes, control) = match legacy_control {
        Some(c) => c,
        None => read_live_control(&src.pgdata)?,
    };
    let control_mtime = fs::metadata(src.pgdata.join(CONTROL_PATH)).map(|m| m.mtime()).unwrap_or_else(|_| now_secs());
    write_file(&staging.join(CONTROL_PATH), &control_bytes, 0o600, owner)?;

    // Finish the backup session / record the end.
    let (start_lsn, start_tli, end_lsn, label_text, spcmap) = match cfg.method {
        Method::Label => {
            let sql = src.version.backup_stop_sql;
            let row = src.client.query_one(sql, &[]).map_err(|e| {
                let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                if text.contains("promoted") {
                    Error::StandbyPromoted { detail: text }
                } else {
                    Error::Sql { target: src.target.clone(), what: first_words(sql), source: e }
                }
            })?;
            let stop: String = row.get(0);
            let labelfile: String = row.get(1);
            let spcmap: Option<String> = row.get(2);
            let stop = stop.parse::<Lsn>().map_err(|_| Error::Precondition {
                message: format!("pg_backup_stop returned an invalid LSN {stop:?}"),
                hint: "report this as a bug".into(),
            })?;
            let (_, fields) = BackupLabel::parse(&labelfile)
                .map_err(|source| Error::Label { path: PathBuf::from("(label returned by the server)"), source })?;
            let _ = start_lsn_sql;
            (
                fields.start_wal_location,
                fields.start_file_timeline,
                stop,
                Some(labelfile),
                spcmap.filter(|s| !s.is_empty()),
            )
        }
        Method::Legacy => {
            let row = src
                .client
                .query_one("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text", &[])
                .map_err(sql_err(&src.target, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()"))?;
            let still: bool = row.get(0);
            let replay: Option<String> = row.get(1);
            if src.in_recovery && !still {
                return Err(Error::StandbyPromoted {
                    detail: "pg_is_in_recovery() became false during the copy".into(),
                });
            }
            let end = replay.and_then(|r| r.parse::<Lsn>().ok()).unwrap_or(control.min_recovery_lsn);
            (control.redo_lsn, control.timeline, end, None, None)
        }
    };

    // The timeline at the end, and a change of it during a legacy copy.
    let end_tli_raw: i64 = if src.in_recovery {
        src.client
            .query_one("SELECT min_recovery_end_timeline::bigint FROM pg_control_recovery()", &[])
            .map(|r| r.get(0))
            .unwrap_or(0)
    } else {
        i64::from(control.timeline.0)
    };
    let end_tli = if end_tli_raw > 0 { TimelineId(end_tli_raw as u32) } else { start_tli };
    if cfg.method == Method::Legacy && end_tli != start_tli {
        return Err(Error::StandbyPromoted {
            detail: format!("the standby moved from timeline {start_tli} to {end_tli} during the copy"),
        });
    }
    let history = if end_tli != start_tli {
        let p = src.pgdata.join("pg_wal").join(history_file_name(end_tli));
        fs::read_to_string(&p)
            .ok()
            .map(|t| history::parse(&t).map_err(|source| Error::History { path: p.clone(), source }))
            .transpose()?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let ranges = wal_ranges(start_lsn, start_tli, end_lsn, end_tli, &history);

    // Our files.
    let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(l) = &label_text {
        extra.push((BACKUP_LABEL, l.clone().into_bytes()));
    }
    if let Some(m) = &spcmap {
        extra.push((TABLESPACE_MAP, m.clone().into_bytes()));
    }
    extra.push((END_LOCATION, label::render_end_location(end_lsn).into_bytes()));
    for (name, bytes) in &extra {
        write_file(&staging.join(name), bytes, 0o600, owner)?;
    }

    // The manifest.
    let now = now_secs();
    let mut files: Vec<ManifestFile> = Vec::with_capacity(copied.len() + 4);
    let mut vanished = 0usize;
    let mut bytes = 0u64;
    for (rel, c) in rels.iter().zip(&copied) {
        if c.vanished {
            vanished += 1;
            continue;
        }
        bytes += c.size;
        files.push(ManifestFile {
            path: rel_bytes(rel),
            size: c.size,
            last_modified: manifest::format_last_modified(c.mtime),
            checksum: Some((ChecksumAlgorithm::Crc32c, c.crc32c.to_le_bytes().to_vec())),
        });
    }
    files.push(ManifestFile {
        path: CONTROL_PATH.as_bytes().to_vec(),
        size: control_bytes.len() as u64,
        last_modified: manifest::format_last_modified(control_mtime),
        checksum: Some((ChecksumAlgorithm::Crc32c, crc32c::crc32c(&control_bytes).to_le_bytes().to_vec())),
    });
    for (name, b) in &extra {
        bytes += b.len() as u64;
        files.push(ManifestFile {
            path: name.as_bytes().to_vec(),
            size: b.len() as u64,
            last_modified: manifest::format_last_modified(now),
            checksum: Some((ChecksumAlgorithm::Crc32c, crc32c::crc32c(b).to_le_bytes().to_vec())),
        });
    }
    bytes += control_bytes.len() as u64;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest_version = src.version.manifest_version;
    let text = Manifest::render(manifest_version, control.system_identifier, &files, &ranges);
    write_file(&staging.join(BACKUP_MANIFEST), text.as_bytes(), 0o600, owner)?;

    // Complete: drop the marker, sync, and move into place.
    fs::remove_file(staging.join(INCOMPLETE_MARKER))
        .map_err(|e| Error::io(staging, "remove the incomplete marker", e))?;
    if cfg.sync {
        copy::sync_filesystem(staging)?;
    }
    if cfg.dest.exists() {
        fs::remove_dir(&cfg.dest).map_err(|e| Error::io(&cfg.dest, "replace the empty destination directory", e))?;
    }
    fs::rename(staging, &cfg.dest).map_err(|e| Error::io(&cfg.dest, "move the finished backup into place", e))?;

    let seg = control.wal_seg_size().unwrap_or(crate::pg::WalSegSize::DEFAULT);
    let wal_switch = match &cfg.primary {
        Some(p) => Some(ensure_end_segment_archived(
            p,
            SegmentName::new(end_tli, end_lsn.prev_segment_number(seg)).file_name(seg),
            cfg.wal_archive.as_deref(),
            seg,
        )?),
        None => None,
    };

    Ok(BackupReport {
        dest: cfg.dest.clone(),
        method: cfg.method,
        pg_major: src.version.major,
        system_identifier: control.system_identifier.to_string(),
        backup_from: if src.in_recovery { "standby".into() } else { src.version.label_from_primary.into() },
        start_lsn,
        start_timeline: start_tli,
        end_lsn,
        end_timeline: end_tli,
        control_min_recovery_lsn: control.min_recovery_lsn,
        files: files.len(),
        bytes,
        vanished_files: vanished,
        excluded_paths: plan.excluded.len(),
        tablespaces: plan.tablespaces.iter().map(|t| t.0).collect(),
        manifest_version,
        wal_ranges: ranges,
        wal_switch,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Make sure the segment holding the backup's end reaches the archive: if
/// the primary has not archived it yet, ask it for one WAL switch and wait
/// (bounded) for the archiver.
fn ensure_end_segment_archived(
    primary: &ConnSpec,
    end_segment: String,
    archive: Option<&Path>,
    seg: crate::pg::WalSegSize,
) -> Result<WalSwitchReport> {
    let mut client = primary.connect()?;
    let target = primary.to_string();
    // The archiver counts a segment only once archive_command succeeded; a
    // file in the archive can still be half written by a plain `cp`, so it
    // counts only at its full size.
    let archived = |client: &mut Client| -> Result<bool> {
        let last = query_text(client, &target, "SELECT last_archived_wal FROM pg_stat_archiver")?;
        // Names of one timeline sort like their positions.
        let by_archiver = last.is_some_and(|l| l.len() >= 24 && l[..24] >= *end_segment.as_str());
        let in_dir = archive.is_none_or(|dir| {
            std::fs::metadata(dir.join(&end_segment)).is_ok_and(|m| m.is_file() && m.len() == seg.bytes())
        });
        Ok(by_archiver && in_dir)
    };
    let started = Instant::now();
    let before = archived(&mut client)?;
    let mut report = WalSwitchReport {
        end_segment: end_segment.clone(),
        archived_before: before,
        switched: false,
        archived: before,
        waited_secs: 0.0,
    };
    if before {
        return Ok(report);
    }
    client.query_one("SELECT pg_switch_wal()", &[]).map_err(sql_err(&target, "SELECT pg_switch_wal()"))?;
    report.switched = true;
    let deadline = started + Duration::from_secs(60);
    while Instant::now() < deadline {
        if archived(&mut client)? {
            report.archived = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    report.waited_secs = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::history::HistoryEntry;

    #[test]
    fn ranges_follow_timeline_history() {
        let one = wal_ranges(Lsn(100), TimelineId(1), Lsn(900), TimelineId(1), &[]);
        assert_eq!(one, vec![WalRange { timeline: TimelineId(1), start: Lsn(100), end: Lsn(900) }]);
        let hist = vec![
            HistoryEntry { tli: TimelineId(1), switchpoint: Lsn(50), reason: String::new() },
            HistoryEntry { tli: TimelineId(2), switchpoint: Lsn(500), reason: String::new() },
        ];
        let r = wal_ranges(Lsn(100), TimelineId(2), Lsn(900), TimelineId(3), &hist);
        assert_eq!(
            r,
            vec![
                WalRange { timeline: TimelineId(3), start: Lsn(500), end: Lsn(900) },
                WalRange { timeline: TimelineId(2), start: Lsn(100), end: Lsn(500) },
            ]
        );
    }
}
