//! `pgdrill demo`: the whole job on a throwaway primary and standby.
//!
//! Builds a primary with a WAL archive and a hot standby (the test ground),
//! runs a write load like `pgbench -c 2`, and runs a drill against the
//! standby while the load runs: backup with the label method, verify,
//! restore, gate, amcheck and an invariant check, report, clean up. The
//! servers keep PostgreSQL's defaults for checkpoints, buffers and recovery
//! conflicts (max_standby_streaming_delay 30s, hot_standby_feedback off).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{DrillConfig, DrillReport};
use crate::backup::Method;
use crate::error::{Error, Result};
use crate::gate::Then;
use crate::ground::{free_port, invariant_sql, Ground, GroundOptions, LoadOptions};
use crate::server::PgBin;

/// Settings the demo's servers keep at PostgreSQL's defaults although the
/// test ground lowers them.
pub const SERVER_DEFAULTS: &[(&str, &str)] = &[("shared_buffers", "128MB"), ("max_wal_size", "1GB")];

/// A validated demo request.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub dir: Option<PathBuf>,
    pub pg_bin: Option<PathBuf>,
    pub keep: bool,
    pub quiet: bool,
}

/// The result of the demo.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub postgres: String,
    pub dir: PathBuf,
    pub kept: bool,
    pub transfers: u64,
    pub drill: DrillReport,
}

impl DemoReport {
    pub fn exit_code(&self) -> u8 {
        self.drill.exit_code
    }
}

fn say(quiet: bool, msg: &str) {
    if !quiet {
        crate::observe::note(crate::observe::Level::Info, &format!("demo: {msg}"));
    }
}

/// The server binaries, with a hint that says how to get some.
fn demo_binaries(cfg: &DemoConfig) -> Result<PgBin> {
    PgBin::find(cfg.pg_bin.as_deref(), None).map_err(|e| match e {
        Error::BinariesNotFound { searched, .. } => Error::Precondition {
            message: "no PostgreSQL server binaries found for the demo".into(),
            hint: format!(
                "install them (Debian: apt-get install postgresql-15), pass --pg-bin DIR, or run `just pg 15` and pass the directory it prints; searched: {}",
                searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        },
        other => other,
    })
}

/// The demo's directory: `--dir` (new or empty) or a temporary one; and
/// whether the demo created `--dir` (then it removes it again).
fn demo_dir(cfg: &DemoConfig) -> Result<(Option<tempfile::TempDir>, PathBuf, bool)> {
    match &cfg.dir {
        Some(d) => {
            if std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_some()) {
                return Err(Error::TargetNotEmpty { path: d.clone() });
            }
            let created = !d.exists();
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, "create directory", e))?;
            Ok((None, d.clone(), created))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("pgdrill-demo-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), "create a temporary directory", e))?;
            let p = t.path().to_path_buf();
            Ok((Some(t), p, false))
        }
    }
}

/// A primary that archives, a hot standby, and amcheck where it exists.
fn demo_ground(cfg: &DemoConfig, bin: &PgBin, dir: &Path) -> Result<Ground> {
    say(cfg.quiet, "starting a primary that archives its WAL ...");
    let mut opts = GroundOptions::new(bin.clone());
    opts.dir = Some(dir.join("servers"));
    opts.fresh_initdb = true;
    // PostgreSQL's own defaults for what decides how long a restartpoint
    // takes and when replay cancels a standby's query (the ground's smaller
    // values would make a busy standby look easy).
    opts.primary_settings = SERVER_DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut ground = Ground::new(opts)?;
    say(cfg.quiet, "building a hot standby from it ...");
    ground.add_standby()?;
    // amcheck must exist in the databases for the restored (read-only) copy
    // to use it; install it on the primary when the build has it.
    let _ = ground.primary_exec(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck') THEN CREATE EXTENSION IF NOT EXISTS amcheck; END IF; END $$",
    );
    Ok(ground)
}

pub fn run(cfg: &DemoConfig) -> Result<DemoReport> {
    let bin = demo_binaries(cfg)?;
    let (tmp, dir, created) = demo_dir(cfg)?;
    say(cfg.quiet, &format!("{} in {}", bin.version, dir.display()));
    let mut ground = demo_ground(cfg, &bin, &dir)?;
    say(
        cfg.quiet,
        "starting a write load on the primary like pgbench -c 2 (transfers between accounts; the total never changes) ...",
    );
    let load_opts = LoadOptions::pgbench_like();
    let load = ground.start_load(load_opts.clone())?;
    std::thread::sleep(Duration::from_secs(3));
    let check_sql = dir.join("invariant.sql");
    std::fs::write(&check_sql, format!("-- the load's invariant\n{};\n", invariant_sql(load_opts.accounts)))
        .map_err(|e| Error::io(&check_sql, "write", e))?;
    say(
        cfg.quiet,
        "running a drill against the standby while the load runs: backup, verify, restore, gate, checks ...",
    );
    let standby = ground.standby()?;
    let drill = super::run(&DrillConfig {
        standby: standby.conn(),
        primary: Some(ground.primary.conn()),
        pgdata: Some(standby.pgdata.clone()),
        work: dir.join("work"),
        wal_archive: Some(ground.archive.clone()),
        s3: Default::default(),
        backup_dest: None,
        method: Method::Label,
        check_sql: Some(check_sql),
        check_db: "postgres".into(),
        amcheck: true,
        then: Then::Pause,
        port: Some(free_port()),
        timeout: Duration::from_secs(300),
        keep: cfg.keep,
        pg_bin: Some(bin.dir.clone()),
        os_user: None,
        db_user: None,
        jobs: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        max_rate: None,
        junit: None,
        quiet: cfg.quiet,
        end_lsn: None,
        stop_at: None,
        restore_command: None,
        stall: Duration::from_secs(10),
        tablespace_map: Vec::new(),
        sync: true,
        rto_target: None,
        cluster: None,
        history: None,
        metrics: None,
    });
    let transfers = load.stop().transfers;
    let given_dir = tmp.is_none();
    if cfg.keep {
        ground.keep();
        if let Some(t) = tmp {
            let _ = t.keep();
        }
    }
    drop(ground);
    if !cfg.keep && given_dir {
        // A --dir given without --keep: remove what the demo put there
        // (servers, archive, backup, restored copy: hundreds of MB).
        remove_contents(&dir);
        if created {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    let drill = drill?;
    Ok(DemoReport { postgres: bin.version, dir, kept: cfg.keep, transfers, drill })
}

/// Remove everything in `dir` (best effort: the demo's own files), without
/// following links.
fn remove_contents(dir: &std::path::Path) {
    let _ = crate::safefs::Dir::open(dir).and_then(|d| d.clear());
}
