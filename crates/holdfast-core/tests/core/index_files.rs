//! Index files stay bounded, and a set of them replaces the old index only once complete.

use holdfast_core::id::{BlobId, IndexId, PackId};
use holdfast_core::index::PackEntry;
use holdfast_core::keyfile::KdfParams;
use holdfast_core::pack::{BlobKind, PackedBlob};
use holdfast_core::repo::{InitOptions, INDEX_FILE_MAX_BLOBS};
use holdfast_core::storage::Storage;
use holdfast_core::Repository;

fn repo(dir: &std::path::Path) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    Repository::init(
        Storage::local(&dir.join("repo"), true).unwrap(),
        b"pw",
        &opts,
    )
    .unwrap()
}

/// `count` packs of `per_pack` blobs, ids derived from `seed` so every blob is distinct.
fn packs(seed: u8, count: u32, per_pack: u32) -> Vec<PackEntry> {
    (0..count)
        .map(|p| {
            let mut pack = [seed; 32];
            pack[..4].copy_from_slice(&p.to_le_bytes());
            PackEntry {
                id: PackId(pack),
                blobs: (0..per_pack)
                    .map(|b| {
                        let mut id = [seed; 32];
                        id[..4].copy_from_slice(&(p * per_pack + b).to_le_bytes());
                        PackedBlob {
                            kind: BlobKind::Data,
                            id: BlobId(id),
                            offset: b * 100,
                            length: 100,
                            raw_length: 200,
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

fn index_file_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("repo/index")).map_or(0, |d| d.count())
}

#[test]
fn a_large_index_is_split_and_replaces_the_old_one_only_when_complete() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let old = packs(1, 10, 22);
    let old_id: Vec<IndexId> = repo.save_index_files(old.clone(), Vec::new()).unwrap();
    assert_eq!(old_id.len(), 1);

    // 2.5 files' worth of new entries, superseding the old index.
    let per_pack = 50u32;
    let count = (INDEX_FILE_MAX_BLOBS as u32 * 5 / 2) / per_pack;
    let new = packs(2, count, per_pack);

    // Killed before the last file: the first two files are there, the old index still holds.
    let first_two: Vec<PackEntry> = new[..(2 * INDEX_FILE_MAX_BLOBS / per_pack as usize)].to_vec();
    let partial = repo.save_index_files(first_two, Vec::new()).unwrap();
    assert_eq!(partial.len(), 2, "two full files");
    repo.load_index().unwrap();
    let index = repo.index();
    assert!(
        index.contains(&old[3].blobs[5].id),
        "old index still in force"
    );
    assert!(index.contains(&new[0].blobs[0].id));
    assert_eq!(index.blob_count(), 220 + 2 * INDEX_FILE_MAX_BLOBS);

    // The complete set: three files, the last superseding the old and the partial ones.
    let mut supersedes = old_id.clone();
    supersedes.extend(partial.iter().copied());
    let ids = repo.save_index_files(new.clone(), supersedes).unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(index_file_count(dir.path()), 1 + 2 + 3);
    repo.load_index().unwrap();
    let index = repo.index();
    assert!(!index.contains(&old[3].blobs[5].id), "old index superseded");
    assert_eq!(index.blob_count(), count as usize * per_pack as usize);
    assert_eq!(index.pack_count(), count as usize);
    let last = new.last().unwrap();
    let loc = index.get(&last.blobs[7].id).unwrap();
    assert_eq!((loc.pack, loc.offset, loc.length), (last.id, 700, 100));
}

#[test]
fn nothing_to_write_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    assert!(repo
        .save_index_files(Vec::new(), Vec::new())
        .unwrap()
        .is_empty());
    assert_eq!(index_file_count(dir.path()), 0);
}
