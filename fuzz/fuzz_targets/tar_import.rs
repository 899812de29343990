//! Tar archives given to `holdfast import` are untrusted: whatever the bytes, importing must
//! not panic, and what it accepts must be a snapshot whose trees read back with safe names
//! (no `/`, `.` or `..`) and relative symlinks that stay inside the root. Entries are capped
//! at 64 MiB so that a sparse header declaring an exabyte of holes is refused, not chunked.
#![no_main]
use std::path::Path;
use std::sync::{Arc, OnceLock};

use holdfast_core::import::{import_stream, ImportOptions};
use holdfast_core::keyfile::KdfParams;
use holdfast_core::repo::{InitOptions, Repository};
use holdfast_core::storage::Storage;
use libfuzzer_sys::fuzz_target;

fn repo() -> Arc<Repository> {
    // One repository for the whole run, under a name run-brief.sh removes afterwards.
    static REPO: OnceLock<Arc<Repository>> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("holdfast-fuzz-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let storage = Storage::local(&dir, true).unwrap();
        let opts = InitOptions {
            kdf: KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..InitOptions::default()
        };
        Arc::new(Repository::init(storage, b"fuzz", &opts).unwrap())
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let repo = repo();
    let opts = ImportOptions {
        max_file_bytes: Some(64 << 20),
        ..ImportOptions::default()
    };
    let Ok(imported) = import_stream(repo.clone(), data, Path::new("fuzz.tar"), &opts) else {
        return;
    };
    // Every tree it stored reads back; names are safe; symlinks stay inside the root.
    let mut stack = vec![(imported.snapshot.tree, 0i64)];
    while let Some((id, depth)) = stack.pop() {
        let tree = repo.load_tree(&id).expect("a tree the import just wrote");
        for node in &tree.nodes {
            let name = &node.name.0;
            assert!(!name.contains(&b'/') && !name.is_empty());
            assert!(name != b"." && name != b"..");
            if let Some(target) = &node.target {
                assert!(!target.0.starts_with(b"/"), "absolute symlink accepted");
                let mut level = depth;
                for part in target.0.split(|&b| b == b'/') {
                    match part {
                        b"" | b"." => {}
                        b".." => level -= 1,
                        _ => level += 1,
                    }
                    assert!(level >= 0, "symlink climbs out of the root");
                }
            }
            if let Some(sub) = node.subtree {
                stack.push((sub, depth + 1));
            }
        }
    }
});
