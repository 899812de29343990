//! A repository written by holdfast's format version 1 (2026-12-02), committed under
//! `tests/fixtures/golden-v1/repo`: every later version must open it, list it, verify it and
//! restore it exactly. It pins the on-disk format (docs/format.md) against accidental change;
//! a deliberate change adds a new golden repository and keeps this one passing.
//!
//! Made with: `holdfast init --argon2-memory 1 --argon2-iterations 1` (password `golden`),
//! then `holdfast backup DATA --host golden-host --tag golden`, DATA being the tree
//! `expected()` describes (plus an empty folder and a symlink).

use std::path::Path;

use crate::common::*;

const SNAPSHOT: &str = "0eda945162abbb44ccdf67700bc2d798a92b20cd90099d2ad36e7ee50810da13";

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_golden_repository_of_format_1_opens_verifies_and_restores_exactly() {
    require_tool("sha256sum");
    let env = Env::new();
    // A copy: commands write locks (and check may not touch the committed files).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1/repo");
    sh(&format!(
        "cp -r {} {}",
        fixture.display(),
        env.repo.display()
    ));
    let run = |args: &[&str]| {
        let o = env
            .cmd()
            .env("HOLDFAST_PASSWORD", "golden")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "holdfast {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };

    let list: serde_json::Value = serde_json::from_str(&run(&["snapshots", "--json"])).unwrap();
    let snaps = list.as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], SNAPSHOT);
    let s = &snaps[0]["snapshot"];
    assert_eq!(s["hostname"], "golden-host");
    assert_eq!(s["tags"], serde_json::json!(["golden"]));
    assert_eq!(s["layout"], "dir-content");
    assert_eq!(s["summary"]["total_files"], 4);

    run(&["check", "--read-data"]);

    let t = env.path("restored");
    run(&["restore", SNAPSHOT, "--target", t.to_str().unwrap()]);
    assert_eq!(std::fs::read(t.join("README")).unwrap(), b"golden v1\n");
    assert_eq!(
        std::fs::read_to_string(t.join("config/settings.json")).unwrap(),
        "{\"counter\": 42, \"name\": \"golden\"}\n"
    );
    assert_eq!(
        sha256(&t.join("nested/deeper/big.bin")),
        "93688db62e8f2dc71f43d1a947559df3d300f85df29bbdeda7a0c38bf1882923"
    );
    assert_eq!(
        sha256(&t.join("nested/text.txt")),
        "d67c5f6b662812ac216f14e7820a91bb3e2a0488e0ac11e7739146a0b2fcecc2"
    );
    assert_eq!(
        std::fs::read_link(t.join("nested/link")).unwrap(),
        Path::new("../README")
    );
    assert!(t.join("empty").is_dir());
    assert_eq!(std::fs::read_dir(t.join("empty")).unwrap().count(), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(t.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("config/settings.json"), 0o600);
    assert_eq!(mode("nested"), 0o755);
    let mtime = std::fs::metadata(t.join("README")).unwrap();
    // 2026-01-02 03:04:05 UTC, as stored.
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&mtime).unix_seconds(),
        1_767_323_045
    );
}
