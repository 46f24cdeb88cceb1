//! `pgdrill restore`: copy a backup into a new data directory, make it a
//! sandbox, lock it, and hand it to the gate.
//!
//! Order matters, so that an interrupted restore can never be started as if
//! it were complete:
//!
//! 1. every file but `global/pg_control` is copied (checked against the
//!    backup's manifest as it goes);
//! 2. the configuration is made safe (no paths into the source's files, no
//!    archiving, no streaming from production) and the recovery settings
//!    written;
//! 3. the gate's lock is installed;
//! 4. `global/pg_control` is written, last.
//!
//! Without pg_control PostgreSQL refuses to start; with it, the lock is
//! already in place.

pub mod recovery;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::conn::ConnSpec;
use crate::copy::{self, CopyJob, CopyOptions};
use crate::datadir::{self, DirInfo, DirKind, BACKUP_MANIFEST, CONTROL_PATH, TABLESPACE_MAP};
use crate::error::{Error, Result};
use crate::gate::{self, GateConfig, GateReport, Then};
use crate::pg::conf;
use crate::pg::control::ControlFile;
use crate::pg::label::{self, TablespaceEntry};
use crate::pg::manifest::ChecksumAlgorithm;
use crate::pg::Lsn;
use crate::server::OsUser;
use recovery::{RecoveryPlan, TimelineChoice};

/// A validated restore request.
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    pub backup: PathBuf,
    pub target: PathBuf,
    pub wal_archive: Option<PathBuf>,
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

/// Files that come with a backup but are not part of the restored copy.
const NOT_RESTORED: &[&str] =
    &[BACKUP_MANIFEST, "postmaster.pid", "postmaster.opts", "backup_label.old", "tablespace_map.old"];

/// Settings in a copied postgresql.conf that could reach outside the copy.
const OUTSIDE_SETTINGS: &[&str] = &["data_directory", "hba_file", "ident_file", "external_pid_file"];

/// Refuse a target that holds anything or runs a server.
fn check_target(target: &Path) -> Result<()> {
    if let Some(pid) = datadir::running_postmaster(target) {
        return Err(Error::PostmasterRunning { path: target.to_path_buf(), pid });
    }
    match fs::read_dir(target) {
        Ok(mut rd) => match rd.next() {
            Some(_) => Err(Error::TargetNotEmpty { path: target.to_path_buf() }),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::ReadInput { path: target.to_path_buf(), source: e }),
    }
}

fn create_target(target: &Path, owner: Option<&OsUser>) -> Result<()> {
    // Parents get ordinary modes; only the data directory itself is 0700.
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, "create directory", e))?;
    }
    copy::create_dir(target, owner)?;
    fs::set_permissions(target, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(target, "chmod", e))?;
    if let Some(u) = owner {
        if let Some(blocked) = unreachable_ancestor(target, u) {
            return Err(Error::usage(
                format!(
                    "the server's OS user {} cannot reach {} (no search permission on {})",
                    u.name,
                    target.display(),
                    blocked.display()
                ),
                Some(format!("chmod o+x {} (or choose a target {} can reach)", blocked.display(), u.name)),
            ));
        }
    }
    Ok(())
}

/// The first directory above `path` that `user` may not search, if any.
fn unreachable_ancestor(path: &Path, user: &OsUser) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let abs = fs::canonicalize(path).ok()?;
    for dir in abs.ancestors().skip(1) {
        let m = fs::metadata(dir).ok()?;
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

/// The port the restored copy will use: `--port`, else the backup's own
/// setting, else 5432.
fn planned_port(cfg: &RestoreConfig) -> u16 {
    cfg.port
        .or_else(|| {
            ["postgresql.auto.conf", "postgresql.conf"].iter().find_map(|f| {
                fs::read_to_string(cfg.backup.join(f))
                    .ok()
                    .and_then(|t| conf::get(&t, "port"))
                    .and_then(|p| p.parse().ok())
            })
        })
        .unwrap_or(5432)
}

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
        use std::os::unix::ffi::OsStrExt;
        match self.tablespace {
            Some(oid) => Path::new("pg_tblspc").join(oid.to_string()).join(&self.path).as_os_str().as_bytes().to_vec(),
            None => self.path.as_os_str().as_bytes().to_vec(),
        }
    }
}

/// Walk the backup: directories, files, and tablespace roots.
struct Listing {
    dirs: Vec<Rel>,
    files: Vec<(PathBuf, Rel, u64)>,
    symlinks: Vec<(Rel, PathBuf)>,
    /// OID → the backup's directory holding that tablespace's contents.
    tablespaces: Vec<(u32, PathBuf)>,
}

fn list(backup: &Path) -> Result<Listing> {
    let mut l = Listing { dirs: Vec::new(), files: Vec::new(), symlinks: Vec::new(), tablespaces: Vec::new() };
    fn walk(dir: &Path, rel: &Path, tablespace: Option<u32>, l: &mut Listing) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(|e| Error::ReadInput { path: dir.to_path_buf(), source: e })?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| Error::ReadInput { path: dir.to_path_buf(), source: e })?;
        entries.sort_by_key(|e| e.file_name());
        let top = tablespace.is_none() && rel.as_os_str().is_empty();
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if top && (NOT_RESTORED.contains(&name.as_str()) || recovery::RECOVERY_FILES.contains(&name.as_str())) {
                continue;
            }
            let path = e.path();
            let child = rel.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
            // pg_tblspc/<oid>: our backups hold directories, pg_basebackup
            // plain ones symlinks to where it put the tablespace.
            if tablespace.is_none() && rel == Path::new("pg_tblspc") {
                if let Ok(oid) = name.parse::<u32>() {
                    let real =
                        fs::canonicalize(&path).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
                    l.tablespaces.push((oid, real.clone()));
                    walk(&real, Path::new(""), Some(oid), l)?;
                    continue;
                }
            }
            let r = Rel { tablespace, path: child.clone() };
            if meta.file_type().is_symlink() {
                let t = fs::read_link(&path).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
                l.symlinks.push((r, t));
            } else if meta.is_dir() {
                l.dirs.push(r);
                walk(&path, &child, tablespace, l)?;
            } else if meta.is_file() {
                l.files.push((path, r, meta.len()));
            }
        }
        Ok(())
    }
    walk(backup, Path::new(""), None, &mut l)?;
    Ok(l)
}

/// Make a copied configuration safe to start next to production.
fn sanitize_config(target: &Path, control: &ControlFile, owner: Option<&OsUser>) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let conf_path = target.join("postgresql.conf");
    if !conf_path.exists() {
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
        fs::write(&conf_path, text).map_err(|e| Error::io(&conf_path, "write", e))?;
        notes.push("postgresql.conf: the backup had none; wrote one with the primary's limits".into());
    }
    // Settings that reach outside the copy go, wherever they are set.
    for name in ["postgresql.conf", "postgresql.auto.conf"] {
        let p = target.join(name);
        let Ok(text) = fs::read_to_string(&p) else { continue };
        let outside: Vec<&str> =
            OUTSIDE_SETTINGS.iter().copied().filter(|k| conf::get(&text, k).is_some_and(|v| !v.is_empty())).collect();
        if !outside.is_empty() {
            let rewritten = conf::replace_settings(&text, &outside, &[], "");
            fs::write(&p, rewritten).map_err(|e| Error::io(&p, "write", e))?;
            notes.push(format!("{name}: removed {} (they pointed outside the copy)", outside.join(", ")));
        }
    }
    for (name, default) in [("pg_hba.conf", "local all all peer\n"), ("pg_ident.conf", "")] {
        let p = target.join(name);
        if !p.exists() {
            fs::write(&p, default).map_err(|e| Error::io(&p, "write", e))?;
            notes.push(format!("{name}: the backup had none; wrote a default"));
        }
    }
    for name in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        let p = target.join(name);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(&p, "chmod", e))?;
        if let Some(u) = owner {
            u.chown(&p)?;
        }
    }
    Ok(notes)
}

/// Restore a backup.
pub fn run(cfg: &RestoreConfig) -> Result<RestoreReport> {
    let info = DirInfo::read(&cfg.backup)?;
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
    let version = info.control.version();
    let bin = crate::server::PgBin::find(cfg.pg_bin.as_deref(), Some(version.major))?;
    let user = OsUser::for_server(cfg.os_user.as_deref(), &cfg.backup)?;
    let owner = OsUser::running_as_root().then_some(&user);
    check_target(&cfg.target)?;
    // A copy that could not start is found out before copying anything.
    let port = planned_port(cfg);
    if !cfg.no_start && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        let whose = if cfg.port.is_some() {
            "--port"
        } else {
            "the backup's own port; a restored copy beside its source needs another"
        };
        return Err(Error::usage(format!("port {port} is in use ({whose})"), Some("pass a free --port N".into())));
    }
    create_target(&cfg.target, owner)?;
    let target = fs::canonicalize(&cfg.target).map_err(|e| Error::ReadInput { path: cfg.target.clone(), source: e })?;
    let result = restore_into(cfg, &info, &target, &user, owner, &bin);
    if result.is_err() && !target.join(CONTROL_PATH).exists() {
        // Nothing startable was made; leave the target as we found it.
        if let Ok(rd) = fs::read_dir(&target) {
            for e in rd.flatten() {
                let _ = if e.path().is_dir() { fs::remove_dir_all(e.path()) } else { fs::remove_file(e.path()) };
            }
        }
    }
    result
}

fn restore_into(
    cfg: &RestoreConfig,
    info: &DirInfo,
    target: &Path,
    user: &OsUser,
    owner: Option<&OsUser>,
    bin: &crate::server::PgBin,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let version = info.control.version();
    let listing = list(&cfg.backup)?;

    // Where each tablespace goes: --tablespace-map, else beside the target.
    let explicit: HashMap<u32, PathBuf> = cfg.tablespace_map.iter().cloned().collect();
    let mut tablespaces = Vec::new();
    let mut tblspc_dest: HashMap<u32, PathBuf> = HashMap::new();
    for (oid, _) in &listing.tablespaces {
        let loc = match explicit.get(oid) {
            Some(p) => p.clone(),
            None => {
                let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                target.with_file_name(format!("{name}.tblspc")).join(oid.to_string())
            }
        };
        if fs::read_dir(&loc).is_ok_and(|mut r| r.next().is_some()) {
            return Err(Error::TargetNotEmpty { path: loc });
        }
        copy::create_dir(&loc, owner)?;
        let loc = fs::canonicalize(&loc).map_err(|e| Error::ReadInput { path: loc.clone(), source: e })?;
        tblspc_dest.insert(*oid, loc.clone());
        tablespaces.push(RestoredTablespace { oid: *oid, location: loc });
    }
    for oid in explicit.keys() {
        if !tblspc_dest.contains_key(oid) {
            return Err(Error::usage(format!("--tablespace-map {oid}=...: the backup has no tablespace {oid}"), None));
        }
    }
    let map_path = |rel: &Rel| -> PathBuf {
        match rel.tablespace.and_then(|oid| tblspc_dest.get(&oid)) {
            Some(base) => base.join(&rel.path),
            None => target.join(&rel.path),
        }
    };

    for d in &listing.dirs {
        copy::create_dir(&map_path(d), owner)?;
    }
    copy::create_dir(&target.join("pg_tblspc"), owner)?;
    for t in &tablespaces {
        let link = target.join("pg_tblspc").join(t.oid.to_string());
        std::os::unix::fs::symlink(&t.location, &link).map_err(|e| Error::io(&link, "create symlink", e))?;
        if let Some(u) = owner {
            u.chown(&link)?;
        }
    }
    for (rel, t) in &listing.symlinks {
        let p = map_path(rel);
        std::os::unix::fs::symlink(t, &p).map_err(|e| Error::io(&p, "create symlink", e))?;
    }
    let control_rel = Rel { tablespace: None, path: PathBuf::from(CONTROL_PATH) };
    let files: Vec<&(PathBuf, Rel, u64)> = listing.files.iter().filter(|f| f.1 != control_rel).collect();
    let jobs: Vec<CopyJob> =
        files.iter().map(|(s, r, n)| CopyJob { src: s.clone(), dst: map_path(r), size_hint: *n }).collect();
    let total: u64 = jobs.iter().map(|j| j.size_hint).sum();
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

    // Compare with the manifest while we have the checksums.
    let mut manifest_checked = 0usize;
    if let Some(m) = &info.manifest {
        let by_path: HashMap<&[u8], &crate::pg::manifest::ManifestFile> =
            m.manifest.files.iter().map(|f| (f.path.as_slice(), f)).collect();
        for ((_, rel, _), c) in files.iter().zip(&copied) {
            let key = rel.manifest_key();
            let Some(entry) = by_path.get(key.as_slice()) else { continue };
            let bad = entry.size != c.size
                || matches!(&entry.checksum, Some((ChecksumAlgorithm::Crc32c, d)) if d.as_slice() != c.crc32c.to_le_bytes());
            if bad {
                return Err(Error::BackupDamaged {
                    path: cfg.backup.join(String::from_utf8_lossy(&key).as_ref()),
                    detail: format!("size {} or checksum differs from the backup manifest", c.size),
                });
            }
            manifest_checked += 1;
        }
    }

    // The configuration: safe to run beside production.
    let notes = sanitize_config(target, &info.control, owner)?;
    let restore_command = cfg
        .restore_command
        .clone()
        .or_else(|| cfg.wal_archive.as_ref().map(|a| format!("cp {} %p", shell_quote(&format!("{}/%f", a.display())))));
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
    if let Some(entries) = &info.tablespace_map {
        let relocated: Vec<TablespaceEntry> = entries
            .iter()
            .map(|e| TablespaceEntry {
                oid: e.oid,
                path: tblspc_dest.get(&e.oid).map_or(e.path.clone(), |p| p.display().to_string()),
            })
            .collect();
        let p = target.join(TABLESPACE_MAP);
        fs::write(&p, label::render_tablespace_map(&relocated, version.tablespace_map_escapes))
            .map_err(|e| Error::io(&p, "write", e))?;
        if let Some(u) = owner {
            u.chown(&p)?;
        }
    }

    // Lock before pg_control exists; then pg_control, last.
    let end = info.gate_target();
    let gate_cfg = GateConfig {
        pgdata: target.to_path_buf(),
        end_lsn: end,
        then: Some(cfg.then),
        timeout: cfg.timeout,
        stall: cfg.stall,
        pg_bin: Some(bin.dir.clone()),
        os_user: Some(user.name.clone()),
        db_user: cfg.db_user.clone(),
        wal_archive: cfg.wal_archive.clone(),
        quiet: cfg.quiet,
    };
    let prepared = gate::prepare(target, version, end, &gate_cfg)?;
    if cfg.sync {
        copy::sync_filesystem(target)?;
    }
    let control_src = cfg.backup.join(CONTROL_PATH);
    let control_bytes =
        fs::read(&control_src).map_err(|e| Error::ReadInput { path: control_src.clone(), source: e })?;
    let control_dst = target.join(CONTROL_PATH);
    fs::write(&control_dst, &control_bytes).map_err(|e| Error::io(&control_dst, "write", e))?;
    fs::set_permissions(&control_dst, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&control_dst, "chmod", e))?;
    if let Some(u) = owner {
        u.chown(&control_dst)?;
    }
    if cfg.sync {
        copy::sync_filesystem(target)?;
    }
    let copy_secs = started.elapsed().as_secs_f64();

    let gate = if cfg.no_start { None } else { Some(gate::run(&gate_cfg)?) };
    Ok(RestoreReport {
        backup: cfg.backup.clone(),
        target: target.to_path_buf(),
        pg_major: version.major,
        method: if info.kind == DirKind::LegacyBackup { "legacy" } else { "label" },
        end_lsn: end,
        os_user: user.name.clone(),
        files: copied.len() + 1,
        bytes: copied.iter().map(|c| c.size).sum::<u64>() + control_bytes.len() as u64,
        manifest_checked,
        copy_secs,
        tablespaces,
        port: Some(prepared.port),
        restore_command,
        streaming_from: cfg.primary_conninfo.as_ref().map(|c| c.to_string()),
        config_notes: notes,
        started: gate.is_some(),
        gate,
    })
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
}
