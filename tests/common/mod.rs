//! Helpers shared by the integration tests. Every test runs real servers
//! from the test ground (`pgdrill::ground`); nothing is mocked.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use pgdrill::ground::{test_bin, Ground, GroundOptions};
use pgdrill::server::PgBin;

pub fn bin() -> PgBin {
    test_bin().expect("PostgreSQL server binaries (set PGDRILL_TEST_PG_BIN)")
}

/// A primary with archiving.
pub fn primary() -> Ground {
    Ground::new(GroundOptions::new(bin())).expect("start a primary")
}

/// A primary and a hot standby.
pub fn with_standby() -> Ground {
    let mut g = primary();
    g.add_standby().expect("build a hot standby");
    g
}

/// Run the pgdrill binary.
pub fn pgdrill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdrill")).args(args).output().expect("run pgdrill")
}

pub fn pgdrill_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdrill")).current_dir(dir).args(args).output().expect("run pgdrill")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Query one text value.
pub fn one(client: &mut postgres::Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}
