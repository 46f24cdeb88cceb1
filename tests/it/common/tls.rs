//! A certificate authority made at test time with the openssl command:
//! a CA, a second CA that signed nothing of ours, a server certificate for
//! `localhost` and 127.0.0.1, a client certificate, and CRLs (one empty,
//! one revoking the server's certificate).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// For the role `certuser`; the key is also kept encrypted with
    /// [`Pki::CLIENT_KEY_PASSWORD`].
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_key_encrypted: PathBuf,
    pub crl_empty: PathBuf,
    pub crl_revoking_server: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

fn ca(dir: &Path, name: &str) -> PathBuf {
    let key = format!("{name}.key");
    let crt = format!("{name}.crt");
    let subject = format!("/CN=pgdrill test {name}");
    let mut args =
        vec!["req", "-x509", "-new", "-nodes", "-days", "3", "-subj", &subject, "-keyout", &key, "-out", &crt];
    args.extend(EC);
    args.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &args);
    dir.join(crt)
}

/// A key and a certificate signed by `ca`, with these extensions.
fn leaf(dir: &Path, ca: &str, name: &str, cn: &str, serial: &str, ext: &str) -> (PathBuf, PathBuf) {
    let (key, csr, crt, extfile) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let subject = format!("/CN={cn}");
    let mut args = vec!["req", "-new", "-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr];
    args.extend(EC);
    openssl(dir, &args);
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            serial,
            "-days",
            "3",
            "-out",
            &crt,
            "-extfile",
            &extfile,
        ],
    );
    let key = dir.join(key);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir.join(crt), key)
}

impl Pki {
    pub const CLIENT_KEY_PASSWORD: &'static str = "key-pass";

    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_crt = ca(dir, "ca");
        let other_ca = ca(dir, "other-ca");
        let (server_cert, server_key) = leaf(
            dir,
            "ca",
            "server",
            "localhost",
            "1001",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        let (client_cert, client_key) =
            leaf(dir, "ca", "client", "certuser", "1002", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
        let enc = format!("pass:{}", Self::CLIENT_KEY_PASSWORD);
        openssl(
            dir,
            &["pkcs8", "-topk8", "-in", "client.key", "-out", "client.enc.key", "-v2", "aes-256-cbc", "-passout", &enc],
        );
        let client_key_encrypted = dir.join("client.enc.key");
        std::fs::set_permissions(&client_key_encrypted, std::fs::Permissions::from_mode(0o600)).unwrap();
        // `openssl ca` keeps its state in files named by a config.
        std::fs::write(dir.join("index.txt"), "").unwrap();
        std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
        std::fs::write(
            dir.join("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = test_ca\n[test_ca]\ndatabase = {d}/index.txt\ncrlnumber = {d}/crlnumber\n\
                 certificate = {d}/ca.crt\nprivate_key = {d}/ca.key\ndefault_md = sha256\ndefault_crl_days = 3\n",
                d = dir.display()
            ),
        )
        .unwrap();
        openssl(dir, &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl-empty.pem"]);
        openssl(dir, &["ca", "-config", "ca.cnf", "-revoke", "server.crt"]);
        openssl(dir, &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl-revoked.pem"]);
        Pki {
            ca: ca_crt,
            other_ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            client_key_encrypted,
            crl_empty: dir.join("crl-empty.pem"),
            crl_revoking_server: dir.join("crl-revoked.pem"),
        }
    }
}

/// TCP only over TLS with SCRAM; the harness keeps its trusted socket.
pub const HBA_HOSTSSL_SCRAM: &str = "local all all trust\n\
                                     local replication all trust\n\
                                     hostssl all certuser 127.0.0.1/32 cert\n\
                                     hostssl all all 127.0.0.1/32 scram-sha-256\n\
                                     hostssl replication all 127.0.0.1/32 scram-sha-256\n";

/// The role the TCP tests log in as, and its password.
pub const ROLE: &str = "drill";
pub const PASSWORD: &str = "Tls-S3cret-pw";

/// Serve TLS on the ground's primary (before its standby is built, which
/// inherits it), with a SCRAM role `drill` and a `certuser` role for
/// client certificates.
pub fn serve_tls(g: &pgdrill::ground::Ground, pki: &Pki) {
    let p = &g.primary;
    p.serve_tls(&pki.server_cert, &pki.server_key, HBA_HOSTSSL_SCRAM).unwrap();
    let ca = p.pgdata.join("root.crt");
    std::fs::copy(&pki.ca, &ca).unwrap();
    p.configure(&[("ssl_ca_file", "root.crt".to_string())]).unwrap();
    p.reload().unwrap();
    g.primary_exec(&format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}';
         CREATE ROLE certuser LOGIN SUPERUSER;"
    ))
    .unwrap();
}

/// A passfile (mode 0600) with the role's password for every server.
pub fn passfile(dir: &Path) -> PathBuf {
    let p = dir.join("pgpass");
    std::fs::write(&p, format!("*:*:*:{ROLE}:{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}
