//! The command line as documented (issue #15, point 7), without servers:
//! JSON for every failure, help texts, man pages, `ok` keys, exit codes,
//! `pgdrill history`, and the 80-column and no-trailing-space rules.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pgdrill_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgdrill"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run pgdrill")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every line at most `width` characters, none ending in a space.
pub fn assert_fits(text: &str, width: usize) {
    for line in text.lines() {
        assert!(line.chars().count() <= width, "longer than {width}: {line:?}\n{text}");
        assert!(!line.ends_with(' '), "trailing space: {line:?}\n{text}");
    }
}

/// A data directory holding only a PostgreSQL 15 pg_control.
fn data_dir(root: &Path) -> PathBuf {
    let d = root.join("data");
    std::fs::create_dir_all(d.join("global")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/control/pg15/pg_control");
    std::fs::copy(src, d.join("global/pg_control")).unwrap();
    d
}

#[test]
fn argument_errors_print_a_json_object_with_json() {
    for args in [
        &["drill", "--json"][..],
        &["restore", "--json", "--wal-archive", "/a", "--restore-command", "cp", "--target", "/t", "/b"],
        &["wal-keep", "/b", "--remove", "--json"],
        &["verify", "--json", "--no-such-option"],
        &["history", "--json"],
    ] {
        let out = pgdrill(args);
        assert_eq!(code(&out), 2, "{args:?}");
        let r = json(&out);
        assert_eq!(r["ok"], false, "{args:?}");
        assert_eq!(r["error"]["exit_code"], 2);
        assert!(!r["error"]["message"].as_str().unwrap().is_empty());
        // The usual text still goes to stderr.
        assert!(stderr(&out).contains("error:"), "{args:?}");
    }
    // The enforced conflicts are what the JSON names.
    let r = json(&pgdrill(&[
        "restore",
        "--json",
        "--wal-archive",
        "/a",
        "--restore-command",
        "cp",
        "--target",
        "/t",
        "/b",
    ]));
    assert!(r["error"]["message"].as_str().unwrap().contains("cannot be used with"), "{r}");
    let r = json(&pgdrill(&["wal-keep", "/b", "--remove", "--json"]));
    assert!(r.to_string().contains("--archive"), "{r}");
    // Without --json stdout stays empty.
    assert!(pgdrill(&["drill"]).stdout.is_empty());
    // --help is no error.
    assert_eq!(code(&pgdrill(&["drill", "--help", "--json"])), 0);
}

#[test]
fn help_states_defaults_and_conflicts() {
    // Words as clap wraps them, on one line.
    let help = |cmd: &str| stdout(&pgdrill(&[cmd, "--help"])).split_whitespace().collect::<Vec<_>>().join(" ");
    let restore = help("restore");
    assert!(restore.contains("the backup's own `port`"), "{restore}");
    assert!(restore.contains("Conflicts with --wal-archive"), "{restore}");
    assert!(restore.contains("Conflicts with --restore-command"), "{restore}");
    assert!(restore.contains("[default: pause]"), "restore's --then has its own text: {restore}");
    assert!(!restore.contains("unfinished gate"), "gate's --then text is not restore's: {restore}");
    let gate = help("gate");
    assert!(gate.contains("unfinished gate"), "{gate}");
    let drill = help("drill");
    for needle in [
        "standby's port + 10000",
        "PGUSER, the server's OS user, postgres",
        "pg_backup_start/stop",
        "schema: docs/json.md",
        "--restore-command",
        "--stall-secs",
        "--tablespace-map",
        "--no-sync",
        "--rto-target",
        "--history",
        "--metrics",
        "--cluster",
    ] {
        assert!(drill.contains(needle), "{needle}: {drill}");
    }
    assert!(!drill.contains("- standby:"), "a drill never follows production: {drill}");
    assert!(help("wal-keep").contains("Requires --archive"));
    // Help fits 80 columns when asked to (clap wraps to COLUMNS too; its
    // blank lines carry indentation, which is clap's).
    let out = pgdrill_env(&["drill", "--help"], &[("COLUMNS", "80")]);
    assert!(stdout(&out).lines().all(|l| l.chars().count() <= 80), "{}", stdout(&out));
}

#[test]
fn man_pages_have_exit_status_environment_and_examples() {
    let top = stdout(&pgdrill(&["man"]));
    for s in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES", "PGDRILL_STANDBY"] {
        assert!(top.contains(s), "{s}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = pgdrill(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut pages: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    pages.sort();
    assert!(pages.contains(&"pgdrill-history.1".to_string()), "{pages:?}");
    assert!(pages.contains(&"pgdrill.1".to_string()));
    for p in &pages {
        let text = std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert!(text.contains(".SH \"EXIT STATUS\""), "{p}");
        assert!(text.contains(".SH ENVIRONMENT"), "{p}");
        assert!(text.contains(".SH EXAMPLES"), "{p}");
    }
    let drill = std::fs::read_to_string(dir.path().join("pgdrill-drill.1")).unwrap();
    assert!(drill.contains("\\-\\-rto\\-target") || drill.contains("--rto-target"), "{drill}");
}

#[test]
fn inspect_json_has_an_ok_key() {
    let d = tempfile::tempdir().unwrap();
    let data = data_dir(d.path());
    let out = pgdrill(&["inspect", "--json", data.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["ok"], true);
    assert_eq!(r["kind"], "data_directory", "the report's own keys stay: {r}");
    // A damaged pg_control: exit 1 and ok false.
    let mut bytes = std::fs::read(data.join("global/pg_control")).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(data.join("global/pg_control"), bytes).unwrap();
    let out = pgdrill(&["inspect", "--json", data.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(json(&out)["ok"], false);
}

#[test]
fn input_this_user_cannot_read_is_exit_3() {
    if !pgdrill::server::OsUser::running_as_root() {
        eprintln!("not root; skipped");
        return;
    }
    let d = tempfile::Builder::new().prefix("pgdrill-unreadable-").tempdir_in("/tmp").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = data_dir(d.path());
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let exe = env!("CARGO_BIN_EXE_pgdrill");
    // The binary must be reachable by nobody; skip where it is not.
    let probe = Command::new("runuser").args(["-u", "nobody", "--", exe, "--version"]).output().unwrap();
    if !probe.status.success() {
        eprintln!("nobody cannot run {exe}; skipped");
        return;
    }
    for args in [&["inspect", data.to_str().unwrap()][..], &["verify", "--no-wal", data.to_str().unwrap()]] {
        let out = Command::new("runuser").args(["-u", "nobody", "--", exe]).args(args).output().unwrap();
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("ermission denied"), "{}", stderr(&out));
    }
}

fn record(ok: bool, recovery: f64, day: u32, cluster: &str) -> String {
    serde_json::json!({
        "format": 1,
        "started_at": format!("2026-01-{day:02}T02:00:00Z"),
        "finished_at": format!("2026-01-{day:02}T02:10:00Z"),
        "cluster": cluster,
        "ok": ok,
        "exit_code": if ok { 0 } else { 1 },
        "failed_step": if ok { None } else { Some("verify") },
        "steps": [
            { "name": "backup", "status": "pass", "seconds": 60.0 },
            { "name": "verify", "status": if ok { "pass" } else { "fail" }, "seconds": 10.0 },
            { "name": "gate", "status": if ok { "pass" } else { "skip" }, "seconds": recovery },
        ],
        "rto": { "backup": 60.0, "verify": 10.0, "copy": recovery / 2.0, "replay": recovery / 2.0, "open": 0.0,
                 "checks": 0.0, "total": 70.0 + recovery, "recovery": recovery },
        "backup_bytes": 1_000_000_000u64,
        "wal_bytes": 33_554_432u64,
        "replay_rate": 1_048_576.0,
    })
    .to_string()
        + "\n"
}

#[test]
fn history_shows_the_trend_and_flags_a_regression() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("history.jsonl");
    let mut text = String::new();
    for (i, t) in [100.0, 110.0, 90.0, 105.0].iter().enumerate() {
        text.push_str(&record(true, *t, i as u32 + 1, "prod"));
    }
    text.push_str(&record(false, 0.0, 5, "prod"));
    text.push_str(&record(true, 180.0, 6, "prod"));
    std::fs::write(&h, &text).unwrap();
    let hs = h.to_str().unwrap();

    let out = pgdrill_env(&["history", hs], &[("COLUMNS", "80")]);
    assert_eq!(code(&out), 0, "flagged, but no exit without --fail-on-regression: {}", stderr(&out));
    let t = stdout(&out);
    assert!(t.contains("REGRESSION"), "{t}");
    assert!(t.contains("FAIL verify"), "{t}");
    assert!(t.contains("SLOW"), "{t}");
    assert_fits(&t, 80);

    let out = pgdrill(&["history", hs, "--fail-on-regression", "--json"]);
    assert_eq!(code(&out), 1);
    let r = json(&out);
    assert_eq!(r["regression"], true);
    assert_eq!(r["total"], 6);
    let drills = r["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 6);
    // 180 s against the median of 100, 110, 90, 105 (102.5).
    assert_eq!(drills[5]["baseline_median"], 102.5);
    assert!((drills[5]["change_pct"].as_f64().unwrap() - 75.6).abs() < 0.1, "{r}");
    assert_eq!(drills[4]["ok"], false);
    assert_eq!(drills[4]["change_pct"], serde_json::Value::Null);

    // A higher threshold: no regression, exit 0.
    assert_eq!(code(&pgdrill(&["history", hs, "--fail-on-regression", "--threshold", "100"])), 0);
    // --last limits the rows, not the baseline.
    let r = json(&pgdrill(&["history", hs, "--last", "1", "--json"]));
    assert_eq!(r["drills"].as_array().unwrap().len(), 1);
    assert_eq!(r["drills"][0]["baseline_median"], 102.5);
    // Another cluster's drills are not compared.
    std::fs::write(&h, format!("{text}{}", record(true, 10.0, 7, "staging"))).unwrap();
    let r = json(&pgdrill(&["history", hs, "--cluster", "prod", "--json"]));
    assert_eq!(r["drills"].as_array().unwrap().len(), 6);
    assert_eq!(r["total"], 7);
}

#[test]
fn a_damaged_history_file_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("h.jsonl");
    let hs = h.to_str().unwrap();
    // Missing.
    let out = pgdrill(&["history", hs]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // A line that is not a record names its line.
    std::fs::write(&h, format!("{}garbage\n", record(true, 1.0, 1, "c"))).unwrap();
    let out = pgdrill(&["history", hs, "--json"]);
    assert_eq!(code(&out), 2);
    assert!(json(&out)["error"]["message"].as_str().unwrap().contains("line 2"), "{}", stderr(&out));
    // A binary file, and a huge line with no end: exit 2, bounded memory.
    std::fs::write(&h, [0u8, 159, 146, 150, 10]).unwrap();
    assert_eq!(code(&pgdrill(&["history", hs])), 2);
    let f = std::fs::File::create(&h).unwrap();
    f.set_len(64 << 20).unwrap(); // 64 MiB of NULs, sparse
    let out = pgdrill(&["history", hs]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("longer than"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    // A directory.
    assert_eq!(code(&pgdrill(&["history", d.path().to_str().unwrap()])), 2);
    // Bad options.
    assert_eq!(code(&pgdrill(&["history", hs, "--last", "0"])), 2);
    assert_eq!(code(&pgdrill(&["history", hs, "--threshold", "-5"])), 2);
    // A last line cut short (an interrupted append) is skipped with a note.
    std::fs::write(&h, format!("{}{{\"format\":1,\"sta", record(true, 1.0, 1, "c"))).unwrap();
    let out = pgdrill(&["history", hs, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["torn_last_line"], 2);
    assert!(stderr(&out).contains("cut short"));
}

#[test]
fn a_drill_that_could_not_record_its_outcome_does_not_start() {
    let d = tempfile::tempdir().unwrap();
    let junit = d.path().join("j.xml");
    for (opt, file) in [("--metrics", d.path().join("missing/m.prom")), ("--history", d.path().to_path_buf())] {
        let out = pgdrill(&[
            "drill",
            "--standby",
            "host=/nonexistent port=1",
            "--work",
            d.path().join("work").to_str().unwrap(),
            "--wal-archive",
            d.path().to_str().unwrap(),
            opt,
            file.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            "--json",
        ]);
        // 2 before any step, not 3 from the unreachable standby.
        assert_eq!(code(&out), 2, "{opt}: {}", stderr(&out));
        assert!(json(&out)["error"]["message"].as_str().unwrap().starts_with(opt), "{}", stderr(&out));
        assert!(!d.path().join("work").exists(), "nothing done");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains("type=\"exit 2\""), "{xml}");
    }
}
