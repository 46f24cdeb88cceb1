//! `pgdrill preflight`: can a backup be taken from this standby, and will it
//! be restorable?

use std::path::{Path, PathBuf};

use postgres::Client;
use serde::Serialize;

use crate::conn::ConnSpec;
use crate::error::{Result, EXIT_FAILED, EXIT_OK};
use crate::pg::{version, Lsn};

/// A validated preflight request.
#[derive(Clone, Debug)]
pub struct PreflightConfig {
    pub standby: ConnSpec,
    pub primary: Option<ConnSpec>,
    pub dest: Option<PathBuf>,
    pub pgdata: Option<PathBuf>,
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

/// One value, or `None` when the query fails (missing privilege, old major).
fn value(c: &mut Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[]).ok().and_then(|r| r.get::<_, Option<String>>(0))
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

pub fn run(cfg: &PreflightConfig) -> Result<PreflightReport> {
    let mut s = cfg.standby.connect()?;
    let mut checks = Vec::new();
    let num: u32 =
        value(&mut s, "SELECT current_setting('server_version_num')").and_then(|v| v.parse().ok()).unwrap_or(0);
    let major = num / 10000;
    let supported = version::by_major(major).is_some();
    checks.push(check(
        "version",
        if supported { Status::Pass } else { Status::Fail },
        format!("PostgreSQL {major}"),
        (!supported).then_some("pgdrill supports PostgreSQL 10 to 18"),
    ));

    let in_recovery = value(&mut s, "SELECT pg_is_in_recovery()::text").as_deref() == Some("true");
    checks.push(check(
        "in recovery",
        if in_recovery { Status::Pass } else { Status::Fail },
        if in_recovery { "the server is a standby" } else { "the server is not in recovery" },
        (!in_recovery).then_some("point --standby at a hot standby, not at a primary"),
    ));
    if in_recovery {
        let paused = if major >= 14 {
            value(&mut s, "SELECT pg_get_wal_replay_pause_state()").unwrap_or_default()
        } else {
            match value(&mut s, "SELECT pg_is_wal_replay_paused()::text").as_deref() {
                Some("true") => "paused".into(),
                _ => "not paused".into(),
            }
        };
        let ok = paused == "not paused";
        checks.push(check(
            "replay not paused",
            if ok { Status::Pass } else { Status::Fail },
            format!("replay is {paused}"),
            (!ok).then_some(
                "run SELECT pg_wal_replay_resume() on the standby; a paused standby never reaches the backup's end",
            ),
        ));
    }

    let hot = value(&mut s, "SELECT current_setting('hot_standby')").unwrap_or_default();
    checks.push(check(
        "hot_standby",
        if hot == "on" { Status::Pass } else { Status::Fail },
        format!("hot_standby = {hot}"),
        (hot != "on").then_some("set hot_standby = on on the standby"),
    ));
    let level = value(&mut s, "SELECT current_setting('wal_level')").unwrap_or_default();
    let primary_level = cfg
        .primary
        .as_ref()
        .and_then(|p| p.connect().ok())
        .and_then(|mut p| value(&mut p, "SELECT current_setting('wal_level')"));
    let level_ok = |l: &str| l == "replica" || l == "logical";
    let all_ok = level_ok(&level) && primary_level.as_deref().is_none_or(level_ok);
    checks.push(check(
        "wal_level",
        if all_ok { Status::Pass } else { Status::Fail },
        match &primary_level {
            Some(p) => format!("standby {level}, primary {p}"),
            None => format!("standby {level}"),
        },
        (!all_ok).then_some("set wal_level = replica (or logical) and restart"),
    ));

    // full_page_writes: the primary's setting, or what the standby's last
    // restartpoint recorded from the primary.
    let (fpw, source) = match &cfg.primary {
        Some(p) => match p.connect() {
            Ok(mut pc) => (value(&mut pc, "SELECT current_setting('full_page_writes')"), "primary"),
            Err(_) => (None, "primary (unreachable)"),
        },
        None => (value(&mut s, "SELECT full_page_writes::text FROM pg_control_checkpoint()"), "standby's pg_control"),
    };
    let fpw_ok = matches!(fpw.as_deref(), Some("on" | "true"));
    checks.push(check(
        "full_page_writes",
        match fpw {
            None => Status::Warn,
            Some(_) if fpw_ok => Status::Pass,
            Some(_) => Status::Fail,
        },
        format!("{} according to the {source}", fpw.as_deref().unwrap_or("unknown")),
        (!fpw_ok).then_some("enable full_page_writes on the primary and run CHECKPOINT there"),
    ));

    // Replay lag.
    if in_recovery {
        let receive = value(&mut s, "SELECT pg_last_wal_receive_lsn()::text").and_then(|v| v.parse::<Lsn>().ok());
        let replay = value(&mut s, "SELECT pg_last_wal_replay_lsn()::text").and_then(|v| v.parse::<Lsn>().ok());
        let age: Option<f64> = s
            .query_one("SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8", &[])
            .ok()
            .and_then(|r| r.get(0));
        let primary_lsn = cfg
            .primary
            .as_ref()
            .and_then(|p| p.connect().ok())
            .and_then(|mut p| value(&mut p, "SELECT pg_current_wal_lsn()::text"))
            .and_then(|v| v.parse::<Lsn>().ok());
        let ahead = primary_lsn.or(receive);
        let lag = match (ahead, replay) {
            (Some(a), Some(r)) => a.distance_from(r),
            _ => None,
        };
        let big = lag.is_some_and(|l| l > 1 << 30);
        checks.push(check(
            "replay lag",
            if big { Status::Warn } else { Status::Pass },
            format!(
                "replay {}, {} {}{}",
                replay.map_or("-".into(), |l| l.to_string()),
                if primary_lsn.is_some() { "primary at" } else { "received" },
                ahead.map_or("-".into(), |l| l.to_string()),
                age.map_or(String::new(), |a| format!(", last replayed transaction {a:.0} s ago")),
            ),
            big.then_some("the standby is far behind; the backup's end will be old and replay to it long"),
        ));
    }

    // A WAL source a restore can use.
    let restore_command = if major >= 12 {
        value(&mut s, "SELECT current_setting('restore_command')")
    } else {
        value(&mut s, "SELECT pg_read_file('recovery.conf')").and_then(|t| crate::pg::conf::get(&t, "restore_command"))
    }
    .filter(|v| !v.is_empty());
    let primary_archive = cfg.primary.as_ref().and_then(|p| p.connect().ok()).and_then(|mut p| {
        let mode = value(&mut p, "SELECT current_setting('archive_mode')")?;
        (mode != "off")
            .then(|| value(&mut p, "SELECT current_setting('archive_command')"))
            .flatten()
            .filter(|c| !c.is_empty())
    });
    checks.push(match (&restore_command, &primary_archive) {
        (Some(rc), _) => check("WAL source", Status::Pass, format!("the standby restores with: {rc}"), None),
        (None, Some(ac)) => check("WAL source", Status::Pass, format!("the primary archives with: {ac}"), None),
        (None, None) => check(
            "WAL source",
            Status::Warn,
            "no restore_command on the standby and no archiving known",
            Some("a restore needs the backup's WAL: configure a WAL archive, or pass --primary so pgdrill can see the primary's archive settings"),
        ),
    });

    // The data directory must be readable here: pgdrill copies files.
    let pgdata =
        cfg.pgdata.clone().or_else(|| value(&mut s, "SELECT current_setting('data_directory')").map(PathBuf::from));
    let mut data_size = None;
    match &pgdata {
        None => checks.push(check(
            "data directory",
            Status::Fail,
            "the server did not say where its data directory is",
            Some("pass --pgdata, or connect as a role with pg_read_all_settings"),
        )),
        Some(p) => match crate::backup::walk::plan(p).and_then(|plan| {
            crate::datadir::read_control(p)?;
            Ok(plan)
        }) {
            Ok(plan) => {
                data_size = Some(plan.total_bytes());
                checks.push(check(
                    "data directory",
                    Status::Pass,
                    format!("{} is readable ({} to copy)", p.display(), crate::report::bytes(plan.total_bytes())),
                    None,
                ))
            }
            Err(e) => checks.push(check(
                "data directory",
                Status::Fail,
                format!("{}: {}", p.display(), e.chain().join(": ")),
                Some("run pgdrill on the standby's host as root or as the data directory's owner"),
            )),
        },
    }

    match (&cfg.dest, data_size.map(|s| s * cfg.copies.max(1))) {
        (Some(d), Some(size)) => match free_bytes(d) {
            Some(free) if free >= size + size / 10 => checks.push(check(
                "destination space",
                Status::Pass,
                format!("{} free", crate::report::bytes(free)),
                None,
            )),
            Some(free) if free >= size => checks.push(check(
                "destination space",
                Status::Warn,
                format!("{} free for {}", crate::report::bytes(free), crate::report::bytes(size)),
                Some("less than 10% to spare; the data may grow during the backup"),
            )),
            Some(free) => checks.push(check(
                "destination space",
                Status::Fail,
                format!("{} free, {} needed", crate::report::bytes(free), crate::report::bytes(size)),
                Some("free space or choose another --dest"),
            )),
            None => checks.push(check("destination space", Status::Warn, format!("cannot stat {}", d.display()), None)),
        },
        (None, _) => checks.push(check("destination space", Status::Skip, "no --dest given", None)),
        (Some(_), None) => checks.push(check("destination space", Status::Skip, "data size unknown", None)),
    }

    let ok = checks.iter().all(|c| c.status != Status::Fail);
    Ok(PreflightReport {
        ok,
        standby: cfg.standby.to_string(),
        pg_major: supported.then_some(major),
        data_directory: pgdata,
        checks,
    })
}
