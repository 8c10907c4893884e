//! Hashing on the Put path: BLAKE3 per 64 KiB chunk (content addresses) and the
//! whole-file digests (BLAKE3 + SHA-256, the default `FileHasher`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use stowage::hash::{ExtraDigests, FileHasher, Hash};

fn hashing(c: &mut Criterion) {
    let mut data = vec![0u8; 16 << 20];
    StdRng::seed_from_u64(2).fill_bytes(&mut data);
    let mut g = c.benchmark_group("hashing");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("blake3_per_64k_chunk", |b| {
        b.iter(|| data.chunks(64 << 10).map(|c| Hash::of(c).0[0]).sum::<u8>())
    });
    g.bench_function("file_blake3_sha256", |b| {
        b.iter(|| {
            let mut h = FileHasher::new(ExtraDigests::default());
            for f in data.chunks(1 << 20) {
                h.update(f);
            }
            h.finish()
        })
    });
    g.bench_function("file_all_digests", |b| {
        b.iter(|| {
            let mut h = FileHasher::new(ExtraDigests {
                sha1: true,
                sha512: true,
                md5: true,
            });
            for f in data.chunks(1 << 20) {
                h.update(f);
            }
            h.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
