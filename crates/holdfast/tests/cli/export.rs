//! `holdfast export` writes archives that the system's GNU tar extracts to the same tree.

use crate::common::*;

#[test]
fn gnu_tar_restores_exported_archives_exactly() {
    require_tool("tar");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    build_everything(&src);
    let expected = snapshot_tree(&src);
    env.init();
    env.backup(&src);
    for (fmt, flag) in [("a.tar", ""), ("a.tar.gz", "-z"), ("a.tar.zst", "--zstd")] {
        let archive = env.path(fmt);
        env.ok(&["export", "latest", "-o", archive.to_str().unwrap()]);
        assert!(!env.path(&format!("{fmt}.partial")).exists());
        let out = env.path(&format!("x-{fmt}"));
        std::fs::create_dir(&out).unwrap();
        sh(&format!(
            "tar -x {flag} -p -f {} --xattrs --xattrs-include='*' --acls --numeric-owner -C {}",
            archive.display(),
            out.display()
        ));
        // The top directory's own metadata comes back too (as ./); GNU tar does not restore
        // access times, so only they are left out of the comparison.
        assert_same_tree_but_atime(&expected, &src, &out);
        let blocks = std::os::unix::fs::MetadataExt::blocks(
            &std::fs::metadata(out.join("sparse.img")).unwrap(),
        );
        assert!(
            blocks * 512 < 1024 * 1024,
            "{fmt}: sparse file extracted with {blocks} blocks"
        );
    }
    // A subdirectory, to stdout.
    let o = env
        .cmd()
        .args(["export", "latest", "config", "-o", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let sub = env.path("sub.tar");
    std::fs::write(&sub, &o.stdout).unwrap();
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&sub)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(names.lines().any(|l| l == "settings.json"), "{names}");
    assert!(!names.contains("sparse.img"));
}
