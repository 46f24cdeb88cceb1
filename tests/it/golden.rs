//! Golden files: the real pg_control, backup_label, tablespace_map and WAL
//! samples of every major in `testdata/` (made by `just testdata` from real
//! clusters) decode, and agree with what their servers reported.

use std::path::PathBuf;

use crate::common::compare::control_mismatches;
use pgdrill::pg::control::ControlFile;
use serde_json::Value;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Every real sample decodes, and agrees with what its server reported.
#[test]
fn real_samples_agree_with_their_servers() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(testdata().join("control")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name == "malformed" {
            continue;
        }
        let bytes = std::fs::read(dir.join("pg_control")).unwrap();
        let server: Value = serde_json::from_slice(&std::fs::read(dir.join("server.json")).unwrap()).unwrap();
        let control = ControlFile::parse(&bytes).unwrap();
        assert!(control.crc_ok, "{name}");
        assert!(control.sanity_problems().is_empty(), "{name}: {:?}", control.sanity_problems());
        assert_eq!(Some(u64::from(control.pg_major)), server["major"].as_u64(), "{name}");
        let ours = serde_json::to_value(&control).unwrap();
        let diff = control_mismatches(&ours, &server);
        assert!(diff.is_empty(), "{name}: {diff:#?}");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen.contains(&"pg16-seg64".to_string()));
}

#[test]
fn the_comparison_notices_differences() {
    let dir = testdata().join("control/pg15");
    let bytes = std::fs::read(dir.join("pg_control")).unwrap();
    let server: Value = serde_json::from_slice(&std::fs::read(dir.join("server.json")).unwrap()).unwrap();
    let mut ours = serde_json::to_value(ControlFile::parse(&bytes).unwrap()).unwrap();
    ours["next_oid"] = Value::from(1);
    ours["redo_lsn"] = Value::from("0/1");
    let diff = control_mismatches(&ours, &server);
    assert_eq!(diff.len(), 3, "{diff:?}"); // next_oid, redo_lsn, and the derived redo file
}

#[test]
fn malformed_samples_are_errors() {
    let dir = testdata().join("control/malformed");
    for (name, ok) in [
        ("truncated", false),
        ("empty", false),
        ("unknown-version", false),
        ("wrong-endian", false),
        ("flipped-byte", true),
    ] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        match ControlFile::parse(&bytes) {
            Ok(c) => {
                assert!(ok, "{name} should not parse");
                assert!(!c.crc_ok, "{name} must fail the CRC");
            }
            Err(e) => assert!(!ok, "{name}: {e}"),
        }
    }
}

#[test]
fn real_labels_and_wal_heads_decode() {
    use pgdrill::pg::label::{parse_tablespace_map, BackupFrom, BackupLabel};
    use pgdrill::pg::version;
    use pgdrill::pg::wal::PageHeader;
    for v in version::VERSIONS {
        let major = v.major;
        let dir = testdata().join(format!("label/pg{major}"));
        let text = std::fs::read_to_string(dir.join("backup_label")).unwrap();
        let (label, f) = BackupLabel::parse(&text).unwrap();
        assert_eq!(label.render(), text);
        assert_eq!(f.backup_from, Some(BackupFrom::Primary));
        assert!(text.contains(&format!("BACKUP FROM: {}\n", v.label_from_primary)), "{major}");
        assert_eq!(f.start_timeline.is_some(), v.label_has_start_timeline, "{major}");
        let map = std::fs::read_to_string(dir.join("tablespace_map")).unwrap();
        let entries = parse_tablespace_map(&map, v.tablespace_map_escapes).unwrap();
        assert_eq!(entries.len(), 1);

        let wal = testdata().join(format!("wal/pg{major}"));
        let info: Value = serde_json::from_slice(&std::fs::read(wal.join("info.json")).unwrap()).unwrap();
        let seg = info["segment"].as_str().unwrap();
        assert_eq!(seg, f.start_wal_file);
        let head = std::fs::read(wal.join(format!("{seg}.head"))).unwrap();
        let h = PageHeader::parse(&head).unwrap();
        assert_eq!(h.magic, v.wal_page_magic, "{major}");
        assert_eq!(version::from_wal_magic(h.magic).unwrap().major, major);
        let long = h.long.unwrap();
        assert_eq!(long.system_identifier.to_string(), info["system_identifier"].as_str().unwrap());
        assert_eq!(u64::from(long.seg_size), info["wal_segment_size"].as_u64().unwrap());
        // The following pages are short headers at the right addresses.
        for p in 1..head.len() / 8192 {
            let h2 = PageHeader::parse(&head[p * 8192..]).unwrap();
            assert!(h2.long.is_none());
            assert_eq!(h2.page_addr.0, h.page_addr.0 + (p as u64) * 8192);
        }
    }
}
