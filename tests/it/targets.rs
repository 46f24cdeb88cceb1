//! Drills to a point in time (issue #15): `--target-time`, `--target-xid`,
//! `--target-name` and `--target-lsn` on restore and gate. Replay stops at
//! the target, the gate opens there and keeps every client out until then,
//! and a target before the backup's own end is refused with exit 2.

use crate::common::*;
use pgdrill::ground::{free_port, Ground};
use pgdrill::pg::Lsn;

/// What happened on the primary after the backup.
struct History {
    /// The transaction that inserted rows 201–300.
    xid: u64,
    /// A time after rows 301–400 committed, before 401–500 did.
    time: String,
    /// The restore point made after row 500, before the table was dropped.
    point_lsn: Lsn,
}

fn write_history(g: &Ground) -> History {
    let mut c = g.primary.client().unwrap();
    c.batch_execute("INSERT INTO t SELECT g FROM generate_series(101, 200) g").unwrap();
    let mut tx = c.transaction().unwrap();
    tx.batch_execute("INSERT INTO t SELECT g FROM generate_series(201, 300) g").unwrap();
    let xid: i64 = tx.query_one("SELECT txid_current()", &[]).unwrap().get(0);
    tx.commit().unwrap();
    c.batch_execute("INSERT INTO t SELECT g FROM generate_series(301, 400) g").unwrap();
    sleep_ms(1100);
    let time = one(&mut c, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    sleep_ms(1100);
    c.batch_execute("INSERT INTO t SELECT g FROM generate_series(401, 500) g").unwrap();
    let point_lsn: Lsn = one(&mut c, "SELECT pg_create_restore_point('before_drop')::text").parse().unwrap();
    c.batch_execute("DROP TABLE t; SELECT pg_switch_wal()").unwrap();
    drop(c);
    // The switch's segment, and the next, reach the archive.
    g.primary_exec("CHECKPOINT; SELECT pg_switch_wal()").unwrap();
    sleep_ms(1500);
    History { xid: xid as u64, time, point_lsn }
}

fn restore_to(g: &Ground, b: &std::path::Path, name: &str, port: u16, target: &[&str]) -> std::process::Output {
    let t = g.dir.join(name);
    let port = port.to_string();
    let mut args = vec![
        "restore",
        b.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
        "--port",
        &port,
        "--timeout",
        "120",
        "--no-sync",
        "--json",
    ];
    args.extend_from_slice(target);
    pgdrill(&args)
}

fn rows(g: &Ground, port: u16) -> i64 {
    let mut c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
    c.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0)
}

#[test]
fn drills_to_a_time_a_transaction_and_a_restore_point() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE t (id int); INSERT INTO t SELECT g FROM generate_series(1, 100) g").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(60)).unwrap();
    let (b, end) = backup(&g, "label", &[]);
    let h = write_history(&g);
    assert!(h.point_lsn > end);

    // By restore point, with probes: nobody gets in before the target.
    let port = free_port();
    let tcp = Knocker::start(&g, "tcp", "127.0.0.1", port);
    let out = restore_to(&g, &b, "by-name", port, &["--target-name", "before_drop"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gate = json(&out)["gate"].clone();
    assert_eq!(gate["recovery_target"]["kind"], "name");
    let opened = lsn(&gate["opened_at_lsn"]).unwrap();
    assert!(opened >= h.point_lsn, "opened at {opened}, before the restore point {}", h.point_lsn);
    sleep_ms(500);
    let knocks = tcp.stop();
    let early: Vec<&Knock> = knocks.iter().filter(|k| k.ok && k.lsn.is_none_or(|l| l < h.point_lsn)).collect();
    assert!(early.is_empty(), "admitted before the target: {early:?}");
    assert!(knocks.iter().any(|k| k.ok), "admitted once open");
    assert_eq!(rows(&g, port), 500, "everything up to the restore point, not the DROP");
    stop_server(&g, &g.dir.join("by-name"));

    // By transaction: stops after its commit.
    let port = free_port();
    let out = restore_to(&g, &b, "by-xid", port, &["--target-xid", &h.xid.to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rows(&g, port), 300);
    stop_server(&g, &g.dir.join("by-xid"));

    // By time, promoted: read-write at the target.
    let port = free_port();
    let out = restore_to(&g, &b, "by-time", port, &["--target-time", &h.time, "--then", "promote"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["gate"]["read_write"], true);
    assert_eq!(rows(&g, port), 400);
    stop_server(&g, &g.dir.join("by-time"));

    // Targets before the backup's end are refused up front, and leave nothing.
    for (name, target) in [
        ("time-before", vec!["--target-time", "2000-01-01 00:00:00+00"]),
        ("lsn-before", vec!["--target-lsn", "0/1000000"]),
    ] {
        let out = restore_to(&g, &b, name, free_port(), &target);
        assert_eq!(code(&out), 2, "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("before the backup") || err.contains("below the backup's own end point"), "{name}: {err}");
        assert!(!g.dir.join(name).exists(), "{name}: nothing is left");
    }
    // A standby follows the source forever: it cannot stop at a target.
    let out = restore_to(&g, &b, "standby-target", free_port(), &["--target-name", "x", "--then", "standby"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // One target at a time.
    let out = restore_to(&g, &b, "two", free_port(), &["--target-name", "x", "--target-xid", "5"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// A legacy backup: PostgreSQL calls it consistent early, so a target
/// between that point and end_location would open a torn copy. The gate
/// refuses such a target when replay stops for it (exit 2), closed.
#[test]
fn a_target_inside_a_legacy_backups_wal_is_refused_closed() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE t (id int)").unwrap();
    let load = g.start_load(pgdrill::ground::LoadOptions { filler_bytes: 8000, ..Default::default() }).unwrap();
    sleep_ms(500);
    let dest = g.dir.join("legacy");
    // A slow copy under load: the WAL between pg_control's redo and
    // end_location holds many commits; a restore point made during it lies
    // before the backup's end.
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["backup", "--standby", &standby, "--primary", &primary, "--dest", dest.to_str().unwrap()])
        .args(["--method", "legacy", "--max-rate", "4M", "--fast", "--json", "--no-sync"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep_ms(1500);
    g.primary_exec("SELECT pg_create_restore_point('inside')").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    load.stop();
    let end = lsn(&json(&out)["end_lsn"]).unwrap();
    g.primary_exec("SELECT pg_switch_wal()").unwrap();
    sleep_ms(1500);
    let port = free_port();
    let out = restore_to(&g, &dest, "inside", port, &["--target-name", "inside"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("lies before the backup's own end point"), "{err} (end {end})");
    let t = g.dir.join("inside");
    assert!(pgdrill::server::running_postmaster(&t).is_none(), "stopped");
    assert!(std::fs::read_to_string(t.join("pg_hba.conf")).unwrap().contains("pgdrill consistency gate"), "locked");
}
