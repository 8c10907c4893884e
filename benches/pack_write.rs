//! Pack writing: records appended to a staging pack file through `Packer`
//! (page cache, no fsync), then one seal (footer + fsync) per 64 MiB pack.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{RngCore, SeedableRng, rngs::StdRng};
use stowage::hash::Hash;
use stowage::pack::format::{Codec, Kind};
use stowage::pack::{OpenPack, Packer};

fn pack_write(c: &mut Criterion) {
    let mut data = vec![0u8; 64 << 20];
    StdRng::seed_from_u64(5).fill_bytes(&mut data);
    let chunks: Vec<(Hash, &[u8])> = data.chunks(64 << 10).map(|c| (Hash::of(c), c)).collect();
    let mut g = c.benchmark_group("pack_write");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("append_64k_records_and_seal_64mib", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let first = Arc::new(OpenPack::create(dir.path(), 1, 0).unwrap());
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let packer = Packer::new(dir.path().to_path_buf(), u64::MAX, first.clone(), &[], 2, tx);
                (dir, packer, first, rx)
            },
            |(dir, packer, first, _rx)| {
                for (id, c) in &chunks {
                    packer.append(Kind::Chunk, Codec::Raw, *id, c.len() as u32, c).unwrap();
                }
                first.seal().unwrap();
                drop(dir);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, pack_write);
criterion_main!(benches);
