//! Backups of a busy standby with default options (issue #10, section 1).
//!
//! The primary runs a `pgbench -c 2`-like load (two sessions, no pause,
//! 100 000 accounts like pgbench's scale 1), the servers keep PostgreSQL's
//! defaults for checkpoints, buffers and recovery conflicts
//! (checkpoint_timeout 5min, max_standby_streaming_delay 30s,
//! hot_standby_feedback off), and the backup runs without --fast.
//!
//! Before the fix, the backup-start call waited for the spread restartpoint
//! (about 100 s here) inside its statement, and replay cancelled it after
//! 30 s: "canceling statement due to conflict with recovery", on every
//! major from 10 to 18.

use std::time::{Duration, Instant};

use crate::common::*;
use pgdrill::drill::demo::SERVER_DEFAULTS;
use pgdrill::ground::{invariant_sql, Ground, GroundOptions, LoadOptions};

/// A primary and a standby with PostgreSQL's defaults for everything that
/// decides how long a restartpoint takes and when replay cancels a query.
fn defaults_ground() -> Ground {
    let mut opts = GroundOptions::new(bin());
    opts.primary_settings = SERVER_DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut g = Ground::new(opts).expect("start a primary");
    g.add_standby().expect("build a hot standby");
    g
}

/// A checkpoint record newer than the standby's last restartpoint: what a
/// busy primary writes every checkpoint_timeout on its own. Without one,
/// the backup-start call has no restartpoint to wait for.
fn fresh_checkpoint_record(g: &Ground) {
    g.primary_exec("CHECKPOINT").unwrap();
    g.wait_standby_caught_up(Duration::from_secs(60)).unwrap();
}

#[test]
fn busy_standby_backs_up_with_default_options() {
    let g = defaults_ground();
    let load_opts = LoadOptions::pgbench_like();
    let load = g.start_load(load_opts.clone()).unwrap();
    // Long enough for replay to leave hundreds of dirty buffers, so the
    // spread restartpoint takes well over max_standby_streaming_delay.
    sleep_ms(5_000);
    fresh_checkpoint_record(&g);
    let dest = g.dir.join("busy");
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let started = Instant::now();
    let out = pgdrill(&[
        "backup",
        "--standby",
        &standby,
        "--primary",
        &primary,
        "--dest",
        dest.to_str().unwrap(),
        "--json",
        "--no-sync",
    ]);
    let secs = started.elapsed().as_secs_f64();
    let stats = load.stop();
    let log = std::fs::read_to_string(&g.standby().unwrap().log).unwrap_or_default();
    assert_eq!(code(&out), 0, "after {secs:.0} s: {}\nstandby log:\n{log}", stderr(&out));
    assert!(stats.transfers > 100, "the load ran: {stats:?}");
    let r = json(&out);
    let start = &r["start"];
    // It had to wait for a spread restartpoint, and did so outside any
    // statement: no statement of pgdrill's was cancelled by replay.
    assert_eq!(start["restartpoint"], "spread", "{start}");
    assert!(start["attempts"].as_u64().unwrap() >= 2, "{start}");
    assert!(start["restartpoints_waited"].as_u64().unwrap() >= 1, "{start}");
    assert_eq!(start["conflicts_retried"], 0, "{start}");
    assert!(!log.contains("conflict with recovery"), "{log}");
    assert!(!log.contains("aborting backup due to backend exiting"), "{log}");
    assert_eq!(start["lsn"], r["start_lsn"], "the start the call returned is the label's");
    assert_eq!(r["wal_switch"]["archived"], true, "{r}");
    eprintln!("backup took {secs:.1} s under {} transfers; start: {start}", stats.transfers);

    // PostgreSQL alone reaches consistency on it, and the load's invariant holds.
    let restored = PlainRestore::new(&g, &dest, "busy-restored");
    let o = restored.start();
    assert!(o.status.success(), "pg_ctl start: {}\n{}", stderr(&o), restored.log());
    let mut c = restored.client();
    let ok: bool = c.query_one(invariant_sql(load_opts.accounts).as_str(), &[]).unwrap().get(0);
    assert!(ok, "the load's invariant does not hold in the restored copy");
}

/// A standby that cancels conflicting statements at once
/// (max_standby_streaming_delay = 0): pgdrill retries what is safe to
/// retry. Whatever the outcome, the standby is never left in backup mode and
/// no half backup is left; a failure names the conflict and the settings.
#[test]
fn instant_recovery_conflicts_are_retried_or_reported() {
    let g = with_standby();
    let s = g.standby().unwrap();
    let mut c = s.client().unwrap();
    c.batch_execute("ALTER SYSTEM SET max_standby_streaming_delay = 0").unwrap();
    c.batch_execute("ALTER SYSTEM SET max_standby_archive_delay = 0").unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    // Two busy clients on few accounts: constant pruning, short restartpoints.
    let load = g.start_load(LoadOptions { clients: 2, ..LoadOptions::default() }).unwrap();
    sleep_ms(3_000);
    fresh_checkpoint_record(&g);
    let dest = g.dir.join("instant");
    let out = pgdrill(&["backup", "--standby", &s.conninfo(), "--dest", dest.to_str().unwrap(), "--json", "--no-sync"]);
    load.stop();
    let err = stderr(&out);
    match code(&out) {
        0 => {
            let r = json(&out);
            eprintln!("succeeded; start: {}", r["start"]);
            assert!(dest.join("backup_label").exists());
        }
        3 => {
            assert!(err.contains("conflict with recovery"), "{err}");
            assert!(err.contains("max_standby_streaming_delay = 0"), "{err}");
            assert!(err.contains("hot_standby_feedback = off"), "{err}");
            assert!(!dest.exists());
        }
        other => panic!("exit {other}: {err}"),
    }
    let staging = g.dir.join(".instant.pgdrill-partial");
    assert!(!staging.exists(), "no half backup is left");
    // No session of pgdrill's is left (a backup ends with its session; here
    // replay may also end a session itself, so its log can show "aborting
    // backup due to backend exiting" for a session replay terminated).
    let mut left = String::new();
    for _ in 0..100 {
        left = one(&mut c, "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgdrill' AND pid <> pg_backend_pid()");
        if left == "0" {
            break;
        }
        sleep_ms(50);
    }
    assert_eq!(left, "0");
}
