//! Property test of the one writer, in process (no daemon): random
//! sequences of uploads, publishes, deletes, restores, downloads,
//! duplicate policies, purges and GC runs on a real `Engine` (temp data
//! dir, real RocksDB, real packs) must leave, after every step, nothing for
//! `admin check` to report: every catalog aggregate, reference and holder
//! count, chunk count (recounted from the manifests), store counter and
//! capacity counter (`usage::derive`) equals its recount. A request that
//! fails (restoring what is not deleted, a forbidden duplicate, a quota)
//! changes nothing in the index. A purge (trash window and leases at
//! zero) leaves no trash and no unused reference; GC (grace zero) leaves no
//! condemned chunk, and every referenced blob still reads back intact.
//! Each case ends by deleting every package, purging and collecting: the
//! store is then empty.
//!
//! `PROPTEST_CASES` sets the number of cases (default 24).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use bytesize::ByteSize;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestCaseError, TestRunner, contextualize_config};
use rand::{Rng, SeedableRng, rngs::StdRng};
use stowage::catalog::{CatalogOp, CatalogOutcome, DupPolicy, FileRef, PackageType, PkgRef, Target, VerRef};
use stowage::config::Chunking;
use stowage::gc::GcOptions;
use stowage::index::{Cf, Index, RefInfo, decode_ref_key};
use stowage::ingest::PutSpec;
use stowage::{Config, Engine, Error, Hash};

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
/// Namespace "c" has a quota, so some of its uploads are refused.
const QUOTA_NS: &str = "c";
const QUOTA: u64 = 160 << 10;
const PROJECTS: [&str; 2] = ["web", "api"];
const TYPES: [PackageType; 2] = [PackageType::Npm, PackageType::Generic];
const NAMES: [&str; 2] = ["x", "y"];
const VERSIONS: [&str; 3] = ["1.0.0", "2.0.0", "3.0.0"];
const FILES: [&str; 2] = ["f.tgz", "g.tgz"];
const PIECES: usize = 6;

/// Blob contents are 1-3 of these, repeats allowed: blobs share chunks,
/// and a chunk can occur twice in one manifest. Odd pieces compress.
fn pieces() -> &'static [Bytes] {
    static P: OnceLock<Vec<Bytes>> = OnceLock::new();
    P.get_or_init(|| {
        (0..PIECES)
            .map(|i| {
                let mut rng = StdRng::seed_from_u64(0x5eed + i as u64);
                let len = 2_000 + i * 6_000;
                let v: Vec<u8> = match i % 2 {
                    0 => (0..len).map(|_| rng.random()).collect(),
                    _ => {
                        let words = ["alpha ", "beta ", "gamma ", "delta ", "\n"];
                        let mut v = Vec::with_capacity(len);
                        while v.len() < len {
                            v.extend_from_slice(words[rng.random_range(0..words.len())].as_bytes());
                        }
                        v.truncate(len);
                        v
                    }
                };
                Bytes::from(v)
            })
            .collect()
    })
}

fn content(parts: &[u8]) -> Bytes {
    let p = pieces();
    Bytes::from(
        parts
            .iter()
            .flat_map(|&i| p[i as usize].iter().copied())
            .collect::<Vec<u8>>(),
    )
}

#[derive(Clone, Copy, Debug)]
struct Coord {
    ns: u8,
    project: u8,
    ty: u8,
    name: u8,
    version: u8,
}

impl Coord {
    fn ver(&self) -> VerRef {
        VerRef {
            pkg: PkgRef {
                namespace: NAMESPACES[self.ns as usize].into(),
                project: PROJECTS[self.project as usize].into(),
                ty: TYPES[self.ty as usize],
                name: NAMES[self.name as usize].into(),
            },
            version: VERSIONS[self.version as usize].into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Level {
    Package,
    Version,
    File,
}

#[derive(Clone)]
enum Op {
    /// An upload only: the blob is held by its lease.
    Upload {
        ns: u8,
        blob: Vec<u8>,
    },
    /// An upload, then a publish of it as a file (two commits).
    Publish {
        at: Coord,
        file: u8,
        blob: Vec<u8>,
    },
    /// Of the package, version or file of a published file, picked by index.
    Delete {
        level: Level,
        pick: usize,
    },
    /// Of something deleted before (perhaps restored or purged since), or,
    /// if nothing was, as for a delete.
    Restore {
        level: Level,
        pick: usize,
    },
    Download {
        pick: usize,
    },
    /// Allows or forbids duplicate file names for a namespace and type.
    Policy {
        ns: u8,
        ty: u8,
        allow: bool,
    },
    /// Purges with a zero trash window (the engine is reopened with it,
    /// and again with a day's window before the next restore).
    Purge,
    /// Collects (grace zero) and compacts (threshold zero, no delete delay).
    Gc,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Upload { ns, blob } => write!(f, "upload {} {blob:?}", NAMESPACES[*ns as usize]),
            Op::Publish { at, file, blob } => {
                let v = at.ver();
                let p = &v.pkg;
                write!(
                    f,
                    "publish {}/{}/{}:{}@{}/{} {blob:?}",
                    p.namespace, p.project, p.ty, p.name, v.version, FILES[*file as usize]
                )
            }
            Op::Delete { level, pick } => write!(f, "delete {level:?} of published #{pick}"),
            Op::Restore { level, pick } => write!(f, "restore deleted #{pick} (or {level:?} of published)"),
            Op::Download { pick } => write!(f, "download published #{pick}"),
            Op::Policy { ns, ty, allow } => write!(
                f,
                "duplicates {} in {} {}",
                if *allow { "allowed" } else { "forbidden" },
                NAMESPACES[*ns as usize],
                TYPES[*ty as usize]
            ),
            Op::Purge => write!(f, "purge"),
            Op::Gc => write!(f, "gc"),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let blob = || prop::collection::vec(0..PIECES as u8, 1..=3);
    let coord = (0u8..3, 0u8..2, 0u8..2, 0u8..2, 0u8..3).prop_map(|(ns, project, ty, name, version)| Coord {
        ns,
        project,
        ty,
        name,
        version,
    });
    let level = || {
        prop_oneof![
            1 => Just(Level::Package),
            1 => Just(Level::Version),
            2 => Just(Level::File)
        ]
    };
    // Picks are reduced modulo the number of files published so far.
    let pick = || 0usize..64;
    prop_oneof![
        2 => (0u8..3, blob()).prop_map(|(ns, blob)| Op::Upload { ns, blob }),
        8 => (coord, 0u8..2, blob()).prop_map(|(at, file, blob)| Op::Publish { at, file, blob }),
        4 => (level(), pick()).prop_map(|(level, pick)| Op::Delete { level, pick }),
        3 => (level(), pick()).prop_map(|(level, pick)| Op::Restore { level, pick }),
        1 => pick().prop_map(|pick| Op::Download { pick }),
        1 => (0u8..3, 0u8..2, any::<bool>()).prop_map(|(ns, ty, allow)| Op::Policy { ns, ty, allow }),
        1 => Just(Op::Purge),
        1 => Just(Op::Gc),
    ]
}

/// What the cases did, summed, to show the test is not vacuous.
#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    ops: BTreeMap<String, (u64, u64)>,
    files_purged: u64,
    references_released: u64,
    blobs_released: u64,
    chunks_collected: u64,
    packs_compacted: u64,
    packs_deleted: u64,
    blobs_read_back: u64,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} cases passed; requests (done / refused):", self.cases)?;
        for (what, (ok, failed)) in &self.ops {
            writeln!(f, "  {what}: {ok} / {failed}")?;
        }
        write!(
            f,
            "purged {} files, released {} references and {} blobs; collected {} chunks, \
             compacted {} packs, deleted {}; read back {} blobs",
            self.files_purged,
            self.references_released,
            self.blobs_released,
            self.chunks_collected,
            self.packs_compacted,
            self.packs_deleted,
            self.blobs_read_back
        )
    }
}

impl Tally {
    fn op(&mut self, what: &str, ok: bool) {
        let e = self.ops.entry(what.into()).or_default();
        match ok {
            true => e.0 += 1,
            false => e.1 += 1,
        }
    }
    fn add(&mut self, o: &Tally) {
        self.cases += o.cases;
        for (k, (a, b)) in &o.ops {
            let e = self.ops.entry(k.clone()).or_default();
            e.0 += a;
            e.1 += b;
        }
        self.files_purged += o.files_purged;
        self.references_released += o.references_released;
        self.blobs_released += o.blobs_released;
        self.chunks_collected += o.chunks_collected;
        self.packs_compacted += o.packs_compacted;
        self.packs_deleted += o.packs_deleted;
        self.blobs_read_back += o.blobs_read_back;
    }
}

fn config(dir: &Path, purging: bool) -> Config {
    let day = Duration::from_secs(24 * 3600);
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        // Small chunks and packs: a few KiB of data make many shared
        // chunks and several sealed packs to compact.
        chunking: Chunking {
            min_size: ByteSize::kib(1),
            avg_size: ByteSize::kib(4),
            max_size: ByteSize::kib(16),
        },
        pack_target_size: ByteSize::kib(64),
        index_cache_size: ByteSize::mib(8),
        // Background work does not run on its own: the test drives it.
        purge_interval: day,
        ..Config::default()
    };
    c.gc.interval = Duration::ZERO;
    c.retention.sweep_interval = Duration::ZERO;
    c.quotas.insert(QUOTA_NS.into(), ByteSize::b(QUOTA));
    // Restores work (a day's window) except while purging, when every
    // deleted item is due. A lease is stored with its reference when the
    // upload commits; at zero, it has ended by the next purge (no purge
    // runs between an upload and the publish of it).
    c.upload_lease = Duration::ZERO;
    c.trash_window = match purging {
        true => Duration::ZERO,
        false => day,
    };
    c
}

const CF_NAMES: [(Cf, &str); 11] = [
    (Cf::Chunks, "chunks"),
    (Cf::Blobs, "blobs"),
    (Cf::Sha256, "sha256"),
    (Cf::Refs, "refs"),
    (Cf::Packs, "packs"),
    (Cf::Meta, "meta"),
    (Cf::Packages, "packages"),
    (Cf::Versions, "versions"),
    (Cf::Files, "files"),
    (Cf::Audit, "audit"),
    (Cf::CatalogIdx, "catalog_idx"),
];

type Dump = BTreeMap<(&'static str, Vec<u8>), Vec<u8>>;

/// Every index entry a request can change. Left out: what background work
/// changes meanwhile (sealing: the `packs` family and the store's pack
/// counters; the daily usage snapshot: `D`, `E`, `N`).
fn dump(index: &Index) -> Result<Dump, String> {
    let mut out = Dump::new();
    for (cf, name) in CF_NAMES {
        if cf == Cf::Packs {
            continue;
        }
        for kv in index.scan(cf, &[], None, false) {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            let skip = match cf {
                Cf::Meta => &k[..] == b"stats",
                Cf::CatalogIdx => matches!(k.first(), Some(b'D' | b'E' | b'N')),
                _ => false,
            };
            if !skip {
                out.insert((name, k.to_vec()), v.to_vec());
            }
        }
    }
    let mut s = index.stats().map_err(|e| e.to_string())?;
    (s.packs, s.sealed_pack_bytes) = (0, 0);
    out.insert(("meta", b"stats (but packs)".to_vec()), format!("{s:?}").into_bytes());
    Ok(out)
}

fn show(k: &[u8]) -> String {
    match k.first() {
        Some(c) if c.is_ascii_graphic() => format!("{}:{}", *c as char, hex::encode(&k[1..])),
        _ => hex::encode(k),
    }
}

/// The first few differences between two dumps, one a line.
fn diff(before: &Dump, after: &Dump) -> String {
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (a, b) = (before.get(k), after.get(k));
        if a != b {
            let v = |x: Option<&Vec<u8>>| match x {
                None => "nothing".to_string(),
                Some(v) if v.iter().all(|c| c.is_ascii() && !c.is_ascii_control()) => {
                    String::from_utf8_lossy(v).into_owned()
                }
                Some(v) => hex::encode(v),
            };
            out.push(format!("  {} {}: {} -> {}", k.0, show(&k.1), v(a), v(b)));
        }
    }
    let n = out.len();
    out.truncate(8);
    if n > 8 {
        out.push(format!("  … {} more", n - 8));
    }
    out.join("\n")
}

/// Entries of `cf` under one tag byte of `catalog_idx` (or all of `cf`).
fn count(index: &Index, cf: Cf, tag: Option<u8>) -> usize {
    match tag {
        Some(t) => index.scan(cf, &[t], Some(&[t + 1]), false).count(),
        None => index.scan(cf, &[], None, false).count(),
    }
}

fn level_of(t: &Target) -> &'static str {
    match t {
        Target::Package(_) => "package",
        Target::Version(_) => "version",
        Target::File(_) => "file",
    }
}

struct Case {
    dir: tempfile::TempDir,
    engine: Option<Arc<Engine>>,
    /// The open engine has a zero trash window.
    purging: bool,
    published: Vec<FileRef>,
    deleted: Vec<Target>,
    content: HashMap<Hash, Bytes>,
    tally: Tally,
}

type Step = Result<(), String>;

fn put_spec(ns: &str) -> PutSpec {
    PutSpec {
        namespace: ns.into(),
        expected_size: None,
        expected_sha256: None,
        expected_blake3: None,
        extra: Default::default(),
        media_type: String::new(),
        publishing: false,
    }
}

impl Case {
    fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().expect("engine open")
    }

    async fn open(&mut self, purging: bool) -> Step {
        let e = Engine::open(config(self.dir.path(), purging))
            .await
            .map_err(|e| format!("opening the engine: {e}"))?;
        self.engine = Some(e);
        self.purging = purging;
        Ok(())
    }

    async fn close(&mut self) {
        if let Some(e) = self.engine.take() {
            e.close(Duration::from_secs(10)).await;
        }
    }

    /// Reopens the engine if its trash window is not the one needed.
    async fn window(&mut self, purging: bool) -> Step {
        if self.purging == purging {
            return Ok(());
        }
        self.close().await;
        self.open(purging).await
    }

    fn dump(&self) -> Result<Dump, String> {
        dump(self.engine().index())
    }

    /// A request failed: it must be one of the errors `expected` allows,
    /// and the index must be as it was `before`.
    fn failed(&self, what: &str, e: &Error, expected: bool, before: &Dump) -> Step {
        if !expected {
            return Err(format!("{what} failed unexpectedly: {e}"));
        }
        let after = self.dump()?;
        if *before != after {
            return Err(format!(
                "{what} failed ({e}) but changed the index:\n{}",
                diff(before, &after)
            ));
        }
        Ok(())
    }

    fn pick(&self, pick: usize) -> Option<FileRef> {
        (!self.published.is_empty()).then(|| self.published[pick % self.published.len()].clone())
    }

    /// Uploads `parts` into `ns`; `None` if the quota refused it (and that
    /// changed nothing).
    async fn upload(&mut self, ns: &str, parts: &[u8]) -> Result<Option<Hash>, String> {
        let data = content(parts);
        let before = self.dump()?;
        let frames = futures::stream::iter([Ok(data.clone())]);
        match self.engine().put(put_spec(ns), frames).await {
            Ok(out) => {
                self.tally.op("upload", true);
                let id = out.digests.blake3;
                self.content.insert(id, data);
                Ok(Some(id))
            }
            Err(e) => {
                self.tally.op("upload", false);
                let quota = ns == QUOTA_NS && matches!(e, Error::ResourceExhausted(_));
                self.failed(&format!("upload into {ns}"), &e, quota, &before)?;
                Ok(None)
            }
        }
    }

    /// A catalog change; an error of the kinds `expected` allows is fine
    /// if it changed nothing.
    async fn catalog(
        &mut self,
        what: &str,
        op: CatalogOp,
        expected: fn(&Error) -> bool,
    ) -> Result<Option<CatalogOutcome>, String> {
        let before = self.dump()?;
        let r = self.engine().catalog(op).await;
        self.tally.op(what, r.is_ok());
        match r {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                self.failed(what, &e, expected(&e), &before)?;
                Ok(None)
            }
        }
    }

    async fn step(&mut self, op: &Op) -> Step {
        let actor = || "proptest".to_string();
        let refused = |e: &Error| matches!(e, Error::NotFound(_) | Error::FailedPrecondition(_));
        match op {
            Op::Upload { ns, blob } => {
                self.upload(NAMESPACES[*ns as usize], blob).await?;
            }
            Op::Publish { at, file, blob } => {
                let at = at.ver();
                let Some(id) = self.upload(&at.pkg.namespace, blob).await? else {
                    return Ok(());
                };
                let op = CatalogOp::Publish {
                    at: at.clone(),
                    file_name: FILES[*file as usize].into(),
                    blob: id,
                    digests: None,
                    actor: actor(),
                };
                // Into a deleted package or version; a forbidden duplicate.
                let expected = |e: &Error| matches!(e, Error::FailedPrecondition(_) | Error::AlreadyExists(_));
                if let Some(CatalogOutcome::Published { file, .. }) = self.catalog("publish", op, expected).await? {
                    self.published.push(FileRef {
                        ver: at,
                        file_id: file.id,
                    });
                }
            }
            Op::Delete { level, pick } => {
                let Some(f) = self.pick(*pick) else { return Ok(()) };
                let target = match level {
                    Level::Package => Target::Package(f.ver.pkg.clone()),
                    Level::Version => Target::Version(f.ver.clone()),
                    Level::File => Target::File(f),
                };
                let op = CatalogOp::Delete {
                    target: target.clone(),
                    actor: actor(),
                };
                if self
                    .catalog(&format!("delete {}", level_of(&target)), op, refused)
                    .await?
                    .is_some()
                {
                    self.deleted.push(target);
                }
            }
            Op::Restore { level, pick } => {
                let target = match (self.deleted.is_empty(), self.pick(*pick)) {
                    (false, _) => self.deleted[pick % self.deleted.len()].clone(),
                    (true, None) => return Ok(()),
                    (true, Some(f)) => match level {
                        Level::Package => Target::Package(f.ver.pkg),
                        Level::Version => Target::Version(f.ver),
                        Level::File => Target::File(f),
                    },
                };
                self.window(false).await?;
                let what = format!("restore {}", level_of(&target));
                let op = CatalogOp::Restore { target, actor: actor() };
                self.catalog(&what, op, refused).await?;
            }
            Op::Download { pick } => {
                let Some(f) = self.pick(*pick) else { return Ok(()) };
                self.catalog("download", CatalogOp::Download(f), refused).await?;
            }
            Op::Policy { ns, ty, allow } => {
                let op = CatalogOp::SetPolicy {
                    namespace: NAMESPACES[*ns as usize].into(),
                    ty: TYPES[*ty as usize],
                    policy: DupPolicy {
                        allow_duplicates: *allow,
                        exception_regex: String::new(),
                    },
                    actor: actor(),
                };
                self.catalog("policy", op, |_| false).await?;
            }
            Op::Purge => self.purge().await?,
            Op::Gc => self.gc().await?,
        }
        Ok(())
    }

    async fn purge(&mut self) -> Step {
        self.window(true).await?;
        let (c, _) = self
            .engine()
            .purge("proptest", None)
            .await
            .map_err(|e| format!("purge failed: {e}"))?;
        self.tally.op("purge", true);
        self.tally.files_purged += c.files;
        self.tally.references_released += c.references_released;
        self.tally.blobs_released += c.blobs_unreferenced;
        let index = self.engine().index();
        // Every item is due: one the purge skipped (it logs and rolls back
        // an item that fails a check) is a bug.
        let trash = count(index, Cf::CatalogIdx, Some(b't'));
        if trash > 0 {
            return Err(format!("the purge left {trash} trash entries ({c:?})"));
        }
        for kv in index.scan(Cf::Refs, &[], None, false) {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            let r = RefInfo::decode(&v).map_err(|e| e.to_string())?;
            if r.files == 0 {
                let (ns, blob) = decode_ref_key(&k).map_err(|e| e.to_string())?;
                return Err(format!(
                    "the purge kept the reference of {ns} to blob {blob}, which no file uses and whose lease ended"
                ));
            }
        }
        Ok(())
    }

    async fn gc(&mut self) -> Step {
        let opts = GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
            compact_threshold: 0.0,
            max_repack_bytes: u64::MAX,
            pack_delete_delay: Duration::ZERO,
        };
        let r = self.engine().gc(opts).await.map_err(|e| format!("gc failed: {e}"))?;
        self.tally.op("gc", true);
        self.tally.chunks_collected += r.chunks_collected;
        self.tally.packs_compacted += r.packs_compacted;
        self.tally.packs_deleted += r.packs_deleted;
        let condemned = count(self.engine().index(), Cf::CatalogIdx, Some(b'k'));
        if condemned > 0 {
            return Err(format!("gc with no grace left {condemned} condemned chunks ({r:?})"));
        }
        self.read_back().await
    }

    /// Every blob a namespace references reads back as it was uploaded.
    async fn read_back(&mut self) -> Step {
        let refs: Vec<(String, Hash)> = self
            .engine()
            .index()
            .scan(Cf::Refs, &[], None, false)
            .map(|kv| {
                let (k, _) = kv.map_err(|e| e.to_string())?;
                decode_ref_key(&k).map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        for (ns, id) in refs {
            let (_, mut rx) = self
                .engine()
                .get(&ns, &id, 0, None)
                .map_err(|e| format!("reading blob {id} of {ns}: {e}"))?;
            let mut got = Vec::new();
            while let Some(b) = rx.recv().await {
                got.extend_from_slice(&b.map_err(|e| format!("reading blob {id} of {ns}: {e}"))?);
            }
            if self.content.get(&id).map(|b| &b[..]) != Some(&got[..]) {
                return Err(format!("blob {id} of {ns} reads back wrong ({} bytes)", got.len()));
            }
            self.tally.blobs_read_back += 1;
        }
        Ok(())
    }

    /// `admin check`: every count the index keeps equals its recount.
    async fn check(&self, when: &str) -> Step {
        let r = self
            .engine()
            .check(false)
            .await
            .map_err(|e| format!("{when}: check failed: {e}"))?;
        if !r.drift.is_empty() {
            let n = r.drift.len();
            let mut lines: Vec<String> = r.drift.into_iter().take(10).map(|d| format!("  {d}")).collect();
            if n > 10 {
                lines.push(format!("  … {} more", n - 10));
            }
            return Err(format!("{when}: {n} counts drifted:\n{}", lines.join("\n")));
        }
        Ok(())
    }

    async fn run(&mut self, ops: &[Op]) -> Step {
        self.open(false).await?;
        for (i, op) in ops.iter().enumerate() {
            self.step(op).await.map_err(|e| format!("op {i} ({op:?}): {e}"))?;
            self.check(&format!("after op {i} ({op:?})")).await?;
        }
        // Delete everything, purge, collect: nothing is left.
        let pkgs: BTreeSet<(String, String, u8, String)> = self
            .published
            .iter()
            .map(|f| {
                let p = &f.ver.pkg;
                (p.namespace.clone(), p.project.clone(), p.ty as u8, p.name.clone())
            })
            .collect();
        for (namespace, project, ty, name) in pkgs {
            let ty = PackageType::from_u8(ty).expect("a known type");
            let p = PkgRef {
                namespace,
                project,
                ty,
                name,
            };
            let op = CatalogOp::Delete {
                target: Target::Package(p),
                actor: "proptest".into(),
            };
            let refused = |e: &Error| matches!(e, Error::NotFound(_) | Error::FailedPrecondition(_));
            self.catalog("delete package", op, refused).await?;
        }
        self.check("after deleting every package").await?;
        self.purge().await.map_err(|e| format!("final purge: {e}"))?;
        self.gc().await.map_err(|e| format!("final gc: {e}"))?;
        self.check("at the end").await?;
        let s = self.engine().stats().map_err(|e| e.to_string())?;
        let left = [
            ("blobs", s.blobs),
            ("chunks", s.chunks),
            ("references", s.references),
            ("logical bytes", s.logical_bytes),
            ("unique bytes", s.unique_bytes),
            ("physical bytes", s.physical_bytes),
            ("condemned bytes", s.condemned_bytes),
        ];
        let left: Vec<String> = left
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(w, n)| format!("{n} {w}"))
            .collect();
        if !left.is_empty() {
            return Err(format!(
                "everything was deleted, purged and collected, yet the store holds {}",
                left.join(", ")
            ));
        }
        let index = self.engine().index();
        for (what, cf, tag) in [
            ("packages", Cf::Packages, None),
            ("versions", Cf::Versions, None),
            ("files", Cf::Files, None),
            ("usage counters", Cf::CatalogIdx, Some(b'G')),
            ("blob usage edges", Cf::CatalogIdx, Some(b'a')),
            ("chunk shares", Cf::CatalogIdx, Some(b'O')),
        ] {
            let n = count(index, cf, tag);
            if n > 0 {
                return Err(format!("after purging everything, {n} {what} are left"));
            }
        }
        self.tally.cases += 1;
        Ok(())
    }
}

async fn run_case(ops: Vec<Op>) -> Result<Tally, String> {
    let mut case = Case {
        dir: tempfile::tempdir().map_err(|e| e.to_string())?,
        engine: None,
        purging: false,
        published: Vec::new(),
        deleted: Vec::new(),
        content: HashMap::new(),
        tally: Tally::default(),
    };
    let r = case.run(&ops).await;
    case.close().await;
    r.map(|()| case.tally)
}

#[test]
fn every_txn_leaves_counters_equal_to_a_recount() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Each case opens an engine: few cases, and a bounded shrink. The
    // sequence is fixed, so the not-vacuous checks below hold in CI rather
    // than by luck (a random run once deleted no version twice); the
    // PROPTEST_* variables override all of these, PROPTEST_RNG_SEED to
    // explore other sequences.
    let config = contextualize_config(PtConfig {
        cases: 24,
        rng_seed: RngSeed::Fixed(20261201),
        max_shrink_iters: 1000,
        max_shrink_time: 90_000,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let cases = config.cases;
    let total = Mutex::new(Tally::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 20..40), |ops| {
        let t = rt.block_on(run_case(ops)).map_err(TestCaseError::fail)?;
        total.lock().unwrap().add(&t);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = total.into_inner().unwrap();
    eprintln!("{t}");
    // Not vacuous: over the default number of cases, each kind of change
    // happened, succeeded and failed, and purge and GC freed things.
    if cases >= 16 {
        for what in [
            "publish",
            "delete file",
            "delete version",
            "delete package",
            "restore file",
            "restore version",
            "restore package",
        ] {
            let (ok, failed) = t.ops.get(what).copied().unwrap_or_default();
            assert!(ok > 0 && failed > 0, "{what}: {ok} succeeded, {failed} failed: {t}");
        }
        assert!(
            t.ops.get("upload").is_some_and(|u| u.1 > 0),
            "no upload hit the quota: {t}"
        );
        assert!(
            t.files_purged > 0 && t.references_released > 0 && t.blobs_released > 0,
            "{t}"
        );
        assert!(
            t.chunks_collected > 0 && t.packs_compacted > 0 && t.packs_deleted > 0,
            "{t}"
        );
    }
}
