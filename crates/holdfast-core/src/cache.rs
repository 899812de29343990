//! Local cache of index files, snapshots and tree packs.
//!
//! Listing snapshots, browsing a snapshot and deciding what changed since the last backup need
//! only metadata; fetching it from object storage on every run would dominate run time. Every
//! cached object is named by the hash of its bytes, so a damaged cache entry is detected on
//! read and fetched again: the cache can speed things up but never change an answer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache folder for one repository: `$HOLDFAST_CACHE_DIR`, else the XDG cache dir.
    pub fn open(repo_id: &str) -> Option<Cache> {
        let base = std::env::var_os("HOLDFAST_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("holdfast")))?;
        let dir = base.join(repo_id);
        // Cached snapshots and trees name every backed-up file: owner-only, like the repository.
        crate::private::create_dir_all(&base).ok()?;
        crate::private::create_dir_all(&dir).ok()?;
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = crate::private::write(
                &tag,
                b"Signature: 8a477f597d28d172789f06886806bc55\n# holdfast cache: safe to delete\n",
            );
        }
        Some(Cache { dir })
    }

    /// Where the cache keeps a file of its own (not a copy of a repository object).
    pub fn own_file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The cached bytes of `path`, if present and intact.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        let file = self.dir.join(path);
        let bytes = std::fs::read(&file).ok()?;
        match crate::id::verify_addressed(path, bytes) {
            Ok(b) => Some(b),
            Err(_) => {
                let _ = std::fs::remove_file(&file);
                None
            }
        }
    }

    /// Stores a copy; failures only cost speed, so they are ignored.
    pub fn put(&self, path: &str, bytes: &[u8]) {
        let file = self.dir.join(path);
        if let Some(parent) = file.parent() {
            let _ = crate::private::create_dir_all(parent);
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = parent.join(format!(".tmp-{}-{seq}", std::process::id()));
            if crate::private::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
    }

    /// Forgets cached objects below `dir` that the repository no longer has.
    pub fn retain(&self, dir: &str, keep: &HashSet<String>) {
        let root = self.dir.join(dir);
        let Ok(rd) = walk_files(&root) else { return };
        for f in rd {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(&f);
            }
        }
    }
}

fn walk_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            out.extend(walk_files(&e.path())?);
        } else {
            out.push(e.path());
        }
    }
    Ok(out)
}
