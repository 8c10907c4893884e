//! A full disk, for real: the daemon's data dir on a small tmpfs the test
//! mounts (it needs root and the right to mount; without them it says so
//! and skips), filled with a file until writes fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stowage::api::client::{Code, header};
use stowage::api::pb;

use crate::harness::{BIN, Daemon, put, random_bytes};

/// Unmounts the tmpfs when the test ends (after the daemon, declared later, is gone).
struct Mount(Option<PathBuf>);

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::process::Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5au8; 256 << 10];
    while f.write_all(&block).is_ok() {}
    // The last partial block may fit in smaller writes.
    while f.write_all(&block[..4096]).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_is_resource_exhausted_and_refuses_uploads_until_space_returns() {
    let mut mnt = Mount(None);
    let d = Daemon::start_prepared("upload_idle_timeout = \"60s\"", None, |data| {
        if mount_tmpfs(data, "160m") {
            mnt.0 = Some(data.to_path_buf());
        }
    })
    .await;
    let Some(data_dir) = mnt.0.clone() else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root); the mapping is unit-tested");
        return;
    };
    let c = d.client().await;
    let kept = random_bytes(1, 300_000);
    let kept_h = put(&c, "ns", kept.clone()).await;
    let filler = data_dir.join("filler");
    fill(&filler);

    // The write that finds the disk full: RESOURCE_EXHAUSTED, naming the path.
    let e = c.put_bytes(header("ns"), random_bytes(2, 4 << 20)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("disk full"), "{e:?}");
    assert!(
        e.message().contains(&data_dir.display().to_string()),
        "no path in {e:?}"
    );

    // While it stays full, uploads are refused before they send anything:
    // a stream that sends nothing at all gets the answer at once.
    let started = Instant::now();
    let (_tx, rx) = tokio::sync::mpsc::channel::<pb::PutRequest>(1);
    let e = c
        .blobs
        .clone()
        .put(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("refused until space is freed"), "{e:?}");
    // Many at once cost the daemon little: all refused, none does any work.
    let started = Instant::now();
    for i in 0..200 {
        let e = c.put_bytes(header("ns"), random_bytes(i, 1000)).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    }
    eprintln!("200 refused uploads in {:?}", started.elapsed());
    // Reads still work.
    assert_eq!(c.get_bytes("ns", &kept_h, 0, None).await.unwrap(), kept);

    // Space comes back: after the next look (at most a second), uploads work.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let data = random_bytes(3, 4 << 20);
    let h = loop {
        match c.put_bytes(header("ns"), data.clone()).await {
            Ok(r) => break r.digests.unwrap().blake3,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("uploads still refused after space returned: {e:?}\n{}", d.log()),
        }
    };
    assert_eq!(c.get_bytes("ns", &h, 0, None).await.unwrap(), data);
    assert_eq!(c.get_bytes("ns", &kept_h, 0, None).await.unwrap(), kept);
}

#[tokio::test]
async fn a_restart_on_a_full_disk_says_the_disk_is_full() {
    let mut mnt = Mount(None);
    let mut d = Daemon::start_prepared("", None, |data| {
        if mount_tmpfs(data, "160m") {
            mnt.0 = Some(data.to_path_buf());
        }
    })
    .await;
    let Some(data_dir) = mnt.0.clone() else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let c = d.client().await;
    let kept = random_bytes(4, 300_000);
    let kept_h = put(&c, "ns", kept.clone()).await;
    drop(c);
    d.stop();
    fill(&data_dir.join("filler"));
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the daemon started on a full disk");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(last.contains("disk full"), "{err}");
    assert!(last.contains(&data_dir.display().to_string()), "{err}");
    // With space again it starts, and nothing was lost.
    std::fs::remove_file(data_dir.join("filler")).unwrap();
    d.spawn().await;
    let c = d.client().await;
    assert_eq!(c.get_bytes("ns", &kept_h, 0, None).await.unwrap(), kept);
}
