//! `pgdrill history`: the last drills as a table, with the recovery time's
//! change against the median of the drills before each.

use super::{bytes, section, table, Render};
use crate::drill::history::{HistoryReport, Row};

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |s| format!("{s:.1}"))
}

/// A date-time without the seconds' noise: `2025-01-31 02:17`.
fn when(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => rfc3339.chars().take(16).collect(),
    }
}

fn change(r: &Row) -> String {
    match r.change_pct {
        Some(c) if r.regression => format!("{c:+.0}% REGRESSION"),
        Some(c) => format!("{c:+.0}%"),
        None if !r.record.ok => "-".into(),
        None => "(no baseline)".into(),
    }
}

fn result(r: &Row) -> String {
    if r.record.ok {
        "pass".into()
    } else {
        format!("FAIL {} (exit {})", r.record.failed_step.as_deref().unwrap_or("?"), r.record.exit_code)
    }
}

impl Render for HistoryReport {
    fn human(&self) -> String {
        if self.drills.is_empty() {
            return format!("{}: no drills recorded\n", self.file.display());
        }
        let rows: Vec<Vec<String>> = self
            .drills
            .iter()
            .map(|r| {
                let rec = &r.record;
                let ran = rec.step_secs("gate").is_some();
                vec![
                    when(&rec.finished_at),
                    result(r),
                    secs(rec.step_secs("backup")),
                    secs(rec.step_secs("verify")),
                    secs(ran.then_some(rec.rto.copy)),
                    secs(ran.then_some(rec.rto.replay)),
                    secs(ran.then_some(rec.rto.recovery)),
                    rec.backup_bytes.map_or("-".into(), bytes),
                    rec.replay_rate.map_or("-".into(), |r| format!("{}/s", bytes(r as u64))),
                    change(r),
                ]
            })
            .collect();
        let title = match &self.cluster {
            Some(c) => format!("drills of {c} ({} recorded in {})", self.total, self.file.display()),
            None => format!("drills ({} recorded in {})", self.total, self.file.display()),
        };
        let mut out = section(
            &title,
            &table(
                &[
                    "finished (UTC)",
                    "result",
                    "backup",
                    "verify",
                    "copy",
                    "replay",
                    "RTO",
                    "size",
                    "replay rate",
                    "RTO vs median",
                ],
                &rows,
            ),
        );
        let clusters: std::collections::BTreeSet<&str> =
            self.drills.iter().map(|r| r.record.cluster.as_str()).collect();
        if clusters.len() > 1 {
            out.push_str(&format!(
                "Note: these drills are of {} clusters ({}); pass --cluster NAME to compare one.\n",
                clusters.len(),
                clusters.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        out.push_str(&format!(
            "Times in seconds; RTO = copy + replay + open; each passing drill is compared with the median of up to {} passing drills before it.\n",
            self.baseline
        ));
        let newest = self.drills.last().map(|r| (r.regression, r.change_pct));
        out.push_str(&match newest {
            Some((true, Some(c))) => format!(
                "REGRESSION: the newest drill's recovery time is {c:+.0}% against the median (threshold {:.0}%).\n",
                self.threshold_pct
            ),
            _ => format!("No regression past {:.0}% in the newest drill.\n", self.threshold_pct),
        });
        out
    }
}
