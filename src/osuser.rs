//! OS users: who pgdrill runs as, who runs the servers, and giving files to
//! them. Below `safefs` and `server`, which both need it.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, Result};

/// The OS user server programs run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl From<User> for OsUser {
    fn from(u: User) -> Self {
        OsUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir }
    }
}

impl OsUser {
    /// The user pgdrill runs as.
    pub fn current() -> OsUser {
        let uid = Uid::effective();
        User::from_uid(uid).ok().flatten().map(OsUser::from).unwrap_or_else(|| OsUser {
            name: uid.to_string(),
            uid: uid.as_raw(),
            gid: Gid::effective().as_raw(),
            home: PathBuf::from("/"),
        })
    }

    pub fn current_name() -> String {
        Self::current().name
    }

    pub fn by_name(name: &str) -> Result<OsUser> {
        User::from_name(name)
            .ok()
            .flatten()
            .map(OsUser::from)
            .ok_or_else(|| Error::NoSuchUser { user: name.to_string() })
    }

    pub fn by_uid(uid: u32) -> Option<OsUser> {
        User::from_uid(Uid::from_raw(uid)).ok().flatten().map(OsUser::from)
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn running_as_root() -> bool {
        Uid::effective().is_root()
    }

    /// Who should run PostgreSQL for `path` (a data directory or a backup):
    /// `explicit` if given; otherwise, when pgdrill is not root, pgdrill's own
    /// user; when it is root, the owner of `path`, or `postgres` when root
    /// owns it.
    pub fn for_server(explicit: Option<&str>, path: &Path) -> Result<OsUser> {
        if let Some(name) = explicit {
            let u = OsUser::by_name(name)?;
            if u.is_root() {
                return Err(Error::NeedOsUser { path: path.to_path_buf() });
            }
            if !Self::running_as_root() && u.uid != Uid::effective().as_raw() {
                return Err(Error::usage(
                    format!("--os-user {name} needs root: pgdrill runs as {}", Self::current_name()),
                    Some("run pgdrill as root, or as that user".to_string()),
                ));
            }
            return Ok(u);
        }
        if !Self::running_as_root() {
            return Ok(Self::current());
        }
        let owner = std::fs::metadata(path).map(|m| m.uid()).unwrap_or(0);
        if owner != 0 {
            if let Some(u) = OsUser::by_uid(owner) {
                return Ok(u);
            }
        }
        OsUser::by_name("postgres").map_err(|_| Error::NeedOsUser { path: path.to_path_buf() })
    }

    /// A command that runs `program` as this user, with a clean environment:
    /// no PG* variables leak from pgdrill's own environment into servers.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8");
        if let Ok(tz) = std::env::var("TZ") {
            cmd.env("TZ", tz);
        }
        if Uid::effective().as_raw() != self.uid {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// Give `path` (not following symlinks) to this user.
    pub fn chown(&self, path: &Path) -> Result<()> {
        if !Self::running_as_root() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).map_err(|e| Error::io(path, "chown", e))
    }

    /// Give a whole tree to this user.
    pub fn chown_tree(&self, path: &Path) -> Result<()> {
        if !Self::running_as_root() {
            return Ok(());
        }
        self.chown(path)?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, "stat", e))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(path).map_err(|e| Error::io(path, "read directory", e))? {
                let e = e.map_err(|e| Error::io(path, "read directory", e))?;
                self.chown_tree(&e.path())?;
            }
        }
        Ok(())
    }
}
