//! zstd compression of blob plaintext, skipped when it does not pay.
//!
//! Already-compressed data (model weights, parquet, images) is common in data directories;
//! storing it raw avoids paying decompression on restore for nothing.

use crate::error::{Error, Result};

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Compressed output must be at most this fraction of the input to be kept.
const KEEP_RATIO: f64 = 0.99;
/// Chunks at least this large are sampled before being compressed whole.
const SAMPLE_FROM: usize = 128 * 1024;
/// The sample: many small pieces spread over the chunk, so that mixed content is seen. Eight
/// 2 KiB pieces missed the compressible parts of chunks that interleave random and structured
/// blocks of a few KiB (pickled models): a quarter of those chunks were stored raw, which made
/// the benchmark's saved models 2% larger. 64 pieces of 512 bytes miss one in 30,000.
const SAMPLES: usize = 64;
const SAMPLE_PIECE: usize = 512;
/// A sample that saves less than 1% marks the chunk incompressible (random-looking data);
/// anything that compresses at all is compressed whole, so mixed chunks lose nothing.
const SAMPLE_KEEP_RATIO: f64 = 0.99;
/// A large chunk that compresses to this fraction or less "compressed well"; after this many
/// in a row on one thread, the next large chunks skip the sample, all but one in `RESAMPLE`.
const WELL_RATIO: f64 = 0.9;
const TRUST_AFTER: u32 = 4;
const RESAMPLE: u32 = 16;

/// `flag || payload`, where the flag says whether the payload is zstd.
pub fn pack_payload(plain: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::new();
    append_payload(plain, level, &mut out);
    out
}

/// Appends `flag || payload` to `out`; the backup's form of [`pack_payload`], which reuses
/// its buffers (a first backup compresses a gigabyte in half-megabyte chunks).
pub fn append_payload(plain: &[u8], level: i32, out: &mut Vec<u8>) {
    struct Scratch {
        level: i32,
        zstd: zstd::bulk::Compressor<'static>,
        sample: Vec<u8>,
        compressed: Vec<u8>,
        /// Large chunks in a row that compressed well on this thread: when a file's chunks
        /// keep compressing (one large file cut on every core, a database dump), the sample
        /// is mostly wasted work (6 % of the compression), so it is skipped, except for
        /// every [`RESAMPLE`]th chunk.
        streak: u32,
        large: u32,
    }
    thread_local! {
        // A compression context costs more to create than to compress a small blob.
        static SCRATCH: std::cell::RefCell<Option<Scratch>> = const { std::cell::RefCell::new(None) };
    }
    if plain.len() >= 64 {
        let kept = SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.as_ref().is_none_or(|s| s.level != level) {
                *s = zstd::bulk::Compressor::new(level).ok().map(|zstd| Scratch {
                    level,
                    zstd,
                    sample: Vec::new(),
                    compressed: Vec::new(),
                    streak: 0,
                    large: 0,
                });
            }
            let Some(s) = s.as_mut() else { return false };
            // Large chunks: try a sample of pieces from all over the chunk first. Data that
            // does not shrink there (weights, media, already-compressed files) is almost never
            // worth compressing, and compressing it whole is the most expensive thing a
            // backup does.
            let large = plain.len() >= SAMPLE_FROM;
            if large {
                s.large = s.large.wrapping_add(1);
            }
            let trusted = s.streak >= TRUST_AFTER && s.large % RESAMPLE != 0;
            if large && !trusted {
                let step = plain.len() / SAMPLES;
                s.sample.clear();
                for i in 0..SAMPLES {
                    s.sample
                        .extend_from_slice(&plain[i * step..i * step + SAMPLE_PIECE]);
                }
                s.compressed.clear();
                s.compressed
                    .reserve(zstd::zstd_safe::compress_bound(s.sample.len()));
                match s.zstd.compress_to_buffer(&s.sample, &mut s.compressed) {
                    Ok(n) if n as f64 <= s.sample.len() as f64 * SAMPLE_KEEP_RATIO => {}
                    _ => return false,
                }
            }
            s.compressed.clear();
            s.compressed
                .reserve(zstd::zstd_safe::compress_bound(plain.len()));
            let done = s.zstd.compress_to_buffer(plain, &mut s.compressed);
            if large {
                let well = matches!(done, Ok(n) if n as f64 <= plain.len() as f64 * WELL_RATIO);
                s.streak = if well { s.streak.saturating_add(1) } else { 0 };
            }
            match done {
                Ok(n) if n as f64 <= plain.len() as f64 * KEEP_RATIO => {
                    out.push(ZSTD);
                    out.extend_from_slice(&s.compressed);
                    true
                }
                _ => false,
            }
        });
        if kept {
            return;
        }
    }
    out.push(RAW);
    out.extend_from_slice(plain);
}

/// Inverse of [`pack_payload`]; `raw_len` bounds the decompressed size.
pub fn unpack_payload(what: &str, payload: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    match payload.split_first() {
        Some((&RAW, rest)) => Ok(rest.to_vec()),
        Some((&ZSTD, rest)) => {
            thread_local! {
                // Creating a decompression context costs more than decompressing a tree blob
                // (it was a sixth of a no-change backup, which reads thousands of them).
                static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            CONTEXT.with(|c| {
                let mut c = c.borrow_mut();
                if c.is_none() {
                    *c = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| Error::corrupt(what, format!("zstd: {e}")))?,
                    );
                }
                let z = c.as_mut().expect("just set");
                z.decompress(rest, raw_len.max(1))
                    .map_err(|e| Error::corrupt(what, format!("zstd: {e}")))
            })
        }
        _ => Err(Error::corrupt(what, "unknown compression flag")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), rep in 0usize..4) {
            let mut d = data.clone();
            for _ in 0..rep { d.extend_from_slice(&data); }
            let p = pack_payload(&d, 3);
            prop_assert_eq!(unpack_payload("t", &p, d.len()).unwrap(), d);
        }
    }

    #[test]
    fn large_chunks_are_judged_by_a_sample() {
        let mut random = vec![0u8; 1 << 20];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
        assert_eq!(pack_payload(&random, 3)[0], RAW);
        let text = "id,name,value\n".repeat(80_000).into_bytes();
        let p = pack_payload(&text, 3);
        assert_eq!(p[0], ZSTD);
        assert_eq!(unpack_payload("t", &p, text.len()).unwrap(), text);
    }

    /// Mostly random blocks of a few KiB with some structured ones between them (a pickled
    /// model): the sample must see the structured part, whatever the seed.
    #[test]
    fn interleaved_random_and_structured_blocks_are_compressed() {
        use rand::{Rng, SeedableRng};
        let text = "weights,layer,bias\n".repeat(1000).into_bytes();
        for seed in 0..200 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut chunk = Vec::with_capacity(1 << 20);
            while chunk.len() < 1 << 20 {
                let n = rng.gen_range(2048..16384);
                if rng.gen_bool(0.85) {
                    let mut block = vec![0u8; n];
                    rng.fill(&mut block[..]);
                    chunk.extend_from_slice(&block);
                } else {
                    chunk.extend_from_slice(&text[..n]);
                }
            }
            let p = pack_payload(&chunk, 3);
            assert_eq!(p[0], ZSTD, "seed {seed}: stored raw");
            assert!(p.len() < chunk.len() * 95 / 100, "seed {seed}");
        }
    }

    /// After a run of compressible chunks the sample is skipped; an incompressible chunk is
    /// still stored raw, and the chunks after it are judged by a sample again.
    #[test]
    fn a_streak_of_compressible_chunks_skips_the_sample_but_not_the_judgement() {
        let text = "id,name,value\n".repeat(80_000).into_bytes();
        let mut random = vec![0u8; 1 << 20];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
        for _ in 0..(TRUST_AFTER + 2) {
            assert_eq!(pack_payload(&text, 3)[0], ZSTD);
        }
        let p = pack_payload(&random, 3);
        assert_eq!(p[0], RAW);
        assert_eq!(unpack_payload("t", &p, random.len()).unwrap(), random);
        assert_eq!(pack_payload(&random, 3)[0], RAW);
        let p = pack_payload(&text, 3);
        assert_eq!(unpack_payload("t", &p, text.len()).unwrap(), text);
    }

    #[test]
    fn skips_incompressible() {
        let mut d = vec![0u8; 4096];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut d);
        assert_eq!(pack_payload(&d, 3)[0], RAW);
        assert_eq!(pack_payload(&[7u8; 4096], 3)[0], ZSTD);
    }
}
