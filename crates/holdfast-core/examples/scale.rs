//! Measures how repository metadata grows: builds a synthetic repository (real index files
//! and snapshots, no pack data) of a given number of blobs, hosts and backups, then opens it
//! as a backup would, cold (empty cache) and warm, and prints what that cost. `docs/scale.md`
//! is written from its output.
//!
//! ```text
//! cargo run --release -p holdfast-core --example scale -- BLOBS HOSTS BACKUPS_PER_HOST [s3://bucket/prefix ENDPOINT]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use holdfast_core::id::{BlobId, PackId};
use holdfast_core::index::{IndexFile, PackEntry};
use holdfast_core::keyfile::KdfParams;
use holdfast_core::pack::{BlobKind, PackedBlob};
use holdfast_core::repo::InitOptions;
use holdfast_core::snapshot::{Snapshot, Summary};
use holdfast_core::storage::{request_counts, RequestCounts, S3Options, Storage};
use holdfast_core::Repository;
use rand::RngCore;

/// A 16 MiB pack of 1 MiB average chunks compressed to about 70 %.
const BLOBS_PER_PACK: usize = 22;
const PASSWORD: &[u8] = b"scale";

/// Counts live heap bytes and their high-water mark, so memory is measured exactly rather
/// than through resident-set size (which the allocator keeps high after frees).
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now =
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).map_or(d, |a| a.parse().expect("a number"));
    let blobs = num(0, 1_000_000);
    let hosts = num(1, 10);
    let per_host = num(2, 30);
    let work = tempfile_dir();
    std::env::set_var("HOLDFAST_CACHE_DIR", work.join("cache"));
    let storage = || match args.get(3) {
        Some(url) => {
            let mut o = S3Options::from_url(url).unwrap();
            o.endpoint = args.get(4).cloned();
            Storage::s3(&o).unwrap()
        }
        None => Storage::local(&work.join("repo"), true).unwrap(),
    };

    let t = Instant::now();
    let repo = Repository::init(
        storage(),
        PASSWORD,
        &InitOptions {
            kdf: KdfParams {
                memory_kib: 8 * 1024,
                iterations: 1,
                parallelism: 1,
            },
            ..Default::default()
        },
    )
    .unwrap();
    let backups = hosts * per_host;
    let mut rng = rand::thread_rng();
    let mut index_bytes = 0u64;
    let start = chrono::Utc::now() - chrono::Duration::days(per_host as i64);
    for b in 0..backups {
        let n = blobs / backups + usize::from(b < blobs % backups);
        let mut packs = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(BLOBS_PER_PACK) {
            let mut offset = 0u32;
            let blobs = chunk
                .iter()
                .map(|_| {
                    let mut id = [0u8; 32];
                    rng.fill_bytes(&mut id);
                    let length = 700_000 + (rng.next_u32() % 20_000);
                    let b = PackedBlob {
                        kind: BlobKind::Data,
                        id: BlobId(id),
                        offset,
                        length,
                        raw_length: 1 << 20,
                    };
                    offset += length;
                    b
                })
                .collect();
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            packs.push(PackEntry {
                id: PackId(id),
                blobs,
            });
        }
        let file = IndexFile {
            supersedes: Vec::new(),
            packs,
        };
        index_bytes += file.seal(repo.key()).len() as u64;
        repo.save_index(&file).unwrap();
        let mut tree = [0u8; 32];
        rng.fill_bytes(&mut tree);
        repo.save_snapshot(&Snapshot {
            time: start + chrono::Duration::seconds((b * 86_400 / hosts) as i64),
            tree: BlobId(tree),
            paths: vec!["/srv/dss/data".into()],
            hostname: format!("node-{:04}", b % hosts),
            username: "root".into(),
            tags: vec!["app:design".into()],
            parent: None,
            replaces: None,
            rewrites: Vec::new(),
            program_version: "holdfast scale example".into(),
            layout: Default::default(),
            root: None,
            summary: Summary::default(),
            warnings: Vec::new(),
            consistency: None,
            attachments: Vec::new(),
            extra: Default::default(),
        })
        .unwrap();
    }
    drop(repo);
    println!(
        "synthetic repository: {blobs} blobs in {} packs, {hosts} hosts x {per_host} backups = {backups} index files and snapshots, built in {:.1}s",
        blobs.div_ceil(BLOBS_PER_PACK),
        t.elapsed().as_secs_f64()
    );
    println!(
        "index files: {index_bytes} bytes in all, {:.1} bytes per blob",
        index_bytes as f64 / blobs as f64
    );
    std::fs::remove_dir_all(work.join("cache")).ok();

    for pass in ["cold cache", "warm cache", "no cache"] {
        let live0 = LIVE.load(Ordering::Relaxed);
        PEAK.store(live0, Ordering::Relaxed);
        let before = request_counts();
        let t = Instant::now();
        let repo = Repository::open(storage(), PASSWORD, pass != "no cache").unwrap();
        repo.load_index().unwrap();
        let index_secs = t.elapsed().as_secs_f64();
        let live1 = LIVE.load(Ordering::Relaxed);
        let peak = PEAK.load(Ordering::Relaxed);
        let after_index = request_counts();
        let t = Instant::now();
        let snaps = repo.list_snapshots().unwrap();
        let snap_secs = t.elapsed().as_secs_f64();
        let after_snaps = request_counts();
        println!("{pass}:");
        println!(
            "  open + load index: {index_secs:.2}s, heap +{:.0} MiB held ({:.0} bytes per blob), +{:.0} MiB at peak, {}",
            (live1 - live0) as f64 / 1048576.0,
            (live1 - live0) as f64 / blobs as f64,
            (peak - live0) as f64 / 1048576.0,
            describe(&diff(&before, &after_index))
        );
        // The index is a mapped table (a file in the cache, else anonymous memory): not heap.
        let table = std::fs::read_dir(work.join("cache"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("index.table"))
            .find_map(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        println!(
            "  index table in the cache: {:.0} MiB ({:.1} bytes per blob); resident now: {}",
            table as f64 / 1048576.0,
            table as f64 / blobs as f64,
            resident()
        );
        let index = repo.index();
        let mut rng = rand::thread_rng();
        let probes: Vec<BlobId> = (0..1_000_000)
            .map(|_| {
                let mut id = [0u8; 32];
                rng.fill_bytes(&mut id);
                BlobId(id)
            })
            .collect();
        let t = Instant::now();
        let found = probes.iter().filter(|id| index.contains(id)).count();
        let miss_secs = t.elapsed().as_secs_f64();
        println!(
            "  1M lookups of absent ids: {:.0} ns each ({found} found); resident after: {}",
            miss_secs * 1e3,
            resident()
        );
        drop(index);
        println!(
            "  list {} snapshots: {snap_secs:.2}s, {}",
            snaps.len(),
            describe(&diff(&after_index, &after_snaps))
        );
        drop(snaps);
        drop(repo);
    }
    std::fs::remove_dir_all(&work).ok();
}

/// Resident memory of this process, from /proc: anonymous (heap, anonymous maps) and file
/// pages (the mapped table in the cache), in MiB.
fn resident() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    format!(
        "{:.0} MiB anonymous + {:.0} MiB of mapped files",
        kib("RssAnon:") / 1024.0,
        kib("RssFile:") / 1024.0
    )
}

fn diff(a: &RequestCounts, b: &RequestCounts) -> RequestCounts {
    RequestCounts {
        reads: b.reads - a.reads,
        writes: b.writes - a.writes,
        deletes: b.deletes - a.deletes,
        stats: b.stats - a.stats,
        lists: b.lists - a.lists,
        list_pages: b.list_pages - a.list_pages,
        listed_names: b.listed_names - a.listed_names,
        bytes_read: b.bytes_read - a.bytes_read,
        bytes_written: b.bytes_written - a.bytes_written,
    }
}

fn describe(c: &RequestCounts) -> String {
    format!(
        "{} requests ({} reads, {} list pages), {:.1} MiB fetched",
        c.requests(),
        c.reads,
        c.list_pages,
        c.bytes_read as f64 / 1048576.0
    )
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("holdfast-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
