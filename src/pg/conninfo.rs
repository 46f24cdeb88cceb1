//! libpq connection settings as text: `key=value` conninfo strings,
//! `postgresql://` URIs and service files (`pg_service.conf`).
//!
//! The keywords, their environment variables and the three grammars are
//! those of `src/interfaces/libpq/fe-connect.c` (`PQconninfoOptions`,
//! `conninfo_parse()`, `conninfo_uri_parse_options()`,
//! `parseServiceFile()`), PostgreSQL 10 to 18. This module only parses: what
//! a value means, and where files and the environment come in, is
//! `crate::conn`'s business.
//!
//! Error messages never repeat a value that may be secret (passwords, whole
//! URIs).

use std::fmt;

/// One libpq connection keyword.
#[derive(Clone, Copy, Debug)]
pub struct Keyword {
    pub name: &'static str,
    /// The environment variable libpq falls back to.
    pub env: Option<&'static str>,
    /// Never shown, logged or written into configuration.
    pub secret: bool,
}

const fn kw(name: &'static str, env: Option<&'static str>) -> Keyword {
    Keyword { name, env, secret: false }
}

const fn secret(name: &'static str, env: Option<&'static str>) -> Keyword {
    Keyword { name, env, secret: true }
}

/// Every keyword libpq 18 knows, in the order of its own table (which is
/// the order `PQconninfo()` and so `pg_basebackup -R` list them).
pub const KEYWORDS: &[Keyword] = &[
    kw("service", Some("PGSERVICE")),
    kw("servicefile", Some("PGSERVICEFILE")),
    kw("user", Some("PGUSER")),
    secret("password", Some("PGPASSWORD")),
    kw("passfile", Some("PGPASSFILE")),
    kw("channel_binding", Some("PGCHANNELBINDING")),
    kw("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    kw("dbname", Some("PGDATABASE")),
    kw("host", Some("PGHOST")),
    kw("hostaddr", Some("PGHOSTADDR")),
    kw("port", Some("PGPORT")),
    kw("client_encoding", Some("PGCLIENTENCODING")),
    kw("options", Some("PGOPTIONS")),
    kw("application_name", Some("PGAPPNAME")),
    kw("fallback_application_name", None),
    kw("keepalives", None),
    kw("keepalives_idle", None),
    kw("keepalives_interval", None),
    kw("keepalives_count", None),
    kw("tcp_user_timeout", None),
    kw("sslmode", Some("PGSSLMODE")),
    kw("sslnegotiation", Some("PGSSLNEGOTIATION")),
    kw("sslcompression", Some("PGSSLCOMPRESSION")),
    kw("sslcert", Some("PGSSLCERT")),
    kw("sslkey", Some("PGSSLKEY")),
    kw("sslkeylogfile", None),
    kw("sslcertmode", Some("PGSSLCERTMODE")),
    secret("sslpassword", None),
    kw("sslrootcert", Some("PGSSLROOTCERT")),
    kw("sslcrl", Some("PGSSLCRL")),
    kw("sslcrldir", Some("PGSSLCRLDIR")),
    kw("sslsni", Some("PGSSLSNI")),
    kw("requirepeer", Some("PGREQUIREPEER")),
    kw("require_auth", Some("PGREQUIREAUTH")),
    kw("min_protocol_version", Some("PGMINPROTOCOLVERSION")),
    kw("max_protocol_version", Some("PGMAXPROTOCOLVERSION")),
    kw("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    kw("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    kw("gssencmode", Some("PGGSSENCMODE")),
    kw("krbsrvname", Some("PGKRBSRVNAME")),
    kw("gsslib", Some("PGGSSLIB")),
    kw("gssdelegation", Some("PGGSSDELEGATION")),
    kw("replication", None),
    kw("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    kw("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    secret("scram_client_key", None),
    secret("scram_server_key", None),
    kw("oauth_issuer", None),
    kw("oauth_client_id", None),
    secret("oauth_client_secret", None),
    kw("oauth_scope", None),
];

fn index(name: &str) -> Option<usize> {
    KEYWORDS.iter().position(|k| k.name == name)
}

/// The keyword of that name, if libpq knows it.
pub fn keyword(name: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.name == name)
}

/// What went wrong with connection settings. Always exit 2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    #[error("invalid connection option \"{keyword}\"")]
    UnknownKeyword { keyword: String },
    #[error("missing \"=\" after \"{after}\" in the connection string")]
    MissingEquals { after: String },
    #[error("unterminated quoted string in the connection string")]
    Unterminated,
    #[error("invalid connection URI: {reason}")]
    Uri { reason: String },
    #[error("invalid URI query parameter \"{param}\"")]
    UriParam { param: String },
    #[error("invalid {keyword} value \"{value}\": {expected}")]
    BadValue { keyword: String, value: String, expected: String },
    #[error("{setting}: {reason}")]
    Unsupported { setting: String, reason: String, hint: String },
    #[error("{message}")]
    Conflict { message: String },
    #[error("definition of service \"{service}\" not found")]
    ServiceNotFound { service: String, searched: Vec<String> },
    #[error("{path}, line {line}: {reason}")]
    ServiceFile { path: String, line: usize, reason: String },
}

impl ConninfoError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConninfoError::UnknownKeyword { .. } | ConninfoError::UriParam { .. } => {
                Some("use the keywords libpq knows (host, port, user, dbname, sslmode, ...)".into())
            }
            ConninfoError::MissingEquals { .. } | ConninfoError::Unterminated => {
                Some("use key=value pairs (host=... port=... user=...), quoting values with spaces: key='a b'".into())
            }
            ConninfoError::Uri { .. } => {
                Some("use postgresql://[user@][host][:port][,...][/dbname][?key=value&...]".into())
            }
            ConninfoError::Unsupported { hint, .. } => Some(hint.clone()),
            ConninfoError::ServiceNotFound { searched, .. } => Some(if searched.is_empty() {
                "no service file exists: set PGSERVICEFILE, or create ~/.pg_service.conf".into()
            } else {
                format!("add a [section] for it to one of: {}", searched.join(", "))
            }),
            ConninfoError::ServiceFile { .. } => {
                Some("service files hold [name] lines and keyword=value lines (no spaces around =)".into())
            }
            ConninfoError::BadValue { .. } | ConninfoError::Conflict { .. } => None,
        }
    }
}

/// Settings by keyword. A keyword set to the empty string counts as set:
/// as in libpq it keeps the environment and the service from filling it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Options {
    vals: Vec<Option<String>>,
}

impl Options {
    pub fn new() -> Options {
        Options { vals: vec![None; KEYWORDS.len()] }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        index(key).and_then(|i| self.vals.get(i)?.as_deref())
    }

    /// The value, unless missing or empty.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Set a keyword (a later setting replaces an earlier one, as in libpq).
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> Result<(), ConninfoError> {
        let i = index(key).ok_or_else(|| ConninfoError::UnknownKeyword { keyword: key.to_string() })?;
        if self.vals.len() < KEYWORDS.len() {
            self.vals.resize(KEYWORDS.len(), None);
        }
        self.vals[i] = Some(value.into());
        Ok(())
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(v) = index(key).and_then(|i| self.vals.get_mut(i)) {
            *v = None;
        }
    }

    /// Fill every keyword not set here from `other`.
    pub fn fill_from(&mut self, other: &Options) {
        for (k, v) in other.iter() {
            if !self.is_set(k) {
                let _ = self.set(k, v);
            }
        }
    }

    /// The settings, in libpq's keyword order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        KEYWORDS.iter().zip(self.vals.iter()).filter_map(|(k, v)| Some((k.name, v.as_deref()?)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Debug for Options {
    /// Secrets show as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.iter() {
            let secret = keyword(k).is_some_and(|k| k.secret);
            m.entry(&k, &if secret { "***" } else { v });
        }
        m.finish()
    }
}

/// Parse a conninfo string or a `postgresql://` (or `postgres://`) URI.
pub fn parse(s: &str) -> Result<Options, ConninfoError> {
    match uri_body(s) {
        Some(body) => parse_uri(body),
        None => parse_keyvalue(s),
    }
}

/// Whether `s` is a URI rather than key=value pairs.
pub fn is_uri(s: &str) -> bool {
    uri_body(s).is_some()
}

fn uri_body(s: &str) -> Option<&str> {
    s.strip_prefix("postgresql://").or_else(|| s.strip_prefix("postgres://"))
}

/// libpq's isspace(): the C locale's white space.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// `key = value` pairs separated by white space; values may be quoted
/// with `'`, and `\` escapes the next character, quoted or not.
fn parse_keyvalue(s: &str) -> Result<Options, ConninfoError> {
    let mut opts = Options::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| is_space(*c)).is_some() {}
        if it.peek().is_none() {
            return Ok(opts);
        }
        let mut name = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !is_space(*c)) {
            name.push(c);
        }
        while it.next_if(|c| is_space(*c)).is_some() {}
        if it.next() != Some('=') {
            return Err(ConninfoError::MissingEquals { after: name });
        }
        while it.next_if(|c| is_space(*c)).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(ConninfoError::Unterminated),
                    Some('\\') => value.extend(it.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !is_space(*c)) {
                match c {
                    '\\' => value.extend(it.next()),
                    c => value.push(c),
                }
            }
        }
        opts.set(&name, value)?;
    }
}

/// `[user[:password]@][host[:port][,...]][/dbname][?param=value&...]`.
fn parse_uri(body: &str) -> Result<Options, ConninfoError> {
    let mut opts = Options::new();
    let mut rest = body;
    // libpq looks for the '@' before the first '/', query included.
    if let Some(at) = rest.find(['@', '/']).filter(|&i| rest.as_bytes()[i] == b'@') {
        let userspec = &rest[..at];
        let (user, password) = match userspec.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userspec, None),
        };
        if !user.is_empty() {
            opts.set("user", decode(user)?)?;
        }
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            opts.set("password", decode(p)?)?;
        }
        rest = &rest[at + 1..];
    }
    let (hosts, ports, after) = uri_hosts(rest)?;
    if hosts.iter().any(|h| !h.is_empty()) || hosts.len() > 1 {
        opts.set("host", decode(&hosts.join(","))?)?;
    }
    if ports.iter().any(|p| !p.is_empty()) {
        opts.set("port", decode(&ports.join(","))?)?;
    }
    rest = after;
    if let Some(db) = rest.strip_prefix('/') {
        let end = db.find('?').unwrap_or(db.len());
        if end > 0 {
            opts.set("dbname", decode(&db[..end])?)?;
        }
        rest = &db[end..];
    }
    if let Some(query) = rest.strip_prefix('?') {
        uri_params(query, &mut opts)?;
    }
    Ok(opts)
}

/// The host list of a URI: hosts, ports, and what follows.
fn uri_hosts(mut rest: &str) -> Result<(Vec<&str>, Vec<&str>, &str), ConninfoError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    loop {
        let host;
        if let Some(v6) = rest.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| ConninfoError::Uri {
                reason: "end of string reached when looking for the \"]\" of an IPv6 host address".into(),
            })?;
            if end == 0 {
                return Err(ConninfoError::Uri { reason: "IPv6 host address may not be empty".into() });
            }
            host = &v6[..end];
            rest = &v6[end + 1..];
            if let Some(c) = rest.chars().next().filter(|c| !matches!(c, ':' | '/' | '?' | ',')) {
                return Err(ConninfoError::Uri {
                    reason: format!(
                        "unexpected character \"{c}\" after an IPv6 host address (expected \":\" or \"/\")"
                    ),
                });
            }
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            host = &rest[..end];
            rest = &rest[end..];
        }
        hosts.push(host);
        let mut port = "";
        if let Some(p) = rest.strip_prefix(':') {
            let end = p.find(['/', '?', ',']).unwrap_or(p.len());
            port = &p[..end];
            rest = &p[end..];
        }
        ports.push(port);
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None => return Ok((hosts, ports, rest)),
        }
    }
}

fn uri_params(query: &str, opts: &mut Options) -> Result<(), ConninfoError> {
    for pair in query.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(ConninfoError::Uri { reason: "missing key/value separator \"=\" in a query parameter".into() });
        };
        if v.contains('=') {
            return Err(ConninfoError::Uri { reason: "extra key/value separator \"=\" in a query parameter".into() });
        }
        let (k, v) = (decode(k)?, decode(v)?);
        // The JDBC habit ssl=true, as libpq accepts it.
        if k == "ssl" && v == "true" {
            opts.set("sslmode", "require")?;
            continue;
        }
        if index(&k).is_none() {
            return Err(ConninfoError::UriParam { param: k });
        }
        opts.set(&k, v)?;
    }
    Ok(())
}

/// Percent-decoding; `%00` and text that is not UTF-8 are refused.
fn decode(s: &str) -> Result<String, ConninfoError> {
    let bad = |reason: &str| ConninfoError::Uri { reason: reason.into() };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(|| bad("invalid percent-encoded token"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad("invalid percent-encoded token"))?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| bad("invalid percent-encoded token"))?;
            if v == 0 {
                return Err(bad("forbidden value %00 in a percent-encoded value"));
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("a percent-encoded value is not UTF-8"))
}

/// A service file's settings for `service`, or `None` when the file has no
/// `[service]` section. Errors carry the line number; the caller adds the
/// path. A keyword set earlier in the section wins, as in libpq.
pub fn parse_service_file(text: &str, service: &str) -> Result<Option<Options>, ConninfoError> {
    let err =
        |line: usize, reason: &str| ConninfoError::ServiceFile { path: String::new(), line, reason: reason.into() };
    let mut found: Option<Options> = None;
    let mut in_group = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_matches(is_space);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            if in_group {
                break;
            }
            in_group = group.strip_prefix(service).is_some_and(|r| r.starts_with(']'));
            if in_group {
                found = Some(Options::new());
            }
            continue;
        }
        let Some(opts) = found.as_mut().filter(|_| in_group) else { continue };
        if line.starts_with("ldap") {
            return Err(ConninfoError::Unsupported {
                setting: format!("service \"{service}\""),
                reason: "LDAP lookups in service files are not supported by pgdrill".into(),
                hint: "write the connection keywords into the service file instead".into(),
            });
        }
        let Some((key, value)) = line.split_once('=') else { return Err(err(n + 1, "syntax error")) };
        if key == "service" || key == "servicefile" {
            return Err(err(n + 1, "nested service specifications are not supported"));
        }
        if index(key).is_none() {
            return Err(err(n + 1, &format!("syntax error (unknown keyword \"{key}\")")));
        }
        if !opts.is_set(key) {
            opts.set(key, value)?;
        }
    }
    Ok(found)
}

/// Quote a conninfo value if it needs it, as libpq's `appendConnStrVal()`
/// does: plain ASCII letters, digits, `_` and `.` stay bare.
pub fn quote(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
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

/// `key=value` pairs, quoted where needed, separated by spaces.
pub fn render<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs.into_iter().map(|(k, v)| format!("{k}={}", quote(v))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Options {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn keyvalue_like_libpq() {
        let o = p("  host = db1 port=5433 user='a b' password='it\\'s' dbname=x\\ y application_name=''");
        assert_eq!(o.get("host"), Some("db1"));
        assert_eq!(o.get("port"), Some("5433"));
        assert_eq!(o.get("user"), Some("a b"));
        assert_eq!(o.get("password"), Some("it's"));
        assert_eq!(o.get("dbname"), Some("x y"));
        assert_eq!(o.get("application_name"), Some(""));
        assert!(o.is_set("application_name"));
        assert_eq!(o.value("application_name"), None);
        // The last one wins.
        assert_eq!(p("host=a host=b").get("host"), Some("b"));
        // A value may be empty at the end of the string.
        assert_eq!(p("host=").get("host"), Some(""));
        assert_eq!(p("").iter().count(), 0);
        assert_eq!(parse("host"), Err(ConninfoError::MissingEquals { after: "host".into() }));
        assert_eq!(parse("host='x"), Err(ConninfoError::Unterminated));
        assert_eq!(parse("hots=x"), Err(ConninfoError::UnknownKeyword { keyword: "hots".into() }));
    }

    #[test]
    fn uris_like_libpq() {
        let o = p("postgresql://app:p%40ss@db.example:5433/sales?sslmode=verify-full&application_name=x");
        assert_eq!(o.get("user"), Some("app"));
        assert_eq!(o.get("password"), Some("p@ss"));
        assert_eq!(o.get("host"), Some("db.example"));
        assert_eq!(o.get("port"), Some("5433"));
        assert_eq!(o.get("dbname"), Some("sales"));
        assert_eq!(o.get("sslmode"), Some("verify-full"));
        let o = p("postgres://h1:1,h2,[::1]:3/db");
        assert_eq!(o.get("host"), Some("h1,h2,::1"));
        assert_eq!(o.get("port"), Some("1,,3"));
        let o = p("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
        assert_eq!(o.get("host"), Some("/var/run/postgresql"));
        let o = p("postgresql:///db?host=/tmp&port=6000");
        assert_eq!(o.get("host"), Some("/tmp"));
        assert_eq!(o.get("dbname"), Some("db"));
        assert_eq!(p("postgresql://").iter().count(), 0);
        assert_eq!(p("postgresql://h?ssl=true").get("sslmode"), Some("require"));
        assert!(matches!(parse("postgresql://h?nope=1"), Err(ConninfoError::UriParam { .. })));
        assert!(matches!(parse("postgresql://h?sslmode"), Err(ConninfoError::Uri { .. })));
        assert!(matches!(parse("postgresql://[::1/db"), Err(ConninfoError::Uri { .. })));
        assert!(matches!(parse("postgresql://[]/db"), Err(ConninfoError::Uri { .. })));
        assert!(matches!(parse("postgresql://[::1]x/db"), Err(ConninfoError::Uri { .. })));
        assert!(matches!(parse("postgresql://h/d%zz"), Err(ConninfoError::Uri { .. })));
        assert!(matches!(parse("postgresql://h/d%00"), Err(ConninfoError::Uri { .. })));
        assert!(matches!(parse("postgresql://h/d%ff"), Err(ConninfoError::Uri { .. })));
        // The password never appears in an error.
        let e = parse("postgresql://u:s3cret@h/d%zz").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("s3cret"));
    }

    #[test]
    fn pg_basebackup_r_output_parses() {
        // What `pg_basebackup -R` writes as primary_conninfo, 15 to 18.
        let v15 = "user=replicator passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=db1 port=5432 \
                   sslmode=prefer sslcompression=0 sslsni=1 ssl_min_protocol_version=TLSv1.2 gssencmode=prefer \
                   krbsrvname=postgres target_session_attrs=any";
        let v16 = "user=replicator passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=db1 port=5432 \
                   sslmode='verify-full' sslcompression=0 sslcertmode=allow sslsni=1 \
                   ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres gssdelegation=0 \
                   target_session_attrs=any load_balance_hosts=disable";
        let v17 = "user=replicator password=secret channel_binding=prefer host=db1 port=5432 sslmode=prefer \
                   sslnegotiation=postgres sslcompression=0 sslcertmode=allow sslsni=1 \
                   ssl_min_protocol_version=TLSv1.2 gssencmode=disable krbsrvname=postgres gssdelegation=0 \
                   target_session_attrs=any load_balance_hosts=disable dbname=postgres";
        for s in [v15, v16, v17] {
            let o = p(s);
            assert_eq!(o.get("host"), Some("db1"));
            assert_eq!(o.get("krbsrvname"), Some("postgres"));
        }
        assert_eq!(p(v16).get("sslmode"), Some("verify-full"));
        assert_eq!(p(v17).get("password"), Some("secret"));
        assert!(!format!("{:?}", p(v17)).contains("secret"));
    }

    #[test]
    fn service_files() {
        let text = "# comment\n[other]\nhost=elsewhere\nbogus line\n\n  [prod]  \n host=db1\nport=6000\n\
                    port=7000\nsslmode=verify-full\n[next]\nhost=x\n";
        let o = parse_service_file(text, "prod").unwrap().unwrap();
        assert_eq!(o.get("host"), Some("db1"));
        assert_eq!(o.get("port"), Some("6000"));
        assert_eq!(o.get("sslmode"), Some("verify-full"));
        assert!(parse_service_file(text, "missing").unwrap().is_none());
        // A prefix of a section name is not that section.
        assert!(parse_service_file("[prod2]\nhost=x\n", "prod").unwrap().is_none());
        let e = parse_service_file("[s]\nhost = x\n", "s").unwrap_err();
        assert!(matches!(e, ConninfoError::ServiceFile { line: 2, .. }), "{e:?}");
        let e = parse_service_file("[s]\nservice=t\n", "s").unwrap_err();
        assert!(e.to_string().contains("nested"), "{e}");
        assert!(parse_service_file("[s]\nnoequals\n", "s").is_err());
        assert!(matches!(parse_service_file("[s]\nldap://x\n", "s"), Err(ConninfoError::Unsupported { .. })));
        // Only the wanted section is checked.
        assert!(parse_service_file("[a]\nrubbish\n[s]\nhost=h\n", "s").unwrap().is_some());
    }

    #[test]
    fn options_fill_and_render() {
        let mut a = p("host=a port=1");
        let b = p("host=b user=u sslmode=verify-full password=x");
        a.fill_from(&b);
        assert_eq!(a.get("host"), Some("a"));
        assert_eq!(a.get("user"), Some("u"));
        assert_eq!(
            render([("host", "a b"), ("sslmode", "verify-full"), ("ssl_min_protocol_version", "TLSv1.2")]),
            "host='a b' sslmode='verify-full' ssl_min_protocol_version=TLSv1.2"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it\\'s'");
        // Rendered text parses back to the same values.
        let o = p(&render([("host", "/tmp/a b"), ("user", "o'neil\\x"), ("dbname", "")]));
        assert_eq!(o.get("host"), Some("/tmp/a b"));
        assert_eq!(o.get("user"), Some("o'neil\\x"));
        assert_eq!(o.get("dbname"), Some(""));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(s in "\\PC{0,200}") {
                let _ = parse(&s);
                let _ = parse(&format!("postgresql://{s}"));
                let _ = parse_service_file(&s, "x");
                let _ = parse_service_file(&format!("[x]\n{s}"), "x");
            }

            #[test]
            fn never_panics_on_conninfo_shapes(s in "[a-z_=' \\\\%@:/?&,\\[\\]0-9]{0,80}") {
                let _ = parse(&s);
                let _ = parse(&format!("postgres://{s}"));
            }

            #[test]
            fn quoted_values_round_trip(v in "\\PC{0,40}") {
                let o = parse(&render([("application_name", v.as_str())])).unwrap();
                prop_assert_eq!(o.get("application_name"), Some(v.as_str()));
            }
        }
    }
}
