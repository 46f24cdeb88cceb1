//! Man pages: clap_mangen's sections for the options, and ours for EXIT
//! STATUS, ENVIRONMENT and EXAMPLES, which clap does not know.

use clap::Command;
use roff::{bold, roman, Roff};

/// Exit codes, as in docs/exit-codes.md.
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "ok"),
    ("1", "verification or consistency failure (a verify error, a failed check, a copy that cannot become consistent, a drill over its RTO target, a history regression with --fail-on-regression)"),
    ("2", "usage or bad input (unknown option, not a data directory or backup, damaged backup files, non-empty target, port in use, wrong binaries)"),
    ("3", "environment or runtime failure (cannot connect, privileges, missing binaries, I/O errors such as permission denied, a server that died, interrupted by the first SIGINT or SIGTERM)"),
    ("4", "timed out (the gate's --timeout)"),
    ("130", "a second SIGINT or SIGTERM: pgdrill exited at once"),
];

/// Environment variables.
const ENVIRONMENT: &[(&str, &str)] = &[
    ("PGDRILL_STANDBY", "--standby of preflight, backup and drill"),
    ("PGDRILL_PRIMARY", "--primary of preflight, backup and drill"),
    ("PGDRILL_PG_BIN", "--pg-bin of restore, gate, drill and demo"),
    ("PGDRILL_EXE", "the pgdrill binary restore names in a restore_command for a compressed archive (default: the running one)"),
    ("PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGCONNECT_TIMEOUT, PGAPPNAME, PGOPTIONS, PGSSLMODE", "libpq-style defaults for --standby and --primary"),
    ("COLUMNS", "the width tables are wrapped to (default: the terminal's; none in a pipe)"),
];

/// Examples per command (the top-level page shows the drill's).
fn examples(command: &str) -> &'static [&'static str] {
    match command {
        "inspect" => &["pgdrill inspect /srv/backups/nightly", "pgdrill inspect --json /srv/backups/nightly | jq -r .end_lsn"],
        "preflight" => &["pgdrill preflight --standby 'host=127.0.0.1 user=pgdrill dbname=postgres' --dest /srv/backups"],
        "backup" => &[
            "pgdrill backup --dest /srv/backups/$(date -u +%Y%m%dT%H%M%SZ) --fast --wal-archive /srv/wal-archive",
            "pgdrill backup --dest /srv/backups/nightly --format tar --compress zstd",
        ],
        "verify" => &[
            "pgdrill verify /srv/backups/nightly --wal-archive /srv/wal-archive",
            "pgdrill verify /srv/backups/nightly --restore-command 'pgbackrest --stanza=main archive-get %f %p'",
        ],
        "wal-fetch" => &["restore_command = '/usr/local/bin/pgdrill wal-fetch %f %p --archive /srv/wal-archive'"],
        "restore" => &["pgdrill restore /srv/backups/nightly --target /srv/restore/nightly --wal-archive /srv/wal-archive --port 6543"],
        "gate" => &["pgdrill gate --pgdata /srv/restore/nightly --wal-archive /srv/wal-archive"],
        "drill" | "pgdrill" => &[
            "pgdrill drill --work /srv/pgdrill/work --wal-archive /srv/wal-archive --amcheck --junit report.xml --history /var/lib/pgdrill/history.jsonl --metrics /var/lib/node_exporter/textfile/pgdrill.prom --rto-target 1800",
        ],
        "history" => &["pgdrill history /var/lib/pgdrill/history.jsonl --last 14 --fail-on-regression"],
        "demo" => &["pgdrill demo", "pgdrill demo --keep --dir /tmp/pgdrill-demo"],
        "wal-keep" => &["pgdrill wal-keep /srv/backups/oldest-kept --archive /srv/wal-archive --remove"],
        "completions" => &["pgdrill completions bash > /etc/bash_completion.d/pgdrill"],
        "man" => &["pgdrill man --dir /usr/local/share/man/man1"],
        _ => &[],
    }
}

fn tagged(roff: &mut Roff, items: &[(&str, &str)]) {
    for (tag, text) in items {
        roff.control("TP", []);
        roff.text([bold(*tag)]);
        roff.text([roman(*text)]);
    }
}

/// Our sections, after clap_mangen's.
fn extra_sections(name: &str) -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    tagged(&mut roff, EXIT_STATUS);
    roff.control("SH", ["ENVIRONMENT"]);
    tagged(&mut roff, ENVIRONMENT);
    let ex = examples(name);
    if !ex.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for e in ex {
            roff.control("PP", []);
            roff.control("nf", []);
            roff.text([roman(*e)]);
            roff.control("fi", []);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("docs/cli.md, docs/json.md and docs/exit-codes.md in the pgdrill sources.")]);
    roff
}

fn render(cmd: Command, name: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd).render(&mut buf);
    let _ = extra_sections(name).to_writer(&mut buf);
    buf
}

/// The top-level page (`pgdrill.1`).
pub fn page(cmd: Command) -> Vec<u8> {
    render(cmd, "pgdrill")
}

/// Every page: `pgdrill.1` and `pgdrill-<command>.1`, as file names and
/// contents.
pub fn pages(cmd: Command) -> Vec<(String, Vec<u8>)> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        let name = sub.get_name().to_string();
        let file = format!("{}.1", sub.get_display_name().map_or_else(|| format!("pgdrill-{name}"), str::to_string));
        out.push((file, render(sub, &name)));
    }
    out.push(("pgdrill.1".to_string(), render(cmd, "pgdrill")));
    out
}
