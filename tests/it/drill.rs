//! `pgdrill drill`, `demo` and `wal-keep` against real servers.

use crate::common::*;
use pgdrill::ground::{invariant_sql, LoadOptions};
use pgdrill::pg::Lsn;

fn lsn(v: &serde_json::Value) -> Option<Lsn> {
    v.as_str().and_then(|s| s.parse().ok())
}

fn junit_cases(path: &std::path::Path) -> Vec<(String, String)> {
    let xml = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("the JUnit report is XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            let outcome =
                n.children().find(|c| c.is_element()).map(|c| c.tag_name().name().to_string()).unwrap_or_default();
            (n.attribute("name").unwrap().to_string(), outcome)
        })
        .collect()
}

#[test]
fn a_drill_passes_end_to_end_with_checks_and_junit() {
    let g = with_standby();
    let _ = g.primary_exec("CREATE EXTENSION IF NOT EXISTS amcheck");
    let load = g.start_load(LoadOptions::default()).unwrap();
    sleep_ms(500);
    let sql = g.dir.join("checks.sql");
    std::fs::write(
        &sql,
        format!("{};\nSELECT count(*) > 0 FROM pg_class;\n", invariant_sql(LoadOptions::default().accounts)),
    )
    .unwrap();
    let work = g.dir.join("work");
    let junit = g.dir.join("drill.xml");
    let out = pgdrill(&[
        "drill",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--primary",
        &g.primary.conninfo(),
        "--work",
        work.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
        "--check-sql",
        sql.to_str().unwrap(),
        "--amcheck",
        "--junit",
        junit.to_str().unwrap(),
        "--timeout",
        "120",
        "--json",
    ]);
    load.stop();
    assert_eq!(code(&out), 0, "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    let names: Vec<&str> = r["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["preflight", "backup", "verify", "restore", "gate", "checks", "cleanup"]);
    assert!(r["steps"].as_array().unwrap().iter().all(|s| s["status"] == "pass"), "{r}");
    let end = lsn(&r["end_lsn"]).unwrap();
    assert!(lsn(&r["opened_at_lsn"]).unwrap() >= end);
    for k in ["backup", "verify", "copy", "replay", "open", "total"] {
        assert!(r["rto"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
    let checks = r["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "amcheck postgres" && c["status"] == "pass"), "{checks:?}");
    assert_eq!(checks.iter().filter(|c| c["name"].as_str().unwrap().starts_with("check-sql")).count(), 2);
    // The work copy is gone and its server stopped.
    assert!(!work.join("restore").exists());
    assert!(!work.join("backup").exists());
    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), names.len(), "one JUnit test case per step");
    assert!(cases.iter().all(|(_, o)| o == "system-out"), "{cases:?}");
}

#[test]
fn a_failing_check_sql_fails_the_drill_with_the_statement() {
    let g = with_standby();
    let sql = g.dir.join("bad.sql");
    std::fs::write(&sql, "SELECT true;\nSELECT count(*) = 12345 FROM pg_class;\n").unwrap();
    let work = g.dir.join("work");
    let junit = g.dir.join("drill.xml");
    let out = pgdrill(&[
        "drill",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--primary",
        &g.primary.conninfo(),
        "--work",
        work.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
        "--check-sql",
        sql.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--timeout",
        "120",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SELECT count(*) = 12345 FROM pg_class"), "{text}");
    assert!(text.contains("got f"), "the value returned is shown: {text}");
    assert!(text.contains("Drill FAILED"));
    let cases = junit_cases(&junit);
    assert!(cases.iter().any(|(n, o)| n == "checks" && o == "failure"), "{cases:?}");
    // Failed checks keep the gate shut: the gate step fails too.
    assert!(cases.iter().any(|(n, o)| n == "gate" && o == "failure"), "{cases:?}");
    assert!(text.contains("access was not opened"), "{text}");
    assert!(text.contains("reached consistency at the end LSN"), "the gate's report survives: {text}");
}

#[test]
fn the_first_failing_step_decides_and_later_steps_are_skipped() {
    let g = with_standby();
    let work = g.dir.join("work");
    let junit = g.dir.join("drill.xml");
    // A primary is not a standby: preflight fails.
    let out = pgdrill(&[
        "drill",
        "--standby",
        &g.primary.conninfo(),
        "--work",
        work.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&out), 1);
    let r = json(&out);
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "fail");
    assert!(steps[1..steps.len() - 1].iter().all(|s| s["status"] == "skip"), "{steps:?}");
    assert!(junit_cases(&junit).iter().filter(|(_, o)| o == "skipped").count() >= 4);
    // An unreachable standby: exit 3, the environment.
    let out = pgdrill(&[
        "drill",
        "--standby",
        "host=/nonexistent port=1",
        "--work",
        g.dir.join("w2").to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn the_demo_runs_as_root_and_reports_consistency() {
    if !pgdrill::server::OsUser::running_as_root() {
        eprintln!("not root; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out =
        pgdrill(&["demo", "--dir", dir.path().join("demo").to_str().unwrap(), "--pg-bin", bin().dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("The restore reached consistency at the end LSN"), "{text}");
    assert!(text.contains("Drill passed."));
    // Without --keep nothing stays behind in the --dir it created.
    assert!(!dir.path().join("demo").exists(), "the demo left its servers and copies behind");
    let out = pgdrill(&[
        "demo",
        "--dir",
        dir.path().join("demo2").to_str().unwrap(),
        "--pg-bin",
        bin().dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code(&out), 0);
    let r = json(&out);
    assert_eq!(r["drill"]["ok"], true);
    assert!(lsn(&r["drill"]["opened_at_lsn"]).unwrap() >= lsn(&r["drill"]["end_lsn"]).unwrap());
}

#[test]
fn wal_keep_lists_and_removes_exactly_the_older_files() {
    let g = with_standby();
    // Several segments, then a checkpoint the standby turns into a restartpoint.
    for _ in 0..4 {
        g.primary_exec("CREATE TABLE IF NOT EXISTS churn AS SELECT 1 AS x; INSERT INTO churn SELECT g FROM generate_series(1, 20000) g").unwrap();
        g.primary_exec("SELECT pg_switch_wal()").unwrap();
    }
    g.primary_exec("CHECKPOINT").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(60)).unwrap();
    let dest = g.dir.join("b");
    let out = pgdrill(&[
        "backup",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--primary",
        &g.primary.conninfo(),
        "--dest",
        dest.to_str().unwrap(),
        "--fast",
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start_seg = std::fs::read_to_string(dest.join("backup_label")).unwrap();
    let start_seg = start_seg.split("(file ").nth(1).unwrap()[..24].to_string();
    let before = archive_listing(&g);
    let expected: Vec<String> = before
        .iter()
        .filter(|n| !n.ends_with(".history") && n.len() >= 24 && n[..24] < *start_seg.as_str())
        .cloned()
        .collect();
    assert!(!expected.is_empty(), "the test needs WAL older than the backup's start {start_seg}: {before:?}");

    let out = pgdrill(&["wal-keep", dest.to_str().unwrap(), "--archive", g.archive.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["oldest_needed"], start_seg.as_str());
    let listed: Vec<String> =
        r["removable"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, expected);
    assert_eq!(r["removed"], false);
    assert_eq!(archive_listing(&g), before, "a dry run removes nothing");

    // A broken backup never causes WAL deletion.
    let broken = g.dir.join("broken");
    assert!(std::process::Command::new("cp").arg("-a").arg(&dest).arg(&broken).status().unwrap().success());
    std::fs::write(broken.join("PG_VERSION"), "99\n").unwrap();
    let out = pgdrill(&["wal-keep", broken.to_str().unwrap(), "--archive", g.archive.to_str().unwrap(), "--remove"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(archive_listing(&g), before);

    let out =
        pgdrill(&["wal-keep", dest.to_str().unwrap(), "--archive", g.archive.to_str().unwrap(), "--remove", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = archive_listing(&g);
    let gone: Vec<String> = before.iter().filter(|n| !after.contains(n)).cloned().collect();
    assert_eq!(gone, expected, "exactly the listed files were removed");
    // The backup still has all it needs.
    let out = pgdrill(&["verify", dest.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
}

fn pgdrill_cols(args: &[&str], columns: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pgdrill"))
        .env("COLUMNS", columns)
        .args(args)
        .output()
        .expect("run pgdrill")
}

/// Every line at most `width` characters, none ending in a space.
fn assert_fits(text: &str, width: usize) {
    for line in text.lines() {
        assert!(line.chars().count() <= width, "longer than {width}: {line:?}\n{text}");
        assert!(!line.ends_with(' '), "trailing space: {line:?}\n{text}");
    }
}

#[test]
fn a_drill_records_history_and_metrics_on_a_predictable_port_in_80_columns() {
    let g = with_standby();
    let standby = g.standby().unwrap().conninfo();
    let work = g.dir.join("work");
    let hist = g.dir.join("drills.jsonl");
    let prom_file = g.dir.join("textfile/pgdrill.prom");
    std::fs::create_dir_all(prom_file.parent().unwrap()).unwrap();
    let out = pgdrill_cols(
        &[
            "drill",
            "--standby",
            &standby,
            "--primary",
            &g.primary.conninfo(),
            "--work",
            work.to_str().unwrap(),
            "--wal-archive",
            g.archive.to_str().unwrap(),
            "--history",
            hist.to_str().unwrap(),
            "--metrics",
            prom_file.to_str().unwrap(),
            "--rto-target",
            "3600",
            "--no-sync",
            "--stall-secs",
            "5",
            "--timeout",
            "120",
        ],
        "80",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}\n{}", stderr(&out));
    assert_fits(&text, 80);
    assert!(text.contains("Drill passed."), "{text}");
    // The rto step ran and passed.
    assert!(text.lines().any(|l| l.starts_with(" rto ") && l.contains("pass")), "{text}");
    // The port: the standby's + 10000, or the next free one.
    let ports = pgdrill::drill::port::candidates(g.standby().unwrap().port);
    assert!(
        ports.iter().any(|p| text.split(|c: char| !c.is_ascii_digit()).any(|w| w == p.to_string())),
        "none of {ports:?} in {text}"
    );
    // Progress and step notes went to stderr, one line per step.
    for step in ["preflight", "backup", "verify", "restore", "gate"] {
        assert!(stderr(&out).contains(&format!("drill: {step} passed")), "{}", stderr(&out));
    }

    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&hist).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    let rec = &lines[0];
    assert_eq!(rec["ok"], true);
    let cluster = rec["cluster"].as_str().unwrap().to_string();
    assert!(!cluster.is_empty() && cluster.chars().all(|c| c.is_ascii_digit()), "the system identifier: {cluster}");
    assert!(rec["rto"]["recovery"].as_f64().unwrap() > 0.0);
    assert_eq!(rec["rto_target"], 3600.0);
    assert!(rec["backup_bytes"].as_u64().unwrap() > 0);

    let samples = crate::common::prom::parse(&std::fs::read_to_string(&prom_file).unwrap()).unwrap();
    let c = [("cluster", cluster.as_str())];
    assert_eq!(crate::common::prom::get(&samples, "pgdrill_drill_success", &c), Some(1.0));
    let last_success = crate::common::prom::get(&samples, "pgdrill_drill_last_success_timestamp_seconds", &c).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last_success).abs() < 600.0);
    assert!(crate::common::prom::get(&samples, "pgdrill_drill_rto_seconds", &c).unwrap() > 0.0);
    assert_eq!(crate::common::prom::get(&samples, "pgdrill_drill_rto_target_seconds", &c), Some(3600.0));
    assert!(crate::common::prom::get(&samples, "pgdrill_drill_backup_bytes", &c).unwrap() > 0.0);
    assert!(crate::common::prom::get(&samples, "pgdrill_drill_step_seconds", &[("step", "backup")]).is_some());
    assert!(crate::common::prom::get(&samples, "pgdrill_drill_end_lsn_lag_bytes", &c).is_some());
    assert_eq!(std::fs::read_dir(prom_file.parent().unwrap()).unwrap().count(), 1, "no temporary file left");

    // A drill that fails before its first step (a busy --work): recorded too;
    // the metrics keep the series and its last success.
    let out = pgdrill(&[
        "drill",
        "--standby",
        &standby,
        "--work",
        g.dir.to_str().unwrap(),
        "--wal-archive",
        g.archive.to_str().unwrap(),
        "--history",
        hist.to_str().unwrap(),
        "--metrics",
        prom_file.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let samples = crate::common::prom::parse(&std::fs::read_to_string(&prom_file).unwrap()).unwrap();
    assert_eq!(crate::common::prom::get(&samples, "pgdrill_drill_success", &c), Some(0.0));
    assert_eq!(crate::common::prom::get(&samples, "pgdrill_drill_exit_code", &c), Some(2.0));
    assert_eq!(
        crate::common::prom::get(&samples, "pgdrill_drill_last_success_timestamp_seconds", &c),
        Some(last_success)
    );

    let out = pgdrill(&["history", hist.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    let drills = r["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 2);
    assert_eq!(drills[1]["ok"], false);
    assert_eq!(drills[1]["failed_step"], "drill");
    assert_eq!(drills[1]["cluster"], cluster.as_str());
    let out = pgdrill_cols(&["history", hist.to_str().unwrap()], "80");
    assert_eq!(code(&out), 0);
    assert_fits(&String::from_utf8_lossy(&out.stdout), 80);
}

#[test]
fn a_failed_verify_carries_the_missing_segment_into_junit_and_json() {
    let g = with_standby();
    // An archive directory without the WAL the backup needs.
    let empty = g.dir.join("empty-archive");
    std::fs::create_dir_all(&empty).unwrap();
    let junit = g.dir.join("drill.xml");
    let out = pgdrill(&[
        "drill",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--work",
        g.dir.join("work").to_str().unwrap(),
        "--wal-archive",
        empty.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = json(&out);
    let verify = r["steps"].as_array().unwrap().iter().find(|s| s["name"] == "verify").unwrap().clone();
    assert_eq!(verify["status"], "fail");
    let causes: Vec<&str> = verify["causes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(causes.iter().any(|c| c.starts_with("wal_segment_missing 0000")), "{causes:?}");
    assert!(verify["detail"].as_str().unwrap().contains("first: wal_segment_missing"), "{verify}");
    let segment = causes.iter().find(|c| c.starts_with("wal_segment_missing")).unwrap()[20..44].to_string();

    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failure = doc.descendants().find(|n| n.has_tag_name("failure")).unwrap();
    assert!(failure.text().unwrap().contains(&segment), "the failure names {segment}: {xml}");
    // The closing sentence is true: nothing was restored.
    assert!(xml.contains("No restore ran: the drill stopped at the verify step"), "{xml}");
    assert!(!xml.contains("did NOT reach consistency"), "{xml}");
    for n in doc.descendants().filter(|n| n.has_tag_name("testsuite") || n.has_tag_name("testsuites")) {
        assert!(n.attribute("time").is_some());
    }
}

#[test]
fn a_drill_restores_with_a_restore_command_and_checks_template1() {
    let g = with_standby();
    let _ = g.primary_exec("CREATE EXTENSION IF NOT EXISTS amcheck");
    let cmd = format!("cp {}/%f %p", g.archive.display());
    let out = pgdrill(&[
        "drill",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--primary",
        &g.primary.conninfo(),
        "--work",
        g.dir.join("work").to_str().unwrap(),
        "--restore-command",
        &cmd,
        "--amcheck",
        "--then",
        "promote",
        "--no-sync",
        "--timeout",
        "120",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let r = json(&out);
    // The command is the user's, with %p anchored in the copy.
    let target = g.dir.join("work").join("restore");
    assert_eq!(
        r["restore"]["restore_command"],
        format!("cp {}/%f {}/%p", g.archive.display(), target.display()).as_str()
    );
    // verify fetched the WAL chain through the command too.
    let verify = r["steps"].as_array().unwrap().iter().find(|s| s["name"] == "verify").unwrap().clone();
    assert!(verify["detail"].as_str().unwrap().starts_with("0 errors"), "{verify}");
    assert!(!verify["detail"].as_str().unwrap().contains("WAL not checked"), "{verify}");
    let checks = r["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "amcheck template1" && c["status"] == "pass"), "{checks:?}");
}

#[test]
fn backup_restore_and_gate_json_carry_ok() {
    let g = with_standby();
    let dest = g.dir.join("b");
    let out = pgdrill(&[
        "backup",
        "--standby",
        &g.standby().unwrap().conninfo(),
        "--primary",
        &g.primary.conninfo(),
        "--dest",
        dest.to_str().unwrap(),
        "--fast",
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    assert!(r["end_lsn"].is_string(), "the report's own keys stay: {r}");
    let target = g.dir.join("r");
    let port = pgdrill::ground::free_port().to_string();
    let out = restore_cli(
        dest.to_str().unwrap(),
        target.to_str().unwrap(),
        g.archive.to_str().unwrap(),
        &port,
        &["--no-start", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    assert_eq!(r["started"], false);
    let out = pgdrill(&["gate", "--pgdata", target.to_str().unwrap(), "--timeout", "120", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    assert_eq!(r["opened"], true);
    if let Some(mut pm) = pgdrill::server::Postmaster::attach(&target, target.join("log/pgdrill-postmaster.log")) {
        pm.stop(std::time::Duration::from_secs(30));
    }
}
