//! The `pgdrill` binary: parse, run, render, and map the outcome to an exit
//! code (docs/exit-codes.md).

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use pgdrill::cli::{Cli, Command};
use pgdrill::error::{Error, EXIT_USAGE};
use pgdrill::report;

fn main() -> ExitCode {
    pgdrill::signals::install();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
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
        Command::Inspect(a) => (
            a.json,
            pgdrill::inspect::run(&a.path).map(|r| {
                report::emit(&r, a.json);
                r.exit_code()
            }),
        ),
        Command::Preflight(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::backup::preflight::run(&c)).map(|r| {
                report::emit(&r, a.json);
                r.exit_code()
            }),
        ),
        Command::Backup(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::backup::run(&c)).map(|r| {
                report::emit(&r, a.json);
                0
            }),
        ),
        Command::Verify(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::verify::run(&c)).map(|r| {
                report::emit(&r, a.json);
                r.exit_code()
            }),
        ),
        Command::Restore(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::restore::run(&c)).map(|r| {
                report::emit(&r, a.json);
                0
            }),
        ),
        Command::Gate(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::gate::run(&c)).map(|r| {
                report::emit(&r, a.json);
                0
            }),
        ),
        Command::Drill(a) => {
            let result = a.to_config().and_then(|c| pgdrill::drill::run(&c));
            let xml = match &result {
                Ok(r) => report::junit::render(r),
                Err(e) => report::junit::render_error(&e.chain().join(": "), e.exit_code()),
            };
            let written = match &a.junit {
                Some(path) => std::fs::write(path, xml).map_err(|e| Error::io(path, "write the JUnit report", e)),
                None => Ok(()),
            };
            (
                a.json,
                result.and_then(|r| {
                    written?;
                    report::emit(&r, a.json);
                    Ok(r.exit_code)
                }),
            )
        }
        Command::Demo(a) => (
            a.json,
            pgdrill::drill::demo::run(&a.to_config()).map(|r| {
                report::emit(&r, a.json);
                r.exit_code()
            }),
        ),
        Command::WalKeep(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::drill::walkeep::run(&c)).map(|r| {
                report::emit(&r, a.json);
                0
            }),
        ),
        Command::Completions(a) => {
            // Render first: a closed pipe (`| head`) must not panic.
            let mut buf = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "pgdrill", &mut buf);
            let _ = std::io::stdout().write_all(&buf);
            (false, Ok(0))
        }
        Command::Man(a) => match &a.dir {
            // Every page: pgdrill.1 and pgdrill-<command>.1.
            Some(dir) => (
                false,
                std::fs::create_dir_all(dir)
                    .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
                    .map(|()| 0)
                    .map_err(|e| Error::io(dir, "write the man pages", e)),
            ),
            None => {
                let mut buf = Vec::new();
                let r = clap_mangen::Man::new(Cli::command()).render(&mut buf);
                let _ = std::io::stdout().write_all(&buf);
                (false, r.map(|_| 0).map_err(|e| Error::io("stdout", "writing the man page", e)))
            }
        },
    }
}
