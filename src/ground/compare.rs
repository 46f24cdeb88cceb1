//! Compare pgdrill's decoding of pg_control with the server's own view.
//!
//! The server's view is the JSON produced by [`super::server_control_view`]
//! (and stored beside each sample in `testdata/control/*/server.json`): the
//! rows of `pg_control_system()`, `pg_control_checkpoint()`,
//! `pg_control_init()` and `pg_control_recovery()`, plus epoch seconds of the
//! two timestamps.

use serde_json::Value;

use crate::pg::wal::SegmentName;
use crate::pg::{Lsn, TimelineId, WalSegSize};

fn norm(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Every field where `control` (the `control` object of `inspect --json`)
/// disagrees with `server`. Empty when they agree.
pub fn control_mismatches(control: &Value, server: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |ours: &str, group: &str, theirs: &str| {
        let a = control.get(ours);
        let b = server.get(group).and_then(|g| g.get(theirs));
        match (a, b) {
            (Some(a), Some(b)) if norm(a) == norm(b) => {}
            (None, None) => {}
            _ => out.push(format!(
                "{ours}: pgdrill says {}, {group}.{theirs} says {}",
                a.map_or("(absent)".into(), norm),
                b.map_or("(absent)".into(), norm)
            )),
        }
    };
    cmp("pg_control_version", "pg_control_system", "pg_control_version");
    cmp("catalog_version", "pg_control_system", "catalog_version_no");
    cmp("system_identifier", "pg_control_system", "system_identifier");
    cmp("time", "unix_times", "pg_control_last_modified");
    cmp("checkpoint_lsn", "pg_control_checkpoint", "checkpoint_lsn");
    cmp("prev_checkpoint_lsn", "pg_control_checkpoint", "prior_lsn");
    cmp("redo_lsn", "pg_control_checkpoint", "redo_lsn");
    cmp("timeline", "pg_control_checkpoint", "timeline_id");
    cmp("prev_timeline", "pg_control_checkpoint", "prev_timeline_id");
    cmp("full_page_writes", "pg_control_checkpoint", "full_page_writes");
    cmp("next_xid", "pg_control_checkpoint", "next_xid");
    cmp("next_oid", "pg_control_checkpoint", "next_oid");
    cmp("next_multixact_id", "pg_control_checkpoint", "next_multixact_id");
    cmp("next_multi_offset", "pg_control_checkpoint", "next_multi_offset");
    cmp("oldest_xid", "pg_control_checkpoint", "oldest_xid");
    cmp("oldest_xid_dbid", "pg_control_checkpoint", "oldest_xid_dbid");
    cmp("oldest_active_xid", "pg_control_checkpoint", "oldest_active_xid");
    cmp("oldest_multi_xid", "pg_control_checkpoint", "oldest_multi_xid");
    cmp("oldest_multi_dbid", "pg_control_checkpoint", "oldest_multi_dbid");
    cmp("oldest_commit_ts_xid", "pg_control_checkpoint", "oldest_commit_ts_xid");
    cmp("newest_commit_ts_xid", "pg_control_checkpoint", "newest_commit_ts_xid");
    cmp("checkpoint_time", "unix_times", "checkpoint_time");
    cmp("max_data_alignment", "pg_control_init", "max_data_alignment");
    cmp("block_size", "pg_control_init", "database_block_size");
    cmp("blocks_per_segment", "pg_control_init", "blocks_per_segment");
    cmp("wal_block_size", "pg_control_init", "wal_block_size");
    cmp("wal_segment_size", "pg_control_init", "bytes_per_wal_segment");
    cmp("max_identifier_length", "pg_control_init", "max_identifier_length");
    cmp("max_index_columns", "pg_control_init", "max_index_columns");
    cmp("max_toast_chunk_size", "pg_control_init", "max_toast_chunk_size");
    cmp("large_object_chunk_size", "pg_control_init", "large_object_chunk_size");
    cmp("float4_pass_by_value", "pg_control_init", "float4_pass_by_value");
    cmp("float8_pass_by_value", "pg_control_init", "float8_pass_by_value");
    cmp("data_checksum_version", "pg_control_init", "data_page_checksum_version");
    cmp("default_char_signedness", "pg_control_init", "default_char_signedness");
    cmp("min_recovery_lsn", "pg_control_recovery", "min_recovery_end_lsn");
    cmp("min_recovery_timeline", "pg_control_recovery", "min_recovery_end_timeline");
    cmp("backup_start_lsn", "pg_control_recovery", "backup_start_lsn");
    cmp("backup_end_lsn", "pg_control_recovery", "backup_end_lsn");
    cmp("backup_end_required", "pg_control_recovery", "end_of_backup_record_required");
    // The server names the redo segment; derive ours from the decoded fields.
    let redo = control.get("redo_lsn").and_then(Value::as_str).and_then(|s| s.parse::<Lsn>().ok());
    let tli = control.get("timeline").and_then(Value::as_u64).map(|t| TimelineId(t as u32));
    let seg = control.get("wal_segment_size").and_then(Value::as_u64).and_then(|s| WalSegSize::new(s).ok());
    let theirs = server.get("pg_control_checkpoint").and_then(|c| c.get("redo_wal_file")).map(norm);
    if let (Some(redo), Some(tli), Some(seg), Some(theirs)) = (redo, tli, seg, theirs) {
        let ours = SegmentName::containing(tli, redo, seg).file_name(seg);
        if ours != theirs {
            out.push(format!("redo_wal_file: pgdrill says {ours}, server says {theirs}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::control::ControlFile;
    use std::path::PathBuf;

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
        use crate::pg::label::{parse_tablespace_map, BackupFrom, BackupLabel};
        use crate::pg::version;
        use crate::pg::wal::PageHeader;
        for major in 10..=18u32 {
            let v = version::by_major(major).unwrap();
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
}
