//! zstd level 3 on 64 KiB chunks as `pack::format::compress` does it (keeping
//! raw what does not shrink), on incompressible and on text-like data; and the
//! verified decode of the read path.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};
use stowage::hash::Hash;
use stowage::pack::format::{Entry, Kind, compress, decode_chunk};

fn text(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "function",
        "return",
        "const",
        "require(",
        "module.exports",
        "=>",
        "{",
        "}",
        "\n  ",
        "lodash",
        "_.map",
    ];
    let mut r = StdRng::seed_from_u64(3);
    let mut v = Vec::with_capacity(len + 32);
    while v.len() < len {
        v.extend_from_slice(WORDS[r.random_range(0..WORDS.len())].as_bytes());
        v.push(b' ');
    }
    v.truncate(len);
    v
}

fn compression(c: &mut Criterion) {
    let mut random = vec![0u8; 8 << 20];
    StdRng::seed_from_u64(4).fill_bytes(&mut random);
    let text = text(8 << 20);
    let mut g = c.benchmark_group("compression");
    g.throughput(Throughput::Bytes(random.len() as u64));
    for (name, data) in [("random", &random), ("text", &text)] {
        g.bench_function(format!("zstd3_64k_{name}"), |b| {
            b.iter(|| {
                data.chunks(64 << 10)
                    .map(|c| compress(c, 3).unwrap().1.map_or(c.len(), |z| z.len()))
                    .sum::<usize>()
            })
        });
        let stored: Vec<(Entry, bytes::Bytes)> = data
            .chunks(64 << 10)
            .map(|c| {
                let (codec, z) = compress(c, 3).unwrap();
                let s = bytes::Bytes::from(z.unwrap_or_else(|| c.to_vec()));
                (Entry::new(Kind::Chunk, codec, Hash::of(c), c.len() as u32, &s), s)
            })
            .collect();
        g.bench_function(format!("decode_verify_64k_{name}"), |b| {
            b.iter(|| {
                stored
                    .iter()
                    .map(|(e, s)| decode_chunk(e, s.clone()).unwrap().len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, compression);
criterion_main!(benches);
