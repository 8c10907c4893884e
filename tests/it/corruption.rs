//! A flipped byte in a pack is reported as DATA_LOSS, never served.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

#[tokio::test]
async fn flipped_byte_in_a_sealed_pack_is_data_loss() {
    let d = Daemon::start("pack_target_size = \"256KiB\"").await;
    let c = d.client().await;
    let data = random_bytes(21, 2 << 20);
    let h = put(&c, "c", data.clone()).await;
    let packs_dir = d.data_dir().join("packs");
    eventually(Duration::from_secs(20), "packs sealed", || async {
        match pack_files(&packs_dir).len() {
            n if n >= 4 => Ok(()),
            n => Err(format!("{n} packs")),
        }
    })
    .await;
    let victim = &pack_files(&packs_dir)[1];
    let len = std::fs::metadata(victim).unwrap().len();
    flip(victim, len / 2);
    expect_data_loss(&d.client().await, "c", &h, &data, "flipped byte").await;
    // Ranges that avoid the damaged chunk still read.
    assert!(c.get_bytes("c", &h, 0, Some(1000)).await.unwrap() == data[..1000]);
}

#[tokio::test]
async fn flipped_byte_in_the_open_pack_is_data_loss() {
    let d = Daemon::start("").await;
    let c = d.client().await;
    let data = text_bytes(22, 1 << 20);
    let h = put(&c, "c", data.clone()).await;
    let staged = pack_files(&d.data_dir().join("staging"));
    assert_eq!(staged.len(), 1);
    flip(&staged[0], 200);
    expect_data_loss(&d.client().await, "c", &h, &data, "flipped byte").await;
}
