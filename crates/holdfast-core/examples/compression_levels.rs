//! What each zstd level costs and saves on the unique chunks of real directories.
//!
//! ```text
//! cargo run --release -p holdfast-core --example compression_levels -- DIR [DIR...]
//! ```
//!
//! The directories are cut with the repository's default chunker and deduplicated; every
//! unique chunk is then compressed the way a backup does (sample first, raw when it does not
//! pay) at each level, on one thread. The table in docs/chunking.md (Compression) comes from this.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use holdfast_core::compress::pack_payload;
use holdfast_core::repo::ChunkerParams;

fn main() {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: compression_levels DIR [DIR...]");
        std::process::exit(2);
    }
    let mut all = Vec::new();
    for d in &dirs {
        common::files(Path::new(d), &mut all);
    }
    let params = ChunkerParams::default();
    let mut seen = HashSet::new();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for p in &all {
        let c = std::fs::read(p).unwrap();
        for r in holdfast_core::chunker::cut(&c, &params) {
            if seen.insert(*blake3::hash(&c[r.clone()]).as_bytes()) {
                chunks.push(c[r].to_vec());
            }
        }
    }
    let unique: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    println!(
        "{} files, {} unique chunks, {:.1} MiB unique",
        all.len(),
        chunks.len(),
        unique as f64 / (1 << 20) as f64
    );
    println!("| level | stored MiB | vs level 3 | seconds (1 thread) | MiB/s | raw chunks |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut base = 0u64;
    for level in [3, 1, 2, 4, -1] {
        let start = Instant::now();
        let (mut stored, mut raw) = (0u64, 0u64);
        for c in &chunks {
            let p = pack_payload(c, level);
            stored += p.len() as u64;
            raw += u64::from(p[0] == 0);
        }
        let secs = start.elapsed().as_secs_f64();
        if level == 3 {
            base = stored;
        }
        println!(
            "| {level} | {:.1} | {:+.1}% | {secs:.2} | {:.0} | {raw} |",
            stored as f64 / (1 << 20) as f64,
            (stored as f64 / base as f64 - 1.0) * 100.0,
            unique as f64 / (1 << 20) as f64 / secs
        );
    }
    // Level 3 with smaller match-finder tables or other settings, on the chunks that level 3
    // keeps compressed: what a faster setting would cost in size.
    use zstd::stream::raw::CParameter as P;
    let kept: Vec<&Vec<u8>> = chunks
        .iter()
        .filter(|c| pack_payload(c, 3)[0] == 1)
        .collect();
    let variants: Vec<(&str, Vec<P>)> = vec![
        ("l3", vec![]),
        ("l3 h16 c15", vec![P::HashLog(16), P::ChainLog(15)]),
        ("l3 h15 c14", vec![P::HashLog(15), P::ChainLog(14)]),
        ("l3 h16 c16", vec![P::HashLog(16), P::ChainLog(16)]),
        ("l3 h17 c16 mml6", vec![P::MinMatch(6)]),
        ("l3 w18", vec![P::WindowLog(18)]),
        ("l2", vec![P::CompressionLevel(2)]),
        (
            "l2 dfast",
            vec![
                P::CompressionLevel(2),
                P::Strategy(zstd::zstd_safe::Strategy::ZSTD_dfast),
            ],
        ),
    ];
    for (name, ps) in variants {
        let mut z = zstd::bulk::Compressor::new(3).unwrap();
        for p in ps {
            z.set_parameter(p).unwrap();
        }
        let start = Instant::now();
        let mut stored = 0u64;
        for c in &kept {
            stored += z.compress(c).unwrap().len() as u64;
        }
        println!(
            "{name}: {:.1} MiB in {:.2} s",
            stored as f64 / (1 << 20) as f64,
            start.elapsed().as_secs_f64()
        );
    }
}
