//! Reloading from files: what is swapped in, what is refused, what the watch does, on real
//! files with certificates made by the fixture's PKI.

use std::path::{Path, PathBuf};

use super::*;
use etcd_health_testing::TestPki;

/// A CA, and client files (`ca.pem`, `cert.pem`, `key.pem`) in a directory of their own,
/// holding the CA's first client pair.
struct Files {
    _dir: tempfile::TempDir,
    pki: TestPki,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let pki = TestPki::generate(dir.path(), "unit").expect("pki");
        let client = dir.path().join("client");
        std::fs::create_dir(&client).expect("dir");
        let (ca, cert, key) = (
            client.join("ca.pem"),
            client.join("cert.pem"),
            client.join("key.pem"),
        );
        std::fs::copy(pki.ca_file(), &ca).expect("copy");
        std::fs::copy(pki.client_cert_file(), &cert).expect("copy");
        std::fs::copy(pki.client_key_file(), &key).expect("copy");
        Self {
            _dir: dir,
            pki,
            ca,
            cert,
            key,
        }
    }

    fn config(&self) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.ca.clone()),
            cert_file: Some(self.cert.clone()),
            key_file: Some(self.key.clone()),
            ..TlsConfig::default()
        }
    }

    /// A new pair from the same CA, copied over the client files; returns the certificate's
    /// fingerprint.
    fn rotate(&self, cn: &str) -> String {
        let (cert, key) = self.pki.issue_client(cn).expect("issue");
        std::fs::copy(&cert, &self.cert).expect("copy");
        std::fs::copy(&key, &self.key).expect("copy");
        sha256_of(&cert)
    }
}

fn sha256_of(path: &Path) -> String {
    Tls::certificate_sha256(&std::fs::read(path).expect("read")).expect("a certificate")
}

/// The first half of a file's bytes: what a reader sees mid-write.
fn half_of(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read");
    bytes[..bytes.len() / 2].to_vec()
}

#[test]
fn a_good_new_pair_is_swapped_in_and_seen_by_every_clone() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let clone = tls.clone();
    let first = tls.status();
    assert_eq!(first.generation, 0);
    assert_eq!(
        first.client_certificate_sha256,
        Some(sha256_of(files.pki.client_cert_file()))
    );
    assert_eq!(tls.reload(), Ok(false), "nothing changed");

    let rotated = files.rotate("second");
    assert_eq!(tls.reload(), Ok(true));
    let status = clone.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.client_certificate_sha256, Some(rotated));
    assert_eq!(status.refused, None);
    assert!(status.loaded_at >= first.loaded_at);
    assert_eq!(tls.reload(), Ok(false), "the same files again");
}

#[test]
fn a_half_written_key_keeps_the_old_material_and_says_which_file() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let before = tls.status();
    let (cert, key) = files.pki.issue_client("next").expect("issue");
    std::fs::copy(&cert, &files.cert).expect("copy");
    std::fs::write(&files.key, half_of(&key)).expect("write");

    let err = tls.reload().expect_err("half a key");
    let text = err.to_string();
    assert_eq!(err.path(), Some("tls.key_file"), "{text}");
    assert!(
        text.contains(&files.key.display().to_string())
            && text.contains("not a readable PEM private key"),
        "{text}"
    );
    let after = tls.status();
    assert_eq!(after.generation, before.generation);
    assert_eq!(
        after.client_certificate_sha256,
        before.client_certificate_sha256
    );
    assert_eq!(after.refused.as_deref(), Some(text.as_str()));

    // The writer finishes: the whole pair is taken, and the refusal forgotten.
    std::fs::copy(&key, &files.key).expect("copy");
    assert_eq!(tls.reload(), Ok(true));
    assert_eq!(
        tls.status().client_certificate_sha256,
        Some(sha256_of(&cert))
    );
    assert_eq!(tls.status().refused, None);
}

#[test]
fn a_half_written_certificate_or_ca_is_refused_too() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let good_cert = std::fs::read(&files.cert).expect("read");
    std::fs::write(&files.cert, half_of(&files.cert)).expect("write");
    let err = tls.reload().expect_err("half a certificate");
    assert_eq!(err.path(), Some("tls.cert_file"), "{err}");
    std::fs::write(&files.cert, good_cert).expect("write");

    std::fs::write(&files.ca, half_of(&files.ca)).expect("write");
    let err = tls.reload().expect_err("half a CA");
    assert_eq!(err.path(), Some("tls.ca_file"), "{err}");
    std::fs::remove_file(&files.ca).expect("remove");
    let err = tls.reload().expect_err("no CA");
    assert!(err.to_string().contains("cannot be read"), "{err}");
    assert_eq!(tls.status().generation, 0, "nothing was swapped");
}

#[test]
fn a_key_of_another_certificate_keeps_the_old_material() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let before = tls.status();
    let (cert, _) = files.pki.issue_client("one").expect("issue");
    let (_, other_key) = files.pki.issue_client("two").expect("issue");
    std::fs::copy(&cert, &files.cert).expect("copy");
    std::fs::copy(&other_key, &files.key).expect("copy");
    let err = tls.reload().expect_err("mismatched");
    let text = err.to_string();
    assert!(
        text.starts_with("tls.key_file") && text.contains("does not go with tls.cert_file"),
        "{text}"
    );
    let key_body = std::fs::read_to_string(&other_key).expect("read");
    assert!(
        key_body
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .all(|l| !text.contains(l)),
        "no key material in the error: {text}"
    );
    assert_eq!(tls.status().generation, before.generation);
    assert_eq!(
        tls.status().client_certificate_sha256,
        before.client_certificate_sha256
    );
}

#[test]
fn the_watch_loads_a_change_once_it_held_still_and_does_not_retry_a_refused_one() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    tls.poll_files();
    assert_eq!(tls.status().generation, 0, "nothing changed");

    // Half a key: settles, is refused once, and is not tried again while it stays.
    let (cert, key) = files.pki.issue_client("watched").expect("issue");
    std::fs::copy(&cert, &files.cert).expect("copy");
    std::fs::write(&files.key, half_of(&key)).expect("write");
    tls.poll_files();
    assert_eq!(tls.status().refused, None, "still settling: not read yet");
    tls.poll_files();
    let refused = tls.status().refused.expect("refused once it held still");
    assert!(refused.contains("tls.key_file"), "{refused}");
    assert_eq!(tls.status().generation, 0);
    tls.poll_files();
    tls.poll_files();
    assert_eq!(tls.status().generation, 0);

    // The rest of the key arrives: a new change, loaded once it held still.
    std::fs::copy(&key, &files.key).expect("copy");
    tls.poll_files();
    assert_eq!(tls.status().generation, 0, "settling");
    tls.poll_files();
    let status = tls.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.client_certificate_sha256, Some(sha256_of(&cert)));
    assert_eq!(status.refused, None);
}

#[test]
fn pem_material_is_replaced_whole_or_not_at_all() {
    let files = Files::new();
    let read = |p: &Path| std::fs::read(p).expect("read");
    let (ca, cert, key) = (read(&files.ca), read(&files.cert), read(&files.key));
    let tls = Tls::from_pem(Some(&ca), Some((&cert, &key))).expect("pem");
    let err = tls.reload().expect_err("no files");
    assert!(err.to_string().contains("not loaded from files"), "{err}");

    let (new_cert, new_key) = files.pki.issue_client("pem").expect("issue");
    let (new_cert, new_key) = (read(&new_cert), read(&new_key));
    let err = tls
        .replace_pem(Some(&ca), Some((&new_cert, &key)))
        .expect_err("mismatched");
    assert!(err.to_string().contains("does not go with"), "{err}");
    assert_eq!(tls.status().generation, 0);
    assert_eq!(
        tls.replace_pem(Some(&ca), Some((&new_cert, &new_key))),
        Ok(true)
    );
    assert_eq!(
        tls.status().client_certificate_sha256,
        Tls::certificate_sha256(&new_cert)
    );
    assert_eq!(
        tls.replace_pem(Some(&ca), Some((&new_cert, &new_key))),
        Ok(false)
    );
}

#[test]
fn with_domain_name_makes_a_holder_of_its_own() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let named = tls.clone().with_domain_name("localhost");
    files.rotate("named");
    assert_eq!(named.reload(), Ok(true), "it keeps the files");
    assert_eq!(named.status().generation, 1);
    assert_eq!(tls.status().generation, 0, "not shared");
}

#[test]
fn watching_needs_a_runtime_and_reloads_on_its_own() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let err = tls
        .watch(Duration::from_millis(100))
        .expect_err("no runtime here");
    assert!(matches!(err, crate::error::Error::NoRuntime), "{err}");
    tls.watch(Duration::ZERO).expect("off: nothing to run");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tls.watch(Duration::from_millis(100)).expect("watch");
        // Past the file system's timestamp granularity: a same-sized rewrite in the same tick
        // would look unchanged.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rotated = files.rotate("watched");
        // Seen changed, held still, read: three polls.
        for _ in 0..100 {
            if tls.status().generation == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(tls.status().client_certificate_sha256, Some(rotated));
    });
}

/// The watcher task on paused time, polling every second: a new pair written at 0.5 s is
/// seen by the poll at 1 s, held still until the poll at 2 s, and loaded then; the task ends
/// with the last holder of the material.
#[tokio::test(start_paused = true)]
async fn the_watcher_task_loads_a_rotated_pair_at_the_second_poll_after_it() {
    let files = Files::new();
    let tls = Tls::from_config(&files.config()).expect("tls");
    let t0 = tokio::time::Instant::now();
    tls.watch(Duration::from_secs(1)).expect("watch");
    tokio::time::sleep_until(t0 + Duration::from_millis(500)).await;
    // Past the file system's timestamp granularity (real time: paused time moves no file
    // clock), so that the rewrite shows.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let rotated = files.rotate("paused");
    tokio::time::sleep_until(t0 + Duration::from_millis(1500)).await;
    assert_eq!(tls.status().generation, 0, "settling after the first poll");
    tokio::time::sleep_until(t0 + Duration::from_millis(2500)).await;
    let status = tls.status();
    assert_eq!(status.generation, 1, "loaded at the second poll");
    assert_eq!(status.client_certificate_sha256, Some(rotated));
    let watcher = Arc::downgrade(&tls.inner);
    drop(tls);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(watcher.strong_count(), 0, "the watcher holds no material");
}
