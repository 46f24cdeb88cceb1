//! TLS for connections, with OpenSSL as libpq uses it.
//!
//! Follows `initialize_SSL()` in `src/interfaces/libpq/fe-secure-openssl.c`:
//! only the CAs in `sslrootcert` (default `~/.postgresql/root.crt`, or the
//! system's with `system`) are trusted; when that file exists the server's
//! certificate chain is verified whatever the `sslmode`, and verify-full also
//! checks the host name; `sslcrl`/`sslcrldir` (default
//! `~/.postgresql/root.crl`) turn on revocation checks; the client
//! certificate and key (default `~/.postgresql/postgresql.crt` and `.key`)
//! are sent when present, with libpq's rule on the key file's permissions.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::store::{X509Lookup, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::X509;
use postgres_openssl::MakeTlsConnector;

use super::settings::{SslMode, TlsSettings, TlsVersion};

/// Why TLS could not be set up (before any connection).
#[derive(Debug)]
pub struct TlsSetupError {
    pub message: String,
    pub hint: String,
    pub source: Option<openssl::error::ErrorStack>,
}

impl TlsSetupError {
    fn new(message: String, hint: &str) -> TlsSetupError {
        TlsSetupError { message, hint: hint.to_string(), source: None }
    }

    fn ssl(message: String, hint: &str, source: openssl::error::ErrorStack) -> TlsSetupError {
        TlsSetupError { message, hint: hint.to_string(), source: Some(source) }
    }
}

/// What the connector checks, for messages.
#[derive(Clone, Debug)]
pub struct TlsPolicy {
    /// The trusted roots: a file, `system`, or `None` (no verification).
    pub roots: Option<String>,
    pub verify_host: bool,
}

fn default_file(home: Option<&Path>, name: &str) -> Option<PathBuf> {
    home.map(|h| h.join(".postgresql").join(name))
}

fn version(v: TlsVersion) -> SslVersion {
    match v {
        TlsVersion::Tls1_0 => SslVersion::TLS1,
        TlsVersion::Tls1_1 => SslVersion::TLS1_1,
        TlsVersion::Tls1_2 => SslVersion::TLS1_2,
        TlsVersion::Tls1_3 => SslVersion::TLS1_3,
    }
}

/// libpq's rule for a private key file: no group or world access when the
/// current user owns it; when root owns it, group read is allowed too.
pub fn key_mode_allowed(owner_uid: u32, mode: u32) -> bool {
    if owner_uid == 0 {
        mode & 0o037 == 0
    } else {
        mode & 0o077 == 0
    }
}

/// Build the connector for `mode`. `home` is the user's home directory
/// (for the `~/.postgresql/` defaults).
pub fn connector(
    tls: &TlsSettings,
    mode: SslMode,
    home: Option<&Path>,
) -> Result<(MakeTlsConnector, TlsPolicy), TlsSetupError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| TlsSetupError::ssl("cannot initialise OpenSSL".into(), "check the OpenSSL installation", e))?;
    let set_versions = b
        .set_min_proto_version(tls.min_version.map(version))
        .and_then(|()| b.set_max_proto_version(tls.max_version.map(version)));
    set_versions.map_err(|e| {
        TlsSetupError::ssl(
            "cannot set the TLS protocol versions".into(),
            "check ssl_min_protocol_version and ssl_max_protocol_version",
            e,
        )
    })?;
    // libpq 17 and later always offer the ALPN protocol "postgresql".
    let _ = b.set_alpn_protos(b"\x0apostgresql");
    let roots = trust_store(&mut b, tls, mode, home)?;
    if !tls.no_client_cert {
        client_certificate(&mut b, tls, home)?;
    }
    if let Some(path) = &tls.keylogfile {
        key_log(&mut b, Path::new(path));
    }
    let verify_host = mode == SslMode::VerifyFull;
    let mut connector = MakeTlsConnector::new(b.build());
    let sni = tls.sni;
    connector.set_callback(move |c, _domain| {
        c.set_verify_hostname(verify_host);
        c.set_use_server_name_indication(sni);
        Ok(())
    });
    Ok((connector, TlsPolicy { roots, verify_host }))
}

/// Trust exactly the configured roots (the connector's default would
/// trust the system's as well). Returns what is trusted.
fn trust_store(
    b: &mut openssl::ssl::SslConnectorBuilder,
    tls: &TlsSettings,
    mode: SslMode,
    home: Option<&Path>,
) -> Result<Option<String>, TlsSetupError> {
    let fail = |what: String, e| TlsSetupError::ssl(what, "check the file's contents (PEM) and permissions", e);
    let mut store = X509StoreBuilder::new().map_err(|e| fail("cannot create a certificate store".into(), e))?;
    let root = match &tls.rootcert {
        Some(r) => Some(PathBuf::from(r)),
        None => default_file(home, "root.crt"),
    };
    let roots = match root {
        Some(r) if r.as_os_str() == "system" => {
            store.set_default_paths().map_err(|e| fail("cannot load the system's trusted roots".into(), e))?;
            Some("system".to_string())
        }
        Some(r) if r.exists() => {
            let shown = r.display().to_string();
            let pem = std::fs::read(&r).map_err(|e| {
                TlsSetupError::new(
                    format!("could not read root certificate file \"{shown}\": {e}"),
                    "check the path and that this user may read it",
                )
            })?;
            let certs = X509::stack_from_pem(&pem)
                .map_err(|e| fail(format!("could not read root certificate file \"{shown}\""), e))?;
            if certs.is_empty() {
                return Err(TlsSetupError::new(
                    format!("root certificate file \"{shown}\" holds no certificate"),
                    "put the CA certificate (PEM) in the file",
                ));
            }
            for c in certs {
                store.add_cert(c).map_err(|e| fail(format!("could not use a certificate of \"{shown}\""), e))?;
            }
            revocation(&mut store, tls, home)?;
            Some(shown)
        }
        other => {
            if mode.verifies() {
                let shown = other.map(|p| p.display().to_string()).unwrap_or_else(|| "~/.postgresql/root.crt".into());
                return Err(TlsSetupError::new(
                    format!("root certificate file \"{shown}\" does not exist"),
                    "either provide the file, use the system's trusted roots with sslrootcert=system, \
                     or change sslmode to disable server certificate verification",
                ));
            }
            None
        }
    };
    b.set_cert_store(store.build());
    b.set_verify(if roots.is_some() { SslVerifyMode::PEER } else { SslVerifyMode::NONE });
    Ok(roots)
}

/// CRLs: `sslcrl` and `sslcrldir`, else `~/.postgresql/root.crl` if present.
fn revocation(store: &mut X509StoreBuilder, tls: &TlsSettings, home: Option<&Path>) -> Result<(), TlsSetupError> {
    let (file, dir) = if tls.crl.is_some() || tls.crldir.is_some() {
        (tls.crl.as_ref().map(PathBuf::from), tls.crldir.as_ref().map(PathBuf::from))
    } else {
        (default_file(home, "root.crl").filter(|p| p.exists()), None)
    };
    if file.is_none() && dir.is_none() {
        return Ok(());
    }
    let hint = "check sslcrl/sslcrldir: a PEM CRL file, or a directory prepared with openssl rehash";
    if let Some(f) = file {
        let shown = f.display().to_string();
        // Stricter than libpq, which ignores an unreadable CRL silently.
        let lookup = store.add_lookup(X509Lookup::file()).map_err(|e| TlsSetupError::ssl(shown.clone(), hint, e))?;
        lookup.load_crl_file(&f, SslFiletype::PEM).map_err(|e| {
            TlsSetupError::ssl(format!("could not load SSL certificate revocation list \"{shown}\""), hint, e)
        })?;
    }
    if let Some(d) = dir {
        let shown = d.display().to_string();
        if !d.is_dir() {
            return Err(TlsSetupError::new(
                format!("SSL certificate revocation list directory \"{shown}\" does not exist"),
                hint,
            ));
        }
        let lookup =
            store.add_lookup(X509Lookup::hash_dir()).map_err(|e| TlsSetupError::ssl(shown.clone(), hint, e))?;
        lookup.add_dir(&shown, SslFiletype::PEM).map_err(|e| TlsSetupError::ssl(shown.clone(), hint, e))?;
    }
    store
        .set_flags(X509VerifyFlags::CRL_CHECK | X509VerifyFlags::CRL_CHECK_ALL)
        .map_err(|e| TlsSetupError::ssl("cannot enable CRL checks".into(), hint, e))
}

/// The client certificate and key, if the certificate file exists.
fn client_certificate(
    b: &mut openssl::ssl::SslConnectorBuilder,
    tls: &TlsSettings,
    home: Option<&Path>,
) -> Result<(), TlsSetupError> {
    let cert = match &tls.cert {
        Some(c) => Some(PathBuf::from(c)),
        None => default_file(home, "postgresql.crt"),
    };
    let Some(cert) = cert.filter(|c| c.exists()) else { return Ok(()) };
    let cert_shown = cert.display().to_string();
    b.set_certificate_chain_file(&cert).map_err(|e| {
        TlsSetupError::ssl(
            format!("could not load certificate file \"{cert_shown}\""),
            "check the file (a PEM certificate, optionally followed by intermediates)",
            e,
        )
    })?;
    let key = match &tls.key {
        Some(k) => Some(PathBuf::from(k)),
        None => default_file(home, "postgresql.key"),
    };
    let key = key.unwrap_or_default();
    let shown = key.display().to_string();
    let meta = std::fs::metadata(&key).map_err(|_| {
        TlsSetupError::new(
            format!("certificate present, but not private key file \"{shown}\""),
            "set sslkey to the key of the certificate in sslcert",
        )
    })?;
    if !meta.is_file() {
        return Err(TlsSetupError::new(
            format!("private key file \"{shown}\" is not a regular file"),
            "point sslkey at a file",
        ));
    }
    if !key_mode_allowed(meta.uid(), meta.mode()) {
        return Err(TlsSetupError::new(
            format!(
                "private key file \"{shown}\" has group or world access; file must have permissions u=rw (0600) \
                 or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root"
            ),
            &format!("chmod 0600 {shown}"),
        ));
    }
    let pem = std::fs::read(&key).map_err(|e| {
        TlsSetupError::new(format!("could not read private key file \"{shown}\": {e}"), "check the permissions")
    })?;
    // Never let OpenSSL prompt on a terminal: an encrypted key without
    // sslpassword fails to decrypt instead.
    let pass = tls.key_password.as_deref().unwrap_or("").as_bytes();
    let pkey = PKey::private_key_from_pem_passphrase(&pem, pass).map_err(|e| {
        TlsSetupError::ssl(
            format!("could not load private key file \"{shown}\""),
            "if the key is encrypted, give its passphrase as sslpassword",
            e,
        )
    })?;
    b.set_private_key(&pkey).and_then(|()| b.check_private_key()).map_err(|e| {
        TlsSetupError::ssl(
            format!("certificate does not match private key file \"{shown}\""),
            "check sslcert and sslkey",
            e,
        )
    })
}

/// `sslkeylogfile`: append the session keys, NSS key log format, mode 0600.
fn key_log(b: &mut openssl::ssl::SslConnectorBuilder, path: &Path) {
    let path = path.to_path_buf();
    b.set_keylog_callback(move |_, line| {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path) {
            let _ = writeln!(f, "{line}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_permissions_like_libpq() {
        assert!(key_mode_allowed(1000, 0o100600));
        assert!(key_mode_allowed(1000, 0o100400));
        assert!(!key_mode_allowed(1000, 0o100640));
        assert!(!key_mode_allowed(1000, 0o100604));
        assert!(key_mode_allowed(0, 0o100640));
        assert!(!key_mode_allowed(0, 0o100660));
        assert!(!key_mode_allowed(0, 0o100644));
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsSettings { sni: true, ..Default::default() };
        let e = connector(&tls, SslMode::VerifyCa, Some(dir.path())).err().unwrap();
        assert!(e.message.contains("root.crt\" does not exist"), "{}", e.message);
        let (_, policy) = connector(&tls, SslMode::Require, Some(dir.path())).unwrap();
        assert!(policy.roots.is_none());
        let (_, policy) = connector(
            &TlsSettings { rootcert: Some("system".into()), ..tls.clone() },
            SslMode::VerifyFull,
            Some(dir.path()),
        )
        .unwrap();
        assert_eq!(policy.roots.as_deref(), Some("system"));
        assert!(policy.verify_host);
        // A file that is not PEM.
        let bogus = dir.path().join("bogus.crt");
        std::fs::write(&bogus, "not a certificate").unwrap();
        let e = connector(
            &TlsSettings { rootcert: Some(bogus.display().to_string()), ..tls.clone() },
            SslMode::VerifyCa,
            None,
        )
        .err()
        .unwrap();
        assert!(e.message.contains("bogus.crt"), "{}", e.message);
    }
}
