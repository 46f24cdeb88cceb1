//! The human form of `verify`: what was checked, a table of findings, and
//! a one-line verdict.

use super::{bytes, kv_table, opt, section, table, Render};
use crate::datadir::DirKind;
use crate::verify::{Finding, ManifestStatus, VerifyReport};

impl Render for VerifyReport {
    fn human(&self) -> String {
        let mut out = String::new();
        let kind = match (self.kind, self.backup_from.as_deref()) {
            (DirKind::DataDirectory, _) => "data directory".to_string(),
            (DirKind::LabelBackup, Some(from)) if !from.is_empty() => format!("backup (label method) from a {from}"),
            (DirKind::LabelBackup, _) => "backup (label method)".to_string(),
            (DirKind::LegacyBackup, _) => "backup (legacy method)".to_string(),
        };
        out.push_str(&format!("{}: {kind}, PostgreSQL {}\n\n", self.path.display(), self.pg_major));

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
        match self.manifest_status {
            ManifestStatus::Applied => {}
            ManifestStatus::None => rows.push(("manifest", "none".into())),
            ManifestStatus::Missing => rows.push(("manifest", "MISSING".into())),
            ManifestStatus::MissingAllowed => rows.push(("manifest", "none (--allow-missing-manifest)".into())),
            ManifestStatus::Invalid => rows.push(("manifest", "INVALID, not applied".into())),
            ManifestStatus::Stale => rows.push(("manifest", "stale, not applied".into())),
        }
        if let Some(m) = self.manifest.as_ref().filter(|_| self.manifest_status == ManifestStatus::Applied) {
            rows.push((
                "manifest",
                format!(
                    "version {}, {} files, {}, checksum {}",
                    m.version,
                    m.files,
                    if m.checksum_algorithms.is_empty() {
                        "no checksums".into()
                    } else {
                        m.checksum_algorithms.join("/")
                    },
                    if m.manifest_checksum_ok { "ok" } else { "BAD" }
                ),
            ));
        }
        let w = &self.wal;
        match &w.skipped {
            Some(why) => rows.push(("WAL", format!("not checked: {why}"))),
            None => {
                let timelines = if w.timelines.len() > 1 {
                    w.timelines.iter().map(|t| t.tli.to_string()).collect::<Vec<_>>().join(" -> ")
                } else {
                    opt(&w.start_timeline)
                };
                rows.push(("WAL start", opt(&w.start)));
                rows.push(("WAL end", opt(&w.end)));
                rows.push(("WAL reached", opt(&w.reached)));
                rows.push(("WAL timelines", timelines));
                rows.push((
                    "WAL segments",
                    format!(
                        "{} ({} .. {}), {} pages, {} records",
                        c.segments,
                        opt(&w.first_segment),
                        opt(&w.last_segment),
                        c.wal_pages,
                        c.wal_records
                    ),
                ));
            }
        }
        out.push_str(&section("checked", &kv_table(&rows)));

        if !self.findings.is_empty() {
            out.push_str(&section("findings", &findings_table(&self.findings)));
        }

        let warn = match self.warnings {
            0 => String::new(),
            1 => ", 1 warning".to_string(),
            n => format!(", {n} warnings"),
        };
        if self.findings_omitted > 0 {
            out.push_str(&format!("({} more findings are counted but not listed)\n", self.findings_omitted));
        }
        if self.ok {
            out.push_str(&format!("OK: no errors found{warn} ({:.1} s)\n", self.seconds));
        } else {
            let errs = if self.errors == 1 { "1 error".to_string() } else { format!("{} errors", self.errors) };
            out.push_str(&format!("FAILED: {errs}{warn} ({:.1} s)\n", self.seconds));
        }
        out
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
