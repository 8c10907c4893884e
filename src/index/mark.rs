//! The commit mark: the newest RocksDB sequence number the index has
//! acknowledged, kept in a small file of its own beside RocksDB's files, so
//! that a recovery which came back with less than that is noticed.
//!
//! RocksDB (in `TolerateCorruptedTailRecords` mode) refuses to open when a
//! record in the middle of its write-ahead log fails its checksum, but some
//! damage looks to it like the torn tail of a write that was never
//! acknowledged, and it silently stops there: a record length flipped to
//! point past the end of the last log block, a log cut short by the file
//! system, a log file lost. The mark catches those: after every commit the
//! sequence number it reached is written here (a `pwrite` of 16 bytes, no
//! fsync, so it survives a kill -9; fdatasynced at most once a second and at
//! close, so after a power loss it may be up to a second old, never newer
//! than the durable log). At open, a recovered sequence below the mark means
//! acknowledged writes are missing, and the index refuses to open.
//!
//! What it cannot see: damage that loses only writes acknowledged in the
//! last second before a power loss (the mark may not have reached the disk),
//! and a mark file that is itself damaged (it is then rewritten from the
//! recovered state, with a warning).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;

/// The mark's file name inside the index folder (RocksDB ignores names it
/// does not know, and the mark moves with the folder: `rebuild-index`
/// swaps in a new index with its own).
pub const MARK_FILE: &str = "STOWAGE-COMMIT-MARK";
const MAGIC: [u8; 4] = *b"SCM1";
const LEN: usize = 16;
/// How often the mark is fdatasynced at most.
const SYNC_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Mark {
    file: File,
    path: PathBuf,
    last_sync: Mutex<Instant>,
}

fn encode(seq: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(&MAGIC);
    b[4..12].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[..12]);
    b[12..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The sequence in a mark file's bytes, or None if they are not a valid mark.
fn decode(b: &[u8]) -> Option<u64> {
    if b.len() != LEN || b[..4] != MAGIC || crc32c::crc32c(&b[..12]).to_be_bytes() != b[12..] {
        return None;
    }
    Some(u64::from_be_bytes(b[4..12].try_into().ok()?))
}

/// What the mark file of the index at `dir` says.
pub(super) enum Stored {
    /// No mark (a new index, or one from before marks were kept).
    None,
    /// A mark that fails its checksum (torn by a power loss, or damaged).
    Damaged,
    Seq(u64),
}

pub(super) fn read(dir: &Path) -> Result<Stored> {
    match std::fs::read(dir.join(MARK_FILE)) {
        Ok(b) => Ok(decode(&b).map_or(Stored::Damaged, Stored::Seq)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::None),
        Err(e) => Err(e.into()),
    }
}

impl Mark {
    /// Opens (or creates) the mark of the index at `dir` and sets it to `seq`,
    /// durably.
    pub(super) fn open(dir: &Path, seq: u64) -> Result<Mark> {
        let path = dir.join(MARK_FILE);
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.write_all_at(&encode(seq), 0)?;
        file.sync_all()?;
        if created {
            File::open(dir)?.sync_all()?;
        }
        Ok(Mark {
            file,
            path,
            last_sync: Mutex::new(Instant::now()),
        })
    }

    /// Records that every write up to `seq` is durable in the log.
    pub(super) fn note(&self, seq: u64) {
        if let Err(e) = self.file.write_all_at(&encode(seq), 0) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot update the commit mark");
            return;
        }
        let mut last = self.last_sync.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= SYNC_EVERY {
            if let Err(e) = self.file.sync_data() {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot sync the commit mark");
            }
            *last = Instant::now();
        }
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        let _ = self.file.sync_data();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_damage_is_seen() {
        let b = encode(123_456_789);
        assert_eq!(decode(&b), Some(123_456_789));
        for i in 0..LEN {
            let mut d = b;
            d[i] ^= 0x10;
            assert_eq!(decode(&d), None, "flip at {i}");
        }
        assert_eq!(decode(&b[..LEN - 1]), None);
    }
}
