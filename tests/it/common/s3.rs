//! A real S3-compatible server for the tests: moto's standalone server
//! (PyPI `moto[server]`, which .ci/run installs), started on its own port
//! for each test that needs it and killed when the handle is dropped.
//! Nothing of the client is mocked: pgdrill talks HTTP to it with signed
//! requests, as to AWS.
//!
//! The server is found as `$PGDRILL_TEST_MOTO` (a program), else
//! `moto_server` on PATH, else `python3 -m moto.server`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Test credentials (moto accepts any).
pub const KEY_ID: &str = "pgdrilltestkey";
pub const SECRET: &str = "pgdrill-test-secret-never-printed";
pub const REGION: &str = "us-east-1";

/// Credentials for the whole test process, set once before any client
/// exists (each test's server endpoint goes in its `S3Config`).
pub fn credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/pgdrill-test/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/pgdrill-test/credentials"),
        ] {
            std::env::set_var(k, v);
        }
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_ENDPOINT_URL");
        std::env::remove_var("AWS_ENDPOINT_URL_S3");
    });
}

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn server_command(port: u16) -> Command {
    let program = std::env::var_os("PGDRILL_TEST_MOTO").map(PathBuf::from).or_else(|| which("moto_server"));
    let mut cmd = match program {
        Some(p) => Command::new(p),
        None => {
            let mut c = Command::new("python3");
            c.args(["-m", "moto.server"]);
            c
        }
    };
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    cmd
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

impl S3Server {
    /// Start a server on a free port and wait until it answers.
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("moto.log");
        let port = pgdrill::ground::free_port();
        let out = std::fs::File::create(&log).expect("log file");
        let child = server_command(port)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start moto_server (pip install 'moto[server]')");
        let mut s = S3Server { child: Some(child), port, log, _dir: dir };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("moto_server exited ({status}): {}", std::fs::read_to_string(&self.log).unwrap_or_default());
                }
            }
            if self.request("GET", "/", b"").is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not answer: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP request (moto does not check signatures): the status
    /// and body, `None` when the server does not answer.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        let text = String::from_utf8_lossy(&out);
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body_at = out.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(out.len());
        Some((code, out[body_at..].to_vec()))
    }

    /// Create a bucket.
    pub fn bucket(&self, name: &str) {
        let (code, body) = self.request("PUT", &format!("/{name}"), b"").expect("moto answers");
        assert_eq!(code, 200, "create bucket {name}: {}", String::from_utf8_lossy(&body));
    }

    /// The keys in `bucket` below `prefix`, as the server lists them.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (code, body) =
            self.request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}&max-keys=100000"), b"").expect("list");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body);
        text.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_string).collect()
    }

    /// A client of this server, for a test's own moves behind pgdrill's
    /// back (moto refuses unsigned object reads).
    pub fn store(&self, url: &str) -> pgdrill::objstore::Store {
        credentials();
        let config = pgdrill::objstore::S3Config { endpoint: Some(self.endpoint()), region: None, keys: None };
        pgdrill::objstore::Store::open(&pgdrill::objstore::S3Url::parse(url).expect("url"), &config).expect("open")
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_uploads(&self, bucket: &str) -> usize {
        let (_, body) = self.request("GET", &format!("/{bucket}?uploads"), b"").expect("list uploads");
        String::from_utf8_lossy(&body).matches("<UploadId>").count()
    }

    /// Stop the server (a store that goes away).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The environment a pgdrill process needs to reach this server the
    /// AWS way, with nothing read from this machine's own AWS setup.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent/pgdrill-test/config".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/pgdrill-test/credentials".into()),
        ]
    }

    /// Run pgdrill with this server's environment.
    pub fn pgdrill(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdrill"));
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.env_remove("AWS_PROFILE").args(args).output().expect("run pgdrill")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP proxy in front of the server that fails some requests the way
/// networks and stores do: every `every`-th request gets a `503 Slow Down`
/// or has its connection dropped before any answer (alternately). Each
/// request is forwarded on a fresh upstream connection.
pub struct FaultProxy {
    pub port: u16,
    pub faults: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: u16, every: usize) -> FaultProxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let faults = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (f2, s2) = (Arc::clone(&faults), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (f3, c3) = (Arc::clone(&f2), Arc::clone(&count));
                        std::thread::spawn(move || serve_connection(conn, upstream, every, &c3, &f3));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy { port, faults, stop }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Read one HTTP message head (through the blank line) and then its body
/// by Content-Length.
fn read_message(r: &mut std::io::BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    use std::io::BufRead;
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn serve_connection(
    conn: TcpStream,
    upstream: u16,
    every: usize,
    count: &std::sync::atomic::AtomicUsize,
    faults: &std::sync::atomic::AtomicUsize,
) {
    use std::sync::atomic::Ordering;
    let mut out = conn.try_clone().expect("clone");
    let mut reader = std::io::BufReader::new(conn);
    while let Some((head, body)) = read_message(&mut reader) {
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        if n % every == 0 {
            let k = faults.fetch_add(1, Ordering::Relaxed);
            if k % 2 == 0 {
                let msg = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>";
                let _ = write!(
                    out,
                    "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                    msg.len()
                );
                let _ = out.write_all(msg);
                continue;
            }
            let _ = out.shutdown(std::net::Shutdown::Both);
            return;
        }
        // Forward on a fresh connection that closes after the answer.
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
        let head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + "Connection: close\r\n\r\n";
        if up.write_all(head.as_bytes()).and_then(|()| up.write_all(&body)).is_err() {
            return;
        }
        let mut answer = Vec::new();
        if up.read_to_end(&mut answer).is_err() || out.write_all(&answer).is_err() {
            return;
        }
    }
}
