//! Connections, as libpq makes them.
//!
//! A conninfo is a `key=value` string or a `postgresql://` URI
//! ([`crate::pg::conninfo`] parses it). Settings it leaves out come from
//! the service file (`service=`/`PGSERVICE`), then the `PG*` environment
//! variables, then libpq's defaults; a missing password is looked up in the
//! passfile (`passfile=`, `PGPASSFILE`, `~/.pgpass`). TLS uses OpenSSL with
//! libpq's files and defaults ([`tls`]); several hosts are tried in turn
//! with `target_session_attrs` ([`connect`]).
//!
//! Passwords are never shown: [`ConnSpec`]'s `Display` and `Debug` omit
//! them, and [`ConnSpec::to_server_conninfo`] never writes one.
//!
//! Warnings libpq prints on stderr (a password file others can read) go to
//! [`crate::observe::note`], and each [`ConnSpec`] also keeps its own.

mod connect;
mod resolve;
pub mod settings;
pub mod tls;

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;

use crate::error::{Error, Result};
use crate::pg::conninfo::{self, Options};
use crate::pg::pgpass;
pub use settings::{SessionAttrs, Settings, SslMode, Target};

/// A resolved connection target.
#[derive(Clone)]
pub struct ConnSpec {
    settings: Settings,
    /// What the user asked for: the conninfo, the service and the
    /// environment (not libpq's or pgdrill's defaults).
    given: Options,
    passfile: Option<Arc<PassFile>>,
    home: Option<PathBuf>,
    warnings: Vec<String>,
}

/// A password file read at parse time. It holds passwords, so it has no
/// `Debug`.
struct PassFile {
    path: PathBuf,
    text: String,
}

/// Tell the user, once per process, as libpq would on stderr: through
/// [`crate::observe`], whose sink the binary installs.
fn warn(message: &str) {
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = match WARNED.lock() {
        Ok(w) => w,
        Err(e) => e.into_inner(),
    };
    if !warned.iter().any(|w| w == message) {
        warned.push(message.to_string());
        crate::observe::note(crate::observe::Level::Warn, &format!("WARNING: {message}"));
    }
}

/// The default socket directory, as libpq builds commonly have it.
fn default_socket_dir() -> String {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "/tmp".into()
    }
}

/// pgdrill's default `connect_timeout` when none is given (libpq waits
/// forever).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl ConnSpec {
    /// Parse a conninfo string or URI and fill in the service, the
    /// environment, the defaults and the password file.
    pub fn parse(conninfo: &str) -> Result<ConnSpec> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = env("HOME").map(PathBuf::from).or_else(|| Some(crate::server::OsUser::current().home));
        let cwd = std::env::current_dir().ok();
        let spec = resolve::resolve(conninfo, &env, home.as_deref(), cwd.as_deref())?;
        for w in &spec.warnings {
            warn(w);
        }
        Ok(spec)
    }

    /// A Unix-socket connection (used for servers pgdrill runs itself).
    pub fn socket(dir: &Path, port: u16, user: &str, dbname: &str) -> ConnSpec {
        let mut settings = Settings::unix_socket(&dir.display().to_string(), port, user, dbname);
        settings.application_name = Some("pgdrill".into());
        settings.connect_timeout = Some(Duration::from_secs(5));
        ConnSpec { settings, given: Options::new(), passfile: None, home: None, warnings: Vec::new() }
    }

    pub fn user(&self) -> &str {
        self.settings.user.as_deref().unwrap_or_default()
    }

    pub fn set_dbname(&mut self, db: &str) {
        self.settings.dbname = Some(db.to_string());
        let _ = self.given.set("dbname", db);
    }

    pub fn dbname(&self) -> Option<&str> {
        self.settings.dbname.as_deref()
    }

    pub fn port(&self) -> u16 {
        self.settings.targets.first().map_or(5432, |t| t.port)
    }

    /// The first host: a socket directory, a host name or an address.
    pub fn host(&self) -> String {
        self.settings.targets.first().map(Target::name).unwrap_or_else(default_socket_dir)
    }

    /// The checked settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Warnings found while resolving (libpq prints them on stderr).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A password was given, or the password file has one for the first
    /// host.
    pub fn has_password(&self) -> bool {
        self.settings.targets.first().is_some_and(|t| self.password_for(t).is_some())
    }

    /// The password for one server: the given one, else the password
    /// file's first matching line (the host, or `localhost` for a socket).
    fn password_for(&self, t: &Target) -> Option<Cow<'_, str>> {
        if let Some(p) = &self.settings.password {
            return Some(Cow::Borrowed(p));
        }
        let file = self.passfile.as_ref()?;
        let user = self.user();
        let db = self.settings.dbname.as_deref().unwrap_or(user);
        pgpass::lookup(&file.text, &t.name(), t.port, db, user).map(Cow::Owned)
    }

    fn passfile_path(&self) -> Option<PathBuf> {
        self.passfile.as_ref().map(|f| f.path.clone()).or_else(|| self.settings.passfile.as_ref().map(PathBuf::from))
    }

    pub fn connect(&self) -> Result<Client> {
        connect::connect(self)
    }

    /// A libpq conninfo string for a server to use (`primary_conninfo`):
    /// host, port, user and dbname, then every other setting the user gave
    /// (TLS files, `passfile`, `target_session_attrs`, ...) in libpq's
    /// order. Never a password (nor `sslpassword`): the server finds it in
    /// its own passfile, so it is never written into a config file by us.
    /// A service is written out as its keywords.
    pub fn to_server_conninfo(&self) -> String {
        const WRITTEN_FIRST: [&str; 5] = ["host", "hostaddr", "port", "user", "dbname"];
        const NEVER: [&str; 2] = ["service", "servicefile"];
        let t = &self.settings.targets;
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if t.iter().any(|t| t.host.is_some()) {
            pairs.push(("host", t.iter().map(|t| t.host.clone().unwrap_or_default()).collect::<Vec<_>>().join(",")));
        }
        if t.iter().any(|t| t.hostaddr.is_some()) {
            let addrs: Vec<String> = t.iter().map(|t| t.hostaddr.map(|a| a.to_string()).unwrap_or_default()).collect();
            pairs.push(("hostaddr", addrs.join(",")));
        }
        let ports: Vec<String> = t.iter().map(|t| t.port.to_string()).collect();
        let same = ports.windows(2).all(|w| w[0] == w[1]);
        pairs.push(("port", if same { ports.first().cloned().unwrap_or_default() } else { ports.join(",") }));
        pairs.push(("user", self.user().to_string()));
        if let Some(d) = &self.settings.dbname {
            pairs.push(("dbname", d.clone()));
        }
        for (k, v) in self.given.iter() {
            let secret = conninfo::keyword(k).is_none_or(|k| k.secret);
            if !secret && !WRITTEN_FIRST.contains(&k) && !NEVER.contains(&k) {
                pairs.push((k, v.to_string()));
            }
        }
        pairs.iter().map(|(k, v)| format!("{k}={}", quote_conninfo(v))).collect::<Vec<_>>().join(" ")
    }
}

/// Quote a conninfo value if it needs it.
pub fn quote_conninfo(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    conninfo::quote(v)
}

impl fmt::Display for ConnSpec {
    /// host, port, user and dbname, then sslmode and target_session_attrs
    /// when given; never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.settings.targets;
        let hosts: Vec<String> = t.iter().map(Target::name).collect();
        let ports: Vec<String> = t.iter().map(|t| t.port.to_string()).collect();
        let same = ports.windows(2).all(|w| w[0] == w[1]);
        let port = if same { ports.first().cloned().unwrap_or_default() } else { ports.join(",") };
        write!(f, "host={} port={port} user={}", hosts.join(","), self.user())?;
        if let Some(d) = &self.settings.dbname {
            write!(f, " dbname={d}")?;
        }
        if self.given.is_set("sslmode") || self.given.is_set("sslrootcert") {
            write!(f, " sslmode={}", self.settings.sslmode.as_str())?;
        }
        if self.settings.session_attrs != SessionAttrs::Any {
            write!(f, " target_session_attrs={}", self.settings.session_attrs.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnSpec({self})")
    }
}

/// Run one query that returns a single text value (NULL as `None`).
pub fn query_text(client: &mut Client, target: &str, sql: &str) -> Result<Option<String>> {
    let row = client.query_one(sql, &[]).map_err(|source| Error::Sql {
        target: target.to_string(),
        what: first_words(sql),
        source,
    })?;
    Ok(row.get::<_, Option<String>>(0))
}

/// The first words of a statement, for error messages.
pub fn first_words(sql: &str) -> String {
    let s: String = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
    format!("query `{s}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_shows_the_password() {
        let c = ConnSpec::parse("host=/tmp port=6000 user=u password=s3cret dbname=d sslpassword=k3y").unwrap();
        let shown = format!("{c} {c:?} {}", c.to_server_conninfo());
        assert!(!shown.contains("s3cret") && !shown.contains("k3y"), "{shown}");
        assert!(c.has_password());
        assert_eq!(c.port(), 6000);
        assert_eq!(c.host(), "/tmp");
        let u = ConnSpec::parse("postgresql://app:pw@db.example:5433/sales").unwrap();
        assert_eq!(u.to_server_conninfo(), "host=db.example port=5433 user=app dbname=sales");
        assert!(!format!("{u}").contains("pw"));
        assert!(ConnSpec::parse("host='unterminated").is_err());
        assert!(ConnSpec::parse("host=/tmp sslmode=disable").is_ok());
        assert!(ConnSpec::parse("host=/tmp sslmode=allow").is_ok());
        assert!(ConnSpec::parse("postgresql://u@db/x?sslmode=allow").is_ok());
        for c in ["host=db sslmode=require", "host=db sslmode=verify-full", "postgresql://db/x?sslmode=verify-ca"] {
            ConnSpec::parse(c).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
    }

    #[test]
    fn server_conninfo_keeps_what_was_asked_for() {
        let c = ConnSpec::parse(
            "host=db1,db2 port=5432 user=rep password=pw sslmode=verify-full sslrootcert=/etc/ca.crt \
             passfile=/var/lib/postgresql/.pgpass target_session_attrs=read-write application_name=walrcv \
             sslpassword=x",
        )
        .unwrap();
        assert_eq!(
            c.to_server_conninfo(),
            "host=db1,db2 port=5432 user=rep passfile=/var/lib/postgresql/.pgpass application_name=walrcv \
             sslmode=verify-full sslrootcert=/etc/ca.crt target_session_attrs=read-write"
        );
        assert_eq!(
            c.to_string(),
            "host=db1,db2 port=5432 user=rep sslmode=verify-full target_session_attrs=read-write"
        );
        // It parses back to the same targets.
        let again = ConnSpec::parse(&c.to_server_conninfo()).unwrap();
        assert_eq!(again.settings().targets, c.settings().targets);
        assert_eq!(again.settings().sslmode, SslMode::VerifyFull);
    }

    #[test]
    fn socket_specs() {
        let c = ConnSpec::socket(Path::new("/run/pg dir"), 5433, "postgres", "db");
        assert_eq!(c.to_string(), "host=/run/pg dir port=5433 user=postgres dbname=db");
        assert_eq!(c.to_server_conninfo(), "host='/run/pg dir' port=5433 user=postgres dbname=db");
        assert_eq!(c.settings().sslmode, SslMode::Disable);
        assert!(c.settings().targets[0].is_unix());
        assert!(!c.has_password());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_conninfo("abc"), "abc");
        assert_eq!(quote_conninfo("a b"), "'a b'");
        assert_eq!(quote_conninfo("it's"), "'it\\'s'");
        assert_eq!(quote_conninfo(""), "''");
    }
}
