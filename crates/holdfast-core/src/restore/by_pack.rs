//! Restoring file content pack by pack, for object storage.
//!
//! Restoring file by file costs one ranged read per chunk: 6,000 small files are 6,000 round
//! trips, which on S3 (10-50 ms each) dominates everything else. Here every file is created
//! first, then each pack that holds needed chunks is read in as few ranged requests as
//! possible (neighbouring chunks merged into one read), and each chunk is written to every
//! place it belongs, in whatever order the packs arrive. Packs are fetched in parallel by the
//! caller's thread pool.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::{write_at, PendingFile, Writer};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::index::BlobLocation;
use crate::tree::Node;

/// Neighbouring chunks closer than this are fetched in one read (the gap is read and dropped).
const MERGE_GAP: u64 = 256 * 1024;
/// A single read never spans more than this (or one chunk, when a chunk is larger), which
/// bounds memory per fetching thread.
const MAX_READ: u64 = 2 * 1024 * 1024;

/// Where one copy of a chunk goes: file (index into the list being restored) and offset.
struct Dest {
    file: usize,
    offset: u64,
}

struct Needed {
    id: BlobId,
    loc: BlobLocation,
    dests: Vec<Dest>,
}

pub(super) fn write_files(
    writer: &Writer,
    files: &[(PathBuf, Node)],
    fetchers: &rayon::ThreadPool,
) -> Result<()> {
    let Writer {
        repo,
        target,
        overwrite,
        progress,
        cancel,
        finish: finish_file,
        ..
    } = writer;
    let (repo, target, overwrite) = (*repo, *target, *overwrite);
    // Files are created by one thread per core: creating inodes is the file system's work,
    // and sixteen threads doing it at once mostly contend for its locks (measured on ext4:
    // 20 s of system time for 20,000 files).
    // Each file is opened again by path for every chunk it receives; the inode recorded here
    // must be the one opened then, so that a path swapped for a symlink, a FIFO or another
    // file while the restore runs is an error, never a write somewhere else.
    // Content goes to temporary files, each renamed into place as soon as all of it is
    // written (so that --overwrite never needs room for two copies of the tree); on an
    // error, dropping the ones not yet placed removes them.
    let pending: Vec<Mutex<Option<PendingFile>>> = files
        .par_iter()
        .map(|(rel, _)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            let (pending, _) = PendingFile::create(&target.join(rel), overwrite)?;
            Ok(Mutex::new(Some(pending)))
        })
        .collect::<Result<_>>()?;

    let mut packs: HashMap<PackId, HashMap<BlobId, Needed>> = HashMap::new();
    let mut remaining = Vec::with_capacity(files.len());
    let mut sizes = Vec::with_capacity(files.len());
    for (i, (_, node)) in files.iter().enumerate() {
        let mut offset = 0u64;
        for id in &node.content {
            let loc = repo.locate(id)?;
            packs
                .entry(loc.pack)
                .or_default()
                .entry(*id)
                .or_insert_with(|| Needed {
                    id: *id,
                    loc,
                    dests: Vec::new(),
                })
                .dests
                .push(Dest { file: i, offset });
            offset += loc.raw_length as u64;
        }
        sizes.push(offset);
        remaining.push(AtomicUsize::new(node.content.len()));
    }
    // Gives a file whose content is all written its size (a sparse file may end in a hole),
    // its metadata and its real name.
    let finish = |i: usize| -> Result<()> {
        let Some(p) = pending[i].lock().unwrap().take() else {
            return Ok(());
        };
        let (rel, node) = &files[i];
        let path = target.join(rel);
        let f = open_for_write(p.tmp(), &path, p.inode())?;
        if node.sparse {
            f.set_len(sizes[i]).map_err(|e| Error::io(&path, e))?;
        }
        finish_file.finish(&f, &path, node)?;
        drop(f);
        p.place(overwrite)?;
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    for (i, (_, node)) in files.iter().enumerate() {
        if node.content.is_empty() {
            finish(i)?;
        }
    }

    let mut work: Vec<(PackId, Vec<Needed>)> = packs
        .into_iter()
        .map(|(pack, blobs)| {
            let mut blobs: Vec<Needed> = blobs.into_values().collect();
            blobs.sort_by_key(|b| b.loc.offset);
            (pack, blobs)
        })
        .collect();
    work.sort_by_key(|(pack, _)| *pack);
    fetchers.install(|| {
        work.par_iter().try_for_each(|(pack, blobs)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            for range in ranges(blobs) {
                let start = range[0].loc.offset as u64;
                let end = range
                    .iter()
                    .map(|b| b.loc.offset as u64 + b.loc.length as u64)
                    .max()
                    .unwrap_or(start);
                let mut bytes = repo.read_pack_range(pack, start, end - start)?;
                for b in range {
                    let s = (b.loc.offset as u64 - start) as usize;
                    let sealed = &mut bytes[s..s + b.loc.length as usize];
                    let plain = repo.open_blob(&b.id, &b.loc, sealed).map_err(|e| {
                        match b.dests.first() {
                            Some(d) => e.in_file(&target.join(&files[d.file].0)),
                            None => e,
                        }
                    })?;
                    for d in &b.dests {
                        let (rel, node) = &files[d.file];
                        let path = target.join(rel);
                        let (tmp, inode) = pending[d.file]
                            .lock()
                            .unwrap()
                            .as_ref()
                            .map(|p| (p.tmp().to_path_buf(), p.inode()))
                            .ok_or_else(|| {
                                Error::Invalid(format!(
                                    "{}: written after it was complete",
                                    path.display()
                                ))
                            })?;
                        let f = open_for_write(&tmp, &path, inode)?;
                        write_at(&f, &path, &plain, d.offset, node.sparse)?;
                        drop(f);
                        progress
                            .bytes_done
                            .fetch_add(plain.len() as u64, Ordering::Relaxed);
                        if remaining[d.file].fetch_sub(1, Ordering::AcqRel) == 1 {
                            finish(d.file)?;
                        }
                    }
                }
            }
            Ok(())
        })
    })?;

    Ok(())
}

/// Splits a pack's needed chunks (sorted by offset) into runs read with one request each.
fn ranges(blobs: &[Needed]) -> Vec<&[Needed]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=blobs.len() {
        let split = i == blobs.len() || {
            let prev_end = blobs[i - 1].loc.offset as u64 + blobs[i - 1].loc.length as u64;
            let next = &blobs[i].loc;
            let gap = (next.offset as u64).saturating_sub(prev_end);
            let span = next.offset as u64 + next.length as u64 - blobs[start].loc.offset as u64;
            gap > MERGE_GAP || span > MAX_READ
        };
        if split {
            out.push(&blobs[start..i]);
            start = i;
        }
    }
    out
}

/// Opens the temporary file this restore created for `path` (read and write: `--verify`
/// reads it back), checking that it still is that file (same device and inode, a regular
/// file); never blocks on a FIFO put in its place. Errors name `path`.
fn open_for_write(tmp: &Path, path: &Path, (dev, ino): (u64, u64)) -> Result<std::fs::File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(tmp)
        .map_err(|e| Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() || meta.dev() != dev || meta.ino() != ino {
        return Err(Error::Invalid(format!(
            "{}: replaced by something else while the restore was writing it; restore again into a directory nobody else writes to",
            path.display()
        )));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::BlobKind;

    fn needed(offset: u32, length: u32) -> Needed {
        Needed {
            id: BlobId([0; 32]),
            loc: BlobLocation {
                pack: PackId([0; 32]),
                kind: BlobKind::Data,
                offset,
                length,
                raw_length: length,
            },
            dests: Vec::new(),
        }
    }

    #[test]
    fn neighbours_merge_far_ones_and_long_runs_split() {
        let mb = 1 << 20;
        let blobs = vec![
            needed(0, 1000),
            needed(1000, 1000),            // adjacent: same read
            needed(2000 + 100_000, 1000),  // small gap: same read
            needed(4 * mb, 1000),          // far: new read
            needed(4 * mb + 1000, mb),     // adjacent and short: same read
            needed(5 * mb + 1000, 3 * mb), // would make the read longer than MAX_READ
            needed(8 * mb + 1000, 5 * mb), // longer than MAX_READ alone: a read of its own
            needed(13 * mb + 1000, 1000),
        ];
        let lens: Vec<usize> = ranges(&blobs).iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![3, 2, 1, 1, 1]);
        assert!(ranges(&[]).is_empty());
    }
}
