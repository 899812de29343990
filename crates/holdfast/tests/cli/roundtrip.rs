//! Backup and restore of a tree with every kind of entry, compared byte for byte and metadata
//! for metadata; incremental behaviour; ls, diff, snapshots and stats on the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

fn every_kind_of_entry_round_trips_exactly(env: Env) {
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    build_everything(&src);
    let expected = snapshot_tree(&src);
    env.init();
    let snap = env.backup(&src);
    assert_eq!(
        snap["snapshot"]["warnings"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0),
        0,
        "{snap}"
    );
    let out = env.path("restored");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--verify",
    ]);
    assert_same_tree(&expected, &src, &out);
    // The sparse file came back sparse, not 64 MiB of zeros.
    let blocks = std::fs::metadata(out.join("sparse.img"))
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m))
        .unwrap();
    assert!(
        blocks * 512 < 1024 * 1024,
        "sparse file restored with {blocks} blocks"
    );
    // Restored again over itself with --overwrite, after local changes: every file, hard
    // link, symlink and special file is replaced (through a temporary name) and nothing else
    // is left, temporary names included.
    let edited = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.symlink_metadata().unwrap().file_type().is_symlink())
        .expect("a symlink at the top of the tree");
    std::fs::remove_file(&edited).unwrap();
    std::fs::write(&edited, "not a link any more").unwrap();
    env.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_same_tree(&expected, &src, &out);
    // Check with full data reading passes.
    env.ok(&["check", "--read-data"]);
}

fn incremental_backups_read_only_what_changed(env: Env) {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..200 {
        std::fs::write(
            src.join(format!("d/f{i}")),
            format!("file {i}\n").repeat(50),
        )
        .unwrap();
    }
    random_file(&src.join("model.bin"), 6 * 1024 * 1024, 7);
    env.init();
    let first = env.backup(&src);
    let s1 = &first["snapshot"]["summary"];
    assert_eq!(s1["files_new"], 201);
    let second = env.backup(&src);
    let s2 = &second["snapshot"]["summary"];
    assert_eq!(s2["files_unchanged"], 201, "{s2}");
    assert_eq!(s2["bytes_read"], 0);
    assert_eq!(second["snapshot"]["parent"], first["id"]);

    // Change one small file and a few bytes in the middle of the big one.
    std::fs::write(src.join("d/f7"), "changed\n").unwrap();
    let mut big = std::fs::read(src.join("model.bin")).unwrap();
    big[3_000_000..3_000_100].fill(0xaa);
    std::fs::write(src.join("model.bin"), &big).unwrap();
    std::fs::remove_file(src.join("d/f9")).unwrap();
    std::fs::write(src.join("new.txt"), "new").unwrap();
    let third = env.backup(&src);
    let s3 = &third["snapshot"]["summary"];
    assert_eq!(s3["files_changed"], 2, "{s3}");
    assert_eq!(s3["files_new"], 1);
    assert_eq!(s3["files_unchanged"], 198);
    // Content-defined chunking: only the chunk(s) around the edit are new.
    assert!(
        s3["bytes_added"].as_u64().unwrap() < 3 * 1024 * 1024,
        "{s3}"
    );

    // diff names exactly those changes.
    let a = first["id"].as_str().unwrap()[..8].to_string();
    let diff = env.ok(&["diff", &a, "latest", "--json"]);
    let lines: Vec<serde_json::Value> = diff
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |change: &str, path: &str| {
        lines
            .iter()
            .any(|l| l["change"] == change && l["path"] == path)
    };
    assert!(has("modified", "/d/f7"), "{diff}");
    assert!(has("modified", "/model.bin"));
    assert!(has("removed", "/d/f9"));
    assert!(has("added", "/new.txt"));
    assert!(
        !lines.iter().any(|l| l["path"] == "/d/f8"),
        "unchanged file listed: {diff}"
    );

    // Metadata-only changes are told apart.
    std::fs::set_permissions(src.join("d/f1"), std::fs::Permissions::from_mode(0o600)).unwrap();
    env.backup(&src);
    let diff = env.ok(&[
        "diff",
        &third["id"].as_str().unwrap()[..12],
        "latest",
        "--json",
    ]);
    assert!(
        diff.contains(r#""change":"metadata","path":"/d/f1""#),
        "{diff}"
    );

    // Each snapshot restores to its own state.
    let out = env.path("first");
    env.ok(&["restore", &a, "--target", out.to_str().unwrap()]);
    assert!(out.join("d/f9").exists() && !out.join("new.txt").exists());
    assert_eq!(
        std::fs::read(out.join("d/f7")).unwrap(),
        "file 7\n".repeat(50).as_bytes()
    );
}

fn listing_commands_and_json(env: Env) {
    let src = env.path("data");
    std::fs::create_dir_all(src.join("config/sub")).unwrap();
    std::fs::write(src.join("config/a.json"), "{}").unwrap();
    std::fs::write(src.join("config/sub/b.json"), "{}").unwrap();
    std::fs::write(src.join("top.txt"), "t").unwrap();
    env.init();
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--tag",
        "daily",
        "--host",
        "design-node",
    ]);
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["snapshot"]["hostname"], "design-node");
    assert_eq!(snaps[0]["snapshot"]["tags"][0], "daily");
    let table = env.ok(&["snapshots"]);
    assert!(
        table.contains("design-node") && table.contains("daily"),
        "{table}"
    );
    // ls below a path, global option after the command.
    let repo = env.repo_url.clone();
    let ls = env.ok(&["ls", "latest", "config/", "--repo", &repo]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        vec!["/config/a.json", "/config/sub", "/config/sub/b.json"]
    );
    // Filters on latest.
    assert!(
        env.run(&["ls", "latest", "--host", "other-node"])
            .status
            .code()
            != Some(0)
    );
    let ls_json = env.ok(&["ls", "latest", "--json", "--tag", "daily"]);
    for l in ls_json.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["path"].as_str().unwrap().starts_with('/'));
    }
    let stats = env.json(&["stats"]);
    assert_eq!(stats["snapshots"], 1);
    assert_eq!(stats["files"], 3);
    // Unknown prefix and ambiguous input are clear errors.
    let o = env.run(&["ls", "ffffffff"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("snapshot 'ffffffff' not found"),
        "{}",
        stderr(&o)
    );
    for cmd in [
        &["cat", "config"][..],
        &["cat", "index"],
        &["cat", "keys"],
        &["check"],
        &["key", "list"],
    ] {
        let mut a = cmd.to_vec();
        a.push("--json");
        let out = env.ok(&a);
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}: {out}"));
    }
}

fn excludes_and_several_paths(env: Env) {
    let src = env.path("data");
    for d in ["tmp/x", "caches", "projects/p1", "jobs/j1", "keep/cachedir"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("tmp/x/junk"), "j").unwrap();
    std::fs::write(src.join("projects/p1/params.json"), "{}").unwrap();
    std::fs::write(src.join("projects/p1/debug.log"), "log").unwrap();
    std::fs::write(src.join("jobs/j1/out"), "o").unwrap();
    std::fs::write(src.join("keep/cachedir/.nobackup"), "").unwrap();
    std::fs::write(src.join("keep/cachedir/big"), "b").unwrap();
    let exfile = env.path("excludes");
    std::fs::write(&exfile, "# DSS temporary data\ncaches\n\njobs/*/out\n").unwrap();
    env.init();
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "*.log",
        "--exclude",
        &format!("{}/tmp", src.display()),
        "--exclude-file",
        exfile.to_str().unwrap(),
        "--exclude-if-present",
        ".nobackup",
    ]);
    let ls = env.ok(&["ls", "latest"]);
    let got: Vec<&str> = ls.lines().collect();
    assert_eq!(
        got,
        vec![
            "/jobs",
            "/jobs/j1",
            "/keep",
            "/projects",
            "/projects/p1",
            "/projects/p1/params.json"
        ],
        "{ls}"
    );

    // Several paths: each restored under its full path.
    let other = env.path("etc-like");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("conf"), "c").unwrap();
    env.ok(&[
        "backup",
        src.join("projects").to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    let rel = |p: &Path| out.join(p.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(rel(&other.join("conf"))).unwrap(), b"c");
    assert!(rel(&src.join("projects/p1/params.json")).exists());
}

fn restore_include_exclude_and_target_rules(env: Env) {
    let src = env.path("data");
    std::fs::create_dir_all(src.join("config")).unwrap();
    std::fs::create_dir_all(src.join("projects/A")).unwrap();
    std::fs::write(src.join("config/general.json"), "g").unwrap();
    std::fs::write(src.join("projects/A/x.json"), "x").unwrap();
    std::fs::write(src.join("projects/A/y.log"), "y").unwrap();
    env.init();
    env.backup(&src);
    let out = env.path("out");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--include",
        "projects/**",
        "--exclude",
        "*.log",
    ]);
    assert!(out.join("projects/A/x.json").exists());
    assert!(!out.join("projects/A/y.log").exists());
    assert!(!out.join("config").exists());
    // A non-empty target is refused without --overwrite, and nothing in it changes.
    std::fs::write(out.join("projects/A/x.json"), "local edit").unwrap();
    let o = env.run(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(out.join("projects/A/x.json")).unwrap(),
        b"local edit"
    );
    env.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(std::fs::read(out.join("projects/A/x.json")).unwrap(), b"x");
    assert!(out.join("config/general.json").exists());
}

#[test]
fn overwrite_never_follows_a_symlink_out_of_the_target() {
    let env = Env::new();
    let src = env.path("data");
    std::fs::create_dir_all(src.join("config")).unwrap();
    std::fs::write(src.join("config/file"), "inside").unwrap();
    std::fs::write(src.join("top"), "top").unwrap();
    env.init();
    env.backup(&src);
    // The target holds links pointing outside where the snapshot has a directory and a file.
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("top"), "untouched").unwrap();
    let target = env.path("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("config")).unwrap();
    std::os::unix::fs::symlink(outside.join("top"), target.join("top")).unwrap();
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(
        !outside.join("file").exists(),
        "wrote through a symlinked parent"
    );
    assert_eq!(std::fs::read(outside.join("top")).unwrap(), b"untouched");
    assert!(target.join("config").symlink_metadata().unwrap().is_dir());
    assert_eq!(
        std::fs::read(target.join("config/file")).unwrap(),
        b"inside"
    );
}

fn keys_add_list_remove_passwd(env: Env) {
    env.init();
    let pwfile = env.path("second");
    std::fs::write(&pwfile, "second-password\n").unwrap();
    let added = env.json(&[
        "key",
        "add",
        "--new-password-file",
        pwfile.to_str().unwrap(),
        "--argon2-memory",
        "1",
        "--argon2-iterations",
        "1",
    ]);
    let id = added["added"].as_str().unwrap().to_string();
    let list = env.json(&["key", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // The second password opens the repository.
    let o = env
        .cmd()
        .env("HOLDFAST_PASSWORD", "second-password")
        .args(["snapshots", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // It cannot remove itself, but the first key can remove it.
    let o = env
        .cmd()
        .env("HOLDFAST_PASSWORD", "second-password")
        .args(["key", "remove", &id[..10]])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    env.ok(&["key", "remove", &id[..10]]);
    let o = env
        .cmd()
        .env("HOLDFAST_PASSWORD", "second-password")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 12);
    // passwd replaces the key in use.
    let newpw = env.path("new");
    std::fs::write(&newpw, "new-password").unwrap();
    env.ok(&[
        "key",
        "passwd",
        "--new-password-file",
        newpw.to_str().unwrap(),
        "--argon2-memory",
        "1",
        "--argon2-iterations",
        "1",
    ]);
    assert_eq!(code(&env.run(&["snapshots"])), 12);
    let o = env
        .cmd()
        .env("HOLDFAST_PASSWORD", "new-password")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
#[ignore = "needs root: mounts a tmpfs"]
fn one_file_system_keeps_mount_points_empty() {
    require_root("mounts a tmpfs");
    let env = Env::new();
    let src = env.path("data");
    std::fs::create_dir_all(src.join("mnt")).unwrap();
    std::fs::write(src.join("local"), "l").unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m holdfast-test {}",
        src.join("mnt").display()
    ));
    std::fs::write(src.join("mnt/other-fs"), "o").unwrap();
    env.init();
    let with = env.ok(&["backup", src.to_str().unwrap(), "--json"]);
    let without = env.ok(&["backup", src.to_str().unwrap(), "-x", "--json"]);
    sh(&format!("umount {}", src.join("mnt").display()));
    let id = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s).unwrap()["id"]
            .as_str()
            .unwrap()[..12]
            .to_string()
    };
    let all = env.ok(&["ls", &id(&with)]);
    assert!(all.contains("/mnt/other-fs"), "{all}");
    let one = env.ok(&["ls", &id(&without)]);
    assert_eq!(
        one.lines().collect::<Vec<_>>(),
        vec!["/local", "/mnt"],
        "{one}"
    );
}

fn check_reads_a_subset_of_packs(env: Env) {
    let src = env.path("data");
    std::fs::create_dir(&src).unwrap();
    // Files below the minimum chunk size are one chunk each, so a 1 MiB pack holds at most
    // six of them (about 1.2 MiB) and the 9.6 MiB here make at least eight packs whatever
    // the repository's chunker key.
    for i in 0..48 {
        random_file(&src.join(format!("f{i}")), 200 * 1024, i);
    }
    env.init_small_packs();
    env.backup(&src);
    let full = env.json(&["check", "--read-data"]);
    let packs = full["report"]["packs_read"].as_u64().unwrap();
    assert!(packs >= 8, "{full}");
    let half = env.json(&["check", "--read-data-subset", "50%"]);
    assert_eq!(
        half["report"]["packs_read"].as_u64().unwrap(),
        packs.div_ceil(2)
    );
    let seventh = env.json(&["check", "--read-data-subset", "1/7"]);
    assert_eq!(
        seventh["report"]["packs_read"].as_u64().unwrap(),
        packs.div_ceil(7)
    );
    let o = env.run(&["check", "--read-data-subset", "150%"]);
    assert_eq!(code(&o), 2, "a usage error");
    assert!(stderr(&o).contains("between 0% and 100%"), "{}", stderr(&o));
}

on_both_backends!(
    every_kind_of_entry_round_trips_exactly,
    incremental_backups_read_only_what_changed,
    listing_commands_and_json,
    excludes_and_several_paths,
    keys_add_list_remove_passwd,
    check_reads_a_subset_of_packs,
    restore_include_exclude_and_target_rules,
);

/// `init --chunk-size` is recorded in the repository and used by every backup; values that
/// are not a power of two in range are refused as usage errors.
#[test]
fn chunk_size_chosen_at_init_is_used() {
    let env = Env::new();
    for bad in ["100", "32", "8192", "big"] {
        let o = env.run(&["init", "--chunk-size", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    assert!(!env.repo.exists(), "a refused init created something");
    env.ok(&["init", "--chunk-size", "64"]);
    let config = env.json(&["cat", "config"]);
    assert_eq!(config["chunker"]["avg_size"], 65536, "{config}");
    assert_eq!(config["chunker"]["min_size"], 16384, "{config}");
    assert_eq!(config["chunker"]["max_size"], 262144, "{config}");
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    random_file(&src.join("data"), 8 << 20, 9);
    let summary = env.backup(&src)["snapshot"]["summary"].clone();
    // 8 MiB at a 64 KiB average: about 128 chunks, against about 16 at the default 512 KiB.
    let blobs = summary["blobs_added"].as_u64().unwrap();
    assert!((64..=512).contains(&blobs), "{blobs} blobs: {summary}");
    let expected = snapshot_tree(&src);
    let out = env.path("out");
    env.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&expected, &src, &out);
}

/// An owner who is not root may set `user.*` attributes only on what they may write: the
/// attributes of a read-only file or folder must be restored before its mode (they were
/// lost, with a "Permission denied" warning, when the mode came first).
#[test]
#[ignore = "needs root: runs holdfast as the user nobody"]
fn an_unprivileged_restore_keeps_the_xattrs_of_read_only_entries() {
    require_root("runs holdfast as the user nobody");
    require_tool("setfattr");
    let env = Env::new();
    let dir = env.path("as-nobody");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A copy of the binary that nobody can run, wherever the build directory is.
    let bin = dir.join("holdfast");
    std::fs::copy(env!("CARGO_BIN_EXE_holdfast"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |script: &str| {
        let o = std::process::Command::new("runuser")
            .args(["-u", "nobody", "--", "sh", "-c", script])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("HOLDFAST_PASSWORD", "test-password")
            .env("HOLDFAST_REPO", dir.join("repo"))
            .env("HOLDFAST_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    as_nobody(
        "mkdir -p src/folder && echo content > src/file \
         && setfattr -n user.kept -v file-value src/file \
         && setfattr -n user.kept -v folder-value src/folder \
         && chmod 444 src/file && chmod 555 src/folder \
         && ./holdfast init --argon2-memory 1 --argon2-iterations 1 >/dev/null \
         && ./holdfast backup src >/dev/null",
    );
    let warnings = as_nobody("./holdfast restore latest --target out");
    assert!(!warnings.contains("xattr"), "{warnings}");
    for (name, value) in [("file", "file-value"), ("folder", "folder-value")] {
        let restored = dir.join("out").join(name);
        assert_eq!(
            xattr::get(&restored, "user.kept").unwrap().as_deref(),
            Some(value.as_bytes()),
            "{name}"
        );
        let mode = std::fs::symlink_metadata(&restored)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, if name == "file" { 0o444 } else { 0o555 }, "{name}");
    }
}
