//! From a conninfo to a [`ConnSpec`]: the service file, the environment,
//! the defaults and the password file, with libpq's precedence
//! (`conninfo_add_defaults()` and `parseServiceInfo()` in
//! `src/interfaces/libpq/fe-connect.c`):
//!
//! 1. keywords in the conninfo or URI;
//! 2. the service's keywords (`service=`, else `PGSERVICE`), from
//!    `servicefile=`/`PGSERVICEFILE`/`~/.pg_service.conf`, else
//!    `$PGSYSCONFDIR/pg_service.conf`;
//! 3. the `PG*` environment variables;
//! 4. the defaults (libpq's, and pgdrill's connect_timeout and
//!    application_name).
//!
//! The environment, the home directory and the working directory are
//! passed in, so tests need not change the process's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::settings::Settings;
use super::{default_socket_dir, ConnSpec, PassFile, DEFAULT_CONNECT_TIMEOUT};
use crate::error::{Error, Result};
use crate::pg::conninfo::{self, ConninfoError, Options, KEYWORDS};

/// Where libpq looks for the system-wide service file when `PGSYSCONFDIR`
/// is not set (Debian's and Ubuntu's libpq).
pub const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// Keywords that name files, made absolute so that a server given them in
/// `primary_conninfo` finds the same files.
const PATH_KEYWORDS: [&str; 7] =
    ["passfile", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslcrldir", "sslkeylogfile"];

pub(super) fn resolve(
    conninfo: &str,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    cwd: Option<&Path>,
) -> Result<ConnSpec> {
    let mut given = conninfo::parse(conninfo)?;
    let service = given.value("service").map(str::to_string).or_else(|| env("PGSERVICE"));
    if let Some(service) = service {
        let file = given.value("servicefile").map(str::to_string).or_else(|| env("PGSERVICEFILE"));
        let from_service = service_options(&service, file, home, env("PGSYSCONFDIR"))?;
        given.fill_from(&from_service);
    }
    for k in KEYWORDS {
        if let Some(v) = k.env.filter(|_| !given.is_set(k.name)).and_then(env) {
            given.set(k.name, v)?;
        }
    }
    if let Some(cwd) = cwd {
        for k in PATH_KEYWORDS {
            let system_roots = |v: &str| k == "sslrootcert" && v == "system";
            if let Some(v) = given.value(k).filter(|v| Path::new(v).is_relative() && !system_roots(v)) {
                let abs = cwd.join(v).display().to_string();
                given.set(k, abs)?;
            }
        }
    }
    let mut settings = Settings::from_options(&given, &default_socket_dir())?;
    if settings.user.is_none() {
        settings.user = Some(crate::server::OsUser::current_name());
    }
    if !given.is_set("connect_timeout") {
        settings.connect_timeout = Some(DEFAULT_CONNECT_TIMEOUT);
    }
    let mut warnings = Vec::new();
    let passfile = if settings.password.is_none() {
        let path = settings.passfile.as_ref().map(PathBuf::from).or_else(|| home.map(|h| h.join(".pgpass")));
        path.and_then(|p| read_passfile(&p, &mut warnings))
    } else {
        None
    };
    Ok(ConnSpec { settings, given, passfile: passfile.map(Arc::new), home: home.map(Path::to_path_buf), warnings })
}

/// The service's settings: the user's file first, then the system's.
fn service_options(
    service: &str,
    user_file: Option<String>,
    home: Option<&Path>,
    sysconfdir: Option<String>,
) -> Result<Options> {
    let mut searched = Vec::new();
    let user_file = user_file.map(PathBuf::from).or_else(|| home.map(|h| h.join(".pg_service.conf")));
    let system_file = PathBuf::from(sysconfdir.unwrap_or_else(|| DEFAULT_SYSCONFDIR.into())).join("pg_service.conf");
    for file in user_file.into_iter().chain([system_file]) {
        if !file.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(|e| Error::ReadInput { path: file.clone(), source: e })?;
        let found = conninfo::parse_service_file(&text, service).map_err(|e| match e {
            ConninfoError::ServiceFile { line, reason, .. } => {
                ConninfoError::ServiceFile { path: file.display().to_string(), line, reason }
            }
            other => other,
        })?;
        if let Some(o) = found {
            return Ok(o);
        }
        searched.push(file.display().to_string());
    }
    Err(ConninfoError::ServiceNotFound { service: service.to_string(), searched }.into())
}

/// Read a password file, as libpq does: a file that is missing is no
/// error; one that is not a plain file, or that the group or others may
/// access, is ignored with libpq's warning.
fn read_passfile(path: &Path, warnings: &mut Vec<String>) -> Option<PassFile> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    let shown = path.display();
    if !meta.is_file() {
        warnings.push(format!("password file \"{shown}\" is not a plain file"));
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "password file \"{shown}\" has group or world access; permissions should be u=rw (0600) or less"
        ));
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(PassFile { path: path.to_path_buf(), text })
}

/// The connect_timeout that applies.
#[cfg(test)]
fn timeout_of(spec: &ConnSpec) -> Option<std::time::Duration> {
    spec.settings.connect_timeout
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::conn::SslMode;

    struct World {
        dir: tempfile::TempDir,
        env: HashMap<String, String>,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            // No system service file unless a test writes one.
            let env = HashMap::from([("PGSYSCONFDIR".to_string(), dir.path().join("etc").display().to_string())]);
            World { dir, env }
        }

        fn env(mut self, k: &str, v: &str) -> World {
            self.env.insert(k.into(), v.into());
            self
        }

        fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        }

        fn resolve(&self, conninfo: &str) -> Result<ConnSpec> {
            let env = |k: &str| self.env.get(k).cloned();
            resolve(conninfo, &env, Some(self.dir.path()), Some(Path::new("/work")))
        }
    }

    #[test]
    fn precedence_conninfo_then_service_then_environment() {
        let w = World::new().env("PGHOST", "envhost").env("PGPORT", "7000").env("PGUSER", "envuser");
        w.file(".pg_service.conf", "[prod]\nhost=svchost\nport=6000\nsslmode=verify-full\n", 0o644);
        let s = w.resolve("service=prod port=5999").unwrap();
        assert_eq!(s.host(), "svchost");
        assert_eq!(s.port(), 5999);
        assert_eq!(s.user(), "envuser");
        assert_eq!(s.settings().sslmode, SslMode::VerifyFull);
        // PGSERVICE names the service when the conninfo does not.
        let w = w.env("PGSERVICE", "prod");
        assert_eq!(w.resolve("").unwrap().port(), 6000);
        assert_eq!(w.resolve("host=mine").unwrap().host(), "mine");
        // Without a service, the environment fills in.
        let w = World::new().env("PGHOST", "envhost").env("PGSSLMODE", "require");
        let s = w.resolve("").unwrap();
        assert_eq!(s.host(), "envhost");
        assert_eq!(s.settings().sslmode, SslMode::Require);
        // An explicit empty value keeps the environment out, as in libpq.
        assert_ne!(w.resolve("host=''").unwrap().host(), "envhost");
    }

    #[test]
    fn service_file_lookup() {
        let w = World::new();
        let f = w.file("custom.conf", "[a]\nhost=from-custom\n", 0o644);
        w.file("etc/pg_service.conf", "[b]\nhost=from-system\n", 0o644);
        let w = w.env("PGSERVICEFILE", &f.display().to_string());
        assert_eq!(w.resolve("service=a").unwrap().host(), "from-custom");
        // Not in the user's file: the system's file.
        assert_eq!(w.resolve("service=b").unwrap().host(), "from-system");
        // The servicefile keyword (libpq 18) wins over PGSERVICEFILE.
        let g = w.file("other.conf", "[a]\nhost=from-keyword\n", 0o644);
        assert_eq!(w.resolve(&format!("service=a servicefile={}", g.display())).unwrap().host(), "from-keyword");
        let e = w.resolve("service=nope").unwrap_err();
        assert!(e.to_string().contains("definition of service \"nope\" not found"), "{e}");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert!(e.hint().unwrap().contains("custom.conf"), "{:?}", e.hint());
        let bad = w.file("bad.conf", "[a]\nhost = spaced\n", 0o644);
        let e = w.resolve(&format!("service=a servicefile={}", bad.display())).unwrap_err();
        assert!(e.to_string().contains("bad.conf, line 2"), "{e}");
    }

    #[test]
    fn passfile_lookup_and_warning() {
        let w = World::new();
        w.file(".pgpass", "db1:5432:*:app:from-home\n", 0o600);
        let s = w.resolve("host=db1 user=app").unwrap();
        assert!(s.has_password());
        assert!(s.warnings().is_empty());
        assert_eq!(s.password_for(&s.settings().targets[0]).as_deref(), Some("from-home"));
        // Per host: the second host has no line.
        let s = w.resolve("host=db1,db2 user=app").unwrap();
        assert_eq!(s.password_for(&s.settings().targets[1]).as_deref(), None);
        // passfile= and PGPASSFILE choose another file.
        let other = w.file("other.pass", "*:*:*:*:from-other\n", 0o600);
        let s = w.resolve(&format!("host=db1 user=app passfile={}", other.display())).unwrap();
        assert_eq!(s.password_for(&s.settings().targets[0]).as_deref(), Some("from-other"));
        // Group or world access: ignored, with libpq's warning.
        let open = w.file("open.pass", "*:*:*:*:leaked\n", 0o644);
        let s = w.resolve(&format!("host=db1 passfile={}", open.display())).unwrap();
        assert!(!s.has_password());
        assert_eq!(
            s.warnings(),
            [format!(
                "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
                open.display()
            )]
        );
        // A given password wins, and the file is not read.
        let s = w.resolve(&format!("host=db1 password=given passfile={}", open.display())).unwrap();
        assert!(s.warnings().is_empty());
        assert_eq!(s.password_for(&s.settings().targets[0]).as_deref(), Some("given"));
    }

    #[test]
    fn defaults_and_paths() {
        let w = World::new();
        let s = w.resolve("host=h sslrootcert=ca.crt sslcert=system").unwrap();
        assert_eq!(timeout_of(&s), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(s.settings().tls.rootcert.as_deref(), Some("/work/ca.crt"));
        assert_eq!(s.settings().tls.cert.as_deref(), Some("/work/system"));
        assert_eq!(w.resolve("sslrootcert=system").unwrap().settings().tls.rootcert.as_deref(), Some("system"));
        assert_eq!(timeout_of(&w.resolve("connect_timeout=0").unwrap()), None);
        assert!(!w.resolve("").unwrap().user().is_empty());
    }
}
