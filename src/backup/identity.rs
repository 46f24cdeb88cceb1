//! Is a directory the data directory of the server pgdrill is connected to?
//!
//! A standby and its primary share a system identifier, so that alone does
//! not tell a standby's directory from its primary's. What a running server
//! leaves in its directory does: `postmaster.pid` (`src/backend/utils/init/
//! miscinit.c`, `CreateLockFile()`: pid, data directory, start time, port,
//! ...) and the state in pg_control. Each is compared with what the server
//! says about itself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::session::Session;
use super::walk::Sources;
use crate::datadir::CONTROL_PATH;
use crate::error::{Error, Result};
use crate::pg::control::{ControlFile, DbState};

/// What the server says about itself.
#[derive(Clone, Debug)]
pub struct ServerFacts {
    pub system_identifier: u64,
    pub in_recovery: bool,
    pub port: String,
    /// `pg_postmaster_start_time()`, seconds since the epoch.
    pub started: f64,
    pub backend_pid: i32,
    /// `data_directory`, when the role may read it.
    pub data_directory: Option<PathBuf>,
}

/// Ask the server. `data_directory` needs superuser or pg_read_all_settings;
/// without either it is left out.
pub fn server_facts(s: &mut Session) -> Result<ServerFacts> {
    let row = s.query_one(
        "SELECT system_identifier::text, pg_is_in_recovery(), current_setting('port'),
                extract(epoch FROM pg_postmaster_start_time())::float8, pg_backend_pid()
         FROM pg_control_system()",
        &[],
    )?;
    let sysid: String = row.get(0);
    let data_directory = match s.text("SELECT current_setting('data_directory')") {
        Ok(d) => d.map(PathBuf::from),
        Err(e) if e.sqlstate() == Some("42501") => None,
        Err(e) => return Err(e),
    };
    Ok(ServerFacts {
        system_identifier: sysid.parse().unwrap_or(0),
        in_recovery: row.get(1),
        port: row.get(2),
        started: row.get(3),
        backend_pid: row.get(4),
        data_directory,
    })
}

/// The lines of `postmaster.pid` we compare.
struct PidFile {
    pid: i32,
    started: i64,
    port: String,
}

fn read_pid_file(sources: &Sources) -> Option<PidFile> {
    let text = String::from_utf8(sources.read(Path::new("postmaster.pid")).ok()?).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(PidFile {
        pid: lines.first()?.trim().parse().ok()?,
        started: lines.get(2)?.trim().parse().ok()?,
        port: lines.get(3)?.trim().to_string(),
    })
}

/// The parent pid of a process visible here, if it is a postgres process.
fn postgres_parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    if comm != "postgres" && comm != "postmaster" {
        return None;
    }
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Why `sources`' directory is not the server's, or `None` when it is.
pub fn mismatch(facts: &ServerFacts, sources: &Sources) -> Result<Option<String>> {
    let bytes = sources.read(Path::new(CONTROL_PATH))?;
    let control = ControlFile::parse(&bytes)
        .map_err(|source| Error::Control { path: sources.data_directory().join(CONTROL_PATH), source })?;
    if control.system_identifier != facts.system_identifier {
        return Ok(Some(format!(
            "its pg_control belongs to database system {}, the server is {}",
            control.system_identifier, facts.system_identifier
        )));
    }
    let production = control.state == DbState::InProduction;
    let recovering = matches!(control.state, DbState::InArchiveRecovery | DbState::InCrashRecovery);
    if (facts.in_recovery && production) || (!facts.in_recovery && recovering) {
        return Ok(Some(format!(
            "its pg_control says the cluster is {}, but the server is {}",
            if production { "in production" } else { "in recovery" },
            if facts.in_recovery { "in recovery" } else { "not in recovery" }
        )));
    }
    if let Some(dd) = &facts.data_directory {
        let here = std::fs::metadata(sources.data_directory());
        if let (Ok(theirs), Ok(here)) = (std::fs::metadata(dd), here) {
            if (theirs.dev(), theirs.ino()) != (here.dev(), here.ino()) {
                return Ok(Some(format!("the server's data_directory is {}", dd.display())));
            }
        }
    }
    let Some(pid_file) = read_pid_file(sources) else {
        return Ok(Some("it has no readable postmaster.pid, so no server is running on it".into()));
    };
    if pid_file.port != facts.port {
        return Ok(Some(format!(
            "the postmaster running on it (pid {}) listens on port {}, the server on port {}",
            pid_file.pid, pid_file.port, facts.port
        )));
    }
    if (pid_file.started as f64 - facts.started).abs() > 2.0 {
        return Ok(Some(format!(
            "the postmaster running on it started at {} (epoch seconds), the server at {:.0}",
            pid_file.started, facts.started
        )));
    }
    // Where the server's backend is visible here (same host, same pid
    // namespace), its parent is the postmaster.
    if let Some(parent) = postgres_parent(facts.backend_pid) {
        if parent != pid_file.pid {
            return Ok(Some(format!(
                "postmaster.pid names pid {}, but the server's backend (pid {}) is a child of pid {parent}",
                pid_file.pid, facts.backend_pid
            )));
        }
    }
    Ok(None)
}

/// Refuse a directory that is not the server's.
pub fn check(facts: &ServerFacts, sources: &Sources, target: &str) -> Result<()> {
    match mismatch(facts, sources)? {
        None => Ok(()),
        Some(reason) => Err(Error::WrongDataDirectory {
            path: sources.data_directory().to_path_buf(),
            target: target.to_string(),
            reason,
        }),
    }
}
