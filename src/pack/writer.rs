//! The open pack lives in the staging folder as `<id:016x>.pack` until it is
//! sealed (footer written, fsynced) and uploaded. Appends are serialised by a
//! lock and go to the page cache; [`OpenPack::sync_to`] makes them durable,
//! one fdatasync for every waiter that arrived while the previous one ran.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::format::{self, Codec, Entry, Kind};
use crate::error::{Error, Result};
use crate::hash::Hash;

/// Records up to this size are written with their header in one call.
const SMALL_RECORD: usize = 16 << 10;

pub struct OpenPack {
    pub id: u64,
    path: PathBuf,
    file: File,
    body: Mutex<Body>,
    /// Bytes known to be on disk; guarded by its own lock so syncs queue
    /// behind one another while appends go on.
    synced: Mutex<u64>,
    /// Set when an fsync failed; appends then go to a fresh pack.
    poisoned: AtomicBool,
    opened: Instant,
    /// Set at reopen when the file is damaged (not torn): what is wrong.
    /// Such a pack is quarantined: never appended to, never sealed by the
    /// daemon, cut nowhere, its intact records still served.
    damage: Option<Vec<String>>,
}

struct Body {
    len: u64,
    entries: Vec<Entry>,
    /// Final size once the footer is written.
    sealed: Option<u64>,
}

/// Parses `<id:016x>.pack`.
pub fn staging_file_id(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    u64::from_str_radix(name.strip_suffix(".pack")?, 16).ok()
}

/// Staged pack files, oldest first.
pub fn list_staged(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| staging_file_id(p).is_some())
        .collect();
    files.sort_by_key(|p| staging_file_id(p));
    Ok(files)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

impl OpenPack {
    /// Creates an empty pack with its header, durably.
    pub fn create(dir: &Path, id: u64, created_ms: i64) -> Result<Self> {
        let path = dir.join(format!("{id:016x}.pack"));
        let at = |e| Error::io_at(&path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(at)?;
        file.write_all_at(&format::encode_header(id, created_ms), 0)
            .map_err(at)?;
        file.sync_all().map_err(at)?;
        sync_dir(dir)?;
        let len = format::HEADER_LEN as u64;
        Ok(OpenPack {
            id,
            path,
            file,
            body: Mutex::new(Body {
                len,
                entries: Vec::new(),
                sealed: None,
            }),
            synced: Mutex::new(len),
            poisoned: AtomicBool::new(false),
            opened: Instant::now(),
            damage: None,
        })
    }

    /// Reopens a staged pack after a restart. A sealed one keeps its footer;
    /// an unsealed one is scanned past any damage. Bytes after the last
    /// record are a torn tail (a record cut short by a crash, never
    /// acknowledged) and are cut off only if no record follows them and
    /// `may_cut(id, end)` says nothing acknowledged points at or past `end`.
    /// Otherwise the file is damaged: it is left as it is, every record
    /// found stays readable, and the pack is quarantined ([`OpenPack::damage`]).
    pub fn reopen(path: &Path, may_cut: &mut dyn FnMut(u64, u64) -> Result<bool>) -> Result<Self> {
        let id = staging_file_id(path).ok_or_else(|| Error::corrupt(format!("{} is not a pack", path.display())))?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let bytes = std::fs::read(path)?;
        let (pack_id, _) = format::decode_header(&bytes)
            .map_err(|e| Error::corrupt(format!("staged pack {}: {e}", path.display())))?;
        if pack_id != id {
            return Err(Error::corrupt(format!(
                "staged pack {} holds pack {pack_id:016x}",
                path.display()
            )));
        }
        // A footer counts only if a scan of the records before it agrees
        // with it: the tail of a raw chunk could imitate one.
        let sealed = (bytes.len() >= format::HEADER_LEN + format::TRAILER_LEN)
            .then(|| format::decode_trailer(&bytes[bytes.len() - format::TRAILER_LEN..]).ok())
            .flatten()
            .and_then(|(_, off)| {
                let entries = format::decode_footer(bytes.get(off as usize..)?).ok()?;
                let (scanned, end) = format::scan_records(bytes.get(..off as usize)?).ok()?;
                (scanned == entries && end == off).then_some((entries, off))
            });
        let mut damage = None;
        let body = match sealed {
            Some((entries, off)) => Body {
                len: off,
                entries,
                sealed: Some(bytes.len() as u64),
            },
            None => {
                let scan = format::scan_past_damage(&bytes)?;
                let size = bytes.len() as u64;
                let end = scan.prefix_end;
                if end == size {
                    Body {
                        len: end,
                        entries: scan.entries,
                        sealed: None,
                    }
                } else if scan.only_a_tail()
                    && !format::whole_but_bad_record_at(&bytes, end as usize)
                    && may_cut(id, end)?
                {
                    tracing::warn!(pack = %format!("{id:016x}"), cut = size - end, "cutting torn tail of staged pack");
                    file.set_len(end)?;
                    Body {
                        len: end,
                        entries: scan.entries,
                        sealed: None,
                    }
                } else {
                    let found = scan.entries.len();
                    let mut what: Vec<String> = scan
                        .gaps
                        .iter()
                        .map(|&(a, b)| {
                            format!(
                                "bytes {a}..{b} of {size} are not a valid record (damaged record header or data length)"
                            )
                        })
                        .collect();
                    what.push(format!(
                        "{found} intact records kept readable; not cut: acknowledged data may point at or past offset {end}"
                    ));
                    tracing::error!(
                        pack = %format!("{id:016x}"),
                        path = %path.display(),
                        size,
                        damaged_at = end,
                        intact_records = found,
                        damage = ?what,
                        "staged pack is DAMAGED (not a torn tail): quarantined, not cut; its intact records stay readable"
                    );
                    damage = Some(what);
                    Body {
                        // Nothing is ever appended after the damage.
                        len: size,
                        entries: scan.entries,
                        sealed: None,
                    }
                }
            }
        };
        // What a killed process left in the page cache is not on disk yet.
        file.sync_all()?;
        let len = body.sealed.unwrap_or(body.len);
        Ok(OpenPack {
            id,
            path: path.to_path_buf(),
            file,
            body: Mutex::new(body),
            synced: Mutex::new(len),
            poisoned: AtomicBool::new(false),
            opened: Instant::now(),
            damage,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with a pack found damaged at reopen (None: intact).
    pub fn damage(&self) -> Option<&[String]> {
        self.damage.as_deref()
    }

    pub fn is_quarantined(&self) -> bool {
        self.damage.is_some()
    }

    /// Bytes of records written so far (header included, footer not).
    pub fn len(&self) -> u64 {
        lock(&self.body).len
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.body).entries.is_empty()
    }

    pub fn is_sealed(&self) -> bool {
        lock(&self.body).sealed.is_some()
    }

    /// Size on disk: with the footer once sealed.
    pub fn size(&self) -> u64 {
        let b = lock(&self.body);
        b.sealed.unwrap_or(b.len)
    }

    pub fn entries(&self) -> Vec<Entry> {
        lock(&self.body).entries.clone()
    }

    /// Appends one record; returns its entry (with offset). Not durable until
    /// [`OpenPack::sync_to`] covers `entry.offset + entry.record_len()`.
    fn append(&self, kind: Kind, codec: Codec, id: Hash, raw_len: u32, data: &[u8]) -> Result<Entry> {
        let mut e = Entry::new(kind, codec, id, raw_len, data);
        let mut b = lock(&self.body);
        if b.sealed.is_some() {
            return Err(Error::Internal(format!("pack {:016x} is sealed", self.id)));
        }
        if self.damage.is_some() {
            return Err(Error::Internal(format!("pack {:016x} is quarantined", self.id)));
        }
        e.offset = b.len;
        let header = format::encode_record_header(&e);
        if data.len() <= SMALL_RECORD {
            // One write instead of two: small uploads are mostly syscalls.
            self.file
                .write_all_at(&[&header[..], data].concat(), e.offset)
                .map_err(|x| Error::io_at(&self.path, x))?;
        } else {
            self.file
                .write_all_at(&header, e.offset)
                .map_err(|x| Error::io_at(&self.path, x))?;
            self.file
                .write_all_at(data, e.offset + format::RECORD_HEADER_LEN as u64)
                .map_err(|x| Error::io_at(&self.path, x))?;
        }
        b.len += e.record_len();
        b.entries.push(e);
        Ok(e)
    }

    /// Makes every byte before `end` durable. Concurrent callers share fsyncs.
    /// Lock order: `synced`, then `body`.
    pub fn sync_to(&self, end: u64) -> Result<()> {
        let mut synced = lock(&self.synced);
        if *synced >= end {
            return Ok(());
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Unavailable(format!(
                "pack {:016x} failed to sync earlier",
                self.id
            )));
        }
        let target = self.size();
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may drop the dirty pages and
            // report the next fsync as a success: never trust this file again.
            self.poisoned.store(true, Ordering::Release);
            return Err(Error::io_at(&self.path, e));
        }
        *synced = target;
        Ok(())
    }

    /// Writes the footer and fsyncs; idempotent. Returns (size, records).
    pub fn seal(&self) -> Result<(u64, u32)> {
        let mut b = lock(&self.body);
        if let Some(size) = b.sealed {
            return Ok((size, b.entries.len() as u32));
        }
        let footer = format::encode_footer(&b.entries, b.len);
        let at = |e| Error::io_at(&self.path, e);
        self.file.write_all_at(&footer, b.len).map_err(at)?;
        let size = b.len + footer.len() as u64;
        self.file.set_len(size).map_err(at)?;
        self.file.sync_all().map_err(at)?;
        b.sealed = Some(size);
        let records = b.entries.len() as u32;
        // Lock order is synced -> body (see sync_to): release body first.
        drop(b);
        let mut synced = lock(&self.synced);
        *synced = (*synced).max(size);
        Ok((size, records))
    }

    /// Reads `len` bytes at `offset` of this staged pack.
    pub fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(format!("staged pack {:016x} is shorter than its index says", self.id))
            } else {
                e.into()
            }
        })?;
        Ok(buf)
    }
}

/// Owns the current open pack and rolls over to a new one when it is full;
/// full packs go to the sealer through `sealer`.
pub struct Packer {
    dir: PathBuf,
    target_size: u64,
    current: Mutex<Arc<OpenPack>>,
    next_id: AtomicU64,
    /// Every staged pack (open or awaiting upload), readable locally.
    staged: RwLock<HashMap<u64, Arc<OpenPack>>>,
    sealer: mpsc::UnboundedSender<Arc<OpenPack>>,
}

impl Packer {
    /// `current` is the pack to append to; `others` are staged packs that
    /// still need sealing and uploading (already handed to the sealer).
    pub fn new(
        dir: PathBuf,
        target_size: u64,
        current: Arc<OpenPack>,
        others: &[Arc<OpenPack>],
        next_id: u64,
        sealer: mpsc::UnboundedSender<Arc<OpenPack>>,
    ) -> Self {
        let mut staged: HashMap<u64, Arc<OpenPack>> = others.iter().map(|p| (p.id, p.clone())).collect();
        staged.insert(current.id, current.clone());
        Packer {
            dir,
            target_size,
            current: Mutex::new(current),
            next_id: AtomicU64::new(next_id),
            staged: RwLock::new(staged),
            sealer,
        }
    }

    /// Appends a record to the current pack, rolling over once it is full.
    /// Returns the pack the record is in and its entry.
    pub fn append(
        &self,
        kind: Kind,
        codec: Codec,
        id: Hash,
        raw_len: u32,
        data: &[u8],
    ) -> Result<(Arc<OpenPack>, Entry)> {
        let mut cur = lock(&self.current);
        if cur.poisoned.load(Ordering::Acquire) {
            self.roll(&mut cur)?;
        }
        let pack = cur.clone();
        let e = pack.append(kind, codec, id, raw_len, data)?;
        if pack.len() >= self.target_size {
            self.roll(&mut cur)?;
        }
        Ok((pack, e))
    }

    fn roll(&self, cur: &mut Arc<OpenPack>) -> Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let fresh = Arc::new(OpenPack::create(&self.dir, id, crate::now_ms())?);
        self.staged
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, fresh.clone());
        let old = std::mem::replace(cur, fresh);
        // The sealer outlives the packer; if it is gone we are shutting down
        // and recovery seals the pack at the next start.
        let _ = self.sealer.send(old);
        Ok(())
    }

    /// Seals the current pack if it holds records and is older than `age`.
    pub fn roll_if_older(&self, age: Duration) -> Result<bool> {
        let mut cur = lock(&self.current);
        if cur.is_empty() || cur.opened.elapsed() < age {
            return Ok(false);
        }
        self.roll(&mut cur)?;
        Ok(true)
    }

    /// A staged pack, if this pack has not been uploaded and dropped yet.
    pub fn staged(&self, id: u64) -> Option<Arc<OpenPack>> {
        self.staged.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Every staged pack, by id.
    pub fn staged_all(&self) -> Vec<Arc<OpenPack>> {
        let s = self.staged.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = s.values().cloned().collect();
        v.sort_by_key(|p| p.id);
        v
    }

    /// (count, bytes) of staged packs that hold records.
    pub fn staged_totals(&self) -> (u64, u64) {
        let s = self.staged.read().unwrap_or_else(|p| p.into_inner());
        let used = s.values().filter(|p| !p.is_empty());
        used.fold((0, 0), |(n, b), p| (n + 1, b + p.size()))
    }

    /// Bytes of every staging pack file, empty ones included.
    pub fn staged_file_bytes(&self) -> u64 {
        let s = self.staged.read().unwrap_or_else(|p| p.into_inner());
        s.values().map(|p| p.size()).sum()
    }

    /// Forgets an uploaded pack and removes its staging file, if still there.
    pub fn drop_staged(&self, id: u64) -> Result<()> {
        let p = self.staged.write().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(p) = p {
            match std::fs::remove_file(p.path()) {
                Ok(()) => sync_dir(&self.dir)?,
                // A local pack store took the file by rename.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_that_imitates_a_footer_does_not_seal_the_pack() {
        let dir = tempfile::tempdir().unwrap();
        let pack = OpenPack::create(dir.path(), 7, 0).unwrap();
        // Raw bytes ending in what looks like an empty footer for this file.
        let mut data = vec![0x5a; 1000];
        let end = (format::HEADER_LEN + format::RECORD_HEADER_LEN + data.len() + format::TRAILER_LEN) as u64;
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&(end - format::TRAILER_LEN as u64).to_be_bytes());
        data.extend_from_slice(&format::END_MAGIC);
        let e = pack
            .append(Kind::Chunk, Codec::Raw, Hash::of(&data), data.len() as u32, &data)
            .unwrap();
        assert_eq!(e.offset + e.record_len(), end);
        let path = pack.path().to_path_buf();
        drop(pack);

        let again = OpenPack::reopen(&path, &mut |_, _| Ok(true)).unwrap();
        assert!(!again.is_sealed());
        assert_eq!(again.entries(), vec![e]);
        // A real seal survives a reopen.
        again.seal().unwrap();
        drop(again);
        let sealed = OpenPack::reopen(&path, &mut |_, _| Ok(true)).unwrap();
        assert!(sealed.is_sealed());
        assert_eq!(sealed.entries(), vec![e]);
    }

    /// A pack of `n` small chunk records, closed; (path, entries, size).
    fn pack_of(dir: &Path, n: u32) -> (PathBuf, Vec<Entry>, u64) {
        let pack = OpenPack::create(dir, 3, 0).unwrap();
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let data = format!("chunk number {i}").repeat(20).into_bytes();
                pack.append(Kind::Chunk, Codec::Raw, Hash::of(&data), data.len() as u32, &data)
                    .unwrap()
            })
            .collect();
        let size = pack.len();
        (pack.path().to_path_buf(), entries, size)
    }

    fn flip(path: &Path, at: u64) {
        let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_but_only_if_nothing_points_into_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, size) = pack_of(dir.path(), 10);
        // A record cut short by a crash: a whole header, part of its data.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let data = vec![1u8; 500];
        let mut e = Entry::new(Kind::Chunk, Codec::Raw, Hash::of(&data), 500, &data);
        e.offset = size;
        f.write_all_at(&format::encode_record_header(&e), size).unwrap();
        f.write_all_at(&data[..100], size + format::RECORD_HEADER_LEN as u64)
            .unwrap();
        drop(f);

        // The index points into the torn bytes: damage, never cut.
        let p = OpenPack::reopen(&path, &mut |_, end| Ok(end >= size + 1000)).unwrap();
        assert!(p.is_quarantined());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size + 156);
        assert_eq!(p.entries(), entries);
        drop(p);
        // Nothing points there: cut back to the last whole record.
        let p = OpenPack::reopen(&path, &mut |_, end| Ok(end == size)).unwrap();
        assert!(!p.is_quarantined());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        assert_eq!(p.entries(), entries);
    }

    #[test]
    fn a_damaged_record_header_in_the_middle_is_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, size) = pack_of(dir.path(), 20);
        let victim = entries[9];
        flip(&path, victim.offset + 20);
        // Even when no index entry points past it: records follow.
        let mut asked = false;
        let p = OpenPack::reopen(&path, &mut |_, _| {
            asked = true;
            Ok(true)
        })
        .unwrap();
        assert!(!asked, "a gap followed by records is damage whatever the index says");
        assert!(p.is_quarantined());
        assert!(p.damage().unwrap()[0].contains(&format!("bytes {}..", victim.offset)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        let mut kept = entries.clone();
        kept.remove(9);
        assert_eq!(p.entries(), kept);
        // Intact records on both sides still read; nothing is appended.
        for e in [entries[0], entries[10], entries[19]] {
            let rec = p.read_at(e.offset, e.record_len()).unwrap();
            format::open_record(&rec, e.offset, Kind::Chunk, &e.id).unwrap();
        }
        assert!(p.append(Kind::Chunk, Codec::Raw, Hash::of(b"x"), 1, b"x").is_err());
    }

    #[test]
    fn a_flipped_last_record_header_is_damage_not_a_tear() {
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, size) = pack_of(dir.path(), 5);
        flip(&path, entries[4].offset + 30);
        let p = OpenPack::reopen(&path, &mut |_, _| Ok(true)).unwrap();
        assert!(p.is_quarantined());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        // Garbage after the records, with nothing pointing there, is a tear.
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, size) = pack_of(dir.path(), 5);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xa5; 300], size).unwrap();
        drop(f);
        let p = OpenPack::reopen(&path, &mut |_, _| Ok(true)).unwrap();
        assert!(!p.is_quarantined());
        assert_eq!(p.entries(), entries);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    }
}
