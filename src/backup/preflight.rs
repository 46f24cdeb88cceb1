//! `pgdrill preflight`: can a backup be taken from this standby, with these
//! options, and will it be restorable?
//!
//! It checks what `backup` would check before copying (the privileges for
//! every function the run calls, that the data directory is the standby's)
//! plus the settings a restore depends on. A standby that refuses
//! connections because hot_standby is off is a failed check, not an error.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::privileges::{self, On};
use super::session::Session;
use super::walk::{self, Sources};
use super::{identity, Method};
use crate::conn::ConnSpec;
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::pg::version::RecoveryStyle;
use crate::pg::Lsn;

/// A validated preflight request.
#[derive(Clone, Debug)]
pub struct PreflightConfig {
    pub standby: ConnSpec,
    pub primary: Option<ConnSpec>,
    pub dest: Option<PathBuf>,
    pub pgdata: Option<PathBuf>,
    /// The backup method the run will use (it decides the functions).
    pub method: Method,
    /// How many copies of the data go to `dest` (a drill writes the backup
    /// and the restored copy there).
    pub copies: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

/// One check.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

/// The result of preflight; its JSON form is documented in docs/json.md.
#[derive(Clone, Debug, Serialize)]
pub struct PreflightReport {
    pub ok: bool,
    pub standby: String,
    pub pg_major: Option<u32>,
    pub data_directory: Option<PathBuf>,
    pub checks: Vec<Check>,
}

impl PreflightReport {
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
    }
}

fn check(name: &'static str, status: Status, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check { name, status, detail: detail.into(), hint: hint.map(str::to_string) }
}

fn pass_or(ok: bool, fail: Status) -> Status {
    if ok {
        Status::Pass
    } else {
        fail
    }
}

/// One value, or `None` when the query fails (missing privilege, old major).
fn value(s: &mut Session, sql: &str) -> Option<String> {
    s.text(sql).ok().flatten()
}

/// Bytes free for an unprivileged user on the file system holding `path`
/// (or its nearest existing parent).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let s = nix::sys::statvfs::statvfs(&p).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

fn report(cfg: &PreflightConfig, major: Option<u32>, pgdata: Option<PathBuf>, checks: Vec<Check>) -> PreflightReport {
    PreflightReport {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        standby: cfg.standby.to_string(),
        pg_major: major,
        data_directory: pgdata,
        checks,
    }
}

pub fn run(cfg: &PreflightConfig) -> Result<PreflightReport> {
    let mut s = match Session::connect(&cfg.standby) {
        Ok(s) => s,
        Err(e @ Error::NotAcceptingConnections { .. }) => {
            let hint = e.hint();
            let c = Check { name: "hot_standby", status: Status::Fail, detail: e.to_string(), hint };
            return Ok(report(cfg, None, None, vec![c]));
        }
        Err(Error::Precondition { message, hint }) => {
            return Ok(report(cfg, None, None, vec![check("version", Status::Fail, message, Some(&hint))]));
        }
        Err(e) => return Err(e),
    };
    let mut checks = vec![check("version", Status::Pass, format!("PostgreSQL {}", s.version.major), None)];
    let mut primary = match cfg.primary.as_ref().map(Session::connect).transpose() {
        Ok(p) => p,
        Err(e) => {
            let hint = e.hint();
            checks.push(Check { name: "primary", status: Status::Fail, detail: e.chain().join(": "), hint });
            None
        }
    };
    server_checks(&mut s, primary.as_mut(), &mut checks);
    checks.extend(privilege_checks(cfg, &mut s, primary.as_mut()));
    checks.push(conflict_check(&mut s));
    let (pgdata, size) = data_directory_checks(cfg, &mut s, &mut checks);
    checks.push(space_check(cfg, size));
    Ok(report(cfg, Some(s.version.major), pgdata, checks))
}

/// Recovery, replay, settings, lag, WAL source.
fn server_checks(s: &mut Session, mut primary: Option<&mut Session>, checks: &mut Vec<Check>) {
    let in_recovery = s.in_recovery;
    checks.push(check(
        "in recovery",
        pass_or(in_recovery, Status::Fail),
        if in_recovery { "the server is a standby" } else { "the server is not in recovery" },
        (!in_recovery).then_some("point --standby at a hot standby, not at a primary"),
    ));
    if in_recovery {
        let paused = if s.version.has_replay_pause_state {
            value(s, "SELECT pg_get_wal_replay_pause_state()").unwrap_or_default()
        } else {
            match value(s, "SELECT pg_is_wal_replay_paused()::text").as_deref() {
                Some("true") => "paused".into(),
                _ => "not paused".into(),
            }
        };
        let ok = paused == "not paused";
        checks.push(check(
            "replay not paused",
            pass_or(ok, Status::Fail),
            format!("replay is {paused}"),
            (!ok).then_some(
                "run SELECT pg_wal_replay_resume() on the standby; a paused standby never reaches the backup's end",
            ),
        ));
    }
    let hot = s.show("hot_standby");
    checks.push(check(
        "hot_standby",
        pass_or(hot == "on", Status::Fail),
        format!("hot_standby = {hot}"),
        (hot != "on").then_some("set hot_standby = on on the standby"),
    ));
    let level = s.show("wal_level");
    let primary_level = primary.as_deref_mut().map(|p| p.show("wal_level"));
    let level_ok = |l: &str| l == "replica" || l == "logical";
    let all_ok = level_ok(&level) && primary_level.as_deref().is_none_or(level_ok);
    checks.push(check(
        "wal_level",
        pass_or(all_ok, Status::Fail),
        match &primary_level {
            Some(p) => format!("standby {level}, primary {p}"),
            None => format!("standby {level}"),
        },
        (!all_ok).then_some("set wal_level = replica (or logical) and restart"),
    ));
    checks.push(full_page_writes_check(s, primary.as_deref_mut()));
    if in_recovery {
        checks.push(lag_check(s, primary.as_deref_mut()));
    }
    checks.push(wal_source_check(s, primary));
}

/// full_page_writes: the primary's setting, or what the standby's last
/// restartpoint recorded from the primary.
fn full_page_writes_check(s: &mut Session, primary: Option<&mut Session>) -> Check {
    let (fpw, source) = match primary {
        Some(p) => (Some(p.show("full_page_writes")), "primary"),
        None => (value(s, "SELECT full_page_writes::text FROM pg_control_checkpoint()"), "standby's pg_control"),
    };
    let fpw_ok = matches!(fpw.as_deref(), Some("on" | "true"));
    check(
        "full_page_writes",
        match fpw {
            None => Status::Warn,
            Some(_) if fpw_ok => Status::Pass,
            Some(_) => Status::Fail,
        },
        format!("{} according to the {source}", fpw.as_deref().unwrap_or("unknown")),
        (!fpw_ok).then_some("enable full_page_writes on the primary and run CHECKPOINT there"),
    )
}

fn lag_check(s: &mut Session, primary: Option<&mut Session>) -> Check {
    let receive = value(s, "SELECT pg_last_wal_receive_lsn()::text").and_then(|v| v.parse::<Lsn>().ok());
    let replay = value(s, "SELECT pg_last_wal_replay_lsn()::text").and_then(|v| v.parse::<Lsn>().ok());
    let age = value(s, "SELECT round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::text");
    let primary_lsn =
        primary.and_then(|p| value(p, "SELECT pg_current_wal_lsn()::text")).and_then(|v| v.parse::<Lsn>().ok());
    let ahead = primary_lsn.or(receive);
    let lag = match (ahead, replay) {
        (Some(a), Some(r)) => a.distance_from(r),
        _ => None,
    };
    let big = lag.is_some_and(|l| l > 1 << 30);
    check(
        "replay lag",
        pass_or(!big, Status::Warn),
        format!(
            "replay {}, {} {}{}",
            replay.map_or("-".into(), |l| l.to_string()),
            if primary_lsn.is_some() { "primary at" } else { "received" },
            ahead.map_or("-".into(), |l| l.to_string()),
            age.map_or(String::new(), |a| format!(", last replayed transaction {a} s ago")),
        ),
        big.then_some("the standby is far behind; the backup's end will be old and replay to it long"),
    )
}

/// A WAL source a restore can use. Before 12 the standby's restore_command
/// is in recovery.conf, read from the data directory (pgdrill runs on the
/// standby's host), so no file-reading function needs a grant.
fn wal_source_check(s: &mut Session, primary: Option<&mut Session>) -> Check {
    let restore_command = match s.version.recovery {
        RecoveryStyle::SignalFiles => value(s, "SELECT current_setting('restore_command')"),
        RecoveryStyle::RecoveryConf => value(s, "SELECT current_setting('data_directory')")
            .and_then(|d| Sources::open_data_directory(Path::new(&d)).ok())
            .and_then(|src| src.read(Path::new("recovery.conf")).ok())
            .and_then(|t| crate::pg::conf::get(&String::from_utf8_lossy(&t), "restore_command")),
    }
    .filter(|v| !v.is_empty());
    let primary_archive = primary.and_then(|p| {
        let mode = p.show("archive_mode");
        (mode != "off")
            .then(|| value(p, "SELECT current_setting('archive_command')"))
            .flatten()
            .filter(|c| !c.is_empty())
    });
    match (&restore_command, &primary_archive) {
        (Some(rc), _) => check("WAL source", Status::Pass, format!("the standby restores with: {rc}"), None),
        (None, Some(ac)) => check("WAL source", Status::Pass, format!("the primary archives with: {ac}"), None),
        (None, None) => check(
            "WAL source",
            Status::Warn,
            "no restore_command on the standby and no archiving known",
            Some("a restore needs the backup's WAL: configure a WAL archive, or pass --primary so pgdrill can see the primary's archive settings"),
        ),
    }
}

/// Every function the backup will call with these options, on each server.
fn privilege_checks(cfg: &PreflightConfig, s: &mut Session, primary: Option<&mut Session>) -> Vec<Check> {
    let needs = privileges::needs(s.version, cfg.method, cfg.primary.is_some());
    let mut out = Vec::new();
    let mut one = |name: &'static str, session: &mut Session, on: On| match privileges::missing(session, on, &needs) {
        Ok(m) if m.is_empty() => {
            let n = needs.iter().filter(|n| n.on == on).count();
            out.push(check(
                name,
                Status::Pass,
                format!("{} may call the {n} functions the backup calls here", session.role),
                None,
            ))
        }
        Ok(m) => {
            let names: Vec<&str> = m.iter().map(|n| n.function.as_str()).collect();
            let hint = format!(
                "run on the primary (grants reach the standby by replication): {}",
                privileges::grants(&session.role, &m).join(" ")
            );
            out.push(check(
                name,
                Status::Fail,
                format!("{} may not call {}", session.role, names.join(", ")),
                Some(&hint),
            ))
        }
        Err(e) => out.push(check(name, Status::Fail, e.chain().join(": "), None)),
    };
    one("privileges", s, On::Standby);
    if let Some(p) = primary {
        one("privileges on the primary", p, On::Primary);
    }
    out
}

/// What decides whether replay cancels the backup's statements.
fn conflict_check(s: &mut Session) -> Check {
    let streaming = s.show("max_standby_streaming_delay");
    let archive = s.show("max_standby_archive_delay");
    let feedback = s.show("hot_standby_feedback");
    let detail = format!(
        "max_standby_streaming_delay = {streaming}, max_standby_archive_delay = {archive}, hot_standby_feedback = \
         {feedback}; the backup holds a snapshot for at most {} s at a time and waits for restartpoints outside one",
        super::session::ATTEMPT_TIMEOUT.as_secs()
    );
    let instant = streaming == "0" && feedback == "off";
    check(
        "recovery conflicts",
        pass_or(!instant, Status::Warn),
        detail,
        instant.then_some(
            "with max_standby_streaming_delay = 0 replay cancels every conflicting statement at once; pgdrill \
             retries, but hot_standby_feedback = on avoids the conflicts",
        ),
    )
}

/// The data directory: found, the standby's own, readable. Returns it and
/// the bytes a backup would copy.
fn data_directory_checks(
    cfg: &PreflightConfig,
    s: &mut Session,
    checks: &mut Vec<Check>,
) -> (Option<PathBuf>, Option<u64>) {
    let facts = match identity::server_facts(s) {
        Ok(f) => f,
        Err(e) => {
            checks.push(check("data directory", Status::Fail, e.chain().join(": "), None));
            return (cfg.pgdata.clone(), None);
        }
    };
    let grant = privileges::settings_grant(&s.role);
    let Some(pgdata) = cfg.pgdata.clone().or_else(|| facts.data_directory.clone()) else {
        let hint = format!("pass --pgdata, or run on the primary: {grant}");
        checks.push(check(
            "data directory",
            Status::Fail,
            format!("{} may not read data_directory, and no --pgdata was given", s.role),
            Some(&hint),
        ));
        return (None, None);
    };
    let result = Sources::open_data_directory(&pgdata).and_then(|src| {
        if let Some(reason) = identity::mismatch(&facts, &src)? {
            return Ok(Err(reason));
        }
        let plan = walk::plan(src, &mut |oid| s.tablespace_location(oid))?;
        Ok(Ok(plan.total_bytes()))
    });
    let size = match result {
        Ok(Ok(size)) => {
            let unchecked = if facts.data_directory.is_none() {
                format!("; data_directory not compared ({} may not read it)", s.role)
            } else {
                String::new()
            };
            checks.push(check(
                "data directory",
                Status::Pass,
                format!(
                    "{} is the standby's and readable ({} to copy){unchecked}",
                    pgdata.display(),
                    crate::units::bytes(size)
                ),
                None,
            ));
            Some(size)
        }
        Ok(Err(reason)) => {
            checks.push(check(
                "data directory",
                Status::Fail,
                format!("{} is not the standby's data directory: {reason}", pgdata.display()),
                Some("pass the standby's own data directory with --pgdata"),
            ));
            None
        }
        Err(e) => {
            let hint = e
                .hint()
                .unwrap_or_else(|| "run pgdrill on the standby's host as root or as the data directory's owner".into());
            checks.push(check(
                "data directory",
                Status::Fail,
                format!("{}: {}", pgdata.display(), e.chain().join(": ")),
                Some(&hint),
            ));
            None
        }
    };
    (Some(pgdata), size)
}

fn space_check(cfg: &PreflightConfig, data_size: Option<u64>) -> Check {
    let b = crate::units::bytes;
    if cfg.dest.as_deref().and_then(|d| d.to_str()).is_some_and(crate::objstore::is_s3) {
        return check("destination space", Status::Skip, "object storage has no free space to check", None);
    }
    match (&cfg.dest, data_size.map(|s| s * cfg.copies.max(1))) {
        (Some(d), Some(size)) => match free_bytes(d) {
            Some(free) if free >= size + size / 10 => {
                check("destination space", Status::Pass, format!("{} free", b(free)), None)
            }
            Some(free) if free >= size => check(
                "destination space",
                Status::Warn,
                format!("{} free for {}", b(free), b(size)),
                Some("less than 10% to spare; the data may grow during the backup"),
            ),
            Some(free) => check(
                "destination space",
                Status::Fail,
                format!("{} free, {} needed", b(free), b(size)),
                Some("free space or choose another --dest"),
            ),
            None => check("destination space", Status::Warn, format!("cannot stat {}", d.display()), None),
        },
        (None, _) => check("destination space", Status::Skip, "no --dest given", None),
        (Some(_), None) => check("destination space", Status::Skip, "data size unknown", None),
    }
}
