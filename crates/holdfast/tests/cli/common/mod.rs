//! Test harness: a temp directory with a repository, a cache and the real `holdfast` binary,
//! plus a tree comparison that checks content and metadata entry by entry.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod app;
pub mod cdp;
pub mod console;

pub struct Env {
    pub dir: tempfile::TempDir,
    /// The local repository folder (unused when `repo_url` is an s3:// URL).
    pub repo: PathBuf,
    /// What HOLDFAST_REPO says: the local folder, or s3://bucket/prefix.
    pub repo_url: String,
    pub cache: PathBuf,
    /// Environment for the S3 backend (endpoint, credentials).
    pub extra_env: Vec<(String, String)>,
    pub s3: Option<std::sync::Arc<S3Server>>,
}

/// A real S3-compatible server (s3s-fs: SigV4, multipart, objects on disk) on a free loopback
/// port, served from a thread of the test process with a runtime of its own, so that the tests
/// need nothing installed; stopped when dropped.
pub struct S3Server {
    running: std::sync::Mutex<Option<Running>>,
    pub root: tempfile::TempDir,
    pub port: u16,
    /// The one access key the server accepts.
    pub key: String,
    pub secret: String,
    /// `root` is a tmpfs mounted for this server, unmounted when it is dropped.
    tmpfs: bool,
}

/// A serving thread and the switch that stops it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

pub const S3_BUCKET: &str = "holdfast";
pub const S3_KEY: &str = "holdfast-test-key";
pub const S3_SECRET: &str = "holdfast-test-secret-0123456789";

impl S3Server {
    pub fn start() -> std::sync::Arc<S3Server> {
        Self::start_with(None)
    }

    /// A server accepting another access key than the usual one (a second S3 service).
    pub fn start_with_keys(key: &str, secret: &str) -> std::sync::Arc<S3Server> {
        Self::start_full(None, key, secret)
    }

    /// A server whose disk holds only `size` (a tmpfs, e.g. "12m"; needs root): for uploads
    /// that fail on the server's side while it stays up.
    pub fn start_on_tmpfs(size: &str) -> std::sync::Arc<S3Server> {
        Self::start_with(Some(size))
    }

    fn start_with(tmpfs: Option<&str>) -> std::sync::Arc<S3Server> {
        Self::start_full(tmpfs, S3_KEY, S3_SECRET)
    }

    fn start_full(tmpfs: Option<&str>, key: &str, secret: &str) -> std::sync::Arc<S3Server> {
        let root = tempfile::Builder::new()
            .prefix("holdfast-s3-")
            .tempdir()
            .unwrap();
        if let Some(size) = tmpfs {
            sh(&format!(
                "mount -t tmpfs -o size={size} holdfast-s3 {}",
                root.path().display()
            ));
        }
        std::fs::create_dir_all(root.path().join(S3_BUCKET)).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = S3Server {
            running: std::sync::Mutex::new(Some(Self::serve(root.path(), listener, key, secret))),
            root,
            port,
            key: key.to_string(),
            secret: secret.to_string(),
            tmpfs: tmpfs.is_some(),
        };
        std::sync::Arc::new(server)
    }

    /// Serves `root` on `listener` (already bound, so the port accepts connections as soon as
    /// this returns) until stopped.
    fn serve(root: &Path, listener: std::net::TcpListener, key: &str, secret: &str) -> Running {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder;
        let service = {
            let mut b = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
            b.set_auth(s3s::auth::SimpleAuth::from_single(key, secret));
            b.build()
        };
        listener.set_nonblocking(true).unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let socket = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => socket,
                            Err(_) => {
                                // e.g. out of descriptors: do not spin on it
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                        _ = &mut stopped => break,
                    };
                    let conn = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            });
            // Dropping the runtime drops every connection, mid-request or not.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        });
        Running { stop, thread }
    }

    /// Stops the server: the port refuses connections, open ones drop mid-request.
    pub fn stop(&self) {
        if let Some(r) = self.running.lock().unwrap().take() {
            let _ = r.stop.send(());
            let _ = r.thread.join();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        self.stop();
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        *self.running.lock().unwrap() = Some(Self::serve(
            self.root.path(),
            listener,
            &self.key,
            &self.secret,
        ));
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        if self.tmpfs {
            let _ = Command::new("umount").arg(self.root.path()).status();
        }
    }
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
        Env {
            repo_url: repo.to_string_lossy().into_owned(),
            dir,
            repo,
            cache,
            extra_env: Vec::new(),
            s3: None,
        }
    }

    /// An environment whose repository is on `server`, under a prefix of its own.
    pub fn on_s3(server: &std::sync::Arc<S3Server>) -> Env {
        let mut env = Env::new();
        let prefix = env
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        env.repo_url = format!("s3://{S3_BUCKET}/{prefix}");
        env.extra_env = vec![
            ("HOLDFAST_S3_ENDPOINT".into(), server.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), server.key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), server.secret.clone()),
        ];
        env.s3 = Some(server.clone());
        env
    }

    /// A local environment, or one on a fresh S3 server.
    pub fn with_backend(s3: bool) -> Env {
        if s3 {
            Env::on_s3(&S3Server::start())
        } else {
            Env::new()
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_holdfast"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("HOLDFAST_REPO", &self.repo_url)
            .env("HOLDFAST_PASSWORD", "test-password")
            .env("HOLDFAST_CACHE_DIR", &self.cache)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)));
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

    /// `init` with 1 MiB packs, so that small test data spreads over many packs.
    pub fn init_small_packs(&self) {
        self.ok(&[
            "init",
            "--argon2-memory",
            "1",
            "--argon2-iterations",
            "1",
            "--pack-size",
            "1",
        ]);
    }

    pub fn backup(&self, path: &Path) -> serde_json::Value {
        self.json(&["backup", path.to_str().unwrap()])
    }
}

/// Runs `holdfast ARGS --checkpoint-interval 0` and removes its lock 150 ms in (`unlock
/// --all`, as if others judged it stale and a prune took over), up to five times until one
/// run is caught before it finished. That run must fail with exit code 11 saying nothing was
/// committed, write no snapshot, and write at most one more index file after the lock went
/// (a checkpoint may have passed its lock check just before). Panics when no run was caught.
pub fn assert_losing_the_lock_commits_nothing(env: &Env, args: &[&str]) {
    let index_files = || std::fs::read_dir(env.repo.join("index")).unwrap().count();
    let snapshots = || env.json(&["snapshots"]).as_array().unwrap().len();
    for _ in 0..5 {
        // A run that finished before its lock was removed committed a snapshot: count anew.
        let snapshots_before = snapshots();
        let child = env
            .cmd()
            .args(args)
            .args(["--checkpoint-interval", "0"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        env.ok(&["unlock", "--all"]);
        let indexed_before = index_files();
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            continue; // finished before the lock was removed
        }
        assert_eq!(code(&o), 11, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("nothing was committed"),
            "{}",
            stderr(&o)
        );
        assert_eq!(snapshots(), snapshots_before, "a snapshot was committed");
        let indexed_after = index_files();
        assert!(
            indexed_after <= indexed_before + 1,
            "checkpoints went on without the lock: {indexed_before} -> {indexed_after} index files"
        );
        env.ok(&["check"]);
        return;
    }
    panic!(
        "every `{}` finished before its lock was removed: the test proved nothing",
        args[0]
    );
}

/// Restores, with `--overwrite`, a snapshot of two 3 MiB files onto a 4 MiB tmpfs that holds
/// older versions of both: the restore must fail with exit code 1 and one line naming a file
/// and the full disk, and leave every file whole, either the snapshot's version or the older
/// one (never partly written), with no temporary file behind. Needs root (for the mount).
pub fn assert_restore_onto_a_full_disk_keeps_files_whole(env: &Env) {
    require_root("mounts a small tmpfs");
    let src = env.path("full-disk-src");
    std::fs::create_dir(&src).unwrap();
    random_file(&src.join("r1"), 3 << 20, 1);
    random_file(&src.join("r2"), 3 << 20, 2);
    env.backup(&src);
    let target = env.path("full-disk-target");
    std::fs::create_dir(&target).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=4m holdfast-test {}",
        target.display()
    ));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(target.clone());
    for name in ["r1", "r2"] {
        std::fs::write(target.join(name), format!("old {name}")).unwrap();
    }
    let o = env.run(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let errors: Vec<String> = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("holdfast: error:"))
        .map(str::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{}", stderr(&o));
    assert!(
        errors[0].contains("No space left on device")
            && errors[0].contains(&format!("{}/r", target.display())),
        "{}",
        errors[0]
    );
    let mut restored = 0;
    for name in ["r1", "r2"] {
        let got = std::fs::read(target.join(name)).unwrap();
        if got == std::fs::read(src.join(name)).unwrap() {
            restored += 1;
        } else {
            assert!(
                got == format!("old {name}").into_bytes(),
                "{name} was left partly written ({} bytes)",
                got.len()
            );
        }
    }
    assert!(restored < 2, "both files fitted: the disk was not full");
    let names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "temporary files left behind: {names:?}");
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails the test, saying why, when it does not run as root. Tests that call it are marked
/// `#[ignore = "needs root: ..."]`, so an ordinary `cargo test` lists them as ignored and
/// `cargo test -- --include-ignored` (as root, as CI runs) runs them: never a silent pass.
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root ({why}): run it as root with `cargo test -- --include-ignored`"
    );
}

/// Fails the test when `tool` is missing: `.ci/run` installs every tool the tests call.
pub fn require_tool(tool: &str) {
    assert!(
        have(tool),
        "this test needs `{tool}` on PATH (.ci/run installs it; see its list)"
    );
}

/// Says on the real stderr (not captured by the test harness, so it shows in every run) that
/// part of a test did not run.
pub fn skipped_part(what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED PART: {what}");
}

/// Whether `tool` is there for an optional part of a test. Missing, the part is skipped with
/// a visible line, except under CI (`CI` set), which installs every tool: there it fails.
pub fn tool_or_skip(tool: &str, part: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "`{tool}` is missing under CI: .ci/run must install it ({part})"
    );
    skipped_part(&format!("{part}: `{tool}` is not installed"));
    false
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
    compare_trees(expected, src, restored, false)
}

/// As [`assert_same_tree`], but access times are not compared (GNU tar sets them to the
/// extraction time).
pub fn assert_same_tree_but_atime(
    expected: &BTreeMap<Vec<u8>, Entry>,
    src: &Path,
    restored: &Path,
) {
    compare_trees(expected, src, restored, true)
}

fn compare_trees(
    expected: &BTreeMap<Vec<u8>, Entry>,
    src: &Path,
    restored: &Path,
    ignore_atime: bool,
) {
    let mut got = snapshot_tree(restored);
    let mut expected = expected.clone();
    if ignore_atime {
        for e in expected.values_mut().chain(got.values_mut()) {
            e.atime = None;
        }
    }
    let expected = &expected;
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

/// Builds a tree containing every kind of entry holdfast promises to keep.
pub fn build_everything(root: &Path) {
    let p = |s: &str| root.join(s);
    std::fs::create_dir_all(p("config/nested/deeper")).unwrap();
    std::fs::create_dir_all(p("empty-dir")).unwrap();
    std::fs::write(p("config/settings.json"), br#"{"a": 1}"#).unwrap();
    std::fs::write(p("empty-file"), b"").unwrap();
    random_file(&p("config/nested/deeper/big.bin"), 9 * 1024 * 1024 + 17, 1);
    // The same chunks in two files: restored into both (one read, two writes when by pack).
    std::fs::copy(p("config/nested/deeper/big.bin"), p("copy-of-big.bin")).unwrap();
    std::fs::write(p("compressible.csv"), "id,name,value\n".repeat(200_000)).unwrap();
    // Symlinks: relative, absolute, dangling; kept verbatim.
    std::os::unix::fs::symlink("settings.json", p("config/link-rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", p("dangling")).unwrap();
    // Hardlinks.
    std::fs::write(p("hard-a"), b"shared content").unwrap();
    std::fs::hard_link(p("hard-a"), p("config/hard-b")).unwrap();
    std::fs::hard_link(p("hard-a"), p("hard-c")).unwrap();
    // Sparse file: 64 MiB with data in two places.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(p("sparse.img")).unwrap();
        f.seek(SeekFrom::Start(10 * 1024 * 1024)).unwrap();
        f.write_all(&[1u8; 5000]).unwrap();
        f.set_len(64 * 1024 * 1024).unwrap();
    }
    // Special bits.
    std::fs::write(p("setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(p("setgid"), b"x").unwrap();
    std::fs::set_permissions(p("setgid"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::fs::create_dir(p("sticky")).unwrap();
    std::fs::set_permissions(p("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(p("private"), b"secret").unwrap();
    std::fs::set_permissions(p("private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A name that is not UTF-8.
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"caf\xe9-latin1.txt")),
        b"bytes",
    )
    .unwrap();
    // FIFO.
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    // Extended attributes and a POSIX ACL.
    xattr::set(
        p("config/settings.json"),
        "user.origin",
        b"test\0binary\xff",
    )
    .unwrap();
    xattr::set(p("config"), "user.dir-attr", b"on a directory").unwrap();
    if tool_or_skip("setfacl", "POSIX ACLs") {
        sh(&format!(
            "setfacl -m u:12345:rw,g:54321:r {}",
            p("private").display()
        ));
        sh(&format!(
            "setfacl -d -m u:12345:rwx {}",
            p("config/nested").display()
        ));
    }
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: owners and device nodes must be tested there"
        );
        skipped_part("owners other than ours and device nodes need root: not in this tree");
    }
    if is_root() {
        // Owners other than ours, and device nodes.
        nix::unistd::chown(
            &p("config/settings.json"),
            Some(1234.into()),
            Some(5678.into()),
        )
        .unwrap();
        nix::unistd::chown(&p("empty-dir"), Some(4321.into()), Some(8765.into())).unwrap();
        nix::unistd::fchownat(
            None,
            &p("config/link-rel"),
            Some(777.into()),
            Some(778.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        nix::sys::stat::mknod(
            &p("null-dev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        nix::sys::stat::mknod(
            &p("block-dev"),
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o660),
            nix::sys::stat::makedev(7, 200),
        )
        .unwrap();
        // chown clears setuid: restore the bits afterwards.
        std::fs::set_permissions(p("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    }
    // Times with nanoseconds, set last (they are what changes most easily).
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    let a = filetime::FileTime::from_unix_time(1_500_000_000, 987_654_321);
    filetime::set_file_times(p("config/settings.json"), a, t).unwrap();
    filetime::set_symlink_file_times(p("dangling"), a, t).unwrap();
    filetime::set_file_times(p("empty-dir"), a, t).unwrap();
}

/// A random generator for tests that choose moments at random: seeded from
/// `HOLDFAST_CRASH_SEED` when set, else at random, and the seed is printed to repeat a run.
pub fn seeded_rng(what: &str) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let seed: u64 = std::env::var("HOLDFAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{what} seed {seed} (HOLDFAST_CRASH_SEED={seed} repeats it)");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Runs a test body against a local repository and against one on a real S3 server
/// (`#[macro_use] mod common;` in the test file).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    (ignore = $why:literal; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                #[ignore = $why]
                fn local() {
                    super::$name(super::Env::with_backend(false))
                }
                #[test]
                #[ignore = $why]
                fn s3() {
                    super::$name(super::Env::with_backend(true))
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name(super::Env::with_backend(false))
                }
                #[test]
                fn s3() {
                    super::$name(super::Env::with_backend(true))
                }
            }
        )*
    };
}
