//! A recipe: how to make a blob's exact bytes from its expanded streams.
//!
//! [`plan`] turns expanded [`Node`]s into a recipe and the bytes of its
//! streams, which the store chunks and keeps like any blob's bytes, each
//! stream on its own chunk boundaries:
//! - the **residual** stream: container bytes that are not member data, and
//!   preflate's correction data, in the order the recipe uses them;
//! - the **small** stream: the content of members under [`SMALL`] bytes,
//!   one after the other, so compression keeps the context that the
//!   package's own compressor had over many small files;
//! - one **large** stream per larger member, so an unchanged file keeps its
//!   chunks wherever it moves, across versions, packages and namespaces.
//!
//! The streams lie one after the other in the blob's *expanded space*
//! (residual, small, then each large one); the recipe's steps only carry
//! lengths, each kind read in order by its own cursor. [`recreate`] walks the
//! steps, reading the expanded space through a [`Source`], and hands out the
//! original bytes in [`SEGMENT`]-sized pieces, each checked against the
//! BLAKE3 the recipe recorded for it before it is handed out.

use super::deflate::Method;
use super::zlib::{Deflater, Flavor, Params};
use super::{Node, Proven, zlib};
use crate::error::{Error, Result};

/// Members smaller than this share the small stream.
pub const SMALL: usize = 32 * 1024;
/// Recreated bytes are verified in pieces of this size.
pub const SEGMENT: usize = 1 << 20;

const VERSION: u8 = 1;
const RESIDUAL: u8 = 1;
const SMALL_CONTENT: u8 = 2;
const LARGE_CONTENT: u8 = 3;
const ZLIB: u8 = 4;
const PREFLATE: u8 = 5;
/// A zlib step whose compressor is Chromium's zlib ([`zlib::Flavor`]).
const CHROMIUM_ZLIB: u8 = 6;

/// One step of a recipe, in output order. A deflate step is followed by the
/// `children` steps (all levels counted) that make its plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Residual(u64),
    Small(u64),
    Large(u64),
    Zlib {
        params: Params,
        children: u32,
    },
    /// The corrections are the next `corrections` bytes of the residual stream.
    Preflate {
        corrections: u64,
        children: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// Length of the recreated blob.
    pub size: u64,
    /// The zlib the streams were proven with (diagnostics; the segment
    /// hashes decide).
    pub zlib: String,
    pub segments: Vec<[u8; 32]>,
    pub steps: Vec<Step>,
}

/// Lengths of the streams, in expanded-space order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    pub residual: u64,
    pub small: u64,
    pub large: Vec<u64>,
}

impl Streams {
    pub fn total(&self) -> u64 {
        self.residual + self.small + self.large.iter().sum::<u64>()
    }
}

/// A planned recipe with the bytes of its streams.
pub struct Planned {
    pub recipe: Recipe,
    pub residual: Vec<u8>,
    pub small: Vec<u8>,
    pub large: Vec<Vec<u8>>,
}

impl Planned {
    /// The streams in expanded-space order.
    pub fn streams(&self) -> impl Iterator<Item = &[u8]> {
        [self.residual.as_slice(), self.small.as_slice()]
            .into_iter()
            .chain(self.large.iter().map(|v| v.as_slice()))
    }
}

/// Plans the recipe of `original` from its expansion.
pub fn plan(nodes: Vec<Node>, original: &[u8]) -> Planned {
    let mut p = Planned {
        recipe: Recipe {
            size: original.len() as u64,
            zlib: zlib::version().to_string(),
            segments: original.chunks(SEGMENT).map(|s| *blake3::hash(s).as_bytes()).collect(),
            steps: Vec::new(),
        },
        residual: Vec::new(),
        small: Vec::new(),
        large: Vec::new(),
    };
    add(&mut p, nodes);
    p
}

fn add(p: &mut Planned, nodes: Vec<Node>) {
    for n in nodes {
        match n {
            Node::Residual(b) => {
                p.recipe.steps.push(Step::Residual(b.len() as u64));
                p.residual.extend_from_slice(&b);
            }
            Node::Content(b) if b.len() < SMALL => {
                p.recipe.steps.push(Step::Small(b.len() as u64));
                p.small.extend_from_slice(&b);
            }
            Node::Content(b) => {
                p.recipe.steps.push(Step::Large(b.len() as u64));
                p.large.push(b);
            }
            Node::Deflate { method, inner } => {
                let children = count(&inner);
                p.recipe.steps.push(match method {
                    Method::Zlib(params) => Step::Zlib { params, children },
                    Method::Preflate(c) => {
                        p.residual.extend_from_slice(&c);
                        Step::Preflate {
                            corrections: c.len() as u64,
                            children,
                        }
                    }
                });
                add(p, inner);
            }
        }
    }
}

/// Steps a list of nodes becomes, all levels counted.
fn count(nodes: &[Node]) -> u32 {
    nodes
        .iter()
        .map(|n| match n {
            Node::Deflate { inner, .. } => 1 + count(inner),
            _ => 1,
        })
        .sum()
}

impl Step {
    /// The stream this step reads (`RESIDUAL`, `SMALL_CONTENT` or
    /// `LARGE_CONTENT`) and how many bytes; none for a zlib step.
    fn reads(&self) -> Option<(u8, u64)> {
        match *self {
            Step::Residual(n) => Some((RESIDUAL, n)),
            Step::Small(n) => Some((SMALL_CONTENT, n)),
            Step::Large(n) => Some((LARGE_CONTENT, n)),
            Step::Preflate { corrections, .. } => Some((RESIDUAL, corrections)),
            Step::Zlib { .. } => None,
        }
    }
}

impl Recipe {
    /// The stream lengths the steps read.
    pub fn streams(&self) -> Streams {
        let mut s = Streams::default();
        for step in &self.steps {
            match step.reads() {
                Some((RESIDUAL, n)) => s.residual += n,
                Some((SMALL_CONTENT, n)) => s.small += n,
                Some((_, n)) => s.large.push(n),
                None => {}
            }
        }
        s
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        varint(&mut out, self.size);
        varint(&mut out, self.zlib.len() as u64);
        out.extend_from_slice(self.zlib.as_bytes());
        varint(&mut out, self.segments.len() as u64);
        for h in &self.segments {
            out.extend_from_slice(h);
        }
        varint(&mut out, self.steps.len() as u64);
        for s in &self.steps {
            match *s {
                Step::Residual(n) => {
                    out.push(RESIDUAL);
                    varint(&mut out, n);
                }
                Step::Small(n) => {
                    out.push(SMALL_CONTENT);
                    varint(&mut out, n);
                }
                Step::Large(n) => {
                    out.push(LARGE_CONTENT);
                    varint(&mut out, n);
                }
                Step::Zlib { params: p, children } => {
                    let tag = match p.flavor {
                        Flavor::Stock => ZLIB,
                        Flavor::Chromium => CHROMIUM_ZLIB,
                    };
                    out.extend_from_slice(&[tag, p.level, p.wbits, p.mem_level, p.strategy]);
                    varint(&mut out, children as u64);
                }
                Step::Preflate { corrections, children } => {
                    out.push(PREFLATE);
                    varint(&mut out, corrections);
                    varint(&mut out, children as u64);
                }
            }
        }
        out
    }

    /// Decodes a recipe, refusing anything that does not hold together:
    /// segment hashes that do not cover `size`, deflate steps whose children
    /// run past the end, bad parameters.
    pub fn decode(b: &[u8]) -> Result<Recipe> {
        let mut r = Cursor { b, at: 0 };
        if r.byte()? != VERSION {
            return Err(Error::corrupt("recipe version is unknown"));
        }
        let size = r.varint()?;
        let zn = r.len(64)?;
        let zlib = String::from_utf8(r.take(zn)?.to_vec())
            .map_err(|_| Error::corrupt("recipe's zlib version is not UTF-8"))?;
        let nseg = r.len(b.len() / 32)?;
        if nseg as u64 != size.div_ceil(SEGMENT as u64) {
            return Err(Error::corrupt("recipe segment hashes do not cover its size"));
        }
        let segments = (0..nseg)
            .map(|_| Ok(r.take(32)?.try_into().expect("32 bytes")))
            .collect::<Result<_>>()?;
        let nsteps = r.len(b.len())?;
        let mut steps = Vec::with_capacity(nsteps);
        for i in 0..nsteps {
            let step = match r.byte()? {
                RESIDUAL => Step::Residual(r.varint()?),
                SMALL_CONTENT => Step::Small(r.varint()?),
                LARGE_CONTENT => Step::Large(r.varint()?),
                tag @ (ZLIB | CHROMIUM_ZLIB) => {
                    let p = r.take(4)?;
                    let params = Params {
                        flavor: match tag {
                            ZLIB => Flavor::Stock,
                            _ => Flavor::Chromium,
                        },
                        level: p[0],
                        wbits: p[1],
                        mem_level: p[2],
                        strategy: p[3],
                    };
                    if !params.is_valid() || params.level == 0 {
                        return Err(Error::corrupt("recipe has invalid zlib parameters"));
                    }
                    Step::Zlib {
                        params,
                        children: r.children(i, nsteps)?,
                    }
                }
                PREFLATE => {
                    let corrections = r.varint()?;
                    Step::Preflate {
                        corrections,
                        children: r.children(i, nsteps)?,
                    }
                }
                t => return Err(Error::corrupt(format!("recipe step kind {t} is unknown"))),
            };
            steps.push(step);
        }
        if r.at != b.len() {
            return Err(Error::corrupt("recipe has trailing bytes"));
        }
        // The streams' lengths add up without overflow (so `streams()` and
        // its total are exact for every decoded recipe).
        steps
            .iter()
            .try_fold(0u64, |sum, step| sum.checked_add(step.reads().map_or(0, |(_, n)| n)))
            .ok_or_else(|| Error::corrupt("recipe stream lengths overflow"))?;
        Ok(Recipe {
            size,
            zlib,
            segments,
            steps,
        })
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| Error::corrupt("recipe is truncated"))?;
        self.at += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let c = self.byte()?;
            // Only the shortest encoding is valid, so decoding is canonical
            // (manifests are compared by their bytes).
            if (shift > 0 && c == 0) || (shift == 63 && c > 1) {
                return Err(Error::corrupt("recipe varint is not in its shortest form"));
            }
            v |= ((c & 0x7f) as u64) << shift;
            if c & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::corrupt("recipe varint is too long"))
    }

    /// A count that must not exceed `max` (what the rest of the record can hold).
    fn len(&mut self, max: usize) -> Result<usize> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| Error::corrupt("recipe count is out of range"))
    }

    fn children(&mut self, i: usize, nsteps: usize) -> Result<u32> {
        let c = self.len(nsteps - i - 1)?;
        Ok(c as u32)
    }
}

/// Reads a blob's expanded space.
pub trait Source {
    /// Exactly `len` bytes at `offset`.
    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

impl Source for &[u8] {
    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(|_| Error::corrupt("offset"))?;
        self.get(start..start + len)
            .map(|s| s.to_vec())
            .ok_or_else(|| Error::corrupt("recipe reads past its streams"))
    }
}

/// The expanded space of a planned recipe, read from its streams in memory
/// (the optimizer proves a recipe with it before storing anything).
pub struct PlannedSource<'a> {
    streams: Vec<&'a [u8]>,
    starts: Vec<u64>,
}

impl Planned {
    pub fn source(&self) -> PlannedSource<'_> {
        let streams: Vec<&[u8]> = self.streams().collect();
        let mut at = 0;
        let starts = streams
            .iter()
            .map(|s| {
                let start = at;
                at += s.len() as u64;
                start
            })
            .collect();
        PlannedSource { streams, starts }
    }
}

impl Source for PlannedSource<'_> {
    fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let mut i = self.starts.partition_point(|&s| s <= offset).saturating_sub(1);
        while out.len() < len {
            let s = self
                .streams
                .get(i)
                .ok_or_else(|| Error::corrupt("recipe reads past its streams"))?;
            let from = (offset + out.len() as u64).saturating_sub(self.starts[i]) as usize;
            let take = (len - out.len()).min(s.len().saturating_sub(from));
            out.extend_from_slice(&s[from.min(s.len())..from.min(s.len()) + take]);
            i += 1;
        }
        Ok(out)
    }
}

/// Reads larger contents in pieces of this size.
const PIECE: usize = 1 << 20;

struct Walker<'a, S> {
    steps: &'a [Step],
    /// Streams already proven: a deflate step whose method and plain text
    /// match one is handed out as is (its plain text is gathered whole).
    proven: Option<&'a Proven>,
    next: usize,
    src: S,
    residual: u64,
    small: u64,
    large: u64,
}

type Sink<'s> = dyn FnMut(&[u8]) -> Result<()> + 's;

impl<S: Source> Walker<'_, S> {
    fn stream(&mut self, which: u8, len: u64, out: &mut Sink) -> Result<()> {
        let cursor = match which {
            RESIDUAL => &mut self.residual,
            SMALL_CONTENT => &mut self.small,
            _ => &mut self.large,
        };
        let (start, mut left) = (*cursor, len);
        *cursor += len;
        let mut at = start;
        while left > 0 {
            let n = left.min(PIECE as u64) as usize;
            out(&self.src.read(at, n)?)?;
            at += n as u64;
            left -= n as u64;
        }
        Ok(())
    }

    /// Runs the steps up to (not including) step `end`, handing their
    /// output to `out`.
    fn run(&mut self, end: usize, out: &mut Sink) -> Result<()> {
        while self.next < end {
            let step = self.steps[self.next].clone();
            self.next += 1;
            let inner_end = |children: u32, next: usize| {
                let e = next + children as usize;
                if e > end {
                    return Err(Error::corrupt("recipe deflate step runs past its parent"));
                }
                Ok(e)
            };
            match step {
                Step::Residual(n) => self.stream(RESIDUAL, n, out)?,
                Step::Small(n) => self.stream(SMALL_CONTENT, n, out)?,
                Step::Large(n) => self.stream(LARGE_CONTENT, n, out)?,
                Step::Zlib { params, children } if self.proven.is_some() => {
                    let e = inner_end(children, self.next)?;
                    let plain = self.gather(e)?;
                    let method = Method::Zlib(params);
                    match self.proven.and_then(|p| p.get(&method, &plain)) {
                        Some(made) => out(made)?,
                        None => out(&super::deflate::recreate(&method, &plain)
                            .ok_or_else(|| Error::corrupt("recipe zlib parameters"))?)?,
                    }
                }
                Step::Zlib { params, children } => {
                    let e = inner_end(children, self.next)?;
                    let mut d = Deflater::new(params).ok_or_else(|| Error::corrupt("recipe zlib parameters"))?;
                    let mut made = Vec::new();
                    self.run(e, &mut |b: &[u8]| {
                        d.push(b, false, &mut made);
                        if made.len() >= PIECE {
                            out(&made)?;
                            made.clear();
                        }
                        Ok(())
                    })?;
                    d.push(&[], true, &mut made);
                    out(&made)?;
                }
                Step::Preflate { corrections, children } => {
                    let e = inner_end(children, self.next)?;
                    let mut c = Vec::new();
                    self.stream(RESIDUAL, corrections, &mut |b: &[u8]| {
                        c.extend_from_slice(b);
                        Ok(())
                    })?;
                    let plain = self.gather(e)?;
                    if let Some(made) = self.proven.and_then(|p| p.get(&Method::Preflate(c.clone()), &plain)) {
                        out(made)?;
                        continue;
                    }
                    let made = preflate_rs::recreate_whole_deflate_stream(&plain, &c)
                        .map_err(|e| Error::corrupt(format!("preflate cannot recreate a stream: {e}")))?;
                    out(&made)?;
                }
            }
        }
        Ok(())
    }

    /// The whole output of the steps up to step `end`.
    fn gather(&mut self, end: usize) -> Result<Vec<u8>> {
        let mut plain = Vec::new();
        self.run(end, &mut |b: &[u8]| {
            plain.extend_from_slice(b);
            Ok(())
        })?;
        Ok(plain)
    }
}

/// Recreates the blob from its expanded space (`streams` says where each
/// stream starts), handing `out` verified segments in order. A segment that
/// does not match its BLAKE3 is a corruption error and is never handed out.
pub fn recreate(recipe: &Recipe, src: impl Source, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    recreate_with(recipe, src, None, out)
}

/// [`recreate`], taking each deflate stream whose method and plain text
/// `proven` has from there instead of compressing it again: the optimizer's
/// proof that a plan makes its blob, after the search proved each stream.
/// Every segment is still checked against its BLAKE3.
pub fn recreate_proven(
    recipe: &Recipe,
    src: impl Source,
    proven: &Proven,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    recreate_with(recipe, src, Some(proven), out)
}

fn recreate_with(
    recipe: &Recipe,
    src: impl Source,
    proven: Option<&Proven>,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let s = recipe.streams();
    let mut w = Walker {
        steps: &recipe.steps,
        proven,
        next: 0,
        src,
        residual: 0,
        small: s.residual,
        large: s.residual + s.small,
    };
    let mut segs = Segments::new(recipe);
    w.run(recipe.steps.len(), &mut |b: &[u8]| segs.push(b, out))?;
    segs.finish(out)
}

/// Top-level steps whose expanded bytes pass this are recreated alone,
/// streaming; smaller ones are batched and recreated in parallel.
const PARALLEL_MAX: u64 = 16 << 20;
/// Expanded bytes a parallel batch gathers at least (many small members).
const BATCH: u64 = 1 << 20;

/// [`recreate`], with up to `threads` independent top-level steps (a zip's
/// members) recreated at once, each thread reading through its own
/// `source()`. Memory: at most `threads` batches of recreated bytes, each
/// under [`BATCH`] plus one step of at most [`PARALLEL_MAX`] expanded bytes.
pub fn recreate_parallel<S: Source>(
    recipe: &Recipe,
    source: impl Fn() -> S + Sync,
    threads: usize,
    out: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let units = top_level(recipe)?;
    if threads < 2 || units.len() < 2 {
        return recreate(recipe, source(), out);
    }
    // Batches of consecutive units: (first, last + 1) unit index.
    let mut batches = Vec::new();
    let (mut first, mut bytes) = (0, 0u64);
    for (i, u) in units.iter().enumerate() {
        if u.bytes > PARALLEL_MAX && first < i {
            batches.push((first, i));
            first = i;
            bytes = 0;
        }
        bytes += u.bytes;
        if bytes >= BATCH || u.bytes > PARALLEL_MAX {
            batches.push((first, i + 1));
            (first, bytes) = (i + 1, 0);
        }
    }
    if first < units.len() {
        batches.push((first, units.len()));
    }
    let walker = |(a, b): (usize, usize)| {
        let u = &units[a];
        let w = Walker {
            steps: &recipe.steps,
            proven: None,
            next: u.step,
            src: source(),
            residual: u.at[0],
            small: u.at[1],
            large: u.at[2],
        };
        (w, units.get(b).map_or(recipe.steps.len(), |u| u.step))
    };
    let alone = |&(a, b): &(usize, usize)| b - a == 1 && units[a].bytes > PARALLEL_MAX;
    let mut segs = Segments::new(recipe);
    let mut k = 0;
    while k < batches.len() {
        if alone(&batches[k]) {
            let (mut w, end) = walker(batches[k]);
            w.run(end, &mut |b: &[u8]| segs.push(b, out))?;
            k += 1;
            continue;
        }
        let window: Vec<_> = batches[k..]
            .iter()
            .take(threads)
            .take_while(|b| !alone(b))
            .copied()
            .collect();
        k += window.len();
        let made: Vec<Result<Vec<u8>>> = std::thread::scope(|scope| {
            let running: Vec<_> = window
                .iter()
                .map(|&batch| {
                    let walker = &walker;
                    scope.spawn(move || {
                        let (mut w, end) = walker(batch);
                        let mut v = Vec::new();
                        w.run(end, &mut |b: &[u8]| {
                            v.extend_from_slice(b);
                            Ok(())
                        })?;
                        Ok(v)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(Error::Internal("a recreating thread panicked".into())))
                })
                .collect()
        });
        for v in made {
            segs.push(&v?, out)?;
        }
    }
    segs.finish(out)
}

/// A top-level step with the steps it holds: where it starts in the steps
/// and in the three streams, and the expanded bytes it reads.
struct Unit {
    step: usize,
    at: [u64; 3],
    bytes: u64,
}

fn top_level(recipe: &Recipe) -> Result<Vec<Unit>> {
    let s = recipe.streams();
    let bad = || Error::corrupt("recipe steps overflow their streams");
    let mut at = [0, s.residual, s.residual.checked_add(s.small).ok_or_else(bad)?];
    let (steps, mut i, mut out) = (&recipe.steps, 0, Vec::new());
    while i < steps.len() {
        let end = match steps[i] {
            Step::Zlib { children, .. } | Step::Preflate { children, .. } => i + 1 + children as usize,
            _ => i + 1,
        };
        if end > steps.len() {
            return Err(Error::corrupt("recipe deflate step runs past its parent"));
        }
        let mut u = Unit { step: i, at, bytes: 0 };
        for (which, n) in steps[i..end].iter().filter_map(Step::reads) {
            let which = (which - RESIDUAL) as usize;
            at[which] = at[which].checked_add(n).ok_or_else(bad)?;
            u.bytes = u.bytes.checked_add(n).ok_or_else(bad)?;
        }
        out.push(u);
        i = end;
    }
    Ok(out)
}

/// Cuts recreated bytes into segments and checks each against the recipe.
struct Segments<'r> {
    recipe: &'r Recipe,
    pending: Vec<u8>,
    seg: usize,
    total: u64,
}

impl<'r> Segments<'r> {
    fn new(recipe: &'r Recipe) -> Self {
        Segments {
            recipe,
            pending: Vec::with_capacity(SEGMENT.min(recipe.size as usize)),
            seg: 0,
            total: 0,
        }
    }

    fn push(&mut self, mut b: &[u8], out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        while !b.is_empty() {
            let n = (SEGMENT - self.pending.len()).min(b.len());
            self.pending.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.pending.len() == SEGMENT {
                self.check(out)?;
            }
        }
        Ok(())
    }

    fn check(&mut self, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let want = self
            .recipe
            .segments
            .get(self.seg)
            .ok_or_else(|| Error::corrupt("recipe makes more bytes than its size"))?;
        if blake3::hash(&self.pending).as_bytes() != want {
            return Err(Error::corrupt(format!(
                "recreated segment {} does not match its BLAKE3",
                self.seg
            )));
        }
        self.seg += 1;
        self.total += self.pending.len() as u64;
        out(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if !self.pending.is_empty() {
            self.check(out)?;
        }
        if self.total != self.recipe.size || self.seg != self.recipe.segments.len() {
            return Err(Error::corrupt("recreated blob is shorter than its recipe says"));
        }
        Ok(())
    }
}
