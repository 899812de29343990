//! Core operations on the in-memory backend, with failures injected by the fault decorator:
//! whatever write fails, and wherever the lock is lost, every earlier snapshot stays whole
//! and the repository checks clean; a dry run stores nothing underneath.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use holdfast_core::backup::{backup, BackupOptions, CommitCheck, Progress};
use holdfast_core::check::{check, CheckOptions};
use holdfast_core::keyfile::KdfParams;
use holdfast_core::repo::InitOptions;
use holdfast_core::restore::{restore, RestoreOptions, RestoreProgress};
use holdfast_core::storage::{DryRun, FaultInjecting, Faults, Storage};
use holdfast_core::Repository;

const PASSWORD: &[u8] = b"memory";

fn init(storage: &Storage) {
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    Repository::init(storage.clone(), PASSWORD, &opts).unwrap();
}

fn open(storage: &Storage) -> Arc<Repository> {
    let repo = Repository::open(storage.clone(), PASSWORD, false).unwrap();
    repo.load_index().unwrap();
    Arc::new(repo)
}

fn back_up(storage: &Storage, src: &Path) -> holdfast_core::Result<String> {
    let repo = Repository::open(storage.clone(), PASSWORD, false)?;
    repo.load_index()?;
    let repo = Arc::new(repo);
    let out = backup(
        repo,
        &[src.to_path_buf()],
        &BackupOptions::default(),
        &Progress::default(),
        &AtomicBool::new(false),
        &mut CommitCheck(|| Ok(())),
    )?;
    Ok(out.id.to_hex())
}

/// Pseudo-random bytes: new content for every call, so every backup writes new packs. Files
/// of 20 MiB are sealed in parallel batches (see backup.rs), so failures there are covered too.
fn fill(path: &Path, len: usize, seed: u64) {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, bytes).unwrap();
}

/// The repository underneath holds exactly `ids` as snapshots, checks clean reading all data,
/// and the first restores to what `src` held then (`first_content`).
fn assert_intact(storage: &Storage, ids: &[String], first_content: &[u8]) {
    let repo = open(storage);
    let mut listed: Vec<String> = repo
        .list_snapshots()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id.to_hex())
        .collect();
    listed.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(listed, want);
    let report = check(
        &repo,
        &CheckOptions {
            read_data: true,
            read_subset: None,
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let (_, snap) = repo.find_snapshot(&ids[0], &Default::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    restore(
        &repo,
        &snap,
        &RestoreOptions {
            target: target.clone(),
            ..Default::default()
        },
        &RestoreProgress::default(),
        &AtomicBool::new(false),
    )
    .unwrap();
    let restored = walk_one(&target, "data.bin");
    assert_eq!(restored, first_content);
}

fn walk_one(root: &Path, name: &str) -> Vec<u8> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() == name {
                return std::fs::read(p).unwrap();
            }
        }
    }
    panic!("{name} not restored under {}", root.display());
}

#[test]
fn a_failed_write_anywhere_leaves_earlier_snapshots_whole() {
    let base = Storage::memory();
    init(&base);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    fill(&src.join("data.bin"), 20 << 20, 1);
    let first_content = std::fs::read(src.join("data.bin")).unwrap();
    let first = back_up(&base, &src).unwrap();
    for (n, under) in [(1, "data/"), (2, "data/"), (1, "index/"), (1, "snapshots/")] {
        fill(&src.join("data.bin"), 20 << 20, 100 + n);
        fill(
            &src.join(format!("more-{under}{n}").replace('/', "")),
            1 << 20,
            200 + n,
        );
        let faulty = base.decorated(|b| {
            FaultInjecting::new(
                b,
                Faults {
                    fail_write: Some(n),
                    writes_under: Some(under.into()),
                    ..Default::default()
                },
            )
        });
        let e = back_up(&faulty, &src).unwrap_err().to_string();
        assert!(e.contains("injected fault"), "write {n} under {under}: {e}");
        assert_intact(&base, std::slice::from_ref(&first), &first_content);
    }
    // A read failing (a dropped connection), wherever it falls, damages nothing.
    let flaky = base.decorated(|b| {
        FaultInjecting::new(
            b,
            Faults {
                fail_read: Some(3),
                ..Default::default()
            },
        )
    });
    let flaky_result = back_up(&flaky, &src);
    // It commits its snapshot whole or not at all.
    assert_eq!(
        open(&base).list_snapshots().unwrap().len(),
        1 + usize::from(flaky_result.is_ok()),
        "{flaky_result:?}"
    );
    // And the next good backup works.
    let second = back_up(&base, &src).unwrap();
    let mut ids: Vec<String> = open(&base)
        .list_snapshots()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id.to_hex())
        .collect();
    ids.retain(|id| *id != first);
    assert!(ids.contains(&second));
    let mut all = vec![first];
    all.extend(ids);
    assert_intact(&base, &all, &first_content);
}

#[test]
fn a_lost_lock_commits_nothing() {
    let base = Storage::memory();
    init(&base);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    fill(&src.join("data.bin"), 1 << 20, 7);
    let Err(e) = backup(
        open(&base),
        std::slice::from_ref(&src),
        &BackupOptions::default(),
        &Progress::default(),
        &AtomicBool::new(false),
        &mut CommitCheck(|| {
            Err(holdfast_core::Error::Locked(
                "lost: removed by another host".into(),
            ))
        }),
    ) else {
        panic!("committed without the lock");
    };
    assert!(e.to_string().contains("lost"), "{e}");
    let repo = open(&base);
    assert!(repo.list_snapshots().unwrap().is_empty());
    assert!(
        base.list("index/").unwrap().is_empty(),
        "no index file names the packs"
    );
}

#[test]
fn a_dry_run_stores_nothing_underneath() {
    let base = Storage::memory();
    init(&base);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    fill(&src.join("data.bin"), 1 << 20, 9);
    let before: Vec<String> = ["data/", "index/", "snapshots/"]
        .iter()
        .flat_map(|d| base.list(d).unwrap())
        .map(|l| l.path)
        .collect();
    let dry = base.decorated(DryRun::new);
    let id = back_up(&dry, &src).unwrap();
    // The dry run sees its own snapshot...
    assert_eq!(open(&dry).list_snapshots().unwrap().len(), 1, "{id}");
    // ...and the store underneath is exactly as it was.
    let after: Vec<String> = ["data/", "index/", "snapshots/"]
        .iter()
        .flat_map(|d| base.list(d).unwrap())
        .map(|l| l.path)
        .collect();
    assert_eq!(before, after);
}
