//! `pgdrill backup` and `preflight` against a real primary + hot standby
//! with a write load running.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use pgdrill::ground::{invariant_sql, LoadOptions};

fn backup_args<'a>(
    g: &'a pgdrill::ground::Ground,
    conninfo: &'a str,
    primary: &'a str,
    dest: &'a str,
    method: &'a str,
) -> Vec<&'a str> {
    let _ = g;
    vec![
        "backup",
        "--standby",
        conninfo,
        "--primary",
        primary,
        "--dest",
        dest,
        "--method",
        method,
        "--fast",
        "--json",
        "--no-sync",
    ]
}

/// Take a backup with the CLI under load, restore it with plain
/// PostgreSQL, and check consistency and the load's invariant.
fn backup_and_restore_plainly(method: &str) {
    let g = with_standby();
    let load = g.start_load(LoadOptions::default()).unwrap();
    sleep_ms(500);
    let dest = g.dir.join(format!("backup-{method}"));
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let out = pgdrill(&backup_args(&g, &standby, &primary, dest.to_str().unwrap(), method));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&out);
    let stats = load.stop();
    assert!(stats.transfers > 0);
    // The end segment reached the archive (pgdrill asked for a WAL switch if needed).
    assert_eq!(report["wal_switch"]["archived"], true, "{report}");
    assert_eq!(report["backup_from"], "standby");
    let end: pgdrill::pg::Lsn = report["end_lsn"].as_str().unwrap().parse().unwrap();
    let min_rec: pgdrill::pg::Lsn = report["control_min_recovery_lsn"].as_str().unwrap().parse().unwrap();
    assert!(end >= min_rec, "end {end} < minRecoveryPoint {min_rec}");
    assert!(dest.join("backup_manifest").exists());
    assert!(dest.join("end_location").exists());
    assert!(!dest.join("pgdrill_backup_incomplete").exists());
    assert_eq!(dest.join("backup_label").exists(), method == "label");
    if method == "label" {
        let label = std::fs::read_to_string(dest.join("backup_label")).unwrap();
        assert!(label.contains("BACKUP FROM: standby"), "{label}");
    }

    // PostgreSQL 15's pg_verifybackup accepts it (it only reads manifest v1).
    if let Some(v) = pg_verifybackup() {
        if g.bin.major < 17 {
            let o = Command::new(v).arg("-n").arg(&dest).output().unwrap();
            assert!(o.status.success(), "pg_verifybackup: {}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        }
    }

    if method == "label" {
        // PostgreSQL alone reaches consistency and the data is correct.
        let r = PlainRestore::new(&g, &dest, "plain");
        let o = r.start();
        assert!(o.status.success(), "pg_ctl start: {}\n{}", stderr(&o), r.log());
        let mut c = r.client();
        let ok: bool = c.query_one(invariant_sql(load_accounts()).as_str(), &[]).unwrap().get(0);
        assert!(ok, "the load's invariant does not hold in the restored copy");
        let log = r.log();
        assert!(log.contains("consistent recovery state reached"), "{log}");
    }
}

fn load_accounts() -> i32 {
    LoadOptions::default().accounts
}

#[test]
fn label_backup_under_load_is_restorable_by_plain_postgres() {
    backup_and_restore_plainly("label");
}

#[test]
fn legacy_backup_under_load_is_complete() {
    backup_and_restore_plainly("legacy");
}

#[test]
fn exclusions_are_honoured() {
    let g = with_standby();
    let s = g.standby().unwrap();
    let data = &s.pgdata;
    g.primary_exec("CREATE UNLOGGED TABLE unlogged_t AS SELECT g FROM generate_series(1, 1000) g; CREATE TABLE logged_t AS SELECT 1 AS x;").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
    let mut c = s.client().unwrap();
    let db_oid = one(&mut c, "SELECT oid::text FROM pg_database WHERE datname = 'postgres'");
    let unlogged = one(&mut c, "SELECT pg_relation_filenode('unlogged_t')::text");
    let logged = one(&mut c, "SELECT pg_relation_filenode('logged_t')::text");
    let _ = c.execute("SELECT pg_create_physical_replication_slot('pgdrill_test_slot')", &[]);
    // Plant what a standby's data directory can hold.
    let dbdir = data.join("base").join(&db_oid);
    std::fs::create_dir_all(data.join("base/pgsql_tmp")).unwrap();
    for (p, content) in [
        (data.join("base/pgsql_tmp/pgsql_tmp123.0"), "t"),
        (dbdir.join("t3_99999"), "temp"),
        (data.join("recovery.done"), ""),
        (data.join("recovery.signal"), ""),
        (data.join("backup_manifest"), "old"),
        (data.join("tablespace_map.old"), ""),
        (data.join("pg_stat_tmp/global.stat"), "x"),
        (data.join("pg_notify/0000"), "x"),
    ] {
        std::fs::write(&p, content).unwrap();
    }
    assert!(data.join("backup_label.old").exists(), "the ground's standby came from a backup");
    let dest = g.dir.join("excl");
    let out = pgdrill(&[
        "backup",
        "--standby",
        &s.conninfo(),
        "--dest",
        dest.to_str().unwrap(),
        "--fast",
        "--json",
        "--no-sync",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gone = [
        "postmaster.pid",
        "postmaster.opts",
        "standby.signal",
        "recovery.signal",
        "recovery.done",
        "backup_label.old",
        "tablespace_map.old",
        "base/pgsql_tmp",
        "global/pg_internal.init",
        "pg_stat_tmp/global.stat",
        "pg_notify/0000",
    ];
    for rel in gone {
        assert!(!dest.join(rel).exists(), "{rel} should have been left out");
    }
    let bdb = dest.join("base").join(&db_oid);
    assert!(!bdb.join("t3_99999").exists());
    assert!(!bdb.join(&unlogged).exists(), "unlogged main fork copied");
    assert!(bdb.join(format!("{unlogged}_init")).exists(), "unlogged init fork missing");
    assert!(bdb.join(&logged).exists());
    assert!(!bdb.join("pg_internal.init").exists());
    // Emptied directories are kept.
    for dir in [
        "pg_wal",
        "pg_wal/archive_status",
        "pg_replslot",
        "pg_notify",
        "pg_stat_tmp",
        "pg_subtrans",
        "pg_snapshots",
        "pg_serial",
        "pg_dynshmem",
    ] {
        let p = dest.join(dir);
        assert!(p.is_dir(), "{dir} should exist");
    }
    assert_eq!(std::fs::read_dir(dest.join("pg_replslot")).unwrap().count(), 0);
    let mut wal: Vec<String> = std::fs::read_dir(dest.join("pg_wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    wal.sort();
    // 17+ also has an (empty) pg_wal/summaries, as pg_basebackup sends it.
    let expected: Vec<&str> =
        if g.bin.major >= 17 { vec!["archive_status", "summaries"] } else { vec!["archive_status"] };
    assert_eq!(wal, expected);
    // The old manifest was replaced by ours.
    assert_ne!(std::fs::read_to_string(dest.join("backup_manifest")).unwrap(), "old");
    // The source was not modified: its planted files are all still there.
    assert!(data.join("recovery.done").exists() && data.join("backup_manifest").exists());
}

#[test]
fn promotion_during_the_backup_is_caught() {
    for method in ["label", "legacy"] {
        let mut g = with_standby();
        g.primary_exec("CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 60000) g")
            .unwrap();
        g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
        let dest = g.dir.join("promoted");
        let conninfo = g.standby().unwrap().conninfo();
        let child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
            .args([
                "backup",
                "--standby",
                &conninfo,
                "--dest",
                dest.to_str().unwrap(),
                "--method",
                method,
                "--fast",
                "--max-rate",
                "4M",
                "--no-sync",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the copy is under way, then promote.
        let staging = g.dir.join(".promoted.pgdrill-partial");
        for _ in 0..200 {
            if staging.join("base").exists() {
                break;
            }
            sleep_ms(25);
        }
        g.standby_mut().unwrap().promote().unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 3, "{method}: {}", stderr(&out));
        assert!(stderr(&out).contains("promoted"), "{method}: {}", stderr(&out));
        assert!(!dest.exists(), "{method}: a failed backup must not exist");
        assert!(!staging.exists(), "{method}: the staging directory is removed");
    }
}

#[test]
fn an_interrupted_backup_is_never_left_valid() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 60000) g").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
    let dest = g.dir.join("killed");
    let staging = g.dir.join(".killed.pgdrill-partial");
    let conninfo = g.standby().unwrap().conninfo();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args([
            "backup",
            "--standby",
            &conninfo,
            "--dest",
            dest.to_str().unwrap(),
            "--fast",
            "--max-rate",
            "2M",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if staging.join("base").exists() {
            break;
        }
        sleep_ms(25);
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(!dest.exists(), "the destination appears only when the backup is complete");
    assert!(staging.join("pgdrill_backup_incomplete").exists());
    assert!(!staging.join("backup_manifest").exists());
    let out = pgdrill(&["inspect", staging.to_str().unwrap(), "--json"]);
    // Either unreadable (pg_control not copied yet) or flagged incomplete.
    if code(&out) == 0 {
        assert_eq!(json(&out)["incomplete"], true);
    }
    // A new backup to the same destination starts over and succeeds.
    let out =
        pgdrill(&["backup", "--standby", &conninfo, "--dest", dest.to_str().unwrap(), "--fast", "--no-sync", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!staging.exists());
    assert!(dest.join("backup_manifest").exists());
}

#[test]
fn backup_refuses_bad_input() {
    let g = with_standby();
    let conninfo = g.standby().unwrap().conninfo();
    let busy = g.dir.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("x"), "").unwrap();
    let out = pgdrill(&["backup", "--standby", &conninfo, "--dest", busy.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"));
    let out = pgdrill(&["backup", "--standby", &conninfo, "--dest", "/tmp/x", "--max-rate", "fast"]);
    assert_eq!(code(&out), 2);
    let out = pgdrill(&["backup", "--standby", &g.primary.conninfo(), "--dest", g.dir.join("p").to_str().unwrap()]);
    assert_eq!(code(&out), 2, "a primary is refused: {}", stderr(&out));
    assert!(stderr(&out).contains("not a standby"));
    let out =
        pgdrill(&["backup", "--standby", "host=/nonexistent port=1", "--dest", g.dir.join("q").to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    let _ = Path::new("");
}

#[test]
fn preflight_checks_a_standby() {
    let g = with_standby();
    let s = g.standby().unwrap().conninfo();
    let out = pgdrill(&[
        "preflight",
        "--standby",
        &s,
        "--primary",
        &g.primary.conninfo(),
        "--dest",
        g.dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    let names: Vec<&str> = r["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in [
        "in recovery",
        "replay not paused",
        "hot_standby",
        "wal_level",
        "full_page_writes",
        "replay lag",
        "WAL source",
        "data directory",
        "destination space",
    ] {
        assert!(names.contains(&n), "missing check {n}: {names:?}");
    }
    // A primary fails the recovery check: exit 1.
    let out = pgdrill(&["preflight", "--standby", &g.primary.conninfo(), "--json"]);
    assert_eq!(code(&out), 1);
    // A paused standby fails too.
    let mut c = g.standby().unwrap().client().unwrap();
    c.execute("SELECT pg_wal_replay_pause()", &[]).unwrap();
    let out = pgdrill(&["preflight", "--standby", &s, "--json"]);
    assert_eq!(code(&out), 1);
    let r = json(&out);
    let paused = r["checks"].as_array().unwrap().iter().find(|c| c["name"] == "replay not paused").unwrap();
    assert_eq!(paused["status"], "fail");
    c.execute("SELECT pg_wal_replay_resume()", &[]).unwrap();
}
