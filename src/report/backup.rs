use super::{bytes, kv_table, section, table, Render};
use crate::backup::preflight::{PreflightReport, Status};
use crate::backup::session::Restartpoint;
use crate::backup::BackupReport;

impl Render for BackupReport {
    fn human(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("destination", self.dest.display().to_string()),
            ("method", format!("{:?}", self.method).to_lowercase()),
            (
                "format",
                if self.format == "tar" {
                    format!("tar ({}, {} on disk)", self.compression.name(), bytes(self.stored_bytes))
                } else {
                    "plain".to_string()
                },
            ),
            ("PostgreSQL", self.pg_major.to_string()),
            ("system identifier", self.system_identifier.clone()),
            ("backup from", self.backup_from.clone()),
            ("start", format!("{} on timeline {}", self.start_lsn, self.start_timeline)),
            ("end", format!("{} on timeline {}", self.end_lsn, self.end_timeline)),
            ("pg_control minRecoveryPoint", self.control_min_recovery_lsn.to_string()),
            ("files", format!("{} ({})", self.files, bytes(self.bytes))),
            ("vanished during copy", self.vanished_files.to_string()),
            ("manifest version", self.manifest_version.to_string()),
            ("duration", format!("{:.1} s", self.seconds)),
        ];
        if let Some(st) = &self.start {
            let how = match st.restartpoint {
                Restartpoint::Current => "the standby's last restartpoint was current".to_string(),
                Restartpoint::Spread => format!("waited {:.0} s for a spread restartpoint", st.seconds),
                Restartpoint::Immediate => format!("immediate restartpoint ({:.1} s)", st.seconds),
            };
            let retried = if st.conflicts_retried > 0 {
                format!("; {} recovery conflicts retried", st.conflicts_retried)
            } else {
                String::new()
            };
            rows.push(("backup start", format!("{how}; {} attempts{retried}", st.attempts)));
        }
        if !self.tablespaces.is_empty() {
            rows.push(("tablespaces", self.tablespaces.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")));
        }
        for r in &self.wal_ranges {
            rows.push(("WAL needed", format!("timeline {}: {} .. {}", r.timeline, r.start, r.end)));
        }
        if let Some(w) = &self.wal_switch {
            let what = if w.archived_before {
                "already archived".to_string()
            } else if w.archived {
                format!("archived after one WAL switch on the primary ({:.1} s)", w.waited_secs)
            } else {
                format!("NOT archived {:.0} s after a WAL switch on the primary", w.waited_secs)
            };
            rows.push(("end segment", format!("{}: {what}", w.end_segment)));
        }
        let title = if self.exit_code == 0 {
            "backup complete"
        } else {
            "backup written, but its end segment did not reach the archive (exit 4): a restore cannot reach the end"
        };
        section(title, &kv_table(&rows))
    }
}

impl Render for PreflightReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| {
                let status = match c.status {
                    Status::Pass => "pass",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                    Status::Skip => "skip",
                };
                vec![c.name.to_string(), status.to_string(), c.detail.clone(), c.hint.clone().unwrap_or_default()]
            })
            .collect();
        let mut out = format!("preflight of {}\n", self.standby);
        out.push_str(&table(&["check", "status", "detail", "hint"], &rows));
        out.push_str(if self.ok { "\n\nready for a backup\n" } else { "\n\nNOT ready: fix the failed checks\n" });
        out
    }
}
