//! Repositories on a real S3-compatible server (s3s-fs on loopback): failures of the server
//! mid-upload, several hosts backing up at once, retention, and copying between repositories.
//! The everyday round-trip tests run against S3 too (roundtrip.rs, `::s3`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

fn restore_and_compare(env: &Env, id: &str, src: &Path, out: &Path) {
    let expected = snapshot_tree(src);
    env.ok(&["restore", id, "--target", out.to_str().unwrap()]);
    assert_same_tree(&expected, src, out);
}

/// Files below `dir`, at any depth (0 when it does not exist yet).
fn walkdir_count(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walkdir_count(&p)
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_server_dropping_connections_mid_upload_leaves_no_broken_snapshot() {
    let server = S3Server::start();
    let env = Env::on_s3(&server);
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    random_file(&src.join("small"), 100_000, 1);
    let first = env.backup(&src)["id"].as_str().unwrap().to_string();
    // Large packs (multipart uploads), interrupted by the server going away. The server is
    // stopped as soon as the first new pack is stored, whatever the machine's speed, with
    // about 15 packs still to go.
    random_file(&src.join("big"), 240 << 20, 2);
    let packs_dir = server
        .root
        .path()
        .join(env.repo_url.strip_prefix("s3://").unwrap())
        .join("data");
    let packs_stored = || walkdir_count(&packs_dir);
    // Called right after holdfast starts, which then spends a while opening the repository.
    let wait_for_a_new_pack = || {
        let before = packs_stored();
        let t = std::time::Instant::now();
        while packs_stored() == before {
            assert!(t.elapsed() < Duration::from_secs(60), "no pack uploaded");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    // 1. The server dies and holdfast is killed while waiting for it: nothing is committed.
    let mut child = env
        .cmd()
        .args(["backup", src.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_a_new_pack();
    server.stop();
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    server.restart();
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    env.ok(&["check", "--read-data"]);

    // 2. The server comes back while holdfast retries: the backup completes and restores.
    let child = env
        .cmd()
        .args(["backup", src.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_a_new_pack();
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Requests are retried with backoff, and multipart uploads the restarted server forgot
    // are started again: a two-second outage costs time, not the backup.
    assert!(out.status.success(), "{err}");
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    env.ok(&["check", "--read-data"]);
    restore_and_compare(&env, v["id"].as_str().unwrap(), &src, &env.path("out2"));
    let out1 = env.path("out1");
    env.ok(&["restore", &first, "--target", out1.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(out1.join("small")).unwrap(),
        std::fs::read(src.join("small")).unwrap()
    );
}

#[test]
fn four_hosts_back_up_at_once_while_a_prune_tries() {
    let server = S3Server::start();
    let env = Env::on_s3(&server);
    env.init_small_packs();
    // Four trees sharing one large file: it must be stored once.
    let shared = env.path("shared.bin");
    random_file(&shared, 6 << 20, 99);
    let trees: Vec<_> = (0..4)
        .map(|i| {
            let t = env.path(&format!("host{i}/data"));
            std::fs::create_dir_all(t.join("own")).unwrap();
            std::fs::copy(&shared, t.join("shared.bin")).unwrap();
            for j in 0..20 {
                random_file(&t.join(format!("own/f{j}")), 50_000, (i * 100 + j) as u64);
            }
            t
        })
        .collect();
    let children: Vec<_> = trees
        .iter()
        .enumerate()
        .map(|(i, t)| {
            env.cmd()
                .env("HOLDFAST_CACHE_DIR", env.path(&format!("cache{i}")))
                .args([
                    "backup",
                    t.to_str().unwrap(),
                    "--host",
                    &format!("node{i}"),
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let prune = env.run(&["prune"]);
    assert!(
        matches!(code(&prune), 0 | 11),
        "prune either ran alone or found the backups' locks: {}",
        stderr(&prune)
    );
    let mut ids = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // Prune again now that nothing runs: nothing a snapshot uses may go.
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    for (i, (id, t)) in ids.iter().zip(&trees).enumerate() {
        restore_and_compare(&env, id, t, &env.path(&format!("out{i}")));
    }
    let stats = env.json(&["stats"]);
    let unique = stats["unique_bytes"].as_u64().unwrap();
    assert!(
        unique < (6 << 20) + 4 * 20 * 50_000 + (1 << 20),
        "the shared file is stored once: {stats}"
    );
    // A host's cache notices what the others wrote: backing up another host's tree adds
    // (almost) nothing.
    let v = env
        .cmd()
        .env("HOLDFAST_CACHE_DIR", env.path("cache0"))
        .args([
            "backup",
            trees[3].to_str().unwrap(),
            "--host",
            "node0",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(v.status.success());
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert!(
        v["snapshot"]["summary"]["bytes_added"].as_u64().unwrap() < 100_000,
        "{v}"
    );
}

#[test]
fn retention_and_prune_on_object_storage() {
    let server = S3Server::start();
    let env = Env::on_s3(&server);
    env.init_small_packs();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for round in 0..3 {
        random_file(&src.join(format!("f{round}")), 3 << 20, round);
        std::fs::remove_file(src.join(format!("f{}", round.wrapping_sub(1)))).ok();
        env.backup(&src);
    }
    let before = env.json(&["stats"])["repository_stored_bytes"]
        .as_u64()
        .unwrap();
    env.ok(&[
        "forget",
        "--keep-last",
        "1",
        "--prune",
        "--repack-threshold",
        "0%",
    ]);
    let after = env.json(&["stats"])["repository_stored_bytes"]
        .as_u64()
        .unwrap();
    assert!(after < before, "prune freed space: {before} -> {after}");
    env.ok(&["check", "--read-data"]);
    restore_and_compare(&env, "latest", &src, &env.path("out"));
}

#[test]
fn copy_between_a_local_repository_and_s3_deduplicates_and_skips() {
    let server = S3Server::start();
    let local = Env::new();
    local.init();
    let src = local.path("src");
    std::fs::create_dir_all(&src).unwrap();
    build_everything(&src);
    let a = local.backup(&src)["id"].as_str().unwrap().to_string();
    random_file(&src.join("later.bin"), 2 << 20, 5);
    local.backup(&src);

    let remote = Env::on_s3(&server);
    remote.init();
    let copy = |extra: &[&str]| {
        let mut args = vec![
            "copy",
            "--from-repo",
            local.repo_url.as_str(),
            "--from-password-file",
        ];
        let pw = local.path("pw");
        std::fs::write(&pw, "test-password\n").unwrap();
        let pw = pw.to_str().unwrap().to_string();
        args.push(&pw);
        args.extend_from_slice(extra);
        args.push("--json");
        let out = remote.cmd().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = copy(&[&a]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 1, "{v}");
    let v = copy(&[]);
    assert_eq!(
        v["copied"].as_array().unwrap().len(),
        1,
        "only the missing one: {v}"
    );
    let added = v["bytes_added"].as_u64().unwrap();
    assert!(
        added < 3 << 20,
        "deduplicated against what the destination holds: {v}"
    );
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1, "{v}");
    let v = copy(&[]);
    assert_eq!(v["copied"].as_array().unwrap().len(), 0, "{v}");
    // The second copy only added the new file's data.
    remote.ok(&["check", "--read-data"]);
    let snaps = remote.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let out = remote.path("out");
    remote.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    let expected = snapshot_tree(&src);
    assert_same_tree(&expected, &src, &out);
}

/// A copy between two S3 services with different keys (an on-site server to an off-site one):
/// the source's keys come from HOLDFAST_FROM_AWS_*, the destination's from AWS_*.
#[test]
fn copy_between_two_s3_services_with_their_own_keys() {
    let onsite = S3Server::start_with_keys("onsite-key", "onsite-secret-0123456789");
    let offsite = S3Server::start();
    let src_env = Env::on_s3(&onsite);
    src_env.init();
    let src = src_env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    random_file(&src.join("data.bin"), 3 << 20, 11);
    std::fs::write(src.join("small"), "small").unwrap();
    src_env.backup(&src);

    let dst = Env::on_s3(&offsite);
    dst.init();
    let copy = |from_keys: &[(&str, &str)]| {
        let mut c = dst.cmd();
        c.args(["copy", "--from-repo", &src_env.repo_url]).args([
            "--from-s3-endpoint",
            &onsite.endpoint(),
            "--json",
        ]);
        for (k, v) in from_keys {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // Without the source's own keys, the destination's are refused by the source's server.
    let o = copy(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&src_env.repo_url), "{}", stderr(&o));
    // Half a key pair is a mistake, said as such.
    let o = copy(&[("HOLDFAST_FROM_AWS_ACCESS_KEY_ID", "onsite-key")]);
    assert_eq!(code(&o), 2, "a usage error");
    assert!(
        stderr(&o).contains("HOLDFAST_FROM_AWS_SECRET_ACCESS_KEY"),
        "{}",
        stderr(&o)
    );
    let o = copy(&[
        ("HOLDFAST_FROM_AWS_ACCESS_KEY_ID", "onsite-key"),
        (
            "HOLDFAST_FROM_AWS_SECRET_ACCESS_KEY",
            "onsite-secret-0123456789",
        ),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["copied"].as_array().unwrap().len(), 1, "{v}");
    dst.ok(&["check", "--read-data"]);
    let out = dst.path("out");
    dst.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&snapshot_tree(&src), &src, &out);
}

/// The `reads` figure of the `-v` storage summary on stderr.
fn storage_reads(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("storage:") && l.contains(" reads,"))
        .unwrap_or_else(|| panic!("no storage summary in: {stderr}"));
    let before = line.split(" reads,").next().unwrap();
    before.rsplit('(').next().unwrap().trim().parse().unwrap()
}

#[test]
fn restoring_many_small_files_from_s3_reads_packs_not_chunks() {
    let server = S3Server::start();
    let env = Env::on_s3(&server);
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..400 {
        let dir = src.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}")),
            format!("file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    random_file(&src.join("large.bin"), 6 << 20, 3);
    env.backup(&src);

    let out = env.path("out");
    let o = env.run(&["-v", "restore", "latest", "--target", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_same_tree(&snapshot_tree(&src), &src, &out);
    // File by file this would be one ranged read per chunk (over 400); pack by pack it is a
    // few reads per pack plus the repository's config, key, snapshot and index.
    let reads = storage_reads(&err);
    assert!(reads < 40, "{reads} reads to restore 401 files:\n{err}");
}

/// Restoring pack by pack (the S3 path) onto a full disk: no file left half written.
#[test]
#[ignore = "needs root: mounts a small tmpfs"]
fn restore_from_s3_onto_a_full_disk_keeps_every_file_whole() {
    let server = S3Server::start();
    let env = Env::on_s3(&server);
    env.init();
    assert_restore_onto_a_full_disk_keeps_files_whole(&env);
}

/// The same S3 repository reached with credentials from each place a user may keep them; a
/// wrong key fails with exit 1 and a line naming the repository; no secret is ever printed.
#[test]
fn credentials_from_an_aws_profile_and_from_the_configuration_file() {
    let server = S3Server::start();
    let mut env = Env::on_s3(&server);
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "a").unwrap();
    env.backup(&src);
    // From here on only the endpoint comes from the environment.
    env.extra_env.retain(|(k, _)| !k.starts_with("AWS_"));

    let count_snapshots = |env: &Env| -> Result<usize, String> {
        let o = env.run(&["-v", "snapshots", "--json"]);
        let (out, err) = (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o));
        assert!(
            !out.contains(S3_SECRET) && !err.contains(S3_SECRET),
            "secret printed:\n{out}\n{err}"
        );
        if o.status.success() {
            Ok(serde_json::from_str::<serde_json::Value>(&out)
                .unwrap()
                .as_array()
                .unwrap()
                .len())
        } else {
            assert_eq!(o.status.code(), Some(1), "{err}");
            Err(err)
        }
    };

    // No credentials at all: refused by the server, said in one line.
    let err = count_snapshots(&env).unwrap_err();
    assert!(err.contains(&env.repo_url), "{err}");

    // AWS_PROFILE selects a profile of ~/.aws/credentials (HOME is the test directory).
    let aws = env.path(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = wrong-secret\n\n\
             [backup]\naws_access_key_id = {S3_KEY}\naws_secret_access_key = {S3_SECRET}\n"
        ),
    )
    .unwrap();
    assert!(
        count_snapshots(&env).is_err(),
        "the default profile's secret is wrong"
    );
    env.extra_env.push(("AWS_PROFILE".into(), "backup".into()));
    assert_eq!(count_snapshots(&env), Ok(1));
    env.extra_env.retain(|(k, _)| k != "AWS_PROFILE");

    // The profile named in holdfast's configuration file.
    let config = env.path("holdfast.toml");
    env.extra_env
        .push(("HOLDFAST_CONFIG".into(), config.to_str().unwrap().into()));
    std::fs::write(&config, "[s3]\nprofile = \"backup\"\n").unwrap();
    assert_eq!(count_snapshots(&env), Ok(1));

    // Keys in the configuration file, the secret in a file of its own.
    std::fs::remove_dir_all(&aws).unwrap();
    let secret = env.path("s3-secret");
    std::fs::write(&secret, format!("{S3_SECRET}\n")).unwrap();
    std::fs::write(
        &config,
        format!(
            "[s3]\naccess_key_id = \"{S3_KEY}\"\nsecret_access_key_file = \"{}\"\n",
            secret.display()
        ),
    )
    .unwrap();
    assert_eq!(count_snapshots(&env), Ok(1));
    let check = env.ok(&["config", "check", "--json"]);
    assert!(!check.contains(S3_SECRET), "{check}");
    // ... or inline; a wrong one is refused.
    std::fs::write(
        &config,
        format!("[s3]\naccess_key_id = \"{S3_KEY}\"\nsecret_access_key = \"{S3_SECRET}\"\n"),
    )
    .unwrap();
    assert_eq!(count_snapshots(&env), Ok(1));
    std::fs::write(
        &config,
        format!("[s3]\naccess_key_id = \"{S3_KEY}\"\nsecret_access_key = \"not-it\"\n"),
    )
    .unwrap();
    assert!(count_snapshots(&env).is_err());
    // An id without a secret is a mistake in the file, named as such, by the command and by
    // `config check` (exit code 4).
    std::fs::write(&config, format!("[s3]\naccess_key_id = \"{S3_KEY}\"\n")).unwrap();
    let err = count_snapshots(&env).unwrap_err();
    assert!(
        err.contains("[s3] needs both access_key_id and secret_access_key"),
        "{err}"
    );
    let o = env.run(&["config", "check"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}: [s3] needs both", config.display())),
        "{}",
        stderr(&o)
    );
}

/// A multipart upload that fails while the server stays up is aborted, so its parts do not
/// stay on the server (s3s-fs keeps them as `.upload_id-*` files in its root): here the
/// server's disk holds the first 8 MiB part of a 16 MiB pack but not the second.
#[test]
#[ignore = "needs root: mounts the server's small tmpfs"]
fn a_failed_multipart_upload_is_aborted() {
    require_root("mounts the server's small tmpfs");
    let server = S3Server::start_on_tmpfs("12m");
    let mut env = Env::on_s3(&server);
    let config = env.path("holdfast.toml");
    std::fs::write(&config, "[s3]\nmax_retries = 1\n").unwrap();
    env.extra_env
        .push(("HOLDFAST_CONFIG".into(), config.to_str().unwrap().into()));
    env.init();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    random_file(&src.join("big"), 20 << 20, 7);
    let o = env.run(&["backup", src.to_str().unwrap()]);
    assert_ne!(code(&o), 0, "the backup cannot fit: {}", stderr(&o));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
    let parts: Vec<String> = std::fs::read_dir(server.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect();
    assert!(parts.is_empty(), "parts left on the server: {parts:?}");
    env.ok(&["check"]);
}

/// The storage conformance suite that the core runs on the local folder, memory and the
/// decorators, here on a real S3 server (multipart, ranged reads, listing pages, deletes).
#[test]
fn the_object_store_backend_conforms() {
    use holdfast_core::storage::{conformance, S3Credentials, S3Options, Storage};
    let server = S3Server::start();
    let mut opts = S3Options::from_url(&format!("s3://{S3_BUCKET}/conformance")).unwrap();
    opts.endpoint = Some(server.endpoint());
    opts.credentials = Some(S3Credentials {
        access_key_id: server.key.clone(),
        secret_access_key: server.secret.clone(),
    });
    let storage = Storage::s3(&opts).unwrap();
    assert!(storage.properties().high_latency && !storage.properties().has_folders);
    conformance::check(&storage).unwrap();
}
