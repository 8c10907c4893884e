//! One process per data dir: `<data_dir>/stowage.pid`, locked (`flock`)
//! for as long as the daemon (or an offline admin command) runs, and
//! holding its pid, so a second one is told who holds the dir instead of
//! meeting RocksDB's lock error. The lock goes with the process, however it
//! ends; the file stays (removing it would race a starting daemon).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file in the data dir.
pub const PID_FILE: &str = "stowage.pid";

/// The data dir, held while this lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the data dir (creating it), or says which process holds it.
    pub fn acquire(data_dir: &Path) -> Result<DirLock> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io_at(data_dir, e))?;
        let path = data_dir.join(PID_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io_at(&path, e))?;
        lock(&mut file, &path)?;
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()?;
        Ok(DirLock { _file: file })
    }

    /// Fails as [`DirLock::acquire`] would when another process holds the
    /// data dir, creating nothing: a start checks this before it binds its
    /// ports, and takes the lock after.
    pub fn check_free(data_dir: &Path) -> Result<()> {
        let path = data_dir.join(PID_FILE);
        match File::open(&path) {
            Ok(mut f) => lock(&mut f, &path),
            Err(_) => Ok(()),
        }
    }
}

fn lock(file: &mut File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let who = match pid.trim() {
                "" => "another process".to_string(),
                pid => format!("another daemon (pid {pid})"),
            };
            Err(Error::FailedPrecondition(format!(
                "{who} holds the data dir {} (lock file {}); stop it first, or give this one its own \
                 --data-dir",
                absolute(path.parent().unwrap_or(path)).display(),
                absolute(path).display()
            )))
        }
        Err(TryLockError::Error(e)) => Err(Error::io_at(path, e)),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_pid_of_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        DirLock::check_free(&data).unwrap();
        assert!(!data.exists(), "a check creates nothing");
        let held = DirLock::acquire(&data).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(data.join(PID_FILE)).unwrap().trim(), pid);
        for e in [
            DirLock::acquire(&data).unwrap_err(),
            DirLock::check_free(&data).unwrap_err(),
        ] {
            let msg = e.to_string();
            assert!(msg.contains(&format!("pid {pid}")), "{msg}");
            assert!(msg.contains(&data.display().to_string()), "{msg}");
        }
        drop(held);
        DirLock::check_free(&data).unwrap();
        drop(DirLock::acquire(&data).unwrap());
    }
}
