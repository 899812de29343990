//! Bounds that hold whatever the machine's speed: a restore's memory does not grow with the
//! number of files (it restores in batches; see `holdfast_core::restore`). Speed itself is
//! measured by `bench/`, never asserted here.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Runs `cmd` to the end; returns its exit status and peak resident memory in bytes, as the
/// kernel accounts it for that one process.
fn run_measuring_peak_memory(mut cmd: Command) -> (std::process::ExitStatus, u64) {
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, and `pid` is our own child, reaped only here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    (
        std::process::ExitStatus::from_raw(status),
        usage.ru_maxrss as u64 * 1024,
    )
}

/// `dirs` directories of `per_dir` one-byte files (all the same byte, so that the index does
/// not grow with them: what is left to grow is the restore's own bookkeeping).
fn many_files(root: &Path, dirs: usize, per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("dir{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            std::fs::write(dir.join(format!("file-with-a-longish-name-{f:06}")), b"x").unwrap();
        }
    }
}

#[test]
fn restore_memory_does_not_grow_with_the_number_of_files() {
    let env = Env::new();
    env.init();
    let small = env.path("small");
    let large = env.path("large");
    many_files(&small, 10, 1_000);
    many_files(&large, 60, 2_000);
    let small_id = env.backup(&small)["id"].as_str().unwrap().to_string();
    let large_id = env.backup(&large)["id"].as_str().unwrap().to_string();

    let peak = |id: &str, target: &str| {
        let mut cmd = env.cmd();
        cmd.args([
            "restore",
            id,
            "--target",
            env.path(target).to_str().unwrap(),
        ]);
        let (status, peak) = run_measuring_peak_memory(cmd);
        assert!(status.success(), "restore of {id} failed: {status:?}");
        peak
    };
    let small_peak = peak(&small_id, "restored-small");
    let large_peak = peak(&large_id, "restored-large");
    assert_eq!(
        std::fs::read_dir(env.path("restored-large/dir059"))
            .unwrap()
            .count(),
        2_000
    );
    // 110,000 more files: the restore that planned every file before writing peaked 70 MB
    // higher (16 and 86 MB); restoring in batches, 7 MB (17 and 23 MB, the allocator keeping
    // some freed memory).
    let grew = large_peak.saturating_sub(small_peak);
    assert!(
        grew < 16 << 20,
        "restoring 120,000 files peaked at {} MiB, 10,000 at {} MiB",
        large_peak >> 20,
        small_peak >> 20
    );
}
