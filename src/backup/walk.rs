//! Listing a data directory for a backup, leaving out what pg_basebackup
//! leaves out (`src/backend/backup/basebackup.c`: `excludeDirContents`,
//! `excludeFiles`, and the unlogged/temporary relation rules), plus the
//! recovery and bookkeeping files a standby carries that must never travel
//! into a backup.
//!
//! The data directory belongs to its owner (the `postgres` OS user), who can
//! plant anything in it; pgdrill often runs as root. So nothing is looked up
//! by path below the data directory: every name is opened relative to its
//! already-open parent with `O_NOFOLLOW` ([`Sources::open`]), a symbolic
//! link is never followed except the `pg_tblspc/<oid>` links of the
//! tablespaces `pg_tablespace` lists (with the location
//! `pg_tablespace_location()` reports), and as root only files and
//! directories the data directory's owner could read itself (its own, or
//! open to its groups or to all) are read. Whatever root could read that
//! the owner could not stays out of the backup.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use crate::error::{Error, Result};
use crate::pg::relfile;
use crate::server::OsUser;

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
    /// Directories, relative, parents before children, with the source's
    /// permission bits.
    pub dirs: Vec<(PathBuf, u32)>,
    /// Regular files: source path, relative path, size.
    pub files: Vec<(PathBuf, PathBuf, u64)>,
    /// Symbolic links other than tablespaces: relative path, target. They
    /// are recreated as links, never followed.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Tablespaces: OID and where its symlink pointed.
    pub tablespaces: Vec<(u32, PathBuf)>,
    /// Paths left out, relative (for reports and tests).
    pub excluded: Vec<PathBuf>,
    /// The open directories everything is read through.
    pub sources: Sources,
}

impl Plan {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }
}

/// Where a tablespace OID's link must point, as the server's catalog says
/// (`pg_tablespace_location()`), or `None` when it has no such tablespace.
pub type TablespaceLookup<'a> = dyn FnMut(u32) -> Result<Option<String>> + 'a;

/// The directories a backup reads: the data directory, then each
/// tablespace, each opened once; and, as root, the only owner whose files
/// may be read.
#[derive(Debug, Default)]
pub struct Sources {
    roots: Vec<(PathBuf, OwnedFd)>,
    owner: Option<Owner>,
}

/// The data directory's owner, as far as file permissions go.
#[derive(Debug)]
struct Owner {
    uid: u32,
    groups: Vec<u32>,
}

impl Owner {
    fn of_uid(uid: u32) -> Owner {
        let groups = OsUser::by_uid(uid)
            .and_then(|u| {
                let name = std::ffi::CString::new(u.name).ok()?;
                nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(u.gid)).ok()
            })
            .map(|g| g.iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        Owner { uid, groups }
    }

    /// Whether the owner could read this (list and search it, for a
    /// directory) without root: its own, or open to its groups or to all.
    fn may_read(&self, st: &FileStat, dir: bool) -> bool {
        let need = if dir { 0o5 } else { 0o4 };
        let mode = st.st_mode;
        st.st_uid == self.uid || mode & need == need || (mode >> 3 & need == need && self.groups.contains(&st.st_gid))
    }
}

fn unsafe_source(path: &Path, reason: impl Into<String>) -> Error {
    Error::UnsafeSource { path: path.to_path_buf(), reason: reason.into() }
}

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn is_type(st: &FileStat, t: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == t
}

impl Sources {
    /// Open the data directory. As root, its owner becomes the only owner
    /// whose files are read.
    pub fn open_data_directory(pgdata: &Path) -> Result<Sources> {
        let mut s = Sources::default();
        s.add_root(pgdata)?;
        if OsUser::running_as_root() {
            s.owner = Some(Owner::of_uid(s.root_stat(0)?.st_uid));
        }
        // pg_wal on another disk (initdb --waldir) is a link the
        // administrator made: read through it, as the owner's directory.
        let wal = pgdata.join("pg_wal");
        let is_link =
            fstatat(&s.roots[0].1, "pg_wal", AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| is_type(&st, SFlag::S_IFLNK));
        if is_link {
            s.add_root(&wal)?;
        }
        Ok(s)
    }

    /// The data directory's owner (its uid).
    pub fn data_directory_uid(&self) -> Result<u32> {
        Ok(self.root_stat(0)?.st_uid)
    }

    fn root_stat(&self, i: usize) -> Result<FileStat> {
        let (path, fd) = &self.roots[i];
        fstat(fd).map_err(|e| Error::ReadInput { path: path.clone(), source: errno_io(e) })
    }

    /// Open a directory the configuration names (the data directory, a
    /// tablespace location); symbolic links in its path are the
    /// administrator's and are followed.
    fn add_root(&mut self, path: &Path) -> Result<usize> {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: errno_io(e) })?;
        self.roots.push((path.to_path_buf(), fd));
        let i = self.roots.len() - 1;
        self.check_owner(&self.root_stat(i)?, path)?;
        Ok(i)
    }

    /// As root: refuse what the data directory's owner could not read
    /// itself, so root's reach never leaks into a backup.
    fn check_owner(&self, st: &FileStat, path: &Path) -> Result<()> {
        match &self.owner {
            Some(o) if !o.may_read(st, is_type(st, SFlag::S_IFDIR)) => Err(unsafe_source(
                path,
                format!(
                    "it belongs to uid {} (mode {:o}), and the data directory's owner (uid {}) could not read it; \
                     as root, pgdrill reads only what that owner could",
                    st.st_uid,
                    st.st_mode & 0o7777,
                    o.uid
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Open `rel` below root `root` without following any symbolic link;
    /// `None` when it does not exist (any more).
    fn open_beneath(&self, root: usize, rel: &Path, want_dir: bool) -> Result<Option<OwnedFd>> {
        let (root_path, root_fd) = &self.roots[root];
        let full = root_path.join(rel);
        let names: Vec<&OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(unsafe_source(&full, "not a plain relative path")),
            })
            .collect::<Result<_>>()?;
        let mut cur: Option<OwnedFd> = None;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let mut flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            if !last || want_dir {
                flags |= OFlag::O_DIRECTORY;
            } else {
                // A FIFO planted where a file was listed must not block us.
                flags |= OFlag::O_NONBLOCK;
            }
            let parent = cur.as_ref().unwrap_or(root_fd);
            let fd = match openat(parent, *name, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ELOOP) => {
                    return Err(unsafe_source(&full, "a symbolic link where pgdrill listed a file or directory"))
                }
                Err(Errno::ENOTDIR) if !last || want_dir => return Err(unsafe_source(&full, "no longer a directory")),
                Err(e) => return Err(Error::ReadInput { path: full, source: errno_io(e) }),
            };
            let st = fstat(&fd).map_err(|e| Error::ReadInput { path: full.clone(), source: errno_io(e) })?;
            self.check_owner(&st, &full)?;
            if last && !want_dir && !is_type(&st, SFlag::S_IFREG) {
                return Err(unsafe_source(&full, "not a regular file"));
            }
            cur = Some(fd);
        }
        Ok(cur)
    }

    /// Open a file below the data directory (or a tablespace, when `src`
    /// lies below one), as [`crate::copy`] wants it.
    pub fn open(&self, src: &Path, vanish_ok: bool) -> Result<Option<File>> {
        let (root, rel) = self
            .roots
            .iter()
            .enumerate()
            .filter_map(|(i, (p, _))| src.strip_prefix(p).ok().map(|r| (i, r)))
            .min_by_key(|(_, r)| r.components().count())
            .ok_or_else(|| unsafe_source(src, "outside the data directory and its tablespaces"))?;
        match self.open_beneath(root, rel, false)? {
            Some(fd) => Ok(Some(File::from(fd))),
            None if vanish_ok => Ok(None),
            None => Err(Error::ReadInput { path: src.to_path_buf(), source: std::io::ErrorKind::NotFound.into() }),
        }
    }

    /// Read a whole (small) file below the data directory.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = self.roots[0].0.join(rel);
        let mut f = self
            .open(&path, false)?
            .ok_or_else(|| Error::ReadInput { path: path.clone(), source: std::io::ErrorKind::NotFound.into() })?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| Error::ReadInput { path, source: e })?;
        Ok(out)
    }

    /// The data directory as given.
    pub fn data_directory(&self) -> &Path {
        &self.roots[0].0
    }
}

/// List the data directory `sources` opened for a backup.
/// `global/pg_control` is listed like any file;
/// the caller decides when to copy it. `tablespace` says which
/// `pg_tblspc` links are real tablespaces.
pub fn plan(sources: Sources, tablespace: &mut TablespaceLookup) -> Result<Plan> {
    let mut p = Plan { sources, ..Plan::default() };
    let w = Walk { root: 0, rel_in_root: PathBuf::new(), rel: PathBuf::new(), depth: 0, in_tablespace: false };
    walk(&w, &mut p, tablespace)?;
    Ok(p)
}

/// Where the walk is: the root it reads through, the path below that root,
/// and the path in the backup.
struct Walk {
    root: usize,
    rel_in_root: PathBuf,
    rel: PathBuf,
    depth: usize,
    in_tablespace: bool,
}

impl Walk {
    fn child(&self, name: &str) -> Walk {
        Walk {
            root: self.root,
            rel_in_root: self.rel_in_root.join(name),
            rel: self.rel.join(name),
            depth: self.depth + 1,
            in_tablespace: self.in_tablespace,
        }
    }
}

/// The names in a directory (sorted), read through an open descriptor.
fn read_names(dir: &OwnedFd, path: &Path) -> Result<Vec<String>> {
    let dup = dir.try_clone().map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: e })?;
    let mut d =
        nix::dir::Dir::from_fd(dup).map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: errno_io(e) })?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| Error::ReadInput { path: path.to_path_buf(), source: errno_io(e) })?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn walk(w: &Walk, p: &mut Plan, tablespace: &mut TablespaceLookup) -> Result<()> {
    let here = p.sources.roots[w.root].0.join(&w.rel_in_root);
    let dir = if w.rel_in_root.as_os_str().is_empty() {
        p.sources.roots[w.root].1.try_clone().map_err(|e| Error::ReadInput { path: here.clone(), source: e })?
    } else {
        // A directory removed during the backup (a dropped database).
        match p.sources.open_beneath(w.root, &w.rel_in_root, true)? {
            Some(fd) => fd,
            None => return Ok(()),
        }
    };
    let names = read_names(&dir, &here)?;
    // Database directories: base/<oid>, or <tablespace>/<PG_x_y>/<oid>.
    let is_db_dir =
        (!w.in_tablespace && w.depth == 2 && w.rel.starts_with("base")) || (w.in_tablespace && w.depth == 4);
    let db_excl = if is_db_dir { db_dir_exclusions(names.iter().map(String::as_str)) } else { HashSet::new() };
    let top = w.depth == 0;
    for name in names {
        let child = w.child(&name);
        if skipped_anywhere(&name)
            || db_excl.contains(&name)
            || (top && (SKIPPED_FILES.contains(&name.as_str()) || SKIPPED_DIRS.contains(&name.as_str())))
        {
            p.excluded.push(child.rel);
            continue;
        }
        let path = here.join(&name);
        let st = match fstatat(&dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Error::ReadInput { path, source: errno_io(e) }),
        };
        if top && EMPTIED_DIRS.contains(&name.as_str()) {
            p.dirs.push((child.rel.clone(), 0o700));
            if name == "pg_wal" {
                p.dirs.push((child.rel.join("archive_status"), 0o700));
            }
            p.excluded.push(child.rel.join("*"));
            continue;
        }
        let mode = st.st_mode & 0o7777;
        if is_type(&st, SFlag::S_IFLNK) {
            let target = PathBuf::from(
                readlinkat(&dir, name.as_str())
                    .map_err(|e| Error::ReadInput { path: path.clone(), source: errno_io(e) })?,
            );
            if !w.in_tablespace && w.rel == Path::new("pg_tblspc") {
                follow_tablespace(&child, &name, &path, target, p, tablespace)?;
            } else {
                p.symlinks.push((child.rel, target));
            }
        } else if is_type(&st, SFlag::S_IFDIR) {
            p.sources.check_owner(&st, &path)?;
            p.dirs.push((child.rel.clone(), mode));
            // A directory in pg_tblspc is an in-place tablespace (16+).
            let child = Walk { in_tablespace: w.in_tablespace || w.rel == Path::new("pg_tblspc"), ..child };
            walk(&child, p, tablespace)?;
        } else if is_type(&st, SFlag::S_IFREG) {
            p.sources.check_owner(&st, &path)?;
            p.files.push((path, child.rel, st.st_size as u64));
        } else {
            // Sockets, FIFOs and devices have no place in a data directory.
            p.excluded.push(child.rel);
        }
    }
    Ok(())
}

/// A link in pg_tblspc: follow it only when the catalog has a tablespace
/// with that OID whose location is exactly where the link points.
fn follow_tablespace(
    w: &Walk,
    name: &str,
    path: &Path,
    target: PathBuf,
    p: &mut Plan,
    tablespace: &mut TablespaceLookup,
) -> Result<()> {
    let shown = target.display().to_string();
    let oid = name.parse::<u32>().ok().filter(|o| *o > 0);
    let location = match oid {
        Some(o) => tablespace(o)?,
        None => None,
    };
    let (Some(oid), Some(location)) = (oid, location) else {
        return Err(unsafe_source(
            path,
            format!("a symbolic link to {shown} that is not a tablespace: pg_tablespace has no tablespace {name}"),
        ));
    };
    if location.as_bytes() != target.as_os_str().as_bytes() {
        return Err(unsafe_source(
            path,
            format!("it points to {shown}, but pg_tablespace_location({oid}) is {location}"),
        ));
    }
    let abs = if target.is_absolute() { target } else { p.sources.roots[0].0.join("pg_tblspc").join(target) };
    let root = p.sources.add_root(&abs)?;
    p.tablespaces.push((oid, abs));
    p.dirs.push((w.rel.clone(), p.sources.root_stat(root)?.st_mode & 0o7777));
    let inner = Walk { root, rel_in_root: PathBuf::new(), rel: w.rel.clone(), depth: 2, in_tablespace: true };
    walk(&inner, p, tablespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
        let ts_text = ts.display().to_string();
        let p = plan(open(&root), &mut |oid| Ok((oid == 16499).then(|| ts_text.clone()))).unwrap();
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
        let dirs: Vec<String> = p.dirs.iter().map(|f| f.0.display().to_string()).collect();
        assert!(dirs.contains(&"pg_wal".to_string()));
        assert!(dirs.contains(&"pg_wal/archive_status".to_string()));
        assert!(dirs.contains(&"pg_replslot".to_string()));
        assert!(!dirs.contains(&"pg_replslot/slot".to_string()));
        assert!(!dirs.iter().any(|d| d.contains("pgsql_tmp")));
        assert_eq!(p.tablespaces, vec![(16499, ts.clone())]);
        assert_eq!(p.total_bytes(), 1 + 1 + 1 + 2 + 1 + 1);
        // Everything listed opens through the plan's directories.
        for (src, _, _) in &p.files {
            assert!(p.sources.open(src, false).unwrap().is_some(), "{}", src.display());
        }
    }

    fn open(root: &Path) -> Sources {
        Sources::open_data_directory(root).unwrap()
    }

    fn small_data_directory() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("data");
        for dir in ["global", "base/1", "pg_tblspc"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::write(root.join("global/pg_control"), b"c").unwrap();
        fs::write(root.join("base/1/1259"), b"r").unwrap();
        (d, root)
    }

    fn no_tablespaces(_: u32) -> Result<Option<String>> {
        Ok(None)
    }

    #[test]
    fn a_planted_tablespace_link_is_refused() {
        let (d, root) = small_data_directory();
        let secret = d.path().join("secret");
        fs::create_dir_all(&secret).unwrap();
        fs::write(secret.join("key"), b"s").unwrap();
        std::os::unix::fs::symlink(&secret, root.join("pg_tblspc/99998")).unwrap();
        let e = plan(open(&root), &mut no_tablespaces).unwrap_err();
        assert!(matches!(e, Error::UnsafeSource { .. }), "{e}");
        assert!(e.to_string().contains("pg_tblspc/99998"), "{e}");
        // A real OID whose link was repointed elsewhere is refused too.
        let e = plan(open(&root), &mut |_| Ok(Some("/srv/ts".into()))).unwrap_err();
        assert!(e.to_string().contains("pg_tablespace_location(99998) is /srv/ts"), "{e}");
        // A name that is no OID at all.
        fs::remove_file(root.join("pg_tblspc/99998")).unwrap();
        std::os::unix::fs::symlink(&secret, root.join("pg_tblspc/x")).unwrap();
        assert!(plan(open(&root), &mut no_tablespaces).is_err());
    }

    #[test]
    fn links_are_never_followed_below_the_data_directory() {
        let (d, root) = small_data_directory();
        let outside = d.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("1260"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.join("1260"), root.join("base/1/1260")).unwrap();
        let p = plan(open(&root), &mut no_tablespaces).unwrap();
        // Listed as a link (recreated as one), never read.
        assert_eq!(p.symlinks, vec![(PathBuf::from("base/1/1260"), outside.join("1260"))]);
        assert!(!p.files.iter().any(|f| f.1 == Path::new("base/1/1260")));
        // A file swapped for a link after the listing is refused on open.
        fs::remove_file(root.join("base/1/1259")).unwrap();
        std::os::unix::fs::symlink(outside.join("1260"), root.join("base/1/1259")).unwrap();
        let e = p.sources.open(&root.join("base/1/1259"), true).unwrap_err();
        assert!(matches!(e, Error::UnsafeSource { .. }), "{e}");
        // So is a directory swapped for a link to another directory.
        fs::rename(root.join("base/1"), root.join("base/1.moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("base/1")).unwrap();
        let e = p.sources.open(&root.join("base/1/1260"), true).unwrap_err();
        assert!(matches!(e, Error::UnsafeSource { .. }), "{e}");
        // A FIFO where a file was listed does not block.
        let fifo = root.join("global/pg_control");
        fs::remove_file(&fifo).unwrap();
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        assert!(p.sources.open(&fifo, true).is_err());
        // Nothing outside the listed roots opens at all.
        assert!(p.sources.open(&outside.join("1260"), true).is_err());
    }

    #[test]
    fn a_pg_wal_link_is_read_through() {
        let (d, root) = small_data_directory();
        let waldir = d.path().join("waldir");
        fs::create_dir_all(&waldir).unwrap();
        fs::write(waldir.join("00000002.history"), b"1\t0/3000000\tno recovery target specified\n").unwrap();
        std::os::unix::fs::symlink(&waldir, root.join("pg_wal")).unwrap();
        let src = open(&root);
        assert!(src.read(Path::new("pg_wal/00000002.history")).unwrap().starts_with(b"1\t"));
        let p = plan(src, &mut no_tablespaces).unwrap();
        assert!(p.dirs.iter().any(|(d, _)| d == Path::new("pg_wal")), "kept as an empty directory");
        assert!(!p.files.iter().any(|f| f.1.starts_with("pg_wal")));
    }

    #[test]
    fn as_root_only_what_the_owner_could_read_is_read() {
        if !OsUser::running_as_root() {
            return;
        }
        let (_d, root) = small_data_directory();
        let nobody = OsUser::by_name("nobody").unwrap();
        for p in [&root, &root.join("global"), &root.join("base"), &root.join("base/1"), &root.join("pg_tblspc")] {
            nobody.chown(p).unwrap();
        }
        nobody.chown(&root.join("global/pg_control")).unwrap();
        // base/1/1259 stays root's and root-only: the owner could not read
        // it, so it is not read.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("base/1/1259"), fs::Permissions::from_mode(0o600)).unwrap();
        let e = plan(open(&root), &mut no_tablespaces).unwrap_err();
        assert!(matches!(e, Error::UnsafeSource { .. }), "{e}");
        assert!(e.to_string().contains("base/1/1259"), "{e}");
        // Root's but readable by all (a CA certificate copied in as root):
        // the owner could read it anyway.
        fs::set_permissions(root.join("base/1/1259"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(plan(open(&root), &mut no_tablespaces).is_ok());
        nobody.chown(&root.join("base/1/1259")).unwrap();
        fs::set_permissions(root.join("base/1/1259"), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(plan(open(&root), &mut no_tablespaces).is_ok());
    }
}
