//! Connections as libpq makes them, against real servers that accept TCP
//! only over TLS with SCRAM (`hostssl ... scram-sha-256`), with a CA made
//! at test time: every sslmode, the TLS files, service files, several
//! hosts with target_session_attrs, pg_basebackup -R's primary_conninfo,
//! and the CLI (preflight, backup, drill) over verify-full. Passwords
//! never show.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::tls::{passfile, serve_tls, Pki, PASSWORD, ROLE};
use crate::common::*;
use pgdrill::conn::ConnSpec;
use pgdrill::error::Error;
use pgdrill::ground::Ground;

/// pgdrill with a clean home (no ~/.pgpass, no ~/.postgresql) and no PG*
/// variables but the ones given.
fn pgdrill_env(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgdrill"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") && k != "PGDRILL_TEST_PG_BIN" {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).envs(env.iter().copied()).args(args).output().expect("run pgdrill")
}

fn home(g: &Ground) -> PathBuf {
    let h = g.dir.join("home");
    std::fs::create_dir_all(&h).unwrap();
    h
}

fn tcp(port: u16, pki_root: &Path, pass: &Path, extra: &str) -> String {
    format!(
        "host=localhost port={port} user={ROLE} dbname=postgres sslmode=verify-full sslrootcert={} passfile={} {extra}",
        pki_root.display(),
        pass.display()
    )
}

fn no_secret(o: &Output) {
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));
    assert!(!all.contains(PASSWORD), "the password shows: {all}");
}

/// Which server a client reached, by port.
fn port_of(c: &mut postgres::Client) -> u16 {
    one(c, "SELECT current_setting('port')").parse().unwrap()
}

fn connect(conninfo: &str) -> Result<postgres::Client, Error> {
    ConnSpec::parse(conninfo)?.connect()
}

fn tls_in_use(c: &mut postgres::Client) -> bool {
    one(c, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "true"
}

#[test]
fn sslmodes_files_and_passwords_against_a_hostssl_server() {
    let g = primary();
    let pki = Pki::new(&g.dir.join("pki"));
    serve_tls(&g, &pki);
    let pass = passfile(&g.dir);
    let port = g.primary.port;
    let base = format!("host=localhost port={port} user={ROLE} dbname=postgres passfile={}", pass.display());
    let missing = g.dir.join("no-such-root.crt");

    // verify-full with the right CA, by name and by address.
    let mut c = connect(&format!("{base} sslmode=verify-full sslrootcert={}", pki.ca.display())).unwrap();
    assert!(tls_in_use(&mut c));
    connect(&format!(
        "host=127.0.0.1 port={port} user={ROLE} dbname=postgres passfile={} sslmode=verify-full sslrootcert={}",
        pass.display(),
        pki.ca.display()
    ))
    .unwrap();

    // A wrong CA: refused, with a message about the certificate.
    let e = connect(&format!("{base} sslmode=verify-full sslrootcert={}", pki.other_ca.display()))
        .err()
        .expect("the connection must fail");
    assert_eq!(e.exit_code(), 3);
    let text = e.chain().join(": ");
    assert!(text.contains("certificate was not accepted") && text.contains("certificate verify failed"), "{text}");
    assert!(e.hint().unwrap().contains("sslrootcert"), "{:?}", e.hint());

    // require: no root certificate, no verification...
    let mut c = connect(&format!("{base} sslmode=require sslrootcert={}", missing.display())).unwrap();
    assert!(tls_in_use(&mut c));
    // ...but with a root certificate it verifies the chain, like verify-ca.
    let e = connect(&format!("{base} sslmode=require sslrootcert={}", pki.other_ca.display()))
        .err()
        .expect("the connection must fail");
    assert!(e.chain().join(": ").contains("certificate verify failed"), "{e:?}");
    // verify-ca and verify-full need the file.
    let e = connect(&format!("{base} sslmode=verify-ca sslrootcert={}", missing.display()))
        .err()
        .expect("the connection must fail");
    assert!(e.chain().join(": ").contains("does not exist"), "{e:?}");
    assert_eq!(e.exit_code(), 3);

    // hostaddr: the name is checked by verify-full, not by verify-ca.
    let named = format!(
        "host=db.invalid hostaddr=127.0.0.1 port={port} user={ROLE} dbname=postgres passfile={} sslrootcert={}",
        pass.display(),
        pki.ca.display()
    );
    connect(&format!("{named} sslmode=verify-ca")).unwrap();
    let e = connect(&format!("{named} sslmode=verify-full")).err().expect("the connection must fail");
    let text = e.chain().join(": ").to_ascii_lowercase();
    assert!(text.contains("hostname mismatch"), "{text}");
    assert!(e.hint().unwrap().contains("does not name the host"), "{:?}", e.hint());

    // The system's roots do not include our CA.
    let e = connect(&format!("{base} sslrootcert=system")).err().expect("the connection must fail");
    assert!(e.chain().join(": ").contains("certificate verify failed"), "{e:?}");

    // disable: pg_hba.conf has no line for it. allow: refused without TLS,
    // then in with TLS. prefer: TLS first.
    let e = connect(&format!("{base} sslmode=disable")).err().expect("the connection must fail");
    assert!(e.hint().unwrap().contains("pg_hba.conf"), "{:?}", e.hint());
    let mut c = connect(&format!("{base} sslmode=allow sslrootcert={}", missing.display())).unwrap();
    assert!(tls_in_use(&mut c));
    let mut c = connect(&format!("{base} sslmode=prefer sslrootcert={}", missing.display())).unwrap();
    assert!(tls_in_use(&mut c));

    // CRLs: an empty one is fine, one revoking the server's certificate is not.
    let ca = format!("{base} sslmode=verify-full sslrootcert={}", pki.ca.display());
    connect(&format!("{ca} sslcrl={}", pki.crl_empty.display())).unwrap();
    let e =
        connect(&format!("{ca} sslcrl={}", pki.crl_revoking_server.display())).err().expect("the connection must fail");
    assert!(e.chain().join(": ").contains("revoked"), "{e:?}");
    let crldir = g.dir.join("crldir");
    std::fs::create_dir_all(&crldir).unwrap();
    std::fs::copy(&pki.crl_revoking_server, crldir.join("crl.pem")).unwrap();
    let o = Command::new("openssl").arg("rehash").arg(&crldir).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let e = connect(&format!("{ca} sslcrldir={}", crldir.display())).err().expect("the connection must fail");
    assert!(e.chain().join(": ").contains("revoked"), "{e:?}");

    // Client certificates: `cert` authentication, also with an encrypted key.
    let certuser = format!(
        "host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full sslrootcert={} sslcert={}",
        pki.ca.display(),
        pki.client_cert.display()
    );
    connect(&format!("{certuser} sslkey={}", pki.client_key.display())).unwrap();
    connect(&format!(
        "{certuser} sslkey={} sslpassword={}",
        pki.client_key_encrypted.display(),
        Pki::CLIENT_KEY_PASSWORD
    ))
    .unwrap();
    let e = connect(&format!("{certuser} sslkey={} sslpassword=wrong", pki.client_key_encrypted.display()))
        .err()
        .expect("the connection must fail");
    assert!(e.chain().join(": ").contains("could not load private key"), "{e:?}");
    // The key file's permissions, by libpq's rule.
    let open_key = g.dir.join("open.key");
    std::fs::copy(&pki.client_key, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = connect(&format!("{certuser} sslkey={}", open_key.display())).err().expect("the connection must fail");
    assert!(e.chain().join(": ").contains("has group or world access"), "{e:?}");
    // sslcertmode=disable sends no certificate: cert authentication fails.
    assert!(connect(&format!("{certuser} sslkey={} sslcertmode=disable", pki.client_key.display())).is_err());

    // sslkeylogfile gets the session's keys; sslsni=0 still connects.
    let keylog = g.dir.join("keys.log");
    connect(&format!("{ca} sslkeylogfile={} sslsni=0", keylog.display())).unwrap();
    let keys = std::fs::read_to_string(&keylog).unwrap();
    assert!(keys.contains("CLIENT_") || keys.contains("CLIENT_RANDOM"), "{keys}");
    assert_eq!(std::fs::metadata(&keylog).unwrap().permissions().mode() & 0o077, 0);
    // Direct TLS negotiation (PostgreSQL 17+), with the ALPN libpq sends.
    if g.bin.major >= 17 {
        let mut c = connect(&format!("{ca} sslnegotiation=direct")).unwrap();
        assert!(tls_in_use(&mut c));
    }

    // channel_binding=require works over TLS (SCRAM-SHA-256-PLUS) where
    // the server offers it, and is refused, saying so, where it does not.
    let bound = connect(&format!("{ca} channel_binding=require"));
    if pgdrill::pg::version::by_major(g.bin.major).unwrap().scram_channel_binding {
        bound.unwrap();
    } else {
        let e = bound.err().expect("channel binding required from a server without it");
        let mut chain = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            chain.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert!(chain.contains("channel binding"), "{chain}");
    }

    // The password: a passfile others can read is ignored with libpq's
    // warning, and the failure says where the password should be.
    let open_pass = g.dir.join("open-pgpass");
    std::fs::copy(&pass, &open_pass).unwrap();
    std::fs::set_permissions(&open_pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let spec = ConnSpec::parse(&format!(
        "host=localhost port={port} user={ROLE} sslmode=verify-full sslrootcert={} passfile={}",
        pki.ca.display(),
        open_pass.display()
    ))
    .unwrap();
    assert!(spec.warnings()[0].contains("has group or world access; permissions should be u=rw (0600) or less"));
    let e = spec.connect().err().expect("the connection must fail");
    assert!(e.hint().unwrap().contains("passfile"), "{:?}", e.hint());
    // A wrong password is not shown.
    let e = connect(&format!("{ca} password=not-{PASSWORD}")).err().expect("the connection must fail");
    let all = format!("{e} {e:?} {} {:?}", e.chain().join(": "), e.hint());
    assert!(!all.contains(PASSWORD) && all.contains("password authentication failed"), "{all}");

    // Through the CLI: the warning reaches stderr, a wrong CA is exit 3.
    let h = home(&g);
    let open = format!(
        "host=localhost port={port} user={ROLE} sslmode=verify-full sslrootcert={} passfile={}",
        pki.ca.display(),
        open_pass.display()
    );
    let o = pgdrill_env(&h, &[], &["preflight", "--standby", &open]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "WARNING: password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            open_pass.display()
        )),
        "{}",
        stderr(&o)
    );
    let wrong = tcp(port, &pki.other_ca, &pass, "");
    let o = pgdrill_env(&h, &[], &["preflight", "--standby", &wrong]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));

    // libpq's defaults in ~/.postgresql/ and ~/.pgpass, and the PGSSL*
    // variables.
    let home2 = g.dir.join("home2");
    let dotpg = home2.join(".postgresql");
    std::fs::create_dir_all(&dotpg).unwrap();
    std::fs::copy(&pki.ca, dotpg.join("root.crt")).unwrap();
    std::fs::copy(&pki.client_cert, dotpg.join("postgresql.crt")).unwrap();
    std::fs::copy(&pki.client_key, dotpg.join("postgresql.key")).unwrap();
    std::fs::set_permissions(dotpg.join("postgresql.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::copy(&pass, home2.join(".pgpass")).unwrap();
    let plain = format!("host=localhost port={port} user={ROLE} dbname=postgres");
    let o = pgdrill_env(&home2, &[], &["preflight", "--standby", &format!("{plain} sslmode=verify-full")]);
    assert_eq!(code(&o), 1, "reached the server (a primary, so preflight fails): {}", stderr(&o));
    let env = [("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", pki.ca.to_str().unwrap())];
    let o = pgdrill_env(&h, &env, &["preflight", "--standby", &format!("{plain} passfile={}", pass.display())]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let certuser_plain = format!("host=localhost port={port} user=certuser dbname=postgres sslmode=verify-full");
    let o = pgdrill_env(&home2, &[], &["preflight", "--standby", &certuser_plain]);
    assert_eq!(code(&o), 1, "the default client certificate: {}", stderr(&o));
    // With another CA as ~/.postgresql/root.crt, even sslmode=require fails.
    std::fs::copy(&pki.other_ca, dotpg.join("root.crt")).unwrap();
    let o = pgdrill_env(&home2, &[], &["preflight", "--standby", &format!("{plain} sslmode=require")]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("certificate verify failed"), "{}", stderr(&o));

    // Keywords pgdrill cannot honour are named, exit 2.
    for (kw, named) in [
        ("gssencmode=require", "gssencmode=require"),
        ("requirepeer=postgres", "requirepeer=postgres"),
        ("sslmode=verify", "invalid sslmode value"),
        ("nosuchkeyword=1", "invalid connection option \"nosuchkeyword\""),
    ] {
        let o = pgdrill_env(&h, &[], &["preflight", "--standby", &format!("host=localhost {kw}")]);
        assert_eq!(code(&o), 2, "{kw}: {}", stderr(&o));
        assert!(stderr(&o).contains(named), "{kw}: {}", stderr(&o));
        assert!(!stderr(&o).contains("invalid connection string"), "{}", stderr(&o));
    }
}

#[test]
fn tls_standby_backup_drill_service_files_and_hosts() {
    let mut g = primary();
    let pki = Pki::new(&g.dir.join("pki"));
    serve_tls(&g, &pki);
    g.add_standby().unwrap();
    let h = home(&g);
    let pass = passfile(&g.dir);
    let (pport, sport) = (g.primary.port, g.standby().unwrap().port);
    let standby = tcp(sport, &pki.ca, &pass, "");
    let primary = tcp(pport, &pki.ca, &pass, "");

    // preflight, backup --standby/--primary and drill over verify-full.
    let o = pgdrill_env(&h, &[], &["preflight", "--standby", &standby, "--primary", &primary, "--json"]);
    assert_eq!(code(&o), 0, "{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    no_secret(&o);
    let dest = g.dir.join("backup");
    let o = pgdrill_env(
        &h,
        &[],
        &[
            "backup",
            "--standby",
            &standby,
            "--primary",
            &primary,
            "--dest",
            dest.to_str().unwrap(),
            "--fast",
            "--no-sync",
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    no_secret(&o);
    assert_eq!(json(&o)["wal_switch"]["archived"], true, "{}", String::from_utf8_lossy(&o.stdout));
    let work = g.dir.join("work");
    let o = pgdrill_env(
        &h,
        &[],
        &[
            "drill",
            "--standby",
            &standby,
            "--primary",
            &primary,
            "--work",
            work.to_str().unwrap(),
            "--wal-archive",
            g.archive.to_str().unwrap(),
            "--timeout",
            "120",
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    no_secret(&o);

    // A service file (PGSERVICEFILE); explicit keywords win over it.
    let svc = g.dir.join("services.conf");
    std::fs::write(
        &svc,
        format!(
            "[standby]\nhost=localhost\nport={sport}\nuser={ROLE}\ndbname=postgres\nsslmode=verify-full\n\
             sslrootcert={}\npassfile={}\n",
            pki.ca.display(),
            pass.display()
        ),
    )
    .unwrap();
    let svc_env = [("PGSERVICEFILE", svc.to_str().unwrap())];
    let o = pgdrill_env(&h, &svc_env, &["preflight", "--standby", "service=standby", "--json"]);
    assert_eq!(code(&o), 0, "{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let o = pgdrill_env(&h, &svc_env, &["preflight", "--standby", &format!("service=standby port={pport}")]);
    // The explicit port wins: it reached the primary, which is no standby.
    assert_eq!(code(&o), 1, "{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    // PGSERVICE, and ~/.pg_service.conf.
    std::fs::copy(&svc, h.join(".pg_service.conf")).unwrap();
    let o = pgdrill_env(&h, &[("PGSERVICE", "standby")], &["preflight", "--standby", "", "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = pgdrill_env(&h, &[], &["preflight", "--standby", "service=nope"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("definition of service \"nope\" not found"), "{}", stderr(&o));

    hosts_and_session_attrs(&g, &pki, &pass);
    basebackup_primary_conninfo(&g, &pki, &pass, &h, &dest);
}

/// Several hosts: target_session_attrs picks the server, like libpq.
fn hosts_and_session_attrs(g: &Ground, pki: &Pki, pass: &Path) {
    let (pport, sport) = (g.primary.port, g.standby().unwrap().port);
    let dead = pgdrill::ground::free_port();
    let both = |ports: &str, extra: &str| {
        format!(
            "host=localhost,localhost,localhost port={ports} user={ROLE} dbname=postgres sslmode=verify-full \
             sslrootcert={} passfile={} {extra}",
            pki.ca.display(),
            pass.display()
        )
    };
    let ports = format!("{dead},{pport},{sport}");
    let reached =
        |extra: &str| port_of(&mut connect(&both(&ports, extra)).unwrap_or_else(|e| panic!("{extra}: {e:?}")));
    assert_eq!(reached(""), pport, "any: the first that answers");
    assert_eq!(reached("target_session_attrs=any"), pport);
    assert_eq!(reached("target_session_attrs=standby"), sport);
    assert_eq!(reached("target_session_attrs=prefer-standby"), sport);
    assert_eq!(reached("target_session_attrs=read-only"), sport);
    assert_eq!(reached("target_session_attrs=primary"), pport);
    assert_eq!(reached("target_session_attrs=read-write"), pport);
    // The same order, reversed.
    let rev = format!("{sport},{pport},{dead}");
    assert_eq!(port_of(&mut connect(&both(&rev, "target_session_attrs=primary")).unwrap()), pport);
    // prefer-standby takes a primary when no host is a standby.
    let only_primary = format!("{dead},{pport},{pport}");
    assert_eq!(port_of(&mut connect(&both(&only_primary, "target_session_attrs=prefer-standby")).unwrap()), pport);
    let e = connect(&both(&only_primary, "target_session_attrs=standby")).err().expect("the connection must fail");
    assert_eq!(e.exit_code(), 3);
    let text = e.chain().join(": ");
    assert!(text.contains("server is not in hot standby mode") && text.contains(&dead.to_string()), "{text}");
    // load_balance_hosts=random still finds the standby.
    for _ in 0..4 {
        assert_eq!(
            port_of(&mut connect(&both(&ports, "target_session_attrs=standby load_balance_hosts=random")).unwrap()),
            sport
        );
    }
    // application_name, else fallback_application_name, else pgdrill.
    for (extra, want) in
        [("application_name=conn-test", "conn-test"), ("fallback_application_name=fb", "fb"), ("", "pgdrill")]
    {
        let mut c = connect(&both(&ports, extra)).unwrap();
        assert_eq!(one(&mut c, "SELECT current_setting('application_name')"), want);
    }
    // A URI with several hosts.
    let uri = format!(
        "postgresql://{ROLE}@localhost:{pport},localhost:{sport}/postgres?target_session_attrs=standby&sslmode=verify-full&sslrootcert={}&passfile={}",
        pki.ca.display(),
        pass.display()
    );
    assert_eq!(port_of(&mut connect(&uri).unwrap()), sport);
}

/// The primary_conninfo `pg_basebackup -R` writes works as a conninfo, and
/// pgdrill writes it back for a restored server without the password.
fn basebackup_primary_conninfo(g: &Ground, pki: &Pki, pass: &Path, h: &Path, backup: &Path) {
    let pport = g.primary.port;
    let basebackup = PathBuf::from("/usr/lib/postgresql/15/bin/pg_basebackup");
    // Debian's pg_basebackup 15 talks to servers up to 15.
    let written = if basebackup.exists() && g.bin.major <= 15 {
        let out = g.dir.join("basebackup");
        let o = Command::new(&basebackup)
            .env("HOME", h)
            .env("PGPASSWORD", PASSWORD)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &pki.ca)
            .args(["-R", "-X", "none", "-c", "fast", "-h", "localhost", "-p", &pport.to_string(), "-U", ROLE, "-D"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "pg_basebackup: {}", stderr(&o));
        let conf = if g.bin.major >= 12 { "postgresql.auto.conf" } else { "recovery.conf" };
        let text = std::fs::read_to_string(out.join(conf)).unwrap();
        pgdrill::pg::conf::get(&text, "primary_conninfo").expect("pg_basebackup -R wrote primary_conninfo")
    } else {
        // What pg_basebackup -R of 17 and 18 writes.
        format!(
            "user={ROLE} password={PASSWORD} channel_binding=prefer host=localhost port={pport} sslmode='verify-full' \
             sslnegotiation=postgres sslcompression=0 sslcertmode=allow sslrootcert={} sslsni=1 \
             ssl_min_protocol_version=TLSv1.2 gssencmode=prefer krbsrvname=postgres gssdelegation=0 \
             target_session_attrs=any load_balance_hosts=disable",
            pki.ca.display()
        )
    };
    assert!(written.contains("krbsrvname") && written.contains(PASSWORD), "{written}");
    let spec = ConnSpec::parse(&written).unwrap();
    let mut c = spec.connect().unwrap();
    assert!(tls_in_use(&mut c));
    let server = spec.to_server_conninfo();
    assert!(!server.contains(PASSWORD) && server.contains("sslmode=verify-full"), "{server}");

    // pgdrill restore --primary-conninfo: written without the password,
    // with the passfile.
    let with_passfile = format!("{written} passfile={}", pass.display());
    let target = g.dir.join("restored");
    let o = pgdrill_env(
        h,
        &[],
        &[
            "restore",
            backup.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
            "--no-sync",
            "--wal-archive",
            g.archive.to_str().unwrap(),
            "--primary-conninfo",
            &with_passfile,
            "--no-start",
            "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    no_secret(&o);
    let conf = if g.bin.major >= 12 { "postgresql.auto.conf" } else { "recovery.conf" };
    let text = std::fs::read_to_string(target.join(conf)).unwrap();
    let pc = pgdrill::pg::conf::get(&text, "primary_conninfo").unwrap();
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(pc.contains(&format!("passfile={}", pass.display())) && pc.contains("sslmode=verify-full"), "{pc}");
}

/// A server that accepts TCP and then says nothing: each attempt gives up
/// after connect_timeout (the TLS request and authentication included),
/// and the next host is tried.
#[test]
fn connect_timeout_bounds_a_silent_server() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let refused = pgdrill::ground::free_port();
    for mode in ["require", "disable"] {
        let started = std::time::Instant::now();
        let e = connect(&format!(
            "host=127.0.0.1,127.0.0.1 port={port},{refused} user=x dbname=x connect_timeout=2 sslmode={mode}"
        ))
        .err()
        .expect("nobody answers");
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(8), "{mode}: took {took:?}");
        let text = e.chain().join(": ");
        assert!(text.contains("timed out after 2 s (connect_timeout)"), "{mode}: {text}");
        assert!(text.contains(&format!("127.0.0.1:{refused}")), "the second host was tried too: {text}");
    }
    drop(silent);
}
