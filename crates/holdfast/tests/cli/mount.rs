//! `mount`: snapshots as a read-only FUSE file system, compared with the source entry by
//! entry; browsed with ls, getfattr and cmp; ended by SIGINT or umount; and left open while
//! backups and a prune go on.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn is_mounted(dir: &Path) -> bool {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*dir))
}

/// A `holdfast mount` running in the background; killed and unmounted if the test fails.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mount {
    fn start(env: &Env, args: &[&str], dir: &Path) -> Mount {
        require_root("mounts a FUSE file system");
        assert!(Path::new("/dev/fuse").exists(), "this test needs /dev/fuse");
        std::fs::create_dir_all(dir).unwrap();
        let child = env
            .cmd()
            .arg("mount")
            .args(args)
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mount {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let t = Instant::now();
        while !is_mounted(dir) {
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                let o = m.child.take().unwrap().wait_with_output().unwrap();
                panic!("holdfast mount exited with {st}: {}", stderr(&o));
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "not mounted after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// Waits for the mount process to end (after SIGINT or umount); its output.
    fn wait(mut self) -> Output {
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(30), "mount did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    fn interrupt(self) -> Output {
        let pid = self.child.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        self.wait()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn mount_shows_a_snapshot_as_stored(env: Env) {
    require_root("mounts a FUSE file system");
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    build_everything(&src);
    let mut expected = snapshot_tree(&src);
    let id = env.backup(&src)["id"].as_str().unwrap().to_string();
    let mnt = env.path("mnt");
    let m = Mount::start(&env, &[&id[..8]], &mnt);

    // Entry by entry: kind, mode, owner, size, times, link targets, device numbers, xattrs,
    // hard link groups, and every byte. A sparse file reads whole (holes as zeros) and
    // reports its size as its blocks: that is the one difference.
    let mut got = snapshot_tree(&mnt);
    for e in expected.values_mut().chain(got.values_mut()) {
        e.sparse = false;
    }
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, e) in &expected {
        assert_eq!(e, &got[k], "'{}' differs", String::from_utf8_lossy(k));
    }
    for (k, e) in &expected {
        if e.kind == libc::S_IFREG {
            let rel = Path::new(std::ffi::OsStr::from_bytes(k));
            assert!(
                std::fs::read(src.join(rel)).unwrap() == std::fs::read(mnt.join(rel)).unwrap(),
                "content of {} differs",
                rel.display()
            );
        }
    }

    // The tools an administrator reaches for.
    let ls = Command::new("ls")
        .arg("-l")
        .arg(mnt.join("config"))
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("link-rel -> settings.json"), "{ls}");
    assert!(ls.contains("settings.json"), "{ls}");
    if tool_or_skip("getfattr", "getfattr on the mount") {
        let g = Command::new("getfattr")
            .args(["-d", "--absolute-names"])
            .arg(mnt.join("config"))
            .output()
            .unwrap();
        let g = String::from_utf8_lossy(&g.stdout);
        assert!(g.contains("user.dir-attr=\"on a directory\""), "{g}");
    }
    let big = "config/nested/deeper/big.bin";
    let st = Command::new("cmp")
        .arg(src.join(big))
        .arg(mnt.join(big))
        .status()
        .unwrap();
    assert!(st.success(), "cmp found a difference");
    // A read in the middle of a chunk, across into the next.
    let mut f = std::fs::File::open(mnt.join(big)).unwrap();
    f.seek(SeekFrom::Start(5 * 1024 * 1024 + 3)).unwrap();
    let mut part = vec![0; 3 << 20];
    f.read_exact(&mut part).unwrap();
    let whole = std::fs::read(src.join(big)).unwrap();
    assert!(part == whole[5 * 1024 * 1024 + 3..][..3 << 20]);
    // Read-only.
    assert!(std::fs::write(mnt.join("new"), "x").is_err());
    assert!(std::fs::OpenOptions::new()
        .write(true)
        .open(mnt.join("config/settings.json"))
        .is_err());
    drop(f);

    // SIGINT unmounts and ends the process cleanly.
    let o = m.interrupt();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!is_mounted(&mnt));
    assert!(String::from_utf8_lossy(&o.stdout).contains("unmounted"));
}
on_both_backends!(ignore = "needs root: mounts a FUSE file system"; mount_shows_a_snapshot_as_stored);

#[test]
#[ignore = "needs root: mounts a FUSE file system"]
fn mount_of_all_snapshots_stays_open_through_backups_and_prune() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("keep.txt"), "kept in every snapshot").unwrap();
    random_file(&src.join("only-first.bin"), 2 << 20, 7);
    let first = env.backup(&src)["id"].as_str().unwrap().to_string();
    std::fs::remove_file(src.join("only-first.bin")).unwrap();
    std::fs::write(src.join("second.txt"), "second").unwrap();
    let second = env.backup(&src)["id"].as_str().unwrap().to_string();

    let mnt = env.path("mnt");
    let m = Mount::start(&env, &[], &mnt);
    let listed: Vec<String> = std::fs::read_dir(mnt.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    // Named <local time>-<id>: found by id (two backups in one second sort by id).
    let named = |id: &str| -> String {
        listed
            .iter()
            .find(|n| n.ends_with(&id[..8]))
            .unwrap_or_else(|| panic!("{id} not in {listed:?}"))
            .clone()
    };
    let listed = [named(&first), named(&second)];
    let host = std::fs::read_dir(mnt.join("hosts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_link(host.join("latest")).unwrap(),
        Path::new("../../snapshots").join(&listed[1])
    );
    assert_eq!(
        std::fs::read_to_string(host.join("latest/second.txt")).unwrap(),
        "second"
    );

    // The first snapshot's folder is listed while its trees are still stored.
    let first_dir = mnt.join("snapshots").join(&listed[0]);
    assert_eq!(std::fs::read_dir(&first_dir).unwrap().count(), 2);

    // The mount holds no lock: a backup, then forget and prune of the first snapshot, run.
    std::fs::write(src.join("third.txt"), "third").unwrap();
    env.backup(&src);
    env.ok(&["forget", &first[..8], "--prune"]);
    // The first snapshot's own data is gone: reading it fails (EIO), and the mount says so.
    let gone = mnt
        .join("snapshots")
        .join(&listed[0])
        .join("only-first.bin");
    let err = std::fs::read(&gone).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // What is still stored reads on, wherever prune moved it.
    assert_eq!(
        std::fs::read_to_string(first_dir.join("keep.txt")).unwrap(),
        "kept in every snapshot"
    );
    assert_eq!(
        std::fs::read_to_string(mnt.join("snapshots").join(&listed[1]).join("second.txt")).unwrap(),
        "second"
    );

    // umount from outside ends the process too.
    let st = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(st.success());
    let o = m.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("only-first.bin"),
        "no log line: {}",
        stderr(&o)
    );
}
