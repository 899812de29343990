//! Index files and the in-memory index: which pack holds each blob, and where.
//!
//! Without an index, reading one chunk would mean scanning pack headers. Index files are
//! written once per backup for the packs it added (never updated); loading all of them gives
//! the master index. The encoding is fixed-width binary: index files are the largest metadata
//! a repository has and are parsed on every run.

use std::collections::HashMap;

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId, ID_LEN};
use crate::pack::{BlobKind, PackedBlob};

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

/// All index files merged: blob id -> location, and pack id -> its blobs.
///
/// This is the largest thing holdfast holds in memory (one entry per chunk in the
/// repository, about a million per terabyte), so it is laid out for size: each pack's blob
/// list is stored once, and the blob-id lookup table holds only an 8-byte reference into those
/// lists instead of a second copy of the id and location. Ids are keyed BLAKE3 outputs, so
/// their first eight bytes are already a uniform hash. See `docs/scale.md` for the numbers.
#[derive(Default)]
pub struct MasterIndex {
    /// Packs in the order they were added; `BlobRef::pack` indexes this.
    packs: Vec<(PackId, Vec<PackedBlob>)>,
    pack_slots: HashMap<PackId, u32>,
    /// One reference per distinct blob id: the first pack that holds it.
    blobs: hashbrown::HashTable<BlobRef>,
}

/// A blob's position in `MasterIndex::packs`: pack slot and position in that pack's list.
#[derive(Clone, Copy)]
struct BlobRef {
    pack: u32,
    blob: u32,
}

fn id_hash(id: &BlobId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().unwrap())
}

impl std::fmt::Debug for MasterIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterIndex")
            .field("packs", &self.packs.len())
            .field("blobs", &self.blobs.len())
            .finish()
    }
}

impl MasterIndex {
    /// Makes room for `blobs` more entries, so loading a large index does not rehash (and
    /// briefly double) the lookup table as it grows.
    pub fn reserve(&mut self, packs: usize, blobs: usize) {
        self.packs.reserve(packs);
        self.pack_slots.reserve(packs);
        let MasterIndex {
            packs: list,
            blobs: table,
            ..
        } = self;
        table.reserve(blobs, |r| {
            id_hash(&list[r.pack as usize].1[r.blob as usize].id)
        });
    }

    /// Adds a pack and its blobs. A pack already present is left as it is: pack ids are
    /// content addresses, so the same id lists the same blobs.
    pub fn add_pack(&mut self, entry: PackEntry) {
        if self.pack_slots.contains_key(&entry.id) {
            return;
        }
        let slot = u32::try_from(self.packs.len()).expect("fewer than 2^32 packs");
        self.pack_slots.insert(entry.id, slot);
        self.packs.push((entry.id, entry.blobs));
        let MasterIndex {
            packs: list,
            blobs: table,
            ..
        } = self;
        let lookup = |r: &BlobRef| &list[r.pack as usize].1[r.blob as usize].id;
        for (i, b) in list[slot as usize].1.iter().enumerate() {
            let hash = id_hash(&b.id);
            if table.find(hash, |r| lookup(r) == &b.id).is_none() {
                let r = BlobRef {
                    pack: slot,
                    blob: i as u32,
                };
                table.insert_unique(hash, r, |r| id_hash(lookup(r)));
            }
        }
    }

    fn resolve(&self, r: &BlobRef) -> (&PackId, &PackedBlob) {
        let (pack, blobs) = &self.packs[r.pack as usize];
        (pack, &blobs[r.blob as usize])
    }

    pub fn get(&self, id: &BlobId) -> Option<BlobLocation> {
        let r = self
            .blobs
            .find(id_hash(id), |r| &self.resolve(r).1.id == id)?;
        let (pack, b) = self.resolve(r);
        Some(location(pack, b))
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs
            .find(id_hash(id), |r| &self.resolve(r).1.id == id)
            .is_some()
    }

    /// Every pack with every blob it holds (duplicates of blobs held elsewhere included).
    pub fn packs(&self) -> impl Iterator<Item = (&PackId, &[PackedBlob])> {
        self.packs.iter().map(|(id, blobs)| (id, blobs.as_slice()))
    }

    pub fn pack(&self, id: &PackId) -> Option<&[PackedBlob]> {
        let slot = *self.pack_slots.get(id)?;
        Some(&self.packs[slot as usize].1)
    }

    pub fn contains_pack(&self, id: &PackId) -> bool {
        self.pack_slots.contains_key(id)
    }

    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Each distinct blob once, with the location reads use.
    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, BlobLocation)> {
        self.blobs.iter().map(|r| {
            let (pack, b) = self.resolve(r);
            (&b.id, location(pack, b))
        })
    }
}

fn location(pack: &PackId, b: &PackedBlob) -> BlobLocation {
    BlobLocation {
        pack: *pack,
        kind: b.kind,
        offset: b.offset,
        length: b.length,
        raw_length: b.raw_length,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

        /// The compact master index answers exactly as a plain map built the obvious way:
        /// first pack wins for a blob held twice, a pack added twice counts once, and ids that
        /// share their first eight bytes (the hash) are still told apart.
        #[test]
        fn master_index_matches_a_plain_map(
            packs in proptest::collection::vec((0u8..12, proptest::collection::vec((0u8..40, any::<u8>(), arb_blob()), 0..12)), 0..20),
            probes in proptest::collection::vec((0u8..48, any::<u8>()), 0..40),
        ) {
            // Small id spaces force duplicates; the second byte varies past the hashed prefix.
            let blob_id = |a: u8, b: u8| { let mut id = [0u8; 32]; id[0] = a % 4; id[9] = a; id[31] = b % 3; BlobId(id) };
            let mut master = MasterIndex::default();
            let mut model: HashMap<BlobId, BlobLocation> = HashMap::new();
            let mut model_packs: Vec<PackId> = Vec::new();
            for (p, blobs) in packs {
                let pack = PackId([p; 32]);
                let blobs: Vec<PackedBlob> = blobs.into_iter().map(|(a, b, mut blob)| { blob.id = blob_id(a, b); blob }).collect();
                if !model_packs.contains(&pack) {
                    model_packs.push(pack);
                    for b in &blobs {
                        model.entry(b.id).or_insert(location(&pack, b));
                    }
                }
                master.add_pack(PackEntry { id: pack, blobs });
            }
            prop_assert_eq!(master.blob_count(), model.len());
            prop_assert_eq!(master.pack_count(), model_packs.len());
            for (id, loc) in &model {
                prop_assert_eq!(master.get(id), Some(*loc));
            }
            for (a, b) in probes {
                let id = blob_id(a, b);
                prop_assert_eq!(master.contains(&id), model.contains_key(&id));
            }
            let listed: HashMap<BlobId, BlobLocation> = master.blobs().map(|(id, l)| (*id, l)).collect();
            prop_assert_eq!(listed, model);
            for pack in &model_packs {
                prop_assert!(master.contains_pack(pack) && master.pack(pack).is_some());
            }
        }

        #[test]
        fn index_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode("fuzz", &b);
        }
    }
}
