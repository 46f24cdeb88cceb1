//! The gate's lock: the server's own pg_hba.conf and pg_ident.conf are
//! replaced by files that admit only pgdrill, and put back when the gate
//! opens. See docs/design.md for why this design.
//!
//! The lock lives in the data directory's configuration, not on the command
//! line, so it holds whoever starts the server and whenever pgdrill dies. The
//! originals and the gate's own state are kept in `pgdrill_gate/` inside the
//! data directory:
//!
//! - `pg_hba.conf.orig`, `pg_ident.conf.orig`: the files as they were;
//! - `state.json`: the end target, `--then`, the file paths, and who may pass.
//!
//! Order of operations makes every crash safe: the originals are saved before
//! the state file names them, and the state file exists before any
//! configuration file is changed. When the gate opens, the originals go back
//! first and the state directory goes last, so a crash in between re-locks on
//! the next run instead of leaving anything half open.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pg::Lsn;
use crate::server::OsUser;

pub const STATE_DIR: &str = "pgdrill_gate";
const STATE_FILE: &str = "state.json";
const HBA_ORIG: &str = "pg_hba.conf.orig";
const IDENT_ORIG: &str = "pg_ident.conf.orig";
/// The ident map name used by the lock.
pub const MAP: &str = "pgdrill_gate";

/// What the gate remembers across runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GateState {
    pub version: u32,
    pub end_lsn: Option<Lsn>,
    pub then: String,
    pub hba_file: PathBuf,
    pub ident_file: PathBuf,
    pub hba_mode: u32,
    pub ident_mode: u32,
    /// The OS user whose connections the lock admits (pgdrill's).
    pub admit_os_user: String,
    /// Database roles pgdrill may connect as.
    pub roles: Vec<String>,
    pub started_at: String,
    /// A gate has started the server on this directory before.
    #[serde(default)]
    pub server_started: bool,
}

/// An exclusive advisory lock on the data directory itself (no file is
/// created), held while a gate runs, so that two gates never work on one
/// directory. The kernel drops it when the process ends, however it ends.
pub fn exclusive(pgdata: &Path) -> Result<nix::fcntl::Flock<fs::File>> {
    let dir = fs::File::open(pgdata).map_err(|e| Error::ReadInput { path: pgdata.to_path_buf(), source: e })?;
    nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        Error::usage(
            format!("{}: another pgdrill gate is running on this data directory", pgdata.display()),
            Some("wait for it to finish, or stop it (it leaves the directory locked and resumable)".into()),
        )
    })
}

pub fn state_dir(pgdata: &Path) -> PathBuf {
    pgdata.join(STATE_DIR)
}

/// Load the state of an unfinished gate, if any.
pub fn load(pgdata: &Path) -> Result<Option<GateState>> {
    let p = state_dir(pgdata).join(STATE_FILE);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::usage(
                format!("{}: unreadable gate state: {e}", p.display()),
                Some("remove it only if you know the original pg_hba.conf is in place".into()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::ReadInput { path: p, source: e }),
    }
}

/// Write a file atomically (temporary file, fsync, rename) with a mode and
/// owner.
fn replace_file(path: &Path, bytes: &[u8], mode: u32, owner: Option<&OsUser>) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.pgdrill-tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    {
        let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, "create", e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, "write", e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, "fsync", e))?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&tmp, "chmod", e))?;
    if let Some(u) = owner {
        u.chown(&tmp)?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io(path, "replace", e))
}

/// The lock's pg_hba.conf: local peer connections through the map, nothing
/// else. Replication and TCP match no line and are refused.
pub fn lock_hba() -> String {
    format!(
        "# pgdrill consistency gate: every client is refused until WAL replay\n\
         # reaches the backup's end point and the server is consistent.\n\
         # The original file is in {STATE_DIR}/ and comes back when the gate\n\
         # opens. To resume or finish: pgdrill gate --pgdata <this directory>\n\
         local all all peer map={MAP}\n"
    )
}

/// The lock's pg_ident.conf: pgdrill's OS user may be these roles.
pub fn lock_ident(os_user: &str, roles: &[String]) -> String {
    let mut s = String::from("# pgdrill consistency gate: see pg_hba.conf\n");
    for r in roles {
        s.push_str(&format!("{MAP} {os_user} {r}\n"));
    }
    s
}

/// Install the lock. With an existing state (a resumed gate) the originals
/// are already saved; the lock files are written again in any case.
pub fn install(pgdata: &Path, state: &GateState, owner: Option<&OsUser>, resumed: bool) -> Result<()> {
    let dir = state_dir(pgdata);
    if !resumed {
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create directory", e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(&dir, "chmod", e))?;
        if let Some(u) = owner {
            u.chown(&dir)?;
        }
        for (src, name, mode) in
            [(&state.hba_file, HBA_ORIG, state.hba_mode), (&state.ident_file, IDENT_ORIG, state.ident_mode)]
        {
            let bytes = match fs::read(src) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::ReadInput { path: src.clone(), source: e }),
            };
            replace_file(&dir.join(name), &bytes, mode, owner)?;
        }
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::usage(format!("gate state: {e}"), None))?;
        replace_file(&dir.join(STATE_FILE), &json, 0o600, owner)?;
    }
    replace_file(&state.hba_file, lock_hba().as_bytes(), 0o600, owner)?;
    replace_file(&state.ident_file, lock_ident(&state.admit_os_user, &state.roles).as_bytes(), 0o600, owner)?;
    Ok(())
}

/// Rewrite the state file (after a change of target or `--then`).
pub fn save(pgdata: &Path, state: &GateState, owner: Option<&OsUser>) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::usage(format!("gate state: {e}"), None))?;
    replace_file(&state_dir(pgdata).join(STATE_FILE), &json, 0o600, owner)
}

/// Put the original files back. The state directory stays until
/// [`finish`], so a crash now re-locks on the next run.
pub fn restore_originals(pgdata: &Path, state: &GateState, owner: Option<&OsUser>) -> Result<()> {
    let dir = state_dir(pgdata);
    for (dst, name, mode) in
        [(&state.hba_file, HBA_ORIG, state.hba_mode), (&state.ident_file, IDENT_ORIG, state.ident_mode)]
    {
        let p = dir.join(name);
        let bytes = fs::read(&p).map_err(|e| Error::ReadInput { path: p.clone(), source: e })?;
        replace_file(dst, &bytes, mode, owner)?;
    }
    Ok(())
}

/// Remove every trace of the gate.
pub fn finish(pgdata: &Path) -> Result<()> {
    let dir = state_dir(pgdata);
    fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, "remove the gate state", e))
}

/// Mode bits of a file, or 0600.
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).map(|m| m.mode() & 0o777).unwrap_or(0o600)
}

/// Whether the lock files are what the lock writes (for tests and status).
pub fn is_locked(state: &GateState) -> bool {
    fs::read_to_string(&state.hba_file).map(|t| t == lock_hba()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_restore_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let pg = d.path();
        fs::write(pg.join("pg_hba.conf"), "local all all trust\n").unwrap();
        fs::set_permissions(pg.join("pg_hba.conf"), fs::Permissions::from_mode(0o640)).unwrap();
        let st = GateState {
            version: 1,
            end_lsn: Some(Lsn(42)),
            then: "pause".into(),
            hba_file: pg.join("pg_hba.conf"),
            ident_file: pg.join("pg_ident.conf"),
            hba_mode: mode_of(&pg.join("pg_hba.conf")),
            ident_mode: 0o600,
            admit_os_user: "root".into(),
            roles: vec!["postgres".into()],
            started_at: String::new(),
            server_started: false,
        };
        install(pg, &st, None, false).unwrap();
        assert!(is_locked(&st));
        assert_eq!(load(pg).unwrap(), Some(st.clone()));
        assert_eq!(
            fs::read_to_string(pg.join("pg_ident.conf")).unwrap().lines().last(),
            Some("pgdrill_gate root postgres")
        );
        // A second install (resume) keeps the saved originals.
        install(pg, &st, None, true).unwrap();
        restore_originals(pg, &st, None).unwrap();
        assert_eq!(fs::read_to_string(pg.join("pg_hba.conf")).unwrap(), "local all all trust\n");
        assert_eq!(mode_of(&pg.join("pg_hba.conf")), 0o640);
        // The ident file did not exist before: it comes back empty.
        assert_eq!(fs::read_to_string(pg.join("pg_ident.conf")).unwrap(), "");
        finish(pg).unwrap();
        assert!(!state_dir(pg).exists());
        assert_eq!(load(pg).unwrap(), None);
    }
}
