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

/// How many maximum-size chunks the streaming window holds. Each refill moves the unfinished
/// tail (less than one maximum chunk) to the front: a window of two copies some data once
/// more (a memmove, cheap next to hashing it), and four cost 8 MiB more memory per reading
/// thread for no measurable gain.
const WINDOW_CHUNKS: usize = 2;

/// Calls `f` with each chunk of `r`, cut exactly where FastCDC over the whole stream cuts,
/// and returns the bytes read; read errors go through `read_error`.
///
/// Reads into one buffer per thread, kept between calls. fastcdc's own `StreamCDC` copies
/// every chunk into a fresh vector and zero-fills its buffer after each chunk; on a first
/// backup that allocation, zeroing and page faulting cost about a tenth of the CPU time.
pub fn for_each_chunk<E>(
    r: &mut dyn Read,
    p: &ChunkerParams,
    read_error: impl Fn(std::io::Error) -> E,
    f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    thread_local! {
        static WINDOW: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    // Taken out rather than borrowed, so that a nested call (none today) gets its own buffer
    // instead of a panic.
    let mut window = WINDOW.take();
    let result = chunk_through(&mut window, r, p, read_error, f);
    WINDOW.set(window);
    result
}

fn chunk_through<E>(
    window: &mut Vec<u8>,
    r: &mut dyn Read,
    p: &ChunkerParams,
    read_error: impl Fn(std::io::Error) -> E,
    mut f: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let max = p.max_size as usize;
    let size = WINDOW_CHUNKS * max;
    if window.len() != size {
        *window = vec![0; size];
    }
    let (mut start, mut end, mut total, mut eof) = (0usize, 0usize, 0u64, false);
    loop {
        if !eof {
            window.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while end < size {
                match r.read(&mut window[end..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        end += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(read_error(e)),
                }
            }
        }
        if start == end {
            return Ok(total);
        }
        let base = start;
        for c in
            fastcdc::v2020::FastCDC::new(&window[base..end], p.min_size, p.avg_size, p.max_size)
        {
            let at = base + c.offset;
            // FastCDC looks at most one maximum chunk ahead: with that much in the window (or
            // the stream's end), the cut is the one the whole stream would get.
            if !eof && end - at < max {
                break;
            }
            f(&window[at..at + c.length])?;
            start = at + c.length;
        }
    }
}

/// Whole chunks of a stream, cut into one owned buffer: what [`for_each_batch`] hands out.
pub struct ChunkBatch {
    pub buf: Vec<u8>,
    /// The chunks, in order, as ranges of `buf`.
    pub chunks: Vec<Range<usize>>,
}

impl ChunkBatch {
    pub fn bytes(&self) -> u64 {
        self.chunks.last().map_or(0, |c| c.end as u64)
    }
}

/// Calls `f` with the chunks of `r` in batches of about `batch_bytes`, each in a buffer of its
/// own that `f` may send to other threads; cuts are those of [`for_each_chunk`]. Returns the
/// bytes read.
///
/// Handing out whole buffers spares a copy of every chunk when another thread seals them:
/// only the unfinished tail of each batch (less than one maximum chunk) is copied into the
/// next buffer. `spare` offers a buffer back for reuse (any length; it is resized), so that a
/// long stream does not zero and fault in fresh memory for every batch.
pub fn for_each_batch<E>(
    r: &mut dyn Read,
    p: &ChunkerParams,
    batch_bytes: usize,
    spare: impl Fn() -> Option<Vec<u8>>,
    read_error: impl Fn(std::io::Error) -> E,
    mut f: impl FnMut(ChunkBatch) -> Result<(), E>,
) -> Result<u64, E> {
    let max = p.max_size as usize;
    let size = batch_bytes.max(max) + max;
    let buffer = || {
        let mut b = spare().unwrap_or_default();
        b.resize(size, 0);
        b
    };
    let (mut buf, mut end, mut total, mut eof) = (buffer(), 0usize, 0u64, false);
    loop {
        while !eof && end < size {
            match r.read(&mut buf[end..]) {
                Ok(0) => eof = true,
                Ok(n) => {
                    end += n;
                    total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        let mut chunks = Vec::new();
        let mut cut_to = 0;
        for c in fastcdc::v2020::FastCDC::new(&buf[..end], p.min_size, p.avg_size, p.max_size) {
            // As in `chunk_through`: a cut is final once a maximum chunk follows it.
            if !eof && end - c.offset < max {
                break;
            }
            chunks.push(c.offset..c.offset + c.length);
            cut_to = c.offset + c.length;
        }
        let mut next = Vec::new();
        if !eof {
            next = buffer();
            next[..end - cut_to].copy_from_slice(&buf[cut_to..end]);
        }
        if !chunks.is_empty() {
            f(ChunkBatch { buf, chunks })?;
        }
        if eof {
            return Ok(total);
        }
        (buf, end) = (next, end - cut_to);
    }
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

    /// A reader that hands out its data in reads of the given sizes, in turn.
    struct ShortReads<'a> {
        data: &'a [u8],
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
    }

    impl Read for ShortReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let want = self.sizes[self.turn % self.sizes.len()];
            self.turn += 1;
            let n = want.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_stops_chunking_and_is_returned() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let mut called = false;
        let r = for_each_chunk(
            &mut Failing,
            &SMALL,
            |e| e.to_string(),
            |_| {
                called = true;
                Ok(())
            },
        );
        assert_eq!(r, Err("disk on fire".to_string()));
        assert!(!called);
    }

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
        }

        /// Streaming cuts where slicing the whole input does, however the reads are split.
        #[test]
        fn streaming_cuts_like_the_whole_input(seed in any::<u64>(), len in 0usize..60_000, reads in proptest::collection::vec(1usize..20_000, 1..8)) {
            let d = data(seed, len);
            let sliced: Vec<&[u8]> = cut(&d, &SMALL).map(|r| &d[r]).collect();
            let mut reader = ShortReads { data: &d, at: 0, sizes: reads, turn: 0 };
            let mut streamed: Vec<Vec<u8>> = Vec::new();
            let total = for_each_chunk(&mut reader, &SMALL, |e| e, |c| {
                streamed.push(c.to_vec());
                Ok(())
            }).unwrap();
            prop_assert_eq!(total, len as u64);
            prop_assert_eq!(streamed, sliced);
        }

        /// Batches hold the same chunks as slicing the whole input, in order, whatever the
        /// batch size and reads; a reused buffer of any length makes no difference.
        #[test]
        fn batches_cut_like_the_whole_input(seed in any::<u64>(), len in 0usize..60_000, reads in proptest::collection::vec(1usize..20_000, 1..8), batch in 1usize..20_000, reuse in any::<bool>()) {
            let d = data(seed, len);
            let sliced: Vec<&[u8]> = cut(&d, &SMALL).map(|r| &d[r]).collect();
            let mut reader = ShortReads { data: &d, at: 0, sizes: reads, turn: 0 };
            let mut streamed: Vec<Vec<u8>> = Vec::new();
            let spare = || reuse.then(|| vec![7u8; 100]);
            let total = for_each_batch(&mut reader, &SMALL, batch, spare, |e| TestCaseError::fail(e.to_string()), |b| {
                prop_assert!(!b.chunks.is_empty());
                prop_assert_eq!(b.chunks[0].start, 0);
                prop_assert_eq!(b.bytes(), b.chunks.iter().map(|c| c.len() as u64).sum::<u64>());
                streamed.extend(b.chunks.iter().map(|c| b.buf[c.clone()].to_vec()));
                Ok(())
            })?;
            prop_assert_eq!(total, len as u64);
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
