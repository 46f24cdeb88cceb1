//! The `pgdrill` binary: parse, run, render, and map the outcome to an exit
//! code (docs/exit-codes.md).

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, Parser};
use pgdrill::cli::{Cli, Command, DrillArgs};
use pgdrill::conn::ConnSpec;
use pgdrill::drill::{self, history, metrics, DrillConfig, DrillReport};
use pgdrill::error::{Error, EXIT_OK, EXIT_USAGE};
use pgdrill::report;

fn main() -> ExitCode {
    pgdrill::signals::install();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::from(0);
            }
            // --json promises one JSON object on stdout, for a command
            // line the parser rejects too.
            if std::env::args_os().any(|a| a == "--json") {
                report::emit_parse_error(&e.render().to_string(), EXIT_USAGE);
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    pgdrill::observe::install(report::progress::StderrSink::shared(cli.quiet, cli.verbose));
    let (json, result) = run(cli.command);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report::emit_error(&e, json);
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> (bool, Result<u8, Error>) {
    match command {
        Command::Inspect(a) => {
            judged(a.json, a.s3.to_config().and_then(|s3| pgdrill::inspect::run(&a.path, &s3)), |r| r.exit_code())
        }
        Command::Preflight(a) => {
            plain(a.json, a.to_config(&ConnSpec::parse).and_then(|c| pgdrill::backup::preflight::run(&c)), |r| {
                r.exit_code()
            })
        }
        Command::Backup(a) => {
            judged(a.json, a.to_config(&ConnSpec::parse).and_then(|c| pgdrill::backup::run(&c)), |r| r.exit_code())
        }
        Command::Verify(a) => plain(a.json, a.to_config().and_then(|c| pgdrill::verify::run(&c)), |r| r.exit_code()),
        Command::Restore(a) => {
            judged(a.json, a.to_config(&ConnSpec::parse).and_then(|c| pgdrill::restore::run(&c)), |_| EXIT_OK)
        }
        Command::Gate(a) => judged(a.json, a.to_config().and_then(|c| pgdrill::gate::run(&c)), |_| EXIT_OK),
        Command::Drill(a) => (a.json, run_drill(&a)),
        #[cfg(feature = "demo")]
        Command::Demo(a) => judged(a.json, pgdrill::drill::demo::run(&a.to_config()), |r| r.exit_code()),
        Command::WalKeep(a) => {
            judged(a.json, a.to_config().and_then(|c| pgdrill::drill::walkeep::run(&c)), |_| EXIT_OK)
        }
        // A restore_command: silent when it worked, one line on stderr
        // (into the server's log) when not.
        Command::WalFetch(a) => (false, a.to_config().and_then(|c| pgdrill::source::fetch::run(&c)).map(|_| EXIT_OK)),
        Command::History(a) => plain(a.json, a.to_config().and_then(|c| history::run(&c)), |r| r.exit_code()),
        Command::Completions(a) => {
            // Render first: a closed pipe (`| head`) must not panic.
            let mut buf = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "pgdrill", &mut buf);
            let _ = std::io::stdout().write_all(&buf);
            (false, Ok(0))
        }
        Command::Man(a) => match &a.dir {
            // Every page: pgdrill.1 and pgdrill-<command>.1.
            Some(dir) => (false, write_man_pages(dir).map(|()| 0)),
            None => {
                let buf = report::man::page(Cli::command());
                let _ = std::io::stdout().write_all(&buf);
                (false, Ok(0))
            }
        },
    }
}

/// Print a report with an `ok` key (true when its exit code is 0).
fn judged<R: serde::Serialize + report::Render>(
    json: bool,
    result: Result<R, Error>,
    code: impl Fn(&R) -> u8,
) -> (bool, Result<u8, Error>) {
    let shown = result.map(|r| {
        let c = code(&r);
        report::emit_ok(&r, c == EXIT_OK, json);
        c
    });
    (json, shown)
}

/// Print a report that carries its own `ok`.
fn plain<R: serde::Serialize + report::Render>(
    json: bool,
    result: Result<R, Error>,
    code: impl Fn(&R) -> u8,
) -> (bool, Result<u8, Error>) {
    let shown = result.map(|r| {
        report::emit(&r, json);
        code(&r)
    });
    (json, shown)
}

fn write_man_pages(dir: &std::path::Path) -> Result<(), Error> {
    let io = |e| Error::io(dir, "write the man pages", e);
    std::fs::create_dir_all(dir).map_err(io)?;
    for (name, text) in report::man::pages(Cli::command()) {
        std::fs::write(dir.join(name), text).map_err(io)?;
    }
    Ok(())
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `pgdrill drill`: run it, then write the JUnit report, the history line
/// and the metrics, whatever the outcome.
fn run_drill(a: &DrillArgs) -> Result<u8, Error> {
    let started = Instant::now();
    let started_at = now_rfc3339();
    let write_junit = |xml: String| match &a.junit {
        Some(path) => std::fs::write(path, xml).map_err(|e| Error::io(path, "write the JUnit report", e)),
        None => Ok(()),
    };
    let early = |e: &Error| {
        let mut causes = e.chain()[1..].to_vec();
        if let Some(h) = e.hint() {
            causes.push(format!("hint: {h}"));
        }
        report::junit::render_error(&e.chain().join(": "), &causes, e.exit_code(), started.elapsed().as_secs_f64())
    };
    // The outputs are checked before any step: a drill whose outcome
    // could not be recorded does not run.
    let outputs = |c: &DrillConfig| -> Result<(), Error> {
        if let Some(p) = &c.history {
            metrics::check_output("--history", p)?;
        }
        if let Some(p) = &c.metrics {
            metrics::check_output("--metrics", p)?;
        }
        Ok(())
    };
    let cfg = match a.to_config(&ConnSpec::parse).and_then(|c| outputs(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            let _ = write_junit(early(&e));
            return Err(e);
        }
    };
    let result = drill::run(&cfg);
    let xml = match &result {
        Ok(r) => report::junit::render(r),
        Err(e) => early(e),
    };
    let written = write_junit(xml);
    let published = publish(&cfg, &result, &started_at, started.elapsed().as_secs_f64());
    let r = result?;
    written?;
    published?;
    report::emit(&r, a.json);
    Ok(r.exit_code)
}

/// Append the history line and write the metrics file.
fn publish(
    cfg: &DrillConfig,
    result: &Result<DrillReport, Error>,
    started_at: &str,
    seconds: f64,
) -> Result<(), Error> {
    if cfg.history.is_none() && cfg.metrics.is_none() {
        return Ok(());
    }
    let previous = cfg.metrics.as_deref().map(metrics::previous).unwrap_or_default();
    let report = result.as_ref().ok();
    let cluster = metrics::cluster_label(cfg.cluster.as_deref(), report, &previous, &cfg.standby);
    if let Some(path) = &cfg.history {
        let record = match result {
            Ok(r) => history::Record::of(r, &cluster),
            Err(e) => history::Record::early_failure(&cluster, started_at, &now_rfc3339(), e, seconds),
        };
        history::append(path, &record)?;
    }
    if let Some(path) = &cfg.metrics {
        let (ok, exit_code) = match result {
            Ok(r) => (r.ok, r.exit_code),
            Err(e) => (false, e.exit_code()),
        };
        let finished_at = metrics::now_epoch();
        // A failed drill keeps the time of the last success of its series.
        let last_success = if ok {
            Some(finished_at)
        } else {
            previous.last_success.filter(|_| previous.cluster.as_deref() == Some(cluster.as_str()))
        };
        let snapshot = metrics::Snapshot {
            cluster: &cluster,
            report,
            ok,
            exit_code,
            finished_at,
            last_success,
            duration: report.map_or(seconds, |r| r.rto.total),
            rto_target: cfg.rto_target.map(|d| d.as_secs_f64()),
        };
        let text = report::metrics::render(&snapshot)
            .map_err(|e| Error::io(path, "render the metrics", std::io::Error::other(e.to_string())))?;
        metrics::write_atomically(path, &text)?;
    }
    Ok(())
}
