//! `rewrite`: files taken out of stored snapshots (a credentials file backed up by mistake),
//! the data freed by the next prune, nothing else changed.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;

/// The file paths of a restored tree, relative to `root`.
fn files_below(root: &Path) -> BTreeSet<String> {
    snapshot_tree(root)
        .into_iter()
        .filter(|(_, e)| e.kind == libc::S_IFREG)
        .map(|(p, _)| String::from_utf8(p).unwrap())
        .collect()
}

fn removed_paths(v: &serde_json::Value) -> Vec<String> {
    v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

fn rewrite_takes_files_out_and_prune_frees_them(env: Env) {
    env.init();
    let src = env.path("src");
    for d in ["config", "logs/old", "data"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    random_file(&src.join("config/secrets.json"), 300 << 10, 1);
    std::fs::write(src.join("config/settings.json"), "{\"port\": 11200}").unwrap();
    std::fs::write(src.join("logs/a.log"), "a\n").unwrap();
    std::fs::write(src.join("logs/old/b.log"), "bb\n").unwrap();
    random_file(&src.join("data/x.bin"), 100 << 10, 2);
    let first = env.backup(&src)["id"].as_str().unwrap().to_string();
    random_file(&src.join("data/y.bin"), 50 << 10, 3);
    let second = env.backup(&src)["id"].as_str().unwrap().to_string();
    let stats_before = env.json(&["stats"]);

    let excludes = ["--exclude", "config/secrets.json", "--exclude", "*.log"];
    let rewrite = |extra: &[&str]| {
        let mut a = vec!["rewrite", &first[..12], &second[..12]];
        a.extend_from_slice(&excludes);
        a.extend_from_slice(extra);
        env.json(&a)
    };

    // A dry run says what would go, in each snapshot, and writes nothing.
    let dry = rewrite(&["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    for s in dry["snapshots"].as_array().unwrap() {
        assert_eq!(
            removed_paths(s),
            ["/config/secrets.json", "/logs/a.log", "/logs/old/b.log"],
            "{s}"
        );
        assert!(s["new"].is_null(), "{s}");
        let files: u64 = s["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["files"].as_u64().unwrap())
            .sum();
        assert_eq!(files, 3);
    }
    let ids = |v: serde_json::Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(env.json(&["snapshots"])),
        BTreeSet::from([first.clone(), second.clone()]),
        "a dry run changed the snapshots"
    );

    // For real: each snapshot is replaced by one without the matches.
    let done = rewrite(&[]);
    let new: Vec<String> = done["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["new"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids(env.json(&["snapshots"])),
        BTreeSet::from_iter(new.clone())
    );
    assert!(!new.contains(&first) && !new.contains(&second));
    let found = env.json(&["find", "secrets.json", "*.log"]);
    assert_eq!(found.as_array().unwrap().len(), 0, "still found: {found}");

    // The new snapshots restore exactly what was kept; the old ids still name them.
    let out = env.path("out");
    env.ok(&["restore", &first[..12], "--target", out.to_str().unwrap()]);
    assert_eq!(
        files_below(&out),
        BTreeSet::from(["config/settings.json".to_string(), "data/x.bin".into()])
    );
    assert_eq!(
        std::fs::read(out.join("data/x.bin")).unwrap(),
        std::fs::read(src.join("data/x.bin")).unwrap()
    );
    let snap = env.json(&["cat", "snapshot", &new[1]])["snapshot"].clone();
    assert_eq!(snap["replaces"].as_str().unwrap(), second, "{snap}");
    assert_eq!(snap["rewrites"][0]["removed_files"], 3, "{snap}");
    assert_eq!(snap["rewrites"][0]["removed_entries"], 3, "{snap}");
    assert_eq!(snap["summary"]["total_files"], 3, "{snap}");

    // The secret's data is unreferenced now, and prune frees it.
    let stats_after = env.json(&["stats"]);
    let unique = |v: &serde_json::Value| v["unique_bytes"].as_u64().unwrap();
    let stored = |v: &serde_json::Value| v["repository_stored_bytes"].as_u64().unwrap();
    assert!(
        unique(&stats_before) - unique(&stats_after) >= 300 << 10,
        "{stats_before} -> {stats_after}"
    );
    env.ok(&["prune"]);
    let stats_pruned = env.json(&["stats"]);
    assert!(
        stored(&stats_before) - stored(&stats_pruned) >= 290 << 10,
        "prune freed too little: {stats_before} -> {stats_pruned}"
    );
    env.ok(&["check", "--read-data"]);

    // Nothing matches any more: the snapshots are left as they are.
    let again = rewrite(&[]);
    for s in again["snapshots"].as_array().unwrap() {
        assert!(s["new"].is_null() && removed_paths(s).is_empty(), "{s}");
    }
    assert_eq!(ids(env.json(&["snapshots"])), BTreeSet::from_iter(new));
}
on_both_backends!(rewrite_takes_files_out_and_prune_frees_them);

#[test]
fn rewrite_takes_a_directory_and_refuses_without_a_pattern() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("exports/2026/12")).unwrap();
    std::fs::write(src.join("exports/2026/12/a.csv"), "1,2\n").unwrap();
    std::fs::write(src.join("exports/2026/b.csv"), "3,4,5\n").unwrap();
    std::fs::write(src.join("keep.txt"), "k").unwrap();
    let id = env.backup(&src)["id"].as_str().unwrap().to_string();

    // No pattern, or a bad one: a usage error, nothing written.
    let o = env.run(&["rewrite", "latest"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = env.run(&["rewrite", "latest", "--exclude", "["]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("bad exclude pattern"), "{}", stderr(&o));
    let o = env.run(&["rewrite", "0000000000", "--exclude", "x"]);
    assert_ne!(code(&o), 0, "an unknown snapshot is an error");

    // An absolute pattern (the backed-up directory's own path) takes a directory whole.
    let pattern = format!("{}/exports", src.display());
    let text = env.ok(&["rewrite", "latest", "--exclude", &pattern]);
    assert!(text.contains("/exports/"), "{text}");
    assert!(text.contains("2 file(s)"), "{text}");
    let out = env.path("out");
    env.ok(&["restore", &id[..12], "--target", out.to_str().unwrap()]);
    assert_eq!(files_below(&out), BTreeSet::from(["keep.txt".to_string()]));
    env.ok(&["check"]);
}
