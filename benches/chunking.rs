//! FastCDC chunking (min 16 / avg 64 / max 256 KiB) of 16 MiB, fed in 1 MiB frames
//! as the Put path feeds it. Measures `stowage::chunker::Chunker` alone.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use stowage::chunker::{ChunkParams, Chunker};

fn chunking(c: &mut Criterion) {
    let mut data = vec![0u8; 16 << 20];
    StdRng::seed_from_u64(1).fill_bytes(&mut data);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc_v2020_64k_random", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut ch = Chunker::new(ChunkParams::default()).unwrap();
            let mut emit = |c: &[u8]| -> stowage::Result<()> {
                n += c.len();
                Ok(())
            };
            for frame in data.chunks(1 << 20) {
                ch.push(frame, &mut emit).unwrap();
            }
            ch.finish(&mut emit).unwrap();
            n
        })
    });
    g.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
