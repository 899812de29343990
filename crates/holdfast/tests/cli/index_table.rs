//! The merged index that the cache keeps as a mapped table follows the repository: index
//! files written since it was built are read beside it, a prune or damage makes it rebuilt,
//! and it never answers for a repository it does not describe.

use std::path::{Path, PathBuf};

use crate::common::*;

fn table(env: &Env) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(&env.cache)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("index.table"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(found.len(), 1, "one table in the cache: {found:?}");
    found.into_iter().next().unwrap()
}

fn files(dir: &Path, n: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        random_file(&dir.join(format!("f{i:03}")), 3000 + i, seed + i as u64);
    }
}

fn restore_and_compare(env: &Env, snapshot: &str, src: &Path, name: &str) {
    let out = env.path(name);
    env.ok(&["restore", snapshot, "--target", out.to_str().unwrap()]);
    // Reading the source for earlier backups moved its access times; contents, modes and
    // times otherwise must match.
    assert_same_tree_but_atime(&snapshot_tree(src), src, &out);
}

#[test]
fn the_cached_index_table_follows_new_index_files_prunes_and_damage() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    files(&src.join("a"), 60, 1);
    let first = env.backup(&src)["id"].as_str().unwrap().to_string();
    // A command that loads the index builds the table from the one index file.
    env.ok(&["stats"]);
    let path = table(&env);
    let built = std::fs::read(&path).unwrap();

    // A small backup adds an index file: the next commands read it beside the table and
    // leave the table as it is (it is rebuilt only when new files reach an eighth of it).
    files(&src.join("b"), 2, 500);
    let second = env.backup(&src)["id"].as_str().unwrap().to_string();
    restore_and_compare(&env, &second, &src, "out1");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        built,
        "table rewritten for a small addition"
    );
    let stats = env.json(&["stats"]);
    let plain = env.json(&["--no-cache", "stats"]);
    assert_eq!(
        stats, plain,
        "table + new index file answer as the index files do"
    );

    // A damaged table is rebuilt, and answers stay right.
    let mut bad = built.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    restore_and_compare(&env, &second, &src, "out2");
    let rebuilt = std::fs::read(&path).unwrap();
    assert_ne!(rebuilt, bad, "damaged table kept");

    // A prune replaces the index files the table was built from: it is rebuilt, and blobs
    // only the forgotten snapshot used are gone from it.
    std::fs::remove_dir_all(src.join("a")).unwrap();
    let third = env.backup(&src)["id"].as_str().unwrap().to_string();
    env.ok(&["forget", &first, &second]);
    env.ok(&["prune"]);
    restore_and_compare(&env, &third, &src, "out3");
    let stats = env.json(&["stats"]);
    let plain = env.json(&["--no-cache", "stats"]);
    assert_eq!(stats, plain, "after prune");
    env.ok(&["check", "--read-data", "--with-cache"]);

    // The table of another repository (another key) is never taken for this one's.
    let other = Env::new();
    other.init();
    other.backup(&src);
    other.ok(&["stats"]);
    std::fs::copy(table(&other), &path).unwrap();
    let stats = env.json(&["stats"]);
    assert_eq!(stats, plain, "another repository's table was used");
}
