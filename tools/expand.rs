//! stowage-expand: what package-aware expansion would store for a set of
//! package files, measured with the store's own parts (the expansion, the
//! recipe, the chunker at its default sizes, BLAKE3 dedup across all files,
//! zstd per distinct chunk), without a daemon. Every file is recreated from
//! its recipe and checked byte-exact before it is counted.
//!
//!   stowage-expand [--level N] [--threads N] [--depth N] FILE...
//!
//! (--threads: recreation, default all cores; --depth: the longest delta
//! chain, default 4, 0 for no deltas.)
//!
//! Prints one line per file, then a table per package family (the file name
//! up to its version) and the totals: raw bytes, stored bytes (distinct
//! chunks compressed, plus the recipes), stored bytes when a new chunk is
//! kept as a zstd delta against the stored chunk its sketch finds or the
//! chunk in line with it in an earlier file (the one after the chunk its
//! predecessor matched, as the optimizer walks a previous version's recipe
//! beside the new one), the smaller (kept only when at most 90% of the chunk
//! compressed alone, the chain bounded by --depth), methods, and expansion
//! and recreation speed. Give the files oldest version first.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use stowage::chunker::{ChunkParams, chunk_lengths};
use stowage::delta::{self, Sketch};
use stowage::expand::{self, Budget, recipe};

#[derive(Default)]
struct Sum {
    files: u32,
    raw: u64,
    stored: u64,
    delta: u64,
    deltas: u32,
    plain: u64,
    zlib: u32,
    preflate: u32,
    opaque: u32,
    expand_s: f64,
    recreate_s: f64,
}

impl Sum {
    fn add(&mut self, o: &Sum) {
        self.files += o.files;
        self.raw += o.raw;
        self.stored += o.stored;
        self.delta += o.delta;
        self.deltas += o.deltas;
        self.plain += o.plain;
        self.zlib += o.zlib;
        self.preflate += o.preflate;
        self.opaque += o.opaque;
        self.expand_s += o.expand_s;
        self.recreate_s += o.recreate_s;
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<28} {:>3} {:>11} {:>11} {:>6.3} {:>11} {:>6.3} {:>6} {:>6} {:>6} {:>6} {:>8.1} {:>8.1}",
            self.files,
            self.raw,
            self.stored,
            self.stored as f64 / self.raw.max(1) as f64,
            self.delta,
            self.delta as f64 / self.raw.max(1) as f64,
            self.deltas,
            self.zlib,
            self.preflate,
            self.opaque,
            self.raw as f64 / 1e6 / self.expand_s.max(1e-9),
            self.raw as f64 / 1e6 / self.recreate_s.max(1e-9),
        )
    }
}

/// `botocore-1.34.100-py3-none-any.whl` -> `botocore`.
fn family(name: &str) -> String {
    let b = name.as_bytes();
    let cut = (1..b.len())
        .find(|&i| b[i].is_ascii_digit() && matches!(b[i - 1], b'-' | b'_'))
        .unwrap_or(b.len());
    name[..cut].trim_end_matches(['-', '_']).to_string()
}

/// Takes `name N` out of `args`, if there.
fn number_flag(args: &mut Vec<String>, name: &str) -> anyhow::Result<Option<u32>> {
    let Some(i) = args.iter().position(|a| a == name) else {
        return Ok(None);
    };
    let n = args
        .get(i + 1)
        .ok_or_else(|| anyhow::anyhow!("{name} needs a number"))?
        .parse()?;
    args.drain(i..i + 2);
    Ok(Some(n))
}

/// Every distinct chunk so far, with its delta depth, found by sketch.
#[derive(Default)]
struct Bases {
    chunks: Vec<(Vec<u8>, u32)>,
    by_feature: HashMap<u64, Vec<usize>>,
    /// The chunk that followed each one where it was first seen.
    next: HashMap<usize, usize>,
}

impl Bases {
    /// What `c` costs as a delta on the chunk it resembles most or on the
    /// chunk `in_line` with it (the smaller), if that is at most 90% of
    /// `alone` and the chain stays within `depth`, and the base; then adds
    /// `c` as a possible base.
    fn delta_cost(
        &mut self,
        c: &[u8],
        alone: u64,
        level: i32,
        depth: u32,
        in_line: Option<usize>,
    ) -> anyhow::Result<(Option<u64>, Option<usize>)> {
        let sketch = Sketch::of(c);
        let mut cost = None;
        let mut own_depth = 0;
        let mut used = None;
        if let (Some(s), true) = (sketch, depth > 0) {
            let mut shared: BTreeMap<usize, usize> = BTreeMap::new();
            for sf in s.0 {
                for &id in self.by_feature.get(&sf).into_iter().flatten() {
                    *shared.entry(id).or_default() += 1;
                }
            }
            let candidates = shared
                .iter()
                .filter(|&(&id, _)| self.chunks[id].1 < depth)
                .map(|(&id, &n)| (id, n, self.chunks[id].0.len()));
            let chosen = delta::choose_base(c.len(), candidates);
            let beside = in_line.filter(|&n| self.chunks[n].1 < depth && Some(n) != chosen);
            for id in chosen.into_iter().chain(beside) {
                let d = delta::encode(&self.chunks[id].0, c, level)?.len() as u64;
                if d * 10 <= alone * 9 && cost.is_none_or(|x| d < x) {
                    cost = Some(d);
                    own_depth = self.chunks[id].1 + 1;
                    used = Some(id);
                }
            }
        }
        let id = self.chunks.len();
        self.chunks.push((c.to_vec(), own_depth));
        for sf in sketch.map(|s| s.0).into_iter().flatten() {
            let ids = self.by_feature.entry(sf).or_default();
            ids.push(id);
            if ids.len() > 4 {
                ids.remove(0);
            }
        }
        Ok((cost, used))
    }
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let level = number_flag(&mut args, "--level")?.unwrap_or(19) as i32;
    let depth = number_flag(&mut args, "--depth")?.unwrap_or(4);
    let threads = match number_flag(&mut args, "--threads")? {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if args.is_empty() {
        anyhow::bail!("usage: stowage-expand [--level N] [--threads N] [--depth N] FILE...");
    }
    let budget = Budget::default();
    let params = ChunkParams::default();
    let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
    let mut bases = Bases::default();
    let mut families: BTreeMap<String, Sum> = BTreeMap::new();
    println!(
        "{:<28} {:>3} {:>11} {:>11} {:>6} {:>11} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8}",
        "file / family",
        "n",
        "raw",
        "stored",
        "ratio",
        "delta",
        "ratio",
        "deltas",
        "zlib",
        "prefl",
        "opaq",
        "exp MB/s",
        "rec MB/s"
    );
    for path in &args {
        let data = std::fs::read(path)?;
        let name = path.rsplit('/').next().unwrap_or(path);
        let t = Instant::now();
        let (nodes, stats) = expand::expand(&data, &budget);
        let planned = recipe::plan(nodes, &data);
        let expand_s = t.elapsed().as_secs_f64();
        let encoded = planned.recipe.encode();
        let space: Vec<u8> = planned.streams().flatten().copied().collect();
        let t = Instant::now();
        let mut back = Vec::with_capacity(data.len());
        recipe::recreate_parallel(&planned.recipe, || space.as_slice(), threads, &mut |b| {
            back.extend_from_slice(b);
            Ok(())
        })?;
        let recreate_s = t.elapsed().as_secs_f64();
        anyhow::ensure!(back == data, "{name}: the recipe does not recreate the file");
        let mut stored = encoded.len() as u64;
        let (mut with_delta, mut deltas) = (stored, 0);
        // The previous chunk, and the chunk it is in line with: itself if
        // it was seen before, else its base, else what was in line with it.
        let mut prev: Option<usize> = None;
        let mut prev_match: Option<usize> = None;
        for s in planned.streams() {
            let mut at = 0;
            for len in chunk_lengths(params, s)? {
                let c = &s[at..at + len];
                at += len;
                let h = *blake3::hash(c).as_bytes();
                let this;
                if let Some(&i) = seen.get(&h) {
                    this = i;
                    prev_match = Some(i);
                } else {
                    let alone = zstd::bulk::compress(c, level)?.len().min(c.len()) as u64;
                    stored += alone;
                    let in_line = prev_match.and_then(|m| bases.next.get(&m).copied());
                    let (cost, used) = bases.delta_cost(c, alone, level, depth, in_line)?;
                    match cost {
                        Some(d) => {
                            with_delta += d;
                            deltas += 1;
                        }
                        None => with_delta += alone,
                    }
                    this = bases.chunks.len() - 1;
                    seen.insert(h, this);
                    prev_match = used.or(in_line);
                }
                if let Some(p) = prev {
                    bases.next.entry(p).or_insert(this);
                }
                prev = Some(this);
            }
        }
        let one = Sum {
            files: 1,
            raw: data.len() as u64,
            stored,
            delta: with_delta,
            deltas,
            plain: stats.plain_bytes,
            zlib: stats.zlib,
            preflate: stats.preflate,
            opaque: stats.opaque,
            expand_s,
            recreate_s,
        };
        println!("{}", one.line(&name.chars().take(28).collect::<String>()));
        families.entry(family(name)).or_default().add(&one);
    }
    println!();
    let mut total = Sum::default();
    for (name, s) in &families {
        println!("{}", s.line(name));
        total.add(s);
    }
    println!("{}", total.line("TOTAL"));
    Ok(())
}
