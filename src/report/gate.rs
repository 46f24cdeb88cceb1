use super::{bytes, kv_table, opt, section, Render};
use crate::gate::GateReport;
use crate::restore::RestoreReport;

fn gate_rows(g: &GateReport) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("data directory", g.pgdata.display().to_string()),
        ("end target", format!("{} (from {})", opt(&g.end_lsn), g.end_source)),
        ("PostgreSQL's own consistency point", opt(&g.server_consistent_lsn)),
        ("access opened at", opt(&g.opened_at_lsn)),
        ("then", g.then.as_str().to_string()),
        ("mode", if g.read_write { "read-write" } else { "read-only" }.to_string()),
        ("connect", format!("host={} port={}", g.socket_dir.display(), g.port)),
        ("replay", format!("{:.1} s", g.timings.replay_secs)),
        ("open", format!("{:.2} s", g.timings.open_secs)),
        ("server log", g.server_log.display().to_string()),
    ];
    if let Some(t) = g.timeline {
        rows.push(("timeline", t.to_string()));
    }
    if g.resumed {
        rows.push(("resumed", "yes: an earlier gate on this directory did not finish".into()));
    }
    for s in &g.stalls {
        rows.push(("stall", s.clone()));
    }
    rows
}

fn gate_summary(g: &GateReport) -> String {
    match (g.end_lsn, g.server_consistent_lsn) {
        (Some(e), Some(c)) if c < e => format!(
            "The restore reached consistency at the end LSN {e}. PostgreSQL alone would have let clients in at {c}; the gate kept them out until {}.\n",
            opt(&g.opened_at_lsn)
        ),
        (Some(e), _) => format!("The restore reached consistency at the end LSN {e}; access opened at {}.\n", opt(&g.opened_at_lsn)),
        (None, _) => "The restore reached PostgreSQL's own end of backup; access is open.\n".to_string(),
    }
}

impl Render for GateReport {
    fn human(&self) -> String {
        let mut out = section("gate open", &kv_table(&gate_rows(self)));
        out.push_str(&gate_summary(self));
        out
    }
}

impl Render for RestoreReport {
    fn human(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("backup", self.backup.display().to_string()),
            ("target", self.target.display().to_string()),
            ("PostgreSQL", self.pg_major.to_string()),
            ("method", self.method.to_string()),
            ("end target", opt(&self.end_lsn)),
            (
                "files",
                format!(
                    "{} ({}), {} checked against the manifest",
                    self.files,
                    bytes(self.bytes),
                    self.manifest_checked
                ),
            ),
            ("copy", format!("{:.1} s", self.copy_secs)),
            ("OS user", self.os_user.clone()),
            ("port", opt(&self.port)),
            ("restore_command", self.restore_command.clone().unwrap_or_else(|| "(none)".into())),
            ("streams from", self.streaming_from.clone().unwrap_or_else(|| "(nothing: sandbox)".into())),
        ];
        for t in &self.tablespaces {
            rows.push(("tablespace", format!("{} -> {}", t.oid, t.location.display())));
        }
        for n in &self.config_notes {
            rows.push(("config", n.clone()));
        }
        let mut out = section("restore", &kv_table(&rows));
        match &self.gate {
            Some(g) => {
                out.push_str(&section("gate open", &kv_table(&gate_rows(g))));
                out.push_str(&gate_summary(g));
            }
            None => out.push_str(&format!(
                "Not started (--no-start). The copy is locked; `pgdrill gate --pgdata {}` starts it and opens access at the end target.\n",
                self.target.display()
            )),
        }
        out
    }
}
