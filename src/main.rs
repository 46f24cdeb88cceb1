//! The `pgdrill` binary: parse, run, render, and map the outcome to an exit
//! code (docs/exit-codes.md).

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
        Command::Drill(a) => (
            a.json,
            a.to_config().and_then(|c| pgdrill::drill::run(&c)).and_then(|r| {
                if let Some(path) = &a.junit {
                    std::fs::write(path, report::junit::render(&r))
                        .map_err(|e| Error::io(path, "write the JUnit report", e))?;
                }
                report::emit(&r, a.json);
                Ok(r.exit_code)
            }),
        ),
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
            clap_complete::generate(a.shell, &mut Cli::command(), "pgdrill", &mut std::io::stdout());
            (false, Ok(0))
        }
        Command::Man => {
            let r = clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout());
            (false, r.map(|_| 0).map_err(|e| Error::io("stdout", "writing the man page", e)))
        }
    }
}
