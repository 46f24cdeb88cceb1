//! Rendering results: human tables (tabled) by default, one JSON object with
//! `--json`. Capability modules return plain data; only this module prints.
//! The JSON schemas are documented in docs/json.md.

use std::io::Write;

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::peaker::PriorityMax;
use tabled::settings::{Style, Width};

use crate::error::Error;

mod backup;
mod drill;
mod gate;
pub mod history;
mod inspect;
pub mod junit;
pub mod man;
pub mod metrics;
pub mod progress;
mod verify;

/// A result that can be shown to a person.
pub trait Render {
    fn human(&self) -> String;
}

/// Print a result to stdout, as JSON or as text.
pub fn emit<T: Serialize + Render>(value: &T, json: bool) {
    let text = if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => s + "\n",
            Err(e) => format!("{{\"error\": {{\"message\": {:?}}}}}\n", e.to_string()),
        }
    } else {
        fit(&value.human(), table_width())
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A report with an `ok` key in front of its own keys, for the commands
/// whose report types carry none (backup, restore, gate, inspect).
#[derive(Serialize)]
pub struct WithOk<'a, T: Serialize> {
    pub ok: bool,
    #[serde(flatten)]
    pub report: &'a T,
}

impl<T: Serialize + Render> Render for WithOk<'_, T> {
    fn human(&self) -> String {
        self.report.human()
    }
}

/// Print a result with `ok` added to its JSON (see [`WithOk`]).
pub fn emit_ok<T: Serialize + Render>(value: &T, ok: bool, json: bool) {
    emit(&WithOk { ok, report: value }, json);
}

/// The JSON object printed for a failed command with `--json`.
#[derive(Serialize)]
pub struct ErrorReport {
    pub ok: bool,
    pub error: ErrorBody,
}

#[derive(Serialize)]
pub struct ErrorBody {
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    pub exit_code: u8,
}

/// Report an error: always on stderr, and as JSON on stdout with `--json`.
pub fn emit_error(err: &Error, json: bool) {
    let chain = err.chain();
    let mut text = format!("error: {}\n", chain[0]);
    for c in &chain[1..] {
        text.push_str(&format!("  caused by: {c}\n"));
    }
    if let Some(h) = err.hint() {
        text.push_str(&format!("hint: {h}\n"));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
    if json {
        let body = ErrorReport {
            ok: false,
            error: ErrorBody {
                message: chain[0].clone(),
                causes: chain[1..].to_vec(),
                hint: err.hint(),
                exit_code: err.exit_code(),
            },
        };
        if let Ok(s) = serde_json::to_string_pretty(&body) {
            println!("{s}");
        }
    }
}

/// The width tables must fit: `COLUMNS` when set (as shells and CI
/// runners set it), else the terminal's width when stdout is one, else
/// none: a log or a pipe keeps whole lines, for grep.
pub fn table_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<usize>().ok()) {
        return Some(n.max(MIN_TABLE_WIDTH));
    }
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(terminal_size::Width(w), _)| usize::from(w).max(MIN_TABLE_WIDTH))
}

/// Narrower than this, wrapping makes tables unreadable.
const MIN_TABLE_WIDTH: usize = 40;

/// Lay a table out: psql style, the widest columns wrapped (at word
/// boundaries where possible) until the table fits `width`, and no line
/// ending in spaces.
fn finish(mut t: tabled::Table, width: Option<usize>) -> String {
    t.with(Style::psql());
    if let Some(w) = width {
        t.with(Width::wrap(w).priority(PriorityMax::right()).keep_words(true));
    }
    trim_lines(&t.to_string())
}

/// Human output as printed: tables already fit `width`; longer lines of
/// prose are wrapped at word boundaries; no line ends in spaces.
pub fn fit(text: &str, width: Option<usize>) -> String {
    let Some(w) = width else { return trim_lines(text) };
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.chars().count() > w {
            out.push_str(&tabled::settings::width::Wrap::wrap(line, w, true));
        } else {
            out.push_str(line);
        }
    }
    trim_lines(&out)
}

/// Remove trailing spaces from every line.
pub fn trim_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_end_matches(' '));
    }
    out
}

/// The JSON error object for a command line the parser rejected (`--json`
/// was among the arguments). `rendered` is clap's message.
pub fn emit_parse_error(rendered: &str, exit_code: u8) {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let message = lines.next().unwrap_or("invalid arguments");
    let message = message.strip_prefix("error: ").unwrap_or(message).to_string();
    let causes: Vec<String> = lines
        .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::to_string)
        .collect();
    let body =
        ErrorReport { ok: false, error: ErrorBody { message, causes, hint: Some("see --help".into()), exit_code } };
    if let Ok(s) = serde_json::to_string_pretty(&body) {
        println!("{s}");
    }
}

/// A two-column table of fields and values.
pub fn kv_table<K: AsRef<str>, V: AsRef<str>>(rows: &[(K, V)]) -> String {
    kv_table_width(rows, table_width())
}

/// [`kv_table`] for a given width (`None`: no limit).
pub fn kv_table_width<K: AsRef<str>, V: AsRef<str>>(rows: &[(K, V)], width: Option<usize>) -> String {
    let mut b = Builder::default();
    b.push_record(["field", "value"]);
    for (k, v) in rows {
        b.push_record([k.as_ref(), v.as_ref()]);
    }
    finish(b.build(), width)
}

/// A table with a header row.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    table_width_of(header, rows, table_width())
}

/// [`table`] for a given width (`None`: no limit).
pub fn table_width_of<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>], width: Option<usize>) -> String {
    let mut b = Builder::default();
    b.push_record(header.iter().copied());
    for r in rows {
        b.push_record(r.iter().map(|c| c.as_ref()));
    }
    finish(b.build(), width)
}

/// A titled section.
pub fn section(title: &str, body: &str) -> String {
    format!("{title}\n{body}\n\n")
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub use crate::units::bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_prose_fit_and_end_without_spaces() {
        let long = "a detail long enough to need wrapping, with words to wrap between; ".repeat(3);
        let rows = vec![vec!["step".to_string(), "pass".into(), long.clone()], vec!["x".into(), "".into(), "".into()]];
        for w in [40, 80, 120] {
            let t = table_width_of(&["name", "status", "detail"], &rows, Some(w));
            let text = fit(&format!("{t}\n{long}\n"), Some(w));
            for line in text.lines() {
                assert!(line.chars().count() <= w, "{w}: {line:?}");
                assert!(!line.ends_with(' '), "{line:?}");
            }
            // Words stay whole.
            assert!(text.contains("wrapping,"), "{text}");
        }
        // No width: lines stay whole, still trimmed.
        let t = table_width_of(&["a", "b"], &[vec!["x", ""]], None);
        assert!(t.lines().all(|l| !l.ends_with(' ')), "{t:?}");
        assert_eq!(fit("x  \ny", None), "x\ny");
    }
}
