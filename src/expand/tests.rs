//! Expansion round trips: archives built here the way packaging tools build
//! them, at random zlib parameters, must recreate byte-exactly; broken and
//! hostile ones must too, as residual bytes, within their budget.

use proptest::prelude::*;

use super::recipe::{self, Recipe};
use super::zlib::{self, Flavor, Params};
use super::{Budget, Node, Proven, Stats, expand, expand_proving};
use crate::error::Error;

/// Expands, plans, encodes and decodes the recipe, recreates from the
/// streams, and checks the bytes. Returns the statistics.
fn round_trip(data: &[u8], budget: &Budget) -> Stats {
    let (nodes, stats) = expand(data, budget);
    let mut direct = Vec::new();
    recreate_nodes(&nodes, &mut |b| direct.extend_from_slice(b)).unwrap();
    assert!(direct == data, "nodes do not recreate the input");
    let planned = recipe::plan(nodes, data);
    let space: Vec<u8> = planned.streams().flatten().copied().collect();
    assert_eq!(planned.recipe.streams().total(), space.len() as u64);
    let recipe = Recipe::decode(&planned.recipe.encode()).unwrap();
    assert_eq!(recipe, planned.recipe);
    let mut back = Vec::new();
    recipe::recreate(&recipe, space.as_slice(), &mut |b| {
        back.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert!(back == data, "recipe does not recreate the input");
    // The same through the streams in place, as the optimizer proves it.
    let mut again = Vec::new();
    recipe::recreate(&recipe, planned.source(), &mut |b| {
        again.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert!(again == data, "the planned streams do not recreate the input");
    // The optimizer's proof: the streams the search proved, taken as made.
    let (nodes, _, proven) = expand_proving(data, budget);
    let planned = recipe::plan(nodes, data);
    let mut proved = Vec::new();
    recipe::recreate_proven(&planned.recipe, planned.source(), &proven, &mut |b| {
        proved.extend_from_slice(b);
        Ok(())
    })
    .unwrap();
    assert!(proved == data, "the proven streams do not recreate the input");
    // In parallel, independent top-level steps at once: the same bytes.
    for threads in [2, 3] {
        let mut par = Vec::new();
        recipe::recreate_parallel(&recipe, || space.as_slice(), threads, &mut |b| {
            par.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert!(par == data, "the parallel recreation differs ({threads} threads)");
    }
    stats
}

/// The nodes' bytes, made directly (the recipe's own path is
/// `recipe::recreate`): checks the expansion apart from the recipe.
fn recreate_nodes(nodes: &[Node], out: &mut dyn FnMut(&[u8])) -> Option<()> {
    for n in nodes {
        match n {
            Node::Residual(b) | Node::Content(b) => out(b),
            Node::Deflate { method, inner } => {
                let mut plain = Vec::new();
                recreate_nodes(inner, &mut |b| plain.extend_from_slice(b))?;
                out(&super::deflate::recreate(method, &plain)?);
            }
        }
    }
    Some(())
}

fn text(seed: u64, n: usize) -> Vec<u8> {
    let words = [
        "import ", "def ", "return ", "self", ".x", " = ", "None", "\n    ", "(", ")", ":", "1",
    ];
    let mut v = Vec::with_capacity(n + 8);
    let mut x = seed | 1;
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    v.truncate(n);
    v
}

fn gzip(p: Params, plain: &[u8], name: Option<&str>) -> Vec<u8> {
    let mut g = vec![0x1f, 0x8b, 8, if name.is_some() { 8 } else { 0 }, 1, 2, 3, 4, 0, 3];
    if let Some(n) = name {
        g.extend_from_slice(n.as_bytes());
        g.push(0);
    }
    g.extend_from_slice(&zlib::deflate(p, plain));
    g.extend_from_slice(&zlib::crc32(0, plain).to_le_bytes());
    g.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    g
}

/// A member of a built zip: name, contents, stored (None) or deflated.
struct Member<'a> {
    name: String,
    data: &'a [u8],
    deflate: Option<Params>,
    descriptor: bool,
}

fn zip(members: &[Member], comment: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for m in members {
        let offset = out.len() as u32;
        let body = match m.deflate {
            Some(p) => zlib::deflate(p, m.data),
            None => m.data.to_vec(),
        };
        let crc = zlib::crc32(0, m.data);
        let method: u16 = if m.deflate.is_some() { 8 } else { 0 };
        let flags: u16 = if m.descriptor { 8 } else { 0 };
        let (lcrc, lc, lu) = if m.descriptor {
            (0, 0, 0)
        } else {
            (crc, body.len() as u32, m.data.len() as u32)
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0x21, 0x43, 0x65, 0x57]); // time, date
        out.extend_from_slice(&lcrc.to_le_bytes());
        out.extend_from_slice(&lc.to_le_bytes());
        out.extend_from_slice(&lu.to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(m.name.as_bytes());
        out.extend_from_slice(&[0xfe, 0xca, 0, 0]); // an empty extra field, as jar tools write
        out.extend_from_slice(&body);
        if m.descriptor {
            out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
        }
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 3, 20, 0]);
        central.extend_from_slice(&flags.to_le_bytes());
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0x21, 0x43, 0x65, 0x57]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(body.len() as u32).to_le_bytes());
        central.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&[0, 0, 0xa4, 0x81]); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(m.name.as_bytes());
    }
    let cd_start = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&(comment.len() as u16).to_le_bytes());
    out.extend_from_slice(comment);
    out
}

/// `n` deflated members with the same contents.
fn copies(data: &[u8], n: usize) -> Vec<Member<'_>> {
    (0..n)
        .map(|i| Member {
            name: format!("f{i}"),
            data,
            deflate: Some(Params::DEFAULT),
            descriptor: false,
        })
        .collect()
}

fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0001750");
        h[116..123].copy_from_slice(b"0001750");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"14635451234");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&c| c as u32).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn a_wheel_expands_into_its_members_and_recreates() {
    let files: Vec<Vec<u8>> = (0..6).map(|i| text(i, 5_000 + i as usize * 20_000)).collect();
    let members: Vec<Member> = files
        .iter()
        .enumerate()
        .map(|(i, d)| Member {
            name: format!("pkg/m{i}.py"),
            data: d,
            deflate: (i != 2).then_some(Params::DEFAULT),
            descriptor: i == 4,
        })
        .collect();
    let z = zip(&members, b"a comment");
    let stats = round_trip(&z, &Budget::default());
    assert_eq!((stats.zip, stats.zlib, stats.opaque), (1, 5, 0), "{stats:?}");
    assert_eq!(stats.members, 6);
}

/// A tar.gz holding a README, a gzip file and a jar: three deflate
/// streams on two levels.
fn nested_tgz() -> Vec<u8> {
    let inner_zip = zip(
        &[Member {
            name: "a.txt".into(),
            data: &text(9, 40_000),
            deflate: Some(Params::DEFAULT),
            descriptor: false,
        }],
        b"",
    );
    let model = gzip(
        Params {
            level: 9,
            ..Params::DEFAULT
        },
        &text(3, 80_000),
        Some("model.json"),
    );
    let t = tar(&[
        ("pkg/README", &text(1, 3_000)),
        ("pkg/model.json.gz", &model),
        ("pkg/lib.jar", &inner_zip),
    ]);
    gzip(
        Params {
            level: 9,
            ..Params::DEFAULT
        },
        &t,
        None,
    )
}

#[test]
fn a_tar_gz_with_a_nested_gzip_and_a_nested_zip_expands_every_level() {
    let tgz = nested_tgz();
    let stats = round_trip(&tgz, &Budget::default());
    assert_eq!((stats.gzip, stats.tar, stats.zip), (2, 1, 1), "{stats:?}");
    assert_eq!(stats.zlib, 3);
    assert_eq!(stats.nested, 3);
}

#[test]
fn the_proof_takes_proven_streams_as_made_and_still_checks_them() {
    let tgz = nested_tgz();
    let (nodes, stats, mut proven) = expand_proving(&tgz, &Budget::default());
    assert_eq!(
        proven.0.len(),
        stats.zlib as usize,
        "every stream the search proved is kept"
    );
    let planned = recipe::plan(nodes, &tgz);
    let run = |p: &Proven| {
        let mut v = Vec::new();
        recipe::recreate_proven(&planned.recipe, planned.source(), p, &mut |b| {
            v.extend_from_slice(b);
            Ok(())
        })
        .map(|_| v)
    };
    assert!(run(&proven).unwrap() == tgz);
    // Without proven streams the plan is proven by compressing again.
    assert!(run(&Proven::default()).unwrap() == tgz);
    // A proven stream is taken as it is: a wrong one is caught by the
    // segment hashes and nothing is handed out.
    for v in proven.0.values_mut() {
        let n = v.len() / 2;
        v[n] ^= 1;
    }
    let err = run(&proven).unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
}

#[test]
fn a_multi_member_gzip_with_trailing_bytes_expands_each_member() {
    let mut g = gzip(Params::DEFAULT, &text(1, 10_000), Some("a"));
    g.extend_from_slice(&gzip(
        Params {
            level: 1,
            ..Params::DEFAULT
        },
        &text(2, 10_000),
        None,
    ));
    g.extend_from_slice(b"\0\0garbage after the members");
    let stats = round_trip(&g, &Budget::default());
    assert_eq!((stats.gzip, stats.zlib, stats.members), (1, 2, 2), "{stats:?}");
}

#[test]
fn a_zip_bomb_stays_residual_within_its_budget() {
    let zeros = vec![0u8; 64 << 20];
    let z = zip(
        &[Member {
            name: "bomb".into(),
            data: &zeros,
            deflate: Some(Params::DEFAULT),
            descriptor: false,
        }],
        b"",
    );
    assert!(z.len() < 200_000);
    let stats = round_trip(&z, &Budget::default());
    assert_eq!((stats.zlib, stats.preflate, stats.plain_bytes), (0, 0, 0), "{stats:?}");
    // A lower total budget stops a pile of members that are each fine.
    let one = text(5, 200_000);
    let z = zip(&copies(&one, 20), b"");
    let stats = round_trip(
        &z,
        &Budget {
            max_plain: 1 << 20,
            ..Budget::default()
        },
    );
    assert_eq!(stats.zlib, 5, "{stats:?}");
}

#[test]
fn deep_nesting_stops_at_the_depth_budget() {
    let mut g = text(4, 20_000);
    for _ in 0..40 {
        g = gzip(Params::DEFAULT, &g, None);
    }
    let stats = round_trip(&g, &Budget::default());
    assert_eq!(stats.gzip, Budget::default().depth as u32, "{stats:?}");
}

#[test]
fn a_member_limit_leaves_the_rest_residual() {
    let one = text(5, 1000);
    let z = zip(&copies(&one, 50), b"");
    let stats = round_trip(
        &z,
        &Budget {
            max_members: 10,
            ..Budget::default()
        },
    );
    assert_eq!(stats.zlib, 10, "{stats:?}");
}

#[test]
fn a_flipped_stream_byte_is_caught_before_the_segment_leaves() {
    let t = tar(&[("a", &text(1, 3 << 20)), ("b", &text(2, 5_000))]);
    let tgz = gzip(Params::DEFAULT, &t, None);
    damaged_space_is_caught(&tgz, |n| n - 100, 1);
}

/// Flips the byte at `at(len)` of `data`'s expanded space and recreates on
/// `threads` threads: a corruption error, and only whole good segments out.
fn damaged_space_is_caught(data: &[u8], at: impl Fn(usize) -> usize, threads: usize) {
    let (nodes, _) = expand(data, &Budget::default());
    let planned = recipe::plan(nodes, data);
    let mut space: Vec<u8> = planned.streams().flatten().copied().collect();
    let i = at(space.len());
    space[i] ^= 1;
    let mut handed = 0usize;
    let err = recipe::recreate_parallel(&planned.recipe, || space.as_slice(), threads, &mut |b| {
        handed += b.len();
        Ok(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not match its BLAKE3"), "{err}");
    assert_eq!(handed % recipe::SEGMENT, 0, "a partial or bad segment was handed out");
    assert!(handed < data.len());
}

#[test]
fn a_wheel_of_many_members_recreates_in_parallel_and_catches_a_flipped_byte() {
    let files: Vec<Vec<u8>> = (0..60).map(|i| text(i, 20_000 + (i as usize % 7) * 30_000)).collect();
    let members: Vec<Member> = files
        .iter()
        .enumerate()
        .map(|(i, d)| Member {
            name: format!("pkg/m{i}.py"),
            data: d,
            deflate: Some(if i % 3 == 0 {
                Params::DEFAULT
            } else {
                Params {
                    level: 9,
                    ..Params::DEFAULT
                }
            }),
            descriptor: i % 5 == 0,
        })
        .collect();
    let z = zip(&members, b"");
    let stats = round_trip(&z, &Budget::default());
    assert_eq!(stats.zlib, 60, "{stats:?}");
    damaged_space_is_caught(&z, |n| n * 2 / 3, 2);
}

/// The `recipe` fuzz target's input kept as `name` in
/// `fuzz/regressions/recipe/` is refused as corrupt, saying `says`.
fn kept_input_is_corrupt(name: &str, says: &str) {
    let path = format!("{}/fuzz/regressions/recipe/{name}", env!("CARGO_MANIFEST_DIR"));
    let err = Recipe::decode(&std::fs::read(path).unwrap()).unwrap_err();
    assert!(err.to_string().contains(says), "{name}: {err}");
}

/// Found by the `recipe` fuzz target: a varint in a longer form than its
/// shortest (`80 00` for 0) decoded, so two encodings meant one recipe.
#[test]
fn an_overlong_varint_is_corrupt() {
    kept_input_is_corrupt("overlong-varint", "shortest form");
    // The shortest form of the same recipe decodes, and re-encodes the same.
    let short = [1, 0, 1, 1, 0, 0];
    assert_eq!(Recipe::decode(&short).unwrap().encode(), short);
}

/// Found by the `recipe` fuzz target: step lengths whose sum overflows
/// decoded, and summing the streams then overflowed.
#[test]
fn stream_lengths_that_overflow_are_corrupt() {
    kept_input_is_corrupt("lengths-overflow", "overflow");
}

/// Found by the `recipe` fuzz target: a zlib version that is not UTF-8
/// decoded lossily (re-encoding gave other bytes).
#[test]
fn a_zlib_version_that_is_not_utf8_is_corrupt() {
    kept_input_is_corrupt("zlib-version-not-utf8", "not UTF-8");
}

#[test]
fn hostile_recipes_are_refused_not_obeyed() {
    let tgz = gzip(Params::DEFAULT, &tar(&[("a", &text(1, 50_000))]), None);
    let (nodes, _) = expand(&tgz, &Budget::default());
    let good = recipe::plan(nodes, &tgz).recipe;
    let enc = good.encode();
    for cut in 0..enc.len() {
        assert!(Recipe::decode(&enc[..cut]).is_err(), "a recipe cut at {cut} decoded");
    }
    // A deflate step claiming more children than the recipe has.
    let mut bad = good.clone();
    let Some(recipe::Step::Zlib { children, .. }) =
        bad.steps.iter_mut().find(|s| matches!(s, recipe::Step::Zlib { .. }))
    else {
        panic!("no zlib step in {:?}", bad.steps)
    };
    *children = 1000;
    let bad_steps = bad.clone();
    assert!(Recipe::decode(&bad.encode()).is_err());
    // Lengths that read past the streams give an error, not a panic.
    bad = good.clone();
    for s in &mut bad.steps {
        if let recipe::Step::Large(n) | recipe::Step::Small(n) = s {
            *n += 1 << 40;
        }
    }
    assert!(recipe::recreate(&bad, [0u8; 10].as_slice(), &mut |_| Ok(())).is_err());
    assert!(recipe::recreate(&bad_steps, [0u8; 10].as_slice(), &mut |_| Ok(())).is_err());
}

fn params() -> impl Strategy<Value = Params> {
    let flavor = prop_oneof![Just(Flavor::Stock), Just(Flavor::Chromium)];
    (flavor, 0u8..=9, 9u8..=15, 1u8..=9, 0u8..=4).prop_map(|(flavor, level, wbits, mem_level, strategy)| Params {
        flavor,
        level,
        wbits,
        mem_level,
        strategy,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Archives from zlib at any parameters recreate exactly (through zlib's
    /// search or preflate, or as residual when neither makes them).
    #[test]
    fn random_archives_recreate_exactly(
        seeds in prop::collection::vec((any::<u64>(), 0usize..60_000, params(), any::<bool>()), 1..6),
        outer in params(),
        kind in 0u8..3,
    ) {
        let files: Vec<Vec<u8>> = seeds.iter().map(|(s, n, _, _)| text(*s, *n)).collect();
        let data = match kind {
            0 => {
                let members: Vec<Member> = seeds.iter().zip(&files).enumerate().map(|(i, ((_, _, p, stored), d))| Member {
                    name: format!("m{i}"),
                    data: d,
                    deflate: (!stored).then_some(*p),
                    descriptor: i % 2 == 1,
                }).collect();
                zip(&members, b"")
            }
            1 => {
                let names: Vec<String> = (0..files.len()).map(|i| format!("pkg/f{i}")).collect();
                let members: Vec<(&str, &[u8])> = names.iter().map(|n| n.as_str()).zip(files.iter().map(|f| f.as_slice())).collect();
                gzip(outer, &tar(&members), None)
            }
            _ => gzip(outer, &files[0], Some("x")),
        };
        round_trip(&data, &Budget::default());
    }

    /// A damaged or truncated archive still recreates exactly, as residual
    /// bytes where its structure no longer holds.
    #[test]
    fn damaged_archives_recreate_exactly(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        kind in 0u8..2,
    ) {
        let a = text(1, 30_000);
        let b = text(2, 70_000);
        let mut data = if kind == 0 {
            zip(&[
                Member { name: "a".into(), data: &a, deflate: Some(Params::DEFAULT), descriptor: true },
                Member { name: "b".into(), data: &b, deflate: None, descriptor: false },
            ], b"c")
        } else {
            gzip(Params::DEFAULT, &tar(&[("a", &a), ("b", &b)]), Some("t"))
        };
        for (at, v) in flips {
            let i = at.index(data.len());
            data[i] ^= v;
        }
        data.truncate(cut.index(data.len() + 1));
        round_trip(&data, &Budget::default());
    }
}
