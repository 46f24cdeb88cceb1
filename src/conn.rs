//! Connections, following libpq's conventions.
//!
//! A conninfo is a `key=value` string or a `postgresql://` URI, parsed by the
//! `postgres` crate. Settings it leaves out come from the `PG*` environment
//! variables, then libpq's defaults; a missing password is looked up in
//! `PGPASSFILE` or `~/.pgpass`. Passwords are never shown: [`ConnSpec`]'s
//! `Display` omits them.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};
use crate::pg::pgpass;

/// A resolved connection target.
#[derive(Clone)]
pub struct ConnSpec {
    config: Config,
}

/// The default socket directory, as libpq builds commonly have it.
fn default_socket_dir() -> String {
    if Path::new("/var/run/postgresql").is_dir() {
        "/var/run/postgresql".into()
    } else {
        "/tmp".into()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ConnSpec {
    /// Parse a conninfo string or URI and fill in the environment, the
    /// defaults and the password file.
    pub fn parse(conninfo: &str) -> Result<ConnSpec> {
        let requested = requested_sslmode(conninfo);
        if let Some(mode) = requested.clone().or_else(|| env("PGSSLMODE")) {
            if !matches!(mode.as_str(), "disable" | "allow" | "prefer") {
                return Err(Error::usage(
                    format!("sslmode={mode}: pgdrill does not support TLS connections yet"),
                    Some("use sslmode=disable or prefer (the connection is then unencrypted)".into()),
                ));
            }
        }
        // libpq's `allow` (try without TLS first) is what we do anyway; the
        // postgres crate does not know the word.
        let conninfo = if requested.as_deref() == Some("allow") {
            conninfo.replace("sslmode=allow", "sslmode=disable")
        } else {
            conninfo.to_string()
        };
        let mut config = Config::from_str(&conninfo).map_err(|e| {
            Error::usage(
                format!("invalid connection string: {e}"),
                Some("use key=value pairs (host=... port=... user=...) or a postgresql:// URI".to_string()),
            )
        })?;
        if config.get_hosts().is_empty() {
            let hosts = env("PGHOST").unwrap_or_else(default_socket_dir);
            for h in hosts.split(',') {
                config.host(h);
            }
        }
        if config.get_ports().is_empty() {
            let port = match env("PGPORT") {
                Some(p) => p.parse::<u16>().map_err(|_| Error::usage(format!("invalid PGPORT {p:?}"), None))?,
                None => 5432,
            };
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER").unwrap_or_else(crate::server::OsUser::current_name);
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            if let Some(db) = env("PGDATABASE") {
                config.dbname(&db);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name(&env("PGAPPNAME").unwrap_or_else(|| "pgdrill".into()));
        }
        if config.get_connect_timeout().is_none() {
            let secs = env("PGCONNECT_TIMEOUT").and_then(|s| s.parse::<u64>().ok()).unwrap_or(10);
            config.connect_timeout(Duration::from_secs(secs.max(2)));
        }
        if config.get_options().is_none() {
            if let Some(o) = env("PGOPTIONS") {
                config.options(&o);
            }
        }
        if config.get_password().is_none() {
            if let Some(p) = env("PGPASSWORD").or_else(|| Self::password_from_file(&config)) {
                config.password(p);
            }
        }
        Ok(ConnSpec { config })
    }

    /// A Unix-socket connection (used for servers pgdrill runs itself).
    pub fn socket(dir: &Path, port: u16, user: &str, dbname: &str) -> ConnSpec {
        let mut config = Config::new();
        config
            .host_path(dir)
            .port(port)
            .user(user)
            .dbname(dbname)
            .application_name("pgdrill")
            .connect_timeout(Duration::from_secs(5));
        ConnSpec { config }
    }

    fn password_from_file(config: &Config) -> Option<String> {
        let path = env("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
        let meta = std::fs::metadata(&path).ok()?;
        // libpq ignores a password file others can read.
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let entries = pgpass::parse(&text);
        let host = match config.get_hosts().first()? {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or_default();
        let db = config.get_dbname().unwrap_or(user);
        pgpass::lookup(&entries, &host, port, db, user).map(str::to_string)
    }

    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub fn set_dbname(&mut self, db: &str) {
        self.config.dbname(db);
    }

    pub fn port(&self) -> u16 {
        self.config.get_ports().first().copied().unwrap_or(5432)
    }

    /// The first host: a socket directory or a host name.
    pub fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => default_socket_dir(),
        }
    }

    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }

    pub fn connect(&self) -> Result<Client> {
        self.config.connect(NoTls).map_err(|source| Error::Connect { target: self.to_string(), source })
    }

    /// A libpq conninfo string for a server to use (`primary_conninfo`):
    /// host, port, user, dbname and application_name. The password is left
    /// out on purpose: the server should find it in its own .pgpass or
    /// passfile, so it is never written into a config file by us.
    pub fn to_server_conninfo(&self) -> String {
        let mut parts = vec![format!("host={}", quote_conninfo(&self.host())), format!("port={}", self.port())];
        if let Some(u) = self.config.get_user() {
            parts.push(format!("user={}", quote_conninfo(u)));
        }
        if let Some(d) = self.config.get_dbname() {
            parts.push(format!("dbname={}", quote_conninfo(d)));
        }
        parts.join(" ")
    }
}

/// The `sslmode` a conninfo string or URI asks for, if any.
fn requested_sslmode(conninfo: &str) -> Option<String> {
    let t = conninfo.trim();
    if t.starts_with("postgres://") || t.starts_with("postgresql://") {
        let query = t.split_once('?')?.1;
        return query.split('&').find_map(|kv| kv.strip_prefix("sslmode=")).map(str::to_string);
    }
    t.split_whitespace().find_map(|kv| kv.strip_prefix("sslmode=")).map(|v| v.trim_matches('\'').to_string())
}

/// Quote a conninfo value if it needs it.
pub fn quote_conninfo(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    let mut s = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

impl fmt::Display for ConnSpec {
    /// host, port, user and dbname; never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host={} port={} user={}", self.host(), self.port(), self.user())?;
        if let Some(d) = self.config.get_dbname() {
            write!(f, " dbname={d}")?;
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
        let c = ConnSpec::parse("host=/tmp port=6000 user=u password=s3cret dbname=d").unwrap();
        let shown = format!("{c} {c:?} {}", c.to_server_conninfo());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(c.has_password());
        assert_eq!(c.port(), 6000);
        assert_eq!(c.host(), "/tmp");
        let u = ConnSpec::parse("postgresql://app:pw@db.example:5433/sales").unwrap();
        assert_eq!(u.to_server_conninfo(), "host=db.example port=5433 user=app dbname=sales");
        assert!(!format!("{u}").contains("pw"));
        assert!(ConnSpec::parse("host='unterminated").is_err());
        // TLS is refused with a clear message, not a parse error.
        for c in ["host=db sslmode=require", "host=db sslmode=verify-full", "postgresql://db/x?sslmode=verify-ca"] {
            let e = ConnSpec::parse(c).unwrap_err();
            assert!(e.to_string().contains("does not support TLS"), "{c}: {e}");
        }
        assert!(ConnSpec::parse("host=/tmp sslmode=disable").is_ok());
        assert!(ConnSpec::parse("host=/tmp sslmode=allow").is_ok());
        assert!(ConnSpec::parse("postgresql://u@db/x?sslmode=allow").is_ok());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_conninfo("abc"), "abc");
        assert_eq!(quote_conninfo("a b"), "'a b'");
        assert_eq!(quote_conninfo("it's"), "'it\\'s'");
        assert_eq!(quote_conninfo(""), "''");
    }
}
