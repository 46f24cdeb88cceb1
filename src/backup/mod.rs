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
//! renamed into place only when complete and synced.
//!
//! Before anything is copied: the directory must be the connected
//! server's ([`identity`]), the role must hold every privilege the run
//! needs ([`privileges`]), and `--primary` must be the standby's primary.
//! On a busy standby the start never waits inside a statement
//! ([`session`]). Whatever fails after the start stops the backup on the
//! server and removes the staging directory.

pub mod dest;
pub mod identity;
pub mod preflight;
pub mod privileges;
pub mod session;
pub mod tarball;
pub mod walk;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::conn::ConnSpec;
use crate::copy::{self, CopyJob, CopyOptions, Job, Throttle};
use crate::datadir::{BACKUP_LABEL, BACKUP_MANIFEST, CONTROL_PATH, END_LOCATION, INCOMPLETE_MARKER, TABLESPACE_MAP};
use crate::error::{Error, Result, EXIT_OK, EXIT_TIMEOUT};
use crate::observe::{self, Level};
use crate::pg::control::ControlFile;
use crate::pg::history;
use crate::pg::label::{self, BackupLabel};
use crate::pg::manifest::{self, ChecksumAlgorithm, Manifest, ManifestFile, WalRange};
use crate::pg::wal::{history_file_name, SegmentName};
use crate::pg::{Lsn, TimelineId};
use crate::server::OsUser;
use crate::source::compress::{CompressSpec, Compression};
pub use dest::S3Dest;
use dest::{Dest, Target};
use privileges::On;
use session::{Session, StartReport};
use walk::{Plan, Sources};

/// How long `--primary` waits for the end segment by default.
pub const DEFAULT_ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which procedure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// pg_backup_start/stop, pg_control copied last, backup_label written.
    Label,
    /// No backup functions, pg_control copied first, end_location recorded.
    Legacy,
}

/// How the backup is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A directory like the data directory (the default).
    Plain,
    /// `base.tar`, `<oid>.tar` and `backup_manifest`, as `pg_basebackup
    /// -Ft` writes them, compressed as given.
    Tar(CompressSpec),
}

impl OutputFormat {
    /// The report's `format`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Plain => "plain",
            OutputFormat::Tar(_) => "tar",
        }
    }

    /// The report's `compression`.
    pub fn compression(self) -> Compression {
        match self {
            OutputFormat::Plain => Compression::None,
            OutputFormat::Tar(s) => s.kind,
        }
    }
}

/// A validated backup request.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    pub standby: ConnSpec,
    pub primary: Option<ConnSpec>,
    pub dest: PathBuf,
    /// Write to object storage instead of `dest` (which then only names
    /// it in reports).
    pub s3: Option<S3Dest>,
    pub pgdata: Option<PathBuf>,
    pub method: Method,
    pub label: String,
    pub fast: bool,
    pub jobs: usize,
    pub max_rate: Option<u64>,
    /// Where the WAL archive is, to check that the end segment arrived.
    pub wal_archive: Option<PathBuf>,
    /// How to reach object storage for an `s3://` `wal_archive`.
    pub s3_config: crate::objstore::S3Config,
    /// How long `--primary` waits for the end segment to be archived.
    pub archive_timeout: Duration,
    /// fsync the result (like pg_basebackup without --no-sync).
    pub sync: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Accept a primary as the source (the test ground builds standbys so).
    pub allow_primary: bool,
    /// Plain (a directory) or tar.
    pub format: OutputFormat,
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
    /// 0, or 4 when `--primary` could not get the end segment archived.
    pub exit_code: u8,
    pub dest: PathBuf,
    pub method: Method,
    /// `plain` or `tar`.
    pub format: &'static str,
    /// The tar archives' compression (`none` for plain).
    pub compression: Compression,
    /// Bytes the backup takes on disk (the archives and the manifest, or
    /// the files); for tar, less than `bytes` by the compression.
    pub stored_bytes: u64,
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
    /// How the label method's start went (restartpoint, retries).
    pub start: Option<StartReport>,
    pub wal_switch: Option<WalSwitchReport>,
    pub seconds: f64,
}

impl BackupReport {
    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }
}

/// The server to copy from, checked.
struct Source {
    session: Session,
    sources: Sources,
    system_identifier: u64,
}

/// Connect to the standby and check everything that can be checked before a
/// byte is copied: a standby (unless allowed), the privileges, and that the
/// directory is its own.
fn open_source(cfg: &BackupConfig, mut session: Session, needs: &[privileges::Need]) -> Result<Source> {
    if !session.in_recovery && !cfg.allow_primary {
        return Err(Error::usage(
            format!("{} is not a standby (pg_is_in_recovery() is false)", session.target),
            Some("pgdrill backs up hot standbys; point --standby at one".into()),
        ));
    }
    privileges::require(&mut session, On::Standby, needs)?;
    let facts = identity::server_facts(&mut session)?;
    let pgdata = match (&cfg.pgdata, &facts.data_directory) {
        (Some(p), _) => p.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            return Err(Error::MissingPrivileges {
                target: session.target.clone(),
                role: session.role.clone(),
                missing: "reading data_directory (to find the data directory; or pass --pgdata)".into(),
                grants: vec![privileges::settings_grant(&session.role)],
            })
        }
    };
    let sources = Sources::open_data_directory(&pgdata)?;
    identity::check(&facts, &sources, &session.target)?;
    Ok(Source { session, sources, system_identifier: facts.system_identifier })
}

/// Connect to `--primary`: the role's privileges, and the same system as
/// the standby's.
fn open_primary(spec: &ConnSpec, needs: &[privileges::Need], standby_sysid: u64) -> Result<Session> {
    let mut p = Session::connect(spec)?;
    privileges::require(&mut p, On::Primary, needs)?;
    let sysid = p.text("SELECT system_identifier::text FROM pg_control_system()")?.unwrap_or_default();
    if sysid != standby_sysid.to_string() {
        return Err(Error::usage(
            format!("--primary {} is database system {sysid}, the standby is {standby_sysid}", p.target),
            Some("pass the standby's own primary with --primary".into()),
        ));
    }
    Ok(p)
}

/// The staging directory beside `dest`.
fn staging_path(dest: &Path) -> Result<PathBuf> {
    let name =
        dest.file_name().ok_or_else(|| Error::usage(format!("{}: not a usable destination", dest.display()), None))?;
    let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.pgdrill-partial", name.to_string_lossy())))
}

/// Refuse a destination that holds anything.
fn check_dest(dest: &Path) -> Result<()> {
    if let Ok(mut rd) = fs::read_dir(dest) {
        if rd.next().is_some() {
            return Err(Error::TargetNotEmpty { path: dest.to_path_buf() });
        }
    } else if dest.exists() {
        return Err(Error::usage(format!("{}: exists and is not a directory", dest.display()), None));
    }
    Ok(())
}

/// Create the staging directory (with its incomplete marker), owned by
/// `owner` when given.
fn prepare_staging(dest: &Path, owner: Option<&OsUser>) -> Result<PathBuf> {
    let staging = staging_path(dest)?;
    if staging.exists() {
        // A previous run was interrupted; what it left is not a backup.
        fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, "remove an interrupted backup", e))?;
    }
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(|e| Error::io(&staging, "create directory", e))?;
    write_file(&staging.join(INCOMPLETE_MARKER), b"this backup is incomplete\n", 0o600, owner)?;
    if let Some(u) = owner {
        u.chown(&staging)?;
    }
    Ok(staging)
}

/// Read pg_control from a live data directory until its CRC holds; with
/// its modification time.
fn read_live_control(sources: &Sources) -> Result<(Vec<u8>, ControlFile, i64)> {
    let path = sources.data_directory().join(CONTROL_PATH);
    let mut mtime = now_secs();
    let (bytes, c) = crate::datadir::read_control_retrying(&path, || {
        let mut f = sources
            .open(&path, false)?
            .ok_or_else(|| Error::ReadInput { path: path.clone(), source: std::io::ErrorKind::NotFound.into() })?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
        mtime = f.metadata().map(|m| m.mtime()).unwrap_or_else(|_| now_secs());
        Ok(bytes)
    })?;
    if !c.crc_ok {
        return Err(Error::Precondition {
            message: format!("{}: the CRC of pg_control stays wrong", path.display()),
            hint: "the source's control file may be damaged; check the standby".into(),
        });
    }
    Ok((bytes, c, mtime))
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
    let s3_store = match &cfg.s3 {
        Some(d) => Some(Dest::check_s3(d)?),
        None => {
            check_dest(&cfg.dest)?;
            None
        }
    };
    let session = Session::connect(&cfg.standby)?;
    let needs = privileges::needs(session.version, cfg.method, cfg.primary.is_some());
    let mut src = open_source(cfg, session, &needs)?;
    let sysid = src.system_identifier;
    let mut primary = cfg.primary.as_ref().map(|p| open_primary(p, &needs, sysid)).transpose()?;
    // As root, everything written belongs to the data directory's owner.
    let owner = if OsUser::running_as_root() { OsUser::by_uid(src.sources.data_directory_uid()?) } else { None };
    let dest = match s3_store {
        Some(store) => Dest::prepare_s3(store)?,
        None => Dest::Local {
            staging: prepare_staging(&cfg.dest, owner.as_ref())?,
            dest: cfg.dest.clone(),
            owner: owner.as_ref(),
            sync: cfg.sync,
        },
    };
    let result = take(cfg, &mut src, &dest, started);
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            // Never leave the standby in backup mode, nor anything that
            // looks like a backup (the signal watchdog waits for this).
            let _cleaning = crate::signals::cleaning();
            src.session.abort_backup();
            dest.abort();
            return Err(e);
        }
    };
    drop(src);
    if let Some(p) = primary.as_mut() {
        let seg = report.wal_seg_size;
        let w = ensure_end_segment_archived(
            p,
            report.end_segment.clone(),
            cfg.wal_archive.as_deref().map(|a| (a, &cfg.s3_config)),
            seg,
            cfg.archive_timeout,
        )?;
        if !w.archived {
            report.report.exit_code = EXIT_TIMEOUT;
        }
        report.report.wal_switch = Some(w);
    }
    report.report.seconds = started.elapsed().as_secs_f64();
    Ok(report.report)
}

/// A finished copy, and what the archive check needs.
struct Taken {
    report: BackupReport,
    end_segment: String,
    wal_seg_size: crate::pg::WalSegSize,
}

/// What the start gave: pg_control copied first (legacy), or the backup
/// start (label).
enum Started {
    Legacy(Vec<u8>, Box<ControlFile>, i64),
    Label(StartReport),
}

fn start(cfg: &BackupConfig, src: &mut Source) -> Result<Started> {
    match cfg.method {
        // Legacy: pg_control first, before anything else is listed or copied.
        Method::Legacy => {
            let (b, c, m) = read_live_control(&src.sources)?;
            Ok(Started::Legacy(b, Box::new(c), m))
        }
        Method::Label => {
            // Say what the wait is, then every half minute (notes reach a
            // terminal and CI logs alike).
            let mut last: Option<Instant> = None;
            let r = src.session.start_backup(&cfg.label, cfg.fast, &mut |msg| {
                if !cfg.quiet && last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                    observe::note(Level::Info, msg);
                    last = Some(Instant::now());
                }
            })?;
            Ok(Started::Label(r))
        }
    }
}

fn take(cfg: &BackupConfig, src: &mut Source, dest: &Dest, started: Instant) -> Result<Taken> {
    let begun = start(cfg, src)?;
    let sources = std::mem::take(&mut src.sources);
    let session = &mut src.session;
    let plan = walk::plan(sources, &mut |oid| session.tablespace_location(oid))?;
    warn_skipped_links(&plan);
    let mut out = Output::new(cfg, dest);
    let copied = out.copy_data(cfg, &plan, src.session.version.has_wal_summaries)?;

    // pg_control: the legacy copy taken first, or a fresh read now, last.
    let (control_bytes, control, control_mtime, start_report) = match begun {
        Started::Legacy(b, c, m) => (b, *c, m, None),
        Started::Label(r) => {
            let (b, c, m) = read_live_control(&plan.sources)?;
            (b, c, m, Some(r))
        }
    };
    out.add(CONTROL_PATH, &control_bytes, control_mtime)?;
    if crate::signals::interrupted() {
        return Err(Error::Interrupted);
    }
    let end = finish_on_server(cfg, src, &control, start_report.as_ref())?;
    let (end_tli, ranges) = end_timeline(src, &plan, &control, &end, cfg.method)?;
    let extra = our_files(&end);
    for (name, bytes) in &extra {
        out.add(name, bytes, now_secs())?;
    }
    let archives = out.finish()?;

    let (files, bytes, vanished) = manifest_files(&plan, &copied, &control_bytes, control_mtime, &extra);
    let manifest_version = src.session.version.manifest_version;
    let text = Manifest::render(manifest_version, control.system_identifier, &files, &ranges);
    // The manifest is the backup's last file: in object storage, where
    // nothing is renamed, it is what makes the backup count.
    dest.write_file(Path::new(BACKUP_MANIFEST), text.as_bytes())?;
    let stored_bytes = match dest {
        Dest::Local { staging, .. } => stored_size(staging),
        Dest::S3(_) => archives.unwrap_or(bytes) + text.len() as u64,
    };
    dest.complete()?;

    let seg = control.wal_seg_size().unwrap_or(crate::pg::WalSegSize::DEFAULT);
    let report = BackupReport {
        exit_code: EXIT_OK,
        dest: dest.display(),
        method: cfg.method,
        format: cfg.format.name(),
        compression: cfg.format.compression(),
        stored_bytes,
        pg_major: src.session.version.major,
        system_identifier: control.system_identifier.to_string(),
        backup_from: if src.session.in_recovery {
            "standby".into()
        } else {
            src.session.version.label_from_primary.into()
        },
        start_lsn: end.start_lsn,
        start_timeline: end.start_tli,
        end_lsn: end.end_lsn,
        end_timeline: end_tli,
        control_min_recovery_lsn: control.min_recovery_lsn,
        files: files.len(),
        bytes,
        vanished_files: vanished,
        excluded_paths: plan.excluded.len(),
        tablespaces: plan.tablespaces.iter().map(|t| t.0).collect(),
        manifest_version,
        wal_ranges: ranges,
        start: start_report,
        wal_switch: None,
        seconds: started.elapsed().as_secs_f64(),
    };
    let end_segment = SegmentName::new(end_tli, end.end_lsn.prev_segment_number(seg)).file_name(seg);
    Ok(Taken { report, end_segment, wal_seg_size: seg })
}

/// Links outside pg_tblspc are not copied (as pg_basebackup does not):
/// say so, since the user may have expected them.
fn warn_skipped_links(plan: &Plan) {
    for (rel, target) in &plan.symlinks {
        observe::note(
            Level::Warn,
            &format!(
                "{} is a symbolic link (to {}): skipped, as pg_basebackup skips it; a backup holds links \
                 only as tablespaces (restore refuses any other)",
                rel.display(),
                target.display()
            ),
        );
    }
}

/// Where the backup's files go: a plain tree at the destination (a local
/// staging directory, or object storage), or tar archives in the staging
/// directory.
struct Output<'a, 'd> {
    dest: &'a Dest<'d>,
    format: OutputFormat,
    tar: Option<tarball::TarBackupWriter>,
}

impl<'a, 'd> Output<'a, 'd> {
    fn new(cfg: &BackupConfig, dest: &'a Dest<'d>) -> Self {
        Output { dest, format: cfg.format, tar: None }
    }

    /// Copy every file but pg_control.
    fn copy_data(&mut self, cfg: &BackupConfig, plan: &Plan, wal_summaries: bool) -> Result<Vec<copy::Copied>> {
        match self.format {
            OutputFormat::Plain => {
                // Links that are not tablespaces are not recreated: like
                // pg_basebackup ("skipping special file"), a backup holds no
                // other links, so that a restore (which refuses them) can use it.
                let mut dirs = plan.dirs.clone();
                if wal_summaries {
                    // pg_basebackup sends pg_wal/summaries (empty) from 17 on.
                    dirs.push((PathBuf::from("pg_wal/summaries"), 0o700));
                }
                self.dest.create_tree(&dirs)?;
                copy_data(cfg, plan, self.dest)
            }
            OutputFormat::Tar(spec) => {
                let (dir, owner) = match self.dest {
                    Dest::Local { staging, owner, .. } => (tarball::ArchiveDir::Local(staging), *owner),
                    Dest::S3(store) => (tarball::ArchiveDir::S3(store), None),
                };
                let (w, copied) = write_tar(cfg, plan, dir, owner, spec, wal_summaries)?;
                self.tar = Some(w);
                Ok(copied)
            }
        }
    }

    /// Add one file written by pgdrill itself (pg_control, backup_label…).
    fn add(&mut self, name: &str, bytes: &[u8], mtime: i64) -> Result<()> {
        match self.tar.as_mut() {
            Some(w) => w.append(name, bytes, mtime),
            None => self.dest.write_file(Path::new(name), bytes),
        }
    }

    /// Close the archives; their bytes, for a tar backup.
    fn finish(self) -> Result<Option<u64>> {
        self.tar.map(tarball::TarBackupWriter::finish).transpose()
    }
}

fn create_dirs(p: &Path, mode: u32, owner: Option<&OsUser>) -> Result<()> {
    fs::DirBuilder::new().mode(mode).recursive(true).create(p).map_err(|e| Error::io(p, "create directory", e))?;
    if let Some(u) = owner {
        u.chown(p)?;
    }
    Ok(())
}

/// Bytes of the regular files below `dir` (what the backup takes on disk).
fn stored_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// Write every file but pg_control into the tar archives.
fn write_tar(
    cfg: &BackupConfig,
    plan: &Plan,
    dir: tarball::ArchiveDir,
    owner: Option<&OsUser>,
    spec: CompressSpec,
    wal_summaries: bool,
) -> Result<(tarball::TarBackupWriter, Vec<copy::Copied>)> {
    let throttle = cfg.max_rate.map(Throttle::new);
    let pb = copy::progress_bar(plan.total_bytes(), "backup", cfg.quiet);
    // Zstandard compresses on the copy's workers.
    let spec = CompressSpec { workers: if cfg.jobs > 1 { cfg.jobs as u32 } else { 0 }, ..spec };
    let opts = tarball::TarOptions { spec, throttle: throttle.as_ref(), progress: &pb, owner, sync: cfg.sync };
    let (mut w, copied) = tarball::TarBackupWriter::write_data(plan, dir, Path::new(CONTROL_PATH), &opts)?;
    if wal_summaries {
        // pg_basebackup sends pg_wal/summaries (empty) from 17 on.
        w.dir("pg_wal/summaries")?;
    }
    pb.finish_and_clear();
    Ok((w, copied))
}

/// Copy every file but pg_control, each opened without following links.
fn copy_data(cfg: &BackupConfig, plan: &Plan, dest: &Dest) -> Result<Vec<copy::Copied>> {
    let control_rel = Path::new(CONTROL_PATH);
    let mut jobs = Vec::with_capacity(plan.files.len());
    for (src_path, rel, size) in plan.files.iter().filter(|(_, rel, _)| rel != control_rel) {
        let (dst, s3) = match dest.target(rel)? {
            Target::Local(p) => (p, None),
            Target::S3(store, key) => (PathBuf::from(store.url_of(&key)), Some((store, key))),
        };
        let job = CopyJob { src: src_path.clone(), dst, size_hint: *size };
        jobs.push(SourceJob { job, s3, sources: &plan.sources });
    }
    let owner = match dest {
        Dest::Local { owner, .. } => *owner,
        Dest::S3(_) => None,
    };
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
    Ok(copied)
}

/// A file of the plan, opened through the plan's open directories, so no
/// link planted after the listing is followed.
struct SourceJob<'a> {
    job: CopyJob,
    /// The object it goes to, when the backup goes to object storage.
    s3: Option<(&'a crate::objstore::Store, String)>,
    sources: &'a Sources,
}

impl Job for SourceJob<'_> {
    fn size_hint(&self) -> u64 {
        self.job.size_hint
    }
    fn src_display(&self) -> PathBuf {
        self.job.src.clone()
    }
    fn dst_display(&self) -> PathBuf {
        self.job.dst.clone()
    }
    fn open_src(&self) -> std::io::Result<Option<std::fs::File>> {
        self.sources.open(&self.job.src, true).map_err(|e| std::io::Error::other(e.chain().join(": ")))
    }
    fn create_dst(&self, mode: u32, owner: Option<&OsUser>) -> std::io::Result<std::fs::File> {
        self.job.create_dst(mode, owner)
    }
    fn create_sink(&self, mode: u32, owner: Option<&OsUser>) -> Result<Box<dyn copy::Sink + '_>> {
        match &self.s3 {
            Some((store, key)) => Ok(Box::new(store.writer(key, Some(self.job.size_hint))?)),
            None => Ok(Box::new(self.create_dst(mode, owner).map_err(|e| Error::io(&self.job.dst, "create file", e))?)),
        }
    }
}

/// Where the backup starts and ends.
struct Ends {
    start_lsn: Lsn,
    start_tli: TimelineId,
    end_lsn: Lsn,
    label: Option<String>,
    spcmap: Option<String>,
}

/// Stop the backup (label) or record the replay position (legacy).
fn finish_on_server(
    cfg: &BackupConfig,
    src: &mut Source,
    control: &ControlFile,
    start: Option<&StartReport>,
) -> Result<Ends> {
    match cfg.method {
        Method::Label => {
            let (stop, labelfile, spcmap) = src.session.stop_backup()?;
            let (_, fields) = BackupLabel::parse(&labelfile)
                .map_err(|source| Error::Label { path: PathBuf::from("(label returned by the server)"), source })?;
            if let Some(s) = start {
                if s.lsn != fields.start_wal_location {
                    return Err(Error::Precondition {
                        message: format!(
                            "the backup-start call returned {}, but the label says START WAL LOCATION {}",
                            s.lsn, fields.start_wal_location
                        ),
                        hint: "the backup is not usable; take it again, and report this if it repeats".into(),
                    });
                }
            }
            Ok(Ends {
                start_lsn: fields.start_wal_location,
                start_tli: fields.start_file_timeline,
                end_lsn: stop,
                label: Some(labelfile),
                spcmap,
            })
        }
        Method::Legacy => {
            let row = src.session.query_one("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text", &[])?;
            let still: bool = row.get(0);
            let replay: Option<String> = row.get(1);
            if src.session.in_recovery && !still {
                return Err(Error::StandbyPromoted {
                    detail: "pg_is_in_recovery() became false during the copy".into(),
                });
            }
            let end = replay.and_then(|r| r.parse::<Lsn>().ok()).unwrap_or(control.min_recovery_lsn);
            Ok(Ends {
                start_lsn: control.redo_lsn,
                start_tli: control.timeline,
                end_lsn: end,
                label: None,
                spcmap: None,
            })
        }
    }
}

/// The timeline at the end (a change of it during a legacy copy is a
/// promotion), and the WAL ranges.
fn end_timeline(
    src: &mut Source,
    plan: &Plan,
    control: &ControlFile,
    end: &Ends,
    method: Method,
) -> Result<(TimelineId, Vec<WalRange>)> {
    let end_tli_raw: i64 = if src.session.in_recovery {
        src.session
            .query_one("SELECT min_recovery_end_timeline::bigint FROM pg_control_recovery()", &[])
            .map(|r| r.get(0))
            .unwrap_or(0)
    } else {
        i64::from(control.timeline.0)
    };
    let end_tli = if end_tli_raw > 0 { TimelineId(end_tli_raw as u32) } else { end.start_tli };
    if method == Method::Legacy && end_tli != end.start_tli {
        return Err(Error::StandbyPromoted {
            detail: format!("the standby moved from timeline {} to {end_tli} during the copy", end.start_tli),
        });
    }
    let history = if end_tli != end.start_tli {
        let p = plan.sources.data_directory().join("pg_wal").join(history_file_name(end_tli));
        plan.sources
            .read(&Path::new("pg_wal").join(history_file_name(end_tli)))
            .ok()
            .map(|b| {
                history::parse(&String::from_utf8_lossy(&b))
                    .map_err(|source| Error::History { path: p.clone(), source })
            })
            .transpose()?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok((end_tli, wal_ranges(end.start_lsn, end.start_tli, end.end_lsn, end_tli, &history)))
}

/// backup_label, tablespace_map and end_location.
fn our_files(end: &Ends) -> Vec<(&'static str, Vec<u8>)> {
    let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(l) = &end.label {
        extra.push((BACKUP_LABEL, l.clone().into_bytes()));
    }
    if let Some(m) = &end.spcmap {
        extra.push((TABLESPACE_MAP, m.clone().into_bytes()));
    }
    extra.push((END_LOCATION, label::render_end_location(end.end_lsn).into_bytes()));
    extra
}

/// The manifest's file list: `(files, bytes, vanished)`.
fn manifest_files(
    plan: &Plan,
    copied: &[copy::Copied],
    control_bytes: &[u8],
    control_mtime: i64,
    extra: &[(&str, Vec<u8>)],
) -> (Vec<ManifestFile>, u64, usize) {
    let control_rel = Path::new(CONTROL_PATH);
    let rels = plan.files.iter().filter(|(_, rel, _)| rel != control_rel).map(|(_, r, _)| r.as_path());
    let now = now_secs();
    let mut files: Vec<ManifestFile> = Vec::with_capacity(copied.len() + 4);
    let mut vanished = 0usize;
    let mut bytes = 0u64;
    let crc = |b: &[u8]| Some((ChecksumAlgorithm::Crc32c, crc32c::crc32c(b).to_le_bytes().to_vec()));
    for (rel, c) in rels.zip(copied) {
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
        checksum: crc(control_bytes),
    });
    bytes += control_bytes.len() as u64;
    for (name, b) in extra {
        bytes += b.len() as u64;
        files.push(ManifestFile {
            path: name.as_bytes().to_vec(),
            size: b.len() as u64,
            last_modified: manifest::format_last_modified(now),
            checksum: crc(b),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, bytes, vanished)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io(dir, "open for sync", e))?;
    f.sync_all().map_err(|e| Error::io(dir, "sync", e))
}

/// Make the staging directory the backup: sync everything, and only then
/// drop the incomplete marker and move it into place.
fn complete(staging: &Path, dest: &Path, sync: bool) -> Result<()> {
    if sync {
        copy::sync_filesystem(staging)?;
    }
    fs::remove_file(staging.join(INCOMPLETE_MARKER))
        .map_err(|e| Error::io(staging, "remove the incomplete marker", e))?;
    if sync {
        fsync_dir(staging)?;
    }
    if dest.exists() {
        fs::remove_dir(dest).map_err(|e| Error::io(dest, "replace the empty destination directory", e))?;
    }
    fs::rename(staging, dest).map_err(|e| Error::io(dest, "move the finished backup into place", e))?;
    if sync {
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// Whether the archive directory holds `name` whole: a plain file of the
/// segment size, or a compressed one that decompresses to it (a file
/// still being compressed into place does not).
fn archived_whole(dir: &Path, s3: &crate::objstore::S3Config, name: &str, seg: crate::pg::WalSegSize) -> bool {
    use crate::source::Fetched;
    let Ok(source) = crate::source::wal_archive(dir, s3) else { return false };
    match source.fetch(name) {
        Ok(Fetched::Found(f)) if f.size.is_some() => f.size == Some(seg.bytes()),
        Ok(Fetched::Found(mut f)) => std::io::copy(&mut (&mut f.reader).take(seg.bytes() + 1), &mut std::io::sink())
            .is_ok_and(|n| n == seg.bytes()),
        _ => false,
    }
}

/// Make sure the segment holding the backup's end reaches the archive: if
/// the primary has not archived it yet, ask it for one WAL switch and wait
/// (bounded) for the archiver.
fn ensure_end_segment_archived(
    primary: &mut Session,
    end_segment: String,
    archive: Option<(&Path, &crate::objstore::S3Config)>,
    seg: crate::pg::WalSegSize,
    timeout: Duration,
) -> Result<WalSwitchReport> {
    // The archiver counts a segment only once archive_command succeeded; a
    // file in the archive can still be half written by a plain `cp`, so it
    // counts only at its full size.
    let archived = |p: &mut Session| -> Result<bool> {
        let last = p.text("SELECT last_archived_wal FROM pg_stat_archiver")?;
        // Names of one timeline sort like their positions.
        let by_archiver = last.is_some_and(|l| l.len() >= 24 && l[..24] >= *end_segment.as_str());
        let in_dir = archive.is_none_or(|(dir, s3)| archived_whole(dir, s3, &end_segment, seg));
        Ok(by_archiver && in_dir)
    };
    let started = Instant::now();
    let before = archived(primary)?;
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
    primary.query_one("SELECT pg_switch_wal()::text", &[])?;
    report.switched = true;
    let deadline = started + timeout;
    while Instant::now() < deadline {
        if archived(primary)? {
            report.archived = true;
            break;
        }
        session::sleep_interruptibly(Duration::from_millis(200))?;
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
