//! The exact human output of every command (issue #14), as snapshots in
//! `tests/it/snapshots/`. What changes from run to run is redacted: paths,
//! LSNs, segment names, identifiers, times, durations, sizes, counts, ports;
//! runs of spaces and table rules are folded, because column widths follow
//! the redacted values. A deliberate change of output is accepted with
//! `INSTA_UPDATE=always cargo test --test it snapshots::` (or `cargo insta
//! review`), and the diff reviewed in the commit.

use std::process::Output;

use crate::common::*;
use pgdrill::ground::{free_port, LoadOptions};

/// Redactions, most specific first.
fn settings(ground_dir: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.set_prepend_module_to_snapshot(false);
    // Lines that come and go with timing: progress every few seconds in a
    // log, heartbeats, stalls; and how the backup's start met the standby's
    // restartpoint.
    s.add_filter(r"(?m)^pgdrill: [a-z-]+: .*(eta|stalled|/s|done,).*\n", "");
    s.add_filter(r"(?m)^pgdrill: (drill: \w+ still running|stalled for).*\n", "");
    s.add_filter(r"(?m)^( backup start +\| ).*$", "$1[START]");
    s.add_filter(&regex::escape(ground_dir), "[DIR]");
    s.add_filter(r"/tmp/[A-Za-z0-9._/-]+", "[TMP]");
    s.add_filter(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d(:\d\d)?| [A-Z]{3,4})?", "[TIME]");
    s.add_filter(r"\b[0-9A-F]{24}\b", "[SEGMENT]");
    s.add_filter(r"\d+(\.\d+)? ?(B|KiB|MiB|GiB|TiB)(/s)?\b", "[SIZE]");
    s.add_filter(r"\d+(\.\d+)? ?(s|ms)\b", "[SECS]");
    s.add_filter(r"\d+(\.\d+)?%", "[PCT]");
    s.add_filter(r"\b\d+\.\d+[KMG]?\b", "[X]");
    s.add_filter(r"\b[0-9A-F]{1,8}/[0-9A-F]{1,8}\b", "[LSN]");
    s.add_filter(r"\b\d{16,20}\b", "[SYSID]");
    s.add_filter(r"\b\d+\b", "[N]");
    // A list of archived segments is as long as timing made it.
    s.add_filter(r"(?m)(^ \[SEGMENT\] \| \[SIZE\]\n)+", " [SEGMENT] | [SIZE] (one or more)\n");
    // Column widths follow the values above.
    s.add_filter(r"-{2,}", "--");
    s.add_filter(r"={2,}", "==");
    s.add_filter(r"[ \t]{2,}", " ");
    s.add_filter(r"(?m) +$", "");
    s
}

/// What a command printed: stdout, then stderr, labelled.
fn shown(o: &Output) -> String {
    let exit = ["ok", "failed", "usage", "runtime", "timeout"].get(code(o) as usize).copied().unwrap_or("other");
    format!(
        "exit: {exit}\n--- stdout\n{}--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_commands_human_output() {
    let g = with_standby();
    let load = g.start_load(LoadOptions::default()).unwrap();
    sleep_ms(300);
    let dir = g.dir.display().to_string();
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let archive = g.archive.to_str().unwrap().to_string();
    let backup = g.dir.join("backup");
    let b = backup.to_str().unwrap().to_string();
    let mut outputs: Vec<(&str, Output)> = Vec::new();

    outputs.push(("preflight", pgdrill(&["preflight", "--standby", &standby, "--primary", &primary])));
    let o = pgdrill(&["backup", "--standby", &standby, "--primary", &primary, "--dest", &b, "--fast", "--no-sync"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    outputs.push(("backup", o));
    load.stop();
    outputs.push(("inspect", pgdrill(&["inspect", &b])));
    outputs.push(("verify", pgdrill(&["verify", &b, "--wal-archive", &archive])));
    let target = g.dir.join("restored");
    let port = free_port().to_string();
    let t = target.to_str().unwrap().to_string();
    outputs.push(("restore", restore_cli(&b, &t, &archive, &port, &["--no-start"])));
    outputs.push(("gate", pgdrill(&["gate", "--pgdata", &t, "--wal-archive", &archive, "--timeout", "120"])));
    stop_server(&g, &target);
    outputs.push(("wal-keep", pgdrill(&["wal-keep", &b, "--archive", &archive])));
    let work = g.dir.join("drill");
    let history = g.dir.join("history.jsonl");
    outputs.push((
        "drill",
        pgdrill(&[
            "drill",
            "--standby",
            &standby,
            "--primary",
            &primary,
            "--work",
            work.to_str().unwrap(),
            "--wal-archive",
            &archive,
            "--history",
            history.to_str().unwrap(),
            "--timeout",
            "120",
        ]),
    ));
    outputs.push(("history", pgdrill(&["history", history.to_str().unwrap()])));
    outputs.push(("usage error", pgdrill(&["gate", "--pgdata", &t, "--end-lsn", "nonsense"])));
    outputs.push(("not a backup", pgdrill(&["inspect", &archive])));

    let s = settings(&dir);
    for (name, o) in &outputs {
        assert!(code(o) <= 2, "{name}: {}", shown(o));
        s.bind(|| insta::assert_snapshot!(name.replace(' ', "_"), shown(o)));
    }
}
