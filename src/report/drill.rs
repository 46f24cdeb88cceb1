use super::{bytes, kv_table, opt, section, table, Render};
use crate::drill::checks::CheckStatus;
#[cfg(feature = "demo")]
use crate::drill::demo::DemoReport;
use crate::drill::walkeep::WalKeepReport;
use crate::drill::{DrillReport, StepStatus};

fn status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pass => "pass",
        StepStatus::Fail => "FAIL",
        StepStatus::Skip => "skip",
    }
}

/// The plain-language verdict on consistency.
pub fn verdict(d: &DrillReport) -> String {
    match (&d.gate, d.end_lsn) {
        (Some(g), Some(end)) if !g.opened => format!(
            "The restore reached consistency at the end LSN {end}, but checks failed: access was NOT opened; the copy is stopped and stays locked."
        ),
        (Some(g), Some(end)) => {
            let mut s = format!(
                "The restore reached consistency at the end LSN {end}; access opened at {}.",
                opt(&g.opened_at_lsn)
            );
            if let Some(own) = g.server_consistent_lsn.filter(|c| *c < end) {
                s.push_str(&format!(
                    " PostgreSQL alone would have admitted clients at {own}; the gate kept them out until the end."
                ));
            }
            s
        }
        (Some(g), None) => {
            format!("The restore reached PostgreSQL's own end of backup; access opened at {}.", opt(&g.opened_at_lsn))
        }
        (None, _) => no_gate_verdict(d),
    }
}

/// The verdict when the gate did not finish: say what actually happened.
fn no_gate_verdict(d: &DrillReport) -> String {
    let Some(failed) = d.failed_step() else {
        return "No restore ran.".to_string();
    };
    let why = failed.causes.first().cloned().unwrap_or_else(|| failed.detail.clone());
    match failed.name {
        "gate" => format!(
            "The restored copy did NOT reach consistency ({why}): no client was let in; the copy is stopped and stays locked."
        ),
        "restore" => format!("The restore failed before the server started ({why}): no client was let in."),
        name => format!("No restore ran: the drill stopped at the {name} step ({why})."),
    }
}

impl Render for DrillReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .steps
            .iter()
            .map(|s| {
                vec![s.name.to_string(), status(s.status).to_string(), format!("{:.2} s", s.seconds), s.detail.clone()]
            })
            .collect();
        let mut out = section("drill", &table(&["step", "status", "time", "detail"], &rows));
        let causes: Vec<Vec<String>> = self
            .steps
            .iter()
            // verify's causes are its findings, shown in full below.
            .filter(|s| s.name != "verify" || self.findings.is_empty())
            .flat_map(|s| s.causes.iter().map(move |c| vec![s.name.to_string(), c.clone()]))
            .collect();
        if !causes.is_empty() {
            out.push_str(&section("why", &table(&["step", "cause"], &causes)));
        }
        let r = &self.rto;
        let rto = vec![
            ("backup", format!("{:.2} s", r.backup)),
            ("verify", format!("{:.2} s", r.verify)),
            ("copy", format!("{:.2} s", r.copy)),
            ("replay", format!("{:.2} s", r.replay)),
            ("open", format!("{:.2} s", r.open)),
            ("checks", format!("{:.2} s", r.checks)),
            ("total", format!("{:.2} s", r.total)),
            ("recovery (copy + replay + open)", format!("{:.2} s", r.recovery)),
            ("end LSN", opt(&self.end_lsn)),
            ("access opened at", opt(&self.opened_at_lsn)),
            ("PostgreSQL's own consistency point", opt(&self.server_consistent_lsn)),
        ];
        let mut rto = rto;
        if let Some(t) = self.rto_target {
            rto.push(("RTO target", format!("{t:.0} s")));
        }
        out.push_str(&section("recovery time", &kv_table(&rto)));
        if !self.checks.is_empty() {
            let rows: Vec<Vec<String>> = self
                .checks
                .iter()
                .map(|c| {
                    let st = match c.status {
                        CheckStatus::Pass => "pass",
                        CheckStatus::Fail => "FAIL",
                        CheckStatus::Skip => "skip",
                    };
                    let mut detail = c.detail.clone();
                    if c.status == CheckStatus::Fail {
                        if let Some(sql) = &c.sql {
                            detail.push_str(&format!(" [statement: {sql}]"));
                        }
                    }
                    vec![c.name.clone(), st.to_string(), detail]
                })
                .collect();
            out.push_str(&section("checks", &table(&["check", "status", "detail"], &rows)));
        }
        if !self.findings.is_empty() {
            out.push_str(&section("verify findings", &super::verify::findings_table(&self.findings)));
        }
        out.push_str(&verdict(self));
        out.push('\n');
        out.push_str(if self.ok { "Drill passed.\n" } else { "Drill FAILED.\n" });
        out
    }
}

#[cfg(feature = "demo")]
impl Render for DemoReport {
    fn human(&self) -> String {
        let mut out =
            format!("{}\n{} transfers ran on the primary during the drill.\n\n", self.postgres, self.transfers);
        out.push_str(&self.drill.human());
        if self.kept {
            out.push_str(&format!("Kept everything in {}\n", self.dir.display()));
        }
        out
    }
}

impl Render for WalKeepReport {
    fn human(&self) -> String {
        let mut rows = vec![
            ("backup", self.backup.display().to_string()),
            ("start", format!("{} on timeline {}", self.start_lsn, self.timeline)),
            ("oldest segment needed", self.oldest_needed.clone()),
            ("timelines considered", self.timelines.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")),
        ];
        if let Some(a) = &self.archive {
            rows.push(("archive", a.display().to_string()));
            rows.push(("not needed", format!("{} files, {}", self.removable.len(), bytes(self.removable_bytes))));
        }
        let mut out = section("wal-keep", &kv_table(&rows));
        if !self.removable.is_empty() {
            let files: Vec<Vec<String>> = self.removable.iter().map(|r| vec![r.name.clone(), bytes(r.bytes)]).collect();
            out.push_str(&section(
                if self.removed { "removed" } else { "would remove (dry run; --remove deletes)" },
                &table(&["file", "size"], &files),
            ));
        }
        out
    }
}
