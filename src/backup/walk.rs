//! Listing a data directory for a backup, leaving out what pg_basebackup
//! leaves out (`src/backend/backup/basebackup.c`: `excludeDirContents`,
//! `excludeFiles`, and the unlogged/temporary relation rules), plus the
//! recovery and bookkeeping files a standby carries that must never travel
//! into a backup.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pg::relfile;

/// Top-level directories whose contents are skipped; the directory itself
/// is kept (empty).
pub const EMPTIED_DIRS: &[&str] =
    &["pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans"];

/// Top-level files never copied.
pub const SKIPPED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    // Not excluded by pg_basebackup, but a standby's recovery state must not
    // travel: restore writes its own.
    "backup_label.old",
    "tablespace_map.old",
    "standby.signal",
    "recovery.signal",
    "recovery.conf",
    "recovery.done",
    // Our own bookkeeping.
    "end_location",
    crate::datadir::INCOMPLETE_MARKER,
];

/// Top-level directories never copied (pgdrill's gate state).
pub const SKIPPED_DIRS: &[&str] = &["pgdrill_gate"];

/// Whether a name is skipped at any depth.
pub fn skipped_anywhere(name: &str) -> bool {
    name.starts_with("pgsql_tmp") || name.starts_with("pg_internal.init")
}

/// The files of a database directory to leave out: temporary relations and
/// every fork but `_init` of unlogged relations.
pub fn db_dir_exclusions<'a>(names: impl Iterator<Item = &'a str> + Clone) -> HashSet<String> {
    let unlogged: HashSet<&str> = relfile::unlogged_files(names.clone()).into_iter().collect();
    names.filter(|n| relfile::is_temp_relation(n) || unlogged.contains(n)).map(str::to_string).collect()
}

/// What to create in the backup.
#[derive(Debug, Default)]
pub struct Plan {
    /// Directories, relative, parents before children.
    pub dirs: Vec<PathBuf>,
    /// Regular files: source path, relative path, size.
    pub files: Vec<(PathBuf, PathBuf, u64)>,
    /// Symbolic links other than tablespaces: relative path, target.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Tablespaces: OID and where its symlink pointed.
    pub tablespaces: Vec<(u32, PathBuf)>,
    /// Paths left out, relative (for reports and tests).
    pub excluded: Vec<PathBuf>,
}

impl Plan {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }
}

/// List `pgdata` for a backup. `global/pg_control` is listed like any file;
/// the caller decides when to copy it.
pub fn plan(pgdata: &Path) -> Result<Plan> {
    let mut p = Plan::default();
    walk(pgdata, Path::new(""), 0, false, &mut p)?;
    Ok(p)
}

fn read_names(dir: &Path) -> Result<Vec<(String, fs::DirEntry)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        // A directory removed during the backup (a dropped database).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::ReadInput { path: dir.to_path_buf(), source: e }),
    };
    for e in rd {
        let e = e.map_err(|e| Error::ReadInput { path: dir.to_path_buf(), source: e })?;
        out.push((e.file_name().to_string_lossy().into_owned(), e));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(dir: &Path, rel: &Path, depth: usize, in_tablespace: bool, p: &mut Plan) -> Result<()> {
    let names = read_names(dir)?;
    // Database directories: base/<oid>, or <tablespace>/<PG_x_y>/<oid>.
    let is_db_dir = (!in_tablespace && depth == 2 && rel.starts_with("base")) || (in_tablespace && depth == 4);
    let db_excl = if is_db_dir { db_dir_exclusions(names.iter().map(|(n, _)| n.as_str())) } else { HashSet::new() };
    for (name, entry) in names {
        let child_rel = rel.join(&name);
        let path = entry.path();
        let top = depth == 0;
        if skipped_anywhere(&name)
            || db_excl.contains(&name)
            || (top && (SKIPPED_FILES.contains(&name.as_str()) || SKIPPED_DIRS.contains(&name.as_str())))
        {
            p.excluded.push(child_rel);
            continue;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::ReadInput { path, source: e }),
        };
        let ft = meta.file_type();
        if top && EMPTIED_DIRS.contains(&name.as_str()) {
            p.dirs.push(child_rel.clone());
            if name == "pg_wal" {
                p.dirs.push(child_rel.join("archive_status"));
            }
            p.excluded.push(child_rel.join("*"));
            continue;
        }
        if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| Error::ReadInput { path: path.clone(), source: e })?;
            let tablespace_oid =
                (depth == 1 && rel == Path::new("pg_tblspc")).then(|| name.parse::<u32>().ok()).flatten();
            if let Some(oid) = tablespace_oid {
                let abs = if target.is_absolute() { target.clone() } else { dir.join(&target) };
                p.tablespaces.push((oid, abs.clone()));
                p.dirs.push(child_rel.clone());
                walk(&abs, &child_rel, 2, true, p)?;
            } else {
                p.symlinks.push((child_rel, target));
            }
        } else if ft.is_dir() {
            p.dirs.push(child_rel.clone());
            walk(&path, &child_rel, depth + 1, in_tablespace, p)?;
        } else if ft.is_file() {
            p.files.push((path, child_rel, meta.size()));
        } else {
            // Sockets, FIFOs and devices have no place in a data directory.
            p.excluded.push(child_rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_names() {
        use crate::pg::relfile::{Fork, RelFileName};
        let parts = |n| RelFileName::parse(n).map(|r| (r.node, r.fork));
        assert_eq!(parts("16384"), Some(("16384", Fork::Main)));
        assert_eq!(parts("16384_fsm"), Some(("16384", Fork::Fsm)));
        assert_eq!(parts("16384.2"), Some(("16384", Fork::Main)));
        assert_eq!(parts("16384_vm.1"), Some(("16384", Fork::Vm)));
        assert_eq!(parts("PG_VERSION"), None);
        assert_eq!(parts("pg_filenode.map"), None);
        assert!(relfile::is_temp_relation("t3_16400"));
        assert!(relfile::is_temp_relation("t3_16400_fsm"));
        assert!(relfile::is_temp_relation("t12_16400.1"));
        assert!(!relfile::is_temp_relation("t_1"));
        assert!(!relfile::is_temp_relation("tx_1"));
        assert!(!relfile::is_temp_relation("16400"));
    }

    #[test]
    fn unlogged_and_temp_are_left_out() {
        let names = [
            "16384",
            "16384_fsm",
            "16390",
            "16390.1",
            "16390_fsm",
            "16390_vm",
            "16390_init",
            "t5_16400",
            "t5_16400_fsm",
            "PG_VERSION",
            "pg_filenode.map",
        ];
        let ex = db_dir_exclusions(names.iter().copied());
        let mut ex: Vec<_> = ex.into_iter().collect();
        ex.sort();
        assert_eq!(ex, vec!["16390", "16390.1", "16390_fsm", "16390_vm", "t5_16400", "t5_16400_fsm"]);
    }

    #[test]
    fn walks_a_fake_data_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("data");
        let ts = d.path().join("ts");
        for dir in
            ["global", "base/1", "base/pgsql_tmp", "pg_wal/archive_status", "pg_replslot/slot", "pg_tblspc", "pg_xact"]
        {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::create_dir_all(ts.join("PG_15_202209061/5")).unwrap();
        for f in [
            "global/pg_control",
            "global/pg_internal.init",
            "base/1/1259",
            "base/1/16390",
            "base/1/16390_init",
            "base/pgsql_tmp/pgsql_tmp1.0",
            "pg_wal/000000010000000000000001",
            "pg_replslot/slot/state",
            "postmaster.pid",
            "standby.signal",
            "backup_label.old",
            "postgresql.conf",
            "pg_xact/0000",
        ] {
            fs::write(root.join(f), b"x").unwrap();
        }
        fs::write(ts.join("PG_15_202209061/5/16500"), b"tt").unwrap();
        fs::write(ts.join("PG_15_202209061/5/16501_init"), b"").unwrap();
        fs::write(ts.join("PG_15_202209061/5/16501"), b"u").unwrap();
        std::os::unix::fs::symlink(&ts, root.join("pg_tblspc/16499")).unwrap();
        let p = plan(&root).unwrap();
        let files: Vec<String> = p.files.iter().map(|f| f.1.display().to_string()).collect();
        assert_eq!(
            files,
            vec![
                "base/1/1259",
                "base/1/16390_init",
                "global/pg_control",
                "pg_tblspc/16499/PG_15_202209061/5/16500",
                "pg_tblspc/16499/PG_15_202209061/5/16501_init",
                "pg_xact/0000",
                "postgresql.conf",
            ]
        );
        let dirs: Vec<String> = p.dirs.iter().map(|f| f.display().to_string()).collect();
        assert!(dirs.contains(&"pg_wal".to_string()));
        assert!(dirs.contains(&"pg_wal/archive_status".to_string()));
        assert!(dirs.contains(&"pg_replslot".to_string()));
        assert!(!dirs.contains(&"pg_replslot/slot".to_string()));
        assert!(!dirs.iter().any(|d| d.contains("pgsql_tmp")));
        assert_eq!(p.tablespaces, vec![(16499, ts.clone())]);
        assert_eq!(p.total_bytes(), 1 + 1 + 1 + 2 + 1 + 1);
    }
}
