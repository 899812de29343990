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
#[derive(Default, Debug)]
pub struct MasterIndex {
    blobs: HashMap<BlobId, BlobLocation>,
    packs: HashMap<PackId, Vec<PackedBlob>>,
}

impl MasterIndex {
    pub fn add_pack(&mut self, entry: &PackEntry) {
        for b in &entry.blobs {
            self.blobs.entry(b.id).or_insert(BlobLocation {
                pack: entry.id,
                kind: b.kind,
                offset: b.offset,
                length: b.length,
                raw_length: b.raw_length,
            });
        }
        self.packs.insert(entry.id, entry.blobs.clone());
    }
    pub fn get(&self, id: &BlobId) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }
    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }
    pub fn packs(&self) -> &HashMap<PackId, Vec<PackedBlob>> {
        &self.packs
    }
    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, &BlobLocation)> {
        self.blobs.iter()
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

        #[test]
        fn index_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode("fuzz", &b);
        }
    }
}
