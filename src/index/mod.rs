//! The RocksDB index: the only module that knows rocksdb.
//!
//! Column families and their keys (all integers big-endian):
//! - `chunks`: chunk id (32) -> [`ChunkLoc`]
//! - `blobs`:  blob id (32) -> encoded [`Manifest`]
//! - `sha256`: blob SHA-256 (32) -> blob id (32), to find a blob by the digest registries know
//! - `refs`:   ns_len:u16 ns id(32) -> [`RefInfo`] (a namespace stored this blob)
//! - `packs`:  pack id:u64 -> [`PackInfo`]
//! - `meta`:   "stats" -> [`Stats`]
//!
//! Everything here can be rebuilt from the packs (`admin rebuild-index`).

mod codec;

use std::path::Path;

pub use codec::{ChunkLoc, PackInfo, PackState, RefInfo, Stats};
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, Options, WriteOptions};

use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::manifest::Manifest;

const CF_CHUNKS: &str = "chunks";
const CF_BLOBS: &str = "blobs";
const CF_REFS: &str = "refs";
const CF_PACKS: &str = "packs";
const CF_SHA256: &str = "sha256";
const CF_META: &str = "meta";
const CFS: [&str; 6] = [CF_CHUNKS, CF_BLOBS, CF_SHA256, CF_REFS, CF_PACKS, CF_META];
const STATS_KEY: &[u8] = b"stats";

fn db_err(e: rocksdb::Error) -> Error {
    Error::Index(e.into_string())
}

pub struct Index {
    db: DB,
}

/// Changes applied atomically (and durably) by [`Index::commit`].
pub struct Batch<'a> {
    index: &'a Index,
    wb: rocksdb::WriteBatch,
}

impl Batch<'_> {
    fn put(&mut self, cf: &str, k: &[u8], v: Vec<u8>) {
        self.wb.put_cf(self.index.cf(cf), k, v);
    }
    pub fn put_chunk(&mut self, id: &Hash, loc: &ChunkLoc) {
        self.put(CF_CHUNKS, &id.0, loc.encode());
    }
    /// A blob's manifest and its SHA-256 alias.
    pub fn put_blob(&mut self, m: &Manifest) {
        self.put(CF_BLOBS, &m.digests.blake3.0, m.encode());
        self.put(CF_SHA256, &m.digests.sha256, m.digests.blake3.0.to_vec());
    }
    pub fn put_ref(&mut self, ns: &str, id: &Hash, r: &RefInfo) {
        self.put(CF_REFS, &codec::ref_key(ns, id), r.encode());
    }
    pub fn put_pack(&mut self, id: u64, p: &PackInfo) {
        self.put(CF_PACKS, &id.to_be_bytes(), p.encode());
    }
    pub fn put_stats(&mut self, s: &Stats) {
        self.put(CF_META, STATS_KEY, s.encode());
    }
    /// Operations so far.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.wb.len()
    }
}

impl Index {
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        opts.set_max_open_files(512);
        let cfs = CFS.iter().map(|name| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            let mut b = BlockBasedOptions::default();
            // Point lookups (dedup, reads) dominate: bloom filters skip files.
            b.set_bloom_filter(10.0, false);
            b.set_cache_index_and_filter_blocks(true);
            o.set_block_based_table_factory(&b);
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(|e| Error::Index(format!("cannot open index at {}: {}", path.display(), e.into_string())))?;
        Ok(Index { db })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(db_err)
    }

    pub fn chunk(&self, id: &Hash) -> Result<Option<ChunkLoc>> {
        self.get(CF_CHUNKS, &id.0)?.map(|v| ChunkLoc::decode(&v)).transpose()
    }

    /// Looks up many chunks at once, in order.
    pub fn chunks(&self, ids: &[Hash]) -> Result<Vec<Option<ChunkLoc>>> {
        let cf = self.cf(CF_CHUNKS);
        self.db
            .multi_get_cf(ids.iter().map(|id| (cf, id.0)))
            .into_iter()
            .map(|r| r.map_err(db_err)?.map(|v| ChunkLoc::decode(&v)).transpose())
            .collect()
    }

    pub fn blob(&self, id: &Hash) -> Result<Option<Manifest>> {
        self.get(CF_BLOBS, &id.0)?.map(|v| Manifest::decode(&v)).transpose()
    }

    /// The manifest of the blob with this SHA-256, if stored.
    pub fn blob_by_sha256(&self, sha256: &[u8; 32]) -> Result<Option<Manifest>> {
        match self.get(CF_SHA256, sha256)? {
            Some(id) => self.blob(&Hash::from_slice(&id).ok_or_else(|| Error::corrupt("bad sha256 alias"))?),
            None => Ok(None),
        }
    }

    pub fn has_blob(&self, id: &Hash) -> Result<bool> {
        Ok(self.get(CF_BLOBS, &id.0)?.is_some())
    }

    pub fn reference(&self, ns: &str, id: &Hash) -> Result<Option<RefInfo>> {
        self.get(CF_REFS, &codec::ref_key(ns, id))?
            .map(|v| RefInfo::decode(&v))
            .transpose()
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(self
            .get(CF_META, STATS_KEY)?
            .map(|v| Stats::decode(&v))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn packs(&self) -> Result<Vec<(u64, PackInfo)>> {
        self.db
            .iterator_cf(self.cf(CF_PACKS), rocksdb::IteratorMode::Start)
            .map(|r| {
                let (k, v) = r.map_err(db_err)?;
                let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| Error::corrupt("bad pack key"))?);
                Ok((id, PackInfo::decode(&v)?))
            })
            .collect()
    }

    pub fn pack(&self, id: u64) -> Result<Option<PackInfo>> {
        self.get(CF_PACKS, &id.to_be_bytes())?
            .map(|v| PackInfo::decode(&v))
            .transpose()
    }

    /// Calls `f` for every (namespace, blob) reference.
    pub fn for_each_ref(&self, mut f: impl FnMut(String, Hash, RefInfo) -> Result<()>) -> Result<()> {
        for r in self.db.iterator_cf(self.cf(CF_REFS), rocksdb::IteratorMode::Start) {
            let (k, v) = r.map_err(db_err)?;
            let (ns, id) = codec::decode_ref_key(&k)?;
            f(ns, id, RefInfo::decode(&v)?)?;
        }
        Ok(())
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch {
            index: self,
            wb: rocksdb::WriteBatch::default(),
        }
    }

    /// Applies a batch atomically; returns once the WAL is fsynced.
    pub fn commit(&self, batch: Batch<'_>) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch.wb, &wo).map_err(db_err)
    }
}
