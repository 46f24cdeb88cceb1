//! Compare pgdrill's decoding of pg_control with the server's own view
//! (test support: the golden tests and the live inspect tests use it).
//!
//! The server's view is the JSON produced by [`super::server_control_view`]
//! (and stored beside each sample in `testdata/control/*/server.json`): the
//! rows of `pg_control_system()`, `pg_control_checkpoint()`,
//! `pg_control_init()` and `pg_control_recovery()`, plus epoch seconds of the
//! two timestamps.

use serde_json::Value;

use pgdrill::pg::wal::SegmentName;
use pgdrill::pg::{Lsn, TimelineId, WalSegSize};

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
