//! The human form of `verify`: what was checked, a table of findings, and
//! a one-line verdict.

use super::{bytes, kv_table, opt, section, table, Render};
use crate::datadir::DirKind;
use crate::verify::{Finding, ManifestStatus, VerifyReport};

impl Render for VerifyReport {
    fn human(&self) -> String {
        let mut out = format!("{}: {}, PostgreSQL {}\n\n", self.path.display(), self.what(), self.pg_major);
        let mut rows = self.file_rows();
        rows.extend(self.manifest_rows());
        rows.extend(self.wal_rows());
        out.push_str(&section("checked", &kv_table(&rows)));
        if !self.findings.is_empty() {
            out.push_str(&section("findings", &findings_table(&self.findings)));
        }
        if self.findings_omitted > 0 {
            out.push_str(&format!("({} more findings are counted but not listed)\n", self.findings_omitted));
        }
        out.push_str(&self.verdict());
        out
    }
}

impl VerifyReport {
    /// What was verified: a data directory, or a backup and its method.
    fn what(&self) -> String {
        match (self.kind, self.backup_from.as_deref()) {
            (DirKind::DataDirectory, _) => "data directory".to_string(),
            (DirKind::LabelBackup, Some(from)) if !from.is_empty() => format!("backup (label method) from a {from}"),
            (DirKind::LabelBackup, _) => "backup (label method)".to_string(),
            (DirKind::LegacyBackup, _) => "backup (legacy method)".to_string(),
        }
    }

    /// Files, checksums, relation pages and data checksums.
    fn file_rows(&self) -> Vec<(&'static str, String)> {
        let c = &self.checked;
        let mut rows: Vec<(&str, String)> = vec![
            ("files on disk", c.files.to_string()),
            ("files read", format!("{} ({})", c.files_read, bytes(c.bytes))),
            ("checksums compared", c.checksums.to_string()),
        ];
        match (&self.page_lsn.bound, &self.page_lsn.skipped) {
            (Some(b), _) => rows.push((
                "relation pages",
                format!(
                    "{} in {} files, LSNs <= {b} ({})",
                    c.relation_pages,
                    c.relation_files,
                    self.page_lsn.source.unwrap_or("-")
                ),
            )),
            (None, Some(why)) => rows.push(("relation pages", format!("not checked: {why}"))),
            (None, None) => {}
        }
        let pc = &self.page_checksums;
        match (&pc.skipped, &pc.torn_from) {
            (Some(why), _) => rows.push(("data checksums", format!("not checked: {why}"))),
            (None, Some(from)) => rows.push((
                "data checksums",
                format!("{} pages verified, {} at or after {from} left to replay", c.page_checksums, c.torn_pages),
            )),
            (None, None) => {}
        }
        rows
    }

    /// The manifest's status, and what it held when it was applied.
    fn manifest_rows(&self) -> Vec<(&'static str, String)> {
        let status = match self.manifest_status {
            ManifestStatus::Applied => None,
            ManifestStatus::None => Some("none"),
            ManifestStatus::Missing => Some("MISSING"),
            ManifestStatus::MissingAllowed => Some("none (--allow-missing-manifest)"),
            ManifestStatus::Invalid => Some("INVALID, not applied"),
            ManifestStatus::Stale => Some("stale, not applied"),
        };
        let mut rows: Vec<(&str, String)> = status.map(|s| ("manifest", s.to_string())).into_iter().collect();
        if let Some(m) = self.manifest.as_ref().filter(|_| self.manifest_status == ManifestStatus::Applied) {
            let algorithms =
                if m.checksum_algorithms.is_empty() { "no checksums".into() } else { m.checksum_algorithms.join("/") };
            let checksum = if m.manifest_checksum_ok { "ok" } else { "BAD" };
            rows.push((
                "manifest",
                format!("version {}, {} files, {algorithms}, checksum {checksum}", m.version, m.files),
            ));
        }
        rows
    }

    /// The WAL walk: its range, timelines and segments.
    fn wal_rows(&self) -> Vec<(&'static str, String)> {
        let (w, c) = (&self.wal, &self.checked);
        if let Some(why) = &w.skipped {
            return vec![("WAL", format!("not checked: {why}"))];
        }
        let timelines = if w.timelines.len() > 1 {
            w.timelines.iter().map(|t| t.tli.to_string()).collect::<Vec<_>>().join(" -> ")
        } else {
            opt(&w.start_timeline)
        };
        vec![
            ("WAL start", opt(&w.start)),
            ("WAL end", opt(&w.end)),
            ("WAL reached", opt(&w.reached)),
            ("WAL timelines", timelines),
            (
                "WAL segments",
                format!(
                    "{} ({} .. {}), {} pages, {} records",
                    c.segments,
                    opt(&w.first_segment),
                    opt(&w.last_segment),
                    c.wal_pages,
                    c.wal_records
                ),
            ),
        ]
    }

    /// The one-line verdict.
    fn verdict(&self) -> String {
        let warn = match self.warnings {
            0 => String::new(),
            1 => ", 1 warning".to_string(),
            n => format!(", {n} warnings"),
        };
        if self.ok {
            format!("OK: no errors found{warn} ({:.1} s)\n", self.seconds)
        } else {
            let errs = if self.errors == 1 { "1 error".to_string() } else { format!("{} errors", self.errors) };
            format!("FAILED: {errs}{warn} ({:.1} s)\n", self.seconds)
        }
    }
}

/// The table of verify findings (also in the drill's report).
pub fn findings_table(findings: &[Finding]) -> String {
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.severity.as_str().to_string(),
                f.kind.to_string(),
                f.path.clone().unwrap_or_else(|| "-".into()),
                opt(&f.lsn),
                f.message.clone(),
            ]
        })
        .collect();
    table(&["severity", "kind", "path", "lsn", "message"], &rows)
}
