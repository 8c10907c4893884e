//! Version order per ecosystem, for cleanup policies that keep "the newest N"
//! or treat prereleases apart. Pure: strings in, orderings out.
//!
//! Each ecosystem reads a version in its own grammar into a sort key:
//! - npm, Cargo, Conan, Helm, Terraform: SemVer 2.0 (`semver` crate), with an
//!   optional leading `v`.
//! - NuGet, Composer: the same, plus 1-, 2- and 4-part numeric cores (missing
//!   parts are 0; the 4th orders after the patch, so `1.0.0.0` == `1.0.0` <
//!   `1.0.0.1` < `1.0.1`) and case-insensitive labels (`-RC1` == `-rc1`).
//! - PyPI: PEP 440, with the spellings PEP 440 normalises (`1.0-alpha1`,
//!   `1.0-1`, `v1.0`, ...).
//! - Maven: ComparableVersion's items and qualifier order, flattened so the
//!   order is transitive (see [`maven_key`]).
//! - RubyGems: `Gem::Version`.
//! - Debian: dpkg's `[epoch:]upstream[-revision]` and `verrevcmp`.
//! - Container, Generic: [`natural_cmp`].
//!
//! Equivalent spellings compare Equal (`1.0` and `1.0.0` in PyPI, `1` and
//! `1.0-ga` in Maven, SemVer build metadata is ignored); a caller that needs
//! a strict order on the strings chains `.then_with(|| a.cmp(b))`. Versions
//! that don't parse sort before every one that does (among themselves by
//! `natural_cmp`) and are prereleases by the generic keyword rule.

use std::cmp::Ordering;

use crate::catalog::model::PackageType;

/// Compares two version strings in the ecosystem's order (a < b means a is older).
/// Never panics; versions that do not parse in the ecosystem's grammar fall back to `natural_cmp`
/// and sort BEFORE every version that parses (so junk never counts as "newest").
pub fn compare(ty: PackageType, a: &str, b: &str) -> Ordering {
    use PackageType::*;
    match ty {
        Npm | Cargo | Conan | Helm | Terraform => by_key(a, b, |v| semver_key(v, false), Ord::cmp),
        Nuget | Composer => by_key(a, b, |v| semver_key(v, true), Ord::cmp),
        Pypi => by_key(a, b, pep440_key, Ord::cmp),
        Maven => cmp_padded(&maven_key(a), &maven_key(b), &Mvn::Null),
        Rubygems => by_key(a, b, gem_key, |x, y| cmp_padded(x, y, &Gem::Num(Num::default()))),
        Debian => by_key(a, b, deb_key, |x, y| {
            x.0.cmp(&y.0)
                .then_with(|| verrevcmp(x.1, y.1))
                .then_with(|| verrevcmp(x.2, y.2))
        }),
        Container | Generic => natural_cmp(a, b),
    }
}

/// True for prerelease / snapshot / dev versions of that ecosystem.
pub fn is_prerelease(ty: PackageType, v: &str) -> bool {
    use PackageType::*;
    let parsed = match ty {
        Npm | Cargo | Conan | Helm | Terraform => semver_key(v, false).map(|k| !k.pre.is_empty()),
        Nuget | Composer => semver_key(v, true).map(|k| !k.pre.is_empty()),
        Pypi => pep440_key(v).map(|k| k.pre != PyPre::Final || k.dev != PyDev::Release),
        Maven => Some(
            v.trim().to_lowercase().ends_with("snapshot") || maven_key(v).iter().any(|i| matches!(i, Mvn::Pre(0..=3))),
        ),
        // Gem::Version reads `-` as `.pre.`, so `1.0-1` counts too.
        Rubygems => gem_key(v).map(|_| v.bytes().any(|c| c.is_ascii_alphabetic() || c == b'-')),
        Debian => deb_key(v).map(|(_, upstream, _)| upstream.contains('~')),
        Container | Generic => None,
    };
    parsed.unwrap_or_else(|| looks_prerelease(v))
}

/// Natural order: digit runs compared numerically, other runs bytewise; total order, ties broken by bytes.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let class = |c: u8| u8::from(c.is_ascii_digit());
    let (mut x, mut y) = (runs(a.as_bytes(), class), runs(b.as_bytes(), class));
    loop {
        let ord = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(p), Some(q)) => {
                if p.first().is_some_and(u8::is_ascii_digit) && q.first().is_some_and(u8::is_ascii_digit) {
                    let (p, q) = (strip_zeros(p), strip_zeros(q));
                    p.len().cmp(&q.len()).then_with(|| p.cmp(q))
                } else {
                    // A digit run against another run: decided by the first bytes,
                    // so each non-digit run sits wholly below or above all numbers.
                    p.cmp(q)
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

/// Keyed comparison: unparsed versions first, by `natural_cmp`.
fn by_key<'a, K>(
    a: &'a str,
    b: &'a str,
    key: impl Fn(&'a str) -> Option<K>,
    cmp: impl Fn(&K, &K) -> Ordering,
) -> Ordering {
    match (key(a), key(b)) {
        (Some(x), Some(y)) => cmp(&x, &y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => natural_cmp(a, b),
    }
}

/// Lexicographic order of two sequences, the shorter padded with `pad`.
fn cmp_padded<T: Ord>(a: &[T], b: &[T], pad: &T) -> Ordering {
    (0..a.len().max(b.len()))
        .map(|i| a.get(i).unwrap_or(pad).cmp(b.get(i).unwrap_or(pad)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// The generic rule: a prerelease word anywhere, or `-` then a letter.
fn looks_prerelease(v: &str) -> bool {
    let v = v.to_ascii_lowercase();
    ["alpha", "beta", "rc", "pre", "dev", "snapshot", "nightly"]
        .iter()
        .any(|w| v.contains(w))
        || v.as_bytes()
            .windows(2)
            .any(|w| matches!(w, [b'-', c] if c.is_ascii_alphabetic()))
}

/// Maximal runs of bytes of the same `class`; never empty.
fn runs(s: &[u8], class: impl Fn(u8) -> u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = class(*rest.first()?);
        let n = rest.iter().take_while(|&&c| class(c) == first).count();
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

fn strip_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    d.get(n..).unwrap_or_default()
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// A non-negative integer of any size: its digits without leading zeros, so
/// (length, digits) orders numerically. The default is zero.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Num {
    len: usize,
    digits: Vec<u8>,
}

impl Num {
    /// `d` holds ASCII digits only.
    fn new(d: &[u8]) -> Self {
        let d = strip_zeros(d);
        Num {
            len: d.len(),
            digits: d.to_vec(),
        }
    }

    fn is_zero(&self) -> bool {
        self.len == 0
    }
}

fn trim_end<T>(v: &mut Vec<T>, null: impl Fn(&T) -> bool) {
    while v.last().is_some_and(&null) {
        v.pop();
    }
}

// --- SemVer ---------------------------------------------------------------

/// SemVer precedence: the numeric core (a 4th part only for NuGet/Composer),
/// then the prerelease; build metadata is ignored.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SemKey {
    core: [u64; 4],
    pre: semver::Prerelease,
}

/// `loose` (NuGet, Composer): 1 to 4 numeric parts, leading zeros allowed, labels lowercased.
fn semver_key(v: &str, loose: bool) -> Option<SemKey> {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    if !loose {
        let p = semver::Version::parse(v).ok()?;
        return Some(SemKey {
            core: [p.major, p.minor, p.patch, 0],
            pre: p.pre,
        });
    }
    let v = v.to_ascii_lowercase();
    let rest = match v.split_once('+') {
        Some((rest, build)) => semver::BuildMetadata::new(build).map(|_| rest).ok()?,
        None => &v,
    };
    let (core, pre) = match rest.split_once('-') {
        Some((_, "")) => return None,
        Some((core, pre)) => (core, semver::Prerelease::new(pre).ok()?),
        None => (rest, semver::Prerelease::EMPTY),
    };
    let mut nums = [0u64; 4];
    for (i, part) in core.split('.').enumerate() {
        let slot = nums.get_mut(i)?;
        if !all_digits(part) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    Some(SemKey { core: nums, pre })
}

// --- PEP 440 --------------------------------------------------------------

/// Pre-release slot: a dev release of the final (`1.0.dev0`) sorts before its
/// alphas; no pre-release sorts after all of them.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PyPre {
    DevOnly,
    /// (0 = a, 1 = b, 2 = rc, number).
    Pre(u8, Num),
    Final,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PyDev {
    Dev(Num),
    Release,
}

/// A local segment: numbers sort after words.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PyLocal {
    Word(Vec<u8>),
    Num(Num),
}

/// The fields in PEP 440's order of precedence (`packaging`'s `_cmpkey`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pep440 {
    epoch: Num,
    /// Trailing zeros dropped: `1.0` == `1`.
    release: Vec<Num>,
    pre: PyPre,
    post: Option<Num>,
    dev: PyDev,
    local: Option<Vec<PyLocal>>,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn eat_sep(&mut self) {
        self.i += usize::from(matches!(self.s.get(self.i), Some(b'-' | b'_' | b'.')));
    }

    /// The first word of `table` found here, consumed.
    fn eat_word<T: Copy>(&mut self, table: &[(&str, T)]) -> Option<T> {
        let rest = self.s.get(self.i..)?;
        let &(w, t) = table.iter().find(|(w, _)| rest.starts_with(w.as_bytes()))?;
        self.i += w.len();
        Some(t)
    }

    fn run(&mut self, ok: impl Fn(u8) -> bool) -> Option<&[u8]> {
        let rest = self.s.get(self.i..)?;
        let n = rest.iter().take_while(|&&c| ok(c)).count();
        self.i += n;
        rest.get(..n).filter(|r| !r.is_empty())
    }

    fn num(&mut self) -> Option<Num> {
        self.run(|c| c.is_ascii_digit()).map(Num::new)
    }

    /// The `[-_.]?[0-9]*` after a label: both optional (`1.0a.` is `1.0a0`).
    fn label_num(&mut self) -> Num {
        self.eat_sep();
        self.num().unwrap_or_default()
    }
}

fn pep440_key(v: &str) -> Option<Pep440> {
    let v = v.trim().to_ascii_lowercase();
    let mut c = Cursor { s: v.as_bytes(), i: 0 };
    c.eat(b'v');
    let mut first = c.num()?;
    let epoch = if c.eat(b'!') {
        std::mem::replace(&mut first, c.num()?)
    } else {
        Num::default()
    };
    let mut release = vec![first];
    loop {
        let at = c.i;
        match c.eat(b'.').then(|| c.num()).flatten() {
            Some(n) => release.push(n),
            None => {
                c.i = at;
                break;
            }
        }
    }
    trim_end(&mut release, Num::is_zero);

    let at = c.i;
    c.eat_sep();
    const PRE: [(&str, u8); 8] = [
        ("alpha", 0),
        ("a", 0),
        ("beta", 1),
        ("b", 1),
        ("preview", 2),
        ("pre", 2),
        ("rc", 2),
        ("c", 2),
    ];
    let pre = c.eat_word(&PRE).map(|k| (k, c.label_num()));
    if pre.is_none() {
        c.i = at;
    }

    let at = c.i;
    let post = if c.eat(b'-')
        && let Some(n) = c.num()
    {
        Some(n) // `1.0-1` is `1.0.post1`
    } else {
        c.i = at;
        c.eat_sep();
        let post = c
            .eat_word(&[("post", ()), ("rev", ()), ("r", ())])
            .map(|()| c.label_num());
        if post.is_none() {
            c.i = at;
        }
        post
    };

    let at = c.i;
    c.eat_sep();
    let dev = c.eat_word(&[("dev", ())]).map(|()| c.label_num());
    if dev.is_none() {
        c.i = at;
    }

    let local = if c.eat(b'+') {
        let mut segs = Vec::new();
        loop {
            let seg = c.run(|c| c.is_ascii_alphanumeric())?;
            segs.push(if seg.iter().all(u8::is_ascii_digit) {
                PyLocal::Num(Num::new(seg))
            } else {
                PyLocal::Word(seg.to_vec())
            });
            if !matches!(c.s.get(c.i), Some(b'-' | b'_' | b'.')) {
                break;
            }
            c.eat_sep();
        }
        Some(segs)
    } else {
        None
    };
    if c.i != c.s.len() {
        return None;
    }

    let pre = match (pre, &post, &dev) {
        (Some((k, n)), _, _) => PyPre::Pre(k, n),
        (None, None, Some(_)) => PyPre::DevOnly,
        (None, _, _) => PyPre::Final,
    };
    let dev = dev.map_or(PyDev::Release, PyDev::Dev);
    Some(Pep440 {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

// --- Maven ----------------------------------------------------------------

/// One item of a flattened Maven version. The derived order is the whole
/// comparison: the prerelease qualifiers (alpha, beta, milestone, rc = cr,
/// snapshot), then `Null` (the release qualifier `""` = ga = final = release,
/// a sublist start, and the padding past the end), sp, unknown qualifiers
/// (lexically), numbers.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mvn {
    Pre(u8),
    Null,
    Sp,
    Other(String),
    Num(Num),
}

impl Mvn {
    fn is_null(&self) -> bool {
        match self {
            Mvn::Null => true,
            Mvn::Num(n) => n.is_zero(),
            _ => false,
        }
    }
}

/// ComparableVersion's item tree, flattened to one sequence compared with
/// `Null` padding. Items split at `.`, `-` and digit/letter changes; a `-`, a
/// change, or a qualifier after `.` (`1.0.Final` reads as `1.0-Final`) opens a
/// sublist, which is always its parent's last item; trailing nulls of every
/// list are dropped (`1.0-sp` == `1-sp`, `1.0.0` == `1`). A sublist start is
/// written `Null`: below numbers (`1-1` < `1.0.1`), equal to the end
/// (`1-1` > `1`). Maven's own order is not transitive when sublists meet
/// qualifiers at one position (`1-alpha`, `1.sp.1`, `1`); this one is.
fn maven_key(v: &str) -> Vec<Mvn> {
    let v = v.trim().to_lowercase();
    let mut levels: Vec<Vec<Mvn>> = vec![Vec::new()];
    let mut tok = String::new();
    let mut digit = false;
    for c in v.chars() {
        if c == '.' || c == '-' {
            maven_push(&mut levels, &tok, digit, false);
            tok.clear();
            if c == '-' {
                levels.push(Vec::new());
            }
            continue;
        }
        let is_digit = c.is_ascii_digit();
        if !tok.is_empty() && is_digit != digit {
            maven_push(&mut levels, &tok, digit, is_digit);
            tok.clear();
            levels.push(Vec::new());
        }
        digit = is_digit;
        tok.push(c);
    }
    if !tok.is_empty() {
        maven_push(&mut levels, &tok, digit, false);
    }
    for level in &mut levels {
        trim_end(level, Mvn::is_null);
    }
    while levels.len() > 1 && levels.last().is_some_and(Vec::is_empty) {
        levels.pop();
    }
    let mut out = Vec::new();
    for (i, level) in levels.into_iter().enumerate() {
        if i > 0 {
            out.push(Mvn::Null);
        }
        out.extend(level);
    }
    out
}

/// Adds one item; an empty one (`1..2`, `-1`) is a 0, as in Maven.
fn maven_push(levels: &mut Vec<Vec<Mvn>>, tok: &str, digit: bool, followed_by_digit: bool) {
    let item = if tok.is_empty() || digit {
        Mvn::Num(Num::new(tok.as_bytes()))
    } else {
        if levels.last().is_some_and(|l| !l.is_empty()) {
            levels.push(Vec::new());
        }
        // `a1`, `b1`, `m1`: short forms only right before a digit.
        let q = match (tok, followed_by_digit) {
            ("a", true) => "alpha",
            ("b", true) => "beta",
            ("m", true) => "milestone",
            (q, _) => q,
        };
        match q {
            "alpha" => Mvn::Pre(0),
            "beta" => Mvn::Pre(1),
            "milestone" => Mvn::Pre(2),
            "rc" | "cr" => Mvn::Pre(3),
            "snapshot" => Mvn::Pre(4),
            "ga" | "final" | "release" => Mvn::Null,
            "sp" => Mvn::Sp,
            q => Mvn::Other(q.to_owned()),
        }
    };
    if let Some(level) = levels.last_mut() {
        level.push(item);
    }
}

// --- RubyGems -------------------------------------------------------------

/// A `Gem::Version` segment: letters sort before numbers, bytewise.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Gem {
    Str(Vec<u8>),
    Num(Num),
}

/// `Gem::Version#canonical_segments`, compared with 0 padding.
fn gem_key(v: &str) -> Option<Vec<Gem>> {
    let v = v.trim();
    let (release, pre) = v.split_once('-').map_or((v, None), |(r, p)| (r, Some(p)));
    let mut parts = release.split('.');
    let valid = parts.next().is_some_and(all_digits)
        && parts.all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric()))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        });
    if !valid {
        return None;
    }
    // A `-` reads as `.pre.`; other separators only split.
    let class = |c: u8| {
        if c.is_ascii_digit() {
            0
        } else if c.is_ascii_alphabetic() {
            1
        } else {
            2
        }
    };
    let mut segs = Vec::new();
    for run in runs(v.as_bytes(), class) {
        match run.first().copied().map(class) {
            Some(0) => segs.push(Gem::Num(Num::new(run))),
            Some(1) => segs.push(Gem::Str(run.to_vec())),
            _ => segs.extend(run.iter().filter(|&&c| c == b'-').map(|_| Gem::Str(b"pre".to_vec()))),
        }
    }
    // Trailing zeros go from the numeric part and from the rest separately.
    let split = segs.iter().position(|s| matches!(s, Gem::Str(_))).unwrap_or(segs.len());
    let mut rest = segs.split_off(split);
    let zero = |s: &Gem| matches!(s, Gem::Num(n) if n.is_zero());
    trim_end(&mut segs, zero);
    trim_end(&mut rest, zero);
    segs.extend(rest);
    Some(segs)
}

// --- Debian ---------------------------------------------------------------

/// `[epoch:]upstream[-revision]`, checked as dpkg's parseversion does.
fn deb_key(v: &str) -> Option<(Num, &str, &str)> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (all_digits(e).then(|| Num::new(e.as_bytes()))?, rest),
        None => (Num::default(), v),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    let valid = upstream.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && upstream
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~-:".contains(&c))
        && (revision.is_empty() != rest.contains('-'))
        && revision
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c));
    valid.then_some((epoch, upstream, revision))
}

/// dpkg's `verrevcmp`: alternating non-digit parts (`~` before the end, before
/// letters, before other characters) and numeric parts.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    fn order(c: Option<&u8>) -> i32 {
        match c {
            None => 0,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(*c),
            Some(b'~') => -1,
            Some(c) => i32::from(*c) + 256,
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let non_digit = |c: Option<&u8>| c.is_some_and(|c| !c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while non_digit(a.get(i)) || non_digit(b.get(j)) {
            let (x, y) = (order(a.get(i)), order(b.get(j)));
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while let (Some(x), Some(y)) = (
            a.get(i).filter(|c| c.is_ascii_digit()),
            b.get(j).filter(|c| c.is_ascii_digit()),
        ) {
            first_diff = first_diff.then(x.cmp(y));
            i += 1;
            j += 1;
        }
        if a.get(i).is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_diff.is_ne() {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use PackageType::*;
    use proptest::prelude::*;

    const ALL: [PackageType; 13] = [
        Npm, Maven, Pypi, Nuget, Rubygems, Cargo, Conan, Composer, Helm, Terraform, Debian, Container, Generic,
    ];

    /// Every pair in `vs` is strictly ascending, both ways round.
    #[track_caller]
    fn ascending(ty: PackageType, vs: &[&str]) {
        for (i, a) in vs.iter().enumerate() {
            for b in &vs[i + 1..] {
                assert_eq!(compare(ty, a, b), Ordering::Less, "{ty:?}: {a} < {b}");
                assert_eq!(compare(ty, b, a), Ordering::Greater, "{ty:?}: {b} > {a}");
            }
        }
    }

    #[track_caller]
    fn equal(ty: PackageType, vs: &[&str]) {
        for a in vs {
            for b in vs {
                assert_eq!(compare(ty, a, b), Ordering::Equal, "{ty:?}: {a} == {b}");
            }
        }
    }

    #[track_caller]
    fn prerelease(ty: PackageType, yes: &[&str], no: &[&str]) {
        for v in yes {
            assert!(is_prerelease(ty, v), "{ty:?}: {v} is a prerelease");
        }
        for v in no {
            assert!(!is_prerelease(ty, v), "{ty:?}: {v} is a release");
        }
    }

    #[test]
    fn semver_ecosystems() {
        for ty in [Npm, Cargo, Conan, Helm, Terraform, Nuget, Composer] {
            ascending(
                ty,
                &[
                    "1.0.0-alpha",
                    "1.0.0-alpha.1",
                    "1.0.0-alpha.beta",
                    "1.0.0-beta",
                    "1.0.0-beta.2",
                    "1.0.0-beta.11",
                    "1.0.0-rc.1",
                    "1.0.0",
                    "1.0.1",
                    "1.10.0",
                    "v2.0.0",
                ],
            );
            equal(ty, &["1.0.0", "v1.0.0", "1.0.0+build.5", " 1.0.0 "]);
            prerelease(ty, &["1.0.0-alpha", "v2.0.0-rc.1"], &["1.0.0", "1.0.0+build.1"]);
        }
        // Strict grammar: a 2-part version is not SemVer, so sorts below all that are.
        ascending(Npm, &["1.0", "latest", "0.0.1"]);
    }

    #[test]
    fn nuget_and_composer_cores() {
        for ty in [Nuget, Composer] {
            equal(ty, &["1", "1.0", "1.0.0", "1.0.0.0", "V1.0.0"]);
            ascending(ty, &["1.0.0-beta", "1.0.0-RC1", "1.0.0", "1.0.0.1", "1.0.1", "01.2"]);
            equal(ty, &["1.0.0-rc1", "1.0.0-RC1"]);
            ascending(ty, &["1.0.0.0.0", "dev-master", "0.0.1"]);
            prerelease(ty, &["1.0.0.1-beta", "dev-master"], &["1.0.0.1"]);
        }
    }

    #[test]
    fn pypi() {
        ascending(
            Pypi,
            &["1.0.dev0", "1.0a1", "1.0b2", "1.0rc1", "1.0", "1.0.post1", "1.1"],
        );
        equal(Pypi, &["1.0", "1.0.0", "1", "v1.0", "0!1.0"]);
        ascending(Pypi, &["2.0", "1!0.1"]);
        // PEP 440's own example order.
        ascending(
            Pypi,
            &[
                "1.dev0",
                "1.0.dev456",
                "1.0a1",
                "1.0a2.dev456",
                "1.0a12.dev456",
                "1.0a12",
                "1.0b1.dev456",
                "1.0b2",
                "1.0b2.post345.dev456",
                "1.0b2.post345",
                "1.0rc1.dev456",
                "1.0rc1",
                "1.0",
                "1.0+abc.5",
                "1.0+abc.7",
                "1.0+5",
                "1.0.post456.dev34",
                "1.0.post456",
                "1.0.15",
                "1.1.dev1",
            ],
        );
        // Normalised spellings.
        equal(Pypi, &["1.0a1", "1.0-alpha1", "1.0.ALPHA.1", "1.0a_1"]);
        equal(Pypi, &["1.0rc1", "1.0c1", "1.0-pre1", "1.0preview1"]);
        equal(Pypi, &["1.0.post1", "1.0-1", "1.0post1", "1.0-r1", "1.0.rev1"]);
        equal(Pypi, &["1.0.dev0", "1.0dev", "1.0-dev0", "1.0.dev."]);
        equal(Pypi, &["1.0a0", "1.0a", "1.0-a."]);
        equal(Pypi, &["1.0+ubuntu.1", "1.0+ubuntu-1", "1.0+Ubuntu_1"]);
        ascending(Pypi, &["1.0+", "1.0foo", "0.0.1"]);
        prerelease(
            Pypi,
            &["1.0a1", "1.0.dev0", "1.0rc1", "1.0.post1.dev1"],
            &["1.0", "1.0.post1", "1!2.0", "1.0+local"],
        );
    }

    #[test]
    fn maven() {
        ascending(Maven, &["1-SNAPSHOT", "1", "1.0.1"]);
        ascending(
            Maven,
            &[
                "1.0-alpha-1",
                "1.0-alpha-2",
                "1.0-alpha-10",
                "1.0-beta",
                "1.0-milestone-1",
                "1.0-rc1",
                "1.0-SNAPSHOT",
                "1.0",
                "1.0-sp",
                "1.0-sp-1",
                "1.0-foo",
                "1.0-zzz",
                "1.0-1",
                "1.0.1",
                "1.9",
                "1.10",
            ],
        );
        equal(
            Maven,
            &["1", "1.0", "1.0.0", "1.0-ga", "1.0.final", "1.0.0.RELEASE", "1-"],
        );
        equal(Maven, &["1.0-alpha-1", "1.0-a1", "1.0alpha1", "1.0.ALPHA1"]);
        equal(Maven, &["1.0-rc1", "1.0-cr1", "1.0.RC1", "1.0rc1"]);
        equal(Maven, &["1.0-sp", "1-sp"]);
        // `a` not followed by a digit is an unknown qualifier.
        ascending(Maven, &["1.0", "1.0-a", "1.0.1"]);
        prerelease(
            Maven,
            &[
                "1.0-SNAPSHOT",
                "1.0-alpha-1",
                "1.0-M1",
                "1.0.RC2",
                "1.0-cr1",
                "2.0b1",
                "1.0-beta",
            ],
            &["1.0", "1.0-sp1", "1.0.Final", "1.0-a", "1.0-1"],
        );
    }

    #[test]
    fn rubygems() {
        ascending(
            Rubygems,
            &[
                "1.0.a", "1.0.b", "1.0.b1", "1.0.pre", "1.0.rc1", "1.0", "1.0.1", "1.1", "1.10",
            ],
        );
        equal(Rubygems, &["1", "1.0", "1.0.0"]);
        equal(Rubygems, &["1.0-beta", "1.0.pre.beta"]);
        equal(Rubygems, &["1.0.a", "1.a"]);
        ascending(Rubygems, &["1.0 beta", "a.1", "0.1"]);
        prerelease(Rubygems, &["1.0.a", "1.0-1", "2.0.0.rc1"], &["1.0", "1.0.1"]);
    }

    #[test]
    fn debian() {
        ascending(Debian, &["1.0~rc1", "1.0", "1.0-1", "1:0.1"]);
        ascending(
            Debian,
            &["1.0~~", "1.0~", "1.0", "1.0a", "1.0+b1", "1.0.1", "1.2", "1.10"],
        );
        ascending(Debian, &["1.0-1", "1.0-1ubuntu1", "1.0-2", "1.0-10"]);
        equal(Debian, &["1.0", "0:1.0", "1.0-0", "01.0"]);
        ascending(Debian, &["1.0-", "abc", "x:1", "0"]);
        prerelease(Debian, &["1.0~rc1", "2:3~beta-1"], &["1.0", "1.0-1~bpo1"]);
    }

    #[test]
    fn container_and_generic() {
        for ty in [Container, Generic] {
            ascending(ty, &["1.0", "1.00", "1.2", "1.10", "latest"]);
            ascending(ty, &["v1.2", "v1.10"]);
            prerelease(
                ty,
                &["1.0-rc1", "1.0-alpine", "nightly-2024", "2.0.0-SNAPSHOT", "1.0.Beta"],
                &["1.2.3", "20240101", "v1.0", "1.0-1"],
            );
        }
    }

    #[test]
    fn natural_order() {
        let vs = ["", "0", "a01", "a1", "a2", "a10", "a10b", "b"];
        for (i, a) in vs.iter().enumerate() {
            for b in &vs[i + 1..] {
                assert_eq!(natural_cmp(a, b), Ordering::Less, "{a} < {b}");
                assert_eq!(natural_cmp(b, a), Ordering::Greater, "{b} > {a}");
            }
        }
        assert_eq!(
            natural_cmp("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
    }

    /// Strings made of version-ish pieces, so that random ones often collide.
    fn version_like() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "0", "1", "2", "9", "10", "007", ".", ".", "-", "-", "+", "~", ":", "!", "_", "v", "a", "b", "c", "m",
            "alpha", "beta", "rc", "cr", "pre", "dev", "post", "sp", "snapshot", "final", "ga", "x", "Z",
        ]);
        prop_oneof![
            4 => prop::collection::vec(piece, 0..8).prop_map(|p| p.concat()),
            2 => "[vV]?[0-9]{1,2}(\\.[0-9]{1,2}){0,3}(-[a-z0-9.]{1,6})?(\\+[a-z0-9]{1,3})?",
            1 => "\\PC{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn compare_is_a_total_order(vs in prop::collection::vec(version_like(), 0..16)) {
            for ty in ALL {
                for a in &vs {
                    prop_assert_eq!(compare(ty, a, a), Ordering::Equal);
                    for b in &vs {
                        prop_assert_eq!(compare(ty, a, b), compare(ty, b, a).reverse(), "{:?}: {} vs {}", ty, a, b);
                        for c in &vs {
                            if compare(ty, a, b).is_le() && compare(ty, b, c).is_le() {
                                prop_assert!(compare(ty, a, c).is_le(), "{:?}: {} <= {} <= {}", ty, a, b, c);
                            }
                        }
                    }
                    let _ = is_prerelease(ty, a);
                }
                let mut sorted = vs.clone();
                sorted.sort_by(|a, b| compare(ty, a, b));
                for (i, a) in sorted.iter().enumerate() {
                    for b in &sorted[i + 1..] {
                        prop_assert!(compare(ty, a, b).is_le(), "{:?}: sorted {:?}", ty, sorted);
                    }
                }
                let mut again = sorted.clone();
                again.sort_by(|a, b| compare(ty, a, b));
                prop_assert_eq!(&again, &sorted);
            }
        }

        #[test]
        fn natural_cmp_is_a_strict_total_order(vs in prop::collection::vec(version_like(), 0..16)) {
            for a in &vs {
                for b in &vs {
                    prop_assert_eq!(natural_cmp(a, b).is_eq(), a == b);
                    prop_assert_eq!(natural_cmp(a, b), natural_cmp(b, a).reverse());
                }
            }
            let mut sorted = vs.clone();
            sorted.sort_by(|a, b| natural_cmp(a, b));
            for w in sorted.windows(2) {
                prop_assert!(natural_cmp(&w[0], &w[1]).is_lt() || w[0] == w[1]);
            }
        }
    }
}
