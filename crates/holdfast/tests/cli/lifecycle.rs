//! Retention and prune on the real binary: policies decide as documented, prune frees space,
//! respects locks, and a prune killed at any moment leaves every kept snapshot restorable.

use std::time::Duration;

use crate::common::*;
use rand::Rng;

fn repo_bytes(env: &Env) -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.file_type().unwrap().is_dir() {
                            walk(&e.path())
                        } else {
                            e.metadata().unwrap().len()
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&env.repo.join("data"))
}

#[test]
fn forget_by_policy_dry_run_then_for_real() {
    let env = Env::new();
    let src = env.path("data");
    std::fs::create_dir(&src).unwrap();
    env.init();
    let mut ids = Vec::new();
    for i in 0..5 {
        std::fs::write(src.join("f"), format!("version {i}")).unwrap();
        let tag = if i == 0 { "pre-upgrade" } else { "daily" };
        ids.push(
            env.json(&["backup", src.to_str().unwrap(), "--tag", tag])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let dry = env.json(&[
        "forget",
        "--keep-last",
        "2",
        "--keep-tag",
        "pre-upgrade",
        "--dry-run",
    ]);
    let decisions = dry["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 5);
    let kept: Vec<&str> = decisions
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 3, "{dry}");
    assert!(
        kept.contains(&ids[0].as_str())
            && kept.contains(&ids[3].as_str())
            && kept.contains(&ids[4].as_str())
    );
    let reasons = decisions
        .iter()
        .find(|d| d["id"] == ids[0].as_str())
        .unwrap()["reasons"]
        .to_string();
    assert!(reasons.contains("tag pre-upgrade"), "{reasons}");
    assert_eq!(
        env.json(&["snapshots"]).as_array().unwrap().len(),
        5,
        "dry run removed something"
    );
    let text = env.ok(&[
        "forget",
        "--keep-last",
        "2",
        "--keep-tag",
        "pre-upgrade",
        "--dry-run",
    ]);
    assert!(
        text.contains("would remove") && text.contains("last 2"),
        "{text}"
    );

    env.ok(&["forget", "--keep-last", "2", "--keep-tag", "pre-upgrade"]);
    let left: Vec<String> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![ids[0].clone(), ids[3].clone(), ids[4].clone()]);
    // By id; and no policy at all is refused.
    env.ok(&["forget", &ids[3][..10]]);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 2);
    let o = env.run(&["forget"]);
    assert_eq!(code(&o), 2, "a usage error");
    assert!(stderr(&o).contains("refusing to forget everything"));
}

/// `m` meant months in `--keep-within` and minutes in configuration timeouts: it is refused in
/// both places now, naming both spellings, and nothing is forgotten.
#[test]
fn an_ambiguous_duration_is_refused_in_flags_and_files_alike() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let o = env.run(&["forget", "--keep-within", "6m"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("6min") && stderr(&o).contains("6mo"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&[
        "backup",
        src.to_str().unwrap(),
        "--checkpoint-interval",
        "5m",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
    for (table, extra, key, line) in [
        ("retention", "keep_last = 1\n", "keep_within", 7),
        ("service", "", "quiesce_timeout", 6),
    ] {
        let cfg = env.path("holdfast.toml");
        std::fs::write(
            &cfg,
            format!(
                "repository = \"{}\"\n[app.a]\nprofile = \"dss\"\ndata_dir = \"{}\"\n[app.a.{table}]\n{extra}{key} = \"6m\"\n",
                env.repo.display(),
                src.display()
            ),
        )
        .unwrap();
        let o = env
            .cmd()
            .env("HOLDFAST_CONFIG", &cfg)
            .args(["config", "check"])
            .output()
            .unwrap();
        assert_eq!(code(&o), 4, "{key}: {}", stderr(&o));
        assert!(stderr(&o).contains("6min"), "{key}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("holdfast.toml:{line}:")),
            "{key}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn prune_frees_space_and_repacks_without_losing_anything() {
    let env = Env::new();
    env.init_small_packs();
    let keep_src = env.path("keep");
    let drop_src = env.path("drop");
    std::fs::create_dir(&keep_src).unwrap();
    std::fs::create_dir(&drop_src).unwrap();
    // Shared content lives in both snapshots; unique content only in the one forgotten.
    for i in 0..4 {
        random_file(&keep_src.join(format!("shared{i}")), 300 * 1024, i);
        random_file(&drop_src.join(format!("shared{i}")), 300 * 1024, i);
        random_file(&drop_src.join(format!("only{i}")), 300 * 1024, 100 + i);
    }
    let dropped = env.backup(&drop_src)["id"].as_str().unwrap().to_string();
    env.backup(&keep_src);
    let expected = snapshot_tree(&keep_src);
    let before = repo_bytes(&env);
    env.ok(&["forget", &dropped[..12]]);
    let dry = env.json(&["prune", "--dry-run", "--repack-threshold", "0%"]);
    assert!(dry["blobs_removed"].as_u64().unwrap() >= 4, "{dry}");
    assert_eq!(repo_bytes(&env), before, "dry run changed the repository");
    let r = env.json(&["prune", "--repack-threshold", "0%"]);
    assert!(
        r["packs_repacked"].as_u64().unwrap() + r["packs_deleted"].as_u64().unwrap() >= 1,
        "{r}"
    );
    let after = repo_bytes(&env);
    assert!(
        after < before - 1024 * 1024,
        "prune freed too little: {before} -> {after}"
    );
    env.ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--verify",
        "--no-cache",
    ]);
    assert_same_tree(&expected, &keep_src, &out);
    // A second prune finds nothing to do, and the next backup still deduplicates.
    let again = env.json(&["prune"]);
    assert_eq!(again["packs_deleted"], 0);
    let b = env.backup(&keep_src);
    assert!(
        b["snapshot"]["summary"]["bytes_added"].as_u64().unwrap() < 10_000,
        "{b}"
    );
}

#[test]
fn prune_waits_for_a_running_backup() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    env.backup(&src);
    // A live shared lock, as a running backup holds.
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let lock = serde_json::json!({"time": chrono::Utc::now().to_rfc3339(), "exclusive": false, "hostname": host,
        "username": "root", "pid": std::process::id(), "command": "backup"});
    std::fs::create_dir_all(env.repo.join("locks")).unwrap();
    std::fs::write(
        env.repo.join("locks").join("e".repeat(64)),
        lock.to_string(),
    )
    .unwrap();
    let o = env.run(&["prune"]);
    assert_eq!(code(&o), 11, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("locked shared by backup"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&["forget", "--keep-last", "1"]);
    assert_eq!(code(&o), 11);
}

#[test]
fn killed_prunes_never_harm_kept_snapshots() {
    let mut rng = seeded_rng("prune crash test");
    let env = Env::new();
    env.init_small_packs();
    let mut snaps = Vec::new();
    for i in 0..12u64 {
        let src = env.path(&format!("s{i}"));
        std::fs::create_dir(&src).unwrap();
        for j in 0..3u64 {
            random_file(&src.join(format!("u{j}")), 200 * 1024, i * 10 + j);
        }
        // Shared with the next source, so packs mix live and dead blobs after a forget.
        random_file(&src.join("shared"), 150 * 1024, 1000 + i / 2);
        let id = env.backup(&src)["id"].as_str().unwrap().to_string();
        snaps.push((id, src.clone(), snapshot_tree(&src)));
    }
    // A prune that finished before its kill shortens the next wait.
    let mut killed = 0;
    let mut upper = 150;
    for round in 0..11 {
        let (gone, _, _) = snaps.remove(0);
        env.ok(&["forget", &gone[..16]]);
        let mut child = env
            .cmd()
            .args(["prune", "--repack-threshold", "0%"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..upper)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            upper = (upper / 2).max(5);
        }
        let _ = child.kill();
        child.wait().unwrap();
        let o = env.run(&["check"]);
        assert!(
            o.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        for (id, src, expected) in &snaps {
            let out = env.path(&format!("r{round}-{}", &id[..8]));
            env.ok(&[
                "restore",
                &id[..16],
                "--target",
                out.to_str().unwrap(),
                "--no-cache",
            ]);
            assert_same_tree(expected, src, &out);
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    assert!(
        killed >= 5,
        "only {killed} prunes were killed while running"
    );
    env.ok(&["prune", "--repack-threshold", "0%"]);
    env.ok(&["check", "--read-data"]);
    let stats = env.json(&["stats"]);
    assert_eq!(stats["snapshots"], 1);
}

/// Reading the data moves access times and nothing else: the next backup stores no new tree
/// (the snapshot's root tree is the parent's), and what is restored still has the access
/// times of the first backup. A file that really changed gets its new access time.
#[test]
fn reading_files_does_not_change_the_trees() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    for d in ["a", "a/b", "c"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    for f in ["a/1", "a/b/2", "c/3", "4"] {
        std::fs::write(src.join(f), f.repeat(1000)).unwrap();
        // An access time before the modification time: the kernel's relatime rule then
        // updates it on the next read.
        let m = std::fs::metadata(src.join(f)).unwrap();
        filetime::set_file_atime(
            src.join(f),
            filetime::FileTime::from_unix_time(m.mtime() - 3600, 0),
        )
        .unwrap();
    }
    let first = env.backup(&src);
    let atime_before = std::fs::metadata(src.join("a/b/2")).unwrap().atime();
    for f in ["a/1", "a/b/2", "c/3", "4"] {
        std::fs::read(src.join(f)).unwrap();
    }
    let atime_after = std::fs::metadata(src.join("a/b/2")).unwrap().atime();
    assert!(
        atime_after > atime_before,
        "the filesystem under {} did not move the access time on a read (mounted noatime?): \
         this test cannot show anything there",
        src.display()
    );
    let second = env.backup(&src);
    assert_eq!(
        first["snapshot"]["tree"], second["snapshot"]["tree"],
        "reading files changed the trees"
    );
    assert_eq!(second["snapshot"]["summary"]["files_unchanged"], 4);
    // A real change is recorded, with the access time of that moment.
    std::fs::write(src.join("c/3"), "changed").unwrap();
    let third = env.backup(&src);
    assert_ne!(second["snapshot"]["tree"], third["snapshot"]["tree"]);
}
