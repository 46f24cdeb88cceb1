//! Watching a recovering server without connecting to it: its log, its
//! startup process's title, and `postmaster.pid`'s status line.
//!
//! Until hot standby opens, no connection is possible (and failed attempts
//! would fill the log), so progress comes from the startup process title
//! (`postgres: startup recovering <segment>` / `waiting for <segment>`, set
//! in `src/backend/access/transam/xlogrecovery.c`) and the status line of
//! `postmaster.pid` (`ready` once connections are accepted, PostgreSQL 10+).
//! Diagnoses come from the server log.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::pg::Lsn;

/// What the startup process says it is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupActivity {
    Recovering(String),
    Waiting(String),
    Other(String),
}

/// Parse a process title.
pub fn parse_startup_title(title: &str) -> Option<StartupActivity> {
    let t = title.trim_end_matches(['\0', ' ']).trim();
    let i = t.find("startup")?;
    let rest = t[i + "startup".len()..].trim();
    let seg = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
    if let Some(s) = rest.strip_prefix("recovering") {
        return Some(StartupActivity::Recovering(seg(s)));
    }
    if let Some(s) = rest.strip_prefix("waiting for") {
        return Some(StartupActivity::Waiting(seg(s)));
    }
    Some(StartupActivity::Other(rest.to_string()))
}

/// The startup process of the postmaster `pid`, from its process title.
pub fn startup_activity(postmaster: i32) -> Option<StartupActivity> {
    crate::server::probe::startup_title(postmaster).and_then(|t| parse_startup_title(&t))
}

/// Reads what a server logs, from where we started reading: the stderr file
/// pgdrill gave the postmaster and, when the logging collector is on, the
/// file named in `current_logfiles`.
///
/// The server's OS user writes `current_logfiles` and chooses the log
/// directory, so as root a log file is read only if that user owns it and
/// it is not a link: root's reach must not show a file the server's user
/// could not read itself.
pub struct ServerLog {
    pgdata: PathBuf,
    stderr_file: PathBuf,
    /// Read only files owned by this uid (when pgdrill is root).
    owner: Option<u32>,
    offsets: Vec<(PathBuf, u64)>,
    /// Everything read so far (capped), for diagnosis.
    pub text: String,
}

const MAX_KEPT: usize = 1 << 20;

impl ServerLog {
    /// Start reading `stderr_file` at its current end.
    pub fn new(pgdata: &Path, stderr_file: &Path, owner: Option<u32>) -> ServerLog {
        let start = fs::symlink_metadata(stderr_file).map(|m| m.len()).unwrap_or(0);
        let mut l = ServerLog {
            pgdata: pgdata.to_path_buf(),
            stderr_file: stderr_file.to_path_buf(),
            owner,
            offsets: Vec::new(),
            text: String::new(),
        };
        l.offsets.push((stderr_file.to_path_buf(), start));
        l
    }

    fn collector_file(&self) -> Option<PathBuf> {
        let dir = crate::safefs::Dir::open(&self.pgdata).ok()?;
        let text = String::from_utf8(dir.read(Path::new("current_logfiles")).ok()?).ok()?;
        let line = text.lines().find(|l| l.starts_with("stderr "))?;
        let p = PathBuf::from(line.trim_start_matches("stderr ").trim());
        Some(if p.is_absolute() { p } else { self.pgdata.join(p) })
    }

    /// Start reading at most `max` bytes before the end of `stderr_file`
    /// (a server we attach to has logged before we came).
    pub fn with_recent(pgdata: &Path, stderr_file: &Path, owner: Option<u32>, max: u64) -> ServerLog {
        let mut l = ServerLog::new(pgdata, stderr_file, owner);
        if let Some((_, off)) = l.offsets.first_mut() {
            *off = off.saturating_sub(max);
        }
        l.poll();
        l
    }

    /// Read new lines; returns them.
    pub fn poll(&mut self) -> String {
        if let Some(c) = self.collector_file() {
            if !self.offsets.iter().any(|(p, _)| *p == c) {
                self.offsets.push((c, 0));
            }
        }
        let mut new = String::new();
        for (path, off) in &mut self.offsets {
            let Some(mut f) = open_log(path, self.owner) else { continue };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < *off {
                *off = 0;
            }
            if len == *off || f.seek(SeekFrom::Start(*off)).is_err() {
                continue;
            }
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() {
                // Only whole lines; keep a partial last line for next time.
                let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                *off += end as u64;
                new.push_str(&String::from_utf8_lossy(&buf[..end]));
            }
        }
        self.text.push_str(&new);
        if self.text.len() > MAX_KEPT {
            let cut = self.text.len() - MAX_KEPT / 2;
            let cut = (cut..self.text.len()).find(|i| self.text.is_char_boundary(*i)).unwrap_or(self.text.len());
            self.text.drain(..cut);
        }
        new
    }

    pub fn stderr_file(&self) -> &Path {
        &self.stderr_file
    }
}

/// Open a log file without following a link at its last component, and
/// only if `owner` (when given) owns it.
fn open_log(path: &Path, owner: Option<u32>) -> Option<fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path).ok()?;
    let m = f.metadata().ok()?;
    (m.is_file() && owner.is_none_or(|u| m.uid() == u)).then_some(f)
}

/// A line saying a write failed for lack of space (the server's own, or
/// restore_command's: both speak C, see [`crate::recovery::GATE_SETTINGS`]
/// and the environment [`crate::server::OsUser::command`] sets).
pub fn disk_full_line(log: &str) -> Option<String> {
    log.lines().rev().find(|l| l.contains("No space left on device")).map(|l| l.trim().to_string())
}

/// `consistent recovery state reached at X/X`: the server's own notion.
pub fn consistent_lsn(log: &str) -> Option<Lsn> {
    let re = Regex::new(r"consistent recovery state reached at ([0-9A-Fa-f]+/[0-9A-Fa-f]+)").ok()?;
    re.captures_iter(log).last().and_then(|c| c[1].parse().ok())
}

/// Whether the postmaster logged that it reloaded its configuration.
pub fn reloaded(log: &str) -> bool {
    log.contains("received SIGHUP, reloading configuration files")
}

/// Whether the reload refused pg_hba.conf.
pub fn hba_not_reloaded(log: &str) -> bool {
    log.contains("pg_hba.conf was not reloaded") || log.contains("pg_ident.conf was not reloaded")
}

/// A WAL segment named by a failing restore_command (cp, rsync, test ...).
pub fn missing_segment_from_log(log: &str) -> Option<String> {
    let re =
        Regex::new(r"(?i)(?:cannot stat|No such file|not found|could not (?:open|restore) file)[^\n]*?([0-9A-F]{24})")
            .ok()?;
    re.captures_iter(log).last().map(|c| c[1].to_string())
}

/// Whether a FATAL says a recovery target lies before consistency.
pub fn stop_before_consistency(line: &str) -> bool {
    line.contains("requested recovery stop point is before consistent recovery point")
}

/// FATAL and PANIC lines, newest last.
pub fn fatal_lines(log: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains("FATAL:") || l.contains("PANIC:")).map(|l| l.trim().to_string()).collect()
}

/// Whether a FATAL only tells of a client turned away (by the gate's lock or
/// because the server was not ready): not a diagnosis of replay.
pub fn fatal_is_client(line: &str) -> bool {
    const CLIENT: &[&str] = &[
        "the database system is starting up",
        "not yet accepting connections",
        "no pg_hba.conf entry",
        "authentication failed",
        "does not exist",
        "the database system is in recovery mode",
        "the database system is shutting down",
        "terminating connection",
    ];
    CLIENT.iter().any(|c| line.contains(c))
}

/// Whether a FATAL is about the environment (a port in use, permissions,
/// configuration), as opposed to the backup being unable to reach
/// consistency.
pub fn fatal_is_environment(line: &str) -> bool {
    const ENV: &[&str] = &[
        "could not bind",
        "could not create listen socket",
        "could not create any",
        "lock file",
        "permission denied",
        "Permission denied",
        "shared memory",
        "out of memory",
        "configuration file",
        "invalid value for parameter",
        "unrecognized configuration parameter",
        "data directory",
        "could not load library",
        "could not access",
    ];
    ENV.iter().any(|e| line.contains(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pgdrill wal-fetch`, the restored server's restore_command, says a
    /// segment is absent in words the gate reads back from the log.
    #[test]
    fn names_the_segment_wal_fetch_could_not_find() {
        let arch = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let absent = crate::source::fetch::run(&crate::source::fetch::WalFetchConfig {
            name: "000000010000000000000003".into(),
            path: out.path().join("RECOVERYXLOG"),
            archive: arch.path().into(),
            s3: Default::default(),
            s3_credentials: None,
        })
        .unwrap_err();
        assert_eq!(missing_segment_from_log(&absent.to_string()).as_deref(), Some("000000010000000000000003"));
    }

    #[test]
    fn titles() {
        assert_eq!(
            parse_startup_title("postgres: startup recovering 000000010000000000000004   \0\0"),
            Some(StartupActivity::Recovering("000000010000000000000004".into()))
        );
        assert_eq!(
            parse_startup_title("postgres: main: startup waiting for 000000010000000000000005"),
            Some(StartupActivity::Waiting("000000010000000000000005".into()))
        );
        assert_eq!(parse_startup_title("postgres: checkpointer"), None);
    }

    #[test]
    fn log_diagnosis() {
        let log = "2026-11-21 LOG:  consistent recovery state reached at 0/A000000\n\
                   cp: cannot stat '/srv/archive/000000010000000000000007': No such file or directory\n\
                   2026-11-21 FATAL:  could not locate required checkpoint record\n\
                   2026-11-21 LOG:  consistent recovery state reached at 0/B000000\n";
        assert_eq!(consistent_lsn(log), Some(Lsn(0xB000000)));
        assert_eq!(missing_segment_from_log(log).as_deref(), Some("000000010000000000000007"));
        assert_eq!(fatal_lines(log).len(), 1);
        assert!(!fatal_is_environment(&fatal_lines(log)[0]));
        assert!(fatal_is_environment("FATAL:  lock file \"postmaster.pid\" already exists"));
        assert!(fatal_is_environment("LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"));
        assert!(reloaded("LOG:  received SIGHUP, reloading configuration files"));
        assert!(hba_not_reloaded("LOG:  pg_hba.conf was not reloaded"));
        assert!(fatal_is_client("FATAL:  Peer authentication failed for user \"postgres\""));
        assert!(fatal_is_client("FATAL:  the database system is starting up"));
        assert!(!fatal_is_client("FATAL:  requested recovery stop point is before consistent recovery point"));
        assert_eq!(
            disk_full_line("LOG:  x\ncp: error writing '/d/pg_wal/RECOVERYXLOG': No space left on device\nLOG:  y\n")
                .as_deref(),
            Some("cp: error writing '/d/pg_wal/RECOVERYXLOG': No space left on device")
        );
        assert_eq!(disk_full_line("LOG:  fine\n"), None);
        // History-file probes are not missing segments.
        assert_eq!(
            missing_segment_from_log("cp: cannot stat '/a/00000002.history': No such file or directory\n"),
            None
        );
    }

    #[test]
    fn reads_only_new_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("log");
        fs::write(&f, "old line\n").unwrap();
        let mut l = ServerLog::new(d.path(), &f, None);
        assert_eq!(l.poll(), "");
        fs::write(&f, "old line\nnew line\npartial").unwrap();
        assert_eq!(l.poll(), "new line\n");
        fs::write(&f, "old line\nnew line\npartial rest\n").unwrap();
        assert_eq!(l.poll(), "partial rest\n");
    }
}
