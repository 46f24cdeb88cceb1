//! WAL kept by another tool: a real pgBackRest (Debian's package) with a
//! local repository and zstd compression, the primary archiving through
//! `archive-push`. A pgdrill backup of the standby verifies, and a drill
//! passes, reading WAL only through `pgbackrest archive-get`.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use pgdrill::ground::{Ground, GroundOptions, LoadOptions};

const PGBACKREST: &str = "/usr/bin/pgbackrest";

/// pgbackrest as the server's OS user with the test's configuration.
fn pgbackrest(g: &Ground, conf: &Path, args: &[&str]) -> std::process::Output {
    g.user.command(PGBACKREST).arg(format!("--config={}", conf.display())).args(args).output().unwrap()
}

#[test]
fn verify_and_drill_through_pgbackrest_archive_get() {
    if !Path::new(PGBACKREST).exists() {
        assert!(std::env::var_os("CI").is_none(), "CI must install pgbackrest (apt-get install pgbackrest)");
        eprintln!("skipped: {PGBACKREST} is not installed");
        return;
    }
    // The ground's directory is made first, so the archive_command can name
    // the configuration in it.
    let dir = tempfile::Builder::new().prefix("pgdrill-pgbackrest-").tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let conf = base.join("pgbackrest.conf");
    let push = format!("{PGBACKREST} --config={} --stanza=main archive-push %p", conf.display());
    let mut opts = GroundOptions::new(bin());
    opts.dir = Some(base.join("ground"));
    opts.primary_settings.push(("archive_command".into(), push));
    let mut g = Ground::new(opts).unwrap();
    for d in ["repo", "log", "lock", "spool"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={b}/repo\ncompress-type=zst\nlog-path={b}/log\nlock-path={b}/lock\n\
             spool-path={b}/spool\nlog-level-console=warn\nlog-level-file=off\nstart-fast=y\n\n\
             [main]\npg1-path={pgdata}\npg1-socket-path={sock}\npg1-port={port}\npg1-user=postgres\n",
            b = base.display(),
            pgdata = g.primary.pgdata.display(),
            sock = g.sockets.display(),
            port = g.primary.port,
        ),
    )
    .unwrap();
    Command::new("chmod").arg("755").arg(&base).status().unwrap();
    Command::new("chown").args(["-R", &format!("{}:", g.user.name)]).arg(&base).status().unwrap();
    let out = pgbackrest(&g, &conf, &["--stanza=main", "stanza-create"]);
    assert!(
        out.status.success(),
        "stanza-create: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = pgbackrest(&g, &conf, &["--stanza=main", "check"]);
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    g.add_standby().unwrap();
    let load = g.start_load(LoadOptions { filler_bytes: 8000, ..LoadOptions::default() }).unwrap();
    sleep_ms(1500);
    let backup = base.join("backup");
    backup_cli(&g, "label", &backup, &[]);
    load.stop();
    // The archive is pgBackRest's repository: nothing lands in the ground's
    // archive directory, and the segments are stored zstd-compressed.
    assert!(archive_listing(&g).is_empty(), "{:?}", archive_listing(&g));
    let stored = Command::new("sh")
        .arg("-c")
        .arg(format!("find {}/repo/archive -name '*.zst' | wc -l", base.display()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&stored.stdout).trim().parse::<u32>().unwrap() > 0);

    let get = format!("{PGBACKREST} --config={} --stanza=main archive-get %f %p", conf.display());
    // verify runs as root here; the command runs as pgdrill's user.
    let out = pgdrill(&["verify", backup.to_str().unwrap(), "--restore-command", &get, "--json"]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    let v = json(&out);
    assert_eq!(v["wal"]["checked"], true);
    assert!(lsn(&v["wal"]["reached"]) >= lsn(&v["wal"]["end"]), "{v:#}");
    assert_ne!(v["wal"]["first_segment"], v["wal"]["last_segment"]);

    // A segment pgBackRest does not have: named, with its own words.
    let missing_end = format!("{PGBACKREST} --config={} --stanza=other archive-get %f %p", conf.display());
    let out = pgdrill(&["verify", backup.to_str().unwrap(), "--restore-command", &missing_end, "--json"]);
    assert_eq!(code(&out), 1);
    let v = json(&out);
    let f = v["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "wal_segment_missing").unwrap().clone();
    assert!(f["message"].as_str().unwrap().contains("restore_command exited with status"), "{f}");

    // The whole drill, WAL through archive-get only, with the same command:
    // pgBackRest resolves a relative %p against its pg1-path (the primary's
    // data directory here), so restore anchors %p in the copy.
    let work = base.join("drill");
    let standby = g.standby().unwrap().conninfo();
    let primary = g.primary.conninfo();
    let out = pgdrill(&[
        "drill",
        "--standby",
        &standby,
        "--primary",
        &primary,
        "--work",
        work.to_str().unwrap(),
        "--restore-command",
        &get,
        "--timeout",
        "180",
        "--no-sync",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    let r = json(&out);
    let steps = r["steps"].as_array().unwrap();
    let verify = steps.iter().find(|s| s["name"] == "verify").unwrap();
    assert_eq!(verify["status"], "pass", "{verify}");
    assert!(!verify["detail"].as_str().unwrap().contains("WAL not checked"));
    assert!(steps.iter().any(|s| s["name"] == "gate" && s["status"] == "pass"), "{r:#}");
    drop(g);
}
