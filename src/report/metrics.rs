//! The Prometheus text exposition format (version 0.0.4) of a drill, for
//! node_exporter's textfile collector. Every metric is a gauge labelled
//! `cluster`; docs/metrics.md lists them and an alert rule.

use std::cell::RefCell;

use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

use crate::drill::metrics::Snapshot;
use crate::drill::StepStatus;

/// Gauge families by name, registered on first use.
struct Gauges {
    registry: Registry,
    families: RefCell<Vec<(String, GaugeVec)>>,
}

impl Gauges {
    fn set(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> Result<(), prometheus::Error> {
        let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        let values: Vec<&str> = labels.iter().map(|(_, v)| *v).collect();
        let mut families = self.families.borrow_mut();
        let family = match families.iter().find(|(n, _)| n == name) {
            Some((_, f)) => f.clone(),
            None => {
                let f = GaugeVec::new(Opts::new(name, help), &names)?;
                self.registry.register(Box::new(f.clone()))?;
                families.push((name.to_string(), f.clone()));
                f
            }
        };
        family.get_metric_with_label_values(&values)?.set(value);
        Ok(())
    }
}

/// The metrics of one drill in the text format.
pub fn render(s: &Snapshot) -> Result<String, prometheus::Error> {
    let g = Gauges { registry: Registry::new(), families: RefCell::new(Vec::new()) };
    let c = [("cluster", s.cluster)];
    g.set("pgdrill_drill_success", "1 if the last drill passed, 0 if it failed.", &c, f64::from(u8::from(s.ok)))?;
    g.set("pgdrill_drill_exit_code", "Exit code of the last drill (docs/exit-codes.md).", &c, f64::from(s.exit_code))?;
    g.set(
        "pgdrill_drill_last_run_timestamp_seconds",
        "When the last drill finished, seconds since the epoch.",
        &c,
        s.finished_at,
    )?;
    if let Some(t) = s.last_success {
        g.set(
            crate::drill::metrics::LAST_SUCCESS,
            "When a drill last passed, seconds since the epoch (kept across failed drills).",
            &c,
            t,
        )?;
    }
    g.set("pgdrill_drill_duration_seconds", "Wall time of the last drill, all steps.", &c, s.duration)?;
    if let Some(t) = s.rto_target {
        g.set("pgdrill_drill_rto_target_seconds", "The --rto-target the recovery time is held to.", &c, t)?;
    }
    let Some(d) = s.report else { return encode(&g.registry) };
    for step in d.steps.iter().filter(|st| st.status != StepStatus::Skip) {
        let l = [("cluster", s.cluster), ("step", step.name)];
        g.set("pgdrill_drill_step_seconds", "Seconds each step of the last drill took.", &l, step.seconds)?;
        g.set(
            "pgdrill_drill_step_success",
            "1 if the step passed, 0 if it failed (skipped steps are absent).",
            &l,
            f64::from(u8::from(step.status == StepStatus::Pass)),
        )?;
    }
    let r = &d.rto;
    for (phase, v) in [
        ("backup", r.backup),
        ("verify", r.verify),
        ("copy", r.copy),
        ("replay", r.replay),
        ("open", r.open),
        ("checks", r.checks),
    ] {
        g.set(
            "pgdrill_drill_phase_seconds",
            "The recovery-time breakdown of the last drill, in seconds.",
            &[("cluster", s.cluster), ("phase", phase)],
            v,
        )?;
    }
    if d.gate.is_some() {
        g.set(
            "pgdrill_drill_rto_seconds",
            "Recovery time of the last drill: copy + replay + open, in seconds.",
            &c,
            r.recovery,
        )?;
    }
    if let Some(b) = &d.backup {
        g.set("pgdrill_drill_backup_bytes", "Bytes in the drill's backup.", &c, b.bytes as f64)?;
    }
    if let Some(w) = d.wal_bytes() {
        g.set("pgdrill_drill_wal_replay_bytes", "WAL from the backup's start to its end, in bytes.", &c, w as f64)?;
    }
    if let Some(rate) = d.replay_rate() {
        g.set("pgdrill_drill_replay_bytes_per_second", "WAL replay rate of the restored copy.", &c, rate)?;
    }
    if let (Some(end), Some(opened)) = (d.end_lsn, d.opened_at_lsn) {
        g.set(
            "pgdrill_drill_end_lsn_lag_bytes",
            "Bytes between the backup's end LSN and where access opened (0 when the copy opened at its end).",
            &c,
            opened.0.saturating_sub(end.0) as f64,
        )?;
    }
    if let (Some(end), Some(own)) = (d.end_lsn, d.server_consistent_lsn) {
        g.set(
            "pgdrill_drill_early_consistency_bytes",
            "Bytes by which PostgreSQL's own consistency point came before the backup's end (what the gate held back).",
            &c,
            end.0.saturating_sub(own.0) as f64,
        )?;
    }
    encode(&g.registry)
}

fn encode(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
#[path = "../../tests/it/common/prom.rs"]
mod prom;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::{DrillReport, Rto, Step};

    fn report(ok: bool) -> DrillReport {
        DrillReport {
            ok,
            exit_code: if ok { 0 } else { 1 },
            steps: vec![
                Step {
                    name: "backup",
                    status: StepStatus::Pass,
                    seconds: 1.5,
                    detail: String::new(),
                    exit_code: None,
                    causes: vec![],
                },
                Step {
                    name: "verify",
                    status: if ok { StepStatus::Pass } else { StepStatus::Fail },
                    seconds: 0.5,
                    detail: String::new(),
                    exit_code: None,
                    causes: vec![],
                },
                Step {
                    name: "restore",
                    status: StepStatus::Skip,
                    seconds: 0.0,
                    detail: String::new(),
                    exit_code: None,
                    causes: vec![],
                },
            ],
            rto: Rto {
                backup: 1.5,
                verify: 0.5,
                copy: 2.0,
                replay: 3.0,
                open: 0.25,
                checks: 0.0,
                total: 7.0,
                recovery: 5.25,
            },
            end_lsn: Some(crate::pg::Lsn(0x5000)),
            opened_at_lsn: Some(crate::pg::Lsn(0x5100)),
            server_consistent_lsn: Some(crate::pg::Lsn(0x4000)),
            findings: vec![],
            checks: vec![],
            backup: None,
            restore: None,
            gate: None,
            work: "/w".into(),
            kept: false,
            rto_target: Some(600.0),
            port: Some(15432),
            started_at: String::new(),
            finished_at: String::new(),
        }
    }

    #[test]
    fn the_textfile_parses_strictly() {
        let d = report(false);
        let s = Snapshot {
            cluster: "weird \"name\"\\with\nnewline",
            report: Some(&d),
            ok: false,
            exit_code: 1,
            finished_at: 1_700_000_000.0,
            last_success: Some(1_699_990_000.0),
            duration: 7.0,
            rto_target: Some(600.0),
        };
        let text = render(&s).unwrap();
        let samples = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let c = [("cluster", s.cluster)];
        assert_eq!(prom::get(&samples, "pgdrill_drill_success", &c), Some(0.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_last_success_timestamp_seconds", &c), Some(1_699_990_000.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_rto_target_seconds", &c), Some(600.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_step_success", &[("step", "verify")]), Some(0.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_step_seconds", &[("step", "backup")]), Some(1.5));
        // Skipped steps are absent, not zero.
        assert_eq!(prom::get(&samples, "pgdrill_drill_step_seconds", &[("step", "restore")]), None);
        assert_eq!(prom::get(&samples, "pgdrill_drill_phase_seconds", &[("phase", "replay")]), Some(3.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_end_lsn_lag_bytes", &c), Some(256.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_early_consistency_bytes", &c), Some(4096.0));
        // No gate: no RTO sample.
        assert_eq!(prom::get(&samples, "pgdrill_drill_rto_seconds", &c), None);
        // The previous file's last success is found again.
        let prev = crate::drill::metrics::parse_previous(&text);
        assert_eq!(prev.cluster.as_deref(), Some(s.cluster));
        assert_eq!(prev.last_success, Some(1_699_990_000.0));
    }

    #[test]
    fn an_early_failure_has_the_basics() {
        let s = Snapshot {
            cluster: "c",
            report: None,
            ok: false,
            exit_code: 2,
            finished_at: 1.0,
            last_success: None,
            duration: 0.1,
            rto_target: None,
        };
        let samples = prom::parse(&render(&s).unwrap()).unwrap();
        assert_eq!(prom::get(&samples, "pgdrill_drill_exit_code", &[("cluster", "c")]), Some(2.0));
        assert_eq!(prom::get(&samples, "pgdrill_drill_last_success_timestamp_seconds", &[("cluster", "c")]), None);
    }

    #[test]
    fn the_grammar_rejects_what_the_collector_rejects() {
        for bad in [
            "a b\n",
            "a{x=\"1} 1\n",
            "a{x=\"\\t\"} 1\n",
            "1a 1\n",
            "a 1\n# TYPE a gauge\n",
            "a 1\nb 1\na 2\n",
            "a 1\na 1\n",
            "a 1",
            "a{__x=\"1\"} 1\n",
        ] {
            assert!(prom::parse(bad).is_err(), "{bad:?}");
        }
        assert!(prom::parse("# HELP a x\n# TYPE a gauge\na{b=\"\\\"\"} 1.5e3\n").is_ok());
    }
}
