//! `backup --dry-run` and `restore --dry-run`: they say what would happen and change nothing,
//! neither in the repository nor in its cache nor in the restore target.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;

/// Every file below `root` with its size (what a write anywhere in it would change).
fn listing(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path().display().to_string(), m.len());
            }
        }
    }
    out
}

fn backup_dry_run_reports_and_writes_nothing(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("data")).unwrap();
    random_file(&src.join("data/a.bin"), 200 << 10, 1);
    random_file(&src.join("data/b.bin"), 100 << 10, 2);
    std::fs::write(src.join("data/c.tmp"), "scratch").unwrap();
    random_file(&src.join("cache/big.bin"), 300 << 10, 3);
    let s = src.to_str().unwrap();
    let stats = || env.json(&["stats"]);
    // stats first: it writes the cache's index table, which a backup would write too.
    let stats_before = stats();
    let before = (listing(&env.repo), listing(&env.cache), stats_before);

    let dry = env.json(&[
        "backup",
        s,
        "--dry-run",
        "--exclude",
        "*.tmp",
        "--exclude",
        "cache",
    ]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["files_new"], 2, "{dry}");
    assert_eq!(dry["total_bytes"], 300 << 10, "{dry}");
    assert!(dry["bytes_stored"].as_u64().unwrap() >= 300 << 10, "{dry}");
    assert_eq!(dry["excluded_total"], 2, "{dry}");
    let excluded: Vec<String> = dry["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        excluded,
        [format!("{s}/cache"), format!("{s}/data/c.tmp")],
        "{dry}"
    );
    let after = (listing(&env.repo), listing(&env.cache));
    let after = (after.0, after.1, stats());
    assert_eq!(
        before, after,
        "the dry run wrote to the repository or its cache"
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);

    // After a real backup, a dry run sees what changed and what is already stored.
    env.backup(&src);
    std::fs::write(src.join("data/c.tmp"), "scratch 2").unwrap();
    random_file(&src.join("data/new.bin"), 50 << 10, 4);
    let text = env.ok(&["backup", s, "-n", "--exclude", "cache"]);
    assert!(
        text.contains("excluded  ") && text.contains("/cache"),
        "{text}"
    );
    let dry = env.json(&["backup", s, "--dry-run", "--exclude", "cache"]);
    assert_eq!(dry["files_new"], 1, "{dry}");
    assert_eq!(dry["files_changed"], 1, "{dry}");
    assert_eq!(dry["files_unchanged"], 2, "{dry}");
    let added = dry["bytes_added"].as_u64().unwrap();
    assert!((50 << 10..100 << 10).contains(&added), "{dry}");
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
    env.ok(&["check"]);
}
on_both_backends!(backup_dry_run_reports_and_writes_nothing);

fn restore_dry_run_says_what_it_would_write_replace_or_refuse(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/one"), "1").unwrap();
    std::fs::write(src.join("two"), "22").unwrap();
    std::os::unix::fs::symlink("two", src.join("link")).unwrap();
    random_file(&src.join("big.bin"), 1 << 20, 5);
    env.backup(&src);
    let out = env.path("out");
    let t = out.to_str().unwrap();

    // Into a new directory: everything created, and the target is not even made.
    let v = env.json(&["restore", "latest", "--target", t, "--dry-run"]);
    let p = &v["preview"];
    assert_eq!(
        (p["create"].as_u64(), p["files"].as_u64()),
        (Some(5), Some(3)),
        "{v}"
    );
    assert_eq!(p["bytes"], 3 + (1 << 20), "{v}");
    assert!(p["refused"].is_null() && p["missing_chunks"] == 0, "{v}");
    assert!(!out.exists(), "a dry run made the target");
    let text = env.ok(&["restore", "latest", "--target", t, "-n"]);
    assert!(
        text.contains("+    /d/one") && text.contains("+    /d/"),
        "{text}"
    );

    // Into a non-empty one: refused without --overwrite (exit 1), replaced with it.
    std::fs::create_dir_all(out.join("d")).unwrap();
    std::fs::write(out.join("two"), "old").unwrap();
    let o = env.run(&["restore", "latest", "--target", t, "--dry-run", "--json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["preview"]["refused"]
            .as_str()
            .unwrap()
            .contains("not empty"),
        "{v}"
    );
    let v = env.json(&[
        "restore",
        "latest",
        "--target",
        t,
        "--dry-run",
        "--overwrite",
    ]);
    let p = &v["preview"];
    assert_eq!(
        (
            p["replace"].as_u64(),
            p["keep"].as_u64(),
            p["create"].as_u64()
        ),
        (Some(1), Some(1), Some(3)),
        "{v}"
    );
    assert_eq!(
        std::fs::read(out.join("two")).unwrap(),
        b"old",
        "a dry run wrote"
    );
    assert!(!out.join("d/one").exists());

    // With --include, only what matches (and nothing else) is counted.
    let v = env.json(&[
        "restore",
        "latest",
        "--target",
        t,
        "-n",
        "--overwrite",
        "--include",
        "d/one",
    ]);
    assert_eq!(v["preview"]["files"], 1, "{v}");
}
on_both_backends!(restore_dry_run_says_what_it_would_write_replace_or_refuse);

/// Data gone from the repository (the pack of the large file, the largest, deleted from the
/// local folder): the dry run says the restore would fail (exit 14).
#[test]
fn restore_dry_run_finds_missing_data() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("small"), "s").unwrap();
    random_file(&src.join("big.bin"), 1 << 20, 5);
    env.backup(&src);
    let fine = env.run(&[
        "restore",
        "latest",
        "--target",
        env.path("out1").to_str().unwrap(),
        "-n",
    ]);
    assert_eq!(code(&fine), 0, "{}", stderr(&fine));
    let packs = listing(&env.repo.join("data"));
    let largest = packs.iter().max_by_key(|(_, len)| **len).unwrap().0;
    std::fs::remove_file(largest).unwrap();
    let o = env.run(&[
        "restore",
        "latest",
        "--target",
        env.path("out2").to_str().unwrap(),
        "-n",
    ]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("missing from the repository"), "{said}");
}
