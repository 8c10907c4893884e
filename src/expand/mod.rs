//! Package-aware expansion: what is inside a compressed package, and how to
//! make its exact bytes again. Pure: bytes in, a tree out; no I/O.
//!
//! [`expand`] recognises containers by their content, never by name: gzip
//! (one or several members), zip (stored and deflated members, data
//! descriptors, zip64, comments, whatever lies between entries) and tar
//! (ustar, pax, GNU), nested inside each other to [`Budget::depth`]. Each
//! deflate stream is recreated byte-exactly by stock zlib with the parameters
//! found ([`deflate`]), or by preflate-rs with correction data; a stream
//! neither makes stays as its compressed bytes. xz, bzip2 and zstd streams
//! (a `.deb`'s data) are opaque.
//!
//! The result is a list of [`Node`]s whose output, concatenated, is the
//! original blob: container bytes that are not member data are
//! [`Node::Residual`], member data is [`Node::Content`], and a deflate stream
//! is [`Node::Deflate`] over the nodes of its plain text. Invariant:
//! `recipe::recreate(recipe::plan(expand(b))) == b` for every input, whatever it is; a malformed,
//! truncated or lying archive only makes more of it residual. Expansion is
//! bounded by [`Budget`] (expanded bytes as a total and as a ratio per
//! stream, nesting depth, member count, time), so a zip bomb costs bounded
//! memory and time.

pub mod deflate;
mod gzip;
pub mod recipe;
mod tar;
#[cfg(test)]
mod tests;
mod zip;
pub mod zlib;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use deflate::Method;

/// Limits on what expanding one blob may cost.
#[derive(Clone, Debug)]
pub struct Budget {
    /// Expanded bytes of one blob, all streams and nesting levels together.
    pub max_plain: usize,
    /// Expanded bytes per compressed byte of one deflate stream.
    pub max_ratio: usize,
    /// Containers inside containers (a gzip in a zip in a tar is depth 3).
    pub depth: u8,
    /// Members of one blob, all levels together.
    pub max_members: usize,
    /// Wall time to spend on one blob; past it the rest stays as it is.
    pub time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_plain: 512 << 20,
            max_ratio: 200,
            depth: 4,
            max_members: 100_000,
            time: Duration::from_secs(60),
        }
    }
}

impl Budget {
    /// preflate's corrections larger than this fraction of the stream are
    /// not worth keeping over the compressed bytes themselves.
    pub fn max_corrections(&self, compressed: usize) -> usize {
        compressed / 4
    }
}

/// A piece of a blob's bytes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// Bytes kept as they are: headers, directories, trailers, padding,
    /// and streams that could not be recreated.
    Residual(Vec<u8>),
    /// The data of a member, as it is stored (plain).
    Content(Vec<u8>),
    /// A raw deflate stream: `method` applied to the output of `inner`.
    Deflate { method: Method, inner: Vec<Node> },
}

/// What one expansion did, for figures and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub zip: u32,
    pub gzip: u32,
    pub tar: u32,
    /// Deflate streams recreated by zlib's own parameters.
    pub zlib: u32,
    pub preflate: u32,
    /// Deflate streams kept compressed.
    pub opaque: u32,
    pub members: u32,
    pub plain_bytes: u64,
    /// Containers inside other containers (a tar in a gzip counts).
    pub nested: u32,
}

/// The deflate streams an expansion proved: for a method and the BLAKE3 of
/// a plain text, the exact bytes that method makes of it (the search ran
/// the compressor over the whole plain text and compared every byte).
/// [`recipe::recreate_proven`] takes a stream from here instead of making
/// it a second time when its step and plain text are the same.
#[derive(Default)]
pub struct Proven(HashMap<(Method, [u8; 32]), Vec<u8>>);

impl Proven {
    /// The bytes `method` was proven to make of `plain`.
    pub fn get(&self, method: &Method, plain: &[u8]) -> Option<&[u8]> {
        self.0
            .get(&(method.clone(), *blake3::hash(plain).as_bytes()))
            .map(|v| v.as_slice())
    }

    fn add(&mut self, method: &Method, plain: &[u8], made: &[u8]) {
        self.0
            .insert((method.clone(), *blake3::hash(plain).as_bytes()), made.to_vec());
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.values().map(|v| v.len()).sum()
    }
}

/// The state of one expansion: budget left, statistics, last winner.
pub(crate) struct Walk<'b> {
    budget: &'b Budget,
    started: Instant,
    plain_left: usize,
    /// The last winning zlib parameters at each depth: the members of one
    /// container were usually made by one compressor.
    hints: [Option<zlib::Params>; 8],
    /// Kept only when the caller asks ([`expand_proving`]).
    proven: Option<Proven>,
    pub stats: Stats,
}

impl Walk<'_> {
    fn out_of_time(&self) -> bool {
        self.started.elapsed() > self.budget.time
    }

    fn member(&mut self) -> bool {
        self.stats.members += 1;
        (self.stats.members as usize) <= self.budget.max_members
    }

    /// A raw deflate stream at the start of `data`: its node and length, or
    /// None when it is not one.
    fn deflate(&mut self, data: &[u8], depth: u8) -> Option<(Node, usize)> {
        if self.out_of_time() {
            return None;
        }
        let b = Budget {
            max_plain: self.plain_left,
            ..self.budget.clone()
        };
        let hint = &mut self.hints[depth.min(7) as usize];
        match deflate::analyze(data, *hint, &b)? {
            deflate::Analysis::Opaque { consumed } => {
                self.stats.opaque += 1;
                Some((Node::Residual(data[..consumed].to_vec()), consumed))
            }
            deflate::Analysis::Exact {
                plain,
                consumed,
                method,
            } => {
                match &method {
                    Method::Zlib(p) => {
                        self.stats.zlib += 1;
                        *hint = Some(*p);
                    }
                    Method::Preflate(_) => self.stats.preflate += 1,
                }
                if let Some(p) = &mut self.proven {
                    p.add(&method, &plain, &data[..consumed]);
                }
                self.plain_left -= plain.len();
                self.stats.plain_bytes += plain.len() as u64;
                let inner = self.content(plain, depth);
                Some((Node::Deflate { method, inner }, consumed))
            }
        }
    }

    /// Member data: a container inside it is expanded, anything else is
    /// content.
    fn content(&mut self, data: Vec<u8>, depth: u8) -> Vec<Node> {
        if depth < self.budget.depth
            && let Some(nodes) = self.container(&data, depth + 1)
        {
            return nodes;
        }
        vec![Node::Content(data)]
    }

    /// The nodes of `data` if it is a container this module knows.
    fn container(&mut self, data: &[u8], depth: u8) -> Option<Vec<Node>> {
        let nodes = self.known(data, depth)?;
        if depth > 1 {
            self.stats.nested += 1;
        }
        Some(nodes)
    }

    fn known(&mut self, data: &[u8], depth: u8) -> Option<Vec<Node>> {
        if gzip::is_gzip(data) {
            let nodes = gzip::expand(self, data, depth)?;
            self.stats.gzip += 1;
            Some(nodes)
        } else if zip::is_zip(data) {
            let nodes = zip::expand(self, data, depth)?;
            self.stats.zip += 1;
            Some(nodes)
        } else if tar::is_tar(data) {
            let nodes = tar::expand(self, data, depth)?;
            self.stats.tar += 1;
            Some(nodes)
        } else {
            None
        }
    }
}

/// Whether a blob starting with `head` (its first 512 bytes or more, or
/// all of it) is a container this module looks into.
pub fn sniff(head: &[u8]) -> bool {
    gzip::is_gzip(head) || zip::is_zip(head) || tar::is_tar(head)
}

/// Expands a blob. The nodes always recreate `data` exactly; a blob that is
/// no container this module knows is one content node.
pub fn expand(data: &[u8], budget: &Budget) -> (Vec<Node>, Stats) {
    let (nodes, stats, _) = walk(data, budget, None);
    (nodes, stats)
}

/// [`expand`], also keeping the streams it proved (as many bytes as the
/// blob's deflate streams at every level), so the recipe's own proof
/// need not compress them again.
pub fn expand_proving(data: &[u8], budget: &Budget) -> (Vec<Node>, Stats, Proven) {
    let (nodes, stats, proven) = walk(data, budget, Some(Proven::default()));
    (nodes, stats, proven.unwrap_or_default())
}

fn walk(data: &[u8], budget: &Budget, proven: Option<Proven>) -> (Vec<Node>, Stats, Option<Proven>) {
    let mut w = Walk {
        budget,
        started: Instant::now(),
        plain_left: budget.max_plain,
        hints: [None; 8],
        proven,
        stats: Stats::default(),
    };
    let nodes = w
        .container(data, 1)
        .unwrap_or_else(|| vec![Node::Content(data.to_vec())]);
    (merge(nodes), w.stats, w.proven)
}

/// Joins neighbouring residual nodes, at every level.
fn merge(nodes: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::with_capacity(nodes.len());
    for n in nodes {
        match (out.last_mut(), n) {
            (Some(Node::Residual(a)), Node::Residual(b)) => a.extend_from_slice(&b),
            (_, Node::Residual(b)) if b.is_empty() => {}
            (_, Node::Deflate { method, inner }) => out.push(Node::Deflate {
                method,
                inner: merge(inner),
            }),
            (_, n) => out.push(n),
        }
    }
    out
}

/// Little-endian readers over a byte slice, bounds-checked.
pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
