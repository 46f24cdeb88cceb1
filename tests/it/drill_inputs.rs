//! `pgdrill drill` validates every path before any step runs (issue #10,
//! section 3): a drill that cannot finish never starts, and creates
//! nothing. No server is needed: the standby is never contacted.

use crate::common::*;

#[test]
fn drill_refuses_bad_paths_before_any_step() {
    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let work = d.path().join("work");
    let missing = d.path().join("no-such-archive");
    let junit_nowhere = d.path().join("no-such-dir/report.xml");
    let not_a_dir = d.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let base = |archive: &str, work: &str| {
        vec![
            "drill".to_string(),
            "--standby".into(),
            "host=/nonexistent port=1".into(),
            "--work".into(),
            work.to_string(),
            "--wal-archive".into(),
            archive.to_string(),
            "--json".into(),
        ]
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        pgdrill(&a)
    };
    let w = work.to_str().unwrap();
    for (args, what) in [
        (base(missing.to_str().unwrap(), w), "--wal-archive"),
        (base(not_a_dir.to_str().unwrap(), w), "--wal-archive"),
        (
            [base(archive.to_str().unwrap(), w), vec!["--junit".into(), junit_nowhere.to_str().unwrap().into()]]
                .concat(),
            "--junit",
        ),
        (base(archive.to_str().unwrap(), not_a_dir.join("work").to_str().unwrap()), "--work"),
        (
            [base(archive.to_str().unwrap(), w), vec!["--pgdata".into(), missing.to_str().unwrap().into()]].concat(),
            "--pgdata",
        ),
        (
            [base(archive.to_str().unwrap(), w), vec!["--check-sql".into(), missing.to_str().unwrap().into()]].concat(),
            "--check-sql",
        ),
    ] {
        let out = run(args.clone());
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(what), "{args:?}: {}", stderr(&out));
        assert!(!work.exists(), "{args:?}: nothing is created");
    }
    // With valid paths, the first step runs (and fails: no standby there).
    let out = run(base(archive.to_str().unwrap(), w));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}
