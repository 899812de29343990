//! Test harness: a temp directory with a repository, a cache and the real `holdfast` binary,
//! plus a tree comparison that checks content and metadata entry by entry.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub cache: PathBuf,
}

impl Env {
    /// A fresh directory (under /tmp, reachable by other users for the non-root tests).
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("holdfast-test-")
            .tempdir()
            .unwrap();
        let repo = dir.path().join("repo");
        let cache = dir.path().join("cache");
        Env { dir, repo, cache }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_holdfast"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("HOLDFAST_REPO", &self.repo)
            .env("HOLDFAST_PASSWORD", "test-password")
            .env("HOLDFAST_CACHE_DIR", &self.cache);
        c
    }

    /// Runs holdfast with `args`; returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs holdfast and insists on exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "holdfast {:?} failed with {:?}\nstdout: {}\nstderr: {}",
            args,
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out}"))
    }

    /// `init` with a cheap key derivation (tests open the repository hundreds of times).
    pub fn init(&self) {
        self.ok(&["init", "--argon2-memory", "1", "--argon2-iterations", "1"]);
    }

    pub fn backup(&self, path: &Path) -> serde_json::Value {
        self.json(&["backup", path.to_str().unwrap()])
    }
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Everything we promise to restore about one entry.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Entry {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    /// Files only: directories' atimes move when they are listed.
    pub atime: Option<(i64, i64)>,
    pub rdev: u64,
    pub target: Option<OsString>,
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    pub sparse: bool,
    /// Index of the hardlink group among the tree's files (0 = not hardlinked).
    pub link_group: usize,
}

/// Metadata of every entry below `root` (root itself as ""), read without following links
/// and before any content is read.
pub fn snapshot_tree(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<u64, usize> = HashMap::new();
    fn walk(
        root: &Path,
        p: &Path,
        out: &mut BTreeMap<Vec<u8>, Entry>,
        groups: &mut HashMap<u64, usize>,
    ) {
        let m = p.symlink_metadata().unwrap();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = m.mode() & libc::S_IFMT;
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(p) {
            for n in names {
                if let Ok(Some(v)) = xattr::get(p, &n) {
                    xattrs.insert(n, v);
                }
            }
        }
        let is_file = ft == libc::S_IFREG;
        let link_group = if is_file && m.nlink() > 1 {
            let next = groups.len() + 1;
            *groups.entry(m.ino()).or_insert(next)
        } else {
            0
        };
        out.insert(
            rel,
            Entry {
                kind: ft,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: if is_file { m.size() } else { 0 },
                mtime: (m.mtime(), m.mtime_nsec()),
                atime: if is_file {
                    Some((m.atime(), m.atime_nsec()))
                } else {
                    None
                },
                rdev: m.rdev(),
                target: std::fs::read_link(p).ok().map(|t| t.into_os_string()),
                xattrs,
                sparse: is_file && m.blocks() * 512 < m.size(),
                link_group,
            },
        );
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &p.join(n), out, groups);
            }
        }
    }
    walk(root, root, &mut out, &mut groups);
    out
}

/// Asserts two trees have the same entries, metadata and file bytes.
pub fn assert_same_tree(expected: &BTreeMap<Vec<u8>, Entry>, src: &Path, restored: &Path) {
    let got = snapshot_tree(restored);
    let ek: Vec<_> = expected
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let gk: Vec<_> = got
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(ek, gk, "different entries");
    for (k, e) in expected {
        let g = &got[k];
        assert_eq!(e, g, "metadata of '{}' differs", String::from_utf8_lossy(k));
    }
    for (k, e) in expected {
        if e.kind == libc::S_IFREG {
            let rel = Path::new(std::ffi::OsStr::from_bytes(k));
            let a = std::fs::read(src.join(rel)).unwrap();
            let b = std::fs::read(restored.join(rel)).unwrap();
            assert!(a == b, "content of '{}' differs", rel.display());
        }
    }
}

/// Writes `len` pseudo-random bytes (seeded, so reproducible) to `path`.
pub fn random_file(path: &Path, len: usize, seed: u64) {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut b = vec![0u8; len];
    rng.fill_bytes(&mut b);
    std::fs::write(path, b).unwrap();
}
