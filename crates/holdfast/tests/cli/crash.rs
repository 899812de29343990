//! kill -9 a running backup at random moments: after each, check passes, every earlier
//! snapshot restores exactly, and the next backup succeeds.

use std::time::Duration;

use crate::common::*;
use rand::Rng;

#[test]
fn killed_backups_never_harm_the_repository() {
    let mut rng = seeded_rng("crash test");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("small")).unwrap();
    for i in 0..16 {
        random_file(
            &src.join(format!("big{i}")),
            1024 * 1024 + i * 977,
            i as u64,
        );
    }
    for i in 0..800 {
        std::fs::write(
            src.join(format!("small/f{i}")),
            format!("{i}\n").repeat(i % 50 + 1),
        )
        .unwrap();
    }
    // Small packs so that a backup stores many of them and a kill lands between uploads.
    env.init_small_packs();
    let first = env.backup(&src);
    let first_id = first["id"].as_str().unwrap().to_string();
    let expected = snapshot_tree(&src);
    // Calibrate: how long a full re-read takes here, so that kills land while it runs.
    let started = std::time::Instant::now();
    env.ok(&["backup", src.to_str().unwrap(), "--force"]);
    let full_ms = (started.elapsed().as_millis() as u64).max(50);
    eprintln!("a full backup takes {full_ms} ms here");

    // Kill until 20 backups died while running; one that finished first shortens the wait
    // (a run can take less than the calibration run did).
    let mut killed = 0;
    let mut upper = full_ms * 9 / 10;
    let mut round = 0;
    while killed < 20 {
        assert!(
            round < 60,
            "only {killed} of {round} backups were killed while running"
        );
        round += 1;
        // New content every round, so every backup has something to store.
        for j in 0..3 {
            random_file(
                &src.join(format!("round{round}-{j}")),
                400 * 1024,
                1000 + round * 10 + j,
            );
        }
        let mut child = env
            .cmd()
            .args(["backup", src.to_str().unwrap(), "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..upper)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            upper = (upper * 3 / 4).max(10);
        }
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();

        let o = env.run(&["check"]);
        assert!(
            o.status.success(),
            "round {round}: check failed after kill: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        let out = env.path(&format!("restore-{round}"));
        env.ok(&[
            "restore",
            &first_id[..16],
            "--target",
            out.to_str().unwrap(),
        ]);
        assert_same_tree(&expected, &src, &out);
        std::fs::remove_dir_all(&out).unwrap();
    }

    // The next backup succeeds; all data verifies; every snapshot restores as recorded.
    env.backup(&src);
    env.ok(&["check", "--read-data"]);
    let snaps = env.json(&["snapshots"]);
    for s in snaps.as_array().unwrap() {
        let id = s["short_id"].as_str().unwrap();
        let out = env.path(&format!("final-{id}"));
        env.ok(&["restore", id, "--target", out.to_str().unwrap(), "--verify"]);
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// SIGINT and SIGTERM stop a backup cleanly: exit code 130, no snapshot, no lock left behind,
/// and what was already stored is indexed so that the next run does not store it again.
#[test]
fn interrupted_backup_exits_130_and_cleans_up() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..100 {
        random_file(&src.join(format!("f{i}")), 1024 * 1024, i);
    }
    env.init_small_packs();
    let mut interrupted = 0;
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let child = env
            .cmd()
            .args(["backup", src.to_str().unwrap(), "--force"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            eprintln!("backup finished before {signal}; machine too fast for this check");
            continue;
        }
        interrupted += 1;
        assert_eq!(code(&o), 130, "{signal}: {}", stderr(&o));
        assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
        let locks = env.repo.join("locks");
        assert_eq!(
            std::fs::read_dir(&locks).map(|d| d.count()).unwrap_or(0),
            0,
            "lock left behind"
        );
        env.ok(&["check"]);
    }
    assert!(
        interrupted > 0,
        "no backup was interrupted: the test proved nothing"
    );
    let done = env.backup(&src);
    assert_eq!(done["snapshot"]["summary"]["total_files"], 100);
}

/// A backup whose lock disappears while it runs (`unlock --all`, or others judging it stale)
/// may have had data pruned under it: it must commit nothing and say so.
#[test]
fn backup_that_lost_its_lock_commits_nothing() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..100 {
        random_file(&src.join(format!("f{i}")), 1024 * 1024, i);
    }
    env.init_small_packs();
    assert_losing_the_lock_commits_nothing(&env, &["backup", src.to_str().unwrap(), "--force"]);
}

/// A backup killed with -9 keeps what its checkpoints indexed: the repository checks clean,
/// the next run stores only what no checkpoint listed, and it restores exactly.
#[test]
fn a_killed_backup_keeps_what_its_checkpoints_indexed() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let total: u64 = 96 << 20;
    for i in 0..96 {
        random_file(&src.join(format!("f{i:02}")), 1 << 20, 500 + i);
    }
    env.init_small_packs();
    let index_files = || {
        std::fs::read_dir(env.repo.join("index"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(index_files(), 0);
    let mut child = env
        .cmd()
        .args([
            "backup",
            src.to_str().unwrap(),
            "--checkpoint-interval",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first checkpoint follows the first 1 MiB pack; then kill, long before the end.
    while index_files() == 0 && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before it could be killed"
    );
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();
    assert!(index_files() >= 1);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
    env.ok(&["check"]);

    let b = env.backup(&src);
    let added = b["snapshot"]["summary"]["bytes_added"].as_u64().unwrap();
    assert!(
        added < total,
        "the next backup stored all {added} bytes again: the checkpoints were not used"
    );
    env.ok(&["check", "--read-data"]);
    let out = env.path("restored");
    env.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&snapshot_tree(&src), &src, &out);
}
