//! Who may use the web console: an access token kept in a private file, or a password kept
//! only as an Argon2 hash in the configuration. The web crate asks; the rules and the files
//! live here so that a library user (or a test) makes and checks the same secrets.

use std::path::Path;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use crate::error::{Error, Result};

/// An Argon2id hash of `password` as a PHC string, for `[console] password_hash`.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Config(format!("hashing the password: {e}")))
}

/// Whether `hash` is a PHC string this version can check against.
pub fn check_hash_syntax(hash: &str) -> std::result::Result<(), String> {
    let parsed = argon2::password_hash::phc::PasswordHash::new(hash).map_err(|e| {
        format!("not a PHC hash string ({e}); make one with `holdfast serve --hash-password`")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!("{} is not an Argon2 hash", parsed.algorithm));
    }
    Ok(())
}

/// Whether `password` matches `hash` (a malformed hash matches nothing).
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// Compares two secrets in time that depends on their lengths only.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random secret: 32 bytes as 64 hex digits.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The console's access token from `path`, created (0600, in a 0700 folder) on first use.
/// Returns the token and whether it was just created. A token file that others can read is
/// refused: anyone who can read it can read every backed-up file.
pub fn load_or_create_token(path: &Path) -> Result<(String, bool)> {
    use std::os::unix::fs::MetadataExt;
    let io = |e| Error::Core(holdfast_core::Error::io(path, e));
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            if !m.file_type().is_file() {
                return Err(Error::Config(format!(
                    "{}: the console's token file is not a regular file",
                    path.display()
                )));
            }
            if m.mode() & 0o077 != 0 {
                return Err(Error::Config(format!(
                    "{}: the console's token file is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    m.mode() & 0o777
                )));
            }
            let token = std::fs::read_to_string(path)
                .map_err(io)?
                .trim()
                .to_string();
            if token.len() < 32 {
                return Err(Error::Config(format!(
                    "{}: the console's token is shorter than 32 characters",
                    path.display()
                )));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                holdfast_core::private::create_dir_all(dir).map_err(io)?;
            }
            let token = new_secret();
            holdfast_core::private::write_durably(path, format!("{token}\n").as_bytes())
                .map_err(io)?;
            Ok((token, true))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify_and_are_checked() {
        let h = hash_password("correct horse").unwrap();
        assert!(check_hash_syntax(&h).is_ok());
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("correct horse", "garbage"));
        assert!(check_hash_syntax("garbage").is_err());
    }

    #[test]
    fn token_file_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state/console-token");
        let (t, created) = load_or_create_token(&p).unwrap();
        assert!(created && t.len() == 64);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let (again, created) = load_or_create_token(&p).unwrap();
        assert!(!created);
        assert_eq!(again, t);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create_token(&p).unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
        assert!(same_secret(&t, &t) && !same_secret(&t, "x"));
    }
}
