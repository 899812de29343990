//! Content-defined chunking with FastCDC (2020), in one place so that backup, tests and
//! benchmarks cut data the same way. See docs/chunking.md for the sizes.

use std::io::Read;
use std::ops::Range;

use crate::repo::ChunkerParams;

/// Chunk boundaries of an in-memory buffer.
pub fn cut<'a>(buf: &'a [u8], p: &ChunkerParams) -> impl Iterator<Item = Range<usize>> + 'a {
    fastcdc::v2020::FastCDC::new(buf, p.min_size, p.avg_size, p.max_size)
        .map(|c| c.offset..c.offset + c.length)
}

/// Chunks of a stream, each owned; memory is bounded by the maximum chunk size.
pub fn stream<R: Read>(
    r: R,
    p: &ChunkerParams,
) -> impl Iterator<Item = std::io::Result<Vec<u8>>> + use<R> {
    fastcdc::v2020::StreamCDC::new(r, p.min_size, p.avg_size, p.max_size).map(|c| {
        c.map(|c| c.data).map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng};

    const SMALL: ChunkerParams = ChunkerParams {
        min_size: 256,
        avg_size: 1024,
        max_size: 4096,
    };

    fn data(seed: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut b);
        b
    }

    proptest! {
        #[test]
        fn chunks_cover_input_within_bounds(seed in any::<u64>(), len in 0usize..60_000) {
            let d = data(seed, len);
            let ranges: Vec<_> = cut(&d, &SMALL).collect();
            let mut pos = 0;
            for (i, r) in ranges.iter().enumerate() {
                prop_assert_eq!(r.start, pos);
                prop_assert!(r.len() <= SMALL.max_size as usize);
                if i + 1 < ranges.len() { prop_assert!(r.len() >= SMALL.min_size as usize); }
                pos = r.end;
            }
            prop_assert_eq!(pos, len);
            // Streaming cuts at the same places.
            let streamed: Vec<Vec<u8>> = stream(&d[..], &SMALL).collect::<Result<_, _>>().unwrap();
            let sliced: Vec<Vec<u8>> = ranges.iter().map(|r| d[r.clone()].to_vec()).collect();
            prop_assert_eq!(streamed, sliced);
        }

        #[test]
        fn an_insertion_only_changes_nearby_chunks(seed in any::<u64>(), at in 0usize..50_000, ins in proptest::collection::vec(any::<u8>(), 1..100)) {
            let d = data(seed, 100_000);
            let mut e = d.clone();
            e.splice(at..at, ins.iter().copied());
            let a: std::collections::HashSet<Vec<u8>> = cut(&d, &SMALL).map(|r| d[r].to_vec()).collect();
            let b: Vec<Vec<u8>> = cut(&e, &SMALL).map(|r| e[r].to_vec()).collect();
            // Boundaries resynchronise within a few chunks: the new bytes stay local.
            let new_bytes: usize = b.iter().filter(|c| !a.contains(*c)).map(|c| c.len()).sum();
            prop_assert!(new_bytes <= ins.len() + 4 * SMALL.max_size as usize, "{} new bytes of {}", new_bytes, e.len());
        }
    }
}
