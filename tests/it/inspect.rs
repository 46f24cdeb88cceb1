//! `pgdrill inspect` against live servers: what we decode from pg_control
//! must equal what the server itself reports through pg_control_*().

use crate::common::compare::control_mismatches;
use crate::common::*;
use pgdrill::ground::{server_control_view, Cluster, Ground, GroundOptions};

/// Compare inspect's view of a running cluster with the server's, retrying
/// if the control file changed between the two reads.
fn agree(c: &Cluster) {
    let mut client = c.client().unwrap();
    let mut last = Vec::new();
    for _ in 0..5 {
        let before = server_control_view(&mut client).unwrap();
        let out = pgdrill(&["inspect", c.pgdata.to_str().unwrap(), "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let after = server_control_view(&mut client).unwrap();
        if before != after {
            continue;
        }
        let report = json(&out);
        assert_eq!(report["kind"], "data_directory");
        assert_eq!(report["pg_major"].as_u64(), Some(u64::from(bin().major)));
        assert_eq!(report["control"]["crc_ok"], true);
        last = control_mismatches(&report["control"], &before);
        if last.is_empty() {
            return;
        }
    }
    panic!("{}: inspect disagrees with the server: {last:#?}", c.name);
}

#[test]
fn inspect_agrees_with_live_primary_and_standby() {
    let g = with_standby();
    agree(&g.primary);
    let s = g.standby().unwrap();
    agree(s);
    let out = json(&pgdrill(&["inspect", s.pgdata.to_str().unwrap(), "--json"]));
    assert_eq!(out["control"]["state"], "in archive recovery");
    assert!(out["wal_needed"]["start_segment"].as_str().unwrap().len() == 24);
}

#[test]
fn inspect_agrees_with_a_non_default_segment_size() {
    let b = bin();
    if b.major < 11 {
        eprintln!("PostgreSQL {} has no initdb --wal-segsize; skipped", b.major);
        return;
    }
    let mut o = GroundOptions::new(b);
    o.wal_segsize_mb = Some(64);
    let g = Ground::new(o).unwrap();
    g.primary_exec("CHECKPOINT").unwrap();
    agree(&g.primary);
    let out = json(&pgdrill(&["inspect", g.primary.pgdata.to_str().unwrap(), "--json"]));
    assert_eq!(out["control"]["wal_segment_size"].as_u64(), Some(64 << 20));
}

#[test]
fn inspect_exit_codes_for_bad_input() {
    let d = tempfile::tempdir().unwrap();
    // Not a directory at all.
    let out = pgdrill(&["inspect", "/nonexistent/pgdrill", "--json"]);
    assert_eq!(code(&out), 2);
    assert_eq!(json(&out)["error"]["exit_code"], 2);
    // A directory without pg_control.
    let out = pgdrill(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("global/pg_control is missing"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint:"));
    // Real pg_control with a flipped byte: shown, but exit 1.
    std::fs::create_dir_all(d.path().join("global")).unwrap();
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/control");
    std::fs::copy(testdata.join("malformed/flipped-byte"), d.path().join("global/pg_control")).unwrap();
    let out = pgdrill(&["inspect", d.path().to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 1);
    assert_eq!(json(&out)["control"]["crc_ok"], false);
    // Truncated, unknown version, wrong byte order: exit 2 with a message, never a panic.
    for (name, needle) in [
        ("truncated", "truncated"),
        ("unknown-version", "unknown pg_control version"),
        ("wrong-endian", "byte order"),
        ("empty", "truncated"),
    ] {
        std::fs::copy(testdata.join("malformed").join(name), d.path().join("global/pg_control")).unwrap();
        let out = pgdrill(&["inspect", d.path().to_str().unwrap()]);
        assert_eq!(code(&out), 2, "{name}");
        assert!(stderr(&out).contains(needle), "{name}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{name}");
    }
    // A garbage backup_label next to a good pg_control.
    std::fs::copy(testdata.join("pg15/pg_control"), d.path().join("global/pg_control")).unwrap();
    std::fs::write(d.path().join("backup_label"), "START WAL LOCATION: nonsense\n").unwrap();
    let out = pgdrill(&["inspect", d.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("backup_label"), "{}", stderr(&out));
}

#[test]
fn the_ground_standby_streams_and_replays() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE probe AS SELECT 42 AS v").unwrap();
    g.wait_standby_caught_up(std::time::Duration::from_secs(30)).unwrap();
    let mut s = g.standby().unwrap().client().unwrap();
    let rec: bool = s.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(rec);
    let v: i32 = s.query_one("SELECT v FROM probe", &[]).unwrap().get(0);
    assert_eq!(v, 42);
    let log = std::fs::read_to_string(&g.standby().unwrap().log).unwrap();
    assert!(log.contains("started streaming WAL") || log.contains("restored log file"), "{log}");
    let label_from = std::fs::read_to_string(g.standby().unwrap().pgdata.join("backup_label.old")).unwrap();
    assert!(label_from.contains("BACKUP FROM: "), "{label_from}");
}
