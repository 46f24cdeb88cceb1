//! What resolved libpq options mean: typed, checked settings.
//!
//! Pure: [`Settings::from_options`] reads nothing but the options it is
//! given (already merged from the conninfo, the service file and the
//! environment by `resolve`). Values follow libpq's `connectOptions2()` in
//! `src/interfaces/libpq/fe-connect.c`: the same keywords, the same
//! defaults, the same checks. A keyword whose value asks for something
//! pgdrill cannot do is refused here, by name.

use std::net::IpAddr;
use std::time::Duration;

use crate::pg::conninfo::{ConninfoError, Options};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// verify-ca or verify-full: the server certificate must be checked.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// libpq's `target_session_attrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

impl SessionAttrs {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    Disable,
    Prefer,
    Require,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls1_0,
    Tls1_1,
    Tls1_2,
    Tls1_3,
}

/// One server to try: a host name or socket directory, or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The `host` entry: a name, an IP address, or a socket directory
    /// (starts with `/`). `None` when only `hostaddr` names the server.
    pub host: Option<String>,
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
}

impl Target {
    /// A Unix-domain socket directory (no TLS there, as in libpq).
    pub fn is_unix(&self) -> bool {
        self.hostaddr.is_none() && self.host.as_deref().is_some_and(|h| h.starts_with('/'))
    }

    /// The name certificates are checked against, and the host `.pgpass`
    /// matches: the host, else the address.
    pub fn name(&self) -> String {
        match (&self.host, &self.hostaddr) {
            (Some(h), _) => h.clone(),
            (None, Some(a)) => a.to_string(),
            (None, None) => String::new(),
        }
    }

    /// `host:port`, with the address when there is one.
    pub fn label(&self) -> String {
        match (&self.host, &self.hostaddr) {
            (Some(h), Some(a)) => format!("{h}:{} ({a})", self.port),
            _ => format!("{}:{}", self.name(), self.port),
        }
    }
}

/// The TLS settings of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslrootcert`: a file, or `system`; `None`: ~/.postgresql/root.crt.
    pub rootcert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub crl: Option<String>,
    pub crldir: Option<String>,
    /// `sslpassword`: the passphrase of an encrypted key.
    pub key_password: Option<String>,
    /// `sslcertmode=disable`: never send a client certificate.
    pub no_client_cert: bool,
    pub sni: bool,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    pub keylogfile: Option<String>,
    /// `sslnegotiation=direct`.
    pub direct: bool,
}

/// Checked connection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub targets: Vec<Target>,
    pub user: Option<String>,
    pub dbname: Option<String>,
    pub password: Option<String>,
    pub passfile: Option<String>,
    /// `None`: wait forever (libpq's 0).
    pub connect_timeout: Option<Duration>,
    pub application_name: Option<String>,
    pub options: Option<String>,
    pub keepalives: bool,
    pub keepalives_idle: Option<Duration>,
    pub keepalives_interval: Option<Duration>,
    pub keepalives_count: Option<u32>,
    pub tcp_user_timeout: Option<Duration>,
    pub sslmode: SslMode,
    pub tls: TlsSettings,
    pub channel_binding: ChannelBinding,
    pub session_attrs: SessionAttrs,
    pub load_balance: bool,
}

fn bad(keyword: &str, value: &str, expected: &str) -> ConninfoError {
    ConninfoError::BadValue { keyword: keyword.into(), value: value.into(), expected: expected.into() }
}

fn unsupported(keyword: &str, value: &str, reason: &str, hint: &str) -> ConninfoError {
    ConninfoError::Unsupported { setting: format!("{keyword}={value}"), reason: reason.into(), hint: hint.into() }
}

/// One of the listed words.
fn choice<'a>(o: &Options, keyword: &str, default: &'a str, allowed: &[&'a str]) -> Result<&'a str, ConninfoError> {
    let v = o.value(keyword).unwrap_or(default);
    allowed.iter().find(|a| **a == v).copied().ok_or_else(|| bad(keyword, v, &format!("use {}", allowed.join(", "))))
}

/// An integer as libpq's `parse_int_param()` reads it.
fn int(o: &Options, keyword: &str) -> Result<Option<i64>, ConninfoError> {
    match o.value(keyword) {
        None => Ok(None),
        Some(v) => v.trim().parse::<i32>().map(|n| Some(n.into())).map_err(|_| bad(keyword, v, "not an integer")),
    }
}

fn seconds(o: &Options, keyword: &str) -> Result<Option<Duration>, ConninfoError> {
    Ok(int(o, keyword)?.filter(|n| *n > 0).map(|n| Duration::from_secs(n.unsigned_abs())))
}

fn flag(o: &Options, keyword: &str, default: bool) -> Result<bool, ConninfoError> {
    Ok(int(o, keyword)?.map_or(default, |n| n != 0))
}

fn tls_version(o: &Options, keyword: &str) -> Result<Option<TlsVersion>, ConninfoError> {
    let Some(v) = o.value(keyword) else { return Ok(None) };
    Ok(Some(match v.to_ascii_lowercase().as_str() {
        "tlsv1" => TlsVersion::Tls1_0,
        "tlsv1.1" => TlsVersion::Tls1_1,
        "tlsv1.2" => TlsVersion::Tls1_2,
        "tlsv1.3" => TlsVersion::Tls1_3,
        _ => return Err(bad(keyword, v, "use TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3")),
    }))
}

fn split_list(v: Option<&str>) -> Vec<String> {
    match v {
        None | Some("") => Vec::new(),
        Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
    }
}

impl Settings {
    /// A plain Unix-socket connection with libpq's defaults otherwise.
    pub fn unix_socket(dir: &str, port: u16, user: &str, dbname: &str) -> Settings {
        Settings {
            targets: vec![Target { host: Some(dir.to_string()), hostaddr: None, port }],
            user: Some(user.to_string()),
            dbname: Some(dbname.to_string()),
            password: None,
            passfile: None,
            connect_timeout: None,
            application_name: None,
            options: None,
            keepalives: true,
            keepalives_idle: None,
            keepalives_interval: None,
            keepalives_count: None,
            tcp_user_timeout: None,
            sslmode: SslMode::Disable,
            tls: TlsSettings { sni: true, min_version: Some(TlsVersion::Tls1_2), ..TlsSettings::default() },
            channel_binding: ChannelBinding::Prefer,
            session_attrs: SessionAttrs::Any,
            load_balance: false,
        }
    }

    /// Check and type resolved options. `default_host` is the socket
    /// directory used when no host is given.
    pub fn from_options(o: &Options, default_host: &str) -> Result<Settings, ConninfoError> {
        refuse_what_we_cannot_do(o)?;
        let sslmode = sslmode(o)?;
        let tls = tls_settings(o, sslmode)?;
        let channel_binding = match choice(o, "channel_binding", "prefer", &["disable", "prefer", "require"])? {
            "disable" => ChannelBinding::Disable,
            "require" => ChannelBinding::Require,
            _ => ChannelBinding::Prefer,
        };
        if channel_binding == ChannelBinding::Require && sslmode == SslMode::Disable {
            return Err(ConninfoError::Conflict {
                message: "channel_binding=require needs TLS, but sslmode=disable".into(),
            });
        }
        let session_attrs = match choice(
            o,
            "target_session_attrs",
            "any",
            &["any", "read-write", "read-only", "primary", "standby", "prefer-standby"],
        )? {
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            _ => SessionAttrs::Any,
        };
        let load_balance = choice(o, "load_balance_hosts", "disable", &["disable", "random"])? == "random";
        // libpq: a timeout of 1 s is raised to 2 s; 0 or less waits forever.
        let connect_timeout =
            int(o, "connect_timeout")?.filter(|n| *n > 0).map(|n| Duration::from_secs(n.max(2).unsigned_abs()));
        let application_name =
            o.get("application_name").filter(|v| !v.is_empty()).or(o.value("fallback_application_name"));
        Ok(Settings {
            targets: targets(o, default_host)?,
            user: o.value("user").map(str::to_string),
            dbname: o.value("dbname").map(str::to_string),
            password: o.value("password").map(str::to_string),
            passfile: o.value("passfile").map(str::to_string),
            connect_timeout,
            application_name: application_name.map(str::to_string),
            options: o.value("options").map(str::to_string),
            keepalives: flag(o, "keepalives", true)?,
            keepalives_idle: seconds(o, "keepalives_idle")?,
            keepalives_interval: seconds(o, "keepalives_interval")?,
            keepalives_count: int(o, "keepalives_count")?.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0),
            tcp_user_timeout: int(o, "tcp_user_timeout")?
                .filter(|n| *n > 0)
                .map(|n| Duration::from_millis(n.unsigned_abs())),
            sslmode,
            tls,
            channel_binding,
            session_attrs,
            load_balance,
        })
    }
}

/// The hosts, addresses and ports, matched up as libpq does.
fn targets(o: &Options, default_host: &str) -> Result<Vec<Target>, ConninfoError> {
    let hosts = split_list(o.get("host"));
    let addrs = split_list(o.get("hostaddr"));
    let ports = split_list(o.get("port"));
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(ConninfoError::Conflict {
            message: format!("could not match {} host names to {} hostaddr values", hosts.len(), addrs.len()),
        });
    }
    let n = hosts.len().max(addrs.len()).max(1);
    if ports.len() > 1 && ports.len() != n {
        return Err(ConninfoError::Conflict {
            message: format!("could not match {} port numbers to {n} hosts", ports.len()),
        });
    }
    (0..n)
        .map(|i| {
            let hostaddr = match addrs.get(i).filter(|a| !a.is_empty()) {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| bad("hostaddr", a, "not a numeric IP address"))?),
                None => None,
            };
            let host = match hosts.get(i).filter(|h| !h.is_empty()) {
                Some(h) => Some(h.clone()),
                None if hostaddr.is_some() => None,
                None => Some(default_host.to_string()),
            };
            if hostaddr.is_some() && host.as_deref().is_some_and(|h| h.starts_with('/')) {
                return Err(ConninfoError::Conflict {
                    message: format!("hostaddr is set, but host {} is a socket directory", host.unwrap_or_default()),
                });
            }
            let port = match ports.get(i).or(ports.first()).filter(|p| !p.is_empty()) {
                None => 5432,
                Some(p) => {
                    p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("port", p, "not a port number"))?
                }
            };
            Ok(Target { host, hostaddr, port })
        })
        .collect()
}

fn sslmode(o: &Options) -> Result<SslMode, ConninfoError> {
    let system = o.value("sslrootcert") == Some("system");
    let mode = match o.value("sslmode") {
        // libpq: sslrootcert=system makes verify-full the default.
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
        Some(_) => match choice(
            o,
            "sslmode",
            "prefer",
            &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        )? {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => SslMode::Prefer,
        },
    };
    if system && mode != SslMode::VerifyFull {
        return Err(ConninfoError::Conflict {
            message: format!(
                "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                mode.as_str()
            ),
        });
    }
    Ok(mode)
}

fn tls_settings(o: &Options, sslmode: SslMode) -> Result<TlsSettings, ConninfoError> {
    let direct = choice(o, "sslnegotiation", "postgres", &["postgres", "direct"])? == "direct";
    if direct && matches!(sslmode, SslMode::Disable | SslMode::Allow | SslMode::Prefer) {
        return Err(ConninfoError::Conflict {
            message: format!(
                "weak sslmode \"{}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")",
                sslmode.as_str()
            ),
        });
    }
    let min_version = tls_version(o, "ssl_min_protocol_version")?.or(Some(TlsVersion::Tls1_2));
    let max_version = tls_version(o, "ssl_max_protocol_version")?;
    if let (Some(lo), Some(hi)) = (min_version, max_version) {
        if lo > hi {
            return Err(ConninfoError::Conflict { message: "invalid SSL protocol version range".into() });
        }
    }
    choice(o, "sslcompression", "0", &["0", "1"])?;
    let certmode = choice(o, "sslcertmode", "allow", &["disable", "allow", "require"])?;
    if certmode == "require" {
        return Err(unsupported(
            "sslcertmode",
            certmode,
            "pgdrill cannot check that the server asked for a client certificate",
            "use sslcertmode=allow (the default): the certificate is still sent when the server asks",
        ));
    }
    let path = |k: &str| o.value(k).map(str::to_string);
    Ok(TlsSettings {
        rootcert: path("sslrootcert"),
        cert: path("sslcert"),
        key: path("sslkey"),
        crl: path("sslcrl"),
        crldir: path("sslcrldir"),
        key_password: o.get("sslpassword").map(str::to_string),
        no_client_cert: certmode == "disable",
        sni: flag(o, "sslsni", true)?,
        min_version,
        max_version,
        keylogfile: path("sslkeylogfile"),
        direct,
    })
}

/// Keywords pgdrill knows but cannot honour with the value given.
fn refuse_what_we_cannot_do(o: &Options) -> Result<(), ConninfoError> {
    let gss = choice(o, "gssencmode", "prefer", &["disable", "prefer", "require"])?;
    if gss == "require" {
        return Err(unsupported(
            "gssencmode",
            gss,
            "pgdrill cannot use GSSAPI encryption",
            "use TLS (sslmode=verify-full) with gssencmode=disable or prefer",
        ));
    }
    choice(o, "gssdelegation", "0", &["0", "1"])?;
    if let Some(v) = o.value("requirepeer") {
        return Err(unsupported(
            "requirepeer",
            v,
            "pgdrill cannot check the user of the process behind a Unix socket",
            "leave out requirepeer (the socket directory's permissions protect it), or connect over TCP with TLS",
        ));
    }
    if let Some(v) = o.value("require_auth") {
        return Err(unsupported(
            "require_auth",
            v,
            "pgdrill cannot restrict the server's choice of authentication method",
            "leave out require_auth; use channel_binding=require to insist on SCRAM over TLS",
        ));
    }
    if let Some(v) = o.value("replication") {
        if !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no") {
            return Err(unsupported(
                "replication",
                v,
                "pgdrill uses ordinary connections, not the replication protocol",
                "leave out replication=",
            ));
        }
    }
    if let Some(v) = o.value("client_encoding") {
        if !matches!(v.to_ascii_lowercase().as_str(), "utf8" | "utf-8" | "unicode" | "auto") {
            return Err(unsupported(
                "client_encoding",
                v,
                "pgdrill always talks UTF8 to the server",
                "leave out client_encoding, or use client_encoding=UTF8",
            ));
        }
    }
    if let Some(v) = o.value("min_protocol_version") {
        if v != "3.0" {
            return Err(unsupported(
                "min_protocol_version",
                v,
                "pgdrill speaks protocol version 3.0 only",
                "leave out min_protocol_version, or use 3.0",
            ));
        }
    }
    if let Some(v) = o.value("max_protocol_version") {
        if !matches!(v, "3.0" | "3.2" | "latest") {
            return Err(bad("max_protocol_version", v, "use 3.0, 3.2 or latest"));
        }
    }
    for k in ["scram_client_key", "scram_server_key"] {
        if o.value(k).is_some() {
            return Err(unsupported(
                k,
                "...",
                "pgdrill cannot authenticate with SCRAM keys",
                "give a password (in a passfile) instead",
            ));
        }
    }
    for k in ["oauth_issuer", "oauth_client_id", "oauth_client_secret", "oauth_scope"] {
        if o.value(k).is_some() {
            let shown = if k == "oauth_client_secret" { "..." } else { o.value(k).unwrap_or_default() };
            return Err(unsupported(
                k,
                shown,
                "pgdrill cannot authenticate with OAuth",
                "use password (SCRAM) or certificate authentication",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::conninfo::parse;

    fn settings(s: &str) -> Result<Settings, ConninfoError> {
        Settings::from_options(&parse(s).unwrap(), "/run/pg")
    }

    #[test]
    fn defaults() {
        let s = settings("").unwrap();
        assert_eq!(s.targets, vec![Target { host: Some("/run/pg".into()), hostaddr: None, port: 5432 }]);
        assert!(s.targets[0].is_unix());
        assert_eq!(s.sslmode, SslMode::Prefer);
        assert_eq!(s.session_attrs, SessionAttrs::Any);
        assert_eq!(s.channel_binding, ChannelBinding::Prefer);
        assert_eq!(s.tls.min_version, Some(TlsVersion::Tls1_2));
        assert!(s.tls.sni && s.keepalives && !s.load_balance);
        assert_eq!(s.connect_timeout, None);
    }

    #[test]
    fn hosts_addresses_and_ports() {
        let s = settings("host=a,b,/tmp port=1,2,3").unwrap();
        assert_eq!(s.targets.iter().map(|t| t.port).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(s.targets[2].is_unix());
        let s = settings("host=a,b port=7").unwrap();
        assert!(s.targets.iter().all(|t| t.port == 7));
        let s = settings("host=a,,c").unwrap();
        assert_eq!(s.targets[1].host.as_deref(), Some("/run/pg"));
        let s = settings("host=db.example hostaddr=127.0.0.1").unwrap();
        assert_eq!(s.targets[0].name(), "db.example");
        assert_eq!(s.targets[0].hostaddr, Some("127.0.0.1".parse().unwrap()));
        assert!(!s.targets[0].is_unix());
        let s = settings("hostaddr=::1").unwrap();
        assert_eq!(s.targets[0].host, None);
        assert_eq!(s.targets[0].name(), "::1");
        assert!(matches!(settings("host=a,b port=1,2,3"), Err(ConninfoError::Conflict { .. })));
        assert!(matches!(settings("host=a,b hostaddr=127.0.0.1"), Err(ConninfoError::Conflict { .. })));
        assert!(matches!(settings("hostaddr=db.example"), Err(ConninfoError::BadValue { .. })));
        assert!(matches!(settings("port=0"), Err(ConninfoError::BadValue { .. })));
        assert!(matches!(settings("port=70000"), Err(ConninfoError::BadValue { .. })));
    }

    #[test]
    fn sslmodes_and_files() {
        for (m, want) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(settings(&format!("sslmode={m}")).unwrap().sslmode, want);
        }
        assert!(matches!(settings("sslmode=verify"), Err(ConninfoError::BadValue { .. })));
        // sslrootcert=system: verify-full by default, weaker modes refused.
        assert_eq!(settings("sslrootcert=system").unwrap().sslmode, SslMode::VerifyFull);
        let e = settings("sslrootcert=system sslmode=require").unwrap_err();
        assert!(e.to_string().contains("weak sslmode"), "{e}");
        let s = settings("sslcert=c sslkey=k sslrootcert=r sslcrl=l sslcrldir=d sslpassword=pw sslsni=0").unwrap();
        assert_eq!(s.tls.cert.as_deref(), Some("c"));
        assert_eq!(s.tls.key_password.as_deref(), Some("pw"));
        assert!(!s.tls.sni);
        assert!(settings("sslcertmode=disable").unwrap().tls.no_client_cert);
        assert!(settings("ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2").is_err());
        assert!(matches!(settings("sslnegotiation=direct"), Err(ConninfoError::Conflict { .. })));
        assert!(settings("sslnegotiation=direct sslmode=require").unwrap().tls.direct);
        assert!(matches!(settings("sslmode=disable channel_binding=require"), Err(ConninfoError::Conflict { .. })));
    }

    #[test]
    fn session_attrs_timeouts_and_names() {
        for (v, want) in [
            ("any", SessionAttrs::Any),
            ("read-write", SessionAttrs::ReadWrite),
            ("read-only", SessionAttrs::ReadOnly),
            ("primary", SessionAttrs::Primary),
            ("standby", SessionAttrs::Standby),
            ("prefer-standby", SessionAttrs::PreferStandby),
        ] {
            assert_eq!(settings(&format!("target_session_attrs={v}")).unwrap().session_attrs, want);
        }
        assert!(settings("target_session_attrs=replica").is_err());
        assert_eq!(settings("connect_timeout=1").unwrap().connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(settings("connect_timeout=0").unwrap().connect_timeout, None);
        assert!(settings("connect_timeout=soon").is_err());
        assert_eq!(settings("fallback_application_name=f").unwrap().application_name.as_deref(), Some("f"));
        assert_eq!(
            settings("application_name=a fallback_application_name=f").unwrap().application_name.as_deref(),
            Some("a")
        );
        assert!(settings("load_balance_hosts=random").unwrap().load_balance);
    }

    #[test]
    fn what_we_cannot_do_is_named() {
        for (conninfo, named) in [
            ("gssencmode=require", "gssencmode=require"),
            ("sslcertmode=require", "sslcertmode=require"),
            ("requirepeer=postgres", "requirepeer=postgres"),
            ("require_auth=scram-sha-256", "require_auth=scram-sha-256"),
            ("replication=database", "replication=database"),
            ("client_encoding=LATIN1", "client_encoding=LATIN1"),
            ("min_protocol_version=3.2", "min_protocol_version=3.2"),
            ("oauth_issuer=https://idp", "oauth_issuer=https://idp"),
            ("scram_client_key=abc", "scram_client_key"),
        ] {
            let e = settings(conninfo).unwrap_err();
            assert!(matches!(e, ConninfoError::Unsupported { .. }), "{conninfo}: {e:?}");
            assert!(e.to_string().starts_with(named), "{conninfo}: {e}");
            assert!(e.hint().is_some());
        }
        assert!(!settings("scram_client_key=abc").unwrap_err().to_string().contains("abc"));
        assert!(!settings("oauth_client_secret=abc").unwrap_err().to_string().contains("abc"));
        // Values that ask for nothing we cannot do are accepted.
        settings(
            "gssencmode=prefer krbsrvname=postgres gsslib=gssapi gssdelegation=1 sslcompression=1 \
             replication=false client_encoding=UTF8 max_protocol_version=latest min_protocol_version=3.0 \
             sslcertmode=allow keepalives=1 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 \
             tcp_user_timeout=1000",
        )
        .unwrap();
    }

    mod prop {
        use super::super::*;
        use crate::pg::conninfo::{parse, KEYWORDS};
        use proptest::prelude::*;

        proptest! {
            /// Any value for any keyword: an error or settings, never a panic.
            #[test]
            fn never_panics(pairs in proptest::collection::vec((0..KEYWORDS.len(), "\\PC{0,20}"), 0..6)) {
                let mut o = parse("").unwrap();
                for (k, v) in pairs {
                    o.set(KEYWORDS[k].name, v).unwrap();
                }
                let _ = Settings::from_options(&o, "/tmp");
            }
        }
    }
}
