//! `pgdrill restore`: copy a backup into a new data directory, make it a
//! sandbox, lock it, and hand it to the gate.
//!
//! A backup is untrusted input, and restore usually runs as root. So:
//!
//! 1. **Everything is read and checked before anything is written**: the
//!    backup's files are listed without following links; a link anywhere but
//!    `pg_tblspc/<oid>`, or a FIFO, socket or device, is refused; the listing
//!    is compared with the backup manifest (names and sizes), whose own
//!    checksum must hold; pg_control's CRC must hold.
//! 2. The files are copied through directory handles that never follow a
//!    link ([`crate::safefs`]), and each is checked against the manifest's
//!    checksum as it is copied. `global/pg_control` is held back.
//! 3. The configuration is made safe (no paths into the source's files, no
//!    archiving, no streaming from production) and the recovery settings
//!    written.
//! 4. The gate's lock is installed.
//! 5. `global/pg_control` is written, last.
//!
//! Without pg_control PostgreSQL refuses to start; with it, the lock is
//! already in place. A restore that fails before step 5 removes everything
//! it created: a failed command changes nothing.

mod extract;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::conn::ConnSpec;
use crate::copy::{self, CopyOptions, Job};
use crate::datadir::{BackupFiles, DirInfo, DirKind, ReadOptions, BACKUP_MANIFEST, CONTROL_PATH, TABLESPACE_MAP};
use crate::error::{Error, Result};
use crate::gate::{self, lock, GateConfig, GateReport, Then};
use crate::pg::conf;
use crate::pg::control::ControlFile;
use crate::pg::label::{self, TablespaceEntry};
use crate::pg::manifest::{ChecksumAlgorithm, ManifestFile};
use crate::pg::Lsn;
use crate::recovery::{self, RecoveryPlan, TimelineChoice};
use crate::safefs::{Dir, Kind};
use crate::server::{probe, OsUser, PgBin};
use crate::source::{BackupSource, S3Backup, TarBackup};

/// A validated restore request.
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    pub backup: PathBuf,
    pub target: PathBuf,
    pub wal_archive: Option<PathBuf>,
    /// How to reach object storage for `s3://` locations.
    pub s3: crate::objstore::S3Config,
    pub restore_command: Option<String>,
    pub primary_conninfo: Option<ConnSpec>,
    pub then: Then,
    pub port: Option<u16>,
    pub timeout: Duration,
    pub stall: Duration,
    pub no_start: bool,
    pub os_user: Option<String>,
    pub pg_bin: Option<PathBuf>,
    pub db_user: Option<String>,
    pub jobs: usize,
    pub tablespace_map: Vec<(u32, PathBuf)>,
    pub sync: bool,
    /// Restore without comparing the backup with its manifest.
    pub skip_manifest_check: bool,
    /// Stop at this LSN instead of the backup's end (never below it).
    pub end_lsn: Option<Lsn>,
    /// Stop at a time, transaction or restore point (never below the end).
    pub stop_at: Option<crate::recovery::StopAt>,
    pub quiet: bool,
}

/// A relocated tablespace.
#[derive(Clone, Debug, Serialize)]
pub struct RestoredTablespace {
    pub oid: u32,
    pub location: PathBuf,
}

/// The result of a restore; its JSON form is documented in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub backup: PathBuf,
    pub target: PathBuf,
    pub pg_major: u32,
    pub method: &'static str,
    pub end_lsn: Option<Lsn>,
    pub os_user: String,
    pub files: usize,
    pub bytes: u64,
    /// Files whose size and checksum were compared with the manifest.
    pub manifest_checked: usize,
    pub copy_secs: f64,
    pub tablespaces: Vec<RestoredTablespace>,
    pub port: Option<u16>,
    pub restore_command: Option<String>,
    pub streaming_from: Option<String>,
    /// What was changed in the copied configuration to keep it a sandbox.
    pub config_notes: Vec<String>,
    pub started: bool,
    pub gate: Option<GateReport>,
}

/// Files and directories that come with a backup but are not part of the
/// restored copy. A `pgdrill_gate` directory in a backup is someone's
/// planted gate state: never restored.
const NOT_RESTORED: &[&str] =
    &[BACKUP_MANIFEST, "postmaster.pid", "postmaster.opts", "backup_label.old", "tablespace_map.old", lock::STATE_DIR];

/// Settings in a copied postgresql.conf that could reach outside the copy.
const OUTSIDE_SETTINGS: &[&str] = &["data_directory", "hba_file", "ident_file", "external_pid_file"];

/// How many names a refusal lists before it says "and N more".
const NAMES_SHOWN: usize = 10;

/// A path in the backup, relative to the data directory or to one
/// tablespace's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rel {
    tablespace: Option<u32>,
    path: PathBuf,
}

impl Rel {
    /// The manifest's name for it (tablespaces as `pg_tblspc/<oid>/...`).
    fn manifest_key(&self) -> Vec<u8> {
        match self.tablespace {
            Some(oid) => Path::new("pg_tblspc").join(oid.to_string()).join(&self.path).as_os_str().as_bytes().to_vec(),
            None => self.path.as_os_str().as_bytes().to_vec(),
        }
    }
}

/// A tablespace of the backup: its contents' directory, and the link that
/// pointed there (pg_basebackup's plain format) if any.
struct SourceTablespace {
    oid: u32,
    root: Arc<Dir>,
    link: Option<PathBuf>,
}

/// One regular file of the backup.
struct SourceFile {
    rel: Rel,
    size: u64,
}

/// The backup, listed without following links.
struct Listing {
    root: Arc<Dir>,
    dirs: Vec<Rel>,
    files: Vec<SourceFile>,
    /// Files of the backup that are not restored (NOT_RESTORED, recovery
    /// files): still compared with the manifest.
    skipped: Vec<SourceFile>,
    tablespaces: Vec<SourceTablespace>,
    /// Entries no backup should have, described.
    refused: Vec<String>,
}

impl Listing {
    fn source_root(&self, tablespace: Option<u32>) -> &Arc<Dir> {
        tablespace.and_then(|oid| self.tablespaces.iter().find(|t| t.oid == oid)).map_or(&self.root, |t| &t.root)
    }
}

fn read_err(path: PathBuf) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::ReadInput { path, source }
}

/// List the backup. Only `pg_tblspc/<oid>` may be a link; any other link
/// or special file is recorded in `refused`.
fn list(backup: &Path, owner_uid: u32) -> Result<Listing> {
    let root = Arc::new(Dir::open(backup).map_err(read_err(backup.to_path_buf()))?);
    let mut l = Listing {
        root: Arc::clone(&root),
        dirs: Vec::new(),
        files: Vec::new(),
        skipped: Vec::new(),
        tablespaces: Vec::new(),
        refused: Vec::new(),
    };
    walk(&root, Path::new(""), None, false, owner_uid, &mut l)?;
    Ok(l)
}

/// List `dir` (at `rel`) into `l`. With `skip`, files are listed as not
/// restored and directories are not created.
fn walk(dir: &Dir, rel: &Path, tablespace: Option<u32>, skip: bool, owner_uid: u32, l: &mut Listing) -> Result<()> {
    let top = tablespace.is_none() && rel.as_os_str().is_empty();
    for (name, kind) in dir.entries().map_err(read_err(dir.path().to_path_buf()))? {
        let name_str = name.to_string_lossy();
        let skip = skip
            || (top
                && (NOT_RESTORED.contains(&name_str.as_ref())
                    || recovery::RECOVERY_FILES.contains(&name_str.as_ref())));
        let child = rel.join(&name);
        let shown = || dir.path().join(&name).display().to_string();
        if tablespace.is_none() && rel == Path::new("pg_tblspc") {
            if let Ok(oid) = name_str.parse::<u32>() {
                match tablespace_source(dir, &name, oid, kind, owner_uid) {
                    Ok(t) => {
                        let ts_root = Arc::clone(&t.root);
                        l.tablespaces.push(t);
                        walk(&ts_root, Path::new(""), Some(oid), false, owner_uid, l)?;
                    }
                    Err(why) => l.refused.push(format!("{}: {why}", shown())),
                }
                continue;
            }
        }
        let r = Rel { tablespace, path: child.clone() };
        match kind {
            Kind::Dir => {
                if !skip {
                    l.dirs.push(r);
                }
                let sub = dir.dir(Path::new(&name)).map_err(read_err(dir.path().join(&name)))?;
                walk(&sub, &child, tablespace, skip, owner_uid, l)?;
            }
            Kind::File => {
                let size = dir.meta(Path::new(&name)).map_err(read_err(dir.path().join(&name)))?.size;
                let f = SourceFile { rel: r, size };
                if skip {
                    l.skipped.push(f);
                } else {
                    l.files.push(f);
                }
            }
            Kind::Symlink => {
                let to = dir.read_link(Path::new(&name)).map(|t| t.display().to_string()).unwrap_or_default();
                l.refused.push(format!(
                    "{}: a symbolic link (to {to}); a backup may hold links only as pg_tblspc/<oid>",
                    shown()
                ));
            }
            Kind::Special => l.refused.push(format!("{}: a FIFO, socket or device, not a regular file", shown())),
        }
    }
    Ok(())
}

/// The directory holding tablespace `oid`'s contents: `pg_tblspc/<oid>`
/// itself (pgdrill's backups), or where its link points (pg_basebackup's
/// plain format). As root, a link is read only into a directory that the
/// backup's (non-root) owner owns, and every file copied from there must be
/// that user's too: the backup's author chose where the link points, and
/// root must not read a place that user could not.
fn tablespace_source(
    pg_tblspc: &Dir,
    name: &std::ffi::OsStr,
    oid: u32,
    kind: Kind,
    owner_uid: u32,
) -> std::result::Result<SourceTablespace, String> {
    match kind {
        Kind::Dir => {
            let root = pg_tblspc.dir(Path::new(name)).map_err(|e| e.to_string())?;
            Ok(SourceTablespace { oid, root: Arc::new(root), link: None })
        }
        Kind::Symlink => {
            let to = pg_tblspc.read_link(Path::new(name)).map_err(|e| e.to_string())?;
            let abs = if to.is_absolute() { to.clone() } else { pg_tblspc.path().join(&to) };
            let root = Dir::open(&abs).map_err(|e| format!("a link to {}: {e}", abs.display()))?;
            if OsUser::running_as_root() {
                let m = root.self_meta().map_err(|e| e.to_string())?;
                if owner_uid == 0 || m.uid != owner_uid {
                    return Err(format!(
                        "a link to {}, owned by uid {}; as root pgdrill follows a tablespace link only into a \
                         directory of the backup's owner (uid {owner_uid}), and never for a backup root owns",
                        abs.display(),
                        m.uid
                    ));
                }
            }
            Ok(SourceTablespace { oid, root: Arc::new(root), link: Some(abs) })
        }
        _ => Err("not a directory or a link to one".into()),
    }
}

/// Compare the listing with the manifest: the names and sizes, before
/// anything is copied. Paths pg_verifybackup ignores are ignored.
fn check_against_manifest(info: &DirInfo, l: &Listing) -> Vec<String> {
    let Some(m) = &info.manifest else { return Vec::new() };
    let mut problems = Vec::new();
    if !m.checksum_ok {
        problems.push("backup_manifest: its own checksum does not match its contents".to_string());
    }
    if let Some(id) = m.manifest.system_identifier.filter(|id| *id != info.control.system_identifier) {
        problems.push(format!(
            "backup_manifest: system identifier {id}, but pg_control says {}",
            info.control.system_identifier
        ));
    }
    let listed: HashMap<&[u8], &ManifestFile> = m.manifest.files.iter().map(|f| (f.path.as_slice(), f)).collect();
    let mut on_disk: HashSet<Vec<u8>> = HashSet::new();
    for f in l.files.iter().chain(&l.skipped) {
        let key = f.rel.manifest_key();
        if crate::verify::files::is_ignored(&key) {
            continue;
        }
        match listed.get(key.as_slice()) {
            None => problems.push(format!("{}: not in the backup manifest", String::from_utf8_lossy(&key))),
            Some(e) if e.size != f.size => problems.push(format!(
                "{}: {} bytes, the manifest says {}",
                String::from_utf8_lossy(&key),
                f.size,
                e.size
            )),
            Some(_) => {}
        }
        on_disk.insert(key);
    }
    for f in &m.manifest.files {
        if !crate::verify::files::is_ignored(&f.path) && !on_disk.contains(&f.path) {
            problems.push(format!("{}: in the manifest, missing from the backup", String::from_utf8_lossy(&f.path)));
        }
    }
    problems
}

/// One refusal for a list of problems, naming the first few.
fn refuse(backup: &Path, what: &str, problems: &[String]) -> Error {
    let mut detail = format!("{what}: {}", problems.iter().take(NAMES_SHOWN).cloned().collect::<Vec<_>>().join("; "));
    if problems.len() > NAMES_SHOWN {
        detail.push_str(&format!("; and {} more", problems.len() - NAMES_SHOWN));
    }
    Error::BackupDamaged { path: backup.to_path_buf(), detail }
}

/// Refuse a target that holds anything or runs a server.
fn check_target(target: &Path) -> Result<()> {
    if let Some(pid) = probe::running_postmaster(target) {
        return Err(Error::PostmasterRunning { path: target.to_path_buf(), pid });
    }
    match std::fs::read_dir(target) {
        Ok(mut rd) => match rd.next() {
            Some(_) => Err(Error::TargetNotEmpty { path: target.to_path_buf() }),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::ReadInput { path: target.to_path_buf(), source: e }),
    }
}

/// The port the restored copy will use: `--port`, else the backup's own
/// setting, else 5432.
fn planned_port(cfg: &RestoreConfig, backup: &dyn BackupFiles) -> u16 {
    cfg.port
        .or_else(|| {
            ["postgresql.auto.conf", "postgresql.conf"].iter().find_map(|f| {
                let text = backup.read_optional(f).ok()??;
                conf::get(&String::from_utf8_lossy(&text), "port").and_then(|p| p.parse().ok())
            })
        })
        .unwrap_or(5432)
}

/// The first directory above `path` that `user` may not search, if any.
fn unreachable_ancestor(path: &Path, user: &OsUser) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::fs::canonicalize(path).ok()?;
    for dir in abs.ancestors().skip(1) {
        let m = std::fs::metadata(dir).ok()?;
        let bit = if m.uid() == user.uid {
            0o100
        } else if m.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if m.mode() & bit == 0 {
            return Some(dir.to_path_buf());
        }
    }
    None
}

/// Directories this restore created, so a failure can remove them again,
/// and the owner and mode of existing ones it took over.
#[derive(Default)]
struct Created {
    dirs: Vec<PathBuf>,
    taken: Vec<(PathBuf, crate::safefs::Meta)>,
}

impl Created {
    /// Create `path` (and missing parents, which get ordinary modes) as a
    /// directory with mode 0700 owned by `owner`; an existing empty one is
    /// taken over. Returns a handle on it.
    fn dir(&mut self, path: &Path, owner: Option<&OsUser>) -> Result<Dir> {
        let mut missing = Vec::new();
        for a in path.ancestors() {
            if a.as_os_str().is_empty() || a.exists() {
                break;
            }
            missing.push(a.to_path_buf());
        }
        for (i, d) in missing.iter().rev().enumerate() {
            let leaf = i + 1 == missing.len();
            let mode = if leaf { 0o700 } else { 0o755 };
            match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), mode).create(d) {
                Ok(()) => self.dirs.push(d.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(d, "create directory", e)),
            }
        }
        let handle = Dir::open(path).map_err(|e| Error::io(path, "open directory", e))?;
        if !self.dirs.iter().any(|d| d == path) {
            let before = handle.self_meta().map_err(|e| Error::io(path, "stat", e))?;
            self.taken.push((path.to_path_buf(), before));
        }
        crate::safefs::set_owner_mode(&handle.fd(), owner, Some(0o700)).map_err(|e| Error::io(path, "chown", e))?;
        Ok(handle)
    }

    /// Remove what was created, newest first; directories that existed
    /// before are only emptied.
    fn undo(&self, emptied: &[&Dir]) {
        for d in emptied {
            let _ = d.clear();
        }
        for (path, before) in &self.taken {
            if let Ok(d) = Dir::open(path) {
                let owner = OsUser { name: String::new(), uid: before.uid, gid: before.gid, home: PathBuf::new() };
                let _ = crate::safefs::set_owner_mode(&d.fd(), Some(&owner), Some(before.mode));
            }
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// What a restore has read and decided before writing anything.
struct Plan {
    info: DirInfo,
    bin: PgBin,
    user: OsUser,
    listing: Listing,
    restore_command: Option<String>,
    /// A backup read as a stream (tar format, or in object storage): the
    /// source and the small files read from it (pg_control is written from
    /// these bytes).
    tar: Option<(Streamed, crate::datadir::Captured)>,
    /// A credential file to hand the restored server (object storage).
    handoff: Option<crate::objstore::handoff::Handoff>,
}

/// A backup that is read as a stream, twice (list and check, then write).
enum Streamed {
    Tar(TarBackup),
    S3(S3Backup),
}

impl Streamed {
    fn source(&self) -> &dyn BackupSource {
        match self {
            Streamed::Tar(t) => t,
            Streamed::S3(s) => s,
        }
    }

    fn tar(&self) -> Option<&TarBackup> {
        match self {
            Streamed::Tar(t) => Some(t),
            Streamed::S3(s) => s.tar(),
        }
    }

    fn tablespace_oids(&self) -> Vec<u32> {
        match self {
            Streamed::Tar(t) => t.tablespace_oids(),
            Streamed::S3(s) => s.tablespace_oids(),
        }
    }
}

/// Read a tar backup's listing (pass 1 of [`extract`]) into the listing
/// a directory gives. Its `root` is the directory holding the archives;
/// the tablespaces have no directories of their own to read.
fn list_tar(cfg: &RestoreConfig, t: Streamed) -> Result<(DirInfo, Listing, (Streamed, crate::datadir::Captured))> {
    let tl = extract::list(t.source(), t.tablespace_oids(), &cfg.backup)?;
    let info = DirInfo::read_from(&cfg.backup, &tl.captured, ReadOptions::default())?.0;
    // The directory holding the archives; object storage has none (a
    // streamed backup's files are never read through it).
    let root = match &t {
        Streamed::Tar(_) => &cfg.backup,
        Streamed::S3(_) => &std::env::temp_dir(),
    };
    let root = Arc::new(Dir::open(root).map_err(read_err(root.clone()))?);
    let listing = Listing {
        root: Arc::clone(&root),
        dirs: tl.dirs,
        files: tl.files,
        skipped: tl.skipped,
        tablespaces: tl
            .tablespaces
            .iter()
            .map(|oid| SourceTablespace { oid: *oid, root: Arc::clone(&root), link: None })
            .collect(),
        refused: tl.refused,
    };
    Ok((info, listing, (t, tl.captured)))
}

/// Restore a backup.
pub fn run(cfg: &RestoreConfig) -> Result<RestoreReport> {
    let plan = plan(cfg)?;
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let mut created = Created::default();
    let target = created.dir(&cfg.target, owner);
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            created.undo(&[]);
            return Err(e);
        }
    };
    if let Some(blocked) = owner.and_then(|u| unreachable_ancestor(&cfg.target, u)) {
        created.undo(&[&target]);
        return Err(Error::usage(
            format!(
                "the server's OS user {} cannot reach {} (no search permission on {})",
                plan.user.name,
                cfg.target.display(),
                blocked.display()
            ),
            Some(format!("chmod o+x {} (or choose a target {} can reach)", blocked.display(), plan.user.name)),
        ));
    }
    let mut tablespace_dirs = Vec::new();
    // From the first write to pg_control (or the undo), a signal must not
    // cut the restore in the middle: the watchdog waits for this guard,
    // and the steps below poll the flag, so an interrupted restore always
    // ends undone (and "run the command again" stays true).
    let writing = crate::signals::cleaning();
    let result = restore_into(cfg, &plan, &target, &mut created, &mut tablespace_dirs);
    if result.is_err() && target.meta_optional(Path::new(CONTROL_PATH)).ok().flatten().is_none() {
        // Nothing startable was made; leave everything as we found it.
        let _cleaning = crate::signals::cleaning();
        let mut emptied: Vec<&Dir> = vec![&target];
        emptied.extend(tablespace_dirs.iter());
        created.undo(&emptied);
    }
    drop(writing);
    // The copy is whole and locked: the gate (outside the guard, so the
    // watchdog cuts a blocked call in it as everywhere else; it fails
    // closed).
    let (mut report, gate_cfg) = match result {
        Ok(r) => r,
        Err(e) => {
            remove_credentials(cfg, &plan);
            return Err(e);
        }
    };
    if !cfg.no_start {
        let gate = gate::run(&gate_cfg);
        // The copy replays no more WAL from the bucket once the gate has
        // opened (or failed closed): the handed-over keys go.
        remove_credentials(cfg, &plan);
        report.gate = Some(gate?);
        report.started = true;
    }
    Ok(report)
}

/// Write the restored server's credential file for object storage, new,
/// 0600, owned by the server's OS user, through the target's parent's
/// handle (no link followed).
fn write_credentials(cfg: &RestoreConfig, plan: &Plan) -> Result<()> {
    let Some(h) = &plan.handoff else { return Ok(()) };
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let path = s3_credential_path(&std::path::absolute(&cfg.target).map_err(read_err(cfg.target.clone()))?);
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = Dir::open(parent).map_err(read_err(parent.to_path_buf()))?;
    let name = Path::new(path.file_name().unwrap_or_default());
    // A file left by an earlier run that was cut short is replaced.
    let _ = dir.remove_file(name);
    crate::objstore::handoff::write(h, &dir, name, owner)?;
    Ok(())
}

/// Remove the credential file (best effort: a failure is a warning).
fn remove_credentials(cfg: &RestoreConfig, plan: &Plan) {
    if plan.handoff.is_none() {
        return;
    }
    let Ok(target) = std::path::absolute(&cfg.target) else { return };
    let path = s3_credential_path(&target);
    let parent = path.parent().unwrap_or(Path::new("/"));
    let removed = Dir::open(parent).and_then(|d| d.remove_file(Path::new(path.file_name().unwrap_or_default())));
    if let Err(e) = removed.or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }) {
        crate::observe::note(
            crate::observe::Level::Warn,
            &format!("{}: could not remove the credential file: {e}", path.display()),
        );
    }
}

/// Stop between steps when a signal came.
fn unless_interrupted() -> Result<()> {
    if crate::signals::interrupted() {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// Read the backup and check everything that can be checked without
/// writing: what it is, that it is whole, where it will go.
fn plan(cfg: &RestoreConfig) -> Result<Plan> {
    let (info, tar_listing, tar) = read_backup(cfg)?;
    check_restorable(cfg, &info)?;
    let version = info.control.version();
    let bin = PgBin::find(cfg.pg_bin.as_deref(), Some(version.major))?;
    let user = OsUser::for_server(cfg.os_user.as_deref(), &cfg.backup)?;
    check_target(&cfg.target)?;
    let listing = match tar_listing {
        Some(l) => l,
        None => {
            use std::os::unix::fs::MetadataExt;
            let owner_uid = std::fs::metadata(&cfg.backup).map_err(read_err(cfg.backup.clone()))?.uid();
            list(&cfg.backup, owner_uid)?
        }
    };
    check_listing(cfg, &info, &listing)?;
    // A copy that could not start is found out before copying anything.
    let port = match &tar {
        Some((_, captured)) => planned_port(cfg, captured),
        None => planned_port(cfg, listing.root.as_ref()),
    };
    check_port_free(cfg, port)?;
    let (restore_command, handoff) = plan_restore_command(cfg, &user)?;
    Ok(Plan { info, bin, user, listing, restore_command, tar, handoff })
}

/// What the backup is: read from a directory, or listed from a stream (a
/// tar backup, object storage) with that listing and the small files
/// captured on the way.
#[allow(clippy::type_complexity)]
fn read_backup(
    cfg: &RestoreConfig,
) -> Result<(DirInfo, Option<Listing>, Option<(Streamed, crate::datadir::Captured)>)> {
    let tar = match crate::source::s3_backup(&cfg.backup, &cfg.s3)? {
        Some(s3) => Some(Streamed::S3(s3)),
        None => {
            TarBackup::detect(&cfg.backup).map_err(|e| crate::source::read_error(&cfg.backup, e))?.map(Streamed::Tar)
        }
    };
    Ok(match tar {
        Some(t) => {
            let (info, listing, tar) = list_tar(cfg, t)?;
            (info, Some(listing), Some(tar))
        }
        None => (DirInfo::read(&cfg.backup)?, None, None),
    })
}

/// A whole backup (not a data directory), with a pg_control to trust.
fn check_restorable(cfg: &RestoreConfig, info: &DirInfo) -> Result<()> {
    if info.incomplete {
        return Err(Error::NotADataDir {
            path: cfg.backup.clone(),
            reason: "the backup is incomplete (it was interrupted)".into(),
        });
    }
    if info.kind == DirKind::DataDirectory {
        return Err(Error::NotADataDir {
            path: cfg.backup.clone(),
            reason: "no backup_label and no end_location: this is a data directory, not a backup".into(),
        });
    }
    if !info.control.crc_ok {
        return Err(Error::BackupDamaged {
            path: cfg.backup.join(CONTROL_PATH),
            detail: "the CRC of pg_control does not match its contents".into(),
        });
    }
    Ok(())
}

/// Everything the listing must be before anything is written: nothing
/// refused, targets not below the backup's end, the manifest matched, the
/// tablespaces named by --tablespace-map present.
fn check_listing(cfg: &RestoreConfig, info: &DirInfo, listing: &Listing) -> Result<()> {
    if !listing.refused.is_empty() {
        return Err(refuse(&cfg.backup, "the backup holds what no backup may", &listing.refused));
    }
    // A target below the backup's own end is refused before anything is
    // written (the gate checks again, for resumes).
    gate::check_end_target(cfg.end_lsn.or(info.gate_target()), info.gate_target(), "--target-lsn")?;
    if let Some(at) = &cfg.stop_at {
        gate::check_stop_at(at, info)?;
    }
    if !cfg.skip_manifest_check {
        let problems = check_against_manifest(info, listing);
        if !problems.is_empty() {
            return Err(refuse(&cfg.backup, "the backup does not match its manifest", &problems));
        }
    }
    for oid in cfg.tablespace_map.iter().map(|(oid, _)| oid) {
        if !listing.tablespaces.iter().any(|t| t.oid == *oid) {
            return Err(Error::usage(format!("--tablespace-map {oid}=...: the backup has no tablespace {oid}"), None));
        }
    }
    Ok(())
}

/// The port the copy will listen on must be free (unless it is not started).
fn check_port_free(cfg: &RestoreConfig, port: u16) -> Result<()> {
    if cfg.no_start || std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Ok(());
    }
    let whose = if cfg.port.is_some() {
        "--port"
    } else {
        "the backup's own port; a restored copy beside its source needs another"
    };
    Err(Error::usage(format!("port {port} is in use ({whose})"), Some("pass a free --port N".into())))
}

/// The restore_command the copy gets (the user's, or one over the WAL
/// archive), and for an archive in object storage the credential handoff.
fn plan_restore_command(
    cfg: &RestoreConfig,
    user: &OsUser,
) -> Result<(Option<String>, Option<crate::objstore::handoff::Handoff>)> {
    let owner = OsUser::running_as_root().then_some(user);
    Ok(match (&cfg.restore_command, &cfg.wal_archive) {
        (Some(c), _) => {
            let target = std::path::absolute(&cfg.target).map_err(read_err(cfg.target.clone()))?;
            (Some(anchor_percent_p(c, &target)), None)
        }
        (None, Some(a)) if a.to_str().is_some_and(crate::objstore::is_s3) => {
            let (command, h) = s3_restore_command(cfg, a, owner)?;
            (Some(command), Some(h))
        }
        (None, Some(a)) => (Some(archive_restore_command(a, owner)?), None),
        (None, None) => (None, None),
    })
}

/// A user's restore_command with `%p` made absolute (`TARGET/%p`).
/// PostgreSQL runs the command in the data directory and passes a relative
/// `%p` (`pg_wal/RECOVERYXLOG`); some tools resolve a relative `%p` against
/// their own idea of the data directory instead (pgBackRest's `pg1-path`,
/// the production cluster's), and would write there. Anchored, the same
/// command works for `verify` (which passes absolute paths) and for the
/// restored copy.
pub fn anchor_percent_p(command: &str, target: &Path) -> String {
    let mut out = String::with_capacity(command.len() + 64);
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('p') => {
                chars.next();
                out.push_str(&shell_quote(&target.display().to_string()));
                out.push_str("/%p");
            }
            Some('%') => {
                chars.next();
                out.push_str("%%");
            }
            _ => out.push('%'),
        }
    }
    out
}

/// The restore_command for an archive directory: `cp` when every file is
/// stored plain (what PostgreSQL's documentation shows), else pgdrill's
/// own `wal-fetch`, which decompresses as it copies. That command names
/// this pgdrill binary by its absolute path (`PGDRILL_EXE` overrides it),
/// and as root the server's OS user must be able to run it.
fn archive_restore_command(archive: &Path, user: Option<&OsUser>) -> Result<String> {
    // The server runs the command from its data directory: a relative
    // archive path is made absolute here, where it was meant.
    let archive = &std::path::absolute(archive).map_err(|e| crate::source::read_error(archive, e))?;
    let compressed = crate::source::DirWal::archive(archive)
        .holds_compressed()
        .map_err(|e| crate::source::read_error(archive, e))?;
    if !compressed {
        return Ok(format!("cp {} %p", shell_quote(&format!("{}/%f", archive.display()))));
    }
    let exe = pgdrill_exe(&format!("the WAL archive {} holds compressed files", archive.display()), user)?;
    Ok(format!(
        "{} wal-fetch %f %p --archive {}",
        shell_quote(&exe.display().to_string()),
        shell_quote(&archive.display().to_string())
    ))
}

/// Where the restored server's credential file for object storage goes:
/// beside the target, outside the data directory (a backup of the copy
/// never carries it).
pub fn s3_credential_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.pgdrill-s3.env"))
}

/// The restore_command for a WAL archive in object storage: `pgdrill
/// wal-fetch` reading it with the credentials pgdrill uses now, handed
/// over in a file (written when the copy is; see
/// [`crate::objstore::handoff`]). Nothing secret is on the command line.
fn s3_restore_command(
    cfg: &RestoreConfig,
    archive: &Path,
    user: Option<&OsUser>,
) -> Result<(String, crate::objstore::handoff::Handoff)> {
    let text = archive.to_string_lossy().into_owned();
    let url = crate::objstore::S3Url::parse(&text).map_err(|source| Error::BadS3Url { url: text.clone(), source })?;
    let store = crate::objstore::Store::open(&url, &cfg.s3)?;
    let handoff = store.handoff()?;
    let exe = pgdrill_exe(&format!("the WAL archive {text} is in object storage"), user)?;
    let target = std::path::absolute(&cfg.target).map_err(read_err(cfg.target.clone()))?;
    Ok((
        format!(
            "{} wal-fetch %f %p --archive {} --s3-credentials {}",
            shell_quote(&exe.display().to_string()),
            shell_quote(&text),
            shell_quote(&s3_credential_path(&target).display().to_string())
        ),
        handoff,
    ))
}

/// This pgdrill binary's absolute path (`PGDRILL_EXE` overrides it), which
/// the server's OS user must be able to run (as root).
fn pgdrill_exe(why: &str, user: Option<&OsUser>) -> Result<PathBuf> {
    let exe = std::env::var_os("PGDRILL_EXE").map(PathBuf::from).or_else(|| std::env::current_exe().ok());
    let exe =
        exe.filter(|e| e.is_absolute() && e.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pgdrill")));
    let Some(exe) = exe else {
        return Err(Error::usage(
            format!("{why}: the pgdrill binary that would serve it as restore_command is unknown"),
            Some("set PGDRILL_EXE to the pgdrill binary's absolute path, or pass --restore-command".into()),
        ));
    };
    if let Some(u) = user {
        use std::os::unix::fs::MetadataExt;
        let runnable = std::fs::metadata(&exe).is_ok_and(|m| {
            let bit = if m.uid() == u.uid {
                0o100
            } else if m.gid() == u.gid {
                0o010
            } else {
                0o001
            };
            m.mode() & bit != 0
        });
        if let (false, _) | (_, Some(_)) = (runnable, unreachable_ancestor(&exe, u)) {
            return Err(Error::usage(
                format!(
                    "{why}: the server's OS user {} cannot run {} (for `pgdrill wal-fetch`)",
                    u.name,
                    exe.display()
                ),
                Some(
                    "install pgdrill where that user can run it (e.g. /usr/local/bin), or pass --restore-command"
                        .into(),
                ),
            ));
        }
    }
    Ok(exe)
}

/// One file to copy from the backup into the target, both through
/// no-follow directory handles.
struct RestoreJob {
    src: Arc<Dir>,
    src_rel: PathBuf,
    dst: Arc<Dir>,
    dst_rel: PathBuf,
    size: u64,
    checksum: Option<ChecksumAlgorithm>,
    required_owner: Option<u32>,
}

impl Job for RestoreJob {
    fn size_hint(&self) -> u64 {
        self.size
    }
    fn src_display(&self) -> PathBuf {
        self.src.path().join(&self.src_rel)
    }
    fn dst_display(&self) -> PathBuf {
        self.dst.path().join(&self.dst_rel)
    }
    fn open_src(&self) -> std::io::Result<Option<std::fs::File>> {
        self.src.open_file(&self.src_rel).map(Some)
    }
    fn create_dst(&self, mode: u32, owner: Option<&OsUser>) -> std::io::Result<std::fs::File> {
        self.dst.create_new(&self.dst_rel, mode, owner)
    }
    fn checksum(&self) -> Option<ChecksumAlgorithm> {
        self.checksum
    }
    fn required_owner(&self) -> Option<u32> {
        self.required_owner
    }
}

/// Where each tablespace goes: `--tablespace-map`, else
/// `<target>.tblspc/<oid>`; created empty, owned by the server's user.
fn place_tablespaces(
    cfg: &RestoreConfig,
    plan: &Plan,
    target: &Dir,
    created: &mut Created,
    dirs: &mut Vec<Dir>,
) -> Result<Vec<RestoredTablespace>> {
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let explicit: HashMap<u32, PathBuf> = cfg.tablespace_map.iter().cloned().collect();
    let mut out = Vec::new();
    for t in &plan.listing.tablespaces {
        let loc = match explicit.get(&t.oid) {
            Some(p) => p.clone(),
            None => {
                let name = target.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                // The parent is the server's too, or it could not reach the
                // tablespace (PostgreSQL checks the directory's owner).
                created.dir(&target.path().with_file_name(format!("{name}.tblspc")), owner)?;
                target.path().with_file_name(format!("{name}.tblspc")).join(t.oid.to_string())
            }
        };
        if std::fs::read_dir(&loc).is_ok_and(|mut r| r.next().is_some()) {
            return Err(Error::TargetNotEmpty { path: loc });
        }
        let handle = created.dir(&loc, owner)?;
        let location = std::fs::canonicalize(&loc).map_err(read_err(loc.clone()))?;
        if let Some(blocked) = owner.and_then(|u| unreachable_ancestor(&location, u)) {
            return Err(Error::usage(
                format!("the server's OS user cannot reach the tablespace directory {}", location.display()),
                Some(format!("chmod o+x {} (or pass another --tablespace-map)", blocked.display())),
            ));
        }
        dirs.push(handle);
        out.push(RestoredTablespace { oid: t.oid, location });
    }
    Ok(out)
}

/// Copy every file but pg_control, comparing each with the manifest.
/// Returns the files copied, bytes, and how many were checked.
fn copy_files(cfg: &RestoreConfig, plan: &Plan, target: &Dir, tablespace_dirs: &[Dir]) -> Result<(usize, u64, usize)> {
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let l = &plan.listing;
    let mut dst_roots: HashMap<Option<u32>, Arc<Dir>> = HashMap::new();
    dst_roots.insert(None, Arc::new(target.try_clone().map_err(read_err(target.path().to_path_buf()))?));
    for (t, d) in l.tablespaces.iter().zip(tablespace_dirs) {
        dst_roots.insert(Some(t.oid), Arc::new(d.try_clone().map_err(read_err(d.path().to_path_buf()))?));
    }
    let dst_of = |rel: &Rel| -> &Arc<Dir> { &dst_roots[&rel.tablespace] };
    for d in &l.dirs {
        dst_of(d)
            .create_dir(&d.path, 0o700, owner)
            .map_err(|e| Error::io(dst_of(d).path().join(&d.path), "create directory", e))?;
    }
    let listed: HashMap<Vec<u8>, &ManifestFile> = match (&plan.info.manifest, cfg.skip_manifest_check) {
        (Some(m), false) => m.manifest.files.iter().map(|f| (f.path.clone(), f)).collect(),
        _ => HashMap::new(),
    };
    let control = Rel { tablespace: None, path: PathBuf::from(CONTROL_PATH) };
    let files: Vec<&SourceFile> = l.files.iter().filter(|f| f.rel != control).collect();
    let jobs: Vec<RestoreJob> = files
        .iter()
        .map(|f| {
            let ts = l.tablespaces.iter().find(|t| Some(t.oid) == f.rel.tablespace);
            RestoreJob {
                src: Arc::clone(l.source_root(f.rel.tablespace)),
                src_rel: f.rel.path.clone(),
                dst: Arc::clone(dst_of(&f.rel)),
                dst_rel: f.rel.path.clone(),
                size: f.size,
                checksum: listed.get(&f.rel.manifest_key()).and_then(|e| e.checksum.as_ref().map(|(a, _)| *a)),
                // Files behind a tablespace link must be the backup owner's.
                required_owner: ts
                    .filter(|t| t.link.is_some() && OsUser::running_as_root())
                    .and_then(|t| t.root.self_meta().ok().map(|m| m.uid)),
            }
        })
        .collect();
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let pb = copy::progress_bar(total, "restore", cfg.quiet);
    let cancel = AtomicBool::new(false);
    let opts = CopyOptions {
        jobs: cfg.jobs,
        throttle: None,
        progress: &pb,
        owner,
        mode: None,
        vanish_ok: false,
        cancel: &cancel,
    };
    let copied = copy::copy_files(&jobs, &opts)?;
    pb.finish_and_clear();

    let mut bad = Vec::new();
    let mut checked = 0usize;
    for (f, c) in files.iter().zip(&copied) {
        let Some(entry) = listed.get(&f.rel.manifest_key()) else { continue };
        let digest_ok = match (&entry.checksum, &c.digest) {
            (Some((_, want)), Some(got)) => want == got,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if entry.size != c.size || !digest_ok {
            bad.push(format!(
                "{}: the copy's size or checksum differs from the backup manifest",
                String::from_utf8_lossy(&f.rel.manifest_key())
            ));
        }
        checked += 1;
    }
    if !bad.is_empty() {
        return Err(refuse(&cfg.backup, "the backup does not match its manifest", &bad));
    }
    Ok((copied.len(), copied.iter().map(|c| c.size).sum(), checked))
}

/// Extract a tar backup's members (pass 2 of [`extract`]), comparing each
/// with the manifest. Returns the files written, bytes, and how many were
/// checked.
fn extract_files(
    cfg: &RestoreConfig,
    plan: &Plan,
    tar: &Streamed,
    target: &Dir,
    tablespace_dirs: &[Dir],
) -> Result<(usize, u64, usize)> {
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let l = &plan.listing;
    let tablespaces: HashMap<u32, &Dir> = l.tablespaces.iter().map(|t| t.oid).zip(tablespace_dirs.iter()).collect();
    let listed: HashMap<Vec<u8>, &ManifestFile> = match (&plan.info.manifest, cfg.skip_manifest_check) {
        (Some(m), false) => m.manifest.files.iter().map(|f| (f.path.clone(), f)).collect(),
        _ => HashMap::new(),
    };
    let total: u64 = l.files.iter().map(|f| f.size).sum();
    let pb = copy::progress_bar(total, "restore", cfg.quiet);
    let to = extract::Targets { data: target, tablespaces, owner };
    let oids: Vec<u32> = l.tablespaces.iter().map(|t| t.oid).collect();
    let done = extract::extract(tar.source(), &l.files, &oids, &to, &listed, &pb)?;
    pb.finish_and_clear();
    if let Some(t) = tar.tar() {
        extract::extract_wal(t, target, owner)?;
    }
    if !done.bad.is_empty() {
        return Err(refuse(&cfg.backup, "the backup does not match its manifest", &done.bad));
    }
    Ok((done.files, done.bytes, done.checked))
}

/// Make a copied configuration safe to start next to production.
fn sanitize_config(target: &Dir, control: &ControlFile, owner: Option<&OsUser>) -> Result<Vec<String>> {
    let write = |name: &str, text: &str| {
        target
            .replace(Path::new(name), text.as_bytes(), 0o600, owner)
            .map_err(|e| Error::io(target.path().join(name), "write", e))
    };
    let read = |name: &str| {
        target
            .read_optional(Path::new(name))
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(read_err(target.path().join(name)))
    };
    let mut notes = Vec::new();
    if read("postgresql.conf")?.is_none() {
        // A Debian-style cluster keeps postgresql.conf outside PGDATA. A hot
        // standby refuses to start with lower limits than its primary had,
        // and pg_control records those.
        let mut text = String::from("# Written by pgdrill restore: the backup had no postgresql.conf.\n");
        text.push_str("# The limits below are the primary's, from pg_control.\n");
        let mut limits = vec![
            ("max_connections", control.max_connections),
            ("max_worker_processes", control.max_worker_processes),
            ("max_prepared_transactions", control.max_prepared_xacts),
            ("max_locks_per_transaction", control.max_locks_per_xact),
        ];
        if let Some(w) = control.max_wal_senders {
            limits.push(("max_wal_senders", w));
        }
        for (k, v) in limits {
            text.push_str(&format!("{k} = {v}\n"));
        }
        write("postgresql.conf", &text)?;
        notes.push("postgresql.conf: the backup had none; wrote one with the primary's limits".into());
    }
    // Settings that reach outside the copy go, wherever they are set.
    for name in ["postgresql.conf", "postgresql.auto.conf"] {
        let Some(text) = read(name)? else { continue };
        let outside: Vec<&str> =
            OUTSIDE_SETTINGS.iter().copied().filter(|k| conf::get(&text, k).is_some_and(|v| !v.is_empty())).collect();
        if !outside.is_empty() {
            write(name, &conf::replace_settings(&text, &outside, &[], ""))?;
            notes.push(format!("{name}: removed {} (they pointed outside the copy)", outside.join(", ")));
        }
    }
    for (name, default) in [("pg_hba.conf", "local all all peer\n"), ("pg_ident.conf", "")] {
        if read(name)?.is_none() {
            write(name, default)?;
            notes.push(format!("{name}: the backup had none; wrote a default"));
        }
    }
    for name in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        let f = target.open_file(Path::new(name)).map_err(read_err(target.path().join(name)))?;
        crate::safefs::set_owner_mode(&f, owner, Some(0o600))
            .map_err(|e| Error::io(target.path().join(name), "chmod", e))?;
    }
    Ok(notes)
}

/// The recovery configuration: WAL from the archive or a command, a
/// sandbox, and the tablespace map pointing at the new locations.
fn configure(
    cfg: &RestoreConfig,
    plan: &Plan,
    target: &Dir,
    tablespaces: &[RestoredTablespace],
) -> Result<(Vec<String>, Option<String>)> {
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let version = plan.info.control.version();
    let notes = sanitize_config(target, &plan.info.control, owner)?;
    let restore_command = plan.restore_command.clone();
    recovery::write(
        target,
        version,
        &RecoveryPlan {
            standby_mode: true,
            restore_command: restore_command.clone(),
            primary_conninfo: cfg.primary_conninfo.as_ref().map(ConnSpec::to_server_conninfo),
            target: None,
            timeline: TimelineChoice::Latest,
            sandbox: true,
            port: cfg.port,
            hot_standby: true,
        },
        owner,
    )?;
    let links = target
        .create_dir(Path::new("pg_tblspc"), 0o700, owner)
        .map_err(|e| Error::io(target.path().join("pg_tblspc"), "create directory", e))?;
    for t in tablespaces {
        links
            .symlink(&t.location, Path::new(&t.oid.to_string()), owner)
            .map_err(|e| Error::io(links.path().join(t.oid.to_string()), "create symlink", e))?;
    }
    if let Some(entries) = &plan.info.tablespace_map {
        let relocated: Vec<TablespaceEntry> = entries
            .iter()
            .map(|e| TablespaceEntry {
                oid: e.oid,
                path: tablespaces
                    .iter()
                    .find(|t| t.oid == e.oid)
                    .map_or(e.path.clone(), |t| t.location.display().to_string()),
            })
            .collect();
        let text = label::render_tablespace_map(&relocated, version.tablespace_map_escapes);
        target
            .replace(Path::new(TABLESPACE_MAP), text.as_bytes(), 0o600, owner)
            .map_err(|e| Error::io(target.path().join(TABLESPACE_MAP), "write", e))?;
    }
    Ok((notes, restore_command))
}

fn restore_into(
    cfg: &RestoreConfig,
    plan: &Plan,
    target: &Dir,
    created: &mut Created,
    tablespace_dirs: &mut Vec<Dir>,
) -> Result<(RestoreReport, GateConfig)> {
    let started = Instant::now();
    let info = &plan.info;
    let version = info.control.version();
    let owner = OsUser::running_as_root().then_some(&plan.user);
    let tablespaces = place_tablespaces(cfg, plan, target, created, tablespace_dirs)?;
    let (files, bytes, manifest_checked) = match &plan.tar {
        Some((t, _)) => extract_files(cfg, plan, t, target, tablespace_dirs)?,
        None => copy_files(cfg, plan, target, tablespace_dirs)?,
    };
    unless_interrupted()?;
    let (notes, restore_command) = configure(cfg, plan, target, &tablespaces)?;
    write_credentials(cfg, plan)?;
    unless_interrupted()?;

    // Lock before pg_control exists; then pg_control, last.
    let floor = info.gate_target();
    let end = cfg.end_lsn.or(floor);
    let gate_cfg = gate_config(cfg, plan, target, end);
    let prepared = gate::prepare(target, version, end, floor, &gate_cfg, false)?;
    if cfg.sync {
        copy::sync_filesystem(target.path())?;
    }
    unless_interrupted()?;
    let control_bytes = write_control_last(cfg, plan, target, owner)?;
    let copy_secs = started.elapsed().as_secs_f64();

    Ok((
        RestoreReport {
            backup: cfg.backup.clone(),
            target: target.path().to_path_buf(),
            pg_major: version.major,
            method: if info.kind == DirKind::LegacyBackup { "legacy" } else { "label" },
            end_lsn: end,
            os_user: plan.user.name.clone(),
            files: files + 1,
            bytes: bytes + control_bytes.len() as u64,
            manifest_checked,
            copy_secs,
            tablespaces,
            port: Some(prepared.port),
            restore_command,
            streaming_from: cfg.primary_conninfo.as_ref().map(|c| c.to_string()),
            config_notes: notes,
            started: false,
            gate: None,
        },
        gate_cfg,
    ))
}

/// The gate's configuration for the restored copy.
fn gate_config(cfg: &RestoreConfig, plan: &Plan, target: &Dir, end: Option<Lsn>) -> GateConfig {
    GateConfig {
        pgdata: target.path().to_path_buf(),
        end_lsn: end,
        stop_at: cfg.stop_at.clone(),
        then: Some(cfg.then),
        timeout: cfg.timeout,
        stall: cfg.stall,
        pg_bin: Some(plan.bin.dir.clone()),
        os_user: Some(plan.user.name.clone()),
        db_user: cfg.db_user.clone(),
        wal_archive: cfg.wal_archive.clone(),
        quiet: cfg.quiet,
    }
}

/// Write pg_control, the restore's last file (the copy cannot start
/// without it), synced; returns its bytes.
fn write_control_last(cfg: &RestoreConfig, plan: &Plan, target: &Dir, owner: Option<&OsUser>) -> Result<Vec<u8>> {
    let control_bytes = match &plan.tar {
        Some((_, captured)) => match captured.files.get(CONTROL_PATH) {
            Some((b, size)) if *size == b.len() as u64 => b.clone(),
            _ => {
                return Err(Error::BackupDamaged {
                    path: cfg.backup.join(CONTROL_PATH),
                    detail: "pg_control is missing from base.tar, or far larger than a pg_control".into(),
                })
            }
        },
        None => plan.listing.root.read(Path::new(CONTROL_PATH)).map_err(read_err(cfg.backup.join(CONTROL_PATH)))?,
    };
    let control_dst = target.path().join(CONTROL_PATH);
    let mut f = target
        .create_new(Path::new(CONTROL_PATH), 0o600, owner)
        .map_err(|e| Error::io(&control_dst, "create file", e))?;
    f.write_all(&control_bytes).map_err(|e| Error::io(&control_dst, "write", e))?;
    f.sync_all().map_err(|e| Error::io(&control_dst, "fsync", e))?;
    drop(f);
    if cfg.sync {
        copy::sync_filesystem(target.path())?;
    }
    Ok(control_bytes)
}

/// Quote a path for a shell command line (restore_command runs in a shell).
pub fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-%+=:,".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_p_is_anchored_in_the_target() {
        let t = Path::new("/srv/restore");
        assert_eq!(anchor_percent_p("pgbackrest archive-get %f %p", t), "pgbackrest archive-get %f /srv/restore/%p");
        assert_eq!(anchor_percent_p("cp '/a/%f' \"%p\" # 100%%", t), "cp '/a/%f' \"/srv/restore/%p\" # 100%%");
        assert_eq!(anchor_percent_p("x %p", Path::new("/my dir")), "x '/my dir'/%p");
    }

    #[test]
    fn quoting_for_restore_command() {
        assert_eq!(shell_quote("/srv/archive/%f"), "/srv/archive/%f");
        assert_eq!(shell_quote("/srv/my archive/%f"), "'/srv/my archive/%f'");
        assert_eq!(shell_quote("/it's/%f"), "'/it'\\''s/%f'");
    }

    #[test]
    fn tablespace_files_map_to_manifest_paths() {
        let rel = Rel { tablespace: Some(16400), path: PathBuf::from("PG_15_202209061/5/16500") };
        assert_eq!(rel.manifest_key(), b"pg_tblspc/16400/PG_15_202209061/5/16500".to_vec());
        let rel = Rel { tablespace: None, path: PathBuf::from("base/1/1259") };
        assert_eq!(rel.manifest_key(), b"base/1/1259".to_vec());
    }

    #[test]
    fn links_and_special_files_are_refused_when_listed() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().join("backup");
        std::fs::create_dir_all(b.join("pg_tblspc/16400/PG_15_1")).unwrap();
        std::fs::create_dir_all(b.join("global")).unwrap();
        std::fs::write(b.join("global/pg_control"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", b.join("postgresql.conf")).unwrap();
        std::os::unix::fs::symlink("/tmp", b.join("log")).unwrap();
        nix::unistd::mkfifo(&b.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::create_dir_all(b.join(lock::STATE_DIR)).unwrap();
        let l = list(&b, 12345).unwrap();
        let refused = l.refused.join("\n");
        assert!(refused.contains("postgresql.conf: a symbolic link (to /etc/passwd)"), "{refused}");
        assert!(refused.contains("log: a symbolic link"), "{refused}");
        assert!(refused.contains("fifo: a FIFO"), "{refused}");
        assert_eq!(l.refused.len(), 3);
        // Planted gate state is never restored; pg_tblspc/<oid> directories are tablespaces.
        assert!(!l.dirs.iter().any(|d| d.path.starts_with(lock::STATE_DIR)));
        std::fs::write(b.join(lock::STATE_DIR).join("state.json"), b"{}").unwrap();
        let l = list(&b, 12345).unwrap();
        assert!(l.skipped.iter().any(|f| f.rel.path == Path::new(lock::STATE_DIR).join("state.json")));
        assert!(!l.files.iter().any(|f| f.rel.path.starts_with(lock::STATE_DIR)));
        assert_eq!(l.tablespaces.len(), 1);
        assert_eq!(l.tablespaces[0].oid, 16400);
    }
}
