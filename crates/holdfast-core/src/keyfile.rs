//! Key files: the master key wrapped by a password.
//!
//! A repository may have several key files (one per person or machine), each wrapping the same
//! master key with a key derived from its own password by Argon2id, so a password can be added
//! or revoked without re-encrypting any data.

use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, MasterKey};
use crate::error::{Error, Result};

/// Argon2id cost, stored in each key file so it can be raised later without breaking old keys.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 4 lanes (computed in parallel): well under a tenth of a second on two
    /// cores. OWASP's recommended floor is 19 MiB/2 passes, so this leaves margin against
    /// offline guessing.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 4,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    pub created: DateTime<Utc>,
    pub hostname: String,
    pub username: String,
    pub kdf: String,
    pub params: KdfParams,
    pub salt: String,
    /// The sealed master key (hex of nonce || ciphertext || tag).
    pub data: String,
}

impl KeyFile {
    pub fn wrap(master: &MasterKey, password: &[u8], params: KdfParams) -> Result<KeyFile> {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let kek = derive(password, &salt, params)?;
        let plain = serde_json::to_vec(master).expect("master key serialises");
        let sealed = crypto::seal_with(&kek, &plain);
        Ok(KeyFile {
            created: Utc::now(),
            hostname: crate::host::hostname(),
            username: crate::host::username(),
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            data: hex::encode(sealed),
        })
    }

    /// The master key, or `None` when the password does not open this key file.
    pub fn unwrap_key(&self, password: &[u8]) -> Result<Option<MasterKey>> {
        if self.kdf != "argon2id" {
            return Err(Error::Invalid(format!(
                "unknown key derivation '{}'",
                self.kdf
            )));
        }
        let salt =
            hex::decode(&self.salt).map_err(|e| Error::corrupt("key file salt", e.to_string()))?;
        let sealed =
            hex::decode(&self.data).map_err(|e| Error::corrupt("key file data", e.to_string()))?;
        let kek = derive(password, &salt, self.params)?;
        match crypto::open_with(&kek, &sealed) {
            None => Ok(None),
            Some(plain) => serde_json::from_slice(&plain)
                .map(Some)
                .map_err(|e| Error::corrupt("key file", e.to_string())),
        }
    }
}

/// Key files are not authenticated: a planted one must not make opening take all memory.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 64;

fn derive(password: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32]> {
    if p.memory_kib > MAX_MEMORY_KIB
        || p.iterations > MAX_ITERATIONS
        || p.parallelism > MAX_PARALLELISM
    {
        return Err(Error::Invalid(format!(
            "Argon2 cost {} KiB / {} passes / {} lanes is beyond what holdfast accepts",
            p.memory_kib, p.iterations, p.parallelism
        )));
    }
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::Invalid(format!("Argon2 parameters: {e}")))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::Invalid(format!("Argon2: {e}")))?;
    Ok(out)
}

/// A new random password, for a repository whose password a machine types (a password file):
/// 192 bits from the OS, as 48 hex digits.
pub fn random_password() -> String {
    let mut secret = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    hex::encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let mk = MasterKey::generate();
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let kf = KeyFile::wrap(&mk, b"secret", p).unwrap();
        let back = kf.unwrap_key(b"secret").unwrap().unwrap();
        assert_eq!(back.blob_id(b"x"), mk.blob_id(b"x"));
        assert!(kf.unwrap_key(b"wrong").unwrap().is_none());
    }
}
