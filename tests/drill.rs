//! `pgdrill drill`, `demo` and `wal-keep` against real servers.

mod common;

use common::*;
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
