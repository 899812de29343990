//! How chunk size parameters trade deduplication against blob count, on real directories.
//!
//! ```text
//! cargo run --release -p holdfast-core --example chunk_sizes -- DIR [DIR...]
//! ```
//!
//! Every directory is one "backup"; all are cut with each parameter set (FastCDC 2020, the
//! repository's chunker) and the report says how many bytes and chunks are unique across all
//! of them. Give several versions of a data directory (yesterday's, today's) to see what an
//! incremental backup would add. The numbers behind docs/chunking.md come from this.

mod common;

use std::collections::HashSet;
use std::path::Path;

use fastcdc::v2020::{FastCDC, Normalization};

struct Params {
    min: u32,
    avg: u32,
    max: u32,
    level: Normalization,
}

fn main() {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: chunk_sizes DIR [DIR...]");
        std::process::exit(2);
    }
    let mut all = Vec::new();
    for d in &dirs {
        common::files(Path::new(d), &mut all);
    }
    let contents: Vec<Vec<u8>> = all.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let total: u64 = contents.iter().map(|c| c.len() as u64).sum();
    println!(
        "{} files, {:.1} MiB in {} director(ies)",
        all.len(),
        total as f64 / (1 << 20) as f64,
        dirs.len()
    );
    println!("| min / avg / max | normalization | chunks | unique chunks | unique MiB | mean unique chunk KiB |");
    println!("|---|---|---:|---:|---:|---:|");
    let k = 1024;
    let sets = [
        (256 * k, 1024 * k, 4096 * k, Normalization::Level1),
        (256 * k, 1024 * k, 4096 * k, Normalization::Level2),
        (512 * k, 1024 * k, 8192 * k, Normalization::Level1),
        (128 * k, 512 * k, 2048 * k, Normalization::Level1),
        (128 * k, 512 * k, 2048 * k, Normalization::Level2),
        (64 * k, 256 * k, 1024 * k, Normalization::Level1),
    ];
    for (min, avg, max, level) in sets {
        let p = Params {
            min,
            avg,
            max,
            level,
        };
        let mut seen = HashSet::new();
        let (mut chunks, mut unique, mut unique_bytes) = (0u64, 0u64, 0u64);
        for c in &contents {
            for ch in FastCDC::with_level(c, p.min, p.avg, p.max, p.level) {
                chunks += 1;
                let data = &c[ch.offset..ch.offset + ch.length];
                if seen.insert(*blake3::hash(data).as_bytes()) {
                    unique += 1;
                    unique_bytes += data.len() as u64;
                }
            }
        }
        println!(
            "| {} / {} / {} KiB | {:?} | {chunks} | {unique} | {:.1} | {:.0} |",
            p.min / 1024,
            p.avg / 1024,
            p.max / 1024,
            p.level,
            unique_bytes as f64 / (1 << 20) as f64,
            unique_bytes as f64 / unique.max(1) as f64 / 1024.0
        );
    }
}
