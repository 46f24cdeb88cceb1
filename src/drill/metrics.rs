//! `drill --metrics FILE`: the drill's numbers for node_exporter's textfile
//! collector (report::metrics renders them in the Prometheus text format).
//!
//! The collector may read the file at any moment, so it is written to a
//! temporary file in the same directory and renamed over the old one. The
//! time of the last successful drill survives failed drills: it is carried
//! over from the previous file.

use std::io::Write;
use std::path::Path;

use super::DrillReport;
use crate::conn::ConnSpec;
use crate::error::{Error, Result};

/// The metric that carries the time of the last successful drill.
pub const LAST_SUCCESS: &str = "pgdrill_drill_last_success_timestamp_seconds";
/// The largest previous file read for its last-success time.
const MAX_PREVIOUS: u64 = 1 << 20;

/// What a previous metrics file said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Previous {
    pub cluster: Option<String>,
    pub last_success: Option<f64>,
}

/// What one drill tells the metrics (report::metrics renders it).
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    pub cluster: &'a str,
    /// The drill, when it got to run its steps.
    pub report: Option<&'a DrillReport>,
    pub ok: bool,
    pub exit_code: u8,
    /// When the drill finished, seconds since the epoch.
    pub finished_at: f64,
    /// When a drill last succeeded (this one, or from the previous file).
    pub last_success: Option<f64>,
    pub duration: f64,
    pub rto_target: Option<f64>,
}

/// Seconds since the epoch, now.
pub fn now_epoch() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64().floor())
}

/// Read the previous file at `path` (missing, unreadable or too large: an
/// empty [`Previous`]).
pub fn previous(path: &Path) -> Previous {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() <= MAX_PREVIOUS => {}
        _ => return Previous::default(),
    }
    std::fs::read_to_string(path).map(|t| parse_previous(&t)).unwrap_or_default()
}

/// Find `pgdrill_drill_last_success_timestamp_seconds{cluster="..."} V`.
pub fn parse_previous(text: &str) -> Previous {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(LAST_SUCCESS) else { continue };
        let Some(rest) = rest.strip_prefix("{cluster=\"") else { continue };
        // Label values escape `\`, `"` and newlines.
        let mut cluster = String::new();
        let mut chars = rest.chars();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => cluster.push('\n'),
                    Some(o) => cluster.push(o),
                    None => break,
                },
                '"' => {
                    closed = true;
                    break;
                }
                c => cluster.push(c),
            }
        }
        let value = chars.as_str().strip_prefix('}').and_then(|v| v.trim().parse::<f64>().ok());
        if closed && value.is_some_and(f64::is_finite) {
            return Previous { cluster: Some(cluster), last_success: value };
        }
    }
    Previous::default()
}

/// The `cluster` label: `--cluster`, else the standby's system identifier
/// (known once the backup ran), else the label of the previous metrics
/// file (so a drill that fails early keeps its series), else the
/// standby's host and port.
pub fn cluster_label(
    given: Option<&str>,
    report: Option<&DrillReport>,
    previous: &Previous,
    standby: &ConnSpec,
) -> String {
    if let Some(c) = given {
        return c.to_string();
    }
    if let Some(id) = report.and_then(|r| r.backup.as_ref()).map(|b| b.system_identifier.clone()) {
        return id;
    }
    if let Some(c) = &previous.cluster {
        return c.clone();
    }
    format!("{}:{}", standby.host(), standby.port())
}

/// Check, before a drill starts, that `option`'s FILE can be written: its
/// directory exists and is one, and FILE is not a directory. A drill that
/// could not record its outcome should not run (exit 2, nothing done).
pub fn check_output(option: &str, path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let bad = |why: &str| {
        Err(Error::usage(
            format!("{option} {}: {why}", path.display()),
            Some("pass a file in an existing directory you may write to".into()),
        ))
    };
    if !dir.is_dir() {
        return bad("its directory does not exist");
    }
    if path.is_dir() {
        return bad("is a directory");
    }
    if nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK).is_err() {
        return bad("its directory is not writable");
    }
    Ok(())
}

/// Write `text` to `path` through a temporary file in the same directory
/// and a rename, as the textfile collector requires.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let io = |e| Error::io(path, "write the metrics file", e);
    let mut tmp = tempfile::Builder::new().prefix(".pgdrill-metrics-").suffix(".tmp").tempfile_in(dir).map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_data().map_err(io)?;
    // The collector runs as another user: 0644 like any textfile.
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_last_success_is_found() {
        let t = "# HELP x\npgdrill_drill_success{cluster=\"a\"} 0\npgdrill_drill_last_success_timestamp_seconds{cluster=\"we\\\"ird\\\\\"} 1700000000\n";
        assert_eq!(
            parse_previous(t),
            Previous { cluster: Some("we\"ird\\".into()), last_success: Some(1_700_000_000.0) }
        );
        assert_eq!(parse_previous("garbage\n{{{"), Previous::default());
        assert_eq!(
            parse_previous("pgdrill_drill_last_success_timestamp_seconds{cluster=\"a\"} NaN"),
            Previous::default()
        );
    }

    #[test]
    fn outputs_are_checked_before_a_drill() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_output("--metrics", &dir.path().join("m.prom")).is_ok());
        let e = check_output("--metrics", &dir.path().join("nope/m.prom")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(check_output("--history", dir.path()).unwrap_err().to_string().contains("is a directory"));
    }

    #[test]
    fn writes_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgdrill.prom");
        write_atomically(&p, "a 1\n").unwrap();
        write_atomically(&p, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
