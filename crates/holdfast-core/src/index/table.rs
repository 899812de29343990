//! The master index as one table of fixed-width records sorted by blob id, read in place
//! through a memory map.
//!
//! The index is the one structure that grows with the repository: an entry per chunk, about
//! two hundred million at 100 TB of 512 KiB chunks. Held as a hash map of 32-byte ids it cost
//! 68–76 bytes of heap per blob (14 GiB at that size) in every command, and every start
//! decrypted and parsed every index file again (about 0.3 s per million blobs). A table is
//! about 57 bytes per blob in a file of the local cache: the kernel pages in what lookups touch and
//! drops those pages again under memory pressure, and a warm start maps the file instead of
//! parsing anything. Without a cache the same table lives in anonymous memory.
//!
//! Ids are keyed BLAKE3 outputs, so their leading bits are uniform: a table of bucket starts
//! indexed by those bits narrows a lookup to about four neighbouring records, and a dense
//! array of 2-byte fingerprints (the id's bytes 8 and 9) answers most lookups of an id that
//! is not there without touching the records at all: a backup asks mostly for new chunks.
//!
//! A table is derived data, rebuilt from the index files whenever it does not match them; it
//! ends with a keyed BLAKE3 MAC of everything before it, checked when the file is opened, so
//! a damaged or altered table is a cache miss and never a wrong answer (see docs/scale.md).
//!
//! Layout (all integers little-endian; sections follow each other without padding):
//!
//! ```text
//! header   48 bytes: "HFIT", version u32, seen u32, sources u32, packs u32, bucket bits u32,
//!          entries u64, distinct blobs u64, reserved u64
//! seen     32 × seen      index files listed when the table was built (superseded included)
//! sources  32 × sources   the index files whose packs the table holds
//! entries  48 × entries   blob id, pack slot | kind << 31, offset, length, raw length;
//!                         sorted by id, then slot, then offset
//! packs    32 × packs     pack ids by slot, in the order their index files were read
//! starts    4 × (packs+1) where each pack's run of `by_pack` begins
//! by_pack   4 × entries   entry numbers grouped by pack, by offset within a pack
//! buckets   4 × (2^bits+1) first entry whose id's top `bits` bits are at least the bucket's
//! prints    2 × entries   bytes 8 and 9 of each entry's id
//! mac      32             keyed BLAKE3 of all of the above
//! ```

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use memmap2::{Mmap, MmapMut};
use rayon::prelude::*;

use crate::id::{BlobId, IndexId, PackId, ID_LEN};
use crate::index::{BlobLocation, PackEntry};
use crate::pack::{BlobKind, PackedBlob};

const MAGIC: &[u8; 4] = b"HFIT";
const VERSION: u32 = 1;
const HEADER: usize = 48;
const ENTRY: usize = ID_LEN + 16;
const MAC: usize = 32;
const KIND_BIT: u32 = 1 << 31;
/// About this many entries per bucket: a lookup compares a handful of neighbouring records.
const PER_BUCKET: u64 = 4;
const MAX_BUCKET_BITS: u32 = 30;

type Entry = [u8; ENTRY];

/// Why a table file could not be used; each is a cache miss, answered by rebuilding.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an index table of this version")]
    Format,
    #[error("its MAC does not match (damaged, or written with another key)")]
    Mac,
}

/// Byte ranges of each section, derived from the counts in the header.
#[derive(Clone, Debug)]
struct Sections {
    seen: Range<usize>,
    sources: Range<usize>,
    entries: Range<usize>,
    packs: Range<usize>,
    starts: Range<usize>,
    by_pack: Range<usize>,
    buckets: Range<usize>,
    prints: Range<usize>,
    len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    seen: usize,
    sources: usize,
    packs: usize,
    bits: u32,
    entries: usize,
    distinct: u64,
}

impl Counts {
    fn sections(&self) -> Option<Sections> {
        let mut at = HEADER;
        let mut take = |n: usize, size: usize| -> Option<Range<usize>> {
            let len = n.checked_mul(size)?;
            let r = at..at.checked_add(len)?;
            at = r.end;
            Some(r)
        };
        let seen = take(self.seen, ID_LEN)?;
        let sources = take(self.sources, ID_LEN)?;
        let entries = take(self.entries, ENTRY)?;
        let packs = take(self.packs, ID_LEN)?;
        let starts = take(self.packs.checked_add(1)?, 4)?;
        let by_pack = take(self.entries, 4)?;
        let buckets = take((1usize << self.bits) + 1, 4)?;
        let prints = take(self.entries, 2)?;
        let len = at.checked_add(MAC)?;
        Some(Sections {
            seen,
            sources,
            entries,
            packs,
            starts,
            by_pack,
            buckets,
            prints,
            len,
        })
    }

    fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&VERSION.to_le_bytes());
        h[8..12].copy_from_slice(&(self.seen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(self.sources as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(self.packs as u32).to_le_bytes());
        h[20..24].copy_from_slice(&self.bits.to_le_bytes());
        h[24..32].copy_from_slice(&(self.entries as u64).to_le_bytes());
        h[32..40].copy_from_slice(&self.distinct.to_le_bytes());
        h
    }

    fn decode(h: &[u8]) -> Option<Counts> {
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        if h.len() < HEADER || &h[..4] != MAGIC || u32_at(4) != VERSION {
            return None;
        }
        let bits = u32_at(20);
        if bits > MAX_BUCKET_BITS {
            return None;
        }
        Some(Counts {
            seen: u32_at(8) as usize,
            sources: u32_at(12) as usize,
            packs: u32_at(16) as usize,
            bits,
            entries: usize::try_from(u64_at(24)).ok()?,
            distinct: u64_at(32),
        })
    }
}

fn bucket_bits(entries: usize) -> u32 {
    let want = (entries as u64 / PER_BUCKET).max(1);
    (u64::BITS - (want - 1).leading_zeros()).min(MAX_BUCKET_BITS)
}

fn bucket_of(id: &[u8], bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    (u64::from_be_bytes(id[..8].try_into().unwrap()) >> (64 - bits)) as usize
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], i: usize, v: u32) {
    b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
}

/// Bytes of the id that the bucket (at most its first 30 bits) does not use.
fn fingerprint(id: &[u8]) -> [u8; 2] {
    [id[8], id[9]]
}

fn entry_slot(e: &Entry) -> u32 {
    u32::from_le_bytes(e[32..36].try_into().unwrap()) & !KIND_BIT
}

fn entry_blob(e: &Entry) -> PackedBlob {
    let word = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap());
    PackedBlob {
        kind: if word(32) & KIND_BIT != 0 {
            BlobKind::Tree
        } else {
            BlobKind::Data
        },
        id: BlobId(e[..ID_LEN].try_into().unwrap()),
        offset: word(36),
        length: word(40),
        raw_length: word(44),
    }
}

fn encode_entry(slot: u32, b: &PackedBlob) -> Entry {
    let mut e = [0u8; ENTRY];
    e[..ID_LEN].copy_from_slice(&b.id.0);
    let kind = match b.kind {
        BlobKind::Data => 0,
        BlobKind::Tree => KIND_BIT,
    };
    e[32..36].copy_from_slice(&(slot | kind).to_le_bytes());
    e[36..40].copy_from_slice(&b.offset.to_le_bytes());
    e[40..44].copy_from_slice(&b.length.to_le_bytes());
    e[44..48].copy_from_slice(&b.raw_length.to_le_bytes());
    e
}

/// A built table, mapped.
pub struct Table {
    map: Mmap,
    counts: Counts,
    s: Sections,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("packs", &self.counts.packs)
            .field("entries", &self.counts.entries)
            .finish()
    }
}

/// What to build a table from.
pub struct Source {
    /// Index files listed (superseded ones included), recorded so that a later start knows
    /// which files are new.
    pub seen: Vec<IndexId>,
    /// Index files whose packs are added, in this order.
    pub sources: Vec<IndexId>,
    /// The packs of `sources`, in the order read; a pack listed twice counts once.
    pub packs: Vec<PackEntry>,
}

impl Table {
    /// Builds a table from `from`, leaving out packs `skip` says are held elsewhere: in the
    /// file `to` (written under a temporary name beside it, then renamed into place)
    /// or, without one, in anonymous memory.
    pub fn build(
        from: Source,
        skip: &dyn Fn(&PackId) -> bool,
        to: Option<&Path>,
        mac_key: &[u8; 32],
    ) -> Result<Table, TableError> {
        let Source {
            seen,
            sources,
            packs,
        } = from;
        // Count first, so the whole table is sized once and each pack's list can be dropped
        // as soon as it is copied in: the heap never holds the index twice.
        let mut taken: HashSet<PackId> = HashSet::new();
        let keep: Vec<bool> = packs
            .iter()
            .map(|p| !skip(&p.id) && taken.insert(p.id))
            .collect();
        drop(taken);
        let n_packs = keep.iter().filter(|k| **k).count();
        let n_entries: usize = packs
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(p, _)| p.blobs.len())
            .sum();
        if n_packs >= KIND_BIT as usize || n_entries > u32::MAX as usize {
            return Err(TableError::Format);
        }
        let mut counts = Counts {
            seen: seen.len(),
            sources: sources.len(),
            packs: n_packs,
            bits: bucket_bits(n_entries),
            entries: n_entries,
            distinct: 0,
        };
        let s = counts.sections().ok_or(TableError::Format)?;
        // Built in anonymous memory (huge pages where the kernel has them: the sort touches
        // every page), then written out in one go: writing through a map of a new file
        // faulted every page in twice and took twice as long.
        let mut map = MmapMut::map_anon(s.len)?;
        let _ = map.advise(memmap2::Advice::HugePage);
        let tmp = to.map(|p| p.with_file_name(format!(".table-{}.tmp", std::process::id())));
        let result = (|| {
            let b = &mut map[..];
            for (range, ids) in [(&s.seen, &seen), (&s.sources, &sources)] {
                for (to, id) in b[range.clone()]
                    .as_chunks_mut::<ID_LEN>()
                    .0
                    .iter_mut()
                    .zip(ids)
                {
                    *to = id.0;
                }
            }
            // Entries in pack order first, each pack's slot recorded; sorted below.
            let mut at = s.entries.start;
            let mut slot = 0u32;
            for (p, k) in packs.into_iter().zip(keep) {
                if !k {
                    continue;
                }
                b[s.packs.start + slot as usize * ID_LEN..][..ID_LEN].copy_from_slice(&p.id.0);
                for blob in &p.blobs {
                    b[at..at + ENTRY].copy_from_slice(&encode_entry(slot, blob));
                    at += ENTRY;
                }
                slot += 1;
            }
            let entries: &mut [Entry] = b[s.entries.clone()].as_chunks_mut().0;
            // The leading eight bytes as one integer first: ids rarely share them, and a
            // byte-wise compare of 32 bytes is a call per comparison.
            let lead = |e: &Entry| u64::from_be_bytes(e[..8].try_into().unwrap());
            entries.par_sort_unstable_by(|x, y| {
                lead(x)
                    .cmp(&lead(y))
                    .then_with(|| x[8..ID_LEN].cmp(&y[8..ID_LEN]))
                    .then_with(|| entry_slot(x).cmp(&entry_slot(y)))
                    .then_with(|| entry_blob(x).offset.cmp(&entry_blob(y).offset))
            });
            let entries: &[Entry] = b[s.entries.clone()].as_chunks().0;
            counts.distinct = entries
                .iter()
                .enumerate()
                .filter(|(i, e)| *i == 0 || entries[i - 1][..ID_LEN] != e[..ID_LEN])
                .count() as u64;
            // Group entry numbers by pack (a counting sort), then order each pack by offset.
            let mut starts = vec![0u32; n_packs + 1];
            for e in entries {
                starts[entry_slot(e) as usize + 1] += 1;
            }
            for i in 1..starts.len() {
                starts[i] += starts[i - 1];
            }
            // Offsets are gathered on the way (entries are read in order), so ordering a pack
            // does not jump around the records.
            let mut by_pack = vec![(0u32, 0u32); n_entries];
            let mut next = starts.clone();
            for (i, e) in entries.iter().enumerate() {
                let slot = entry_slot(e) as usize;
                by_pack[next[slot] as usize] = (entry_blob(e).offset, i as u32);
                next[slot] += 1;
            }
            drop(next);
            for w in starts.windows(2) {
                by_pack[w[0] as usize..w[1] as usize].sort_unstable();
            }
            let by_pack: Vec<u32> = by_pack.into_iter().map(|(_, i)| i).collect();
            let mut buckets = vec![n_entries as u32; (1usize << counts.bits) + 1];
            let mut k = 0usize;
            for (i, e) in entries.iter().enumerate() {
                let bucket = bucket_of(&e[..], counts.bits);
                while k <= bucket {
                    buckets[k] = i as u32;
                    k += 1;
                }
            }
            for (i, v) in starts.iter().enumerate() {
                put_u32(&mut b[s.starts.clone()], i, *v);
            }
            for (i, v) in by_pack.iter().enumerate() {
                put_u32(&mut b[s.by_pack.clone()], i, *v);
            }
            for (i, v) in buckets.iter().enumerate() {
                put_u32(&mut b[s.buckets.clone()], i, *v);
            }
            let ids: Vec<[u8; 2]> = b[s.entries.clone()]
                .as_chunks::<ENTRY>()
                .0
                .iter()
                .map(|e| fingerprint(e))
                .collect();
            b[s.prints.clone()].copy_from_slice(ids.as_flattened());
            b[..HEADER].copy_from_slice(&counts.encode());
            let mut mac = blake3::Hasher::new_keyed(mac_key);
            mac.update_rayon(&b[..s.len - MAC]);
            b[s.len - MAC..].copy_from_slice(mac.finalize().as_bytes());
            let (Some(tmp), Some(to)) = (&tmp, to) else {
                return Ok(None);
            };
            let _ = std::fs::remove_file(tmp);
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(crate::private::FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(tmp)?;
            file.write_all(b)?;
            // SAFETY: the file was just written by this process under a name no other
            // holdfast process uses; once renamed, table files are only ever replaced by
            // another rename, never changed in place. Mapped before the rename, so the map
            // is of the file this process wrote whatever another process renames later.
            let mapped = unsafe { Mmap::map(&file)? };
            // No fsync: a table torn by a power cut fails its MAC and is rebuilt.
            std::fs::rename(tmp, to)?;
            Ok::<Option<Mmap>, TableError>(Some(mapped))
        })();
        let map = match result {
            // The file's pages are the page cache's to keep or drop, not this process's heap.
            Ok(Some(mapped)) => mapped,
            Ok(None) => map.make_read_only()?,
            Err(e) => {
                if let Some(tmp) = &tmp {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(e);
            }
        };
        Ok(Table { map, counts, s })
    }

    /// Opens a table file, checking its format and MAC. The MAC is computed from reads of
    /// the file, not through the map, so checking does not make the whole table resident.
    pub fn open(path: &Path, mac_key: &[u8; 32]) -> Result<Table, TableError> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header)?;
        let counts = Counts::decode(&header).ok_or(TableError::Format)?;
        let s = counts.sections().ok_or(TableError::Format)?;
        if file.metadata()?.len() != s.len as u64 {
            return Err(TableError::Format);
        }
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = blake3::Hasher::new_keyed(mac_key);
        let mut left = (s.len - MAC) as u64;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..n])?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        let mut mac = [0u8; MAC];
        file.read_exact(&mut mac)?;
        // Constant time is not needed (the key never leaves this process), exactness is.
        if hasher.finalize().as_bytes() != &mac {
            return Err(TableError::Mac);
        }
        // SAFETY: table files are only ever replaced by rename, never written in place, so
        // the mapped file does not change while mapped.
        let map = unsafe { Mmap::map(&file)? };
        if map.len() != s.len {
            return Err(TableError::Format);
        }
        let t = Table { map, counts, s };
        t.validate()?;
        Ok(t)
    }

    /// Checks of the small lookup sections (the MAC already vouches for every byte). The
    /// entries are not walked: that would make the whole table resident on every start.
    fn validate(&self) -> Result<(), TableError> {
        let n = self.counts.entries as u32;
        let starts = &self.map[self.s.starts.clone()];
        let buckets = &self.map[self.s.buckets.clone()];
        let ok = u32_at(starts, 0) == 0
            && u32_at(starts, self.counts.packs) == n
            && (0..self.counts.packs).all(|i| u32_at(starts, i) <= u32_at(starts, i + 1))
            && u32_at(buckets, 0) == 0
            && u32_at(buckets, 1usize << self.counts.bits) == n
            && (0..1usize << self.counts.bits)
                .all(|i| u32_at(buckets, i) <= u32_at(buckets, i + 1));
        if ok {
            Ok(())
        } else {
            Err(TableError::Format)
        }
    }

    fn entries(&self) -> &[Entry] {
        self.map[self.s.entries.clone()].as_chunks().0
    }

    fn ids(&self, r: Range<usize>) -> Vec<IndexId> {
        self.map[r]
            .as_chunks::<ID_LEN>()
            .0
            .iter()
            .map(|id| IndexId(*id))
            .collect()
    }

    /// Index files listed when the table was built.
    pub fn seen(&self) -> Vec<IndexId> {
        self.ids(self.s.seen.clone())
    }

    /// Index files whose packs the table holds.
    pub fn sources(&self) -> Vec<IndexId> {
        self.ids(self.s.sources.clone())
    }

    pub fn entry_count(&self) -> usize {
        self.counts.entries
    }

    pub fn blob_count(&self) -> usize {
        self.counts.distinct as usize
    }

    pub fn pack_count(&self) -> usize {
        self.counts.packs
    }

    pub fn pack_id(&self, slot: usize) -> PackId {
        PackId(self.map[self.s.packs.clone()].as_chunks::<ID_LEN>().0[slot])
    }

    /// The blobs of the pack in `slot`, by offset.
    pub fn pack_blobs(&self, slot: usize) -> impl ExactSizeIterator<Item = PackedBlob> + '_ {
        let starts = &self.map[self.s.starts.clone()];
        let by_pack = &self.map[self.s.by_pack.clone()];
        let entries = self.entries();
        (u32_at(starts, slot) as usize..u32_at(starts, slot + 1) as usize)
            .map(move |i| entry_blob(&entries[u32_at(by_pack, i) as usize]))
    }

    /// The first entry for `id` (the copy in the earliest pack), if any. Copies of one id
    /// are adjacent and in order, so the first entry whose id matches is that copy.
    fn find(&self, id: &BlobId) -> Option<&Entry> {
        let buckets = &self.map[self.s.buckets.clone()];
        let k = bucket_of(&id.0, self.counts.bits);
        let range = u32_at(buckets, k) as usize..u32_at(buckets, k + 1) as usize;
        let prints: &[[u8; 2]] = self.map[self.s.prints.clone()].as_chunks().0;
        let print = fingerprint(&id.0);
        let entries = self.entries();
        range
            .filter(|i| prints[*i] == print)
            .map(|i| &entries[i])
            .find(|e| e[..ID_LEN] == id.0[..])
    }

    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.find(id).map(|e| self.location(e))
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.find(id).is_some()
    }

    fn location(&self, e: &Entry) -> BlobLocation {
        let b = entry_blob(e);
        BlobLocation {
            pack: self.pack_id(entry_slot(e) as usize),
            kind: b.kind,
            offset: b.offset,
            length: b.length,
            raw_length: b.raw_length,
        }
    }

    /// Each distinct blob once, with the location of its first copy.
    pub fn blobs(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        let entries = self.entries();
        entries
            .iter()
            .enumerate()
            .filter(move |(i, e)| *i == 0 || entries[i - 1][..ID_LEN] != e[..ID_LEN])
            .map(|(_, e)| (BlobId(e[..ID_LEN].try_into().unwrap()), self.location(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs(n: u8) -> Vec<PackEntry> {
        (0..n)
            .map(|p| PackEntry {
                id: PackId([p; 32]),
                blobs: (0..50u32)
                    .map(|i| PackedBlob {
                        kind: if i % 7 == 0 {
                            BlobKind::Tree
                        } else {
                            BlobKind::Data
                        },
                        id: BlobId(*blake3::hash(&[p, i as u8]).as_bytes()),
                        offset: i * 1000,
                        length: 900 + i,
                        raw_length: 2000 + i,
                    })
                    .collect(),
            })
            .collect()
    }

    fn source(packs: Vec<PackEntry>) -> Source {
        Source {
            seen: vec![IndexId([1; 32]), IndexId([2; 32])],
            sources: vec![IndexId([2; 32])],
            packs,
        }
    }

    #[test]
    fn a_table_file_reopens_with_the_same_answers_and_nothing_else_is_taken_for_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.table");
        let key = [9u8; 32];
        let built = Table::build(source(packs(6)), &|_| false, Some(&path), &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the table lists the repository's blobs: owner only"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );

        let opened = Table::open(&path, &key).unwrap();
        assert_eq!(opened.seen(), vec![IndexId([1; 32]), IndexId([2; 32])]);
        assert_eq!(opened.sources(), vec![IndexId([2; 32])]);
        assert_eq!((opened.blob_count(), opened.pack_count()), (300, 6));
        for p in packs(6) {
            for b in &p.blobs {
                let loc = opened.get(&b.id).expect("every blob found");
                assert_eq!(Some(loc), built.get(&b.id));
                assert_eq!((loc.pack, loc.kind, loc.offset), (p.id, b.kind, b.offset));
            }
        }
        assert!(!opened.contains(&BlobId([0xee; 32])));

        // Any changed byte (header, entries, lookup sections, MAC), a shorter file or another
        // key: the table is refused, so a damaged cache can only cost a rebuild.
        let good = std::fs::read(&path).unwrap();
        let len = good.len();
        for at in [
            0,
            5,
            20,
            24,
            HEADER + 3,
            HEADER + 64 + 100,
            len / 2,
            len - 40,
            len - 1,
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                Table::open(&path, &key).is_err(),
                "byte {at} changed, still opened"
            );
        }
        std::fs::write(&path, &good[..len - 1]).unwrap();
        assert!(Table::open(&path, &key).is_err(), "truncated");
        std::fs::write(&path, &good).unwrap();
        assert!(matches!(
            Table::open(&path, &[8u8; 32]),
            Err(TableError::Mac)
        ));
        assert!(Table::open(&path, &key).is_ok());

        // A symlink in its place is not followed.
        let link = dir.path().join("link.table");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(Table::open(&link, &key).is_err());
    }

    #[test]
    fn an_empty_table_answers_nothing() {
        let t = Table::build(source(Vec::new()), &|_| false, None, &[1; 32]).unwrap();
        assert_eq!((t.blob_count(), t.pack_count(), t.entry_count()), (0, 0, 0));
        assert!(t.get(&BlobId([0; 32])).is_none());
        assert_eq!(t.blobs().count(), 0);
    }

    #[test]
    fn packs_held_elsewhere_and_listed_twice_are_added_once() {
        let mut all = packs(4);
        all.push(all[1].clone());
        let t = Table::build(source(all), &|p| *p == PackId([0; 32]), None, &[1; 32]).unwrap();
        let ids: Vec<PackId> = (0..t.pack_count()).map(|s| t.pack_id(s)).collect();
        assert_eq!(ids, vec![PackId([1; 32]), PackId([2; 32]), PackId([3; 32])]);
        assert_eq!(t.entry_count(), 150);
        let offsets: Vec<u32> = t.pack_blobs(1).map(|b| b.offset).collect();
        assert_eq!(offsets, (0..50).map(|i| i * 1000).collect::<Vec<_>>());
    }
}
