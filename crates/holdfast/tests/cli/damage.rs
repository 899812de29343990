//! Damaged repositories, as an attacker with write access to the storage (or a failing disk)
//! leaves them: nothing that a damaged object hides is ever deleted, `latest` never silently
//! means an older snapshot, check reads the repository rather than the cache, and repair
//! rebuilds what can be rebuilt.

use std::path::{Path, PathBuf};

use crate::common::*;

fn snapshot_file(env: &Env, id: &str) -> PathBuf {
    env.repo.join("snapshots").join(id)
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

/// Damages an object in the repository and drops this host's cache, whose copy is intact:
/// the next command sees the repository as another host (or this one, once the cache is
/// gone) would.
fn damage(env: &Env, path: &Path) {
    flip_byte(path, 40);
    let _ = std::fs::remove_dir_all(&env.cache);
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Two snapshots of different content: the first of `a`, the second of `b` (nothing shared
/// but empty trees), so that each uses packs only it needs.
fn two_snapshots(env: &Env) -> (String, String, PathBuf, PathBuf) {
    let a = env.path("a");
    let b = env.path("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    random_file(&a.join("first.bin"), 3 << 20, 11);
    random_file(&b.join("second.bin"), 3 << 20, 12);
    env.init_small_packs();
    let first = env.backup(&a)["id"].as_str().unwrap().to_string();
    let second = env.backup(&b)["id"].as_str().unwrap().to_string();
    (first, second, a, b)
}

#[test]
fn prune_deletes_nothing_while_a_snapshot_cannot_be_read() {
    let env = Env::new();
    let (_, second, a, b) = two_snapshots(&env);
    // A third snapshot, older in content: `--keep-last 1` has something to forget.
    std::fs::write(a.join("more"), "x").unwrap();
    env.backup(&a);
    let file = snapshot_file(&env, &second);
    let original = std::fs::read(&file).unwrap();
    damage(&env, &file);
    let packs_before = files_in(&env.repo.join("data"));
    let snapshots_before = files_in(&env.repo.join("snapshots"));

    for args in [
        &["prune"][..],
        &["forget", "--keep-last", "1", "--prune"][..],
        &["forget", "--keep-last", "1"][..],
    ] {
        let o = env.run(args);
        assert_eq!(code(&o), 14, "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(&second), "{args:?} does not name the file: {e}");
        assert!(
            e.contains("forget"),
            "{args:?} does not say what to do: {e}"
        );
        assert_eq!(
            files_in(&env.repo.join("data")),
            packs_before,
            "{args:?} deleted packs"
        );
        assert_eq!(
            files_in(&env.repo.join("snapshots")),
            snapshots_before,
            "{args:?} forgot snapshots"
        );
    }

    // The damage undone (a backup copy of the file put back), everything restores.
    std::fs::write(&file, original).unwrap();
    let t = env.path("t");
    env.ok(&["restore", &second, "--target", t.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(t.join("second.bin")).unwrap(),
        std::fs::read(b.join("second.bin")).unwrap()
    );
}

#[test]
fn a_damaged_snapshot_is_removed_only_by_name() {
    let env = Env::new();
    let (first, second, a, _) = two_snapshots(&env);
    damage(&env, &snapshot_file(&env, &second));
    // Listings go on without it (with a warning), so that backups are not stopped.
    let listed = env.json(&["snapshots"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // `forget ID` names it although no listing can show it.
    let out = env.ok(&["forget", &second[..10]]);
    assert!(out.contains(&second[..8]), "{out}");
    assert!(!snapshot_file(&env, &second).exists());
    // Now prune may run, and the first snapshot is whole.
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", &first, "--target", t.to_str().unwrap()]);
    assert_same_tree(&snapshot_tree(&a), &a, &t);
}

#[test]
fn latest_is_never_an_older_snapshot_when_the_newest_cannot_be_read() {
    let env = Env::new();
    let (first, second, _, _) = two_snapshots(&env);
    damage(&env, &snapshot_file(&env, &second));
    let t = env.path("t");
    let o = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&second),
        "the unreadable snapshot is not named: {e}"
    );
    assert!(
        e.contains(&first[..8]),
        "the newest readable one is not named: {e}"
    );
    assert!(!t.exists() || std::fs::read_dir(&t).unwrap().count() == 0);
    // Named by id, the readable one restores.
    env.ok(&["restore", &first[..8], "--target", t.to_str().unwrap()]);
}

#[test]
fn a_snapshot_file_copied_over_another_is_damage() {
    let env = Env::new();
    let (first, second, _, _) = two_snapshots(&env);
    std::fs::copy(snapshot_file(&env, &first), snapshot_file(&env, &second)).unwrap();
    let o = env.run(&["--no-cache", "check", "--read-data"]);
    assert_eq!(code(&o), 14, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not match its name"));
    let t = env.path("t");
    let o = env.run(&[
        "--no-cache",
        "restore",
        &second,
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(
        code(&o),
        14,
        "a swapped snapshot file restored: {}",
        stderr(&o)
    );
}

/// With a warm cache, check must still see damage in the repository itself: a snapshot
/// file, an index file, a tree pack.
#[test]
fn check_reads_the_repository_not_the_cache() {
    for victim in ["snapshot", "index", "tree pack"] {
        let env = Env::new();
        let src = env.path("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        random_file(&src.join("d/f"), 100_000, 3);
        env.init();
        let id = env.backup(&src)["id"].as_str().unwrap().to_string();
        // Warm every cache: snapshots, index, tree packs.
        env.ok(&["ls", "latest"]);
        env.ok(&["check"]);
        let target = match victim {
            "snapshot" => snapshot_file(&env, &id),
            "index" => files_in(&env.repo.join("index")).remove(0),
            _ => {
                // The tree pack is the one the cache holds.
                let cached = files_in(&env.cache);
                let name = cached
                    .iter()
                    .find(|p| p.parent().unwrap().parent().unwrap().ends_with("data"))
                    .expect("a cached tree pack")
                    .file_name()
                    .unwrap()
                    .to_owned();
                files_in(&env.repo.join("data"))
                    .into_iter()
                    .find(|p| p.file_name().unwrap() == name)
                    .unwrap()
            }
        };
        flip_byte(&target, 20);
        for args in [&["check"][..], &["check", "--read-data"][..]] {
            let o = env.run(args);
            assert_eq!(
                code(&o),
                14,
                "{args:?} with a warm cache missed a damaged {victim}: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

#[test]
fn a_damaged_index_is_rebuilt_from_the_packs_and_never_pruned_away() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    random_file(&src.join("f.bin"), 3 << 20, 5);
    env.init_small_packs();
    env.backup(&src);
    let expected = snapshot_tree(&src);
    let index = files_in(&env.repo.join("index"));
    assert_eq!(index.len(), 1);
    damage(&env, &index[0]);

    let t = env.path("t");
    let o = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    assert!(stderr(&o).contains("repair index"), "{}", stderr(&o));
    let o = env.run(&["check"]);
    assert_eq!(code(&o), 14);
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(
        out.contains("repair index"),
        "check does not recommend repair index: {out}"
    );
    assert!(
        !out.contains("prune removes them"),
        "check advises prune: {out}"
    );
    let packs = files_in(&env.repo.join("data"));
    assert_eq!(
        code(&env.run(&["prune"])),
        14,
        "prune ran with a damaged index"
    );
    assert_eq!(files_in(&env.repo.join("data")), packs);

    let r = env.json(&["repair", "index"]);
    assert_eq!(
        r["packs_recovered"].as_array().unwrap().len(),
        packs.len(),
        "{r}"
    );
    assert_eq!(r["index_files_damaged"].as_array().unwrap().len(), 1, "{r}");
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_same_tree(&expected, &src, &t);
}

#[test]
fn repair_snapshots_drops_what_is_lost_and_keeps_the_rest() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("b")).unwrap();
    random_file(&src.join("a/victim.bin"), 2 << 20, 1);
    random_file(&src.join("b/survivor.bin"), 2 << 20, 2);
    env.init_small_packs();
    let id = env.backup(&src)["id"].as_str().unwrap().to_string();
    // Remove a pack holding the victim's first chunk.
    let ls = env.ok(&["ls", "latest", "a", "--json"]);
    let node: serde_json::Value =
        serde_json::from_str(ls.lines().find(|l| l.contains("victim")).unwrap()).unwrap();
    let blob = node["node"]["content"][0].as_str().unwrap().to_string();
    let index = env.json(&["cat", "index"]);
    let mut pack = String::new();
    for f in index.as_array().unwrap() {
        for p in f["index"]["packs"].as_array().unwrap() {
            if p["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["id"] == blob.as_str())
            {
                pack = p["id"].as_str().unwrap().to_string();
            }
        }
    }
    std::fs::remove_file(env.repo.join("data").join(&pack[..2]).join(&pack)).unwrap();

    // A restore that meets the missing pack is an integrity error.
    let t0 = env.path("t0");
    let o = env.run(&[
        "--no-cache",
        "restore",
        "latest",
        "--target",
        t0.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    let o = env.run(&["check"]);
    assert_eq!(code(&o), 14);
    assert!(String::from_utf8_lossy(&o.stdout).contains("repair snapshots"));

    // Dry run: names the path, changes nothing.
    let dry = env.ok(&["repair", "snapshots"]);
    assert!(dry.contains("/a/victim.bin"), "{dry}");
    assert!(dry.contains("dry run"), "{dry}");
    assert!(snapshot_file(&env, &id).exists());

    env.ok(&["repair", "index"]);
    let r = env.json(&["repair", "snapshots", "--apply"]);
    let d = &r["damaged"][0];
    assert_eq!(d["id"], id.as_str());
    let lost: Vec<&str> = d["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(lost.contains(&"/a/victim.bin"), "{d}");
    let new_id = d["replaced_by"].as_str().unwrap();
    assert!(!snapshot_file(&env, &id).exists(), "the original stayed");
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    let s = &snaps[0];
    let tags = s["snapshot"]["tags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t == "repaired"), "{s}");
    assert_eq!(s["snapshot"]["original"], id.as_str());
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", new_id, "--target", t.to_str().unwrap()]);
    // Files are backed up in parallel, so the removed pack may hold the survivor's chunks
    // too: what was not reported lost restores exactly, what was is absent.
    for f in ["a/victim.bin", "b/survivor.bin"] {
        if lost.contains(&format!("/{f}").as_str()) {
            assert!(!t.join(f).exists(), "{f} was lost and yet restored");
        } else {
            assert_eq!(
                std::fs::read(t.join(f)).unwrap(),
                std::fs::read(src.join(f)).unwrap()
            );
        }
    }
}

/// Key files, snapshots, packs and the cache are private under the default umask.
#[test]
fn repository_and_cache_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let mut c = env.cmd();
    c.args(["init", "--argon2-memory", "1", "--argon2-iterations", "1"]);
    run_with_umask(c, 0o022);
    let mut c = env.cmd();
    c.args(["backup", src.to_str().unwrap()]);
    run_with_umask(c, 0o022);
    let mut checked = 0;
    for root in [&env.repo, &env.cache] {
        for p in walk(root) {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o777;
            let want = if m.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} is {mode:o}", p.display());
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} entries looked at");
    // check warns about a key file that others can read.
    let key = files_in(&env.repo.join("keys")).remove(0);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = env.run(&["check"]);
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));
}

fn run_with_umask(mut c: std::process::Command, mask: u32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask is async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            libc::umask(mask as libc::mode_t);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if root.is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

#[test]
fn a_symlink_inside_the_repository_is_never_followed() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    random_file(&src.join("f"), 100_000, 9);
    env.init();
    env.backup(&src);
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    // Every data/XX folder becomes a link to `outside`.
    for d in std::fs::read_dir(env.repo.join("data")).unwrap() {
        let d = d.unwrap().path();
        std::fs::remove_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(&outside, &d).unwrap();
    }
    for i in 0..=255u8 {
        let d = env.repo.join("data").join(format!("{i:02x}"));
        if !d.exists() {
            std::os::unix::fs::symlink(&outside, &d).unwrap();
        }
    }
    random_file(&src.join("g"), 100_000, 10);
    let o = env.run(&["backup", src.to_str().unwrap()]);
    assert_ne!(code(&o), 0, "backup wrote through a symlink");
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside"
    );
}

/// A file that grows while it is read is read up to the size it had when opened, and
/// recorded as changed; it is never chased to its end.
#[test]
fn a_growing_file_is_read_to_its_size_at_open() {
    // Files in /proc say they are empty and yet yield text: exactly what a file read at
    // most to its size at open must not store.
    let env = Env::new();
    env.init();
    let v = env.json(&["backup", "/proc/self/status"]);
    let total = v["snapshot"]["summary"]["total_bytes"].as_u64().unwrap();
    assert_eq!(total, 0, "read past the size at open: {v}");

    // And a log a writer keeps appending to: the backup ends, the file is reported.
    let src = env.path("logs");
    std::fs::create_dir_all(&src).unwrap();
    let log = src.join("app.log");
    random_file(&log, 30 << 20, 4);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let block = vec![b'x'; 1 << 20];
            let mut written = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && written < 2 << 30 {
                f.write_all(&block).unwrap();
                written += block.len() as u64;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let started = std::time::Instant::now();
    let o = env.run(&["backup", src.to_str().unwrap(), "--json"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(matches!(code(&o), 0 | 3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stored = v["snapshot"]["summary"]["total_bytes"].as_u64().unwrap();
    let final_size = std::fs::metadata(&log).unwrap().len();
    assert!(
        stored < final_size,
        "read {stored} of a file now {final_size} bytes"
    );
    let reported =
        v["snapshot"]["warnings"].to_string() + &v["snapshot"]["consistency"].to_string();
    assert!(reported.contains("app.log"), "growth not recorded: {v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}

#[test]
fn leftover_temporary_files_are_reported_and_pruned() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    env.init();
    env.backup(&src);
    let tmp = env.repo.join("tmp");
    let old = tmp.join("0123456789abcdef0123456789abcdef");
    let young = tmp.join("fedcba9876543210fedcba9876543210");
    std::fs::write(&old, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&young, b"a write under way").unwrap();
    filetime::set_file_mtime(
        &old,
        filetime::FileTime::from_system_time(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        ),
    )
    .unwrap();
    let o = env.run(&["check"]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).contains("temporary file"), "{}", stderr(&o));
    let r = env.json(&["prune"]);
    assert_eq!(r["temp_files_deleted"], 1, "{r}");
    assert!(!old.exists(), "an old leftover stayed");
    assert!(young.exists(), "a write that may be under way was removed");
}

#[test]
fn exit_codes_follow_the_table() {
    let env = Env::new();
    let (_, second, _, _) = two_snapshots(&env);
    // Usage errors: 2.
    assert_eq!(code(&env.run(&["forget"])), 2);
    assert_eq!(code(&env.run(&["check", "--read-data-subset", "200%"])), 2);
    assert_eq!(code(&env.run(&["prune", "--repack-threshold", "150%"])), 2);
    assert_eq!(code(&env.run(&["forget", "--keep-within", "3x"])), 2);
    // Missing data at restore: 14.
    for p in files_in(&env.repo.join("data")) {
        std::fs::remove_file(p).unwrap();
    }
    let t = env.path("t");
    let o = env.run(&[
        "--no-cache",
        "restore",
        &second,
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 14, "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// `holdfast ls latest / | head -2`: the reader goes away, holdfast ends quietly.
#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        std::fs::write(src.join(format!("file-with-a-long-name-{i:05}")), "x").unwrap();
    }
    env.init();
    env.backup(&src);
    for args in [
        &["ls", "latest", "/"][..],
        &["stats"][..],
        &["snapshots"][..],
        &["ls", "latest", "/", "--json"][..],
    ] {
        let mut child = env
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let o = child.wait_with_output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!e.contains("panicked"), "{args:?}: {e}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
    }
    // Any other failure to write (a full disk behind a redirect) is an error, not a success.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = env
        .cmd()
        .args(["ls", "latest", "/"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("standard output"), "{}", stderr(&o));
}

/// Warnings in cron mail and journald carry no colour codes; NO_COLOR is honoured.
#[test]
fn no_colour_codes_when_stderr_is_not_a_terminal() {
    let env = Env::new();
    let (_, second, _, _) = two_snapshots(&env);
    damage(&env, &snapshot_file(&env, &second));
    let o = env.run(&["snapshots"]);
    let e = stderr(&o);
    assert!(
        e.contains("warn") || e.contains("WARN"),
        "no warning to look at: {e}"
    );
    assert!(!e.contains('\u{1b}'), "colour codes in a pipe: {e:?}");
}
