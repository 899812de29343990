//! Authenticated encryption of every stored object, and keyed ids.
//!
//! One random master key per repository: 32 bytes for XChaCha20-Poly1305 and 32 bytes for
//! keyed BLAKE3 ids. XChaCha's 24-byte nonces are safe to draw at random for every object,
//! which matters because many hosts write into one repository without coordinating counters.
//! Blob ids are keyed so that an id reveals nothing about content to someone without the key.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::BlobId;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted object has beyond its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The repository secret: never stored in the clear, wrapped by each key file.
#[derive(Clone, Serialize, Deserialize)]
pub struct MasterKey {
    #[serde(with = "hex_bytes")]
    encrypt: [u8; 32],
    #[serde(with = "hex_bytes")]
    id: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = MasterKey {
            encrypt: [0; 32],
            id: [0; 32],
        };
        rand::rngs::OsRng.fill_bytes(&mut k.encrypt);
        rand::rngs::OsRng.fill_bytes(&mut k.id);
        k
    }

    /// The key of the MAC that makes a locally cached index table trustworthy (see
    /// `index::table`): derived, so it says nothing about the id key.
    pub fn table_mac_key(&self) -> [u8; 32] {
        blake3::derive_key("holdfast 2026-12-03 index table MAC", &self.id)
    }

    /// The id of a blob: keyed BLAKE3 of its plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.encrypt, plaintext)
    }

    /// Seals into `out` (emptied first) the plaintext that `fill` appends to it: the same
    /// bytes as [`MasterKey::seal`], encrypted in place, so a caller that reuses `out`
    /// allocates and copies nothing per object.
    pub fn seal_into(&self, out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
        seal_into_with(&self.encrypt, out, fill)
    }

    pub fn open(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        open_with(&self.encrypt, sealed).ok_or_else(|| {
            Error::corrupt(what, "authentication failed (data was changed or damaged)")
        })
    }

    /// [`Self::open`] within `sealed` (no second buffer: a restore opens every chunk it
    /// writes); returns the plaintext's part of it.
    pub fn open_in_place<'a>(&self, what: &str, sealed: &'a mut [u8]) -> Result<&'a [u8]> {
        open_in_place_with(&self.encrypt, sealed).ok_or_else(|| {
            Error::corrupt(what, "authentication failed (data was changed or damaged)")
        })
    }
}

fn open_in_place_with<'a>(key: &[u8; 32], sealed: &'a mut [u8]) -> Option<&'a [u8]> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            b"",
            ct,
            chacha20poly1305::Tag::from_slice(tag),
        )
        .ok()?;
    Some(ct)
}

/// Encrypts `plaintext` as `nonce || ciphertext || tag`.
pub fn seal_with(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    seal_into_with(key, &mut out, |o| o.extend_from_slice(plaintext));
    out
}

/// [`seal_with`] into `out` (emptied first), of what `fill` appends, encrypted in place.
fn seal_into_with(key: &[u8; 32], out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
    out.clear();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    fill(out);
    let tag = XChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
    out.extend_from_slice(&tag);
}

/// Decrypts what [`seal_with`] produced; `None` when the key is wrong or the bytes changed.
pub fn open_with(key: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher.decrypt(XNonce::from_slice(nonce), ct).ok()
}

pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"hello");
        assert_eq!(k.open("x", &sealed).unwrap(), b"hello");
        let mut reused = b"left over from an earlier object".to_vec();
        k.seal_into(&mut reused, |o| o.extend_from_slice(b"hello"));
        assert_eq!(reused.len(), sealed.len());
        assert_ne!(reused, sealed, "each object gets its own nonce");
        assert_eq!(k.open("x", &reused).unwrap(), b"hello");
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert!(k.open("x", &bad).is_err());
        let other = MasterKey::generate();
        assert!(other.open("x", &sealed).is_err());
        assert_ne!(k.blob_id(b"a"), other.blob_id(b"a"));
        assert_eq!(k.blob_id(b"a"), k.blob_id(b"a"));
    }
}
