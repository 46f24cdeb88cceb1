//! Command-line definitions (clap) and their conversion into the plain,
//! validated configs the capability modules take. Nothing here does work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Base backups from a PostgreSQL hot standby, restores behind a consistency
/// gate, and offline verification.
#[derive(Debug, Parser)]
#[command(name = "pgdrill", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a data directory or backup holds: pg_control, backup_label,
    /// end point, needed WAL, manifest.
    Inspect(InspectArgs),
    /// Run the whole job on a throwaway primary and standby: backup, verify,
    /// restore, gate, report.
    Demo(DemoArgs),
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A data directory or a backup directory.
    pub path: PathBuf,
    /// Print one JSON object (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work directory (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// PostgreSQL bin directory.
    #[arg(long, env = "PGDRILL_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    pub keep: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
