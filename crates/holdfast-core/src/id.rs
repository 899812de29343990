//! Typed 32-byte identifiers.
//!
//! Every object in a repository is named by 32 bytes, but a blob id and a pack id are not
//! interchangeable: mixing them up is a bug the compiler should catch, so each kind of id is
//! its own type sharing one representation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length in bytes of every id.
pub const ID_LEN: usize = 32;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            /// A fresh random id (for objects named by a random id rather than by content).
            pub fn random() -> Self {
                let mut b = [0u8; ID_LEN];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
                Self(b)
            }
            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex characters, as shown in tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let mut b = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut b).map_err(|_| InvalidId(s.to_string()))?;
                Ok(Self(b))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// Names a blob (a chunk of file data or a tree): keyed BLAKE3 of its plaintext.
    BlobId
);
typed_id!(
    /// Names a pack file: unkeyed BLAKE3 of the pack's bytes as stored.
    PackId
);
typed_id!(
    /// Names a snapshot file: BLAKE3 of its stored bytes.
    SnapshotId
);
typed_id!(
    /// Names an index file: BLAKE3 of its stored bytes.
    IndexId
);
typed_id!(
    /// Names a key file: random.
    KeyId
);
typed_id!(
    /// Names a lock file: random.
    LockId
);

/// A string that is not 64 hex characters.
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not a 64-character hex id")]
pub struct InvalidId(pub String);

/// Plain BLAKE3 of bytes, for content-addressed file names.
pub fn content_hash(bytes: &[u8]) -> [u8; ID_LEN] {
    *blake3::hash(bytes).as_bytes()
}

/// Checks that a content-addressed object's bytes hash to its name (the last component of
/// `path`).
pub(crate) fn verify_addressed(path: &str, bytes: Vec<u8>) -> crate::error::Result<Vec<u8>> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if hex::encode(content_hash(&bytes)) != name {
        return Err(crate::error::Error::corrupt(
            path,
            "content does not match its name (damaged, or another object's content copied over it)",
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let id = BlobId::random();
        let back: BlobId = id.to_hex().parse().unwrap();
        assert_eq!(id, back);
        assert_eq!(id.short().len(), 8);
        assert!("abc".parse::<BlobId>().is_err());
        assert!("zz".repeat(32).parse::<BlobId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlobId>(&json).unwrap(), id);
    }
}
