//! Handing object-storage credentials to another OS user's process: the
//! restored server's `restore_command` (`pgdrill wal-fetch`) runs as the
//! server's OS user, which has none of root's AWS setup.
//!
//! The credentials travel in a file, never on a command line (a process
//! listing shows it) or in the data directory (a backup of the copy would
//! carry it): an environment file (`KEY=VALUE` lines, the variables the AWS
//! tools read) written new with mode 0600, owned by the receiving user,
//! through a directory handle that follows no link ([`write`]). The
//! receiver reads it only if it is a regular file it owns that no one else
//! may read ([`read`]). The file holds what pgdrill's own chain resolved
//! when it was written: endpoint, region and keys (with the session token
//! and expiry of temporary ones). Past the expiry the receiver falls back
//! to its own chain (an instance or container role is reachable by any
//! local user).
//!
//! See docs/design.md, "Credentials for a restored server".

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::safefs::Dir;
use crate::server::OsUser;

/// A file larger than this is not a credential file.
const MAX_SIZE: u64 = 64 << 10;

/// Keys resolved once, used as they are.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub key_id: String,
    pub secret: String,
    pub token: Option<String>,
    /// Seconds since the epoch after which the keys are no longer valid.
    pub expires: Option<i64>,
}

impl std::fmt::Debug for StaticKeys {
    /// Never the secret or the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKeys")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expires", &self.expires)
            .finish()
    }
}

impl StaticKeys {
    /// Whether the keys are past (or within a minute of) their expiry.
    pub fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| e <= now + 60)
    }
}

/// What a receiving process needs to reach the same store as pgdrill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    pub endpoint: Option<String>,
    pub region: String,
    pub keys: StaticKeys,
}

const ENDPOINT: &str = "AWS_ENDPOINT_URL";
const REGION: &str = "AWS_REGION";
const KEY_ID: &str = "AWS_ACCESS_KEY_ID";
const SECRET: &str = "AWS_SECRET_ACCESS_KEY";
const TOKEN: &str = "AWS_SESSION_TOKEN";
const EXPIRES: &str = "PGDRILL_S3_EXPIRES";

/// The file's text: one `KEY=VALUE` line per setting.
pub fn render(h: &Handoff) -> String {
    let mut out = String::from("# pgdrill: object-storage credentials for wal-fetch; removed when the gate opens\n");
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k}={v}\n"));
    if let Some(e) = &h.endpoint {
        line(ENDPOINT, e);
    }
    line(REGION, &h.region);
    line(KEY_ID, &h.keys.key_id);
    line(SECRET, &h.keys.secret);
    if let Some(t) = &h.keys.token {
        line(TOKEN, t);
    }
    if let Some(x) = h.keys.expires {
        line(EXPIRES, &x.to_string());
    }
    out
}

/// Parse the file's text strictly: known keys once each, no empty or
/// multi-line values.
pub fn parse(text: &str) -> std::result::Result<Handoff, String> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let l = raw.trim_end_matches('\r');
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (k, v) = l.split_once('=').ok_or_else(|| format!("line {}: not KEY=VALUE", n + 1))?;
        if ![ENDPOINT, REGION, KEY_ID, SECRET, TOKEN, EXPIRES].contains(&k) {
            return Err(format!("line {}: unknown key {k:?}", n + 1));
        }
        if v.is_empty() || v.chars().any(char::is_control) {
            return Err(format!("line {}: {k} has an empty or invalid value", n + 1));
        }
        if seen.iter().any(|(s, _)| *s == k) {
            return Err(format!("line {}: {k} given twice", n + 1));
        }
        seen.push((k, v));
    }
    let get = |k: &str| seen.iter().find(|(s, _)| *s == k).map(|(_, v)| v.to_string());
    let need = |k: &str| get(k).ok_or_else(|| format!("{k} is missing"));
    let expires =
        get(EXPIRES).map(|v| v.parse::<i64>().map_err(|_| format!("{EXPIRES} is not a number"))).transpose()?;
    Ok(Handoff {
        endpoint: get(ENDPOINT),
        region: need(REGION)?,
        keys: StaticKeys { key_id: need(KEY_ID)?, secret: need(SECRET)?, token: get(TOKEN), expires },
    })
}

/// Write `h` as `name` in `dir`, new, mode 0600, owned by `owner` (the
/// receiving user; `None`: this process's user).
pub fn write(h: &Handoff, dir: &Dir, name: &Path, owner: Option<&OsUser>) -> Result<PathBuf> {
    let path = dir.path().join(name);
    let mut f = dir.create_new(name, 0o600, owner).map_err(|e| Error::io(&path, "create the credential file", e))?;
    f.write_all(render(h).as_bytes()).map_err(|e| Error::io(&path, "write the credential file", e))?;
    f.sync_all().map_err(|e| Error::io(&path, "sync the credential file", e))?;
    Ok(path)
}

/// Read a credential file written for this process's user: a regular
/// file (no link followed) that this user owns and nobody else may read.
pub fn read(path: &Path) -> Result<Handoff> {
    let bad = |reason: String| Error::CredentialFile { path: path.to_path_buf(), reason };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| bad(format!("cannot open it: {e}")))?;
    let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(bad(format!("owned by uid {}, not by this user (uid {me})", meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(bad(format!("mode {:04o}: others may read it; it must be 0600", meta.mode() & 0o7777)));
    }
    if meta.size() > MAX_SIZE {
        return Err(bad(format!("{} bytes: too large for a credential file", meta.size())));
    }
    let mut text = String::new();
    Read::by_ref(&mut f).take(MAX_SIZE).read_to_string(&mut text).map_err(|e| bad(e.to_string()))?;
    parse(&text).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Handoff {
        Handoff {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: "eu-west-1".into(),
            keys: StaticKeys {
                key_id: "AKIAEXAMPLE".into(),
                secret: "s3cr3t/with+chars=".into(),
                token: Some("tok".into()),
                expires: Some(1_900_000_000),
            },
        }
    }

    #[test]
    fn round_trips_and_never_debug_prints_secrets() {
        let h = sample();
        assert_eq!(parse(&render(&h)), Ok(h.clone()));
        let plain = Handoff { endpoint: None, keys: StaticKeys { token: None, expires: None, ..h.keys.clone() }, ..h };
        assert_eq!(parse(&render(&plain)), Ok(plain.clone()));
        let dbg = format!("{:?}", sample());
        assert!(!dbg.contains("s3cr3t") && !dbg.contains("tok\""), "{dbg}");
        assert!(sample().keys.expired(1_900_000_000 - 30));
        assert!(!sample().keys.expired(1_800_000_000));
        assert!(!plain.keys.expired(i64::MAX - 100));
    }

    #[test]
    fn parsing_is_strict() {
        let base = "AWS_REGION=r\nAWS_ACCESS_KEY_ID=k\nAWS_SECRET_ACCESS_KEY=s\n";
        assert!(parse(base).is_ok());
        for bad in [
            "AWS_REGION=r\nAWS_ACCESS_KEY_ID=k\n",
            &format!("{base}AWS_REGION=again\n"),
            &format!("{base}LD_PRELOAD=/tmp/x.so\n"),
            &format!("{base}AWS_SESSION_TOKEN=\n"),
            &format!("{base}junk\n"),
            &format!("{base}PGDRILL_S3_EXPIRES=soon\n"),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_private_regular_file_of_ones_own_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let path = write(&sample(), &dir, Path::new("s3.env"), None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&path).unwrap(), sample());
        // Never over an existing file.
        assert!(write(&sample(), &dir, Path::new("s3.env"), None).is_err());
        // Readable by others: refused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.to_string().contains("s3.env"), "{e}");
        assert!(matches!(&e, Error::CredentialFile { reason, .. } if reason.contains("0640")), "{e:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A link to it: refused, not followed.
        let link = tmp.path().join("link.env");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read(&link).is_err());
        // Someone else's file (as root, a file given away): refused.
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = read(&path).unwrap_err();
            assert!(e.to_string().contains("s3.env"), "{e}");
        }
    }
}
