//! Content-defined chunking (FastCDC 2020), pure and streaming.
//!
//! A cut is only decided once `max_size` bytes past the chunk start are
//! buffered (or the input ended), so the chunks depend on the bytes alone,
//! never on how the input was split into frames.

use fastcdc::v2020::{self, MASKS};

use crate::error::{Error, Result};

/// The largest chunk any configuration can produce (FastCDC's limit).
pub const MAX_CHUNK: usize = v2020::MAXIMUM_MAX as usize;

/// Chunk size bounds. FastCDC normalisation level 1, as `fastcdc` defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            min_size: 16 << 10,
            avg_size: 64 << 10,
            max_size: 256 << 10,
        }
    }
}

impl ChunkParams {
    /// Checks the bounds FastCDC supports, so a bad config is an error, not a panic.
    pub fn validate(&self) -> Result<()> {
        let ChunkParams {
            min_size,
            avg_size,
            max_size,
        } = *self;
        let bad = |what: &str| Err(Error::invalid(format!("chunking: {what}")));
        if !(v2020::MINIMUM_MIN..=v2020::MINIMUM_MAX).contains(&min_size) {
            return bad("min_size must be between 64 B and 1 MiB");
        }
        if !(v2020::AVERAGE_MIN..=v2020::AVERAGE_MAX).contains(&avg_size) {
            return bad("avg_size must be between 256 B and 4 MiB");
        }
        if !(v2020::MAXIMUM_MIN..=v2020::MAXIMUM_MAX).contains(&max_size) {
            return bad("max_size must be between 1 KiB and 16 MiB");
        }
        if !(min_size <= avg_size && avg_size <= max_size) {
            return bad("sizes must satisfy min_size <= avg_size <= max_size");
        }
        Ok(())
    }
}

/// Streaming chunker: feed bytes with [`Chunker::push`], then [`Chunker::finish`].
pub struct Chunker {
    p: ChunkParams,
    masks: [u64; 4],
    buf: Vec<u8>,
}

impl Chunker {
    pub fn new(p: ChunkParams) -> Result<Self> {
        p.validate()?;
        let bits = v2020::logarithm2(p.avg_size);
        let (s, l) = (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]);
        Ok(Chunker {
            p,
            masks: [s, l, s << 1, l << 1],
            // Grows on demand: most uploads of a registry are small.
            buf: Vec::new(),
        })
    }

    /// Adds bytes; calls `emit` for every chunk that is now final.
    pub fn push<E>(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let max = self.p.max_size as usize;
        // Cut straight from the caller's slice when nothing is buffered.
        if self.buf.is_empty() {
            let used = self.cut_all(data, false, emit)?;
            data = &data[used..];
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            let room = (4 * max).saturating_sub(self.buf.len()).max(max);
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let buf = std::mem::take(&mut self.buf);
            let used = self.cut_all(&buf, false, emit);
            self.buf = buf;
            self.buf.drain(..used?);
        }
        Ok(())
    }

    /// Emits the remaining bytes as the last chunk(s).
    pub fn finish<E>(mut self, emit: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let buf = std::mem::take(&mut self.buf);
        self.cut_all(&buf, true, emit)?;
        Ok(())
    }

    /// Cuts chunks from `data` while a cut is final; returns the bytes consumed.
    fn cut_all<E>(&self, data: &[u8], eof: bool, emit: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<usize, E> {
        let ChunkParams {
            min_size,
            avg_size,
            max_size,
        } = self.p;
        let [ms, ml, msl, mll] = self.masks;
        let mut pos = 0;
        while pos < data.len() && (eof || data.len() - pos >= max_size as usize) {
            let (_, len) = v2020::cut(
                &data[pos..],
                min_size as usize,
                avg_size as usize,
                max_size as usize,
                ms,
                ml,
                msl,
                mll,
            );
            emit(&data[pos..pos + len])?;
            pos += len;
        }
        Ok(pos)
    }
}

/// Chunks a whole buffer at once (benches, tests).
pub fn chunk_lengths(p: ChunkParams, data: &[u8]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    let mut c = Chunker::new(p)?;
    let mut emit = |ch: &[u8]| -> Result<()> {
        out.push(ch.len());
        Ok(())
    };
    c.push(data, &mut emit)?;
    c.finish(&mut emit)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn small() -> ChunkParams {
        ChunkParams {
            min_size: 256,
            avg_size: 1024,
            max_size: 4096,
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        assert!(chunk_lengths(small(), &[]).unwrap().is_empty());
    }

    #[test]
    fn chunks_respect_bounds_and_cover_input() {
        let data = pseudo_random(200_000, 7);
        let lens = chunk_lengths(small(), &data).unwrap();
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        for l in &lens[..lens.len() - 1] {
            assert!((256..=4096).contains(l), "chunk of {l} bytes");
        }
    }

    #[test]
    fn bad_params_are_errors() {
        let p = ChunkParams {
            min_size: 10,
            avg_size: 1024,
            max_size: 4096,
        };
        assert!(Chunker::new(p).is_err());
        let p = ChunkParams {
            min_size: 4096,
            avg_size: 1024,
            max_size: 8192,
        };
        assert!(Chunker::new(p).is_err());
    }

    #[test]
    fn shared_middle_is_chunked_identically() {
        let middle = pseudo_random(100_000, 3);
        let a = [pseudo_random(5000, 1), middle.clone(), pseudo_random(3000, 2)].concat();
        let b = [pseudo_random(7000, 4), middle, pseudo_random(100, 5)].concat();
        let hashes = |d: &[u8]| {
            let mut out = std::collections::HashSet::new();
            let mut c = Chunker::new(small()).unwrap();
            let mut emit = |ch: &[u8]| -> Result<()> {
                out.insert(blake3::hash(ch));
                Ok(())
            };
            c.push(d, &mut emit).unwrap();
            c.finish(&mut emit).unwrap();
            out
        };
        let (ha, hb) = (hashes(&a), hashes(&b));
        let shared = ha.intersection(&hb).count();
        assert!(
            shared * 10 >= ha.len() * 8,
            "only {shared} of {} chunks shared",
            ha.len()
        );
    }

    proptest! {
        #[test]
        fn chunks_do_not_depend_on_frame_split(
            seed in any::<u64>(),
            len in 0usize..60_000,
            splits in proptest::collection::vec(0usize..60_000, 0..12),
        ) {
            let data = pseudo_random(len, seed);
            let whole = chunk_lengths(small(), &data).unwrap();
            let mut cuts: Vec<usize> = splits.into_iter().map(|s| s.min(len)).collect();
            cuts.sort();
            let mut c = Chunker::new(small()).unwrap();
            let mut got = Vec::new();
            let mut emit = |ch: &[u8]| -> Result<()> { got.push(ch.len()); Ok(()) };
            let mut prev = 0;
            for cut in cuts {
                c.push(&data[prev..cut], &mut emit).unwrap();
                prev = cut;
            }
            c.push(&data[prev..], &mut emit).unwrap();
            c.finish(&mut emit).unwrap();
            prop_assert_eq!(got, whole);
        }
    }
}
