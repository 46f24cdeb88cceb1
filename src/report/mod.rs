//! Rendering results: human tables (tabled) by default, one JSON object with
//! `--json`. Capability modules return plain data; only this module prints.
//! The JSON schemas are documented in docs/json.md.

use std::io::Write;

use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

use crate::error::Error;

mod backup;
mod drill;
mod gate;
mod inspect;
pub mod junit;
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
        value.human()
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
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

/// A two-column table of fields and values.
pub fn kv_table<K: AsRef<str>, V: AsRef<str>>(rows: &[(K, V)]) -> String {
    let mut b = Builder::default();
    b.push_record(["field", "value"]);
    for (k, v) in rows {
        b.push_record([k.as_ref(), v.as_ref()]);
    }
    let mut t = b.build();
    t.with(Style::psql());
    t.to_string()
}

/// A table with a header row.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let mut b = Builder::default();
    b.push_record(header.iter().copied());
    for r in rows {
        b.push_record(r.iter().map(|c| c.as_ref()));
    }
    let mut t = b.build();
    t.with(Style::psql());
    t.to_string()
}

/// A titled section.
pub fn section(title: &str, body: &str) -> String {
    format!("{title}\n{body}\n\n")
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Bytes in a human unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
