//! Backups of a busy standby with default options (issue #10, section 1).
//!
//! The primary runs a `pgbench -c 2`-like load (two sessions, no pause),
//! the standby keeps PostgreSQL's defaults (checkpoint_timeout 5min,
//! max_standby_streaming_delay 30s, hot_standby_feedback off), and the
//! backup runs without --fast.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pgdrill::ground::{Ground, GroundOptions, LoadOptions};

/// A primary and a standby with PostgreSQL's defaults for everything that
/// decides how long a restartpoint takes and when replay cancels a query.
/// The ground's own smaller buffer pool and WAL budget would make every
/// restartpoint short and hide the problem.
fn defaults_ground() -> Ground {
    let mut opts = GroundOptions::new(bin());
    opts.primary_settings = vec![("shared_buffers".into(), "128MB".into()), ("max_wal_size".into(), "1GB".into())];
    let mut g = Ground::new(opts).expect("start a primary");
    g.add_standby().expect("build a hot standby");
    g
}

/// A checkpoint record newer than the standby's last restartpoint: what a
/// busy primary produces every checkpoint_timeout on its own. Without one,
/// the backup-start call has no restartpoint to wait for.
fn fresh_checkpoint_record(g: &pgdrill::ground::Ground) {
    g.primary_exec("CHECKPOINT").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
}

#[test]
fn busy_standby_backs_up_with_default_options() {
    let g = defaults_ground();
    let load = g.start_load(LoadOptions::pgbench_like()).unwrap();
    // Long enough for replay to leave thousands of dirty buffers.
    sleep_ms(10_000);
    fresh_checkpoint_record(&g);
    let dest = g.dir.join("busy");
    let standby = g.standby().unwrap().conninfo();
    let started = Instant::now();
    let out = pgdrill(&["backup", "--standby", &standby, "--dest", dest.to_str().unwrap(), "--json", "--no-sync"]);
    let secs = started.elapsed().as_secs_f64();
    let stats = load.stop();
    let log = std::fs::read_to_string(&g.standby().unwrap().log).unwrap_or_default();
    assert_eq!(code(&out), 0, "after {secs:.0} s: {}\nstandby log:\n{log}", stderr(&out));
    assert!(stats.transfers > 100, "the load ran: {stats:?}");
    assert!(dest.join("backup_label").exists());
    eprintln!("backup took {secs:.1} s under {} transfers\n{}", stats.transfers, log.lines().filter(|l| l.contains("restartpoint") || l.contains("conflict")).collect::<Vec<_>>().join("\n"));
}
