//! Compiles `proto/stowage/v1/*.proto` with protox (pure Rust, no system
//! `protoc`) and writes the descriptor set that server reflection serves;
//! builds the vendored Chromium zlib's deflate (`vendor/chromium-zlib`).

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Chromium's zlib, as Node.js bundles it, for the deflate streams npm
/// tarballs carry (`src/expand/zlib.rs`). Only the compressor is built, with
/// no SIMD: this version's output does not depend on the CPU, and
/// `chromeconf.h` prefixes every symbol with `Cr_z_`, so it links beside
/// stock zlib.
fn chromium_zlib() {
    let dir = "vendor/chromium-zlib";
    let mut b = cc::Build::new();
    b.include(dir)
        .define("CPU_NO_SIMD", None)
        .define("ZLIB_IMPLEMENTATION", None)
        .warnings(false)
        .opt_level(2);
    for f in [
        "adler32.c",
        "crc32.c",
        "deflate.c",
        "trees.c",
        "zutil.c",
        "cpu_features.c",
    ] {
        b.file(format!("{dir}/{f}"));
    }
    println!("cargo:rerun-if-changed={dir}");
    b.compile("chromium_zlib");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    chromium_zlib();
    let protos: Vec<PathBuf> = fs::read_dir("proto/stowage/v1")?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let mut protos: Vec<PathBuf> = protos
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    protos.sort();
    // The folder too, so a new proto file is picked up.
    println!("cargo:rerun-if-changed=proto/stowage/v1");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("stowage_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
