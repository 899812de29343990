//! A repository crafted by an attacker (who has the password, or wrote the trees) cannot make
//! restore write outside its target.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use holdfast_core::keyfile::KdfParams;
use holdfast_core::pack::BlobKind;
use holdfast_core::repo::{InitOptions, Repository};
use holdfast_core::restore::{restore, RestoreOptions, RestoreProgress};
use holdfast_core::saver::BlobSaver;
use holdfast_core::snapshot::{RootLayout, Snapshot};
use holdfast_core::storage::Storage;

fn repo(dir: &std::path::Path) -> Arc<Repository> {
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    let r = Repository::init(
        Storage::local(&dir.join("repo"), true).unwrap(),
        b"pw",
        &opts,
    )
    .unwrap();
    Arc::new(r)
}

fn snapshot_of_raw_tree(repo: &Arc<Repository>, tree_json: &str) -> Snapshot {
    let saver = BlobSaver::new(repo.clone(), 1);
    let data = saver.save(BlobKind::Data, b"evil").unwrap();
    let tree = saver
        .save(
            BlobKind::Tree,
            tree_json.replace("DATA", &data.to_hex()).as_bytes(),
        )
        .unwrap();
    saver.finish().unwrap();
    repo.load_index().unwrap();
    Snapshot {
        time: chrono::Utc::now(),
        tree,
        paths: vec!["/x".into()],
        hostname: "h".into(),
        username: "u".into(),
        tags: vec![],
        parent: None,
        replaces: None,
        rewrites: Vec::new(),
        program_version: "t".into(),
        layout: RootLayout::DirContent,
        root: None,
        summary: Default::default(),
        warnings: vec![],
        consistency: None,
        attachments: vec![],
        extra: Default::default(),
    }
}

const NODE: &str = r#""type":"file","mode":420,"uid":0,"gid":0,"size":4,"mtime":[0,0],"atime":[0,0],"ctime":[0,0],"content":["DATA"]"#;

#[test]
fn dot_dot_and_slash_names_are_refused() {
    for name in ["..", "../escape", "a/b", "/etc/passwd", ".", ""] {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path());
        let json = format!(
            r#"{{"nodes":[{{"name":{},{NODE}}}]}}"#,
            serde_json::to_string(name).unwrap()
        );
        let snap = snapshot_of_raw_tree(&repo, &json);
        let target = dir.path().join("deep/target");
        let opts = RestoreOptions {
            target: target.clone(),
            ..Default::default()
        };
        let err = restore(
            &repo,
            &snap,
            &opts,
            &RestoreProgress::default(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unsafe entry name")
                || err.to_string().contains("out of order"),
            "{name}: {err}"
        );
        assert!(!dir.path().join("deep/escape").exists() && !dir.path().join("escape").exists());
    }
}

#[test]
fn duplicate_names_cannot_smuggle_a_symlink_parent() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let link = r#""type":"symlink","mode":511,"uid":0,"gid":0,"mtime":[0,0],"atime":[0,0],"ctime":[0,0],"target":"/tmp""#;
    let json = format!(r#"{{"nodes":[{{"name":"a",{link}}},{{"name":"a",{NODE}}}]}}"#);
    let snap = snapshot_of_raw_tree(&repo, &json);
    let opts = RestoreOptions {
        target: dir.path().join("t"),
        ..Default::default()
    };
    let err = restore(
        &repo,
        &snap,
        &opts,
        &RestoreProgress::default(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("out of order or duplicated"),
        "{err}"
    );
}
