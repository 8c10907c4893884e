//! The disk-full guard. After a pack or index write failed because the disk
//! (or a quota) was full, new uploads are refused at once, before any byte
//! is read, instead of each one failing after it sent its data. The guard
//! lets uploads in again once `statvfs` on the data dir shows [`HEADROOM`]
//! free; it looks at most once per [`RECHECK`], so a flood of refused
//! uploads costs a lock and a clock read each.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Free space on the data dir's filesystem that ends a disk-full state.
pub const HEADROOM: u64 = 16 << 20;
/// How often a disk-full state looks at the free space again.
pub const RECHECK: Duration = Duration::from_secs(1);

pub struct DiskGuard {
    dir: PathBuf,
    full: AtomicBool,
    state: Mutex<Option<Full>>,
}

struct Full {
    why: String,
    checked: Instant,
}

impl DiskGuard {
    pub fn new(dir: PathBuf) -> Self {
        DiskGuard {
            dir,
            full: AtomicBool::new(false),
            state: Mutex::new(None),
        }
    }

    /// Records a failure: a full disk turns the guard on.
    pub fn note(&self, e: &Error) {
        if let Error::DiskFull(why) = e {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                tracing::warn!(error = %why, dir = %self.dir.display(), "disk full: refusing new uploads until space returns");
            }
            *s = Some(Full {
                why: why.clone(),
                checked: Instant::now(),
            });
            self.full.store(true, Ordering::Release);
        }
    }

    /// Whether a new upload may start: always, unless a write found the
    /// disk full and there is still not [`HEADROOM`] free.
    pub fn admit(&self) -> Result<()> {
        if !self.full.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = s.as_mut() else { return Ok(()) };
        if f.checked.elapsed() >= RECHECK {
            f.checked = Instant::now();
            if free_bytes(&self.dir) >= HEADROOM {
                tracing::info!(dir = %self.dir.display(), "disk space is back: uploads accepted again");
                *s = None;
                self.full.store(false, Ordering::Release);
                return Ok(());
            }
        }
        Err(Error::DiskFull(format!(
            "{} has less than {} MiB free; uploads are refused until space is freed (last failure: {})",
            self.dir.display(),
            HEADROOM >> 20,
            f.why
        )))
    }
}

/// Bytes an unprivileged writer may still use on `dir`'s filesystem (0 if
/// it cannot be read).
pub fn free_bytes(dir: &std::path::Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_refuses_until_space_is_seen_again() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path().to_path_buf());
        g.admit().unwrap();
        g.note(&Error::Internal("not a disk error".into()));
        g.admit().unwrap();
        g.note(&Error::DiskFull("no space left writing /x/0001.pack".into()));
        // Refused at once, without looking, while the last look is recent.
        let e = g.admit().unwrap_err();
        assert!(
            matches!(&e, Error::DiskFull(m) if m.contains("/x/0001.pack") && m.contains("refused")),
            "{e}"
        );
        // The temp dir's filesystem has room: the next look clears it.
        std::thread::sleep(RECHECK);
        assert!(
            free_bytes(dir.path()) >= HEADROOM,
            "the test needs a filesystem with room"
        );
        g.admit().unwrap();
        g.admit().unwrap();
    }
}
