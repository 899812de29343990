//! Pack files: many encrypted blobs in one object, with an encrypted header at the end.
//!
//! Object stores charge per request and dislike millions of tiny objects, so chunks and trees
//! are grouped into packs of tens of MiB. The header lists what the pack holds, so a pack is
//! self-describing and the index can always be rebuilt from packs alone.
//!
//! Layout (see docs/format.md): `blob* || sealed(header) || header_len:u32le`.

use crate::crypto::{MasterKey, OVERHEAD};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, ID_LEN};

pub const HEADER_MAGIC: &[u8; 4] = b"HFPK";
pub const HEADER_VERSION: u8 = 1;
/// type + id + length + raw length.
const ENTRY_LEN: usize = 1 + ID_LEN + 4 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
}

impl BlobKind {
    pub fn from_u8(b: u8) -> Option<BlobKind> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Tree),
            _ => None,
        }
    }
}

/// Where one blob sits in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackedBlob {
    pub kind: BlobKind,
    pub id: BlobId,
    pub offset: u32,
    /// Stored (sealed) length.
    pub length: u32,
    /// Plaintext length after decompression.
    pub raw_length: u32,
}

/// Accumulates sealed blobs until the pack is big enough to store.
#[derive(Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

impl PackWriter {
    pub fn new() -> Self {
        Self::default()
    }
    /// A writer whose buffer will not need to grow before `bytes` (avoids a copy of a whole
    /// pack, and twice its size in memory, when the buffer doubles).
    pub fn with_capacity(bytes: usize) -> Self {
        let buf = Vec::with_capacity(bytes);
        huge_pages(buf.as_ptr(), buf.capacity());
        PackWriter {
            buf,
            blobs: Vec::new(),
        }
    }
    /// A writer filling `buf` (emptied first): a buffer of an earlier pack, given back by
    /// the storage, costs no new pages.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        PackWriter {
            buf,
            blobs: Vec::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
    pub fn add(&mut self, kind: BlobKind, id: BlobId, sealed: &[u8], raw_length: usize) {
        self.blobs.push(PackedBlob {
            kind,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_length: raw_length as u32,
        });
        self.buf.extend_from_slice(sealed);
    }

    /// Seals the header, appends it and returns the pack's id, bytes and contents.
    pub fn finish(mut self, key: &MasterKey) -> (PackId, Vec<u8>, Vec<PackedBlob>) {
        let header = encode_header(&self.blobs);
        let sealed = key.seal(&header);
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = PackId(crate::id::content_hash(&self.buf));
        (id, self.buf, self.blobs)
    }
}

pub fn encode_header(blobs: &[PackedBlob]) -> Vec<u8> {
    let mut h = Vec::with_capacity(9 + blobs.len() * ENTRY_LEN);
    h.extend_from_slice(HEADER_MAGIC);
    h.push(HEADER_VERSION);
    h.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
    for b in blobs {
        h.push(b.kind as u8);
        h.extend_from_slice(&b.id.0);
        h.extend_from_slice(&b.length.to_le_bytes());
        h.extend_from_slice(&b.raw_length.to_le_bytes());
    }
    h
}

/// Parses a decrypted header; offsets follow from the lengths, in order from 0.
pub fn decode_header(what: &str, h: &[u8]) -> Result<Vec<PackedBlob>> {
    let bad = |why: &str| Error::corrupt(format!("pack header of {what}"), why.to_string());
    if h.len() < 9 || &h[..4] != HEADER_MAGIC {
        return Err(bad("bad magic"));
    }
    if h[4] != HEADER_VERSION {
        return Err(bad(&format!("unknown header version {}", h[4])));
    }
    let count = u32::from_le_bytes(h[5..9].try_into().unwrap()) as usize;
    let body = &h[9..];
    if body.len()
        != count
            .checked_mul(ENTRY_LEN)
            .ok_or_else(|| bad("count overflow"))?
    {
        return Err(bad("length does not match entry count"));
    }
    let mut offset: u64 = 0;
    let mut out = Vec::with_capacity(count);
    for e in body.chunks_exact(ENTRY_LEN) {
        let kind = BlobKind::from_u8(e[0]).ok_or_else(|| bad("unknown blob type"))?;
        let id = BlobId(e[1..1 + ID_LEN].try_into().unwrap());
        let length = u32::from_le_bytes(e[33..37].try_into().unwrap());
        let raw_length = u32::from_le_bytes(e[37..41].try_into().unwrap());
        if (length as usize) < OVERHEAD + 1 || offset + length as u64 > u32::MAX as u64 {
            return Err(bad("impossible blob length"));
        }
        out.push(PackedBlob {
            kind,
            id,
            offset: offset as u32,
            length,
            raw_length,
        });
        offset += length as u64;
    }
    Ok(out)
}

/// Reads the header from the whole bytes of a pack, checking that blobs fill the pack exactly.
pub fn read_header(what: &str, key: &MasterKey, pack: &[u8]) -> Result<Vec<PackedBlob>> {
    let size = pack.len() as u64;
    let tail = pack.get(pack.len().saturating_sub(4)..).unwrap_or_default();
    let start = header_start(what, size, tail)?;
    open_header(what, key, &pack[start as usize..pack.len() - 4], start)
}

/// Where the sealed header of a pack of `size` bytes begins, from the pack's last 4 bytes
/// (`tail`, the header's length). Lets a reader fetch just the header with ranged reads.
pub fn header_start(what: &str, size: u64, tail: &[u8]) -> Result<u64> {
    let bad = |why: &str| Error::corrupt(format!("pack {what}"), why.to_string());
    let Ok(tail) = <[u8; 4]>::try_from(tail) else {
        return Err(bad("too short"));
    };
    let hlen = u32::from_le_bytes(tail) as u64;
    if size < 4 || hlen + 4 > size {
        return Err(bad("header length beyond pack"));
    }
    Ok(size - 4 - hlen)
}

/// Decrypts and decodes a pack's sealed header, checking that its blobs fill the pack exactly
/// up to `start`, where the header begins.
pub fn open_header(
    what: &str,
    key: &MasterKey,
    sealed: &[u8],
    start: u64,
) -> Result<Vec<PackedBlob>> {
    let header = key.open(&format!("pack header of {what}"), sealed)?;
    let blobs = decode_header(what, &header)?;
    let end = blobs
        .last()
        .map(|b| b.offset as u64 + b.length as u64)
        .unwrap_or(0);
    if end != start {
        return Err(Error::corrupt(
            format!("pack {what}"),
            "blobs and header do not add up to the pack size",
        ));
    }
    Ok(blobs)
}

/// Asks the kernel to back a pack buffer with transparent huge pages where it allows them on
/// request. Every pack is a fresh 16 MiB allocation, and faulting it in 4 KiB at a time
/// (4,096 faults, each zeroing and charging one page) cost about 4% of a first backup's CPU;
/// 2 MiB pages make that eight faults. The saver also reuses the buffer of a pack once it is
/// stored locally, which avoids the zeroing as well (see `SpareBuffers`).
fn huge_pages(allocation: *const u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = allocation as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + len) / HUGE * HUGE;
        if end > aligned {
            // SAFETY: advice only, on whole pages inside one allocation of the caller's; the
            // kernel never changes contents for it, and an error leaves the default page size.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (allocation, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let key = MasterKey::generate();
            let mut w = PackWriter::new();
            for (tree, data) in &blobs {
                let sealed = key.seal(&crate::compress::pack_payload(data, 1));
                let kind = if *tree { BlobKind::Tree } else { BlobKind::Data };
                w.add(kind, key.blob_id(data), &sealed, data.len());
            }
            let (id, bytes, entries) = w.finish(&key);
            prop_assert_eq!(id.0, crate::id::content_hash(&bytes));
            let parsed = read_header("t", &key, &bytes).unwrap();
            prop_assert_eq!(&parsed, &entries);
            for (e, (_, data)) in parsed.iter().zip(&blobs) {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                let payload = key.open("b", sealed).unwrap();
                prop_assert_eq!(&crate::compress::unpack_payload("b", &payload, e.raw_length as usize).unwrap(), data);
            }
        }

        #[test]
        fn header_parser_never_panics(h in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_header("fuzz", &h);
        }
    }
}
