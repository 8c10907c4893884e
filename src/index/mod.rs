//! The RocksDB index: the only module that knows rocksdb.
//!
//! Column families and their keys (all integers big-endian):
//! - `chunks`: chunk id (32) -> [`ChunkRec`] (location, manifests using it, condemned since)
//! - `blobs`:  blob id (32) -> encoded [`Manifest`]
//! - `sha256`: blob SHA-256 (32) -> blob id (32), to find a blob by the digest registries know
//! - `refs`:   ns_len:u16 ns id(32) -> [`RefInfo`] (a namespace stored this blob)
//! - `packs`:  pack id:u64 -> [`PackInfo`]
//! - `meta`:   "stats" -> [`Stats`]
//!
//! The catalog's column families are described in `catalog::records`, and
//! every `catalog_idx` layout in its tag registry (`catalog::records::tag`).
//! The blob side (`chunks`, `blobs`, `sha256`, `refs`, `packs`) can be
//! rebuilt from the packs (`admin rebuild-index`); the catalog cannot: it
//! lives only here.
//!
//! Recovery never serves a silently older index: the write-ahead log is
//! replayed in `TolerateCorruptedTailRecords` mode (the torn last record of
//! a write that was never acknowledged is dropped; a record that fails its
//! checksum anywhere else makes the open fail), and the commit mark
//! ([`mark`]) catches a recovery that stopped short without RocksDB seeing
//! damage. Either way the open fails with [`Error::Corrupt`] naming
//! `stowage admin rebuild-index`. Every RocksDB `Corruption` status (a table
//! block failing its checksum on a read) is [`Error::Corrupt`] (DATA_LOSS),
//! and [`Index::verify_tables`] reads every block of every table for
//! `admin check`.

mod codec;
pub mod mark;

use std::path::Path;

pub use codec::{ChunkLoc, ChunkRec, PackInfo, PackState, RefInfo, Stats, decode_ref_key, ref_key};
use std::collections::HashMap;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    ReadOptions, WriteOptions,
};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::manifest::Manifest;

/// Column families. The catalog's small secondary indexes share
/// `catalog_idx`, each under its own one-byte tag (see `catalog::records::tag`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cf {
    Chunks,
    Blobs,
    Sha256,
    Refs,
    Packs,
    Meta,
    Packages,
    Versions,
    Files,
    Audit,
    CatalogIdx,
}

impl Cf {
    const ALL: [Cf; 11] = [
        Cf::Chunks,
        Cf::Blobs,
        Cf::Sha256,
        Cf::Refs,
        Cf::Packs,
        Cf::Meta,
        Cf::Packages,
        Cf::Versions,
        Cf::Files,
        Cf::Audit,
        Cf::CatalogIdx,
    ];

    fn name(self) -> &'static str {
        match self {
            Cf::Chunks => "chunks",
            Cf::Blobs => "blobs",
            Cf::Sha256 => "sha256",
            Cf::Refs => "refs",
            Cf::Packs => "packs",
            Cf::Meta => "meta",
            Cf::Packages => "packages",
            Cf::Versions => "versions",
            Cf::Files => "files",
            Cf::Audit => "audit",
            Cf::CatalogIdx => "catalog_idx",
        }
    }
}

const STATS_KEY: &[u8] = b"stats";
/// Block cache of [`Index::open`] (the daemon's comes from its config).
pub const DEFAULT_CACHE: usize = 256 << 20;

fn db_err(e: rocksdb::Error) -> Error {
    match e.kind() {
        rocksdb::ErrorKind::Corruption => Error::Corrupt(format!("the index is damaged: {}", e.into_string())),
        _ => classify(e.into_string(), ""),
    }
}

/// A RocksDB status as our error: a damaged index is DATA_LOSS, a full
/// disk says so (RocksDB's message names the file), the rest is `Index`.
/// `context` goes before the message.
fn classify(msg: String, context: &str) -> Error {
    if msg.starts_with("Corruption:") {
        return Error::Corrupt(format!("{context}the index is damaged: {msg}"));
    }
    if msg.contains("No space left on device") || msg.contains("Disk quota exceeded") {
        return Error::DiskFull(format!("{context}the index cannot write: {msg}"));
    }
    Error::Index(format!("{context}{msg}"))
}

/// What to do when the index is damaged.
const REBUILD_HINT: &str = "stop here and run `stowage admin rebuild-index` (with the daemon stopped): \
     it rebuilds chunks, blobs and references from the packs and keeps the catalog as far as the \
     damaged index still has it";

pub struct Index {
    db: DB,
    /// The commit mark (None for a read-only salvage open).
    mark: Option<mark::Mark>,
}

/// What [`Index::open_salvage`] could read of a damaged index.
#[derive(Debug)]
pub struct Salvage {
    /// Why the normal open failed.
    pub reason: String,
    /// The sequence number the salvage recovered, and the commit mark (what
    /// the index had acknowledged), if it had one.
    pub recovered_seq: u64,
    pub mark_seq: Option<u64>,
}

type Writes = HashMap<Vec<u8>, Option<Vec<u8>>>;
/// A write to undo: where, and the entry it replaced (None: there was none).
type Undo = (Cf, Vec<u8>, Option<Option<Vec<u8>>>);

/// Changes applied atomically (and durably) by [`Index::commit`]. Reads
/// through a transaction see its own writes; a savepoint lets one request
/// of a group be undone without touching the others.
pub struct Txn<'a> {
    index: &'a Index,
    /// Per column family, so a lookup borrows the key instead of copying it.
    writes: HashMap<Cf, Writes>,
    /// (key, previous entry in `writes`) for every write, for rollback.
    undo: Vec<Undo>,
}

impl<'a> Txn<'a> {
    /// The index under the transaction (reads committed state only).
    pub fn index(&self) -> &'a Index {
        self.index
    }
    pub fn get(&self, cf: Cf, k: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(&cf).and_then(|w| w.get(k)) {
            Some(v) => Ok(v.clone()),
            None => self.index.get(cf, k),
        }
    }
    fn set(&mut self, cf: Cf, k: Vec<u8>, v: Option<Vec<u8>>) {
        let prev = self.writes.entry(cf).or_default().insert(k.clone(), v);
        self.undo.push((cf, k, prev));
    }
    pub fn put(&mut self, cf: Cf, k: impl Into<Vec<u8>>, v: Vec<u8>) {
        self.set(cf, k.into(), Some(v));
    }
    pub fn delete(&mut self, cf: Cf, k: impl Into<Vec<u8>>) {
        self.set(cf, k.into(), None);
    }
    /// A point to roll back to.
    pub fn savepoint(&self) -> usize {
        self.undo.len()
    }
    /// Undoes every write made since `sp`.
    pub fn rollback(&mut self, sp: usize) {
        while self.undo.len() > sp {
            let (cf, k, prev) = self.undo.pop().expect("len > sp");
            let w = self.writes.entry(cf).or_default();
            match prev {
                Some(v) => w.insert(k, v),
                None => w.remove(&k),
            };
        }
    }
    /// Distinct keys written.
    pub fn len(&self) -> usize {
        self.writes.values().map(HashMap::len).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn chunk(&self, id: &Hash) -> Result<Option<ChunkLoc>> {
        self.get(Cf::Chunks, &id.0)?.map(|v| ChunkLoc::decode(&v)).transpose()
    }
    pub fn has_blob(&self, id: &Hash) -> Result<bool> {
        Ok(self.get(Cf::Blobs, &id.0)?.is_some())
    }
    pub fn reference(&self, ns: &str, id: &Hash) -> Result<Option<RefInfo>> {
        self.get(Cf::Refs, &codec::ref_key(ns, id))?
            .map(|v| RefInfo::decode(&v))
            .transpose()
    }
    pub fn chunk_rec(&self, id: &Hash) -> Result<Option<ChunkRec>> {
        self.get(Cf::Chunks, &id.0)?.map(|v| ChunkRec::decode(&v)).transpose()
    }
    pub fn put_chunk_rec(&mut self, id: &Hash, c: &ChunkRec) {
        self.put(Cf::Chunks, id.0, c.encode());
    }
    /// A blob's manifest and its SHA-256 alias.
    pub fn put_blob(&mut self, m: &Manifest) {
        self.put(Cf::Blobs, m.digests.blake3.0, m.encode());
        self.put(Cf::Sha256, m.digests.sha256, m.digests.blake3.0.to_vec());
    }
    pub fn delete_blob(&mut self, m: &Manifest) {
        self.delete(Cf::Blobs, m.digests.blake3.0);
        self.delete(Cf::Sha256, m.digests.sha256);
    }
    pub fn put_ref(&mut self, ns: &str, id: &Hash, r: &RefInfo) {
        self.put(Cf::Refs, codec::ref_key(ns, id), r.encode());
    }
    pub fn delete_ref(&mut self, ns: &str, id: &Hash) {
        self.delete(Cf::Refs, codec::ref_key(ns, id));
    }
    pub fn put_pack(&mut self, id: u64, p: &PackInfo) {
        self.put(Cf::Packs, id.to_be_bytes(), p.encode());
    }
    pub fn put_stats(&mut self, s: &Stats) {
        self.put(Cf::Meta, STATS_KEY, s.encode());
    }
}

impl Drop for Index {
    /// A clean close writes the memtables out as tables: the next start
    /// replays no log, and the data dir keeps no log of keys long
    /// overwritten or deleted. Best effort: whatever is not flushed is in
    /// the fsynced log already.
    fn drop(&mut self) {
        if self.mark.is_none() {
            return;
        }
        for cf in Cf::ALL {
            if let Err(e) = self.db.flush_cf(self.cf(cf)) {
                tracing::warn!(error = %e, "cannot flush the index at close; the next start replays its log");
                return;
            }
        }
    }
}

/// A consistent read-only view of the index at one moment.
pub struct Snapshot<'a> {
    snap: rocksdb::Snapshot<'a>,
    index: &'a Index,
}

/// The counters as stored (zero before the first commit).
fn stored_stats(v: Option<Vec<u8>>) -> Result<Stats> {
    Ok(v.map(|v| Stats::decode(&v)).transpose()?.unwrap_or_default())
}

impl Snapshot<'_> {
    pub fn stats(&self) -> Result<Stats> {
        stored_stats(self.get(Cf::Meta, STATS_KEY)?)
    }
    pub fn get(&self, cf: Cf, k: &[u8]) -> Result<Option<Vec<u8>>> {
        self.snap.get_cf(self.index.cf(cf), k).map_err(db_err)
    }
    /// Keys in `[from, to)` (to = None: to the end), in order.
    pub fn scan<'s>(&'s self, cf: Cf, from: &[u8], to: Option<&[u8]>) -> impl Iterator<Item = Result<KeyValue>> + 's {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        self.index.scan_opt(cf, ro, from, to, false)
    }
}

pub type KeyValue = (Box<[u8]>, Box<[u8]>);

impl Index {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, DEFAULT_CACHE)
    }

    /// Opens with one block cache of `cache_bytes` shared by every column
    /// family. Filters and indexes are partitioned: only their small top
    /// levels are pinned, the partitions compete for the cache with data
    /// blocks, so a lookup never re-reads a whole multi-megabyte filter.
    pub fn open_with(path: &Path, cache_bytes: usize) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let stored = mark::read(path)?;
        let (opts, cfs) = Self::options(cache_bytes, rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| match e.kind() {
            rocksdb::ErrorKind::Corruption => Error::Corrupt(format!(
                "the index at {} is damaged ({}); {REBUILD_HINT}",
                path.display(),
                e.into_string()
            )),
            _ => classify(e.into_string(), &format!("cannot open index at {}: ", path.display())),
        })?;
        let recovered = db.latest_sequence_number();
        match stored {
            mark::Stored::Seq(m) if recovered < m => {
                return Err(Error::Corrupt(format!(
                    "the index at {} recovered only up to commit {recovered}, but it had acknowledged \
                     writes up to commit {m}: its write-ahead log lost acknowledged state; {REBUILD_HINT}",
                    path.display()
                )));
            }
            mark::Stored::Damaged => {
                tracing::warn!(path = %path.display(), "the index's commit mark is damaged; rewriting it from the recovered state");
            }
            _ => {}
        }
        let mark = Some(mark::Mark::open(path, recovered)?);
        Ok(Index { db, mark })
    }

    /// Opens a damaged index read-only, recovering its write-ahead log up to
    /// the first damaged record (point in time), for `rebuild-index` to carry
    /// over what it still has. Takes no lock and writes nothing.
    pub fn open_salvage(path: &Path, reason: String) -> Result<(Self, Salvage)> {
        let (opts, cfs) = Self::options(DEFAULT_CACHE, rocksdb::DBRecoveryMode::PointInTime);
        let db = DB::open_cf_descriptors_read_only(&opts, path, cfs, false).map_err(|e| {
            Error::Corrupt(format!(
                "cannot read the damaged index at {} even up to its damage: {}",
                path.display(),
                e.into_string()
            ))
        })?;
        let salvage = Salvage {
            reason,
            recovered_seq: db.latest_sequence_number(),
            mark_seq: match mark::read(path)? {
                mark::Stored::Seq(m) => Some(m),
                _ => None,
            },
        };
        Ok((Index { db, mark: None }, salvage))
    }

    fn options(cache_bytes: usize, recovery: rocksdb::DBRecoveryMode) -> (Options, Vec<ColumnFamilyDescriptor>) {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Every acknowledged batch is fsynced in the log (`commit`), so only
        // the last record can be torn, and only if it was never acknowledged.
        opts.set_wal_recovery_mode(recovery);
        opts.set_paranoid_checks(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        opts.set_max_open_files(512);
        // RocksDB's own info log: a few restarts' worth, not one per start.
        opts.set_keep_log_file_num(4);
        opts.set_max_log_file_size(1 << 20);
        let cache = Cache::new_lru_cache(cache_bytes);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            // A flipped byte in a table is found when its block is read
            // (every block carries a checksum; `verify_tables` reads them
            // all). Tables flushed from here on also carry a footer checksum
            // and checksums bound to the file and offset (format 6).
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            let mut b = BlockBasedOptions::default();
            b.set_block_cache(&cache);
            // Point lookups (dedup, reads, catalog) dominate: bloom filters skip files.
            b.set_bloom_filter(10.0, false);
            b.set_format_version(6);
            b.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            b.set_partition_filters(true);
            b.set_metadata_block_size(4096);
            b.set_cache_index_and_filter_blocks(true);
            b.set_pin_top_level_index_and_filter(true);
            b.set_pin_l0_filter_and_index_blocks_in_cache(true);
            o.set_block_based_table_factory(&b);
            // Most point lookups in the memtable are for absent keys (new
            // chunks, new usage edges): a whole-key bloom filter answers
            // them without walking the skip list.
            o.set_memtable_whole_key_filtering(true);
            o.set_memtable_prefix_bloom_ratio(0.05);
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        (opts, cfs.collect())
    }

    /// Reads every key and value of every column family with checksums
    /// verified and without filling the block cache: every data block and
    /// index block of every table is read from disk once. A block that fails
    /// is [`Error::Corrupt`]. Returns the entries read.
    pub fn verify_tables(&self) -> Result<u64> {
        let mut n = 0;
        for cf in Cf::ALL {
            let mut ro = ReadOptions::default();
            ro.set_verify_checksums(true);
            ro.fill_cache(false);
            for kv in self.db.iterator_cf_opt(self.cf(cf), ro, IteratorMode::Start) {
                kv.map_err(|e| match db_err(e) {
                    Error::Corrupt(m) => Error::Corrupt(format!("column family {}: {m}; {REBUILD_HINT}", cf.name())),
                    other => other,
                })?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("column families are created at open")
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(db_err)
    }

    /// Keys in `[from, to)` (to = None: to the end of the column family),
    /// ascending; or, with `reverse`, descending from just below `to`.
    pub fn scan<'s>(
        &'s self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
    ) -> impl Iterator<Item = Result<KeyValue>> + 's {
        self.scan_opt(cf, ReadOptions::default(), from, to, reverse)
    }

    fn scan_opt<'s>(
        &'s self,
        cf: Cf,
        mut ro: ReadOptions,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
    ) -> impl Iterator<Item = Result<KeyValue>> + 's {
        ro.set_iterate_lower_bound(from.to_vec());
        if let Some(t) = to {
            ro.set_iterate_upper_bound(t.to_vec());
        }
        let mode = match reverse {
            false => IteratorMode::From(from, Direction::Forward),
            true => IteratorMode::End,
        };
        self.db
            .iterator_cf_opt(self.cf(cf), ro, mode)
            .map(|r| r.map_err(db_err))
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            snap: self.db.snapshot(),
            index: self,
        }
    }

    pub fn chunk(&self, id: &Hash) -> Result<Option<ChunkLoc>> {
        self.get(Cf::Chunks, &id.0)?.map(|v| ChunkLoc::decode(&v)).transpose()
    }

    pub fn chunk_rec(&self, id: &Hash) -> Result<Option<ChunkRec>> {
        self.get(Cf::Chunks, &id.0)?.map(|v| ChunkRec::decode(&v)).transpose()
    }

    /// Looks up many chunks at once, in order.
    pub fn chunks(&self, ids: &[Hash]) -> Result<Vec<Option<ChunkLoc>>> {
        let cf = self.cf(Cf::Chunks);
        self.db
            .multi_get_cf(ids.iter().map(|id| (cf, id.0)))
            .into_iter()
            .map(|r| r.map_err(db_err)?.map(|v| ChunkLoc::decode(&v)).transpose())
            .collect()
    }

    pub fn blob(&self, id: &Hash) -> Result<Option<Manifest>> {
        self.get(Cf::Blobs, &id.0)?.map(|v| Manifest::decode(&v)).transpose()
    }

    /// The manifest of the blob with this SHA-256, if stored.
    pub fn blob_by_sha256(&self, sha256: &[u8; 32]) -> Result<Option<Manifest>> {
        match self.get(Cf::Sha256, sha256)? {
            Some(id) => self.blob(&Hash::from_slice(&id).ok_or_else(|| Error::corrupt("bad sha256 alias"))?),
            None => Ok(None),
        }
    }

    pub fn has_blob(&self, id: &Hash) -> Result<bool> {
        Ok(self.get(Cf::Blobs, &id.0)?.is_some())
    }

    pub fn reference(&self, ns: &str, id: &Hash) -> Result<Option<RefInfo>> {
        self.get(Cf::Refs, &codec::ref_key(ns, id))?
            .map(|v| RefInfo::decode(&v))
            .transpose()
    }

    pub fn stats(&self) -> Result<Stats> {
        stored_stats(self.get(Cf::Meta, STATS_KEY)?)
    }

    pub fn packs(&self) -> Result<Vec<(u64, PackInfo)>> {
        self.db
            .iterator_cf(self.cf(Cf::Packs), IteratorMode::Start)
            .map(|r| {
                let (k, v) = r.map_err(db_err)?;
                let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::corrupt("bad pack key"))?);
                Ok((id, PackInfo::decode(&v)?))
            })
            .collect()
    }

    pub fn pack(&self, id: u64) -> Result<Option<PackInfo>> {
        self.get(Cf::Packs, &id.to_be_bytes())?
            .map(|v| PackInfo::decode(&v))
            .transpose()
    }

    /// Calls `f` for every (namespace, blob) reference.
    pub fn for_each_ref(&self, mut f: impl FnMut(String, Hash, RefInfo) -> Result<()>) -> Result<()> {
        for r in self.db.iterator_cf(self.cf(Cf::Refs), IteratorMode::Start) {
            let (k, v) = r.map_err(db_err)?;
            let (ns, id) = codec::decode_ref_key(&k)?;
            f(ns, id, RefInfo::decode(&v)?)?;
        }
        Ok(())
    }

    pub fn txn(&self) -> Txn<'_> {
        Txn {
            index: self,
            writes: HashMap::new(),
            undo: Vec::new(),
        }
    }

    /// Stops RocksDB's own flush and compaction threads (waiting for the
    /// running ones), for a process about to exit with the index still open.
    pub fn quiesce(&self) {
        self.db.cancel_all_background_work(true);
    }

    /// Applies a transaction atomically; returns once the WAL is fsynced.
    pub fn commit(&self, txn: Txn<'_>) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for (cf, writes) in txn.writes {
            for (k, v) in writes {
                match v {
                    Some(v) => wb.put_cf(self.cf(cf), k, v),
                    None => wb.delete_cf(self.cf(cf), k),
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(db_err)?;
        // The write is durable in the log: the mark may say so.
        if let Some(m) = &self.mark {
            m.note(self.db.latest_sequence_number());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_statuses_say_what_happened() {
        let e = classify(
            "Corruption: block checksum mismatch: stored = 1, computed = 2".into(),
            "",
        );
        assert!(matches!(&e, Error::Corrupt(m) if m.contains("block checksum")), "{e:?}");
        let e = classify(
            "IO error: No space left on device: While appending to file: /d/index/000012.log: No space left on device"
                .into(),
            "",
        );
        assert!(
            matches!(&e, Error::DiskFull(m) if m.contains("/d/index/000012.log")),
            "{e:?}"
        );
        let e = classify("IO error: Disk quota exceeded".into(), "");
        assert!(matches!(e, Error::DiskFull(_)), "{e:?}");
        let e = classify("IO error: lock hold by current process".into(), "");
        assert!(matches!(e, Error::Index(_)), "{e:?}");
    }

    /// A real RocksDB whose table file was damaged on disk: the read fails
    /// with `Corrupt` (DATA_LOSS), not an internal error.
    #[test]
    fn a_damaged_table_file_reads_as_data_loss() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vec![0u8; 256 << 10];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for b in v.iter_mut() {
            // xorshift: incompressible, so the value fills data blocks as written
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        {
            let ix = Index::open(dir.path()).unwrap();
            for k in 0u8..4 {
                ix.db.put_cf(ix.cf(Cf::Blobs), [k], &v).unwrap();
            }
            ix.db.flush_cf(ix.cf(Cf::Blobs)).unwrap();
        }
        let mut damaged = 0;
        for f in std::fs::read_dir(dir.path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "sst") {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                // Inside the data blocks, far from the footer and index.
                file.write_all_at(&[0xA5; 4096], 300 << 10).unwrap();
                damaged += 1;
            }
        }
        assert!(damaged > 0, "no table file to damage");
        let ix = Index::open(dir.path()).unwrap();
        let errs: Vec<Error> = (0u8..4).filter_map(|k| ix.get(Cf::Blobs, &[k]).err()).collect();
        assert!(!errs.is_empty(), "every read succeeded over a damaged table");
        for e in errs {
            assert!(matches!(&e, Error::Corrupt(m) if m.contains("damaged")), "{e:?}");
        }
    }
}
