//! `pgdrill backup --format tar --compress ...` on a busy standby: the
//! archives are what `tar` and the compressors read, the manifest covers
//! the uncompressed contents, and `verify` and `inspect` read them back.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use pgdrill::ground::LoadOptions;
use pgdrill::pg::manifest::Manifest;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn tar_backups_in_every_compression_verify() {
    let g = with_standby();
    g.primary_exec("CREATE TABLE t AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
        .unwrap();
    let load = g.start_load(LoadOptions { filler_bytes: 4000, ..LoadOptions::default() }).unwrap();
    sleep_ms(1000);
    let mut made = Vec::new();
    for (compress, suffix) in [("none", ""), ("gzip", ".gz"), ("lz4", ".lz4"), ("zstd:5", ".zst")] {
        let dest = g.dir.join(format!("tar-{}", compress.replace(':', "-")));
        let r = backup_cli(&g, "label", &dest, &["--format", "tar", "--compress", compress]);
        assert_eq!(r["format"], "tar");
        let files = names(&dest);
        assert_eq!(files, vec!["backup_manifest".to_string(), format!("base.tar{suffix}")], "{compress}");
        if compress != "none" {
            assert!(r["stored_bytes"].as_u64().unwrap() < r["bytes"].as_u64().unwrap(), "{compress}: {r:#}");
        }
        made.push((compress, suffix, dest, r));
    }
    load.stop();

    for (compress, suffix, dest, r) in &made {
        // The archive is a tar that tar and the compressors read, holding
        // exactly what the manifest lists, pg_control among the last.
        let base = dest.join(format!("base.tar{suffix}"));
        let listing = match *suffix {
            "" => Command::new("tar").arg("-tf").arg(&base).output().unwrap(),
            ".gz" => Command::new("tar").arg("-tzf").arg(&base).output().unwrap(),
            _ => {
                let tool = if *suffix == ".lz4" { "lz4 -dc" } else { "zstd -dc" };
                Command::new("sh").arg("-c").arg(format!("{tool} {} | tar -tf -", base.display())).output().unwrap()
            }
        };
        assert!(listing.status.success(), "{compress}: {}", String::from_utf8_lossy(&listing.stderr));
        let members: Vec<String> = String::from_utf8_lossy(&listing.stdout).lines().map(str::to_string).collect();
        let m = Manifest::parse(&std::fs::read(dest.join("backup_manifest")).unwrap()).unwrap();
        for f in &m.files {
            let p = String::from_utf8_lossy(&f.path).into_owned();
            assert!(members.contains(&p), "{compress}: {p} is in the manifest but not in the archive");
        }
        let files: Vec<&String> = members.iter().filter(|m| !m.ends_with('/')).collect();
        let listed: std::collections::BTreeSet<String> =
            m.files.iter().map(|f| String::from_utf8_lossy(&f.path).into_owned()).collect();
        let extra: Vec<&&String> = files.iter().filter(|f| !listed.contains(**f)).collect();
        assert_eq!(files.len(), m.files.len(), "{compress}: not in the manifest: {extra:?}");
        let control = members.iter().position(|m| m == "global/pg_control").unwrap();
        assert!(control + 5 >= members.len(), "{compress}: pg_control is not among the last members");
        assert_eq!(r["files"].as_u64().unwrap() as usize, m.files.len());

        let out = pgdrill(&["verify", dest.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"]);
        assert_eq!(code(&out), 0, "{compress}: {}", String::from_utf8_lossy(&out.stdout));
        let v = json(&out);
        assert_eq!(v["manifest_status"], "applied");
        // Every file but those pg_verifybackup ignores (postgresql.auto.conf).
        let checkable = m.files.iter().filter(|f| !pgdrill::verify::files::is_ignored(&f.path)).count();
        assert_eq!(v["checked"]["checksums"].as_u64().unwrap() as usize, checkable, "{compress}");
        assert_eq!(v["page_lsn"]["source"], "min_recovery_point");
        assert_eq!(v["wal"]["checked"], true);
        assert!(lsn(&v["wal"]["reached"]) >= lsn(&v["wal"]["end"]));

        let out = pgdrill(&["inspect", dest.to_str().unwrap(), "--json"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let i = json(&out);
        assert_eq!(i["format"], "tar");
        assert_eq!(i["kind"], "label_backup");
        assert_eq!(lsn(&i["end_location"]), lsn(&r["end_lsn"]));
    }

    // The manifest's checksums are over the uncompressed contents: the
    // same files, whatever the compression, agree with a plain extraction.
    let (_, _, zstd_dir, _) = &made[3];
    let x = g.dir.join("extracted");
    std::fs::create_dir_all(&x).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {}/base.tar.zst | tar -xf - -C {}", zstd_dir.display(), x.display()))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::copy(zstd_dir.join("backup_manifest"), x.join("backup_manifest")).unwrap();
    let out = pgdrill(&["verify", x.to_str().unwrap(), "--wal-archive", g.archive.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    if let Some(pgv) = pg_verifybackup() {
        if g.bin.major == 15 {
            let out = Command::new(pgv).args(["-n"]).arg(&x).output().unwrap();
            assert!(out.status.success(), "pg_verifybackup: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    // --compress without --format tar is refused before anything happens.
    let dest = g.dir.join("refused");
    let standby = g.standby().unwrap().conninfo();
    let out = pgdrill(&["backup", "--standby", &standby, "--dest", dest.to_str().unwrap(), "--compress", "zstd"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(!dest.exists());
}
