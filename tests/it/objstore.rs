//! The object-storage layer (`pgdrill::objstore`) against a real
//! S3-compatible server (moto) that the test starts: listing, ranged
//! parallel reads, multipart uploads, deletion, faults.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::common::s3::{FaultProxy, S3Server};
use pgdrill::error::{Error, EXIT_RUNTIME, EXIT_USAGE};
use pgdrill::objstore::{S3Config, S3Url, Store, CHUNK, PART};
use sha2::{Digest, Sha256};

fn store(endpoint: &str, url: &str) -> Store {
    crate::common::s3::credentials();
    let config = S3Config { endpoint: Some(endpoint.to_string()), region: None, keys: None };
    Store::open(&S3Url::parse(url).unwrap(), &config).unwrap()
}

/// Deterministic bytes that differ at every offset (a misplaced range
/// shows in the digest).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

#[test]
fn small_objects_list_read_and_delete_below_the_prefix() {
    let s3 = S3Server::start();
    s3.bucket("fleet");
    s3.store("s3://fleet").put("other/outside", b"not ours".to_vec()).unwrap();
    let st = store(&s3.endpoint(), "s3://fleet/db1/");
    st.put("backup_label", b"START WAL LOCATION: 0/2000028".to_vec()).unwrap();
    st.put("base/1/1259", vec![7; 8192]).unwrap();
    st.put("base/1/1259_fsm", vec![]).unwrap();

    let names: Vec<(String, u64)> = st.list("").unwrap().into_iter().map(|o| (o.name, o.size)).collect();
    assert_eq!(
        names,
        [("backup_label".to_string(), 29), ("base/1/1259".into(), 8192), ("base/1/1259_fsm".into(), 0)],
        "only the prefix's objects, relative names, sorted"
    );
    assert_eq!(st.list("base").unwrap().len(), 2);
    assert_eq!(st.head("backup_label").unwrap().unwrap().size, 29);
    assert!(st.head("nothing").unwrap().is_none());
    assert_eq!(st.read_small("backup_label", 1024).unwrap().unwrap(), b"START WAL LOCATION: 0/2000028");
    assert!(st.read_small("nothing", 1024).unwrap().is_none());
    let too_big = st.read_small("base/1/1259", 100).unwrap_err();
    assert!(matches!(too_big, Error::ObjectTooLarge { size: 8192, .. }), "{too_big}");
    let mut empty = Vec::new();
    st.open_reader("base/1/1259_fsm").unwrap().unwrap().read_to_end(&mut empty).unwrap();
    assert!(empty.is_empty());

    st.delete_many(&["base/1/1259".to_string(), "base/1/1259_fsm".to_string()]).unwrap();
    st.delete("backup_label").unwrap();
    st.delete("backup_label").unwrap(); // already gone: fine
    assert!(st.list("").unwrap().is_empty());
    assert_eq!(s3.keys("fleet", ""), ["other/outside"], "nothing outside the prefix was touched");
    // A name that climbs out of the prefix is refused before any request.
    assert!(matches!(st.head("../other/outside"), Err(Error::BadS3Url { .. })));
}

#[test]
fn large_objects_go_up_in_parts_and_come_back_in_parallel_ranges() {
    let s3 = S3Server::start();
    s3.bucket("big");
    let st = store(&s3.endpoint(), "s3://big/wal");
    let data = pattern(3 * PART + 12345, 42);
    let mut w = st.writer("seg", Some(data.len() as u64)).unwrap();
    // Odd-sized writes, as a copy loop makes them.
    for piece in data.chunks(777_777) {
        w.write_bytes(piece).unwrap();
    }
    assert_eq!(s3.keys("big", ""), Vec::<String>::new(), "nothing visible before finish");
    assert_eq!(s3.open_uploads("big"), 1, "a multipart upload is under way");
    assert_eq!(w.finish().unwrap(), data.len() as u64);
    assert_eq!(s3.open_uploads("big"), 0);
    let etag = st.head("seg").unwrap().unwrap().etag.unwrap();
    assert!(etag.contains("-4"), "uploaded in 4 parts: {etag}");

    // Read through Read with small buffers, and chunk by chunk.
    let mut r = st.open_reader("seg").unwrap().unwrap();
    assert_eq!(r.size(), data.len() as u64);
    let mut back = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert_eq!(sha(&back), sha(&data));
    let info = st.list("").unwrap().remove(0);
    let mut r = st.reader(&info).unwrap();
    let mut chunks = 0;
    let mut back = Vec::new();
    while let Some(c) = r.next_chunk().unwrap() {
        assert!(c.len() <= CHUNK);
        chunks += 1;
        back.extend_from_slice(&c);
    }
    assert_eq!(chunks, data.len().div_ceil(CHUNK));
    assert_eq!(sha(&back), sha(&data));
}

#[test]
fn an_abandoned_upload_leaves_no_object_and_no_open_upload() {
    let s3 = S3Server::start();
    s3.bucket("bkt");
    let st = store(&s3.endpoint(), "s3://bkt/b");
    let mut w = st.writer("big", None).unwrap();
    w.write_bytes(&pattern(2 * PART + 1, 7)).unwrap();
    assert_eq!(s3.open_uploads("bkt"), 1);
    drop(w);
    assert_eq!(s3.open_uploads("bkt"), 0, "aborted");
    assert!(s3.keys("bkt", "").is_empty());
    let mut small = st.writer("small", None).unwrap();
    small.write_bytes(b"x").unwrap();
    small.abort();
    assert!(s3.keys("bkt", "").is_empty(), "a small object that was never finished never appears");
}

#[test]
fn an_object_replaced_while_it_is_read_fails_instead_of_mixing_versions() {
    let s3 = S3Server::start();
    s3.bucket("bkt");
    let st = store(&s3.endpoint(), "s3://bkt");
    let first = pattern(4 * CHUNK, 1);
    let mut w = st.writer("obj", None).unwrap();
    w.write_bytes(&first).unwrap();
    w.finish().unwrap();
    let info = st.head("obj").unwrap().unwrap();
    st.put("obj", pattern(4 * CHUNK, 2)).unwrap();
    let mut r = st.reader(&info).unwrap();
    let mut err = None;
    loop {
        match r.next_chunk() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("reading a replaced object must fail");
    assert!(matches!(&err, Error::ObjectStore { source: object_store::Error::Precondition { .. }, .. }), "{err}");
    assert!(err.to_string().contains("s3://bkt/obj"), "{err}");
    assert!(err.hint().unwrap().contains("changed"), "{:?}", err.hint());
}

#[test]
fn transient_errors_and_dropped_connections_are_retried() {
    let s3 = S3Server::start();
    s3.bucket("bkt");
    // Every third request fails: a 503 Slow Down or a dropped connection.
    let proxy = FaultProxy::start(s3.port, 3);
    let st = store(&proxy.endpoint(), "s3://bkt/p");
    let data = pattern(2 * PART + 99, 5);
    let mut w = st.writer("obj", None).unwrap();
    w.write_bytes(&data).unwrap();
    w.finish().unwrap();
    for i in 0..6 {
        st.put(&format!("small/{i}"), vec![i as u8; 100]).unwrap();
    }
    assert_eq!(st.list("small").unwrap().len(), 6);
    let mut back = Vec::new();
    st.open_reader("obj").unwrap().unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(sha(&back), sha(&data));
    let faults = proxy.faults.load(std::sync::atomic::Ordering::Relaxed);
    assert!(faults >= 4, "the proxy injected faults: {faults}");
}

#[test]
fn a_store_that_goes_away_is_a_runtime_failure_within_the_retry_bound() {
    let mut s3 = S3Server::start();
    s3.bucket("bkt");
    let st = store(&s3.endpoint(), "s3://bkt");
    st.put("a", vec![1; 10]).unwrap();
    s3.stop();
    let started = Instant::now();
    let err = st.list("").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(60), "gave up after {:?}", started.elapsed());
    assert_eq!(err.exit_code(), EXIT_RUNTIME, "{err}");
    assert!(err.to_string().contains("s3://bkt"), "{err}");
    assert!(err.hint().unwrap().contains("reachable"), "{:?}", err.hint());
}

#[test]
fn a_missing_bucket_is_bad_input_named_without_secrets() {
    let s3 = S3Server::start();
    let st = store(&s3.endpoint(), "s3://no-such-bucket/x");
    let err = st.list("").unwrap_err();
    assert!(matches!(&err, Error::NoSuchBucket { bucket } if bucket == "no-such-bucket"), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_USAGE, "{err:?}");
    assert_eq!(err.to_string(), "s3://no-such-bucket: no such bucket");
    let chain = err.chain().join(" / ");
    assert!(!chain.contains(crate::common::s3::SECRET), "the secret never appears: {chain}");
}

#[test]
fn a_handoff_reaches_the_same_store_without_the_chain() {
    let s3 = S3Server::start();
    s3.bucket("bkt");
    let st = store(&s3.endpoint(), "s3://bkt/p");
    st.put("seg", b"wal".to_vec()).unwrap();
    let h = st.handoff().unwrap();
    assert_eq!(h.endpoint.as_deref(), Some(s3.endpoint().as_str()));
    assert_eq!(h.keys.key_id, crate::common::s3::KEY_ID);
    // Through the file, as the restored server's wal-fetch would.
    let tmp = tempfile::tempdir().unwrap();
    let dir = pgdrill::safefs::Dir::open(tmp.path()).unwrap();
    let path = pgdrill::objstore::handoff::write(&h, &dir, std::path::Path::new("s3.env"), None).unwrap();
    let config = S3Config::from_handoff(pgdrill::objstore::handoff::read(&path).unwrap());
    let other = Store::open(&S3Url::parse("s3://bkt/p").unwrap(), &config).unwrap();
    assert_eq!(other.read_small("seg", 100).unwrap().unwrap(), b"wal");
    assert!(!format!("{config:?}").contains(crate::common::s3::SECRET));
}
