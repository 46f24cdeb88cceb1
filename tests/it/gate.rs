//! `pgdrill restore` and `pgdrill gate` against real servers: nobody but
//! pgdrill gets in before replay reaches the backup's end point.

use std::process::{Command, Stdio};

use crate::common::*;
use pgdrill::ground::{free_port, invariant_sql, LoadOptions};
use pgdrill::pg::Lsn;

/// Restore under knocking clients and check that none got in early.
fn restore_behind_the_gate(method: &str) {
    let g = with_standby();
    // Another role than the superuser, to show the lock holds for every role.
    g.primary_exec("CREATE ROLE app LOGIN").unwrap();
    let load = g.start_load(LoadOptions::default()).unwrap();
    sleep_ms(300);
    // A slow legacy copy lets the standby replay well past the pg_control
    // copied first, so PostgreSQL alone would open too early.
    let extra: &[&str] = if method == "legacy" { &["--max-rate", "8M"] } else { &[] };
    let (backup_dir, end) = backup(&g, method, extra);
    load.stop();
    let archive_before = archive_listing(&g);

    let port = free_port();
    let target = g.dir.join("restored");
    // As root, even the server's own OS user is shut out over the socket.
    // Run as that user, pgdrill admits its own OS user there (design.md), so
    // only TCP and other roles can show the lock.
    let root = pgdrill::server::OsUser::running_as_root();
    let sock = root.then(|| Knocker::start(&g, "sock", g.sockets.to_str().unwrap(), port));
    let tcp = Knocker::start(&g, "tcp", "127.0.0.1", port);
    let app = Knocker::start_as_role(&g, "app", g.sockets.to_str().unwrap(), port, "app");
    let out = restore_cli(
        backup_dir.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--timeout", "120", "--json"],
    );
    assert_eq!(
        code(&out),
        0,
        "{}\n{}",
        stderr(&out),
        std::fs::read_to_string(target.join("log/pgdrill-postmaster.log")).unwrap_or_default()
    );
    let r = json(&out);
    sleep_ms(700);
    let app_knocks = app.stop();
    let sock_knocks = sock.map(Knocker::stop).unwrap_or_default();
    let knocks: Vec<Knock> = sock_knocks.into_iter().chain(tcp.stop()).chain(app_knocks.iter().cloned()).collect();
    assert!(app_knocks.iter().any(|k| k.ok), "the app role gets in once open: {app_knocks:?}");

    let gate = &r["gate"];
    assert_eq!(lsn(&gate["end_lsn"]), Some(end));
    let opened = lsn(&gate["opened_at_lsn"]).expect("opened_at_lsn");
    assert!(opened >= end, "opened at {opened} before the end {end}");
    let early: Vec<&Knock> = knocks.iter().filter(|k| k.ok && k.lsn.is_none_or(|l| l < end)).collect();
    assert!(early.is_empty(), "clients got in before the end target {end}: {early:?}");
    assert!(knocks.iter().any(|k| !k.ok), "the knockers never tried while the gate was shut");
    assert!(knocks.iter().filter(|k| k.ok).count() >= 2, "nobody got in after the gate opened: {knocks:?}");

    if method == "legacy" {
        // PostgreSQL's own consistency point is below end_location: without
        // the gate, clients would have been admitted too early.
        let own = lsn(&gate["server_consistent_lsn"]).expect("the server logged its consistency point");
        assert!(
            own < end,
            "PostgreSQL declared consistency at {own}, not before the end {end}; the test shows nothing"
        );
    }

    // The data is right.
    let c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres");
    let mut client = c.connect().unwrap();
    let ok: bool = client.query_one(invariant_sql(LoadOptions::default().accounts).as_str(), &[]).unwrap().get(0);
    assert!(ok, "the load's invariant does not hold after opening");
    // Paused at the end, read-only.
    let rec: bool = client.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(rec);

    // Nothing of the gate remains: the configuration is the restored one.
    assert!(!target.join("pgdrill_gate").exists());
    assert_eq!(
        std::fs::read(target.join("pg_hba.conf")).unwrap(),
        std::fs::read(backup_dir.join("pg_hba.conf")).unwrap()
    );
    assert_eq!(one(&mut client, "SELECT current_setting('port')"), port.to_string());
    assert_eq!(one(&mut client, "SELECT current_setting('listen_addresses')"), "127.0.0.1");
    assert_eq!(one(&mut client, "SELECT current_setting('unix_socket_directories')"), g.sockets.display().to_string());
    let opts = std::fs::read_to_string(target.join("postmaster.opts")).unwrap();
    assert!(!opts.contains("\"-c\""), "no command-line overrides: {opts}");
    // The sandbox did not archive into the production archive.
    assert_eq!(one(&mut client, "SELECT current_setting('archive_mode')"), "off");
    assert_eq!(archive_listing(&g), archive_before);
    drop(client);
    stop_server(&g, &target);
}

#[test]
fn label_backup_opens_only_at_the_end() {
    restore_behind_the_gate("label");
}

#[test]
fn legacy_backup_opens_only_at_end_location_not_earlier() {
    restore_behind_the_gate("legacy");
}

#[test]
fn a_missing_segment_times_out_closed_and_is_named() {
    let (g, b, end) = ground_with_backup("label");
    let (partial, missing) = archive_without_end_segment(&g, end);
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        partial.to_str().unwrap(),
        &port.to_string(),
        &["--timeout", "15", "--stall-secs", "3", "--json"],
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&missing), "the message names the missing segment {missing}: {err}");
    assert!(json(&out)["error"]["exit_code"] == 4);
    // Stopped, and still locked for anyone who starts it by hand.
    assert!(pgdrill::server::running_postmaster(&target).is_none(), "the server must be stopped");
    let hba = std::fs::read_to_string(target.join("pg_hba.conf")).unwrap();
    assert!(hba.contains("pgdrill consistency gate"), "{hba}");
    let o = run_as(
        &g,
        "pg_ctl",
        &["start", "-w", "-t", "30", "-D", target.to_str().unwrap(), "-l", g.dir.join("manual.log").to_str().unwrap()],
    );
    let _ = o;
    sleep_ms(1000);
    assert!(!knock_once(&g, g.sockets.to_str().unwrap(), port), "a manual start must stay locked (socket)");
    assert!(!knock_once(&g, "127.0.0.1", port), "a manual start must stay locked (TCP)");
    let _ = run_as(&g, "pg_ctl", &["stop", "-m", "immediate", "-D", target.to_str().unwrap()]);
}

#[test]
fn killing_pgdrill_leaves_no_access_and_gate_resumes() {
    let (g, b, end) = ground_with_backup("label");
    let (partial, missing) = archive_without_end_segment(&g, end);
    let target = g.dir.join("t");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .args([
            "restore",
            b.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--wal-archive",
            partial.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--timeout",
            "300",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the server runs and waits for the missing segment.
    let mut started = false;
    for _ in 0..400 {
        if pgdrill::server::running_postmaster(&target).is_some() {
            started = true;
            break;
        }
        sleep_ms(25);
    }
    assert!(started, "the restore never started the server");
    sleep_ms(1500);
    // A second gate on the same directory is refused while the first runs:
    // another process holds it, an environment failure (exit 3, issue #14).
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--timeout", "5"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("another pgdrill gate is running"), "{}", stderr(&out));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sleep_ms(500);
    assert!(pgdrill::server::running_postmaster(&target).is_some(), "the server keeps running after pgdrill died");
    for _ in 0..3 {
        assert!(!knock_once(&g, g.sockets.to_str().unwrap(), port), "no access over the socket after pgdrill died");
        assert!(!knock_once(&g, "127.0.0.1", port), "no access over TCP after pgdrill died");
    }
    // Restore refuses the busy target, and says how to go on.
    let out = pgdrill(&["restore", b.to_str().unwrap(), "--target", target.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    // Provide the segment; `pgdrill gate` resumes and opens, run this time
    // by the server's own OS user: the lock must now admit that user, and
    // the running server must load the rewritten lock.
    std::fs::copy(g.archive.join(&missing), partial.join(&missing)).unwrap();
    g.user.chown(&partial.join(&missing)).unwrap();
    let out = g
        .user
        .command(env!("CARGO_BIN_EXE_pgdrill"))
        .args(["gate", "--pgdata", target.to_str().unwrap(), "--wal-archive", partial.to_str().unwrap()])
        .args(["--timeout", "120", "--json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["resumed"], true);
    assert!(lsn(&r["opened_at_lsn"]).unwrap() >= end);
    assert!(knock_once(&g, g.sockets.to_str().unwrap(), port));
    assert!(!target.join("pgdrill_gate").exists());
    stop_server(&g, &target);
}

#[test]
fn then_promote_gives_a_read_write_server_on_a_new_timeline() {
    let (g, b, end) = ground_with_backup("label");
    let target = g.dir.join("t");
    let port = free_port();
    let before = archive_listing(&g);
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--then", "promote", "--timeout", "120", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gate = json(&out)["gate"].clone();
    assert_eq!(gate["read_write"], true);
    assert_eq!(gate["timeline"], 2);
    assert!(lsn(&gate["opened_at_lsn"]).unwrap() >= end);
    let mut c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
    c.batch_execute("CREATE TABLE written_after_promotion (x int); INSERT INTO written_after_promotion VALUES (1)")
        .unwrap();
    let rec: bool = c.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(!rec);
    let tli: i32 = c.query_one("SELECT timeline_id FROM pg_control_checkpoint()", &[]).unwrap().get(0);
    assert_eq!(tli, 2);
    c.batch_execute("SELECT pg_switch_wal(); CHECKPOINT").unwrap();
    sleep_ms(500);
    // The promoted sandbox does not archive its history or segments into production's archive.
    let after = archive_listing(&g);
    assert!(after.iter().all(|f| !f.starts_with("00000002")), "the sandbox archived into production: {after:?}");
    assert!(before.iter().all(|f| after.contains(f)));
    drop(c);
    stop_server(&g, &target);
}

#[test]
fn then_standby_keeps_following_and_opens_past_the_end() {
    let (g, b, end) = ground_with_backup("legacy");
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--then", "standby", "--timeout", "120", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gate = json(&out)["gate"].clone();
    assert_eq!(gate["read_write"], false);
    assert!(lsn(&gate["opened_at_lsn"]).unwrap() >= end);
    // New WAL arrives in the archive and the copy follows it.
    // Two statements: in one batch the switch would precede the commit.
    g.primary_exec("CREATE TABLE after_backup AS SELECT 7 AS v").unwrap();
    g.primary_exec("SELECT pg_switch_wal()").unwrap();
    let mut c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
    let mut seen = false;
    // The copy polls its restore_command every 5 s (wal_retrieve_retry_interval).
    for _ in 0..400 {
        if c.query_one("SELECT count(*) FROM pg_class WHERE relname = 'after_backup'", &[])
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
        {
            seen = true;
            break;
        }
        sleep_ms(100);
    }
    assert!(seen, "a standby-mode copy keeps replaying past the end");
    drop(c);
    stop_server(&g, &target);
}

#[test]
fn gate_on_a_hand_restored_directory_and_bad_input() {
    let (g, b, end) = ground_with_backup("legacy");
    // Restored by hand: a plain copy of the backup plus a restore_command.
    let target = g.dir.join("by-hand");
    assert!(Command::new("cp").arg("-a").arg(&b).arg(&target).status().unwrap().success());
    let port = free_port();
    let mut auto = std::fs::read_to_string(target.join("postgresql.auto.conf")).unwrap();
    if g.bin.major >= 12 {
        auto.push_str(&format!(
            "port = {port}\nprimary_conninfo = ''\nrestore_command = 'cp {}/%f %p'\n",
            g.archive.display()
        ));
    } else {
        auto.push_str(&format!("port = {port}\n"));
        std::fs::write(
            target.join("recovery.conf"),
            format!("standby_mode = 'on'\nrestore_command = 'cp {}/%f %p'\n", g.archive.display()),
        )
        .unwrap();
    }
    std::fs::write(target.join("postgresql.auto.conf"), auto).unwrap();
    // --end-lsn must parse.
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--end-lsn", "nonsense"]);
    assert_eq!(code(&out), 2);
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--timeout", "120", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["end_source"], "end_location");
    assert_eq!(lsn(&r["end_lsn"]), Some(end));
    // A running, opened server is not gated again.
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is running"));
    stop_server(&g, &target);
    // Not a data directory.
    let out = pgdrill(&["gate", "--pgdata", g.dir.join("nothing").to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    // restore: not a backup, a non-empty target.
    let out = pgdrill(&["restore", g.primary.pgdata.to_str().unwrap(), "--target", g.dir.join("x").to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = pgdrill(&["restore", b.to_str().unwrap(), "--target", target.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("not empty"));
    let out = pgdrill(&["restore", b.to_str().unwrap(), "--target", "/tmp/y", "--tablespace-map", "x=y"]);
    assert_eq!(code(&out), 2);
}

#[test]
fn a_damaged_backup_is_refused_and_nothing_startable_is_left() {
    let (g, b, _end) = ground_with_backup("label");
    // Flip a byte in a data file the manifest covers.
    let victim = b.join("global/1262");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let target = g.dir.join("t");
    let port = free_port().to_string();
    let out = pgdrill(&[
        "restore",
        b.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--port",
        &port,
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("global/1262"), "{}", stderr(&out));
    assert!(!target.join("global/pg_control").exists(), "a failed restore must not be startable");
    let o = run_as(&g, "pg_ctl", &["start", "-w", "-t", "10", "-D", target.to_str().unwrap()]);
    assert!(!o.status.success(), "plain pg_ctl start must fail on a failed restore");
}

#[test]
fn no_start_restore_is_locked_until_the_gate_opens_it() {
    let (g, b, end) = ground_with_backup("legacy");
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--no-start", "--then", "promote", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["started"], false);
    // Someone starts it by hand: it runs, but nobody gets in.
    let o = run_as(
        &g,
        "pg_ctl",
        &["start", "-w", "-t", "60", "-D", target.to_str().unwrap(), "-l", g.dir.join("by-hand.log").to_str().unwrap()],
    );
    let _ = o;
    sleep_ms(1000);
    assert!(!knock_once(&g, g.sockets.to_str().unwrap(), port));
    assert!(!knock_once(&g, "127.0.0.1", port));
    let _ = run_as(&g, "pg_ctl", &["stop", "-m", "fast", "-D", target.to_str().unwrap()]);
    // The gate finishes the job, with the --then the restore saved.
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--timeout", "120", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert!(lsn(&r["opened_at_lsn"]).unwrap() >= end);
    assert_eq!(r["then"], "promote");
    assert_eq!(r["read_write"], true, "the saved --then promote was kept");
    assert!(knock_once(&g, g.sockets.to_str().unwrap(), port));
    stop_server(&g, &target);
}

#[test]
fn tablespaces_are_backed_up_relocated_and_restored() {
    let mut g = primary();
    let ts = g.dir.join("ts_primary");
    std::fs::create_dir_all(&ts).unwrap();
    g.user.chown(&ts).unwrap();
    g.primary_exec(&format!("CREATE TABLESPACE ts LOCATION '{}'", ts.display())).unwrap();
    g.primary_exec("CREATE TABLE in_ts TABLESPACE ts AS SELECT g FROM generate_series(1, 5000) g").unwrap();
    g.add_standby().unwrap();
    let mut c = g.standby().unwrap().client().unwrap();
    let oid = one(&mut c, "SELECT oid::text FROM pg_tablespace WHERE spcname = 'ts'");
    drop(c);
    for method in ["label", "legacy"] {
        let (b, _end) = backup(&g, method, &[]);
        assert!(b.join("pg_tblspc").join(&oid).is_dir(), "tablespace contents are in the backup");
        assert_eq!(b.join("tablespace_map").exists(), method == "label");
        if let Some(v) = pg_verifybackup() {
            if g.bin.major < 17 {
                let o = Command::new(v).arg("-n").arg(&b).output().unwrap();
                assert!(o.status.success(), "{}", stderr(&o));
            }
        }
        let target = g.dir.join(format!("t-{method}"));
        // The label backup goes where --tablespace-map says; the legacy one
        // to the default <target>.tblspc/<oid>, which as root must belong
        // to the server's user or PostgreSQL cannot use it (issue #9).
        let explicit = method == "label";
        let where_to = if explicit {
            g.dir.join(format!("ts-restored-{method}"))
        } else {
            g.dir.join(format!("t-{method}.tblspc")).join(&oid)
        };
        let port = free_port();
        let map = format!("{oid}={}", where_to.display());
        let port_s = port.to_string();
        let mut args = vec![
            "restore",
            b.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--wal-archive",
            g.archive.to_str().unwrap(),
            "--port",
            &port_s,
            "--timeout",
            "120",
            "--no-sync",
            "--json",
        ];
        if explicit {
            args.extend(["--tablespace-map", &map]);
        }
        let out = pgdrill(&args);
        assert_eq!(code(&out), 0, "{method}: {}", stderr(&out));
        let mut c = pgdrill::conn::ConnSpec::socket(&g.sockets, port, "postgres", "postgres").connect().unwrap();
        let n: i64 = c.query_one("SELECT count(*) FROM in_ts", &[]).unwrap().get(0);
        assert_eq!(n, 5000);
        let loc = one(&mut c, &format!("SELECT pg_tablespace_location({oid})"));
        assert_eq!(loc, where_to.display().to_string(), "{method}");
        assert_eq!(std::fs::read_link(target.join("pg_tblspc").join(&oid)).unwrap(), where_to);
        if !explicit {
            use std::os::unix::fs::MetadataExt;
            let parent = std::fs::metadata(where_to.parent().unwrap()).unwrap();
            assert_eq!(parent.uid(), g.user.uid, "<target>.tblspc belongs to the server's user");
        }
        drop(c);
        stop_server(&g, &target);
        std::fs::remove_dir_all(&b).unwrap();
    }
    let _ = g.standby_mut();
}

#[test]
fn a_pg_basebackup_backup_of_the_standby_restores_behind_the_gate() {
    let g = with_standby();
    if g.bin.major != 15 {
        eprintln!("only Debian's pg_basebackup 15 is available; skipped on {}", g.bin.major);
        return;
    }
    let s = g.standby().unwrap();
    let b = g.dir.join("basebackup");
    let o = Command::new("/usr/lib/postgresql/15/bin/pg_basebackup")
        .args([
            "-D",
            b.to_str().unwrap(),
            "-Fp",
            "-X",
            "none",
            "-h",
            g.sockets.to_str().unwrap(),
            "-p",
            &s.port.to_string(),
            "-U",
            "postgres",
            "-c",
            "fast",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    g.primary_exec("SELECT pg_switch_wal()").unwrap();
    sleep_ms(1000);
    let r = json(&pgdrill(&["inspect", b.to_str().unwrap(), "--json"]));
    let end = lsn(&r["end_lsn"]).expect("a standby pg_basebackup's end is its pg_control's minRecoveryPoint");
    assert_eq!(r["end_location"], serde_json::Value::Null);
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--timeout", "120", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(lsn(&r["end_lsn"]), Some(end));
    assert!(r["manifest_checked"].as_u64().unwrap() > 100, "pg_basebackup's manifest was used");
    assert!(lsn(&r["gate"]["opened_at_lsn"]).unwrap() >= end);
    stop_server(&g, &target);
}

#[test]
fn runs_as_the_data_directory_owner_too() {
    let g = with_standby();
    let as_owner = |args: &[&str]| g.user.command(env!("CARGO_BIN_EXE_pgdrill")).args(args).output().unwrap();
    let dest = g.dir.join("owned-backup");
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let out = as_owner(&[
        "backup",
        "--standby",
        &standby,
        "--primary",
        &primary,
        "--dest",
        dest.to_str().unwrap(),
        "--fast",
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let end = lsn(&json(&out)["end_lsn"]).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(dest.join("global/pg_control")).unwrap().uid(), g.user.uid);
    let target = g.dir.join("owned-restore");
    let port = free_port();
    let out = as_owner(&[
        "restore",
        dest.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--timeout",
        "120",
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(lsn(&json(&out)["gate"]["opened_at_lsn"]).unwrap() >= end);
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), g.user.uid);
    stop_server(&g, &target);
    // As root, a backup's files belong to the source's owner.
    let dest2 = g.dir.join("root-backup");
    let out =
        pgdrill(&["backup", "--standby", &standby, "--dest", dest2.to_str().unwrap(), "--fast", "--no-sync", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::metadata(dest2.join("base")).unwrap().uid(), g.user.uid);
}

#[test]
fn an_end_target_below_the_backups_end_is_refused_with_exit_2_and_changes_nothing() {
    let (g, b, end) = ground_with_backup("label");
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--no-start"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // An end before the backup's own end would open a torn copy: refused
    // up front (issue #9: exit 2 on every path), and nothing is written.
    let label = std::fs::read_to_string(b.join("backup_label")).unwrap();
    let start = label.lines().next().unwrap().split_whitespace().nth(3).unwrap().to_string();
    assert!(start.parse::<Lsn>().unwrap() < end);
    let state_before = std::fs::read(target.join("pgdrill_gate/state.json")).unwrap();
    let auto_before = std::fs::read(target.join("postgresql.auto.conf")).unwrap();
    let out =
        pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--end-lsn", &start, "--timeout", "60", "--json"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("below the backup's own end point"), "{}", stderr(&out));
    assert!(pgdrill::server::running_postmaster(&target).is_none());
    assert!(std::fs::read_to_string(target.join("pg_hba.conf")).unwrap().contains("pgdrill consistency gate"));
    assert_eq!(std::fs::read(target.join("pgdrill_gate/state.json")).unwrap(), state_before, "state unchanged");
    assert_eq!(std::fs::read(target.join("postgresql.auto.conf")).unwrap(), auto_before, "config unchanged");
}

#[test]
fn a_backup_without_postgresql_conf_gets_the_primarys_limits() {
    // A Debian-layout cluster keeps postgresql.conf outside the data directory.
    let (g, b, end) = ground_with_backup("label");
    std::fs::remove_file(b.join("postgresql.conf")).unwrap();
    drop_from_manifest(&b, &["postgresql.conf"]);
    let target = g.dir.join("t");
    let port = free_port();
    let out = restore_cli(
        b.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port.to_string(),
        &["--timeout", "120", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert!(lsn(&r["gate"]["opened_at_lsn"]).unwrap() >= end);
    let sock = r["gate"]["socket_dir"].as_str().unwrap().to_string();
    let mut c =
        pgdrill::conn::ConnSpec::socket(std::path::Path::new(&sock), port, "postgres", "postgres").connect().unwrap();
    // The ground's primary runs with max_connections = 40.
    assert_eq!(one(&mut c, "SELECT current_setting('max_connections')"), "40");
    assert_eq!(one(&mut c, "SELECT current_setting('hot_standby_feedback')"), "off");
    drop(c);
    stop_server(&g, &target);
}

#[test]
fn a_busy_port_is_refused_before_anything_is_copied() {
    let (g, b, _end) = ground_with_backup("label");
    // The backup carries the standby's own port, which is in use.
    let target = g.dir.join("t");
    let out = pgdrill(&[
        "restore",
        b.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("is in use") && stderr(&out).contains("--port"), "{}", stderr(&out));
    assert!(!target.exists(), "nothing was copied");
}
