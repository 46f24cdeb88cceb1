//! Making the connection: every host in turn, each with the encryption its
//! `sslmode` allows, until one has the session attributes asked for.
//!
//! Follows `PQconnectPoll()` in `src/interfaces/libpq/fe-connect.c`: hosts
//! in order (shuffled with `load_balance_hosts=random`); `allow` tries
//! without TLS first and with TLS when the server refuses, `prefer` the
//! other way round; `prefer-standby` takes any server only when no host is
//! a standby. Session attributes are checked by query, as libpq does with
//! servers before 14. `connect_timeout` bounds each attempt as a whole.

use std::sync::mpsc;
use std::time::Duration;

use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{Client, NoTls, Socket};
use postgres_openssl::MakeTlsConnector;

use super::settings::{ChannelBinding, SessionAttrs, SslMode, Target};
use super::tls::{self, TlsPolicy};
use super::ConnSpec;
use crate::error::{ConnectAttempt, ConnectFailure, Error, Result};
use crate::pg::conninfo::ConninfoError;

/// How one attempt encrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encryption {
    Plain,
    /// TLS, or plain if the server says it has no TLS (libpq's prefer).
    TlsIfOffered,
    TlsRequired,
}

/// The attempts `sslmode` makes at one server, in order.
fn plan(mode: SslMode, unix: bool) -> &'static [Encryption] {
    use Encryption::*;
    if unix {
        // libpq never uses TLS over a Unix socket, whatever sslmode says.
        return &[Plain];
    }
    match mode {
        SslMode::Disable => &[Plain],
        SslMode::Allow => &[Plain, TlsRequired],
        SslMode::Prefer => &[TlsIfOffered, Plain],
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => &[TlsRequired],
    }
}

/// Why an attempt at one server failed.
enum Failure {
    /// The server answered and refused (an ErrorResponse): the next
    /// encryption may do better (libpq retries on exactly this).
    Refused(postgres::Error),
    Other(postgres::Error),
    TimedOut(Duration),
    /// Connected, but not the kind of server asked for.
    WrongSession(&'static str),
}

/// TLS setup is made once, on the first TLS attempt.
struct Tls {
    made: Option<(MakeTlsConnector, TlsPolicy)>,
}

pub(super) fn connect(spec: &ConnSpec) -> Result<Client> {
    let s = &spec.settings;
    let mut order: Vec<&Target> = s.targets.iter().collect();
    if s.load_balance {
        fastrand::shuffle(&mut order);
    }
    let passes = match s.session_attrs {
        SessionAttrs::PreferStandby => vec![SessionAttrs::Standby, SessionAttrs::Any],
        other => vec![other],
    };
    let mut tls = Tls { made: None };
    let mut attempts = Vec::new();
    let mut unsupported_auth = false;
    for want in passes {
        for t in &order {
            for enc in plan(s.sslmode, t.is_unix()) {
                let result = attempt(spec, t, *enc, want, &mut tls)?;
                let failure = match result {
                    Ok(client) => return Ok(client),
                    Err(f) => f,
                };
                let retry = matches!(failure, Failure::Refused(_));
                let a = describe(spec, t, *enc, failure, tls.made.as_ref().map(|m| &m.1));
                unsupported_auth |= a.reason.contains("authentication method");
                attempts.push(a);
                if !retry {
                    break;
                }
            }
        }
    }
    if unsupported_auth && attempts.iter().all(|a| a.reason.contains("authentication method")) {
        return Err(Error::Conninfo(ConninfoError::Unsupported {
            setting: "the server's authentication method (pg_hba.conf)".into(),
            reason: "the server asks for GSSAPI, Kerberos or SSPI authentication, which pgdrill cannot do".into(),
            hint: "give pgdrill's role a pg_hba.conf line with scram-sha-256 (a password in a passfile) or cert".into(),
        }));
    }
    let hint = hint_for(spec, &attempts, tls.made.as_ref().map(|m| &m.1));
    Err(Error::Connect { target: spec.to_string(), source: ConnectFailure { attempts, hint } })
}

/// One attempt. The outer error is fatal for the whole connect (TLS that
/// cannot be set up); the inner one is this server's failure.
fn attempt(
    spec: &ConnSpec,
    t: &Target,
    enc: Encryption,
    want: SessionAttrs,
    tls: &mut Tls,
) -> Result<std::result::Result<Client, Failure>> {
    let given_db = spec.settings.dbname.as_deref();
    let mut result = connect_once(spec, t, enc, given_db, tls)?;
    // No dbname given: libpq's default is the user's name. A role such as
    // pg_basebackup -R's replication user often has no such database, and
    // pgdrill's queries work in any: fall back to postgres.
    let missing_db = |r: &std::result::Result<Client, Failure>| matches!(r, Err(Failure::Refused(e)) if e.code() == Some(&postgres::error::SqlState::INVALID_CATALOG_NAME));
    if given_db.is_none() && missing_db(&result) {
        result = connect_once(spec, t, enc, Some("postgres"), tls)?;
    }
    let mut client = match result {
        Ok(c) => c,
        Err(f) => return Ok(Err(f)),
    };
    Ok(match session_mismatch(&mut client, want) {
        Ok(None) => Ok(client),
        Ok(Some(why)) => Err(Failure::WrongSession(why)),
        Err(e) => Err(Failure::Other(e)),
    })
}

/// Connect once to one server with one encryption.
fn connect_once(
    spec: &ConnSpec,
    t: &Target,
    enc: Encryption,
    dbname: Option<&str>,
    tls: &mut Tls,
) -> Result<std::result::Result<Client, Failure>> {
    let s = &spec.settings;
    let mut cfg = config(spec, t, dbname);
    Ok(match enc {
        Encryption::Plain => {
            cfg.ssl_mode(postgres::config::SslMode::Disable);
            run(cfg, NoTls, s.connect_timeout)
        }
        Encryption::TlsIfOffered | Encryption::TlsRequired => {
            if tls.made.is_none() {
                let made =
                    tls::connector(&s.tls, s.sslmode, spec.home.as_deref()).map_err(|e| tls_setup_error(spec, e))?;
                tls.made = Some(made);
            }
            let Some((connector, _)) = &tls.made else { unreachable!("made above") };
            cfg.ssl_mode(if enc == Encryption::TlsRequired {
                postgres::config::SslMode::Require
            } else {
                postgres::config::SslMode::Prefer
            });
            if s.tls.direct {
                cfg.ssl_negotiation(postgres::config::SslNegotiation::Direct);
            }
            run(cfg, connector.clone(), s.connect_timeout)
        }
    })
}

/// The postgres crate's configuration for one server (no TLS yet).
fn config(spec: &ConnSpec, t: &Target, dbname: Option<&str>) -> postgres::Config {
    let s = &spec.settings;
    let mut cfg = postgres::Config::new();
    match (&t.host, t.hostaddr) {
        (Some(h), addr) => {
            cfg.host(h);
            if let Some(a) = addr {
                cfg.hostaddr(a);
            }
        }
        // Only an address: it is also the name certificates must carry.
        (None, Some(a)) => {
            cfg.host(&a.to_string());
        }
        (None, None) => {
            cfg.host(&super::default_socket_dir());
        }
    }
    cfg.port(t.port).user(spec.user()).application_name(s.application_name.as_deref().unwrap_or("pgdrill"));
    if let Some(db) = dbname {
        cfg.dbname(db);
    }
    if let Some(pw) = spec.password_for(t) {
        cfg.password(pw.as_bytes());
    }
    if let Some(o) = &s.options {
        cfg.options(o);
    }
    if let Some(d) = s.connect_timeout {
        cfg.connect_timeout(d);
    }
    cfg.keepalives(s.keepalives);
    if let Some(d) = s.keepalives_idle {
        cfg.keepalives_idle(d);
    }
    if let Some(d) = s.keepalives_interval {
        cfg.keepalives_interval(d);
    }
    if let Some(n) = s.keepalives_count {
        cfg.keepalives_retries(n);
    }
    if let Some(d) = s.tcp_user_timeout {
        cfg.tcp_user_timeout(d);
    }
    cfg.channel_binding(match s.channel_binding {
        ChannelBinding::Disable => postgres::config::ChannelBinding::Disable,
        ChannelBinding::Prefer => postgres::config::ChannelBinding::Prefer,
        ChannelBinding::Require => postgres::config::ChannelBinding::Require,
    });
    cfg
}

fn tls_setup_error(spec: &ConnSpec, e: tls::TlsSetupError) -> Error {
    let server = spec.settings.targets.first().map(Target::label).unwrap_or_default();
    Error::Connect {
        target: spec.to_string(),
        source: ConnectFailure {
            attempts: vec![ConnectAttempt {
                server,
                reason: e.message,
                sqlstate: None,
                source: e.source.map(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>),
            }],
            hint: Some(e.hint),
        },
    }
}

/// Connect, giving up after `limit` (the whole attempt: TCP, TLS and
/// authentication; the postgres crate's own timeout covers TCP only).
fn run<T>(cfg: postgres::Config, tls: T, limit: Option<Duration>) -> std::result::Result<Client, Failure>
where
    T: MakeTlsConnect<Socket> + 'static + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let classify = |e: postgres::Error| if e.as_db_error().is_some() { Failure::Refused(e) } else { Failure::Other(e) };
    let Some(limit) = limit else { return cfg.connect(tls).map_err(classify) };
    let (tx, rx) = mpsc::channel();
    // A server that accepts TCP and then says nothing must not hang us: the
    // attempt runs in a thread that is abandoned when the time is up.
    let spawned = std::thread::Builder::new().name("pgdrill-connect".into()).spawn(move || {
        let _ = tx.send(cfg.connect(tls));
    });
    if spawned.is_err() {
        return Err(Failure::TimedOut(Duration::ZERO));
    }
    match rx.recv_timeout(limit + Duration::from_millis(250)) {
        Ok(r) => r.map_err(classify),
        Err(_) => Err(Failure::TimedOut(limit)),
    }
}

/// Why the session is not what was asked for (libpq's words), if it is not.
fn session_mismatch(
    client: &mut Client,
    want: SessionAttrs,
) -> std::result::Result<Option<&'static str>, postgres::Error> {
    let text = |client: &mut Client, sql: &str| -> std::result::Result<String, postgres::Error> {
        for m in client.simple_query(sql)? {
            if let postgres::SimpleQueryMessage::Row(r) = m {
                return Ok(r.get(0).unwrap_or_default().to_string());
            }
        }
        Ok(String::new())
    };
    Ok(match want {
        SessionAttrs::Any | SessionAttrs::PreferStandby => None,
        SessionAttrs::ReadWrite | SessionAttrs::ReadOnly => {
            let read_only = text(client, "SHOW transaction_read_only")? == "on";
            match (want, read_only) {
                (SessionAttrs::ReadWrite, true) => Some("session is read-only"),
                (SessionAttrs::ReadOnly, false) => Some("session is not read-only"),
                _ => None,
            }
        }
        SessionAttrs::Primary | SessionAttrs::Standby => {
            let recovery = text(client, "SELECT pg_catalog.pg_is_in_recovery()")? == "t";
            match (want, recovery) {
                (SessionAttrs::Primary, true) => Some("server is in hot standby mode"),
                (SessionAttrs::Standby, false) => Some("server is not in hot standby mode"),
                _ => None,
            }
        }
    })
}

/// The text of an error and its causes, each cause shown once (the
/// postgres and openssl errors repeat their causes in their own text).
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// An attempt's details, as one message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Detail(String);

/// What OpenSSL said of the server's certificate: postgres-openssl ends
/// its message with the verification result after `: `.
fn verify_result(text: &str) -> &str {
    text.rsplit(":: ").next().filter(|r| !r.is_empty()).unwrap_or(text)
}

fn describe(spec: &ConnSpec, t: &Target, enc: Encryption, f: Failure, policy: Option<&TlsPolicy>) -> ConnectAttempt {
    let mut server = t.label();
    // With allow or prefer one server sees two attempts: say which is which.
    if plan(spec.settings.sslmode, t.is_unix()).len() > 1 {
        server.push_str(if enc == Encryption::Plain { " (without TLS)" } else { " (TLS)" });
    }
    let sqlstate = match &f {
        Failure::Refused(e) | Failure::Other(e) => e.as_db_error().map(|db| db.code().code().to_string()),
        _ => None,
    };
    let (reason, source) = match f {
        Failure::WrongSession(why) => (why.to_string(), None),
        Failure::TimedOut(d) => (format!("timed out after {} s (connect_timeout)", d.as_secs()), None),
        Failure::Refused(e) | Failure::Other(e) => {
            let mut text = chain_text(&e);
            let reason = if text.contains("certificate verify failed") {
                let roots = policy.and_then(|p| p.roots.clone()).unwrap_or_default();
                text = format!("certificate verify failed: {}", verify_result(&text));
                format!(
                    "the server's certificate was not accepted (sslmode={}, sslrootcert={roots})",
                    spec.settings.sslmode.as_str()
                )
            } else if text.contains("server does not support TLS") {
                "the server does not accept TLS connections".to_string()
            } else if text.contains("password missing") {
                "the server asked for a password, and none was found".to_string()
            } else if text.contains("unsupported authentication method") {
                "the server asks for an authentication method pgdrill cannot use (GSSAPI, Kerberos or SSPI)".into()
            } else if let Some(db) = e.as_db_error() {
                match db.code().code() {
                    "28P01" => "password authentication failed".to_string(),
                    "28000" => "the server refused the connection (pg_hba.conf)".to_string(),
                    _ => "the server refused the connection".to_string(),
                }
            } else {
                "connection failed".to_string()
            };
            (reason, Some(Box::new(Detail(text)) as Box<dyn std::error::Error + Send + Sync>))
        }
    };
    ConnectAttempt { server, reason, sqlstate, source }
}

/// Advice for the most telling failure.
fn hint_for(spec: &ConnSpec, attempts: &[ConnectAttempt], policy: Option<&TlsPolicy>) -> Option<String> {
    let has = |needle: &str| attempts.iter().any(|a| a.reason.contains(needle));
    let full = |a: &ConnectAttempt| a.source.as_ref().map(|s| s.to_string()).unwrap_or_default();
    if has("certificate was not accepted") {
        let roots = policy.and_then(|p| p.roots.clone()).unwrap_or_else(|| "~/.postgresql/root.crt".into());
        let host_mismatch = attempts.iter().any(|a| full(a).to_ascii_lowercase().contains("hostname mismatch"));
        return Some(if host_mismatch {
            "the server's certificate does not name the host connected to: use the name in its certificate \
             as host= (hostaddr= may give the address), or sslmode=verify-ca to check the CA only"
                .into()
        } else {
            format!(
                "the server's certificate must be signed by a CA in sslrootcert ({roots}): point sslrootcert \
                 at that CA's certificate, or check the server's ssl_cert_file"
            )
        });
    }
    if has("does not accept TLS") {
        return Some("turn on ssl in the server's postgresql.conf, or use sslmode=prefer or allow".into());
    }
    if has("password authentication failed") && spec.settings.password.is_some() {
        return Some(
            "the password given (password= or PGPASSWORD) was refused: check it, and pg_hba.conf on the server".into(),
        );
    }
    if has("password") {
        let file = spec.passfile_path().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.pgpass".into());
        return Some(format!(
            "put the password in the passfile {file} (a line host:port:database:user:password, mode 0600), \
             or set PGPASSWORD; check pg_hba.conf on the server"
        ));
    }
    if has("hot standby mode") || has("read-only") {
        return Some(format!(
            "none of the hosts is a server with target_session_attrs={}",
            spec.settings.session_attrs.as_str()
        ));
    }
    if has("pg_hba.conf") {
        return Some(
            "the server's pg_hba.conf has no line for this host, user, database and encryption: \
             check sslmode (hostssl lines need TLS) and pg_hba.conf"
                .into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_plans_like_libpq() {
        use Encryption::*;
        assert_eq!(plan(SslMode::Disable, false), &[Plain]);
        assert_eq!(plan(SslMode::Allow, false), &[Plain, TlsRequired]);
        assert_eq!(plan(SslMode::Prefer, false), &[TlsIfOffered, Plain]);
        for m in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            assert_eq!(plan(m, false), &[TlsRequired]);
            assert_eq!(plan(m, true), &[Plain]);
        }
    }
}
