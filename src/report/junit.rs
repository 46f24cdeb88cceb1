//! JUnit XML for `drill --junit FILE`: one test case per step, so CI
//! systems show a drill natively.

use crate::drill::{DrillReport, StepStatus};

/// Escape text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// A failure's text: the detail, then one cause a line.
fn failure_body(detail: &str, causes: &[String]) -> String {
    let mut body = detail.to_string();
    for c in causes {
        body.push('\n');
        body.push_str(c);
    }
    body
}

/// The drill as a JUnit XML document.
pub fn render(d: &DrillReport) -> String {
    let failures = d.steps.iter().filter(|s| s.status == StepStatus::Fail).count();
    let skipped = d.steps.iter().filter(|s| s.status == StepStatus::Skip).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"pgdrill\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        d.steps.len(),
        d.rto.total
    ));
    x.push_str(&format!(
        "  <testsuite name=\"pgdrill drill\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        d.steps.len(),
        d.rto.total
    ));
    x.push_str("    <properties>\n");
    for (k, v) in [
        ("end_lsn", d.end_lsn.map(|l| l.to_string())),
        ("opened_at_lsn", d.opened_at_lsn.map(|l| l.to_string())),
        ("server_consistent_lsn", d.server_consistent_lsn.map(|l| l.to_string())),
        ("exit_code", Some(d.exit_code.to_string())),
        ("rto_recovery_secs", d.gate.as_ref().map(|_| format!("{:.3}", d.rto.recovery))),
        ("rto_target_secs", d.rto_target.map(|t| format!("{t:.0}"))),
        ("started_at", Some(d.started_at.clone())),
    ] {
        if let Some(v) = v {
            x.push_str(&format!("      <property name=\"{k}\" value=\"{}\"/>\n", xml_escape(&v)));
        }
    }
    x.push_str("    </properties>\n");
    for s in &d.steps {
        x.push_str(&format!("    <testcase classname=\"pgdrill.drill\" name=\"{}\" time=\"{:.3}\"", s.name, s.seconds));
        match s.status {
            StepStatus::Pass => {
                x.push_str(&format!(">\n      <system-out>{}</system-out>\n    </testcase>\n", xml_escape(&s.detail)))
            }
            StepStatus::Skip => {
                x.push_str(&format!(">\n      <skipped message=\"{}\"/>\n    </testcase>\n", xml_escape(&s.detail)))
            }
            StepStatus::Fail => x.push_str(&format!(
                ">\n      <failure message=\"{}\" type=\"exit {}\">{}</failure>\n    </testcase>\n",
                xml_escape(&s.detail),
                s.exit_code.unwrap_or(1),
                xml_escape(&failure_body(&s.detail, &s.causes))
            )),
        }
    }
    x.push_str(&format!("    <system-out>{}</system-out>\n", xml_escape(&super::drill::verdict(d))));
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// A drill that failed before its first step (bad options, a busy work
/// directory): one failing test case, so CI still finds a report. `causes`
/// are the error's causes and hint; `seconds` how long it took to fail.
pub fn render_error(message: &str, causes: &[String], exit_code: u8, seconds: f64) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pgdrill\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"{t:.3}\">\n  \
         <testsuite name=\"pgdrill drill\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"{t:.3}\">\n    \
         <testcase classname=\"pgdrill.drill\" name=\"drill\" time=\"{t:.3}\">\n      \
         <failure message=\"{m}\" type=\"exit {exit_code}\">{b}</failure>\n    </testcase>\n    \
         <system-out>No restore ran: the drill failed before its first step.</system-out>\n  </testsuite>\n</testsuites>\n",
        m = xml_escape(message),
        b = xml_escape(&failure_body(message, causes)),
        t = seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::{Rto, Step};

    #[test]
    fn escapes_and_parses() {
        assert_eq!(xml_escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;?");
        let d = DrillReport {
            ok: false,
            exit_code: 1,
            steps: vec![
                Step {
                    name: "backup",
                    status: StepStatus::Pass,
                    seconds: 1.5,
                    detail: "ok <fine>".into(),
                    exit_code: None,
                    causes: vec![],
                },
                Step {
                    name: "verify",
                    status: StepStatus::Fail,
                    seconds: 0.5,
                    detail: "bad & broken".into(),
                    exit_code: Some(1),
                    causes: vec!["wal_segment_missing 000000010000000000000005 at 0/5000028: needed".into()],
                },
                Step {
                    name: "restore",
                    status: StepStatus::Skip,
                    seconds: 0.0,
                    detail: "skipped".into(),
                    exit_code: None,
                    causes: vec![],
                },
            ],
            rto: Rto::default(),
            end_lsn: None,
            opened_at_lsn: None,
            server_consistent_lsn: None,
            findings: vec![],
            checks: vec![],
            backup: None,
            restore: None,
            gate: None,
            work: "/w".into(),
            kept: false,
            rto_target: None,
            port: None,
            started_at: "2025-01-01T00:00:00Z".into(),
            finished_at: "2025-01-01T00:00:02Z".into(),
        };
        let xml = render(&d);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases.len(), 3);
        let failure = cases[1].children().find(|c| c.has_tag_name("failure")).unwrap();
        // The failure carries its causes: the missing segment itself.
        assert!(failure.text().unwrap().contains("wal_segment_missing 000000010000000000000005"), "{xml}");
        assert!(cases[2].children().any(|c| c.has_tag_name("skipped")));
        // The closing sentence is true: no restore ran.
        assert!(xml.contains("No restore ran: the drill stopped at the verify step"), "{xml}");
        assert!(!xml.contains("did NOT reach consistency"), "{xml}");
        let xml = render_error("work <dir> & not empty", &["hint: choose a new or empty directory".into()], 2, 0.25);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("failure")).count(), 1);
        // Early failures carry time attributes on the suites too.
        for n in doc.descendants().filter(|n| n.has_tag_name("testsuite") || n.has_tag_name("testsuites")) {
            assert_eq!(n.attribute("time"), Some("0.250"));
        }
        assert!(xml.contains("hint: choose a new or empty directory"));
    }
}
