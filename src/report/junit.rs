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
                xml_escape(&s.detail)
            )),
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// A drill that failed before its first step (bad options, a busy work
/// directory): one failing test case, so CI still finds a report.
pub fn render_error(message: &str, exit_code: u8) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pgdrill\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\">\n  \
         <testsuite name=\"pgdrill drill\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\">\n    \
         <testcase classname=\"pgdrill.drill\" name=\"drill\" time=\"0\">\n      \
         <failure message=\"{m}\" type=\"exit {exit_code}\">{m}</failure>\n    </testcase>\n  </testsuite>\n</testsuites>\n",
        m = xml_escape(message)
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
                },
                Step {
                    name: "verify",
                    status: StepStatus::Fail,
                    seconds: 0.5,
                    detail: "bad & broken".into(),
                    exit_code: Some(1),
                },
                Step {
                    name: "restore",
                    status: StepStatus::Skip,
                    seconds: 0.0,
                    detail: "skipped".into(),
                    exit_code: None,
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
        };
        let xml = render(&d);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases.len(), 3);
        assert!(cases[1].children().any(|c| c.has_tag_name("failure")));
        assert!(cases[2].children().any(|c| c.has_tag_name("skipped")));
        let xml = render_error("work <dir> & not empty", 2);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("failure")).count(), 1);
    }
}
