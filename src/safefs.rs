//! File operations that never follow a symbolic link, relative to an open
//! directory handle.
//!
//! Why: `restore` and `gate` run as root on directories whose contents others
//! control: a backup's author chose every name in a backup, and the data
//! directory's owner (the server's OS user) can change a restored copy at
//! any moment. A path-based call such as `fs::write(pgdata.join("pg_hba.conf"))`
//! follows a link at any component of the path, so a planted
//! `pg_hba.conf -> /etc/shadow` would make root read or write a file the
//! planter chose. Checking first and acting later does not help: the link
//! can be planted in between.
//!
//! So every operation here starts from a [`Dir`] (an open directory file
//! descriptor) and resolves one component at a time with `O_NOFOLLOW`
//! (`openat`, `mkdirat`, `fstatat(AT_SYMLINK_NOFOLLOW)`, `fchownat(...,
//! AT_SYMLINK_NOFOLLOW)`, `unlinkat`, `renameat`). A symbolic link anywhere
//! below the handle is an error (`ELOOP`/`ENOTDIR`), never followed. Owners
//! and modes are set through the open descriptor (`fchown`, `fchmod`), so
//! they apply to the file that was opened and nothing else.
//!
//! Only the directory a caller names explicitly ([`Dir::open`]) is resolved
//! the ordinary way: the user chose that path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};

use crate::osuser::OsUser;

/// What a directory entry is, without following links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

impl Kind {
    fn of(st: &FileStat) -> Kind {
        match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Special,
        }
    }
}

/// The part of `stat` callers use.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
}

impl From<FileStat> for Meta {
    fn from(st: FileStat) -> Meta {
        Meta {
            kind: Kind::of(&st),
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime: st.st_mtime,
        }
    }
}

fn io(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// An open directory; every path given to its methods is relative to it and
/// resolved without following links.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Split a relative path into its normal components; `..`, `.`, roots and
/// empty paths are refused (a name from a backup must not climb out).
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: not a plain relative path", rel.display()),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    }
    Ok(out)
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

impl Dir {
    /// Open a directory the caller named. Links in `path` itself are
    /// followed: the user chose it.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd =
            fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(io)?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir { fd: self.fd.try_clone()?, path: self.path.clone() })
    }

    fn child(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = fcntl::openat(self.fd.as_fd(), name, DIR_FLAGS, Mode::empty()).map_err(io)?;
        Ok(Dir { fd, path: self.path.join(name) })
    }

    /// The directory holding the last component of `rel`, and that name.
    fn parent_of<'a>(&self, rel: &'a Path) -> io::Result<(Option<Dir>, &'a OsStr)> {
        let parts = components(rel)?;
        let (last, dirs) = parts.split_last().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if dirs.is_empty() {
            return Ok((None, last));
        }
        let mut d = self.child(dirs[0])?;
        for n in &dirs[1..] {
            d = d.child(n)?;
        }
        Ok((Some(d), last))
    }

    /// Run `f` with the parent directory's fd and the last name of `rel`.
    fn at<T>(&self, rel: &Path, f: impl FnOnce(BorrowedFd<'_>, &OsStr) -> io::Result<T>) -> io::Result<T> {
        let (parent, name) = self.parent_of(rel)?;
        match &parent {
            Some(p) => f(p.fd.as_fd(), name),
            None => f(self.fd.as_fd(), name),
        }
    }

    /// Open a subdirectory, refusing links at every component.
    pub fn dir(&self, rel: &Path) -> io::Result<Dir> {
        let parts = components(rel)?;
        let mut d = self.child(parts[0])?;
        for n in &parts[1..] {
            d = d.child(n)?;
        }
        Ok(d)
    }

    /// `lstat` of an entry.
    pub fn meta(&self, rel: &Path) -> io::Result<Meta> {
        self.at(rel, |fd, name| stat::fstatat(fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map(Meta::from).map_err(io))
    }

    /// `lstat` of an entry, or `None` if it does not exist.
    pub fn meta_optional(&self, rel: &Path) -> io::Result<Option<Meta>> {
        match self.meta(rel) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `stat` of the directory itself.
    pub fn self_meta(&self) -> io::Result<Meta> {
        stat::fstat(self.fd.as_fd()).map(Meta::from).map_err(io)
    }

    /// Open a regular file for reading; a link or anything but a regular
    /// file is an error.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let fd = self.at(rel, |fd, name| {
            fcntl::openat(fd, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(io)
        })?;
        let f = File::from(fd);
        let st = stat::fstat(f.as_fd()).map_err(io)?;
        if Kind::of(&st) != Kind::File {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok(f)
    }

    /// Read a whole regular file.
    pub fn read(&self, rel: &Path) -> io::Result<Vec<u8>> {
        let mut f = self.open_file(rel)?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Read a whole regular file, or `None` if it does not exist.
    pub fn read_optional(&self, rel: &Path) -> io::Result<Option<Vec<u8>>> {
        match self.read(rel) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a new regular file (it must not exist), owned by `owner`.
    pub fn create_new(&self, rel: &Path, mode: u32, owner: Option<&OsUser>) -> io::Result<File> {
        let fd = self.at(rel, |fd, name| {
            fcntl::openat(
                fd,
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode),
            )
            .map_err(io)
        })?;
        let f = File::from(fd);
        set_owner_mode(&f, owner, Some(mode))?;
        Ok(f)
    }

    /// Open a regular file for appending, creating it if needed (the
    /// server's log). A link is refused.
    pub fn open_append(&self, rel: &Path, mode: u32, owner: Option<&OsUser>) -> io::Result<File> {
        let fd = self.at(rel, |fd, name| {
            fcntl::openat(
                fd,
                name,
                OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(mode),
            )
            .map_err(io)
        })?;
        let f = File::from(fd);
        let st = stat::fstat(f.as_fd()).map_err(io)?;
        if Kind::of(&st) != Kind::File {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        set_owner_mode(&f, owner, None)?;
        Ok(f)
    }

    /// Replace a file atomically: write a temporary file beside it, fsync,
    /// set mode and owner on the descriptor, rename over the old one. A link
    /// at `rel` is replaced, never followed.
    pub fn replace(&self, rel: &Path, bytes: &[u8], mode: u32, owner: Option<&OsUser>) -> io::Result<()> {
        let (parent, name) = self.parent_of(rel)?;
        let dir = parent.as_ref().unwrap_or(self);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".pgdrill-tmp");
        let tmp = Path::new(&tmp_name);
        // A leftover from a crash (or something planted): remove the name,
        // not what it points to.
        match unistd::unlinkat(dir.fd.as_fd(), tmp, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(io(e)),
        }
        {
            let mut f = dir.create_new(tmp, mode, owner)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fcntl::renameat(dir.fd.as_fd(), tmp, dir.fd.as_fd(), name).map_err(io)
    }

    /// Remove a file or link (never what a link points to). Missing is fine.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        self.at(rel, |fd, name| match unistd::unlinkat(fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io(e)),
        })
    }

    /// Create a directory (parents must exist) with `mode`, owned by `owner`.
    /// An existing directory is fine; an existing link or file is an error.
    pub fn create_dir(&self, rel: &Path, mode: u32, owner: Option<&OsUser>) -> io::Result<Dir> {
        let created = self.at(rel, |fd, name| match stat::mkdirat(fd, name, Mode::from_bits_truncate(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(io(e)),
        })?;
        let d = self.dir(rel)?;
        if created {
            set_owner_mode(&d.fd, owner, Some(mode))?;
        }
        Ok(d)
    }

    /// Create a symbolic link `rel` pointing at `target`, owned by `owner`.
    pub fn symlink(&self, target: &Path, rel: &Path, owner: Option<&OsUser>) -> io::Result<()> {
        self.at(rel, |fd, name| {
            unistd::symlinkat(target, fd, name).map_err(io)?;
            if let Some(u) = owner.filter(|_| OsUser::running_as_root()) {
                unistd::fchownat(
                    fd,
                    name,
                    Some(Uid::from_raw(u.uid)),
                    Some(Gid::from_raw(u.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io)?;
            }
            Ok(())
        })
    }

    /// The target of a symbolic link.
    pub fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        self.at(rel, |fd, name| fcntl::readlinkat(fd, name).map(PathBuf::from).map_err(io))
    }

    /// Set the mode of an entry that must be a regular file or directory.
    pub fn chmod(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let meta = self.meta(rel)?;
        match meta.kind {
            Kind::File => stat::fchmod(self.open_file(rel)?.as_fd(), Mode::from_bits_truncate(mode)).map_err(io),
            Kind::Dir => stat::fchmod(self.dir(rel)?.fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(io),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file or directory")),
        }
    }

    /// Names in this directory (not `.` and `..`), sorted, with their kinds.
    pub fn entries(&self) -> io::Result<Vec<(OsString, Kind)>> {
        let dup = self.fd.try_clone()?;
        let mut d = nix::dir::Dir::from_fd(dup).map_err(io)?;
        let mut names = Vec::new();
        for e in d.iter() {
            let e = e.map_err(io)?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            names.push(name.to_os_string());
        }
        // Kinds from lstat, not d_type: some file systems leave it unknown.
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            match self.meta(Path::new(&n)) {
                Ok(m) => out.push((n, m.kind)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Remove a directory tree without following links (links are removed,
    /// not entered). Missing is fine.
    pub fn remove_tree(&self, rel: &Path) -> io::Result<()> {
        let meta = match self.meta_optional(rel)? {
            Some(m) => m,
            None => return Ok(()),
        };
        if meta.kind == Kind::Dir {
            let d = self.dir(rel)?;
            for (name, _) in d.entries()? {
                d.remove_tree(Path::new(&name))?;
            }
            self.at(rel, |fd, name| match unistd::unlinkat(fd, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(io(e)),
            })
        } else {
            self.remove_file(rel)
        }
    }

    /// Empty this directory (without following links).
    pub fn clear(&self) -> io::Result<()> {
        for (name, _) in self.entries()? {
            self.remove_tree(Path::new(&name))?;
        }
        Ok(())
    }

    /// fsync the directory itself (after renames in it).
    pub fn sync(&self) -> io::Result<()> {
        unistd::fsync(self.fd.as_fd()).map_err(io)
    }
}

/// Give an open file or directory to `owner` (root only) and set its mode.
pub fn set_owner_mode(fd: &impl AsFd, owner: Option<&OsUser>, mode: Option<u32>) -> io::Result<()> {
    if let Some(u) = owner.filter(|_| OsUser::running_as_root()) {
        unistd::fchown(fd.as_fd(), Some(Uid::from_raw(u.uid)), Some(Gid::from_raw(u.gid))).map_err(io)?;
    }
    if let Some(m) = mode {
        // After fchown: it clears set-id bits, and the umask trimmed the
        // mode given at creation.
        stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(m)).map_err(io)?;
    }
    Ok(())
}

/// Whether an I/O error means a link (or a non-directory) was met where
/// no-follow resolution needed a real file or directory.
pub fn is_link_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == Errno::ELOOP as i32 || code == Errno::ENOTDIR as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dirlink")).unwrap();
        let d = Dir::open(&root).unwrap();

        assert!(is_link_error(&d.read(Path::new("link")).unwrap_err()));
        assert!(is_link_error(&d.read(Path::new("dirlink/secret")).unwrap_err()));
        assert!(is_link_error(&d.dir(Path::new("dirlink")).unwrap_err()));
        assert!(d.create_new(Path::new("dirlink/new"), 0o600, None).is_err());
        assert!(!outside.join("new").exists());
        assert!(d.open_append(Path::new("link"), 0o600, None).is_err());
        assert!(d.chmod(Path::new("link"), 0o777).is_err());
        assert!(d.read(Path::new("../outside/secret")).is_err());
        assert!(d.read(Path::new("/etc/passwd")).is_err());
        assert_eq!(d.meta(Path::new("link")).unwrap().kind, Kind::Symlink);

        // Replacing a link replaces the link, not its target.
        d.replace(Path::new("link"), b"new", 0o600, None).unwrap();
        assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "s");
        assert_eq!(std::fs::read_to_string(root.join("link")).unwrap(), "new");

        // Removing a tree removes links, not what they point to.
        d.remove_tree(Path::new("dirlink")).unwrap();
        assert!(outside.join("secret").exists());
        d.create_dir(Path::new("sub/deeper"), 0o700, None).unwrap();
        d.replace(Path::new("sub/deeper/f"), b"x", 0o640, None).unwrap();
        assert_eq!(d.meta(Path::new("sub/deeper/f")).unwrap().mode, 0o640);
        d.clear().unwrap();
        assert!(d.entries().unwrap().is_empty());
        assert!(outside.join("secret").exists());
    }
}
