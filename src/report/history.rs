//! `pgdrill history`: the last drills as a table, with the recovery time's
//! change against the median of the drills before each.

use super::{bytes, section, table, Render};
use crate::drill::history::{HistoryReport, Row};

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |s| format!("{s:.1}"))
}

/// A date-time in UTC, short enough for the table: `01-31 02:17` (the
/// title names the year span).
fn when(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%m-%d %H:%M").to_string(),
        Err(_) => rfc3339.chars().take(16).collect(),
    }
}

fn year(rfc3339: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(rfc3339).ok().map(|t| t.with_timezone(&chrono::Utc).format("%Y").to_string())
}

fn change(r: &Row) -> String {
    match r.change_pct {
        Some(c) => format!("{c:+.0}%"),
        None => "-".into(),
    }
}

/// `pass`, `SLOW` (a regression) or `FAIL step`.
fn result(r: &Row) -> String {
    match (r.record.ok, r.regression) {
        (true, false) => "pass".into(),
        (true, true) => "SLOW".into(),
        (false, _) => format!("FAIL {}", r.record.failed_step.as_deref().unwrap_or("?")),
    }
}

/// Step times as `backup/verify/copy/replay`, whole seconds.
fn steps(rec: &crate::drill::history::Record) -> String {
    let s = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    let ran = rec.step_secs("gate").is_some();
    format!(
        "{}/{}/{}/{}",
        s(rec.step_secs("backup")),
        s(rec.step_secs("verify")),
        s(rec.step_secs("restore").map(|_| rec.rto.copy)),
        s(ran.then_some(rec.rto.replay))
    )
}

/// Bytes, short: `953.7M`.
fn short_bytes(n: u64) -> String {
    let b = bytes(n);
    match b.split_once(' ') {
        Some((v, unit)) => format!("{v}{}", &unit[..1]),
        None => b,
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
                    steps(rec),
                    secs(ran.then_some(rec.rto.recovery)),
                    rec.backup_bytes.map_or("-".into(), short_bytes),
                    rec.replay_rate.map_or("-".into(), |r| short_bytes(r as u64)),
                    change(r),
                ]
            })
            .collect();
        let years: std::collections::BTreeSet<String> =
            self.drills.iter().filter_map(|r| year(&r.record.finished_at)).collect();
        let years = years.into_iter().collect::<Vec<_>>().join("-");
        let of = match &self.cluster {
            Some(c) => format!(" of {c}"),
            None => String::new(),
        };
        let title = format!("the last {} drills{of} ({} recorded), UTC {years}", self.drills.len(), self.total);
        let mut out =
            section(&title, &table(&["finished", "result", "steps", "RTO", "size", "replay/s", "change"], &rows));
        let clusters: std::collections::BTreeSet<&str> =
            self.drills.iter().map(|r| r.record.cluster.as_str()).collect();
        if clusters.len() > 1 {
            out.push_str(&format!(
                "Note: drills of {} clusters: {}.\nEach is compared with its own cluster's; --cluster NAME shows one.\n",
                clusters.len(),
                clusters.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        out.push_str("Seconds. steps: backup/verify/copy/replay. RTO: copy + replay + open.\n");
        out.push_str(&format!(
            "change: RTO against the median of up to {} passing drills before it.\n\
             SLOW: more than {:.0}% over that median.\n",
            self.baseline, self.threshold_pct
        ));
        let newest = self.drills.last().map(|r| (r.regression, r.change_pct));
        out.push_str(&match newest {
            Some((true, Some(c))) => format!(
                "REGRESSION: the newest drill's RTO is {c:+.0}% against the median (limit {:.0}%).\n",
                self.threshold_pct
            ),
            _ => format!("No regression past {:.0}% in the newest drill.\n", self.threshold_pct),
        });
        out
    }
}
