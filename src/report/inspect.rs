use super::{bytes, kv_table, opt, section, Render};
use crate::datadir::DirKind;
use crate::inspect::InspectReport;

impl Render for InspectReport {
    fn human(&self) -> String {
        let mut out = self.title();
        out.push_str(&section("pg_control", &kv_table(&self.control_rows())));
        if let Some(l) = &self.label {
            out.push_str(&section("backup_label", &kv_table(&label_rows(l))));
        }
        out.push_str(&section("backup", &kv_table(&self.backup_rows())));
        if let Some(m) = &self.manifest {
            out.push_str(&section("backup_manifest", &kv_table(&manifest_rows(m))));
        }
        out
    }
}

impl InspectReport {
    /// What the directory is, and a warning if it is an interrupted backup.
    fn title(&self) -> String {
        let mut out = String::new();
        let kind = match self.kind {
            DirKind::DataDirectory => "data directory",
            DirKind::LabelBackup => "backup (label method)",
            DirKind::LegacyBackup => "backup (legacy method, no backup_label)",
        };
        let format = match self.format {
            crate::source::BackupFormat::Plain => String::new(),
            crate::source::BackupFormat::Tar => format!(" in tar format ({})", self.compression.name()),
        };
        out.push_str(&format!("{}: {kind}{format}, PostgreSQL {}\n", self.path.display(), self.pg_major));
        if self.incomplete {
            out.push_str("WARNING: this backup is incomplete (it was interrupted while being written)\n");
        }
        out.push('\n');
        out
    }

    /// Every field of pg_control, and whether its CRC holds.
    fn control_rows(&self) -> Vec<(&'static str, String)> {
        let c = &self.control;
        let crc = if c.crc_ok {
            "ok".to_string()
        } else {
            format!("BAD (stored {:08X}, computed {:08X})", c.crc_stored, c.crc_computed)
        };
        vec![
            ("pg_major", c.pg_major.to_string()),
            ("crc", crc),
            ("file size", self.control_file_size.to_string()),
            ("system_identifier", c.system_identifier.to_string()),
            ("pg_control_version", c.pg_control_version.to_string()),
            ("catalog_version", c.catalog_version.to_string()),
            ("state", c.state.as_text().to_string()),
            ("checkpoint_lsn", c.checkpoint_lsn.to_string()),
            ("redo_lsn", c.redo_lsn.to_string()),
            ("timeline", c.timeline.to_string()),
            ("prev_timeline", c.prev_timeline.to_string()),
            ("full_page_writes", c.full_page_writes.to_string()),
            ("next_xid", c.next_xid.clone()),
            ("min_recovery_lsn", c.min_recovery_lsn.to_string()),
            ("min_recovery_timeline", c.min_recovery_timeline.to_string()),
            ("backup_start_lsn", c.backup_start_lsn.to_string()),
            ("backup_end_lsn", c.backup_end_lsn.to_string()),
            ("backup_end_required", c.backup_end_required.to_string()),
            ("wal_level", c.wal_level.to_string()),
            ("wal_segment_size", bytes(u64::from(c.wal_segment_size))),
            ("block_size", c.block_size.to_string()),
            ("data_checksum_version", c.data_checksum_version.to_string()),
        ]
    }

    /// The end point and what it was derived from, the WAL needed, the
    /// tablespaces.
    fn backup_rows(&self) -> Vec<(&'static str, String)> {
        let mut rows: Vec<(&str, String)> = vec![
            ("method", self.backup_method.unwrap_or("-").to_string()),
            ("end_location", opt(&self.end_location)),
            ("end_lsn", opt(&self.end_lsn)),
        ];
        if let Some(w) = &self.wal_needed {
            rows.push(("WAL timeline", w.timeline.to_string()));
            rows.push(("WAL start segment", w.start_segment.clone()));
            rows.push(("WAL end segment", opt(&w.end_segment)));
        }
        if let Some(map) = &self.tablespace_map {
            for e in map {
                rows.push(("tablespace", format!("{} -> {}", e.oid, e.path)));
            }
        }
        rows
    }
}

fn label_rows(l: &crate::pg::label::LabelFields) -> Vec<(&'static str, String)> {
    let mut rows: Vec<(&str, String)> = vec![
        ("START WAL LOCATION", format!("{} (file {})", l.start_wal_location, l.start_wal_file)),
        ("CHECKPOINT LOCATION", l.checkpoint_location.to_string()),
        ("BACKUP METHOD", opt(&l.backup_method)),
        ("BACKUP FROM", l.backup_from.as_ref().map_or("-".into(), |_| crate::datadir::backup_from_text(l).to_string())),
        ("START TIME", opt(&l.start_time)),
        ("LABEL", opt(&l.label)),
        ("START TIMELINE", opt(&l.start_timeline)),
    ];
    for u in &l.unknown_lines {
        rows.push(("(unknown line)", u.clone()));
    }
    rows
}

fn manifest_rows(m: &crate::datadir::ManifestSummary) -> Vec<(&'static str, String)> {
    let mut rows: Vec<(&str, String)> = vec![
        ("version", m.version.to_string()),
        ("files", m.files.to_string()),
        ("total size", bytes(m.total_bytes)),
        ("checksums", if m.checksum_algorithms.is_empty() { "none".into() } else { m.checksum_algorithms.join(", ") }),
        ("manifest checksum", if m.manifest_checksum_ok { "ok" } else { "BAD" }.to_string()),
    ];
    for r in &m.wal_ranges {
        rows.push(("WAL range", format!("timeline {}: {} .. {}", r.timeline, r.start, r.end)));
    }
    rows
}
