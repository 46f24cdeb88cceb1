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

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pg::Lsn;
use crate::safefs::Dir;
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
    /// The backup's own end point, recorded before the server first
    /// started (pg_control and backup_label change once it runs). No end
    /// target below it is accepted, and the gate never opens below it.
    #[serde(default)]
    pub floor_lsn: Option<Lsn>,
    /// A recovery target by time, transaction or restore point: the gate
    /// opens where replay stops for it (never below the floor).
    #[serde(default)]
    pub stop_at: Option<crate::recovery::StopAt>,
}

/// An exclusive advisory lock on the data directory itself (no file is
/// created), held while a gate runs, so that two gates never work on one
/// directory. The kernel drops it when the process ends, however it ends.
pub fn exclusive(pgdata: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = std::fs::File::open(pgdata).map_err(|e| Error::ReadInput { path: pgdata.to_path_buf(), source: e })?;
    nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| Error::GateBusy { pgdata: pgdata.to_path_buf() })
}

pub fn state_dir(pgdata: &Path) -> PathBuf {
    pgdata.join(STATE_DIR)
}

/// `file` as a path relative to the data directory `dir`, or an error if
/// it lies outside it (the gate changes files inside the copy only).
pub fn relative_to(dir: &Dir, file: &Path) -> Result<PathBuf> {
    let outside = || {
        Error::usage(
            format!("{} is outside the data directory; the gate only changes files inside it", file.display()),
            Some("copy it into the data directory and point hba_file/ident_file there".into()),
        )
    };
    let rel = if file.is_absolute() { file.strip_prefix(dir.path()).map_err(|_| outside())? } else { file };
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) || rel.as_os_str().is_empty() {
        return Err(outside());
    }
    Ok(rel.to_path_buf())
}

fn state_err<'a>(dir: &'a Dir, what: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |e| Error::io(dir.path().join(STATE_DIR), what, e)
}

/// Load the state of an unfinished gate, if any. A state directory that is a
/// link, or a state naming files outside the data directory, is refused.
pub fn load(dir: &Dir) -> Result<Option<GateState>> {
    let path = dir.path().join(STATE_DIR).join(STATE_FILE);
    let bytes = match dir.read_optional(&Path::new(STATE_DIR).join(STATE_FILE)) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Error::ReadInput { path, source: e }),
    };
    let state: GateState =
        serde_json::from_slice(&bytes).map_err(|e| Error::GateState { path: path.clone(), message: e.to_string() })?;
    relative_to(dir, &state.hba_file)?;
    relative_to(dir, &state.ident_file)?;
    Ok(Some(state))
}

fn state_json(state: &GateState) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(state)
        .map_err(|e| Error::GateState { path: PathBuf::from(STATE_FILE), message: e.to_string() })
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

/// Install the lock. A new gate saves the originals and the state first;
/// a resumed one only writes the lock files again.
pub fn install(dir: &Dir, state: &GateState, owner: Option<&OsUser>, resumed: bool) -> Result<()> {
    let hba = relative_to(dir, &state.hba_file)?;
    let ident = relative_to(dir, &state.ident_file)?;
    if !resumed {
        let sd = dir.create_dir(Path::new(STATE_DIR), 0o700, owner).map_err(state_err(dir, "create directory"))?;
        for (rel, name, mode) in [(&hba, HBA_ORIG, state.hba_mode), (&ident, IDENT_ORIG, state.ident_mode)] {
            let bytes = dir
                .read_optional(rel)
                .map_err(|e| Error::ReadInput { path: dir.path().join(rel), source: e })?
                .unwrap_or_default();
            sd.replace(Path::new(name), &bytes, mode, owner).map_err(state_err(dir, "save the original"))?;
        }
        sd.replace(Path::new(STATE_FILE), &state_json(state)?, 0o600, owner).map_err(state_err(dir, "write"))?;
    }
    dir.replace(&hba, lock_hba().as_bytes(), 0o600, owner).map_err(|e| Error::io(&state.hba_file, "write", e))?;
    dir.replace(&ident, lock_ident(&state.admit_os_user, &state.roles).as_bytes(), 0o600, owner)
        .map_err(|e| Error::io(&state.ident_file, "write", e))?;
    Ok(())
}

/// Rewrite the state file (after a change of target or `--then`).
pub fn save(dir: &Dir, state: &GateState, owner: Option<&OsUser>) -> Result<()> {
    let sd = dir.dir(Path::new(STATE_DIR)).map_err(state_err(dir, "open"))?;
    sd.replace(Path::new(STATE_FILE), &state_json(state)?, 0o600, owner).map_err(state_err(dir, "write"))
}

/// Put the original files back. The state directory stays until
/// [`finish`], so a crash now re-locks on the next run.
pub fn restore_originals(dir: &Dir, state: &GateState, owner: Option<&OsUser>) -> Result<()> {
    let sd = dir.dir(Path::new(STATE_DIR)).map_err(state_err(dir, "open"))?;
    for (file, name, mode) in
        [(&state.hba_file, HBA_ORIG, state.hba_mode), (&state.ident_file, IDENT_ORIG, state.ident_mode)]
    {
        let bytes = sd.read(Path::new(name)).map_err(|e| Error::ReadInput { path: sd.path().join(name), source: e })?;
        dir.replace(&relative_to(dir, file)?, &bytes, mode, owner).map_err(|e| Error::io(file, "write", e))?;
    }
    Ok(())
}

/// Remove every trace of the gate.
pub fn finish(dir: &Dir) -> Result<()> {
    dir.remove_tree(Path::new(STATE_DIR)).map_err(state_err(dir, "remove the gate state"))
}

/// Mode bits of a file in the data directory, or 0600.
pub fn mode_of(dir: &Dir, file: &Path) -> u32 {
    relative_to(dir, file).ok().and_then(|rel| dir.meta(&rel).ok()).map_or(0o600, |m| m.mode & 0o777)
}

/// Whether the lock files are what the lock writes (for tests and status).
pub fn is_locked(dir: &Dir, state: &GateState) -> bool {
    relative_to(dir, &state.hba_file)
        .ok()
        .and_then(|rel| dir.read(&rel).ok())
        .is_some_and(|b| b == lock_hba().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lock_and_restore_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let pg = &std::fs::canonicalize(d.path()).unwrap();
        fs::write(pg.join("pg_hba.conf"), "local all all trust\n").unwrap();
        fs::set_permissions(pg.join("pg_hba.conf"), fs::Permissions::from_mode(0o640)).unwrap();
        let dir = Dir::open(pg).unwrap();
        let st = GateState {
            version: 1,
            end_lsn: Some(Lsn(42)),
            then: "pause".into(),
            hba_file: pg.join("pg_hba.conf"),
            ident_file: pg.join("pg_ident.conf"),
            hba_mode: mode_of(&dir, &pg.join("pg_hba.conf")),
            ident_mode: 0o600,
            admit_os_user: "root".into(),
            roles: vec!["postgres".into()],
            started_at: String::new(),
            server_started: false,
            floor_lsn: Some(Lsn(40)),
            stop_at: None,
        };
        install(&dir, &st, None, false).unwrap();
        assert!(is_locked(&dir, &st));
        assert_eq!(load(&dir).unwrap(), Some(st.clone()));
        assert_eq!(
            fs::read_to_string(pg.join("pg_ident.conf")).unwrap().lines().last(),
            Some("pgdrill_gate root postgres")
        );
        // A second install (resume) keeps the saved originals.
        install(&dir, &st, None, true).unwrap();
        restore_originals(&dir, &st, None).unwrap();
        assert_eq!(fs::read_to_string(pg.join("pg_hba.conf")).unwrap(), "local all all trust\n");
        assert_eq!(mode_of(&dir, &pg.join("pg_hba.conf")), 0o640);
        // The ident file did not exist before: it comes back empty.
        assert_eq!(fs::read_to_string(pg.join("pg_ident.conf")).unwrap(), "");
        finish(&dir).unwrap();
        assert!(!state_dir(pg).exists());
        assert_eq!(load(&dir).unwrap(), None);
    }

    #[test]
    fn state_naming_files_outside_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let pg = std::fs::canonicalize(d.path()).unwrap();
        let dir = Dir::open(&pg).unwrap();
        for bad in ["/etc/passwd", "../x", "sub/../../x"] {
            assert!(relative_to(&dir, Path::new(bad)).is_err(), "{bad}");
        }
        assert_eq!(relative_to(&dir, &pg.join("pg_hba.conf")).unwrap(), PathBuf::from("pg_hba.conf"));
        // A planted state directory that is a link is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), pg.join(STATE_DIR)).unwrap();
        assert!(load(&dir).is_err());
        assert!(finish(&dir).is_ok(), "finish removes the link itself");
        assert!(outside.path().exists());
    }
}
