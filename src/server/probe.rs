//! Probes of PostgreSQL processes: is a postmaster running on a directory,
//! what does its status line say, what is its startup process doing, and
//! what does the server binary make of a setting (`postgres -C`).
//!
//! Files read here live in a data directory its owner controls; they are
//! opened without following links.

use std::path::Path;

use crate::error::{Error, Result};
use crate::safefs::Dir;

use super::{OsUser, PgBin};

/// `postmaster.pid`'s lines, read without following a link.
fn pid_file_lines(dir: &Path) -> Option<Vec<String>> {
    let d = Dir::open(dir).ok()?;
    let bytes = d.read(Path::new("postmaster.pid")).ok()?;
    Some(String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect())
}

/// The pid in `postmaster.pid` if that process is alive and a postgres.
pub fn running_postmaster(dir: &Path) -> Option<i32> {
    let lines = pid_file_lines(dir)?;
    let pid: i32 = lines.first()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let alive =
        matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Ok(()) | Err(nix::errno::Errno::EPERM));
    // A stale pid file can name a reused pid: make sure it is a postgres.
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd);
    let is_postgres = cmd.contains("postgres") || cmd.contains("postmaster");
    (alive && is_postgres).then_some(pid)
}

/// The 8th line of postmaster.pid (`LOCK_FILE_LINE_PM_STATUS`): `starting`,
/// `ready`, `standby` or `stopping` (PostgreSQL 10+).
pub fn pm_status(dir: &Path) -> Option<String> {
    pid_file_lines(dir)?.get(7).map(|s| s.trim().to_string())
}

/// The process title of the startup process of postmaster `pid`, from /proc.
pub fn startup_title(postmaster: i32) -> Option<String> {
    let children = std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).ok();
    let pids: Vec<i32> = match children {
        Some(c) => c.split_whitespace().filter_map(|p| p.parse().ok()).collect(),
        // Kernels without CONFIG_PROC_CHILDREN: scan for the parent pid.
        None => std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(postmaster)
            })
            .collect(),
    };
    pids.into_iter().find_map(|pid| {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let title = String::from_utf8_lossy(&cmd).replace('\0', " ");
        title.contains("startup").then_some(title)
    })
}

/// Ask the server binary for a setting's effective value (`postgres -C`),
/// run as the server's OS user.
pub fn setting(bin: &PgBin, user: &OsUser, pgdata: &Path, name: &str) -> Result<String> {
    let out = user
        .command(bin.program("postgres"))
        .arg("-D")
        .arg(pgdata)
        .arg("-C")
        .arg(name)
        .output()
        .map_err(|e| Error::Program { program: "postgres -C".into(), message: e.to_string(), log: None })?;
    if !out.status.success() {
        return Err(Error::Program {
            program: format!("postgres -C {name}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            log: None,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
