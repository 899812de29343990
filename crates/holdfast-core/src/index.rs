//! Index files and the in-memory index: which pack holds each blob, and where.
//!
//! Without an index, reading one chunk would mean scanning pack headers. Index files are
//! written once per backup for the packs it added (never updated); loading all of them gives
//! the master index. The encoding is fixed-width binary: index files are the largest metadata
//! a repository has and are parsed on every run.

pub mod table;

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, ID_LEN};
use crate::pack::{BlobKind, PackedBlob};
use table::Table;

pub const INDEX_MAGIC: &[u8; 4] = b"HFIX";
pub const INDEX_VERSION: u8 = 1;
const BLOB_ENTRY_LEN: usize = 1 + ID_LEN + 4 + 4 + 4;

/// One pack and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackEntry {
    pub id: PackId,
    pub blobs: Vec<PackedBlob>,
}

/// The content of one index file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexFile {
    /// Index files this one replaces (written by prune when it rewrites the index).
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<PackEntry>,
}

impl IndexFile {
    pub fn encode(&self) -> Vec<u8> {
        let nblobs: usize = self.packs.iter().map(|p| p.blobs.len()).sum();
        let mut out = Vec::with_capacity(
            13 + self.supersedes.len() * ID_LEN + self.packs.len() * 36 + nblobs * BLOB_ENTRY_LEN,
        );
        out.extend_from_slice(INDEX_MAGIC);
        out.push(INDEX_VERSION);
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        out.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.id.0);
            out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
            for b in &p.blobs {
                out.push(b.kind as u8);
                out.extend_from_slice(&b.id.0);
                out.extend_from_slice(&b.offset.to_le_bytes());
                out.extend_from_slice(&b.length.to_le_bytes());
                out.extend_from_slice(&b.raw_length.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(what: &str, b: &[u8]) -> Result<IndexFile> {
        let mut r = Reader { b, pos: 0, what };
        if r.take(4)? != INDEX_MAGIC {
            return Err(r.bad("bad magic"));
        }
        let v = r.take(1)?[0];
        if v != INDEX_VERSION {
            return Err(r.bad(&format!("unknown index version {v}")));
        }
        let nsup = r.u32()? as usize;
        let mut supersedes = Vec::with_capacity(nsup.min(1024));
        for _ in 0..nsup {
            supersedes.push(IndexId(r.id()?));
        }
        let npacks = r.u32()? as usize;
        let mut packs = Vec::with_capacity(npacks.min(65536));
        for _ in 0..npacks {
            let id = PackId(r.id()?);
            let n = r.u32()? as usize;
            let mut blobs = Vec::with_capacity(n.min(65536));
            for _ in 0..n {
                let kind =
                    BlobKind::from_u8(r.take(1)?[0]).ok_or_else(|| r.bad("unknown blob type"))?;
                let id = BlobId(r.id()?);
                let offset = r.u32()?;
                let length = r.u32()?;
                let raw_length = r.u32()?;
                if offset.checked_add(length).is_none() {
                    return Err(r.bad("blob extends past 4 GiB"));
                }
                blobs.push(PackedBlob {
                    kind,
                    id,
                    offset,
                    length,
                    raw_length,
                });
            }
            packs.push(PackEntry { id, blobs });
        }
        if r.pos != b.len() {
            return Err(r.bad("trailing bytes"));
        }
        Ok(IndexFile { supersedes, packs })
    }

    pub fn seal(&self, key: &MasterKey) -> Vec<u8> {
        key.seal(&self.encode())
    }

    pub fn open(what: &str, key: &MasterKey, sealed: &[u8]) -> Result<IndexFile> {
        let plain = key.open(what, sealed)?;
        IndexFile::decode(what, &plain)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn bad(&self, why: &str) -> Error {
        Error::corrupt(
            format!("index {}", self.what),
            format!("{why} at byte {}", self.pos),
        )
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() - self.pos < n {
            return Err(self.bad("truncated"));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn id(&mut self) -> Result<[u8; ID_LEN]> {
        Ok(self.take(ID_LEN)?.try_into().unwrap())
    }
}

/// Where a blob is, for reading it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub kind: BlobKind,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// All index files merged: blob id -> location, and each pack's blobs.
///
/// This is the largest thing a command uses (one entry per chunk in the repository, about two
/// million per terabyte), so it is not a heap structure: it is one or two sorted tables (see
/// [`table`]), the cached one mapped from the local cache and, when index files were added
/// since it was built, a small one for those. A blob in both is answered from the first.
#[derive(Default, Debug)]
pub struct MasterIndex {
    tables: Vec<Table>,
    blobs: usize,
}

impl MasterIndex {
    /// Tables in the order they are asked; each holds packs the earlier ones do not.
    pub(crate) fn from_tables(tables: Vec<Table>) -> MasterIndex {
        let mut blobs = 0;
        for (i, t) in tables.iter().enumerate() {
            blobs += if i == 0 {
                t.blob_count()
            } else {
                t.blobs()
                    .filter(|(id, _)| !tables[..i].iter().any(|e| e.contains(id)))
                    .count()
            };
        }
        MasterIndex { tables, blobs }
    }

    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        self.tables.iter().find_map(|t| t.get(id))
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.tables.iter().any(|t| t.contains(id))
    }

    /// Every pack with every blob it holds (duplicates of blobs held elsewhere included).
    pub fn packs(&self) -> impl Iterator<Item = (PackId, PackBlobs<'_>)> {
        self.tables.iter().flat_map(|table| {
            (0..table.pack_count())
                .map(move |slot| (table.pack_id(slot), PackBlobs { table, slot }))
        })
    }

    pub fn pack_count(&self) -> usize {
        self.tables.iter().map(|t| t.pack_count()).sum()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs
    }

    /// Each distinct blob once, with the location reads use.
    pub fn blobs(&self) -> impl Iterator<Item = (BlobId, BlobLocation)> + '_ {
        self.tables.iter().enumerate().flat_map(move |(i, t)| {
            t.blobs()
                .filter(move |(id, _)| !self.tables[..i].iter().any(|e| e.contains(id)))
        })
    }
}

/// The blobs of one pack, by offset.
#[derive(Clone, Copy)]
pub struct PackBlobs<'a> {
    table: &'a Table,
    slot: usize,
}

impl<'a> PackBlobs<'a> {
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PackedBlob> + 'a {
        self.table.pack_blobs(self.slot)
    }

    pub fn len(&self) -> usize {
        self.iter().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_vec(&self) -> Vec<PackedBlob> {
        self.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn arb_blob() -> impl Strategy<Value = PackedBlob> {
        (
            any::<bool>(),
            any::<[u8; 32]>(),
            0u32..1 << 30,
            0u32..1 << 30,
            any::<u32>(),
        )
            .prop_map(|(t, id, offset, length, raw_length)| PackedBlob {
                kind: if t { BlobKind::Tree } else { BlobKind::Data },
                id: BlobId(id),
                offset,
                length,
                raw_length,
            })
    }

    proptest! {
        #[test]
        fn index_round_trip(
            sup in proptest::collection::vec(any::<[u8; 32]>(), 0..3),
            packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec(arb_blob(), 0..10)), 0..10)
        ) {
            let idx = IndexFile {
                supersedes: sup.into_iter().map(IndexId).collect(),
                packs: packs.into_iter().map(|(id, blobs)| PackEntry { id: PackId(id), blobs }).collect(),
            };
            let key = MasterKey::generate();
            let back = IndexFile::open("t", &key, &idx.seal(&key)).unwrap();
            prop_assert_eq!(back, idx);
        }

        /// The master index answers exactly as a plain map built the obvious way: first pack
        /// (then lowest offset) wins for a blob held twice, a pack added twice counts once, ids that share their
        /// leading bytes (the bucket) are still told apart, and it makes no difference whether
        /// the packs sit in one table or in a table plus one for the packs added after it.
        #[test]
        fn master_index_matches_a_plain_map(
            packs in proptest::collection::vec((0u8..12, proptest::collection::vec((0u8..40, any::<u8>(), arb_blob()), 0..12)), 0..20),
            probes in proptest::collection::vec((0u8..48, any::<u8>()), 0..40),
            split in 0usize..21,
        ) {
            // Small id spaces force duplicates; later bytes vary past the leading ones.
            let blob_id = |a: u8, b: u8| { let mut id = [0u8; 32]; id[0] = a % 4; id[9] = a; id[31] = b % 3; BlobId(id) };
            let mut model: HashMap<BlobId, BlobLocation> = HashMap::new();
            let mut model_packs: Vec<(PackId, Vec<PackedBlob>)> = Vec::new();
            let mut entries = Vec::new();
            for (p, blobs) in packs {
                let pack = PackId([p; 32]);
                // Listed out of order, as a pack's header need not be; offsets are distinct.
                let blobs: Vec<PackedBlob> = blobs.into_iter().enumerate().map(|(i, (a, b, mut blob))| { blob.id = blob_id(a, b); blob.offset = (i as u32 * 7919) % 101; blob }).collect();
                let mut sorted = blobs.clone();
                sorted.sort_by_key(|b| b.offset);
                if !model_packs.iter().any(|(id, _)| *id == pack) {
                    for b in &sorted {
                        model.entry(b.id).or_insert(BlobLocation { pack, kind: b.kind, offset: b.offset, length: b.length, raw_length: b.raw_length });
                    }
                    model_packs.push((pack, sorted));
                }
                entries.push(PackEntry { id: pack, blobs });
            }
            let later = entries.split_off(split.min(entries.len()));
            let key = [5u8; 32];
            let first = Table::build(table::Source { seen: vec![], sources: vec![], packs: entries }, &|_| false, None, &key).unwrap();
            let held: std::collections::HashSet<PackId> = (0..first.pack_count()).map(|s| first.pack_id(s)).collect();
            let second = Table::build(table::Source { seen: vec![], sources: vec![], packs: later }, &|p| held.contains(p), None, &key).unwrap();
            let master = MasterIndex::from_tables(vec![first, second]);
            prop_assert_eq!(master.blob_count(), model.len());
            prop_assert_eq!(master.pack_count(), model_packs.len());
            for (id, loc) in &model {
                prop_assert_eq!(master.get(id), Some(*loc));
            }
            for (a, b) in probes {
                let id = blob_id(a, b);
                prop_assert_eq!(master.contains(&id), model.contains_key(&id));
            }
            let listed: HashMap<BlobId, BlobLocation> = master.blobs().collect();
            prop_assert_eq!(listed.len(), master.blob_count());
            prop_assert_eq!(listed, model);
            let packs: Vec<(PackId, Vec<PackedBlob>)> = master.packs().map(|(id, b)| (id, b.to_vec())).collect();
            prop_assert_eq!(packs, model_packs);
        }

        #[test]
        fn index_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode("fuzz", &b);
        }
    }
}
