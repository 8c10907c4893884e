//! A safe wrapper over stock zlib (the `libz-sys` crate, built from its
//! bundled source and pinned by version) and over Chromium's zlib (vendored
//! in `vendor/chromium-zlib`, built by `build.rs`): raw deflate with every
//! parameter zlib has, by either, and a bounded raw inflate (stock).
//!
//! The exact compressor is the point: a deflate stream is recreated by
//! running the same compressor with the same parameters, and zlib-ng,
//! zlib-rs and miniz_oxide make different streams from the same input.
//! Chromium's fork is the one Node.js ships, so it made the streams of npm
//! tarballs; its deflate hashes four bytes where stock zlib rolls three, and
//! its streams differ from stock zlib's at every level. Both are pinned:
//! stock in Cargo.toml (`=`), [`version`] recorded in every recipe; Chromium's
//! by its vendored files; a golden test per compressor
//! (`golden_streams_are_stable`, `golden_chromium_streams_are_stable`) fails
//! if an upgrade changes their output.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::mem::MaybeUninit;

use libz_sys as z;

/// Which zlib makes a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Stock zlib (madler), as Python, Java, cargo, most zip tools use.
    Stock,
    /// Chromium's zlib 1.3.0.1, as Node.js 22 (and npm) uses.
    Chromium,
}

// Chromium's zlib, built by build.rs; `chromeconf.h` gives every symbol the
// `Cr_z_` prefix. Its `z_stream` is zlib's, field for field.
unsafe extern "C" {
    fn Cr_z_deflateInit2_(
        strm: z::z_streamp,
        level: c_int,
        method: c_int,
        window_bits: c_int,
        mem_level: c_int,
        strategy: c_int,
        version: *const c_char,
        stream_size: c_int,
    ) -> c_int;
    fn Cr_z_deflate(strm: z::z_streamp, flush: c_int) -> c_int;
    fn Cr_z_deflateEnd(strm: z::z_streamp) -> c_int;
    fn Cr_z_zlibVersion() -> *const c_char;
}

/// The compressor entry points of one flavor.
struct Api {
    init: unsafe extern "C" fn(z::z_streamp, c_int, c_int, c_int, c_int, c_int, *const c_char, c_int) -> c_int,
    deflate: unsafe extern "C" fn(z::z_streamp, c_int) -> c_int,
    end: unsafe extern "C" fn(z::z_streamp) -> c_int,
    version: unsafe extern "C" fn() -> *const c_char,
}

impl Flavor {
    fn api(self) -> Api {
        match self {
            Flavor::Stock => Api {
                init: z::deflateInit2_,
                deflate: z::deflate,
                end: z::deflateEnd,
                version: z::zlibVersion,
            },
            Flavor::Chromium => Api {
                init: Cr_z_deflateInit2_,
                deflate: Cr_z_deflate,
                end: Cr_z_deflateEnd,
                version: Cr_z_zlibVersion,
            },
        }
    }

    /// The version string of this zlib, for example "1.3.2".
    pub fn version(self) -> &'static str {
        // SAFETY: zlibVersion returns a pointer to a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.api().version)()) }
            .to_str()
            .unwrap_or("?")
    }
}

/// The compressor's knobs, as `deflateInit2` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    pub flavor: Flavor,
    /// 0..=9. Level 0 streams depend on how the input is fed (stored
    /// blocks end where a piece of input ends), so recipes never use it.
    pub level: u8,
    /// Window bits of the raw stream, 9..=15 (zlib turns 8 into 9).
    pub wbits: u8,
    /// 1..=9.
    pub mem_level: u8,
    /// 0 default, 1 filtered, 2 huffman only, 3 rle, 4 fixed.
    pub strategy: u8,
}

impl Params {
    pub const DEFAULT: Params = Params {
        flavor: Flavor::Stock,
        level: 6,
        wbits: 15,
        mem_level: 8,
        strategy: 0,
    };

    pub fn is_valid(&self) -> bool {
        self.level <= 9 && (9..=15).contains(&self.wbits) && (1..=9).contains(&self.mem_level) && self.strategy <= 4
    }
}

/// The version string of stock zlib, for example "1.3.2".
pub fn version() -> &'static str {
    Flavor::Stock.version()
}

extern "C" fn zalloc(_: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    let Some(n) = (items as usize).checked_mul(size as usize) else {
        return std::ptr::null_mut();
    };
    // SAFETY: malloc with a size; zlib checks for null.
    unsafe { libc::malloc(n) }
}

extern "C" fn zfree(_: *mut c_void, p: *mut c_void) {
    // SAFETY: p came from zalloc (malloc) or is null.
    unsafe { libc::free(p) }
}

fn new_stream() -> Box<MaybeUninit<z::z_stream>> {
    let mut s = Box::new(MaybeUninit::<z::z_stream>::zeroed());
    // SAFETY: writing the allocator fields of a zeroed struct; every other
    // field of z_stream is an integer or a nullable raw pointer, for which
    // zero is valid.
    unsafe {
        let p = s.as_mut_ptr();
        std::ptr::addr_of_mut!((*p).zalloc).write(zalloc);
        std::ptr::addr_of_mut!((*p).zfree).write(zfree);
        std::ptr::addr_of_mut!((*p).opaque).write(std::ptr::null_mut());
    }
    s
}

/// A raw deflate compressor that is fed input in pieces and hands output
/// back as it is made. zlib's output without flushes does not depend on how
/// the input is split, so a stream can be checked against the original as it
/// is made, and rejected at the first differing byte.
pub struct Deflater {
    strm: Box<MaybeUninit<z::z_stream>>,
    api: Api,
    finished: bool,
}

// SAFETY: the z_stream is owned and only touched through &mut self.
unsafe impl Send for Deflater {}

impl Deflater {
    pub fn new(p: Params) -> Option<Deflater> {
        if !p.is_valid() {
            return None;
        }
        let mut strm = new_stream();
        let api = p.flavor.api();
        // SAFETY: strm is a valid, initialised-enough z_stream for init, of
        // the layout both flavors declare.
        let rc = unsafe {
            (api.init)(
                strm.as_mut_ptr(),
                p.level as c_int,
                z::Z_DEFLATED,
                -(p.wbits as c_int),
                p.mem_level as c_int,
                p.strategy as c_int,
                (api.version)(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        (rc == z::Z_OK).then_some(Deflater {
            strm,
            api,
            finished: false,
        })
    }

    /// Compresses `input` (all of it), appending what zlib emits to `out`.
    /// `finish` ends the stream.
    pub fn push(&mut self, mut input: &[u8], finish: bool, out: &mut Vec<u8>) {
        assert!(!self.finished, "deflater used after finish");
        let flush = if finish { z::Z_FINISH } else { z::Z_NO_FLUSH };
        loop {
            if out.capacity() - out.len() < 16 * 1024 {
                out.reserve(64 * 1024);
            }
            let take = input.len().min(c_uint::MAX as usize);
            let spare = (out.capacity() - out.len()).min(c_uint::MAX as usize);
            // SAFETY: next_in/next_out point into live buffers of the stated
            // lengths; zlib writes at most avail_out bytes into the spare
            // capacity, and we set the length to what it wrote.
            let (rc, used, made) = unsafe {
                let s = &mut *self.strm.as_mut_ptr();
                s.next_in = input.as_ptr() as *mut u8;
                s.avail_in = take as c_uint;
                s.next_out = out.as_mut_ptr().add(out.len());
                s.avail_out = spare as c_uint;
                let last = if take == input.len() { flush } else { z::Z_NO_FLUSH };
                let rc = (self.api.deflate)(s, last);
                (rc, take - s.avail_in as usize, spare - s.avail_out as usize)
            };
            // SAFETY: zlib initialised `made` bytes past the old length.
            unsafe { out.set_len(out.len() + made) };
            input = &input[used..];
            match rc {
                z::Z_STREAM_END => {
                    self.finished = true;
                    return;
                }
                z::Z_OK | z::Z_BUF_ERROR => {
                    // Z_BUF_ERROR: no progress possible, which with input
                    // consumed and no finish means zlib wants more input.
                    let out_full = made == spare;
                    if input.is_empty() && !finish && !out_full {
                        return;
                    }
                }
                rc => panic!("zlib deflate returned {rc}"),
            }
        }
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by this flavor's deflateInit2_.
        unsafe { (self.api.end)(self.strm.as_mut_ptr()) };
    }
}

/// Compresses `data` in one go.
pub fn deflate(p: Params, data: &[u8]) -> Vec<u8> {
    let mut d = Deflater::new(p).expect("valid zlib parameters");
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    d.push(data, true, &mut out);
    out
}

/// What a raw inflate found.
#[derive(Debug)]
pub struct Inflated {
    pub plain: Vec<u8>,
    /// How many bytes of the input the deflate stream took.
    pub consumed: usize,
}

/// Inflates one raw deflate stream at the start of `input`. None when the
/// bytes are not a whole deflate stream, or when it would expand to more than
/// `limit` bytes.
pub fn inflate(input: &[u8], limit: usize) -> Option<Inflated> {
    let mut strm = new_stream();
    // SAFETY: as for deflateInit2_.
    let rc = unsafe {
        z::inflateInit2_(
            strm.as_mut_ptr(),
            -15,
            z::zlibVersion(),
            std::mem::size_of::<z::z_stream>() as c_int,
        )
    };
    if rc != z::Z_OK {
        return None;
    }
    struct End(Box<MaybeUninit<z::z_stream>>);
    impl Drop for End {
        fn drop(&mut self) {
            // SAFETY: initialised by inflateInit2_.
            unsafe { z::inflateEnd(self.0.as_mut_ptr()) };
        }
    }
    let mut strm = End(strm);
    let mut plain: Vec<u8> = Vec::with_capacity((input.len() * 3).min(limit).max(1024));
    let mut pos = 0usize;
    loop {
        if plain.capacity() == plain.len() {
            if plain.len() >= limit {
                return None;
            }
            let grow = plain.len().max(64 * 1024).min(limit - plain.len());
            plain.reserve_exact(grow);
        }
        let avail_in = (input.len() - pos).min(c_uint::MAX as usize);
        let spare = (plain.capacity() - plain.len())
            .min(limit - plain.len())
            .min(c_uint::MAX as usize);
        if spare == 0 {
            return None;
        }
        // SAFETY: as in Deflater::push.
        let (rc, used, made) = unsafe {
            let s = &mut *strm.0.as_mut_ptr();
            s.next_in = input.as_ptr().add(pos) as *mut u8;
            s.avail_in = avail_in as c_uint;
            s.next_out = plain.as_mut_ptr().add(plain.len());
            s.avail_out = spare as c_uint;
            let rc = z::inflate(s, z::Z_NO_FLUSH);
            (rc, avail_in - s.avail_in as usize, spare - s.avail_out as usize)
        };
        // SAFETY: zlib initialised `made` bytes.
        unsafe { plain.set_len(plain.len() + made) };
        pos += used;
        match rc {
            z::Z_STREAM_END => return Some(Inflated { plain, consumed: pos }),
            z::Z_OK => {}
            z::Z_BUF_ERROR if made == 0 && used == 0 => {
                // No progress: the input ended inside the stream, or the
                // output limit is reached.
                if pos == input.len() || plain.len() >= limit {
                    return None;
                }
            }
            z::Z_BUF_ERROR => {}
            _ => return None,
        }
    }
}

/// CRC-32 as gzip and zip use it.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = crc as z::uLong;
    for piece in data.chunks(c_uint::MAX as usize) {
        // SAFETY: pointer and length of a live slice.
        c = unsafe { z::crc32(c, piece.as_ptr(), piece.len() as c_uint) };
    }
    c as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        let mut x = 12345u32;
        for i in 0..200_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let word = ["alpha ", "beta ", "gamma ", "delta ", "\n"][(x >> 28) as usize % 5];
            v.extend_from_slice(word.as_bytes());
            if i % 7 == 0 {
                v.push((x >> 8) as u8);
            }
        }
        v
    }

    #[test]
    fn deflate_inflate_round_trip_and_split_input_gives_the_same_stream() {
        let data = sample();
        // Level 0 (stored blocks) is the exception: its blocks follow the
        // input's pieces, so it is never a search candidate.
        let all = (1..=9).flat_map(|l| (0..=4).map(move |s| (l, s)));
        for (flavor, (level, strategy)) in [Flavor::Stock, Flavor::Chromium]
            .into_iter()
            .flat_map(|f| all.clone().map(move |ls| (f, ls)))
        {
            let p = Params {
                flavor,
                level,
                strategy,
                ..Params::DEFAULT
            };
            let whole = deflate(p, &data);
            let mut d = Deflater::new(p).unwrap();
            let mut pieces = Vec::new();
            for c in data.chunks(777) {
                d.push(c, false, &mut pieces);
            }
            d.push(&[], true, &mut pieces);
            assert_eq!(whole, pieces, "{flavor:?} level {level} strategy {strategy}");
            let back = inflate(&whole, data.len()).unwrap();
            assert_eq!(back.plain, data);
            assert_eq!(back.consumed, whole.len());
        }
    }

    #[test]
    fn inflate_refuses_past_its_limit_and_on_truncation() {
        let data = sample();
        let z = deflate(Params::DEFAULT, &data);
        assert!(inflate(&z, data.len() - 1).is_none());
        assert!(inflate(&z[..z.len() / 2], usize::MAX).is_none());
        assert!(inflate(b"not deflate at all", 1 << 20).is_none());
    }

    /// If this fails, the linked zlib makes different streams than the one
    /// recipes were recorded with: do not upgrade it without a migration.
    #[test]
    fn golden_streams_are_stable() {
        let data = sample();
        let mut all = Vec::new();
        for level in 1..=9 {
            for strategy in 0..=4 {
                all.extend_from_slice(&deflate(
                    Params {
                        level,
                        strategy,
                        ..Params::DEFAULT
                    },
                    &data,
                ));
            }
        }
        assert_eq!(version(), "1.3.2");
        assert_eq!(
            blake3::hash(&all).to_hex().as_str(),
            "543de584b6beaf02bc1e53017505b9221037988dbddda6c21df22583913d9179"
        );
    }

    fn chromium(level: u8) -> Params {
        Params {
            flavor: Flavor::Chromium,
            level,
            ..Params::DEFAULT
        }
    }

    #[test]
    fn chromium_zlib_makes_other_streams_than_stock_zlib() {
        let data = sample();
        for level in 1..=9 {
            let stock = Params {
                level,
                ..Params::DEFAULT
            };
            assert_ne!(deflate(chromium(level), &data), deflate(stock, &data), "level {level}");
        }
    }

    /// As `golden_streams_are_stable`, for the vendored Chromium zlib.
    #[test]
    fn golden_chromium_streams_are_stable() {
        let data = sample();
        let mut all = Vec::new();
        for level in 1..=9 {
            for mem_level in [1, 8, 9] {
                all.extend_from_slice(&deflate(
                    Params {
                        mem_level,
                        ..chromium(level)
                    },
                    &data,
                ));
            }
        }
        assert_eq!(Flavor::Chromium.version(), "1.3.0.1-motley");
        assert_eq!(
            blake3::hash(&all).to_hex().as_str(),
            "823b8a3f3bb3ab96590887e70a513dd8952ac22f594b772951fd378432523c29"
        );
    }
}
