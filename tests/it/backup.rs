//! `pgdrill backup` and `preflight` against a real primary + hot standby
//! with a write load running.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;
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

/// The first `pgdrill backup` argument list for the ground's standby, no
/// --fast, plus `extra`.
fn backup_out(g: &pgdrill::ground::Ground, dest: &Path, extra: &[&str]) -> std::process::Output {
    let standby = g.standby().unwrap().conninfo();
    let mut args = vec!["backup", "--standby", &standby, "--dest", dest.to_str().unwrap(), "--json", "--no-sync"];
    args.extend_from_slice(extra);
    pgdrill(&args)
}

fn staging_of(dest: &Path) -> std::path::PathBuf {
    dest.parent().unwrap().join(format!(".{}.pgdrill-partial", dest.file_name().unwrap().to_string_lossy()))
}

#[test]
fn a_wrong_data_directory_is_refused_before_copying() {
    let g = with_standby();
    // The primary's directory: same system identifier, but another server.
    let dest = g.dir.join("wrong");
    let out = backup_out(&g, &dest, &["--pgdata", g.primary.pgdata.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("is not the data directory of the server"), "{err}");
    assert!(!dest.exists() && !staging_of(&dest).exists(), "nothing was copied");
    // A copy of the standby's directory with no server on it.
    let copy = g.dir.join("copy-of-standby");
    let st = Command::new("cp").arg("-a").arg(&g.standby().unwrap().pgdata).arg(&copy).status().unwrap();
    assert!(st.success());
    std::fs::remove_file(copy.join("postmaster.pid")).unwrap();
    let out = backup_out(&g, &dest, &["--pgdata", copy.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not the data directory of the server"), "{}", stderr(&out));
    // Another cluster altogether.
    let other = crate::common::primary();
    let out = backup_out(&g, &dest, &["--pgdata", other.primary.pgdata.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not the data directory of the server"), "{}", stderr(&out));
    // preflight says the same, as a failed check.
    let out = pgdrill(&[
        "preflight",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--pgdata",
        g.primary.pgdata.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = json(&out);
    let row = r["checks"].as_array().unwrap().iter().find(|c| c["name"] == "data directory").unwrap().clone();
    assert_eq!(row["status"], "fail", "{row}");
    assert!(!dest.exists());
}

/// A role with exactly the grants preflight prints for these options.
fn grant_role(g: &pgdrill::ground::Ground, role: &str, with_primary: bool, skip: Option<&str>) {
    use pgdrill::backup::{privileges, Method};
    let v = pgdrill::pg::version::by_major(g.bin.major).unwrap();
    let needs: Vec<_> = privileges::needs(v, Method::Label, with_primary)
        .into_iter()
        .filter(|n| Some(n.function.as_str()) != skip)
        .collect();
    let mut sql = format!("CREATE ROLE {role} LOGIN; ");
    for stmt in privileges::grants(role, &needs) {
        sql.push_str(&stmt);
    }
    sql.push_str(&privileges::settings_grant(role));
    g.primary_exec(&sql).unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
}

#[test]
fn privileges_are_checked_before_copying_and_granted_as_printed() {
    let g = with_standby();
    grant_role(&g, "backup_role", true, Some("pg_switch_wal()"));
    let s = g.standby().unwrap();
    let standby = format!("host={} port={} user=backup_role dbname=postgres", g.sockets.display(), s.port);
    let primary = format!("host={} port={} user=backup_role dbname=postgres", g.sockets.display(), g.primary.port);
    let dest = g.dir.join("priv");
    let args = ["backup", "--standby", &standby, "--primary", &primary, "--dest", dest.to_str().unwrap(), "--no-sync"];
    let out = pgdrill(&args);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("pg_switch_wal()"), "{err}");
    assert!(err.contains("GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO backup_role;"), "{err}");
    assert!(!err.contains("check the role's privileges"), "{err}");
    assert!(!dest.exists() && !staging_of(&dest).exists(), "refused before copying");
    // preflight with the same options names the same grant.
    let out = pgdrill(&["preflight", "--standby", &standby, "--primary", &primary, "--json"]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stdout));
    let r = json(&out);
    let rows = r["checks"].as_array().unwrap();
    let on_primary = rows.iter().find(|c| c["name"] == "privileges on the primary").unwrap();
    assert_eq!(on_primary["status"], "fail");
    assert!(on_primary["hint"].as_str().unwrap().contains("pg_switch_wal() TO backup_role;"), "{on_primary}");
    assert_eq!(rows.iter().find(|c| c["name"] == "privileges").unwrap()["status"], "pass");
    // With the printed grant, the same run works.
    g.primary_exec("GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO backup_role").unwrap();
    let out = pgdrill(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(dest.join("backup_label").exists());
    let out = pgdrill(&["preflight", "--standby", &standby, "--primary", &primary, "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_standby_without_hot_standby_is_a_failed_preflight_check() {
    let mut g = with_standby();
    let s = g.standby_mut().unwrap();
    s.stop();
    let pgdata = s.pgdata.clone();
    // After the recovery settings restore wrote (they set hot_standby = on).
    let mut auto = std::fs::read_to_string(pgdata.join("postgresql.auto.conf")).unwrap();
    auto.push_str("\nhot_standby = off\n");
    std::fs::write(pgdata.join("postgresql.auto.conf"), auto).unwrap();
    let log = g.dir.join("standby-hot-off.log");
    let pg_ctl =
        |args: &[&str]| g.user.command(g.bin.program("pg_ctl")).args(args).arg("-D").arg(&pgdata).output().unwrap();
    let o = pg_ctl(&["start", "-w", "-t", "60", "-l", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    struct Stop<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            (self.0)(&["stop", "-m", "immediate"]);
        }
    }
    let _stop = Stop(&pg_ctl);
    let conninfo = g.standby().unwrap().conninfo();
    let out = pgdrill(&["preflight", "--standby", &conninfo, "--json"]);
    assert_eq!(code(&out), 1, "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let r = json(&out);
    let row = &r["checks"][0];
    assert_eq!(row["name"], "hot_standby", "{r}");
    assert_eq!(row["status"], "fail");
    assert!(row["hint"].as_str().unwrap().contains("hot_standby = on"), "{row}");
    // backup says the same, as an environment failure.
    let out = backup_out(&g, &g.dir.join("hot-off"), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("hot_standby = on"), "{}", stderr(&out));
}

#[test]
fn an_end_segment_that_never_reaches_the_archive_is_exit_4_with_the_report() {
    let g = with_standby();
    // The archiver keeps failing from now on.
    g.primary_exec("ALTER SYSTEM SET archive_command = 'false'").unwrap();
    g.primary_exec("SELECT pg_reload_conf()").unwrap();
    sleep_ms(500);
    // WAL in a segment of its own, so the end lies in one not archived yet.
    g.primary_exec("SELECT pg_switch_wal(); CREATE TABLE after_switch AS SELECT 1 AS x").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
    let dest = g.dir.join("unarchived");
    let primary = g.primary.conninfo();
    let out = backup_out(&g, &dest, &["--fast", "--primary", &primary, "--archive-timeout", "3"]);
    assert_eq!(code(&out), 4, "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let r = json(&out);
    assert_eq!(r["exit_code"], 4);
    assert_eq!(r["wal_switch"]["archived"], false, "{r}");
    assert_eq!(r["wal_switch"]["switched"], true, "{r}");
    assert!(dest.join("backup_manifest").exists(), "the backup itself is kept");
    // The human report says it too.
    let out = pgdrill(&[
        "backup",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--dest",
        g.dir.join("unarchived2").to_str().unwrap(),
        "--fast",
        "--no-sync",
        "--primary",
        &primary,
        "--archive-timeout",
        "2",
    ]);
    assert_eq!(code(&out), 4);
    assert!(String::from_utf8_lossy(&out.stdout).contains("did not reach the archive"));
}

#[test]
fn an_interrupted_backup_is_named_so_by_every_command() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 60000) g").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
    let dest = g.dir.join("cut");
    let staging = staging_of(&dest);
    let conninfo = g.standby().unwrap().conninfo();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["backup", "--standby", &conninfo, "--dest", dest.to_str().unwrap(), "--fast", "--max-rate", "2M"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if staging.join("base").exists() {
            break;
        }
        sleep_ms(25);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!staging.join("global/pg_control").exists(), "pg_control is copied last");
    let s = staging.to_str().unwrap();
    let target = g.dir.join("cut-restored");
    for args in [
        vec!["verify", s, "--no-wal"],
        vec!["inspect", s],
        vec!["restore", s, "--target", target.to_str().unwrap(), "--no-start"],
    ] {
        let out = pgdrill(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("the backup is incomplete: it was interrupted"), "{args:?}: {err}");
        assert!(!err.contains("pg_control is missing"), "{args:?}: {err}");
    }
    assert!(!target.exists());
}

#[test]
fn the_first_sigterm_stops_a_backup_cleanly() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 60000) g").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
    let dest = g.dir.join("sig");
    let staging = staging_of(&dest);
    let conninfo = g.standby().unwrap().conninfo();
    let child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["backup", "--standby", &conninfo, "--dest", dest.to_str().unwrap(), "--fast", "--max-rate", "2M"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if staging.join("base").exists() {
            break;
        }
        sleep_ms(25);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let sent = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    assert!(!staging.exists() && !dest.exists(), "nothing that looks like a backup is left");
    // The backup was stopped on the server, not abandoned with the session.
    let log = std::fs::read_to_string(&g.standby().unwrap().log).unwrap();
    assert!(!log.contains("aborting backup due to backend exiting"), "{log}");
    // Its session is gone too (the backend exits a moment after pgdrill).
    let mut c = g.standby().unwrap().client().unwrap();
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

/// Issue #9, 4: the data directory's owner plants links to what only root
/// may read; a backup run as root must not carry any of it.
#[test]
fn as_root_planted_links_never_leak_root_only_files() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !pgdrill::server::OsUser::running_as_root() {
        return;
    }
    let g = with_standby();
    let s = g.standby().unwrap();
    let owner = std::fs::metadata(&s.pgdata).unwrap().uid();
    // A root-only directory with a secret.
    let vault = g.dir.join("vault");
    std::fs::create_dir(&vault).unwrap();
    std::fs::write(vault.join("secret"), "TOP-SECRET-ROOT-ONLY").unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(vault.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let plant = |link: &Path, target: &Path| {
        let o = run_as_user(&g, &["ln", "-s", target.to_str().unwrap(), link.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // 1. A tablespace link that pg_tablespace does not know.
    let planted = s.pgdata.join("pg_tblspc/99998");
    plant(&planted, &vault);
    let dest = g.dir.join("leak1");
    let out = backup_out(&g, &dest, &["--fast"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("pg_tblspc/99998"), "{}", stderr(&out));
    assert!(!dest.exists() && !staging_of(&dest).exists());
    std::fs::remove_file(&planted).unwrap();
    // 2. A relation file replaced by a link to the secret: skipped with a
    // warning (as pg_basebackup skips it), never read.
    let mut c = s.client().unwrap();
    let db = one(&mut c, "SELECT oid::text FROM pg_database WHERE datname = 'postgres'");
    let file_link = s.pgdata.join("base").join(&db).join("999999");
    plant(&file_link, &vault.join("secret"));
    let dest = g.dir.join("leak2");
    let out = backup_out(&g, &dest, &["--fast"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let copied = dest.join("base").join(&db).join("999999");
    assert!(std::fs::symlink_metadata(&copied).is_err(), "the link is not in the backup");
    assert!(stderr(&out).contains("skipped"), "the warning names it: {}", stderr(&out));
    // Nothing in the backup holds the secret, and everything belongs to
    // the standby's owner.
    let mut stack = vec![dest.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(m.uid(), owner, "{} is owned by {}", p.display(), m.uid());
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!bytes.windows(20).any(|w| w == b"TOP-SECRET-ROOT-ONLY"), "{} leaks", p.display());
            }
        }
    }
    std::fs::remove_file(&file_link).unwrap();
}

fn run_as_user(g: &pgdrill::ground::Ground, argv: &[&str]) -> std::process::Output {
    g.user.command(argv[0]).args(&argv[1..]).output().unwrap()
}
